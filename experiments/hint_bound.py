"""How much could any per-photo fusion of Levin's propagation and a model's colours gain?  An upper bound.

    python experiments/hint_bound.py -m MODEL --photos DIR [--split test] [--points 10] [--max-side 1024]

For every photo of ``DIR/split_<split>.txt`` and N hint points drawn as ``evaluate.py --hint-points`` draws
them (same seeds), each arm of ``--arms`` (``model``: the network alone; or any ``propagate.HINT_METHODS``
arm) is blended with ``levin`` by the weight that the *truth* chooses for that photo
(:func:`best_blend`: the least-squares weight in [0, 1], a closed form).  No rule that sees only the hints
can choose better per photo, so the blend's PSNR bounds every per-photo fusion of the two outputs
(``stacked``'s blend weight included).  A measurement, not a method: nothing here is tuned or chosen.
Prints the mean PSNR dB of ``levin``, of each arm and of its truth-chosen blend, per N.
"""
import os
import sys

import numpy as np

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(REPO_DIR))
sys.path.insert(0, REPO_DIR)

import cli  # noqa: E402
import colorize  # noqa: E402
import hint_sweep  # noqa: E402
import hints  # noqa: E402
import utils  # noqa: E402
from hint_fusion import read_photo, split_photos  # noqa: E402


def best_blend(first, second, truth):
    """The weight w in [0, 1] that makes w * first + (1 - w) * second closest to truth (squared error), and
    that blend.  Arrays of one shape; the blend is float64 (round it to compare as an 8-bit image)."""
    first, second, truth = (np.asarray(a, dtype=np.float64) for a in (first, second, truth))
    step = first - second
    norm = float((step * step).sum())
    weight = 0.0 if norm == 0 else float(np.clip((step * (truth - second)).sum() / norm, 0.0, 1.0))
    return weight, weight * first + (1 - weight) * second


def main(argv=None):
    import evaluate
    p = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('-m', '--model', required=True, help='a checkpoint')
    p.add_argument('--photos', required=True, help='photo folder with split_<split>.txt')
    p.add_argument('--split', default='test', choices=('train', 'val', 'test'),
                   help='photos to measure on (default test: nothing is chosen here)')
    p.add_argument('--points', type=evaluate.hint_counts, default=[10], help='hint points per photo (default 10)')
    p.add_argument('--arms', default='model,stacked',
                   help="arms blended with levin: 'model' or propagate.HINT_METHODS names (default %(default)s)")
    p.add_argument('--max-side', type=cli.positive_int, default=None,
                   help='photos scaled down to this long side first (default: full size)')
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(',') if a]
    unknown = [a for a in arms if a not in hint_sweep.ARMS]
    if unknown or not arms:
        raise cli.UserError('--arms: unknown %s; choose from %s' % (','.join(unknown) or "''", ','.join(hint_sweep.ARMS)))
    list_path, names = split_photos(args.photos, args.split)
    colorizer = colorize.load_colorizer(args.model)
    methods = sorted(set(arms) | {'levin'})
    psnr = {}    # (N, arm) -> [dB per photo]; arm 'levin+X' the truth-chosen blend; weights alike
    for name in names:
        rgb = read_photo(args.photos, name, list_path, args.max_side)
        lightness = colorizer.lightness(rgb)
        for count in args.points:
            points = hints.sample_sweep_points(rgb, count, hints.sweep_seed(name, count))
            outputs = hint_sweep.colorized_arms(colorizer, lightness, points, *colorizer.decoding,
                                                arms=methods)   # decoded as evaluate.py decodes
            for arm in methods:
                psnr.setdefault((count, arm), []).append(utils.capped_psnr(rgb, outputs[arm]))
            for arm in arms:
                weight, blend = best_blend(outputs['levin'], outputs[arm], rgb)
                blended = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
                psnr.setdefault((count, 'levin+' + arm), []).append(utils.capped_psnr(rgb, blended))
                psnr.setdefault((count, 'weight of levin, ' + arm), []).append(weight)
        print('scored %s' % name, flush=True)
    print('%d %s photos, mean over photos (PSNR dB; levin+X: blended with the truth-chosen weight of levin):'
          % (len(names), args.split))
    for (count, arm), values in psnr.items():
        print('  N=%-3d %-28s %7.2f   (per photo: %s)' % (count, arm, np.mean(values),
                                                          ' '.join('%.2f' % v for v in values)))
    return 0


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
