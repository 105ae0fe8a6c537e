"""Does a network's prediction help Levin et al.'s propagation of hints?  (a tuning check, issue 20)

    python experiments/hint_prior.py -m HINT_MODEL --photos DIR [--split val] [--points 10]
                                     [--weights 1e-9,1e-8,1e-7,1e-6]

For every photo of ``DIR/split_<split>.txt`` and N hint points drawn as in ``evaluate.py
--hint-points`` (same seeds), scores the hint model, plain Levin et al. 2004, and Levin's system
with the model's prediction as a data term (``levin.levin_colorize(prior=..., prior_weight=w)``)
for each weight w.  Run it on the validation split (never the test split): it chooses whether
such an edge-aware arm is worth adding.  Prints mean PSNR dB / rebalanced AuC % per arm.
"""
import argparse
import os
import sys

import numpy as np

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

import cli  # noqa: E402
import colorize  # noqa: E402
import config  # noqa: E402
import data_loader  # noqa: E402
import hint_sweep  # noqa: E402
import hints  # noqa: E402
import utils  # noqa: E402


def weights(text):
    """argparse type: '1e-8,1e-6' -> [1e-8, 1e-6] (each > 0)."""
    try:
        values = [float(part) for part in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a comma-separated list of numbers' % text) from None
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError('weights must be > 0: %r' % text)
    return values


def main(argv=None):
    p = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('-m', '--model', required=True, help='a hint model checkpoint')
    p.add_argument('--photos', required=True, help='photo folder with split_<split>.txt')
    p.add_argument('--split', default='val', choices=('train', 'val'), help='photos to tune on (default val)')
    p.add_argument('--points', type=cli.natural_int, default=10, help='hint points per photo (default 10)')
    p.add_argument('--weights', type=weights, default=[1e-9, 1e-8, 1e-7, 1e-6], help='prior weights to try')
    args = p.parse_args(argv)
    list_path = os.path.join(args.photos, 'split_%s.txt' % args.split)
    if not os.path.isfile(list_path):
        raise cli.UserError('%s: no such list; make the splits with experiments/get_photos.py' % list_path)
    colorizer = colorize.load_colorizer(args.model)
    if not colorizer.takes_hints:
        raise cli.UserError('%s takes no hints; give a model trained with `hints: true`' % args.model)
    names = data_loader.read_list(list_path)
    if not names:
        raise cli.UserError('%s lists no photos' % list_path)
    per_photo = []
    for name in names:
        try:
            rgb = data_loader.load_rgb(os.path.join(args.photos, name), config.DEFAULTS['max_image_pixels'])
        except data_loader.UnreadableImage as err:
            raise cli.UserError('%s (listed in %s) cannot be read: %s' % (name, list_path, err)) from None
        ab_truth = utils.ab_channels(rgb)
        rebalance = utils.inverse_frequency_weights(ab_truth)
        points = hints.sample_sweep_points(rgb, args.points, hints.sweep_seed(name, args.points))
        outputs = hint_sweep.colorized_arms(colorizer, colorizer.lightness(rgb), points, prior_weights=args.weights)
        per_photo.append({arm: utils.colorization_metrics(rgb, out, ab_truth, rebalance)
                          for arm, out in outputs.items()})
    print('%d %s photos, %d points: PSNR dB / AuC rebal. %%' % (len(per_photo), args.split, args.points))
    for arm in per_photo[0]:
        print('  %-28s %6.2f / %6.2f' % (arm, np.mean([s[arm]['psnr'] for s in per_photo]),
                                          np.mean([s[arm]['auc_rebal'] for s in per_photo])))
    return 0


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
