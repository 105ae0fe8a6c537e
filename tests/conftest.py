"""Shared test fixtures: small photo folders cut from scikit-image's photos, throw-away run folders,
and a runner for the training entry point (config 199: 64x64 images, K=8, fc_channels=32)."""
import contextlib
import os
import socket
import sys
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

# the colour photos that ship inside scikit-image (no download)
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry',
          'retina', 'colorwheel', 'motorcycle_left', 'motorcycle_right')
SMOKE_ARGS = ['-c', '199', '-j', '0']   # tiny config, no DataLoader worker processes
# VGG16 at a quarter of its width (a sixteenth of the compute, 18 MB run folders instead of 240 MB): for the
# slowest tests, which compare runs with each other (resume, DDP, the quality experiment's plumbing), never a
# learned quality with a threshold (docs/test-margins.md's trained models keep VGG16's width)
NARROW = ['--set', 'trunk_width=16']
UNIFORM_BINS = ['-b', 'uniform', '-k', '9']   # ... and no GMM to fit (scikit-learn's import and fit: ~2.5 s a run)
PHOTO_SIZE = (72, 56)                   # (width, height): the trainer resizes them to 64x64


def skimage_photo(name, size=PHOTO_SIZE):
    """uint8 ``[H, W, 3]`` scikit-image photo ``name`` resized to ``size`` (width, height)."""
    import skimage.data
    if name.startswith('motorcycle_'):
        left, right, _ = skimage.data.stereo_motorcycle()
        rgb = left if name.endswith('left') else right
    else:
        rgb = getattr(skimage.data, name)()
    return np.asarray(Image.fromarray(np.asarray(rgb)[..., :3]).resize(size, Image.BILINEAR))


def write_photos(folder, names=PHOTOS, size=PHOTO_SIZE):
    """PNG files ``folder/<name>.png``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name in names:
        paths.append(os.path.join(folder, name + '.png'))
        Image.fromarray(skimage_photo(name, size)).save(paths[-1])
    return paths


def temporary_folder():
    """A folder deleted afterwards (run folders hold checkpoints of ~200 MB: never kept)."""
    return tempfile.TemporaryDirectory(prefix='colorizer-test-')


@pytest.fixture(scope='session')
def photo_folder():
    """Ten small photos in a folder (a `-d` dataset)."""
    with temporary_folder() as folder:
        write_photos(folder)
        yield folder


@pytest.fixture
def work_dir():
    with temporary_folder() as folder:
        yield folder


@pytest.fixture(scope='session')
def train():
    """``train(arch, *args)``: trainer.main in this process with the smoke config and no workers."""
    import trainer

    def run(arch, *args):
        return trainer.main(arch, SMOKE_ARGS + [str(a) for a in args])
    return run


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun_environment(rank, world_size, port):
    """The environment torchrun gives process ``rank`` of a one-machine job."""
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size))


def spawn_ranks(fn, args, nprocs, timeout):
    """``fn(rank, *args)`` in ``nprocs`` fresh processes; a job still running after ``timeout``
    seconds (a hang) is killed and fails the test instead of blocking the suite.

    Fresh as torchrun's (no state of this process), but forked from one server process that
    imported torch and the trainer once for the session (``runtime.fresh_process_context``): not
    4-5 s of imports per rank and job."""
    import torch.multiprocessing as mp
    import runtime
    runtime.fresh_process_context()
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method='forkserver')
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                pytest.fail('%d-process job still running after %d s: a hang' % (nprocs, timeout))
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


def pytest_configure(config):
    config.addinivalue_line('markers', 'cuda: runs on a CUDA device (skipped without one; `-m cuda` selects them)')
    config.addinivalue_line('markers', 'browser: drives the web page (app.py) in headless Chromium (`-m browser`)')


HINT_MODEL_ITERATIONS = 250   # config 198 (64x64, batch 2): about 40 CPU-seconds per 100 iterations
HINT_MODEL_THREADS = 1        # ... in one thread (any machine, however busy), with deterministic algorithms
HINT_HUES = (0.1, 0.6)        # an orange and a blue, opposite on the chroma plane


def recoloured_photos(folder, count=24, size=PHOTO_SIZE, seed=0, names=PHOTOS[:3], hues=HINT_HUES):
    """A few photos' lightness, squeezed into [0.3, 0.7] (where every hue fits at chroma 0.6), each
    copy's left half in one of ``hues`` and its right half in the other, which side which drawn at
    random: the same lightness comes both ways round, so nothing but hints can tell a model the
    colour of a half.  Every photo holds both hues, so that the BatchNorm statistics of a batch of
    two keep the colour the hints tell (two photos of one hue each would reduce it to which of the
    two is the more orange); a model trained on them learns to take its colours from the hints."""
    import torch
    import utils
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        rgb = torch.from_numpy(skimage_photo(names[i % len(names)], size).copy()).permute(2, 0, 1).float() / 255
        lightness = 0.3 + 0.4 * utils.rgb_to_hcl(rgb)[2]
        left, right = hues if rng.random() < 0.5 else hues[::-1]
        hue = torch.full_like(lightness, left)
        hue[:, lightness.shape[1] // 2:] = right
        out = utils.hcl_to_rgb(hue, torch.full_like(lightness, 0.6), lightness)
        Image.fromarray(utils.to_uint8(out)).save(os.path.join(folder, '%02d.png' % i))
    return folder


@contextlib.contextmanager
def deterministic_torch(threads):
    """torch's deterministic algorithms in ``threads`` threads, as before afterwards."""
    import torch
    before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])


