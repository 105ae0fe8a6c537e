"""Faults of a 2-process CPU (gloo) job through the trainer's torchrun code path: a non-finite
loss on one rank only (skip, stop), resuming a 2-process checkpoint with 2 processes (exact)
and with 1 (a warning, then on), all with training-mode BatchNorm and dropout.  Every job is
killed and fails after a timeout instead of hanging."""
import csv
import json
import os
import shutil

import pytest
import torch

import losses
import trainer
from conftest import NARROW, SMOKE_ARGS, UNIFORM_BINS, free_port, spawn_ranks, temporary_folder, torchrun_environment

WORLD = 2
STEPS = 3
TIMEOUT = 300   # seconds for one 2-process job (a few seconds each when the machine is idle)
COMMON = ['--set', 'batch_size=1', '--set', 'val_fraction=0.3', '--set', 'interval_validate=2',
          '--set', 'optim=SGD', '--set', 'lr=0.01'] + NARROW + UNIFORM_BINS


def ddp_worker(rank, port, argv, report_dir, fault):
    """One torchrun-like process; ``fault = (rank, step)``: that rank's loss is NaN at that step.
    Writes what it saw to ``report_dir/rank<r>.json`` (also when the run raised)."""
    torchrun_environment(rank, WORLD, port)
    torch.set_num_threads(1)
    if fault is not None and fault[0] == rank:
        reduce_loss, steps = losses.reduce_loss, []

        def nan_at_fault_step(per_pixel, how):
            steps.append(1)
            loss = reduce_loss(per_pixel, how)
            return loss * float('nan') if len(steps) == fault[1] + 1 else loss
        losses.reduce_loss = nan_at_fault_step
    report = {'error': None}
    try:
        done = trainer.main('fcn32s', argv)
        params = torch.cat([p.detach().flatten().double() for p in done.bare_model.parameters()])
        report.update(iteration=done.iteration, nonfinite_steps=done.nonfinite_steps,
                      params=[float(params.sum()), float(params.square().sum())])
    except Exception as err:   # reported to the test
        report['error'] = '%s: %s' % (type(err).__name__, err)
    with open(os.path.join(report_dir, 'rank%d.json' % rank), 'w') as f:
        json.dump(report, f)


def run_ddp(photo_folder, report_dir, *args, fault=None):
    """The 2-process job; returns each rank's report."""
    argv = [str(a) for a in SMOKE_ARGS + ['-d', photo_folder] + COMMON + list(args)]
    spawn_ranks(ddp_worker, (free_port(), argv, report_dir, fault), WORLD, TIMEOUT)
    reports = []
    for rank in range(WORLD):
        with open(os.path.join(report_dir, 'rank%d.json' % rank)) as f:
            reports.append(json.load(f))
    return reports


def train_iterations(run_dir):
    """Iterations with a train row in log.csv, in file order."""
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        return [int(r['iteration']) for r in csv.DictReader(f) if r['train/loss']]


def checkpoint(run_dir):
    return trainer.load_checkpoint(os.path.join(run_dir, trainer.CHECKPOINT))


@pytest.mark.parametrize('policy', ['skip', 'stop'])
def test_a_nan_loss_on_one_rank_makes_both_ranks_skip_or_stop(photo_folder, work_dir, policy):
    run_dir = os.path.join(work_dir, 'run')
    reports = run_ddp(photo_folder, work_dir, '-o', run_dir, '--max-iter', STEPS,
                      '--set', 'nonfinite_loss=%s' % policy, fault=(1, 1))
    if policy == 'skip':
        assert [r['error'] for r in reports] == [None, None]
        assert [(r['iteration'], r['nonfinite_steps']) for r in reports] == [(STEPS, 1)] * WORLD
        assert reports[0]['params'] == reports[1]['params']   # both skipped: still the same model
        assert train_iterations(run_dir) == [0, 2]
        assert checkpoint(run_dir)['nonfinite_steps'] == 1
    else:
        for rank, report in enumerate(reports):
            assert report['error'] and report['error'].startswith('FloatingPointError: non-finite training loss')
            assert 'at iteration 1;' in report['error'], report['error']
        assert '(nan on rank 1)' in reports[1]['error']
        assert '(on another rank)' in reports[0]['error']   # not its own finite loss called non-finite
        assert train_iterations(run_dir) == [0]
        assert checkpoint(run_dir)['iteration'] == 0   # the last good state is kept


@pytest.fixture(scope='module')
def two_process_runs(photo_folder):
    """A 3-step 2-process run, and one stopped at step 2 (its folder copied before any resume)."""
    with temporary_folder() as root:
        whole, stopped = os.path.join(root, 'whole'), os.path.join(root, 'stopped')
        reports = run_ddp(photo_folder, root, '-o', whole, '--max-iter', STEPS)
        assert [r['error'] for r in reports] == [None, None]
        assert reports[0]['params'] == reports[1]['params']
        run_ddp(photo_folder, root, '-o', stopped, '--max-iter', STEPS - 1)
        copy = os.path.join(root, 'stopped_copy')
        shutil.copytree(stopped, copy)
        yield {'root': root, 'whole': whole, 'stopped': stopped, 'copy': copy}


def test_training_mode_batchnorm_and_dropout_run_under_ddp(two_process_runs):
    last = checkpoint(two_process_runs['whole'])
    assert last['iteration'] == STEPS and last['world_size'] == WORLD
    assert not last['config']['bn_dropout_eval']
    assert last['model_state_dict']['bn1_1.num_batches_tracked'] == STEPS   # batch statistics were used
    assert train_iterations(two_process_runs['whole']) == list(range(STEPS))


def test_a_2_process_checkpoint_resumed_with_2_processes_continues_exactly(photo_folder, two_process_runs):
    stopped = two_process_runs['stopped']
    assert checkpoint(stopped)['iteration'] == STEPS - 1
    reports = run_ddp(photo_folder, two_process_runs['root'], '--resume',
                      os.path.join(stopped, trainer.CHECKPOINT), '--max-iter', STEPS)
    assert [r['error'] for r in reports] == [None, None]
    resumed, whole = checkpoint(stopped), checkpoint(two_process_runs['whole'])
    assert resumed['iteration'] == whole['iteration'] == STEPS
    for name, value in whole['model_state_dict'].items():
        torch.testing.assert_close(resumed['model_state_dict'][name], value, rtol=0, atol=0, msg=name)
    for index, state in whole['optim_state_dict']['state'].items():
        torch.testing.assert_close(resumed['optim_state_dict']['state'][index]['momentum_buffer'],
                                   state['momentum_buffer'], rtol=0, atol=0)
    assert train_iterations(stopped) == list(range(STEPS))


def test_a_2_process_checkpoint_resumed_with_1_process_warns_and_continues(two_process_runs, train):
    copy = two_process_runs['copy']
    done = train('fcn32s', '--resume', os.path.join(copy, trainer.CHECKPOINT), '--max-iter', STEPS + 1)
    assert done.rt.world_size == 1 and done.iteration == STEPS + 1
    with open(os.path.join(copy, 'train.log')) as f:
        assert 'the checkpoint was written by 2 processes, this run has 1' in f.read()
    assert train_iterations(copy) == list(range(STEPS + 1))
    last = checkpoint(copy)
    assert last['iteration'] == STEPS + 1 and last['world_size'] == 1
    assert all(torch.isfinite(v).all() for v in last['model_state_dict'].values() if v.is_floating_point())
