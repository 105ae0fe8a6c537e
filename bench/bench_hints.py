"""Training-step cost of colour hints: a step with hint input against the same step without.

One step = the trainer's path: a uint8 batch -> ``ColorEncoder.encode`` (targets), or for the hint
model ``hints.training_batch`` (a share recoloured by ``recolour.py``, targets, Zhang et al.'s sampler,
on the device, config keys of the run) -> forward, the soft-target KL loss, backward and an Adam
step.  Three steps: FCN-32s of the quality experiment's config without hints (default 110's), with
hints (113: 128x128, batch 4, fc 512, 36 uniform bins), with hints and --recolour-share of the
images recoloured, then also a hint branch, then also the hints filled for it (issue 28, config 119),
then the fill spread along lightness edges (config 122);
they alternate in one process on the same batches, so the ratios are measured in one run.

Prints the median step time of each, their ratios, the batch preparation's own median time, and one
JSON line.  Usage (from the repository root)::

    python bench/bench_hints.py [--config 113] [--steps 10] [--warmup 2]
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402
import config  # noqa: E402
import hints  # noqa: E402
import losses  # noqa: E402
import run_setup  # noqa: E402
import targets  # noqa: E402

TARGET_SLOWDOWN = 1.05   # issue 20: a step with hints at most a few per cent slower


def parse_args(argv=None):
    p = cli.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', type=int, default=113, help='a hint config (default 113; its stage without hints '
                   'is the same config with hints off)')
    p.add_argument('--steps', type=cli.positive_int, default=10, help='timed steps of each (default 10)')
    p.add_argument('--warmup', type=cli.natural_int, default=2, help='untimed steps of each first (default 2)')
    p.add_argument('--recolour-share', type=float, default=0.5, help='share of images recoloured in the third '
                   'step and after (recolour.py; default %(default)s)')
    p.add_argument('--hint-branch', type=cli.positive_int, default=config.get_config(119)['hint_branch'],
                   help='channels of the hint branch in the fourth and fifth steps (default %(default)s, as 119)')
    return p.parse_args(argv)


def make_step(cfg, device):
    """A closure running one training step of config ``cfg``'s FCN-32s (hint input as ``cfg['hints']``)
    on a uint8 batch, the network and optimizer built as a run builds them."""
    encoder = targets.ColorEncoder(targets.GMMBins.uniform_grid(cfg['numbins']), 0.5, cfg['img_lowpass'])
    model = run_setup.new_network('fcn32s', cfg, encoder).to(device)
    optim = run_setup.make_optimizer(model, cfg)
    timings = {'sampler': []}

    def step(rgb, iteration):
        with torch.no_grad():
            if cfg['hints']:
                start = time.perf_counter()
                generator = hints.step_generator(device, cfg['seed'], iteration)
                net_input, target = hints.training_batch(encoder, rgb, generator, cfg)
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                timings['sampler'].append(time.perf_counter() - start)
            else:
                net_input, target = encoder.encode(rgb)
        loss = losses.reduce_loss(losses.pixel_losses(model(net_input).float(), target, encoder), 'mean')
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if device.type == 'cuda':
            torch.cuda.synchronize()
    return step, timings


def main(argv=None):
    args = parse_args(argv)
    cfg = config.get_config(args.config)
    if not cfg['hints']:
        raise cli.UserError('config %d has no hint input (hints: false)' % args.config)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.manual_seed(0)
    height, width = cfg['im_size']
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.integers(0, 256, (cfg['batch_size'], 3, height, width), dtype=np.uint8))
               .to(device) for _ in range(4)]
    recoloured = dict(cfg, recolour_share=args.recolour_share)
    branch = dict(recoloured, hint_branch=args.hint_branch, hint_fill=False)
    filled = dict(branch, hint_fill=True)
    settings = {'plain': dict(cfg, hints=False), 'hints': dict(cfg, recolour_share=0.0), 'recoloured': recoloured,
                'branch': branch, 'filled': filled,
                'edges': dict(filled, hint_fill_edge_sigma=config.get_config(122)['hint_fill_edge_sigma'])}
    steps = {name: make_step(setting, device) for name, setting in settings.items()}
    times = {name: [] for name in steps}
    for i in range(args.warmup + args.steps):
        for name, (step, _) in steps.items():   # alternating: the same machine state
            start = time.perf_counter()
            step(batches[i % len(batches)], i)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    batch_s = {name: statistics.median(timings['sampler'][args.warmup:])
               for name, (_, timings) in steps.items() if name != 'plain'}
    images = cfg['batch_size']
    print('device %s, config %d: FCN-32s %dx%d, batch %d, %d threads' % (device, args.config, height, width, images,
                                                                        torch.get_num_threads()))
    print('step without hints: median %.3f s (%.2f images/s)' % (median['plain'], images / median['plain']))
    for name, label in (('hints', 'with hints'), ('recoloured', 'recoloured %g' % args.recolour_share),
                        ('branch', '+ hint branch'), ('filled', '+ filled hints'), ('edges', '... along edges')):
        print('step %-16s median %.3f s (%.2f images/s), of which the batch (targets, hints) %.4f s'
              % (label + ':', median[name], images / median[name], batch_s[name]))
    print('ratio with hints / without: %.3f (target <= %.2f); recoloured / with hints: %.3f (target <= %.2f)'
          % (median['hints'] / median['plain'], TARGET_SLOWDOWN, median['recoloured'] / median['hints'],
             TARGET_SLOWDOWN))
    print('ratio with the hint branch (%d channels) / recoloured: %.3f; with the filled hints / the branch: %.3f'
          % (args.hint_branch, median['branch'] / median['recoloured'], median['filled'] / median['branch']))
    print('ratio with the fill spread along edges (config 122) / the plain fill: %.3f' % (median['edges'] / median['filled']))
    print(json.dumps({'device': str(device), 'config': args.config, 'plain_s': median['plain'],
                      'hints_s': median['hints'], 'recoloured_s': median['recoloured'],
                      'ratio': median['hints'] / median['plain'],
                      'recoloured_ratio': median['recoloured'] / median['hints'],
                      'batch_s': batch_s['hints'], 'recoloured_batch_s': batch_s['recoloured'],
                      'branch_s': median['branch'], 'filled_s': median['filled'],
                      'filled_ratio': median['filled'] / median['branch'], 'edges_s': median['edges'],
                      'edges_ratio': median['edges'] / median['filled']}))
    return 0


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
