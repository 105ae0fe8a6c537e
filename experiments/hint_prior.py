"""Does a network's prediction help Levin et al.'s propagation of hints?  (a tuning check, issue 20)

    python experiments/hint_prior.py -m HINT_MODEL --photos DIR [--split val] [--points 10]
                                     [--weights 1e-9,1e-8,1e-7,1e-6]

For every photo of ``DIR/split_<split>.txt`` and N hint points drawn as in ``evaluate.py
--hint-points`` (same seeds), scores the hint model, plain Levin et al. 2004, and Levin's system
with the model's prediction as a data term (``levin.levin_colorize(prior=..., prior_weight=w)``)
for each weight w.  Run it on the validation split (never the test split): it chooses whether
such an edge-aware arm is worth adding.  Prints mean PSNR dB / rebalanced AuC % per arm.
"""
import os
import sys

import numpy as np

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

import cli  # noqa: E402
import colorize  # noqa: E402
import hint_sweep  # noqa: E402
from hint_fusion import numbers, read_photo, split_photos  # noqa: E402
import hints  # noqa: E402
import utils  # noqa: E402


def main(argv=None):
    p = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('-m', '--model', required=True, help='a checkpoint (a hint model or not)')
    p.add_argument('--photos', required=True, help='photo folder with split_<split>.txt')
    p.add_argument('--split', default='val', choices=('train', 'val'), help='photos to tune on (default val)')
    p.add_argument('--points', type=cli.natural_int, default=10, help='hint points per photo (default 10)')
    p.add_argument('--weights', type=numbers, default=[1e-9, 1e-8, 1e-7, 1e-6], help='prior weights to try')
    args = p.parse_args(argv)
    list_path, names = split_photos(args.photos, args.split)
    colorizer = colorize.load_colorizer(args.model)
    per_photo = []
    for name in names:
        rgb = read_photo(args.photos, name, list_path)
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
