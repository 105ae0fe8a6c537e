"""Step timing: every training row of log.csv has its data wait and step time after the seed's columns,
the end-of-run line agrees with them, and a slow dataset triggers the one data-wait warning."""
import csv
import os
import re
import time

import pytest

import config
import data_loader
import run_setup
import trainer
from test_trainer import SEED_HEADER

THROUGHPUT = re.compile(r'throughput: (\d+) images in ([\d.]+) s of steps and data waits: ([\d.]+) images/s, '
                        r'([\d.]+) % of it waiting for data')
WARNING = 'waiting for data took'
SLOWDOWN = 1   # each image arrives the last training step's time late: a batch of 2 waits twice a step


def read_log(run_dir):
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        header = f.readline().rstrip('\r\n')
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        return header, list(csv.DictReader(f))


def train_log(run_dir):
    with open(os.path.join(run_dir, 'train.log')) as f:
        return f.read()


class SlowImages(data_loader.ColorizeImageNet):
    """A training set whose images arrive SLOWDOWN times the last step's duration late (however busy the CPU)."""
    last_step_seconds = 0.05

    def __getitem__(self, index):
        time.sleep(SLOWDOWN * SlowImages.last_step_seconds)
        return super().__getitem__(index)


@pytest.fixture
def slow_training_set(monkeypatch):
    make_datasets, train_step = run_setup.make_datasets, trainer.Trainer.train_step

    def with_slow_training_set(cfg, run_dir):
        train_set, val_set = make_datasets(cfg, run_dir)
        train_set.__class__ = SlowImages
        return train_set, val_set

    def timed_step(self, rgb):
        start = time.perf_counter()
        result = train_step(self, rgb)
        SlowImages.last_step_seconds = time.perf_counter() - start
        return result
    monkeypatch.setattr(run_setup, 'make_datasets', with_slow_training_set)
    monkeypatch.setattr(trainer.Trainer, 'train_step', timed_step)


def run(train, photo_folder, work_dir, *extra):
    run_dir = os.path.join(work_dir, 'run')
    train('fcn32s', '-d', photo_folder, '-o', run_dir, '--max-iter', 6, '--set', 'interval_validate=100',
          '--set', 'data_wait_window=4', *extra)
    return run_dir


def test_timing_columns_follow_the_seed_columns_and_the_end_line_sums_them(photo_folder, work_dir, train):
    run_dir = run(train, photo_folder, work_dir)
    header, rows = read_log(run_dir)
    assert header == SEED_HEADER + ',valid/psnr,train/data_time,train/step_time'
    train_rows = [r for r in rows if r['train/loss']]
    assert len(train_rows) == 6
    data = [float(r['train/data_time']) for r in train_rows]
    step = [float(r['train/step_time']) for r in train_rows]
    assert all(d >= 0 for d in data) and all(s > 0 for s in step)
    assert all(r['train/data_time'] == r['train/step_time'] == '' for r in rows if r['valid/loss'])
    log_text = train_log(run_dir)
    images, seconds, rate, share = THROUGHPUT.search(log_text).groups()
    with open(os.path.join(run_dir, 'split_train.txt')) as f:
        n_train = sum(1 for line in f if line.strip())
    epoch_batches = [min(2, n_train - start) for start in range(0, n_train, 2)]   # batch_size 2, last one short
    assert int(images) == sum((epoch_batches * 2)[:6])
    assert float(seconds) == pytest.approx(sum(data) + sum(step), abs=0.06)
    assert float(rate) == pytest.approx(int(images) / (sum(data) + sum(step)), rel=0.01, abs=0.01)
    assert float(share) == pytest.approx(100 * sum(data) / (sum(data) + sum(step)), abs=0.2)
    assert WARNING not in log_text   # the photos decode in a few ms: no starved steps


def test_a_slow_dataset_triggers_one_warning_that_names_the_knobs(photo_folder, work_dir, train,
                                                                  slow_training_set):
    run_dir = run(train, photo_folder, work_dir)
    log_text = train_log(run_dir)
    warnings = [line for line in log_text.splitlines() if WARNING in line]
    assert len(warnings) == 1 and ' WARNING ' in warnings[0]
    assert all(knob in warnings[0] for knob in ('workers', 'prefetch_factor', 'jpeg_draft'))
    _, rows = read_log(run_dir)
    waits = [float(r['train/data_time']) for r in rows if r['train/loss']]
    steps = [float(r['train/step_time']) for r in rows if r['train/loss']]
    # each batch's logged wait holds its slow images: measured 2.0 step times for a batch of 2 and 1.02
    # for the epoch's last batch of 1 (so 0.9 step times was 12 % away); a wait that left them out would be
    # ~0.005 step times (decoding alone).  Half a slow image: a factor 2 either side.
    assert all(wait >= 0.5 * SLOWDOWN * step for wait, step in zip(waits[1:], steps)), (waits, steps)
    share = float(THROUGHPUT.search(log_text).group(4))
    assert share > 100 * config.DEFAULTS['data_wait_warn_share']


@pytest.mark.parametrize('timings,share', [([(1.0, 3.0)], 0.25), ([(0.0, 2.0), (2.0, 0.0)], 0.5), ([], 0.0),
                                           ([(0.5, 0.5), (0.1, 0.9)], 0.3)])
def test_data_wait_share(timings, share):
    assert trainer.data_wait_share(timings) == pytest.approx(share)


def test_a_log_from_before_the_timing_columns_gets_them_blank_on_resume(work_dir):
    path = os.path.join(work_dir, 'log.csv')
    old_header = SEED_HEADER.split(',') + ['valid/psnr']
    old_rows = [['0', '0'] + [''] * 5 + ['1.5', '0.1', '0.2', '0.3', '0.4', '0.50', '21.0'],
                ['0', '0', '1.25', '0.5', '0.25', '0.125', '0.75'] + [''] * 5 + ['0.90', '']]
    with open(path, 'w', newline='') as f:
        csv.writer(f).writerows([old_header] + old_rows)
    trainer.add_log_columns(path)
    header, rows = read_log(path.replace('log.csv', ''))
    assert header.split(',') == old_header + ['train/data_time', 'train/step_time']
    assert [[r[c] for c in old_header] for r in rows] == old_rows
    assert all(r['train/data_time'] == r['train/step_time'] == '' for r in rows)
    with open(path) as f:
        before = f.read()
    trainer.add_log_columns(path)   # a current log stays as it is
    with open(path) as f:
        assert f.read() == before
