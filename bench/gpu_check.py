"""One-command check of a CUDA machine (``make gpu-check``).

On a CUDA device, in this order:

1. the CUDA-only tests (``tests/test_cuda_device.py``, and ``tests/test_cuda_paths.py``);
2. the two benchmarks, ``bench/bench_targets.py`` and ``bench/bench_train.py``, on the device;
3. 100 training steps of FCN-32s (fc6/fc7 4096 wide, K = 128) at 256x256, batch 8, with the
   trainer's CUDA settings (bf16 autocast where supported), through ``trainer.main`` on the
   photos bundled with scikit-image: images/s, the share of time waiting for data, peak GPU memory;
4. one fixed batch (two bundled photos at 128x128, K = 32) in float32 with TF32 off, CUDA
   against the CPU: the targets (posteriors within TARGET_ATOL), the loss (relative
   difference within LOSS_RTOL) and every parameter's gradient (largest absolute
   difference, relative to that gradient's largest magnitude, within GRAD_RTOL).

Prints one line per check and ends with one JSON line; exit status 1 when a check
fails.  Without CUDA it prints one line saying there is nothing to check and exits 0.
Usage (from the repository root): ``python bench/gpu_check.py [--steps N] [--skip-tests] [--skip-bench]``.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

import losses  # noqa: E402
import models  # noqa: E402
import targets  # noqa: E402
import trainer  # noqa: E402

CUDA_TESTS = ('tests/test_cuda_device.py', 'tests/test_cuda_paths.py')
BENCHMARKS = ('bench/bench_targets.py', 'bench/bench_train.py')
TARGET_ATOL = 1e-4    # posteriors, CUDA (all K components) vs CPU (pruned): as issue 3's 1e-4
LOSS_RTOL = 1e-4      # float32 loss, CUDA vs CPU, relative
GRAD_RTOL = 1e-3      # per parameter: max |g_cuda - g_cpu| / max |g_cpu|
COMPARE_PHOTOS = ('astronaut', 'coffee')
COMPARE_SIZE = 128
COMPARE_BINS = 32


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--steps', type=int, default=100, help='training steps of FCN-32s (default 100)')
    p.add_argument('--size', type=int, default=256, help='training image side (default 256)')
    p.add_argument('-b', '--batch-size', type=int, default=8, help='training batch (default 8)')
    p.add_argument('--skip-tests', action='store_true', help='do not run the CUDA-only tests')
    p.add_argument('--skip-bench', action='store_true', help='do not run the two benchmarks')
    return p.parse_args(argv)


# --------------------------------------------------------------------------
# CUDA against the CPU on one fixed batch
# --------------------------------------------------------------------------

def loss_and_gradients(model, net_input, target, device, loss_reduction='mean'):
    """(float loss, {parameter name: float64 numpy gradient}) of one float32 step on ``device``.

    ``model`` is copied to ``device``; BatchNorm uses the batch statistics (train
    mode) and Dropout is off, so both devices compute the same function.
    """
    model = copy.deepcopy(model).to(device).train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.eval()
    model.zero_grad(set_to_none=True)
    scores = model(net_input.to(device)).float()
    loss = losses.reduce_loss(losses.soft_target_loss(scores, target.to(device)), loss_reduction)
    loss.backward()
    return loss.item(), {name: p.grad.detach().double().cpu().numpy() for name, p in model.named_parameters()
                         if p.grad is not None}


def randomise_zero_parameters(model, std=0.01):
    """Fill the parameters initialised to zero (the score layers) with small random values, in place.

    A fresh FCN's zero score layer passes no gradient back to the trunk; with it
    random every layer's gradient is compared.
    """
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and not p.any():
                p.normal_(0.0, std)
    return model


def relative_differences(loss_a, grads_a, loss_b, grads_b):
    """(|loss_a - loss_b| / |loss_a|, largest per-parameter max|ga - gb| / max|ga|, that parameter's name)."""
    loss_rel = abs(loss_a - loss_b) / max(abs(loss_a), np.finfo(np.float64).tiny)
    if set(grads_a) != set(grads_b):
        raise ValueError('the two steps have gradients for different parameters')
    worst, worst_name = 0.0, None
    for name, ga in grads_a.items():
        rel = np.abs(ga - grads_b[name]).max() / max(np.abs(ga).max(), np.finfo(np.float64).tiny)
        if rel >= worst:
            worst, worst_name = float(rel), name
    return float(loss_rel), worst, worst_name


def fixed_batch():
    """uint8 ``[2, 3, S, S]`` bundled photos and a colour encoder (GMM of K bins fitted on them, low-pass 4)."""
    from PIL import Image
    import skimage.data
    photos = [np.asarray(Image.fromarray(getattr(skimage.data, name)()[..., :3]).resize(
        (COMPARE_SIZE, COMPARE_SIZE), Image.BILINEAR)) for name in COMPARE_PHOTOS]
    rgb = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).contiguous()
    import utils
    hue, chroma, lightness = utils.rgb_to_hcl(rgb.float() / 255)
    hc = torch.stack([hue.flatten(), chroma.flatten()], 1)[::7].double().numpy()
    bins = targets.GMMBins.fit(hc, COMPARE_BINS, 0)
    return rgb, targets.ColorEncoder(bins, float(lightness.mean()), img_lowpass=4)


