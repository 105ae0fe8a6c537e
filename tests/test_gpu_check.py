"""bench/gpu_check.py without a GPU: one line and exit 0; its CPU-vs-CUDA comparison, run CPU against
CPU, finds no difference, and its relative differences are the ones numpy computes."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_DIR

sys.path.insert(0, os.path.join(REPO_DIR, 'bench'))
import gpu_check  # noqa: E402
import models  # noqa: E402


def test_without_cuda_it_says_there_is_nothing_to_check_in_one_line_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, os.path.join(REPO_DIR, 'bench', 'gpu_check.py')], cwd=REPO_DIR,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and 'nothing to check' in lines[0], proc.stdout + proc.stderr


def test_the_same_step_twice_on_the_cpu_has_no_difference():
    torch.manual_seed(0)
    model = gpu_check.randomise_zero_parameters(models.build_model('fcn32s', n_class=8, padding='same',
                                                                   fc_channels=16))
    assert all(p.any() for p in model.parameters() if p.requires_grad)
    net_input = torch.randn(2, 1, 64, 64)
    target = torch.softmax(torch.randn(2, 8, 64, 64), 1)
    loss_a, grads_a = gpu_check.loss_and_gradients(model, net_input, target, 'cpu')
    loss_b, grads_b = gpu_check.loss_and_gradients(model, net_input, target, 'cpu')
    assert set(grads_a) == {name for name, p in model.named_parameters() if p.requires_grad}
    assert all(np.abs(g).max() > 0 for g in grads_a.values())   # every layer's gradient is compared
    assert gpu_check.relative_differences(loss_a, grads_a, loss_b, grads_b)[:2] == (0.0, 0.0)
    assert model.conv1_1.weight.grad is None   # the caller's model is left as it was


def test_relative_differences_are_the_largest_per_parameter_ratio():
    rng = np.random.default_rng(0)
    grads_a = {'a': rng.normal(size=(4, 3)), 'b': rng.normal(size=5)}
    grads_b = {'a': grads_a['a'] + 1e-6, 'b': grads_a['b'].copy()}
    grads_b['b'][2] += 0.01
    loss_rel, grad_rel, worst = gpu_check.relative_differences(2.0, grads_a, 2.001, grads_b)
    assert loss_rel == pytest.approx(0.0005)
    assert grad_rel == pytest.approx(0.01 / np.abs(grads_a['b']).max()) and worst == 'b'
    with pytest.raises(ValueError):
        gpu_check.relative_differences(1.0, grads_a, 1.0, {'a': grads_a['a']})
