"""Faults a long run must survive: SIGKILL then --resume (exact), a kill in the middle of a
checkpoint save, unreadable / odd / oversized images, and non-finite losses."""
import csv
import io
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import config
import data_loader
import runtime
import trainer
from conftest import NARROW, PHOTOS, REPO_DIR, SMOKE_ARGS, UNIFORM_BINS, skimage_photo, write_photos

MAX_PIXELS = 89478485   # config.DEFAULTS['max_image_pixels']


def read_rows(run_dir):
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        return list(csv.DictReader(f))


def column(rows, kind, name='loss'):
    """{iteration: value} of the train or valid rows; fails on an iteration logged twice."""
    out = {}
    for r in rows:
        if r[kind + '/' + name]:
            assert int(r['iteration']) not in out, 'iteration %s logged twice' % r['iteration']
            out[int(r['iteration'])] = r[kind + '/' + name]
    return out


# --------------------------------------------------------------------------
# SIGKILL at a random iteration, then --resume
# --------------------------------------------------------------------------

def start_training(run_dir, *args, log_to):
    return subprocess.Popen([sys.executable, os.path.join(REPO_DIR, 'train_color_fcn32s.py')]
                            + SMOKE_ARGS + [str(a) for a in args],
                            cwd=REPO_DIR, stdout=subprocess.DEVNULL, stderr=open(log_to, 'w'))


def finish(proc, log_to):
    assert proc.wait(timeout=300) == 0, open(log_to).read()[-3000:]


def train_rows_written(run_dir):
    try:
        return len(column(read_rows(run_dir), 'train'))
    except (FileNotFoundError, KeyError, AssertionError):
        return 0


AUGMENTED = ['--set', 'aug_crop_area=[0.3,0.9]', '--set', 'aug_hflip=true']   # new views each epoch


@pytest.mark.parametrize('views', [[], AUGMENTED], ids=['whole-photos', 'augmented'])
def test_sigkill_then_resume_equals_an_uninterrupted_run(photo_folder, work_dir, views):
    steps = 6                                     # 9 training photos, 2 a step: the run crosses an epoch
    args = ['-d', photo_folder, '--max-iter', steps, '--save-interval', 3] + views + NARROW + UNIFORM_BINS
    reference, killed = os.path.join(work_dir, 'reference'), os.path.join(work_dir, 'killed')
    err, reference_err = os.path.join(work_dir, 'stderr.txt'), os.path.join(work_dir, 'reference-stderr.txt')
    reference_run = start_training(reference, '-o', reference, *args, log_to=reference_err)   # side by side

    # a random kill point each run; COLORIZER_KILL_SEED=N replays a failure (the seed is in every message)
    seed = int(os.environ.get('COLORIZER_KILL_SEED', time.time_ns() % 10000))
    kill_after = random.Random(seed).randint(1, steps - 2)   # train rows seen before the kill
    print('kill seed %d: after %d train rows' % (seed, kill_after))
    proc = start_training(killed, '-o', killed, *args, log_to=err)
    while train_rows_written(killed) < kill_after:
        assert proc.poll() is None, 'finished before the kill: ' + open(err).read()[-3000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    at_kill = trainer.load_checkpoint(os.path.join(killed, trainer.CHECKPOINT))['iteration']
    assert at_kill < steps, 'kill seed %d: killed after %d rows' % (seed, kill_after)

    finish(start_training(killed, '--resume', os.path.join(killed, trainer.CHECKPOINT), log_to=err), err)
    finish(reference_run, reference_err)

    ref_rows, rows = read_rows(reference), read_rows(killed)
    train, valid = column(rows, 'train'), column(rows, 'valid')   # each iteration at most once
    assert sorted(train) == list(range(steps)), 'kill seed %d: killed after %d rows' % (seed, kill_after)
    assert sorted(valid) == sorted(column(ref_rows, 'valid'))
    assert train == column(ref_rows, 'train')   # the same batches and dropout masks: the same losses
    assert not [f for f in os.listdir(killed) if '.tmp' in f]

    want, got = (trainer.load_checkpoint(os.path.join(d, trainer.CHECKPOINT)) for d in (reference, killed))
    assert got['iteration'] == want['iteration'] == steps
    for name, value in want['model_state_dict'].items():
        torch.testing.assert_close(got['model_state_dict'][name], value, rtol=0, atol=1e-6, msg=name)
    for i, state in want['optim_state_dict']['state'].items():
        torch.testing.assert_close(got['optim_state_dict']['state'][i]['exp_avg'], state['exp_avg'],
                                   rtol=0, atol=1e-6)


def test_loader_position_and_workers_leave_the_batches_and_the_global_rng_alone(photo_folder):
    """A loader started mid-epoch, with worker processes, yields the tail of the same epoch, and
    starting it draws nothing from the global torch RNG (whose stream drives dropout)."""
    files = data_loader.find_images(photo_folder)
    dataset = data_loader.ColorizeImageNet(photo_folder, files=files, im_size=(16, 16))
    cfg = {'seed': 7, 'prefetch_factor': 2}
    process = runtime.Runtime(None, config.get_config(199))

    def epoch(start, workers):
        sampler = runtime.ResumableSampler(len(dataset), True, cfg['seed'])
        sampler.set_position(2, start)
        return [b for b in trainer.make_loader(dataset, sampler, 2, cfg, process, workers)]

    rng_before = torch.get_rng_state()
    whole, tail = epoch(0, 0), epoch(4, 2)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert [b['index'].tolist() for b in whole[2:]] == [b['index'].tolist() for b in tail]
    assert all(torch.equal(a['rgb'], b['rgb']) for a, b in zip(whole[2:], tail))
    expected = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(7 + 2)).tolist()
    assert [i for b in whole for i in b['index'].tolist()] == expected