def train_hint_model(photos, run, seed=0, iterations=HINT_MODEL_ITERATIONS):
    """Config 198 trained on ``photos`` in ``HINT_MODEL_THREADS`` threads with deterministic algorithms;
    validated only before the first step and after the last, so its model_best.pth.tar is the last
    iterate (checked), not one picked by a noisy validation loss.  Returns that path."""
    import trainer
    with deterministic_torch(HINT_MODEL_THREADS):
        trainer.main('fcn32s', ['-c', '198', '-j', '0', '-d', str(photos), '-o', str(run), '--max-iter', str(iterations),
                                '--set', 'seed=%d' % seed, '--set', 'interval_validate=%d' % iterations])
    path = os.path.join(str(run), trainer.MODEL_BEST)
    assert trainer.load_checkpoint(path)['iteration'] == iterations, \
        'the last iterate of the hint model is not its model_best: training made it worse than untrained'
    return path


HINT_MODEL_TIMEOUT_S = 1800   # the background training of the session's hint model (~90 s here)
HINT_MODEL_JOB = {}           # 'process', 'folder', 'log' of that training, once started


def hint_model_job_code(folder):
    """Python source that trains the session's hint model into ``folder``/run (a child process)."""
    return ('import sys; sys.path[:0] = [%r, %r]; import conftest; '
            'conftest.train_hint_model(conftest.recoloured_photos(%r), %r)'
            % (os.path.dirname(os.path.abspath(__file__)), REPO_DIR, os.path.join(folder, 'recoloured'),
               os.path.join(folder, 'run')))


def pytest_collection_modifyitems(session, config, items):
    """The hint model trains in one thread: start it in a child process as soon as the tests that
    need it are collected, so that it runs on the other core while the suite goes on (the same
    deterministic training as in this process: same weights)."""
    if not any('hint_model' in getattr(item, 'fixturenames', ()) for item in items):
        return
    import subprocess
    folder = temporary_folder()
    log = open(os.path.join(folder.name, 'train.log'), 'w+')
    HINT_MODEL_JOB.update(folder=folder, log=log, process=subprocess.Popen(
        [sys.executable, '-c', hint_model_job_code(folder.name)], stdout=log, stderr=subprocess.STDOUT,
        cwd=REPO_DIR))


def pytest_sessionfinish(session, exitstatus):
    if HINT_MODEL_JOB:
        if HINT_MODEL_JOB['process'].poll() is None:
            HINT_MODEL_JOB['process'].kill()
            HINT_MODEL_JOB['process'].wait()
        HINT_MODEL_JOB['log'].close()
        HINT_MODEL_JOB['folder'].cleanup()


@pytest.fixture(scope='session')
def hint_model():
    """model_best.pth.tar of a tiny hint model (config 198: :func:`train_hint_model`, seed 0; its
    last iterate) trained once for the session on :func:`recoloured_photos`, by the child process
    that collection started (:func:`pytest_collection_modifyitems`)."""
    import subprocess
    import trainer
    try:
        status = HINT_MODEL_JOB['process'].wait(timeout=HINT_MODEL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail('the hint model still trains after %d s' % HINT_MODEL_TIMEOUT_S)
    if status != 0:
        HINT_MODEL_JOB['log'].seek(0)
        pytest.fail('training the hint model failed (exit status %d):\n%s'
                    % (status, HINT_MODEL_JOB['log'].read()[-3000:]))
    return os.path.join(HINT_MODEL_JOB['folder'].name, 'run', trainer.MODEL_BEST)


@pytest.fixture(scope='session')
def plain_model(tmp_path_factory):
    """model_best.pth.tar of a tiny lightness-only model (config 199, 2 iterations)."""
    import trainer
    run = tmp_path_factory.mktemp('plain-model') / 'run'
    trainer.main('fcn32s', SMOKE_ARGS + ['-o', str(run), '--max-iter', '2'])
    return str(run / trainer.MODEL_BEST)


# the web page's fixtures (a hint model, a photo, the server), shared by tests/test_app*.py
from app_support import app_hint_model, photo, server  # noqa: E402,F401
