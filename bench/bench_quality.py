"""Training images/s of each stage of experiments/quality.py's chain (configs 110 -> 111 -> 112).

Each stage trains exactly as ``quality.py`` runs it (the train script as a child process, on
the photo folder of ``experiments/get_photos.py``, with its split lists, each stage from the
previous one's best model) for ``--iterations`` iterations in a temporary folder.  Reported per
stage: steady-state images/s (training steps and the periodic validations, from ``log.csv``'s
elapsed times after the first logged step), the start-up seconds (process start, colour
statistics, first validation), the whole run's wall time, and the ratio of the steady rate to
the reference in ``config.QUALITY_EXPERIMENT['reference_images_per_s']``, which is what turns
``quality.py``'s budget into iterations: a ratio of 0.5 means the experiment takes twice its
budget on this machine.

    python bench/bench_quality.py --photos DIR [--iterations 60] [--stages fcn32s,fcn16s,fcn8s]

Ends with one JSON line: a list of ``{arch, config, iterations, images_per_s, startup_s,
wall_s, reference_images_per_s, ratio}``.  About 4 minutes with the defaults on 2 idle CPU cores.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

import config  # noqa: E402

EXPERIMENT = config.QUALITY_EXPERIMENT


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--photos', required=True, help='photo folder of experiments/get_photos.py')
    p.add_argument('--iterations', type=int, default=60, help='iterations per stage (default %(default)s)')
    p.add_argument('--stages', default=','.join(a for a, _ in EXPERIMENT['chain']),
                   help='stages to time, in chain order (default %(default)s)')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', dest='overrides',
                   help='config override for every stage (as the train scripts\' --set)')
    return p.parse_args(argv)


def steady_rate(log_csv, batch_size):
    """(images/s after the first training row, seconds before it) from a run's log.csv."""
    with open(log_csv) as f:
        rows = [r for r in csv.DictReader(f) if r['train/loss']]
    first, last = rows[0], rows[-1]
    steps = int(last['iteration']) - int(first['iteration'])
    seconds = float(last['elapsed_time']) - float(first['elapsed_time'])
    return steps * batch_size / seconds, float(first['elapsed_time'])


def main(argv=None):
    args = parse_args(argv)
    wanted = [a.strip() for a in args.stages.split(',')]
    archs = [arch for arch, _ in EXPERIMENT['chain']]
    unknown = [w for w in wanted if w not in archs]
    if unknown:
        print('error: --stages: unknown %s (choose from %s)' % (', '.join(unknown), ', '.join(archs)), file=sys.stderr)
        return 2
    last = max(archs.index(w) for w in wanted)   # a later stage needs the earlier ones' models
    results, previous = [], None
    with tempfile.TemporaryDirectory(prefix='bench-quality-') as tmp:
        for index, (arch, number) in enumerate(EXPERIMENT['chain'][:last + 1]):
            run_dir = os.path.join(tmp, arch)
            command = [sys.executable, os.path.join(REPO_DIR, 'train_color_%s.py' % arch), '-c', str(number),
                       '-d', args.photos, '-o', run_dir, '--max-iter', str(args.iterations)]
            for pair in args.overrides:
                command += ['--set', pair]
            if previous:
                command += ['-m', previous]
            start = time.time()
            with open(os.path.join(tmp, arch + '.log'), 'w') as log:
                status = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_DIR)
            wall = time.time() - start
            if status != 0:
                with open(os.path.join(tmp, arch + '.log')) as f:
                    sys.stderr.write(f.read()[-3000:])
                print('error: %s (config %d) failed with exit status %d' % (arch, number, status), file=sys.stderr)
                return 1
            previous = os.path.join(run_dir, 'model_best.pth.tar')
            if arch not in wanted:
                continue
            batch = config.get_config(number)['batch_size']
            rate, _ = steady_rate(os.path.join(run_dir, 'log.csv'), batch)
            training_s = args.iterations * batch / rate
            reference = EXPERIMENT['reference_images_per_s'][index]
            results.append(dict(arch=arch, config=number, iterations=args.iterations, images_per_s=round(rate, 3),
                                startup_s=round(wall - training_s, 1), wall_s=round(wall, 1),
                                reference_images_per_s=reference, ratio=round(rate / reference, 3)))
            print('%s (config %d, batch %d): %.2f images/s steady, start-up and final save %.0f s, %d iterations '
                  'in %.0f s; %.2fx the reference %.2f images/s'
                  % (arch, number, batch, rate, wall - training_s, args.iterations, wall, rate / reference, reference),
                  flush=True)
    print(json.dumps(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
