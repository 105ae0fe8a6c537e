"""How far should a hint's correction reach, at what working size?  Tunes ``config.HINT_PROPAGATION``'s
``leak`` and ``side`` on validation.

    python experiments/hint_fusion.py -m MODEL --photos DIR [--split val] [--points 2,10,50]
                                      [--leaks 0,1e-6,1e-5,1e-4] [--sides 256]

For every photo of ``DIR/split_<split>.txt``, N hint points drawn as in ``evaluate.py
--hint-points`` (same seeds) and each leak and side, scores every arm of ``propagate.HINT_METHODS``
through the library's path (``Colorizer.hinted_outputs``), on the photos scaled down to
``--max-side`` pixels (a tuning proxy: the sweep itself runs at full size).  Run it on the validation
split, never the test split.  Prints mean PSNR dB / rebalanced AuC % per side, leak, arm and N, and writes them as JSON
with ``--out FILE``.
"""
import argparse
import itertools
import json
import os
import sys

import numpy as np

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

import cli  # noqa: E402
import colorize  # noqa: E402
import config  # noqa: E402
import data_loader  # noqa: E402
import hints  # noqa: E402
import utils  # noqa: E402


def numbers(text):
    """argparse type: '0,1e-6' -> [0.0, 1e-06] (each >= 0)."""
    try:
        values = [float(part) for part in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a comma-separated list of numbers' % text) from None
    if not all(0 <= v for v in values):
        raise argparse.ArgumentTypeError('must be >= 0: %r' % text)
    return values


def numbers_int(text):
    """argparse type: '192,256' -> [192, 256]."""
    return [cli.positive_int(part) for part in text.split(',')]


def split_photos(photos, split):
    """(list path, names) of ``photos/split_<split>.txt``; a missing or empty list is a UserError."""
    list_path = os.path.join(photos, 'split_%s.txt' % split)
    if not os.path.isfile(list_path):
        raise cli.UserError('%s: no such list; make the splits with experiments/get_photos.py' % list_path)
    names = data_loader.read_list(list_path)
    if not names:
        raise cli.UserError('%s lists no photos' % list_path)
    return list_path, names


def read_photo(photos, name, list_path, max_side=None):
    """uint8 ``[H, W, 3]`` of ``photos/name`` (listed in ``list_path``), its long side scaled down to
    ``max_side``; an unreadable one is a UserError."""
    try:
        return data_loader.load_rgb(os.path.join(photos, name), config.DEFAULTS['max_image_pixels'],
                                    max_side=max_side)
    except data_loader.UnreadableImage as err:
        raise cli.UserError('%s (listed in %s) cannot be read: %s' % (name, list_path, err)) from None


def main(argv=None):
    import evaluate
    p = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('-m', '--model', required=True, help='a checkpoint (any: hints are spread for every model)')
    p.add_argument('--photos', required=True, help='photo folder with split_<split>.txt')
    p.add_argument('--split', default='val', choices=('train', 'val'), help='photos to tune on (default val)')
    p.add_argument('--points', type=evaluate.hint_counts, default=[2, 10, 50], help='hint points per photo')
    p.add_argument('--leaks', type=numbers, default=[0.0, 1e-6, 1e-5, 1e-4], help='leaks to try')
    p.add_argument('--variance-scales', type=numbers, default=[config.HINT_PROPAGATION['variance_scale']],
                   help="csig / window variance of the corrections' affinities to try")
    p.add_argument('--sides', type=numbers_int, default=[config.HINT_PROPAGATION['side']],
                   help='working sizes (short side, pixels) to try')
    p.add_argument('--max-side', type=cli.positive_int, default=1024,
                   help='photos are scaled down to this long side first, for speed (default %(default)s)')
    p.add_argument('--out', default=None, help='also write the table as JSON here')
    args = p.parse_args(argv)
    list_path, names = split_photos(args.photos, args.split)
    colorizer = colorize.load_colorizer(args.model)
    scores = {}   # leak -> arm -> N -> [(psnr, auc_rebal)]
    for name in names:
        rgb = read_photo(args.photos, name, list_path, args.max_side)
        ab_truth = utils.ab_channels(rgb)
        rebalance = utils.inverse_frequency_weights(ab_truth)
        lightness = colorizer.lightness(rgb)
        for count in args.points:
            points = hints.sample_sweep_points(rgb, count, hints.sweep_seed(name, count))
            maps = colorizer.full_hint_maps(points, *lightness.shape)
            for side, leak, scale in itertools.product(args.sides, args.leaks, args.variance_scales):
                config.HINT_PROPAGATION.update(side=side, leak=leak, variance_scale=scale)
                outputs = colorizer.hinted_outputs(lightness, maps, config.HINT_METHODS)
                for arm, out in outputs.items():
                    m = utils.colorization_metrics(rgb, out, ab_truth, rebalance)
                    scores.setdefault('side %d leak %g vs %g' % (side, leak, scale), {}).setdefault(
                        arm, {}).setdefault(str(count), []).append((m['psnr'], m['auc_rebal']))
        print('scored %s' % name, flush=True)
    table = {key: {arm: {n: np.mean(v, axis=0).tolist() for n, v in per_n.items()} for arm, per_n in arms.items()}
             for key, arms in scores.items()}
    print('%d %s photos: PSNR dB / AuC rebal. %%' % (len(names), args.split))
    for key, arms in table.items():
        for arm, per_n in arms.items():
            print('  %-28s %-12s %s' % (key, arm, '  '.join('N=%s %6.2f / %6.2f' % (n, *v)
                                                              for n, v in per_n.items())))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(table, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