def compare_cpu_cuda(device):
    """Targets, loss and gradients of one fixed batch, float32 with TF32 off, CUDA vs CPU."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        rgb, encoder = fixed_batch()
        net_input, target = encoder.encode(rgb)
        cuda_input, cuda_target = encoder.encode(rgb.to(device))
        target_diff = float((cuda_target.cpu() - target).abs().max())
        input_diff = float((cuda_input.cpu() - net_input).abs().max())
        torch.manual_seed(0)
        model = randomise_zero_parameters(models.build_model('fcn32s', n_class=COMPARE_BINS, padding='same',
                                                             fc_channels=4096))
        loss_cpu, grads_cpu = loss_and_gradients(model, net_input, target, 'cpu')
        loss_cuda, grads_cuda = loss_and_gradients(model, net_input, target, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    loss_rel, grad_rel, worst = relative_differences(loss_cpu, grads_cpu, loss_cuda, grads_cuda)
    ok = target_diff <= TARGET_ATOL and loss_rel <= LOSS_RTOL and grad_rel <= GRAD_RTOL
    print('cpu vs cuda (float32, TF32 off, %d photos at %dx%d, K=%d): targets max |diff| %.2e (<= %g), '
          'input %.2e; loss %.6f vs %.6f, relative %.2e (<= %g); gradients relative %.2e at %s (<= %g): %s'
          % (len(rgb), COMPARE_SIZE, COMPARE_SIZE, COMPARE_BINS, target_diff, TARGET_ATOL, input_diff,
             loss_cpu, loss_cuda, loss_rel, LOSS_RTOL, grad_rel, worst, GRAD_RTOL, 'ok' if ok else 'FAILED'))
    return {'ok': ok, 'target_max_abs_diff': target_diff, 'input_max_abs_diff': input_diff,
            'loss_cpu': loss_cpu, 'loss_cuda': loss_cuda, 'loss_rel_diff': loss_rel,
            'grad_rel_diff': grad_rel, 'grad_worst_param': worst,
            'tolerances': {'target_atol': TARGET_ATOL, 'loss_rtol': LOSS_RTOL, 'grad_rtol': GRAD_RTOL}}


# --------------------------------------------------------------------------
# the other checks
# --------------------------------------------------------------------------

def run_child(command, name):
    """Run ``command`` from the repository root; its output passes through; (ok, last JSON line or None)."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(proc.stdout)
    last_json = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(('{', '[')):
            try:
                last_json = json.loads(line)
                break
            except ValueError:
                pass
    print('%s: %s in %.0f s' % (name, 'ok' if proc.returncode == 0 else 'FAILED (exit %d)' % proc.returncode,
                                time.perf_counter() - start))
    return proc.returncode == 0, last_json


def train_steps(args):
    """``args.steps`` steps of FCN-32s at ``args.size``^2 through trainer.main: throughput, data wait, memory."""
    with tempfile.TemporaryDirectory(prefix='gpu-check-') as run_dir:
        argv = ['-c', '100', '-o', os.path.join(run_dir, 'run'), '--max-iter', str(args.steps), '-k', '128',
                '--set', 'im_size=[%d,%d]' % (args.size, args.size), '--set', 'batch_size=%d' % args.batch_size,
                '--set', 'fc_channels=4096', '--set', 'interval_validate=%d' % (args.steps + 1),
                '--set', 'amp=true', '--set', 'data_wait_window=%d' % min(100, args.steps)]
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = trainer.main('fcn32s', argv)
        wall = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated()
    seconds = result.data_time_total + result.step_time_total
    figures = {'steps': args.steps, 'batch_size': args.batch_size, 'size': args.size,
               'amp_dtype': str(result.rt.amp_dtype).replace('torch.', ''),
               'images_per_s': round(result.images_trained / seconds, 2),
               'data_wait_share': round(result.data_time_total / seconds, 4),
               'peak_gpu_memory_gib': round(peak / 2 ** 30, 3), 'run_seconds': round(wall, 1)}
    print('train: FCN-32s %d steps of %d images at %dx%d, autocast %s: %.2f images/s, %.1f %% of the time '
          'waiting for data, peak GPU memory %.2f GiB' % (args.steps, args.batch_size, args.size, args.size,
                                                           figures['amp_dtype'], figures['images_per_s'],
                                                           100 * figures['data_wait_share'],
                                                           figures['peak_gpu_memory_gib']))
    return figures


def main(argv=None):
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print('gpu-check: no CUDA device visible to torch %s (CUDA build %s): nothing to check'
              % (torch.__version__, torch.version.cuda))
        return 0
    device = torch.device('cuda', 0)
    summary = {'device': torch.cuda.get_device_name(device), 'torch': torch.__version__,
               'cuda': torch.version.cuda}
    print('gpu-check on %s (torch %s, CUDA %s)' % (summary['device'], summary['torch'], summary['cuda']))
    checks = []
    if not args.skip_tests:
        ok, _ = run_child([sys.executable, '-m', 'pytest', '-q', *CUDA_TESTS], 'cuda tests')
        summary['cuda_tests'] = ok
        checks.append(ok)
    if not args.skip_bench:
        for script in BENCHMARKS:
            ok, figures = run_child([sys.executable, script], script)
            summary[os.path.splitext(os.path.basename(script))[0]] = figures
            checks.append(ok)
    summary['train'] = train_steps(args)
    summary['cpu_vs_cuda'] = compare_cpu_cuda(device)
    checks.append(summary['cpu_vs_cuda']['ok'])
    summary['ok'] = all(checks)
    print(json.dumps(summary))
    return 0 if summary['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
