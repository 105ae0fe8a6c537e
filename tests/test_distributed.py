"""torch.distributed: a 2-process CPU (gloo) job through the trainer's own torchrun code path
equals one process trained on the same global batches; only rank 0 writes; the GMM is fitted once."""
import json
import os
import sys

import pytest
import torch

import runtime
import targets
import trainer
from conftest import NARROW, SMOKE_ARGS, free_port, spawn_ranks, temporary_folder, torchrun_environment

EVENTS = 'events.out.tfevents.'

WORLD = 2
STEPS = 3
# BatchNorm on per-process statistics is not BatchNorm on the global batch, and SyncBatchNorm
# runs on CUDA only; with BatchNorm and Dropout in eval mode (bn_dropout_eval) each image's
# gradient is independent of its batch-mates, so 2 x 1 image equals 1 x 2 images exactly.
COMMON = NARROW + ['--max-iter', STEPS, '--set', 'bn_dropout_eval=true', '--set', 'val_fraction=0.3',
          '--set', 'interval_validate=2', '--set', 'optim=SGD', '--set', 'lr=0.01']


def write_calls(run_dir):
    """An audit hook that lists every file this process opens for writing, renames or creates
    under ``run_dir``."""
    root = os.path.abspath(run_dir)
    seen = []

    def hook(event, args):
        if event == 'open':
            path, mode, flags = args
            writes = (mode is not None and any(c in str(mode) for c in 'wax+')) or \
                (mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            paths = [path] if writes else []
        elif event == 'os.rename':   # os.rename and os.replace: (source, destination, ...)
            paths = list(args[:2])
        elif event in ('os.mkdir', 'os.remove'):
            paths = [args[0]]
        else:
            return
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(root):
                seen.append('%s %s' % (event, os.fsdecode(path)))
    sys.addaudithook(hook)
    return seen


def ddp_process(rank, port, argv, run_dir, report_dir):
    """One torchrun-like process: the environment torchrun sets, then the training script's main."""
    torchrun_environment(rank, WORLD, port)
    torch.set_num_threads(1)
    fits = []
    fit = targets.GMMBins.fit.__func__
    targets.GMMBins.fit = classmethod(lambda cls, *a, **k: fits.append(1) or fit(cls, *a, **k))
    writes = write_calls(run_dir)
    done = trainer.main('fcn32s', argv)
    report = {'gmm_fits': len(fits), 'writes': writes, 'world_size': done.rt.world_size,
              'val_images': len(done.val_sampler), 'iteration': done.iteration}
    with open(os.path.join(report_dir, 'rank%d.json' % rank), 'w') as f:
        json.dump(report, f)


def run_files(run_dir):
    """Checkpoint, log.csv and the names in the run folder (TensorBoard's one event file: its kind,
    as its name holds the time, host and process id)."""
    names = [name if not name.startswith(EVENTS) else EVENTS + '*' for name in os.listdir(run_dir)]
    return {'last': trainer.load_checkpoint(os.path.join(run_dir, trainer.CHECKPOINT)),
            'log': open(os.path.join(run_dir, 'log.csv')).read(), 'files': sorted(names)}


@pytest.fixture(scope='module')
def ddp_and_single(photo_folder):
    """The same 3 steps: 2 processes x batch 1 (DDP, gloo) and 1 process x batch 2."""
    with temporary_folder() as root:
        ddp_dir, single_dir = os.path.join(root, 'ddp'), os.path.join(root, 'single')
        args = [str(a) for a in SMOKE_ARGS + ['-d', photo_folder] + COMMON]
        spawn_ranks(ddp_process, (free_port(), args + ['-o', ddp_dir, '--set', 'batch_size=1'], ddp_dir, root),
                    WORLD, timeout=600)
        reports = []
        for rank in range(WORLD):
            with open(os.path.join(root, 'rank%d.json' % rank)) as f:
                reports.append(json.load(f))
        trainer.main('fcn32s', args + ['-o', single_dir, '--set', 'batch_size=2'])
        yield {'ddp': run_files(ddp_dir), 'single': run_files(single_dir), 'reports': reports, 'ddp_dir': ddp_dir}


def test_ddp_model_equals_one_process_on_the_global_batches(ddp_and_single):
    ddp, single = ddp_and_single['ddp']['last'], ddp_and_single['single']['last']
    assert ddp['iteration'] == single['iteration'] == STEPS
    assert ddp['world_size'] == WORLD and single['world_size'] == 1
    for name, value in single['model_state_dict'].items():
        torch.testing.assert_close(ddp['model_state_dict'][name], value, rtol=0, atol=1e-5, msg=name)
    # the SGD momentum buffers (the sum of the 3 steps' gradients) agree as well, and are not zero
    momentum = [(ddp['optim_state_dict']['state'][i]['momentum_buffer'], state['momentum_buffer'])
                for i, state in single['optim_state_dict']['state'].items()]
    assert len(momentum) > 20 and max(float(b.abs().max()) for _, b in momentum) > 1e-3
    for from_ddp, from_single in momentum:
        torch.testing.assert_close(from_ddp, from_single, rtol=1e-4, atol=1e-5)


def test_validation_is_reduced_over_ranks(ddp_and_single):
    """Each rank validates its share; the reduced loss equals one process validating everything."""
    reports = ddp_and_single['reports']
    assert sum(r['val_images'] for r in reports) >= 2 and all(r['val_images'] for r in reports)

    def valid_losses(text):
        rows = [line.split(',') for line in text.splitlines()[1:]]
        return {int(r[1]): float(r[7]) for r in rows if r[7]}
    ddp, single = (valid_losses(ddp_and_single[k]['log']) for k in ('ddp', 'single'))
    assert sorted(ddp) == sorted(single) == [0, 2, 3]
    for it in ddp:
        assert ddp[it] == pytest.approx(single[it], rel=1e-5, abs=1e-6)


def test_only_rank_0_writes_and_the_gmm_is_fitted_once(ddp_and_single):
    rank0, rank1 = ddp_and_single['reports']
    assert rank0['world_size'] == rank1['world_size'] == WORLD
    assert rank0['iteration'] == rank1['iteration'] == STEPS
    assert rank1['writes'] == []
    ddp_dir = ddp_and_single['ddp_dir']
    written = {os.path.relpath(w.split(' ', 1)[1], ddp_dir) for w in rank0['writes']}
    assert {'log.csv', 'config.yaml', 'gmm.npz', 'split_train.txt', 'train.log'} <= written  # the hook sees writes
    assert (rank0['gmm_fits'], rank1['gmm_fits']) == (1, 0)
    assert ddp_and_single['ddp']['files'] == ddp_and_single['single']['files']
    train_rows = [line.split(',')[1] for line in ddp_and_single['ddp']['log'].splitlines()[1:]
                  if line.split(',')[2]]
    assert train_rows == [str(i) for i in range(STEPS)]   # one writer: each iteration once


def test_sampler_shards_make_up_the_global_batch_under_any_world_size():
    """Rank r's b-th batch holds positions of the b-th global batch; a position means the same
    for any number of processes (resuming on fewer GPUs neither repeats nor drops images)."""
    n, batch = 11, 2
    order = torch.randperm(n, generator=torch.Generator().manual_seed(5 + 3)).tolist()
    for world in (1, 2, 3):
        shards = [runtime.ResumableSampler(n, True, 5, r, world) for r in range(world)]
        for s in shards:
            s.set_position(3)
        lists = [s.indices() for s in shards]
        assert len({len(x) for x in lists}) == 1                      # equal shares (padded)
        assert set(i for x in lists for i in x) == set(range(n))
        for step in range(n // (batch * world)):
            global_batch = sorted(i for x in lists for i in x[step * batch:(step + 1) * batch])
            assert global_batch == sorted(order[step * batch * world:(step + 1) * batch * world])
    # 2 processes stop after 2 steps (8 positions); 3 processes carry on from position 8
    rest = [runtime.ResumableSampler(n, True, 5, r, 3) for r in range(3)]
    for s in rest:
        s.set_position(3, 2 * batch * 2)
    assert sorted(i for s in rest for i in s.indices()) == sorted(order[8:])
