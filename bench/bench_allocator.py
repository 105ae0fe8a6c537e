"""keep_freed_memory: glibc's default allocator against the project's setting, in one run.

Each mode runs in a fresh child process (the setting cannot be undone inside
one), and the parent prints both and their ratio:

* a float32 target batch (batch x K x size x size) allocated and written, best
  of a few repeats, in ms per image;
* one FCN-32s training step (forward, backward, Adam; ``padding='same'``) at
  the same batch and size, in images/s, after one warm-up step;
* the child's peak resident memory (``ru_maxrss``): the price of keeping
  freed memory in the process.

Ends with one JSON line.  Usage (from the repository root)::

    python bench/bench_allocator.py            # batch 8 at 256x256, K = 128 (about 2 min on 2 cores)
    python bench/bench_allocator.py -b 2 --size 128
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import cli  # noqa: E402


def parse_args(argv=None):
    p = cli.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('-b', '--batch-size', type=cli.positive_int, default=8, help='images per batch (default 8)')
    p.add_argument('--size', type=cli.positive_int, default=256, help='size x size images (default 256)')
    p.add_argument('-k', '--n-class', type=cli.positive_int, default=128, help='bins K (default 128)')
    p.add_argument('--steps', type=cli.positive_int, default=2, help='timed training steps (default 2)')
    p.add_argument('--child', choices=('default', 'keep'), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child(args):
    """Measure one mode in this process; prints one JSON line."""
    import torch
    import bench_train
    import config
    import runtime
    cfg = dict(config.DEFAULTS, optim='Adam', keep_freed_memory=args.child == 'keep')
    process = runtime.Runtime(None, cfg)
    shape = (args.batch_size, args.n_class, args.size, args.size)
    best = float('inf')
    for _ in range(5):
        t0 = time.perf_counter()
        target = torch.empty(shape).fill_(0.0)
        best = min(best, time.perf_counter() - t0)
        del target
    train_args = bench_train.parse_args(['--archs', 'fcn32s', '-b', str(args.batch_size), '--size', str(args.size),
                                         '-k', str(args.n_class), '--steps', str(args.steps), '--warmup', '1'])
    train_args.warmup_batch = args.batch_size
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 1, args.size, args.size)
    target = torch.softmax(torch.randn(shape), 1)
    rate, _ = bench_train.time_training('fcn32s', 'same', train_args, process, cfg, x, target)
    print(json.dumps({'kept': process.keeps_freed_memory, 'target_ms_per_image': 1e3 * best / args.batch_size,
                      'train_img_per_s': rate,
                      'max_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}))


def run_child(mode, argv):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', mode] + argv,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child(args)
    t_run = time.perf_counter()
    print('setup: batch %d at %dx%d, K=%d; FCN-32s (same padding, Adam), %d timed step(s); %d CPU(s)'
          % (args.batch_size, args.size, args.size, args.n_class, args.steps, os.cpu_count()))
    default, keep = run_child('default', argv), run_child('keep', argv)
    if not keep['kept']:
        print('keep_freed_memory had no effect here (not glibc): nothing to compare')
    for name, r in (('glibc default', default), ('keep_freed_memory', keep)):
        print('%-18s: target batch %.2f ms/image, training step %.3f images/s, peak RSS %.2f GiB'
              % (name, r['target_ms_per_image'], r['train_img_per_s'], r['max_rss_gib']))
    ratios = dict(target_speedup=default['target_ms_per_image'] / keep['target_ms_per_image'],
                  train_speedup=keep['train_img_per_s'] / default['train_img_per_s'],
                  rss_ratio=keep['max_rss_gib'] / default['max_rss_gib'])
    print('ratios: target allocation %.1fx faster, training step %.2fx faster, peak RSS %.2fx'
          % (ratios['target_speedup'], ratios['train_speedup'], ratios['rss_ratio']))
    print('total run time: %.1f s' % (time.perf_counter() - t_run))
    print(json.dumps(dict({'default': default, 'keep_freed_memory': keep},
                          **{k: round(v, 3) for k, v in ratios.items()})))
    return 0


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
