"""Every user mistake gets one ``error:`` line and exit status 2, never a traceback (issue 13).

Each script gets a table of bad invocations.  Most run in this process through
``cli.run_cli`` (what the scripts' ``__main__`` runs) with stderr captured; a few
run as real subprocesses, one per script at least.  For each: the exit status,
exactly one stderr line, starting ``error:`` and naming the offending key, value
or file, no ``Traceback``, and no new run folder (nothing new under ``logs/``,
no ``-o`` folder made, nothing changed in an existing one).
"""
import concurrent.futures
import contextlib
import functools
import importlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO_DIR, temporary_folder, write_photos

import cli
import colorize
import data_loader
import evaluate
import run_imagenet_bright_images
import run_setup
import trainer

SMOKE = ['-c', '199', '-j', '0']
HAS_CUDA = torch.cuda.is_available()


# --------------------------------------------------------------------------
# bad (and good) files, made once
# --------------------------------------------------------------------------

def save_variant(source, path, change):
    ckpt = torch.load(source, map_location='cpu', weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope='module')
def files(photo_folder):
    """Name -> path: real FCN-32s / FCN-16s checkpoints of config 199 and broken files of many kinds."""
    with temporary_folder() as tmp:
        yield broken_files(photo_folder, pathlib.Path(tmp))


