"""Training-step speed of FCN-32s/16s/8s: 'caffe' padding against the default 'same'.

One training step = forward, the soft-target KL loss of the trainer, backward
and an Adam step, exactly as ``trainer.Trainer.train_step`` does it on the
current device with the project's speed settings (CUDA: bf16 autocast where
supported, else fp16 + GradScaler, channels_last, cudnn.benchmark; CPU: plain
float32).  For each architecture both padding schemes run in the same process,
on the same input (a random lightness batch) and the same random soft target.

Reported per architecture: images/s of each scheme, their ratio, and the
achieved GFLOP/s of the default scheme (forward FLOPs counted with
``torch.utils.flop_counter.FlopCounterMode`` on the meta device, x3 for forward
+ backward), next to the GFLOP/s of a plain ``torch.matmul`` measured in the
same run (the ceiling of this machine, in the dtype the step computes in).

Prints one summary line per figure and ends with one JSON line: a list of
``{arch, caffe_img_per_s, default_img_per_s, ratio, gflops, matmul_gflops}``.
Usage (from the repository root)::

    python bench/bench_train.py                       # batch 8, 256x256, all three
    python bench/bench_train.py --archs fcn32s --steps 5 --warmup 2 --warmup-batch 8

Defaults keep the run under 5 minutes on 2 CPU cores: on CPU one warm-up step
of one image (first-call set-up; CPU kernels need no tuning per shape) and one
timed step of the full batch; on CUDA 3 warm-up and 10 timed steps of the
full batch (cudnn.benchmark tunes per shape).
"""
import gc
import json
import os
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402
import config  # noqa: E402
import losses  # noqa: E402
import models  # noqa: E402
import run_setup  # noqa: E402
import runtime as runtime_lib  # noqa: E402

ARCHS = ('fcn32s', 'fcn16s', 'fcn8s')
DEFAULT_PADDING = config.DEFAULTS['padding']
TARGET_RATIO = 2.0   # issue 3: the default padding trains FCN-32s >= 2x faster per image than 'caffe'