def test_augmented_views_do_not_depend_on_the_loader_position_or_workers(photo_folder):
    """Epoch 3 of a 2-crops-per-photo set, whole or started mid-epoch with 2 workers: the same views;
    epoch 4 draws other ones."""
    files = data_loader.find_images(photo_folder)[:4]
    dataset = data_loader.ColorizeImageNet(photo_folder, files=files, im_size=(16, 16),
                                           augmentation=data_loader.Augmentation(7, 2, (0.2, 0.8), hflip=True))
    cfg = {'seed': 7, 'prefetch_factor': 2}
    process = runtime.Runtime(None, config.get_config(199))

    def epoch(number, start, workers):
        sampler = runtime.ResumableSampler(len(dataset), True, cfg['seed'], numbered_by_epoch=True)
        sampler.set_position(number, start)
        return [b for b in trainer.make_loader(dataset, sampler, 2, cfg, process, workers)]

    whole, tail, next_epoch = epoch(3, 0, 0), epoch(3, 4, 2), epoch(4, 0, 0)
    assert [b['index'].tolist() for b in whole[2:]] == [b['index'].tolist() for b in tail]
    assert all(torch.equal(a['rgb'], b['rgb']) for a, b in zip(whole[2:], tail))
    assert sorted(i for b in whole for i in b['index'].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    views = {tuple(b['rgb'][j].flatten().tolist()) for b in whole + next_epoch for j in range(len(b['rgb']))}
    assert len(views) == 16


# --------------------------------------------------------------------------
# a kill in the middle of a checkpoint save
# --------------------------------------------------------------------------

DIE_WHILE_SAVING = r'''
import builtins, os, signal, sys, torch
sys.path.insert(0, sys.argv[1])
import runtime
path = sys.argv[2]
runtime.atomic_torch_save({'version': 1, 'weights': torch.ones(2_000_000)}, path)

real_open = builtins.open
class DyingFile:
    """A file whose process is SIGKILLed once 1 MB has reached the disk."""
    def __init__(self, f):
        self.f, self.written = f, 0
    def write(self, data):
        self.written += self.f.write(data)
        if self.written > 1_000_000:
            self.f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return len(data)
    def __getattr__(self, name):
        return getattr(self.f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
builtins.open = lambda file, mode='r', *a, **k: (DyingFile if 'w' in mode else lambda f: f)(real_open(file, mode, *a, **k))
runtime.atomic_torch_save({'version': 2, 'weights': torch.full((2_000_000,), 2.0)}, path)
print('not killed')
'''


def test_a_kill_during_a_checkpoint_save_leaves_the_previous_checkpoint(work_dir):
    path = os.path.join(work_dir, trainer.CHECKPOINT)
    proc = subprocess.run([sys.executable, '-c', DIE_WHILE_SAVING, REPO_DIR, path], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    kept = torch.load(path, weights_only=True)
    assert kept['version'] == 1 and torch.equal(kept['weights'], torch.ones(2_000_000))
    partial = [os.path.join(work_dir, f) for f in os.listdir(work_dir) if f != trainer.CHECKPOINT]
    assert len(partial) == 1 and 1_000_000 < os.path.getsize(partial[0]) < os.path.getsize(path)
    with pytest.raises(Exception):   # the half-written file really is broken
        torch.load(partial[0], weights_only=True)
    runtime.remove_stale_temporaries(work_dir, [trainer.CHECKPOINT])   # what a --resume does first
    assert os.listdir(work_dir) == [trainer.CHECKPOINT]


# --------------------------------------------------------------------------
# bad data
# --------------------------------------------------------------------------

def png_header(width, height):
    """A PNG that claims ``width x height`` pixels but holds no pixel data (a few dozen bytes)."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


def make_odd_images(folder):
    """Convertible images and the RGB each must become (by an independent numpy reference)."""
    os.makedirs(folder, exist_ok=True)
    photo = skimage_photo('coffee', (24, 16))
    expected = {}

    cmyk = np.asarray(Image.fromarray(photo).convert('CMYK'))
    Image.fromarray(cmyk, 'CMYK').save(os.path.join(folder, 'cmyk.tif'))
    c, k = cmyk[..., :3].astype(float), cmyk[..., 3:].astype(float)
    expected['cmyk.tif'] = (255 - c) * (255 - k) / 255

    gray16 = (photo.mean(-1) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(os.path.join(folder, 'gray16.png'))
    expected['gray16.png'] = np.repeat((gray16 / 65535 * 255)[..., None], 3, -1)

    palette_img = Image.fromarray(photo).convert('P', palette=Image.Palette.ADAPTIVE, colors=12)
    palette_img.save(os.path.join(folder, 'palette.png'))
    palette = np.array(palette_img.getpalette()).reshape(-1, 3)
    expected['palette.png'] = palette[np.asarray(palette_img)]

    alpha = np.linspace(0, 255, photo.shape[1]).astype(np.uint8)[None, :].repeat(photo.shape[0], 0)
    Image.fromarray(np.dstack([photo, alpha]), 'RGBA').save(os.path.join(folder, 'rgba.png'))
    a = alpha[..., None] / 255.0
    expected['rgba.png'] = photo * a + 255 * (1 - a)          # composited on white

    exif = Image.Exif()
    exif[0x0112] = 6   # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(photo).save(os.path.join(folder, 'exif-rotated.jpg'), quality=95, exif=exif.tobytes())
    with Image.open(os.path.join(folder, 'exif-rotated.jpg')) as raw:
        expected['exif-rotated.jpg'] = np.rot90(np.asarray(raw.convert('RGB')), k=-1)

    Image.fromarray(photo[:1, :1]).save(os.path.join(folder, 'one-pixel.png'))
    expected['one-pixel.png'] = photo[:1, :1]

    Image.fromarray(photo[..., 1]).save(os.path.join(folder, 'gray.png'))
    expected['gray.png'] = np.repeat(photo[..., 1:2], 3, -1)
    return expected


def make_unreadable_files(folder):
    """Files that are no image (or too big); returns their names."""
    os.makedirs(folder, exist_ok=True)
    whole = io.BytesIO()
    Image.fromarray(skimage_photo('chelsea', (64, 48))).save(whole, 'JPEG')
    files = {
        'truncated.jpg': whole.getvalue()[:len(whole.getvalue()) // 2],
        'zero-bytes.jpg': b'',
        'text.jpg': b'this is a text file, not a JPEG\n' * 20,
        'random-bytes.png': np.random.RandomState(0).bytes(5000),
        'bomb.png': png_header(30000, 30000),
    }
    for name, data in files.items():
        with open(os.path.join(folder, name), 'wb') as f:
            f.write(data)
    return sorted(files)


def test_convertible_images_become_rgb_like_the_numpy_references(work_dir):
    for name, want in make_odd_images(work_dir).items():
        got = data_loader.load_rgb(os.path.join(work_dir, name), MAX_PIXELS)
        assert got.dtype == np.uint8 and got.shape == want.shape, name
        assert np.abs(got.astype(float) - want).max() <= 1.0, name


def test_unreadable_and_oversized_files_raise_unreadable_image(work_dir):
    for name in make_unreadable_files(work_dir) + ['missing.jpg']:
        with pytest.raises(data_loader.UnreadableImage):
            data_loader.load_rgb(os.path.join(work_dir, name), MAX_PIXELS)
    with pytest.raises(data_loader.UnreadableImage, match='pixels'):   # from the header, no decoding
        data_loader.load_rgb(os.path.join(work_dir, 'bomb.png'), MAX_PIXELS)
    with open(os.path.join(work_dir, 'big.png'), 'wb') as f:
        f.write(png_header(5000, 4000))
    with pytest.raises(data_loader.UnreadableImage, match=r'5000x4000 pixels is over the limit of 1000000'):
        data_loader.load_rgb(os.path.join(work_dir, 'big.png'), 1_000_000)


def test_training_on_a_mixed_folder_skips_exactly_the_unreadable_files(work_dir, train, capsys):
    """ImageNet-style root: a list naming good photos, convertible images, broken files and a
    missing one.  The run finishes, lists exactly the unreadable files, and uses the rest."""
    root = os.path.join(work_dir, 'imagenet')
    good = [os.path.relpath(p, root) for p in write_photos(os.path.join(root, 'train'), PHOTOS[:4])]
    converted = [os.path.join('train', n) for n in make_odd_images(os.path.join(root, 'train'))]
    broken = [os.path.join('train', n) for n in make_unreadable_files(os.path.join(root, 'train'))]
    broken.append(os.path.join('train', 'missing.jpg'))
    val = [os.path.relpath(p, root) for p in write_photos(os.path.join(root, 'val'), PHOTOS[4:6])]
    train_list = sorted(good + converted + broken)
    data_loader.write_list(os.path.join(root, 'files_100k_train.txt'), train_list)   # config 199: set 'small'
    data_loader.write_list(os.path.join(root, 'files_100k_val.txt'), val)
    batches = len(train_list) // 2 + 1

    run_dir = os.path.join(work_dir, 'run')
    done = train('fcn32s', '-d', root, '-o', run_dir, '--max-iter', batches, '--set', 'interval_validate=1000')
    assert done.iteration == batches   # at least one whole epoch went through
    with open(os.path.join(run_dir, trainer.SKIPPED_FILES)) as f:
        listed = [line.split('\t') for line in f.read().splitlines()]
    assert sorted(p for p, _ in listed) == sorted(os.path.join(root, p) for p in broken)   # each once
    assert 'pixels' in dict(listed)[os.path.join(root, 'train', 'bomb.png')]
    with open(os.path.join(run_dir, trainer.SKIPPED_COUNT)) as f:
        assert int(f.read()) == len(broken)
    warnings = [line for line in capsys.readouterr().err.splitlines() if 'skipped unreadable image' in line]
    assert sorted(w.split('skipped unreadable image ')[1].split(' (')[0] for w in warnings) == \
        sorted(os.path.join(root, p) for p in broken)   # one warning per file, not per epoch
    for index, path in enumerate(done.train_set.files):   # the convertible ones are used
        rgb, _, reason = done.train_set[index]
        assert (rgb is None) == (path in broken), (path, reason)
        assert rgb is None or rgb.shape == (3, 64, 64)


def test_a_dataset_without_any_readable_image_fails_at_start_naming_it(work_dir, train):
    folder = os.path.join(work_dir, 'broken')
    make_unreadable_files(folder)
    with pytest.raises(ValueError, match='no readable image in ' + re.escape(folder)):
        train('fcn32s', '-d', folder, '-o', os.path.join(work_dir, 'run1'))
    root = os.path.join(work_dir, 'imagenet')
    for split in ('train', 'val'):
        os.makedirs(os.path.join(root, split))
        data_loader.write_list(os.path.join(root, 'files_100k_%s.txt' % split), ['%s/gone.jpg' % split])
    with pytest.raises(ValueError, match='no readable image in ' + re.escape(os.path.join(root, 'files_100k_train.txt'))):
        train('fcn32s', '-d', root, '-o', os.path.join(work_dir, 'run2'))


# --------------------------------------------------------------------------
# non-finite losses (lr = 1e30: a step or two of Adam and the network computes NaN)
# --------------------------------------------------------------------------

def check_best_model_is_finite(run_dir, rows):
    """model_best.pth.tar is the model of the lowest finite validation loss, with finite weights."""
    valid = {it: float(v) for it, v in column(rows, 'valid').items()}
    finite = {it: v for it, v in valid.items() if np.isfinite(v)}
    best = trainer.load_checkpoint(os.path.join(run_dir, trainer.MODEL_BEST))
    assert best['best_loss'] == min(finite.values()) == finite[best['iteration']]
    assert all(torch.isfinite(v).all() for v in best['model_state_dict'].values() if v.is_floating_point())
    return valid


def test_a_non_finite_loss_stops_the_run_naming_the_iteration(photo_folder, train, work_dir):
    with pytest.raises(FloatingPointError, match=r'non-finite training loss .* at iteration \d+;') as stop:
        train('fcn32s', '-d', photo_folder, '-o', work_dir, '--max-iter', 6, '--set', 'lr=1e30')
    named = int(re.search(r'at iteration (\d+)', str(stop.value)).group(1))
    rows = read_rows(work_dir)
    assert sorted(column(rows, 'train')) == list(range(named))   # every step before it, not it
    check_best_model_is_finite(work_dir, rows)


def test_non_finite_steps_are_skipped_and_counted_when_configured(photo_folder, train, work_dir):
    done = train('fcn32s', '-d', photo_folder, '-o', work_dir, '--max-iter', 6,
                 '--set', 'lr=1e30', '--set', 'nonfinite_loss=skip')
    last = trainer.load_checkpoint(os.path.join(work_dir, trainer.CHECKPOINT))
    rows = read_rows(work_dir)
    assert last['iteration'] == done.iteration == 6
    assert last['nonfinite_steps'] == done.nonfinite_steps == 6 - len(column(rows, 'train')) > 0
    valid = check_best_model_is_finite(work_dir, rows)
    assert not np.isfinite(valid[6])   # the broken model was validated, and not kept as the best
