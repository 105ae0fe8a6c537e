"""TensorBoard event files of a run, read back with tensorboard's own reader: the same scalars as
log.csv (names and values), the learning rate, one picture per validation, the config; a resume
hides what was logged after its checkpoint, as log.csv drops those rows."""
import csv
import io
import os
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import trainer
from conftest import temporary_folder


def read_events(run_dir):
    events = EventAccumulator(run_dir, size_guidance={'scalars': 0, 'images': 0, 'tensors': 0})  # 0: keep all
    events.Reload()
    return events


def log_rows(run_dir):
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        return list(csv.DictReader(f))


def logged(rows, column):
    """(iteration, float32 value) of the rows where ``column`` is filled, as TensorBoard stores them."""
    return [(int(r['iteration']), np.float32(r[column])) for r in rows if r[column] != '']


def scalars(events, tag):
    return [(e.step, np.float32(e.value)) for e in events.Scalars(tag)]


@pytest.fixture(scope='module')
def short_run(photo_folder, train):
    with temporary_folder() as root:
        run_dir = os.path.join(root, 'run')
        train('fcn32s', '-d', photo_folder, '-o', run_dir, '--max-iter', 5, '--set', 'lr=2e-3')
        yield run_dir


def test_every_log_csv_value_is_a_tensorboard_scalar_of_the_same_name(short_run):
    rows = log_rows(short_run)
    events = read_events(short_run)
    columns = [c for c in trainer.LOG_HEADER if c.startswith(('train/', 'valid/'))]
    assert len(logged(rows, 'train/loss')) == 5 and len(logged(rows, 'valid/loss')) == 4   # 0, 2, 4, 5
    for column in columns:
        assert scalars(events, column) == logged(rows, column), column
    assert scalars(events, 'train/lr') == [(i, np.float32(2e-3)) for i, _ in logged(rows, 'train/loss')]


def test_one_picture_per_validation_the_tile_of_visualization_viz(short_run):
    events = read_events(short_run)
    valid_iterations = [i for i, _ in logged(log_rows(short_run), 'valid/loss')]
    images = events.Images('valid/visualization')
    assert [e.step for e in images] == valid_iterations
    for event in images:
        shown = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert('RGB'))
        saved = np.asarray(Image.open(os.path.join(short_run, 'visualization_viz', 'iter%012d.png' % event.step)))
        np.testing.assert_array_equal(shown, saved)


def test_the_config_is_shown_as_text_and_hparams(short_run):
    events = read_events(short_run)
    text = events.Tensors('config/text_summary')[0].tensor_proto.string_val[0].decode()
    shown = yaml.safe_load(text.strip('`\n'))
    with open(os.path.join(short_run, 'config.yaml')) as f:
        saved = yaml.safe_load(f)
    assert all(shown[key] == saved[key] for key in ('lr', 'im_size', 'numbins', 'config_number', 'arch'))
    starts = [plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
              for content in events.PluginTagToContent('hparams').values()]
    hparams = [start.hparams for start in starts if start.hparams][0]
    assert hparams['lr'].number_value == pytest.approx(2e-3) and hparams['arch'].string_value == 'fcn32s'


def test_a_resume_hides_the_events_logged_after_its_checkpoint(photo_folder, train, work_dir):
    """Resumed from an earlier checkpoint, the events after it are purged as log.csv's rows are."""
    run_dir = os.path.join(work_dir, 'run')
    checkpoint = os.path.join(run_dir, trainer.CHECKPOINT)
    train('fcn32s', '-d', photo_folder, '-o', run_dir, '--max-iter', 2)
    shutil.copyfile(checkpoint, checkpoint + '.at2')
    train('fcn32s', '--resume', checkpoint, '--max-iter', 4, '--set', 'lr=5e-3')   # rows 2, 3, valid 4
    os.replace(checkpoint + '.at2', checkpoint)
    train('fcn32s', '--resume', checkpoint, '--max-iter', 3)   # drops them, logs 2 and valid 3
    rows = log_rows(run_dir)
    events = read_events(run_dir)
    assert [i for i, _ in logged(rows, 'train/loss')] == [0, 1, 2]
    for column in ('train/loss', 'valid/loss', 'valid/psnr', 'train/step_time'):
        assert scalars(events, column) == logged(rows, column), column
    assert [e.step for e in events.Images('valid/visualization')] == [0, 2, 3]
