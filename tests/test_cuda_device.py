"""CUDA-only checks (skipped without a GPU; ``make gpu-check`` runs them): a real training run with the
trainer's CUDA settings, the target encoder on the GPU against the CPU, and one float32 step of the
network on the GPU against the CPU (tolerances of bench/gpu_check.py)."""
import csv
import math
import os
import sys

import pytest
import torch

from conftest import REPO_DIR

sys.path.insert(0, os.path.join(REPO_DIR, 'bench'))
import gpu_check  # noqa: E402
import trainer  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


def test_a_training_run_on_cuda_uses_autocast_and_logs_finite_losses_and_timings(photo_folder, work_dir, train):
    run_dir = os.path.join(work_dir, 'run')
    result = train('fcn16s', '-d', photo_folder, '-o', run_dir, '--max-iter', 3)
    assert result.rt.cuda and result.rt.amp_dtype in (torch.bfloat16, torch.float16)
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        rows = [r for r in csv.DictReader(f) if r['train/loss']]
    assert len(rows) == 3
    assert all(math.isfinite(float(r['train/loss'])) and float(r['train/step_time']) > 0 for r in rows)
    ckpt = trainer.load_checkpoint(os.path.join(run_dir, trainer.CHECKPOINT))
    assert all(v.dtype in (torch.float32, torch.int64) and v.device.type == 'cpu'
               for v in ckpt['model_state_dict'].values())


def test_targets_on_cuda_match_the_cpu():
    rgb, encoder = gpu_check.fixed_batch()
    net_input, target = encoder.encode(rgb)
    cuda_input, cuda_target = encoder.encode(rgb.cuda())
    assert cuda_target.is_cuda and cuda_target.shape == target.shape
    assert (cuda_target.cpu() - target).abs().max() <= gpu_check.TARGET_ATOL
    assert (cuda_input.cpu() - net_input).abs().max() <= 1e-5


def test_one_float32_step_on_cuda_matches_the_cpu():
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    result = gpu_check.compare_cpu_cuda(torch.device('cuda', 0))
    assert result['loss_rel_diff'] <= gpu_check.LOSS_RTOL
    assert result['grad_rel_diff'] <= gpu_check.GRAD_RTOL
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == tf32   # restored