def broken_files(photo_folder, tmp):
    f = {'photos': photo_folder, 'tmp': str(tmp)}
    f['run32'] = str(tmp / 'run32')
    trainer.main('fcn32s', SMOKE + ['-d', photo_folder, '-o', f['run32'], '--max-iter', '0'])
    f['ckpt32'] = os.path.join(f['run32'], trainer.CHECKPOINT)
    f['best32'] = os.path.join(f['run32'], trainer.MODEL_BEST)
    f['ckpt16'] = os.path.join(str(tmp / 'run16'), trainer.CHECKPOINT)
    trainer.main('fcn16s', SMOKE + ['-d', photo_folder, '-m', f['best32'], '-o', str(tmp / 'run16'),
                                    '--max-iter', '0'])
    data = open(f['best32'], 'rb').read()
    f['truncated'] = str(tmp / 'truncated.pth.tar')
    open(f['truncated'], 'wb').write(data[:len(data) // 2])
    f['random'] = str(tmp / 'random.bin')
    open(f['random'], 'wb').write(os.urandom(4096))
    f['text'] = str(tmp / 'passwd')
    open(f['text'], 'w').write('root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n')
    f['other'] = str(tmp / 'other.pth.tar')
    torch.save({'weights': torch.zeros(3)}, f['other'])
    f['misshaped'] = save_variant(f['best32'], str(tmp / 'misshaped.pth.tar'),
                                  lambda c: c['model_state_dict'].__setitem__('conv1_1.weight', torch.zeros(3)))
    f['no_tensor'] = save_variant(f['best32'], str(tmp / 'no-tensor.pth.tar'),
                                  lambda c: c['model_state_dict'].pop('score_fr.weight'))
    f['fcn4s'] = save_variant(f['best32'], str(tmp / 'fcn4s.pth.tar'), lambda c: c.__setitem__('arch', 'fcn4s'))
    f['bad_config'] = save_variant(f['ckpt32'], str(tmp / 'bad-config.pth.tar'),
                                   lambda c: c['config'].__setitem__('lr', 'abc'))
    f['not_vgg'] = str(tmp / 'not-vgg.pth')
    torch.save({'features.0.weight': torch.zeros(64, 3, 3, 3)}, f['not_vgg'])
    f['empty'] = str(tmp / 'empty')
    os.makedirs(f['empty'])
    f['unreadable_photos'] = str(tmp / 'unreadable')
    os.makedirs(f['unreadable_photos'])
    for name in ('a.jpg', 'b.png', 'c.jpg'):
        open(os.path.join(f['unreadable_photos'], name), 'wb').write(b'not an image at all')
    f['a_file'] = str(tmp / 'a-file.txt')
    open(f['a_file'], 'w').write('x\n')
    f['missing'] = str(tmp / 'missing.pth.tar')
    f['new_out'] = str(tmp / 'never-made')
    return f


def expand(args, f):
    """'{name}' -> the path of that file."""
    return [a.format(**f) for a in args]


def logs_listing():
    return set(os.listdir(run_setup.LOGS_DIR)) if os.path.isdir(run_setup.LOGS_DIR) else set()


def tree_state(folder):
    """{relative path: (size, mtime)} of everything below ``folder``."""
    state = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            state[os.path.relpath(path, folder)] = (os.path.getsize(path), os.stat(path).st_mtime_ns)
    return state


def assert_one_error_line(err, needle):
    lines = [line for line in err.splitlines() if line.strip()]
    assert 'Traceback' not in err, err
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    assert needle in lines[0], (needle, lines[0])


def run_in_process(main, argv, capsys):
    """``cli.run_cli(main, argv)`` -> (status, stderr); argparse's own exit is caught like the script's."""
    capsys.readouterr()
    try:
        status = cli.run_cli(main, argv)
    except SystemExit as done:
        status = done.code
    return status, capsys.readouterr().err


NOTHING_LEFT = {'new run folders': [], '-o made': False, 'run32 changed': False}


@contextlib.contextmanager
def left_behind(files):
    """Yields a dict, filled when the block ends with what it left: new run folders under logs/ (then
    removed: a check that let a run through leaves no folder behind), the -o folder, run32 changed."""
    before, run32 = logs_listing(), tree_state(files['run32'])
    left = {}
    yield left
    new = logs_listing() - before
    for name in new:
        shutil.rmtree(os.path.join(run_setup.LOGS_DIR, name), ignore_errors=True)
    left.update({'new run folders': sorted(new), '-o made': os.path.exists(files['new_out']),
                 'run32 changed': tree_state(files['run32']) != run32})


@pytest.fixture
def no_new_run_folder(files):
    """Nothing new under logs/, no -o folder made, the existing run folder untouched."""
    with left_behind(files) as left:
        yield
    assert left == NOTHING_LEFT


# --------------------------------------------------------------------------
# the train scripts
# --------------------------------------------------------------------------

TRAIN_CASES = [
    # (arch, arguments after the smoke config, text the error line names)
    ('fcn32s', ['--set', 'lr=abc'], "lr: 'abc' is not a number"),
    ('fcn32s', ['-k', '0'], 'numbins: 0 - must be an integer >= 2'),
    ('fcn32s', ['--vgg16', '{text}'], '{text}'),
    ('fcn32s', ['-c', '999'], 'no configuration 999'),
    ('fcn32s', ['-d', '/nonexistent-colorizer-folder'], '/nonexistent-colorizer-folder'),
    ('fcn32s', ['-d', '{empty}'], 'no image files'),
    ('fcn32s', ['--resume', '{missing}'], '{missing}'),
    ('fcn32s', ['--set', 'lerning_rate=1'], "unknown config key 'lerning_rate'"),
    ('fcn32s', ['--set', 'numbin=8'], "unknown config key 'numbin' (did you mean numbins?)"),
    ('fcn32s', ['--set', 'lr'], "--set 'lr': expected KEY=VALUE"),
    ('fcn32s', ['--set', 'im_size=[0,0]'], 'im_size: [0, 0] - must be two integers >= 32'),
    ('fcn32s', ['--set', 'im_size=[64]'], 'im_size: [64]'),
    ('fcn32s', ['--set', 'im_size=[1,'], "--set im_size: '[1,' is not a YAML value"),
    ('fcn32s', ['--set', 'binning=softt'], "binning: 'softt' - must be one of soft, uniform, one-hot"),
    ('fcn32s', ['-b', 'uniform', '-k', '10'], 'numbins: 10 - uniform binning needs a perfect square'),
    ('fcn32s', ['-b', 'one-hot', '--set', 'rebalance_lambda=0.5'], 'rebalance_lambda: 0.5'),
    ('fcn32s', ['--set', 'momentum=1.5'], 'momentum: 1.5'),
    ('fcn32s', ['--set', 'optim=adam'], "optim: 'adam' - must be one of SGD, Adam (did you mean Adam?)"),
    ('fcn32s', ['--set', 'batch_size=0'], 'batch_size: 0'),
    ('fcn32s', ['--set', 'batch_size=2.5'], 'batch_size: 2.5'),
    ('fcn32s', ['--set', 'val_fraction=1'], 'val_fraction: 1'),
    ('fcn32s', ['--set', 'temperature=0'], 'temperature: 0'),
    ('fcn32s', ['--set', 'decode=median'], "decode: 'median'"),
    ('fcn32s', ['--set', 'train_set=huge'], "train_set: 'huge'"),
    ('fcn32s', ['--set', 'init_from=26'], 'init_from: 26'),
    ('fcn32s', ['--set', 'amp=maybe'], "amp: 'maybe' - must be true or false"),
    ('fcn32s', ['--set', 'seed=-1'], 'seed: -1'),
    ('fcn32s', ['--set', 'weight_decay=-0.1'], 'weight_decay: -0.1'),
    ('fcn32s', ['--set', 'uniform_sigma=wide'], "uniform_sigma: 'wide'"),
    ('fcn32s', ['--set', 'fc_channels=0'], 'fc_channels: 0'),
    ('fcn32s', ['--set', 'padding=valid'], "padding: 'valid'"),
    ('fcn32s', ['--set', 'workers=many'], "workers: 'many' is not a number"),
    ('fcn32s', ['--max-iter', '-1'], 'argument --max-iter: -1'),
    ('fcn32s', ['-j', '-1'], 'argument -j/--workers: -1'),
    ('fcn32s', ['--save-interval', '0'], 'argument --save-interval: 0'),
    ('fcn32s', ['-c', 'abc'], "argument -c/--config: invalid int value: 'abc'"),
    ('fcn32s', ['-b', 'softt'], "argument -b/--binning: invalid choice: 'softt'"),
    ('fcn32s', ['-m', '{truncated}'], '{truncated} cannot be read as a checkpoint: truncated'),
    ('fcn32s', ['-m', '{random}'], '{random} cannot be read as a checkpoint'),
    ('fcn32s', ['-m', '{text}'], '{text} cannot be read as a checkpoint'),
    ('fcn32s', ['-m', '{other}'], '{other} is not a colorizer-fcn checkpoint'),
    ('fcn32s', ['-m', '{misshaped}'], '{misshaped}: its weights do not fit a FCN32sColor'),
    ('fcn32s', ['-m', '{no_tensor}'], 'missing score_fr.weight'),
    ('fcn32s', ['-m', '{fcn4s}'], "{fcn4s}: unknown architecture 'fcn4s'"),
    ('fcn32s', ['-m', '{empty}'], '{empty} is a folder'),
    ('fcn32s', ['--resume', '{ckpt16}'], '{ckpt16} is a fcn16s checkpoint'),
    ('fcn8s', ['-m', '{best32}', '-d', '{photos}'], 'cannot initialise fcn8s from a fcn32s checkpoint ({best32})'),
    ('fcn16s', ['-m', '{best32}', '-k', '16', '-d', '{photos}'], '{best32} was trained with soft binning and K=8'),
    ('fcn16s', ['-m', '{best32}', '--set', 'trunk_width=16', '-d', '{photos}'],
     '{best32} was trained with trunk_width 64, this run asks for 16 (--set trunk_width=64 to match)'),
    ('fcn32s', ['--set', 'trunk_width=16', '--vgg16', 'imagenet'], 'trunk_width: 16 - VGG16 weights'),
    ('fcn32s', ['--resume', '{bad_config}'], "{bad_config} (its config): lr: 'abc' is not a number"),
    ('fcn32s', ['--resume', '{ckpt32}', '-k', '9'], 'numbins cannot change'),
    ('fcn32s', ['-o', '{run32}'], '{run32} already holds a run'),
    ('fcn32s', ['-o', '{a_file}'], '-o {a_file} is a file'),
    ('fcn32s', ['-d', '{a_file}'], '{a_file} is not a folder'),
    ('fcn32s', ['--vgg16', '{missing}'], '{missing} does not exist'),
    ('fcn32s', ['--vgg16', '{random}'], '{random} cannot be read as a VGG16 state dict'),
    ('fcn32s', ['--vgg16', '{not_vgg}'], '{not_vgg}: expected a torchvision vgg16'),
    ('fcn16s', ['--set', 'init_from=199', '--set', 'lr=0.1'], 'no model_best.pth.tar from a run of config 199'),
    ('fcn32s', ['-d', '{unreadable_photos}', '-o', '{new_out}'], 'no readable image in {unreadable_photos}'),
]
if not HAS_CUDA:
    TRAIN_CASES += [
        ('fcn32s', ['--set', 'sync_bn=true'], 'sync_bn: true - torch.nn.SyncBatchNorm runs on CUDA only'),
        ('fcn32s', ['-g', '0'], '-g 0: CUDA is not available'),
    ]


@pytest.mark.parametrize('arch, args, needle', TRAIN_CASES, ids=[' '.join(c[1]) for c in TRAIN_CASES])
def test_train_scripts_refuse_in_one_line(arch, args, needle, files, capsys, no_new_run_folder):
    status, err = run_in_process(functools.partial(trainer.main, arch), SMOKE + expand(args, files), capsys)
    assert status == 2, err
    assert_one_error_line(err, needle.format(**files))


def test_train_without_a_config_is_a_usage_error(capsys, no_new_run_folder):
    status, err = run_in_process(functools.partial(trainer.main, 'fcn32s'), ['-j', '0'], capsys)
    assert status == 2
    assert_one_error_line(err, '-c/--config is required')


def test_debug_shows_the_traceback_of_a_user_error(capsys, no_new_run_folder):
    status, err = run_in_process(functools.partial(trainer.main, 'fcn32s'), SMOKE + ['--set', 'lr=abc', '--debug'],
                                 capsys)
    assert status == 2 and 'Traceback' in err and 'ConfigError' in err
    assert err.strip().splitlines()[-1] == "error: lr: 'abc' is not a number (must be a number > 0)"


def test_an_internal_error_keeps_its_traceback():
    def broken(argv):
        raise KeyError('a bug of ours')
    with pytest.raises(KeyError):
        cli.run_cli(broken, [])
    assert cli.run_cli(lambda argv: 3, []) == 3 and cli.run_cli(lambda argv: object(), []) == 0


def test_a_stop_is_one_line_with_status_1(capsys):
    def diverged(argv):
        raise FloatingPointError('non-finite training loss (nan on rank 0) at iteration 3; the last good state '
                                 'is run/checkpoint.pth.tar')
    assert cli.run_cli(diverged, [], stops=trainer.STOPS) == 1
    assert_one_error_line(capsys.readouterr().err, 'the last good state is run/checkpoint.pth.tar')


@pytest.mark.parametrize('unreadable,needle', [
    ('train', 'a whole epoch of batches without a readable image'),
    ('val', 'no readable validation image'),
])
def test_inputs_that_become_unreadable_mid_run_stop_with_status_1(unreadable, needle, photo_folder, tmp_path,
                                                                 monkeypatch, capsys):
    """Files that pass the start-up check but cannot be read later: a stop naming the last checkpoint."""
    make_loader, made = trainer.make_loader, []

    def make_loader_losing_files(dataset, sampler, batch_size, cfg, runtime, workers):
        loader = make_loader(dataset, sampler, batch_size, cfg, runtime, workers)
        made.append(dataset)   # the Trainer makes the training loader first, then the validation one
        if made.index(dataset) == ('train', 'val').index(unreadable):
            loader.collate_fn = lambda batch: data_loader.collate_skip_unreadable(
                [(None, i, 'gone') for _, i, _ in batch])
        return loader
    monkeypatch.setattr(trainer, 'make_loader', make_loader_losing_files)
    run_dir = str(tmp_path / 'run')
    status = cli.run_cli(functools.partial(trainer.main, 'fcn32s'), SMOKE + ['-d', photo_folder, '-o', run_dir],
                         stops=trainer.STOPS)
    assert status == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and needle in lines[0] and 'Traceback' not in err, err
    if unreadable == 'train':   # validated (and checkpointed) at iteration 0 first
        assert 'the last good state is %s (iteration 0)' % os.path.join(run_dir, trainer.CHECKPOINT) in lines[0]
        assert trainer.load_checkpoint(os.path.join(run_dir, trainer.CHECKPOINT))['iteration'] == 0
    else:
        assert 'no checkpoint was written yet' in lines[0]


# --------------------------------------------------------------------------
# colorize.py and evaluate.py
# --------------------------------------------------------------------------

COLORIZE_CASES = [
    (['-m', '{text}', '{photos}'], '{text} cannot be read as a checkpoint'),
    (['-m', '{missing}', '{photos}'], 'checkpoint {missing} does not exist'),
    (['-m', '{truncated}', '{photos}'], '{truncated} cannot be read as a checkpoint: truncated'),
    (['-m', '{random}', '{photos}'], '{random} cannot be read'),
    (['-m', '{other}', '{photos}'], '{other} is not a colorizer-fcn checkpoint'),
    (['-m', '{misshaped}', '{photos}'], '{misshaped}: its weights do not fit'),
    (['-m', '{fcn4s}', '{photos}'], "unknown architecture 'fcn4s'"),
    (['-m', '{bad_config}', '{photos}'], "{bad_config} (its config): lr: 'abc' is not a number"),
    (['-m', '{empty}', '{photos}'], '{empty} is a folder'),
    (['-m', '{best32}', '{empty}'], 'no image found in {empty}'),
    (['-m', '{best32}', '--batch-size', '0', '{photos}'], 'argument --batch-size: 0'),
    (['-m', '{best32}', '-T', '0', '{photos}'], 'argument -T/--temperature'),
    (['-m', '{best32}', '-T', 'abc', '{photos}'], "'abc' is not a number"),
    (['-m', '{best32}', '--decode', 'median', '{photos}'], "invalid choice: 'median'"),
    (['-m', '{best32}', '--max-pixels', '0', '{photos}'], 'argument --max-pixels: 0'),
    (['-m', '{best32}', '--device', 'tpu', '{photos}'], "argument --device: 'tpu' is not a device"),
    (['-m', '{best32}', '--png-compression', '11', '{photos}'], 'argument --png-compression'),
    (['-m', '{best32}'], 'the following arguments are required: INPUT'),
    (['{photos}'], 'the following arguments are required: -m/--model'),
    (['-m', '{best32}', '-o', '{a_file}', '{photos}'], '-o {a_file} is a file'),
]
if not HAS_CUDA:
    COLORIZE_CASES.append((['-m', '{best32}', '--device', 'cuda', '{photos}'], 'cuda is not available'))


@pytest.mark.parametrize('args, needle', COLORIZE_CASES, ids=[' '.join(c[0]) for c in COLORIZE_CASES])
def test_colorize_refuses_in_one_line(args, needle, files, capsys, tmp_path):
    argv = ['--device', 'cpu', '-o', str(tmp_path / 'out')] + expand(args, files)
    status, err = run_in_process(colorize.main, argv, capsys)
    assert status == 2, err
    assert_one_error_line(err, needle.format(**files))
    assert not (tmp_path / 'out').exists()


def test_colorize_exit_status_counts_unreadable_inputs(files, capsys, tmp_path):
    good = write_photos(str(tmp_path / 'in'), names=('astronaut', 'coffee'))
    broken = tmp_path / 'in' / 'broken.jpg'
    broken.write_bytes(b'\xff\xd8 no JPEG')
    base = ['-m', files['best32'], '--device', 'cpu']
    assert run_in_process(colorize.main, base + ['-o', str(tmp_path / 'all')] + good, capsys)[0] == 0
    status, err = run_in_process(colorize.main, base + ['-o', str(tmp_path / 'some'), str(broken)] + good, capsys)
    assert status == 1 and 'broken.jpg' in err and 'Traceback' not in err
    assert sorted(os.listdir(tmp_path / 'some')) == ['astronaut.png', 'coffee.png']   # the others are written
    capsys.readouterr()
    colorize.main(base + ['-o', str(tmp_path / 'again'), str(broken)] + good)
    assert 'colorized 2 image(s) into %s, 1 unreadable' % (tmp_path / 'again') in capsys.readouterr().out


EVALUATE_CASES = [
    (['-m', '{text}'], '{text} cannot be read as a checkpoint'),
    (['-m', '{missing}'], '{missing} does not exist'),
    (['-m', '{truncated}'], '{truncated} cannot be read as a checkpoint: truncated'),
    (['-m', '{bad_config}'], "{bad_config} (its config): lr: 'abc'"),
    (['-m', '{best32}', '-d', '/nonexistent-colorizer-folder'], '/nonexistent-colorizer-folder'),
    (['-m', '{best32}', '-d', '{photos}', '--list', '{missing}'], '--list {missing}: no such file'),
    (['-m', '{best32}', '-d', '{empty}'], 'no image to evaluate in {empty}'),
    (['-m', '{best32}', '--max-images', '0'], 'argument --max-images: 0'),
    (['-m', '{best32}', '--grid-images', '-1'], 'argument --grid-images: -1'),
    (['-m', '{best32}', '-T', '0'], 'argument -T/--temperature'),
    (['-m', '{best32}', '--batch-size', '-1'], 'argument --batch-size: -1'),
    (['-m', '{best32}', '-o', '{a_file}'], '-o {a_file} is a file'),
    (['-m', '{best32}', '--hint-method', 'levin'], '--hint-method levin needs --hint-points'),
    (['-m', '{best32}', '--hint-points', '0,2', '--hint-method', 'fastest'], 'argument --hint-method'),
    ([], 'the following arguments are required: -m/--model'),
]


@pytest.mark.parametrize('args, needle', EVALUATE_CASES, ids=[' '.join(c[0]) for c in EVALUATE_CASES])
def test_evaluate_refuses_in_one_line(args, needle, files, capsys, tmp_path):
    argv = ['--device', 'cpu', '-o', str(tmp_path / 'out')] + expand(args, files)
    status, err = run_in_process(evaluate.main, argv, capsys)
    assert status == 2, err
    assert_one_error_line(err, needle.format(**files))
    assert not (tmp_path / 'out').exists()


def test_evaluate_reports_a_list_line_naming_no_file_and_exits_1(files, capsys, tmp_path):
    listing = tmp_path / 'list.txt'
    listing.write_text('astronaut.png 1\nno-such-photo.png 2\n\ncoffee.png 3\n')
    argv = ['-m', files['best32'], '--device', 'cpu', '-d', files['photos'], '--list', str(listing),
            '-o', str(tmp_path / 'out')]
    status, _ = run_in_process(evaluate.main, argv, capsys)
    assert status == 1
    capsys.readouterr()
    evaluate.main(argv)
    out = capsys.readouterr().out
    assert '2 images scored' in out and '1 skipped' in out
    assert 'line 2 of %s names no file' % listing in out
    assert (tmp_path / 'out' / 'metrics.json').exists()


# --------------------------------------------------------------------------
# run_imagenet_bright_images.py and the benchmarks
# --------------------------------------------------------------------------

BRIGHT_CASES = [
    (['--root', '/nonexistent-colorizer-folder'], '/nonexistent-colorizer-folder is not a folder'),
    (['--root', '{empty}'], 'no image files in {empty}'),
    (['--root', '{photos}', '--split', 'nope'], 'nope is not a folder'),
    (['--root', '{photos}', '--method', 'hue'], "argument --method: invalid choice: 'hue'"),
    (['--root', '{photos}', '-j', '-1'], 'argument -j/--workers: -1'),
    (['--root', '{photos}', '--max-image-pixels', '0'], 'argument --max-image-pixels: 0'),
    (['--root', '{photos}', '--out', '{a_file}'], '--out {a_file} is a file'),
]


@pytest.mark.parametrize('args, needle', BRIGHT_CASES, ids=[' '.join(c[0]) for c in BRIGHT_CASES])
def test_bright_images_refuses_in_one_line(args, needle, files, capsys):
    status, err = run_in_process(run_imagenet_bright_images.main, expand(args, files), capsys)
    assert status == 2, err
    assert_one_error_line(err, needle.format(**files))


def bench(name):
    sys.path.insert(0, os.path.join(REPO_DIR, 'bench'))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(os.path.join(REPO_DIR, 'bench'))


BENCH_CASES = [
    ('bench_train', ['--archs', 'fcn32s,fcn4s'], "--archs: unknown architecture 'fcn4s'"),
    ('bench_train', ['--steps', '0'], 'argument --steps: 0'),
    ('bench_train', ['-b', 'x'], "argument -b/--batch-size: 'x' is not an integer"),
    ('bench_targets', ['-d', '{empty}'], 'no image files in {empty}'),
    ('bench_targets', ['-k', '0'], 'argument -k/--numbins: 0'),
    ('bench_allocator', ['--steps', '0'], 'argument --steps: 0'),
]


@pytest.mark.parametrize('name, args, needle', BENCH_CASES, ids=[n + ' ' + ' '.join(a) for n, a, _ in BENCH_CASES])
def test_benchmarks_refuse_in_one_line(name, args, needle, files, capsys):
    status, err = run_in_process(bench(name).main, expand(args, files), capsys)
    assert status == 2, err
    assert_one_error_line(err, needle.format(**files))


# --------------------------------------------------------------------------
# the real scripts, as a user runs them
# --------------------------------------------------------------------------

SUBPROCESS_CASES = [
    (['train_color_fcn32s.py', '-c', '100', '--set', 'lr=abc'], "lr: 'abc' is not a number"),
    (['train_color_fcn32s.py', '-c', '100', '-k', '0'], 'numbins: 0'),
    (['train_color_fcn16s.py', '-c', '999'], 'no configuration 999'),
    (['train_color_fcn8s.py', '-c', '102', '-m', '{text}'], '{text} cannot be read as a checkpoint'),
    (['colorize.py', '-m', '{text}', '{photos}'], '{text} cannot be read as a checkpoint'),
    (['evaluate.py', '-m', '{missing}'], '{missing} does not exist'),
    (['run_imagenet_bright_images.py', '--root', '{empty}'], 'no image files in {empty}'),
    (['bench/bench_colorize.py', '--threads', '0'], 'argument --threads: 0'),
]


def run_script(args, env=None):
    return subprocess.run([sys.executable] + args, cwd=REPO_DIR, capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.fixture(scope='module')
def script_runs(files):
    """([finished process] of each SUBPROCESS_CASES script, what they left behind), two at a time (each
    is mostly its imports, one core's work)."""
    with left_behind(files) as left, concurrent.futures.ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda case: run_script(expand(case[0], files)), SUBPROCESS_CASES))
    return procs, left


@pytest.mark.parametrize('args, needle', SUBPROCESS_CASES, ids=[' '.join(c[0][:2]) for c in SUBPROCESS_CASES])
def test_scripts_exit_2_with_one_error_line(args, needle, files, script_runs):
    procs, left = script_runs
    proc = procs[SUBPROCESS_CASES.index((args, needle))]
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, needle.format(**files))
    assert left == NOTHING_LEFT


def test_under_torchrun_only_rank_0_prints_and_every_rank_exits(files, no_new_run_folder):
    """The environment torchrun gives each process: the check fails before any process group."""
    script = os.path.join(REPO_DIR, 'train_color_fcn32s.py')

    def rank_process(rank):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2')
        return run_script([script, '-c', '199', '--set', 'lr=abc'], env)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:   # side by side, as torchrun starts them
        procs = list(pool.map(rank_process, (0, 1)))
    for rank, proc in enumerate(procs):
        assert proc.returncode == 2, proc.stderr
        if rank == 0:
            assert_one_error_line(proc.stderr, "lr: 'abc'")
        else:
            assert proc.stderr.strip() == ''