def parse_args(argv=None):
    p = cli.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--archs', default=','.join(ARCHS), help='comma-separated (default: all three)')
    p.add_argument('-b', '--batch-size', type=cli.positive_int, default=8, help='images per step (default 8)')
    p.add_argument('--size', type=cli.positive_int, default=256, help='input size x size (default 256)')
    p.add_argument('-k', '--n-class', type=cli.positive_int, default=128, help='output bins K (default 128)')
    p.add_argument('--fc-channels', type=cli.positive_int, default=config.DEFAULTS['fc_channels'],
                   help='width of fc6/fc7 (default %d)' % config.DEFAULTS['fc_channels'])
    p.add_argument('--steps', type=cli.positive_int, default=None, help='timed steps (default: CPU 1, CUDA 10)')
    p.add_argument('--warmup', type=cli.natural_int, default=None, help='warm-up steps (default: CPU 1, CUDA 3)')
    p.add_argument('--warmup-batch', type=cli.positive_int, default=None,
                   help='images per warm-up step (default: CPU 1, CUDA the batch size)')
    p.add_argument('--matmul-size', type=cli.positive_int, default=None,
                   help='n of the n x n matmul ceiling (default: CPU 4096, CUDA 8192)')
    args = p.parse_args(argv)
    for arch in args.archs.split(','):
        if arch.strip() and arch.strip() not in ARCHS:
            p.error('--archs: unknown architecture %r (choose from %s)' % (arch.strip(), ', '.join(ARCHS)))
    return args


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def forward_flops(arch, args, padding, batch):
    """FLOPs of one forward pass of ``batch`` images, counted on the meta device (no compute)."""
    with torch.device('meta'):
        model = models.build_model(arch, args.n_class, padding, args.fc_channels)
        x = torch.empty(batch, 1, args.size, args.size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    return counter.get_total_flops()


def matmul_gflops(runtime, n, repeats):
    """Best GFLOP/s of an n x n x n matmul, in the dtype the training step computes in."""
    dtype = runtime.amp_dtype or torch.float32
    a = torch.randn(n, n, device=runtime.device, dtype=dtype)
    b = torch.randn(n, n, device=runtime.device, dtype=dtype)
    best = float('inf')
    for _ in range(repeats + 1):   # the first is a warm-up
        sync(runtime.device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync(runtime.device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9, str(dtype).replace('torch.', '')


def train_step(model, optim, runtime, cfg, x, target):
    """As ``Trainer.train_step``: autocast forward, float32 KL loss, (scaled) backward, optimizer step."""
    with runtime.autocast():
        scores = model(x)
    scores = scores.float()
    loss = losses.reduce_loss(losses.soft_target_loss(scores, target), cfg['loss_reduction'])
    optim.zero_grad(set_to_none=True)
    runtime.scaler.scale(loss).backward()
    runtime.scaler.step(optim)
    runtime.scaler.update()
    return scores.shape


def time_training(arch, padding, args, runtime, cfg, x, target):
    """(images/s, output shape) of ``args.steps`` timed steps after the warm-up."""
    torch.manual_seed(0)
    model = runtime.wrap(models.build_model(arch, args.n_class, padding, args.fc_channels), sync_bn=False)
    model.train()
    optim = run_setup.make_optimizer(model, cfg)
    warm = args.warmup_batch
    for _ in range(args.warmup):
        train_step(model, optim, runtime, cfg, x[:warm], target[:warm])
    sync(runtime.device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        shape = train_step(model, optim, runtime, cfg, x, target)
    sync(runtime.device)
    elapsed = time.perf_counter() - t0
    del model, optim
    gc.collect()
    if runtime.cuda:
        torch.cuda.empty_cache()
    return args.batch_size * args.steps / elapsed, tuple(shape)


def main(argv=None):
    args = parse_args(argv)
    t_run = time.perf_counter()
    cfg = dict(config.DEFAULTS, optim='Adam')
    runtime = runtime_lib.Runtime(None, cfg)
    cuda = runtime.cuda
    args.steps = args.steps if args.steps is not None else (10 if cuda else 1)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    args.warmup_batch = min(args.batch_size, args.warmup_batch or (args.batch_size if cuda else 1))
    args.matmul_size = args.matmul_size or (8192 if cuda else 4096)
    archs = [a.strip() for a in args.archs.split(',') if a.strip()]

    name = torch.cuda.get_device_name(runtime.device) if cuda else 'CPU, %d torch threads' % torch.get_num_threads()
    amp = str(runtime.amp_dtype).replace('torch.', '') if runtime.amp_dtype else 'off (float32)'
    print('setup: %s; batch %d at %dx%d, K=%d, fc_channels=%d, Adam; autocast %s, channels_last %s; '
          '%d warm-up step(s) of %d image(s), %d timed step(s)'
          % (name, args.batch_size, args.size, args.size, args.n_class, args.fc_channels, amp,
             runtime.channels_last, args.warmup, args.warmup_batch, args.steps))

    ceiling, mm_dtype = matmul_gflops(runtime, args.matmul_size, 3 if not cuda else 20)
    print('matmul ceiling: %.1f GFLOP/s (%d^3 %s torch.matmul)' % (ceiling, args.matmul_size, mm_dtype))

    torch.manual_seed(0)
    x = 0.2 * torch.randn(args.batch_size, 1, args.size, args.size, device=runtime.device)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.softmax(torch.randn(args.batch_size, args.n_class, args.size, args.size,
                                       device=runtime.device), dim=1).to(runtime.target_dtype)

    results = []
    for arch in archs:
        rates, flops, shapes = {}, {}, {}
        for padding in ('caffe', DEFAULT_PADDING):
            flops[padding] = 3 * forward_flops(arch, args, padding, args.batch_size) * args.steps
            rates[padding], shapes[padding] = time_training(arch, padding, args, runtime, cfg, x, target)
            gflops = flops[padding] / (args.batch_size * args.steps / rates[padding]) / 1e9
            print('%s %-5s: %.3f images/s, %.1f GFLOP/image (fwd+bwd), %.1f GFLOP/s (%.0f%% of matmul), output %s'
                  % (arch, padding, rates[padding], flops[padding] / args.steps / args.batch_size / 1e9,
                     gflops, 100 * gflops / ceiling, shapes[padding]))
        if shapes['caffe'] != shapes[DEFAULT_PADDING]:
            raise SystemExit('%s: output shapes differ: caffe %s, %s %s'
                             % (arch, shapes['caffe'], DEFAULT_PADDING, shapes[DEFAULT_PADDING]))
        ratio = rates[DEFAULT_PADDING] / rates['caffe']
        gflops = flops[DEFAULT_PADDING] * rates[DEFAULT_PADDING] / (args.batch_size * args.steps) / 1e9
        line = '%s ratio %s/caffe: %.2fx' % (arch, DEFAULT_PADDING, ratio)
        if arch == 'fcn32s':
            line += ' (target >= %.0fx: %s)' % (TARGET_RATIO, 'met' if ratio >= TARGET_RATIO else 'NOT met')
        print(line)
        results.append({'arch': arch, 'caffe_img_per_s': round(rates['caffe'], 4),
                        'default_img_per_s': round(rates[DEFAULT_PADDING], 4), 'ratio': round(ratio, 3),
                        'gflops': round(gflops, 1), 'matmul_gflops': round(ceiling, 1)})
    print('total run time: %.1f s' % (time.perf_counter() - t_run))
    print(json.dumps(results))
    return 0


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
