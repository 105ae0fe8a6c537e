"""Does a network learn to read hints with more training?  The network's own hint gain against
iterations and the recoloured share (issue 28).

    python experiments/hint_curve.py --photos data/photos --out out/hint-curve [--budget-min 5]
                                     [--multiples 1,4,16] [--arms first_layer,branch,...]

1. The base: the default chain's FCN-32s (``QUALITY_EXPERIMENT['chain']``'s first config) trained on
   ``split_train.txt`` for the FCN-32s iterations of a quality-experiment chain of ``--budget-min``
   (``HINT_CURVE['budget_min']``; ``quality.py``'s rule: the budget's share x the reference images/s /
   batch size), seed 0; for an arm on a later stage, the chain continued up to that stage (each stage
   for its own iterations of that budget).
2. Each arm of ``config.HINT_CURVE['arms']`` (a hint config, ``--set`` overrides and its stage) starts
   from the base of its stage and trains ONE run, continued with ``--resume`` to each multiple of the
   FCN-32s iterations (every arm to the same iteration counts; the learning
   rate is constant, so a snapshot at 4x is the run a 4x budget would train); a snapshot of the weights
   is kept at each multiple (``OUT/<arm>/it<N>.pth.tar``).
3. Each snapshot is scored (again when its file changed) on ``split_val.txt`` (never the test split) as ``evaluate.py --hint-points``
   scores the network alone (``model``: its prediction with the hints as input, the hints' squares
   pasted), at 0 and ``HINT_CURVE['points']`` points drawn with the sweep's seeds.

Writes ``OUT/hint_curve.json``, ``OUT/hint_curve.md`` (table) and ``OUT/hint_curve.png`` (the gain in
PSNR against iterations, one line per arm).  Everything finished is reused: run it again with a larger
``--multiples`` to extend the curve.
"""
import os
import sys

import numpy as np

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

import cli  # noqa: E402
import config  # noqa: E402
from hint_fusion import numbers_int, read_photo, split_photos  # noqa: E402
from quality_plan import stage_iterations  # noqa: E402
from cli import UserError  # noqa: E402
from quality_runs import (duration, file_stamp, read_json, run_child, save_colorizer_checkpoint, say,  # noqa: E402
                          set_pairs, write_json)

CURVE = config.HINT_CURVE
BASE_ARCH, BASE_CONFIG = config.QUALITY_EXPERIMENT['chain'][0]
CHAIN = config.QUALITY_EXPERIMENT['chain']


def train_script(arch):
    return os.path.join(REPO_DIR, 'train_color_%s.py' % arch)


def set_flags(overrides):
    """{'seed': 0} -> ['--set', 'seed=0'] (YAML values, as the trainer's --set reads them)."""
    return [part for pair in set_pairs(overrides) for part in ('--set', pair)]


def train_to(command, run_dir, label, iterations, snapshot):
    """Run the training ``command`` (to ``iterations``) in ``run_dir``; its final weights go to ``snapshot``."""
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, 'hint_curve.log')
    say('train  %s to iteration %d' % (label, iterations))
    status, wall = run_child(command + ['--max-iter', str(iterations)], log_path, label, run_dir, iterations)
    if status != 0:
        raise UserError('%s failed (exit status %d): see %s' % (label, status, log_path))
    save_colorizer_checkpoint(os.path.join(run_dir, 'checkpoint.pth.tar'), snapshot)
    say('done   %s to iteration %d in %s' % (label, iterations, duration(wall)))


def train_base(args, arch):
    """The base of the arms that train stage ``arch``: the default chain up to it (each stage from the
    previous one's model, each for its iterations of a ``--budget-min`` chain); its final weights' path
    (``OUT/base.pth.tar`` for FCN-32s, ``OUT/base-fcn16s.pth.tar``...)."""
    previous = None
    for index, (stage, number) in enumerate(CHAIN[:[a for a, _ in CHAIN].index(arch) + 1]):
        name = 'base' if index == 0 else 'base-%s' % stage
        run_dir, target = os.path.join(args.out, name), os.path.join(args.out, name + '.pth.tar')
        if not os.path.isfile(target):
            iterations, _ = stage_iterations(args.budget_min, config.get_config(number)['batch_size'], index)
            command = [sys.executable, train_script(stage), '-c', str(number), '-d', args.photos, '-o',
                       run_dir] + (['-m', previous] if previous else []) + set_flags(dict(seed=CURVE['seed']))
            train_to(command, run_dir, '%s (config %d)' % (name, number), iterations, target)
        previous = target
    return previous


def snapshot_path(args, arm, iterations):
    return os.path.join(args.out, arm, 'it%d.pth.tar' % iterations)


def train_arm(args, arm, base, counts):
    """One run of ``arm`` from ``base``, continued to each of ``counts`` (ascending); a snapshot at each."""
    config_number, overrides, arch = CURVE['arms'][arm]
    run_dir = os.path.join(args.out, arm, 'run')
    checkpoint = os.path.join(run_dir, 'checkpoint.pth.tar')
    for count in counts:
        if os.path.isfile(snapshot_path(args, arm, count)):
            continue
        if os.path.isfile(checkpoint):
            command = [sys.executable, train_script(arch), '--resume', checkpoint]
        else:
            command = [sys.executable, train_script(arch), '-c', str(config_number), '-d', args.photos,
                       '-o', run_dir, '-m', base] + set_flags(dict(overrides, seed=CURVE['seed']))
        train_to(command, run_dir, '%s (config %d %s)' % (arm, config_number, overrides or ''), count,
                 snapshot_path(args, arm, count))


def network_gain(model_path, photos, points):
    """Mean PSNR dB / rebalanced AuC % of the network alone over ``photos`` ([(name, rgb)]) at 0 and
    ``points`` hint points -> {'0': {...}, str(points): {...}, 'gain_psnr': ...}."""
    import colorize
    import hints
    import utils
    colorizer = colorize.load_colorizer(model_path)
    scores = {0: [], points: []}
    for name, rgb in photos:
        ab_truth = utils.ab_channels(rgb)
        rebalance = utils.inverse_frequency_weights(ab_truth)
        lightness = colorizer.lightness(rgb)
        for count in scores:
            drawn = hints.sample_sweep_points(rgb, count, hints.sweep_seed(name, count))
            maps = colorizer.full_hint_maps(drawn, *lightness.shape)
            out = colorizer.hinted_outputs(lightness, maps, ('model',))['model']
            scores[count].append(utils.colorization_metrics(rgb, out, ab_truth, rebalance))
    result = {str(c): {k: float(np.mean([s[k] for s in v])) for k in ('psnr', 'auc_rebal')} for c, v in scores.items()}
    result['gain_psnr'] = result[str(points)]['psnr'] - result['0']['psnr']
    return result


def plot(results, base_scores, path):
    """Two panels against iterations, one line per arm: the gain (PSNR at ``points`` - at 0) and the
    PSNR with no hints (the base model's as a dashed line)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (gain_ax, zero_ax) = plt.subplots(1, 2, figsize=(11, 4.0))
    counts_seen = set()
    for arm, by_count in results.items():
        counts = sorted(int(c) for c in by_count)
        counts_seen.update(counts)
        gain_ax.plot(counts, [by_count[str(c)]['gain_psnr'] for c in counts], marker='o', label=arm)
        zero_ax.plot(counts, [by_count[str(c)]['0']['psnr'] for c in counts], marker='o', label=arm)
    gain_ax.axhline(0.0, color='grey', lw=0.8)
    base_line = zero_ax.axhline(base_scores['psnr'], color='grey', ls='--', lw=1.0,
                    label='the base FCN-32s (%d iterations, no hint input)' % base_scores['iterations'])
    batch = config.get_config(BASE_CONFIG)['batch_size']
    for ax in (gain_ax, zero_ax):
        ax.set_xscale('log')
        ax.set_xticks(sorted(counts_seen), [str(c) for c in sorted(counts_seen)])
        ax.minorticks_off()
        ax.set_xlabel('training iterations of the hint model (batch %d)' % batch)
    gain_ax.set_ylabel('PSNR at %d points - at 0 points (dB)' % CURVE['points'])
    gain_ax.set_title('the network\'s own hint gain')
    zero_ax.set_ylabel('PSNR with no hints (dB)')
    zero_ax.set_title('its colours without hints')
    zero_ax.margins(y=0.3)
    gain_ax.legend()
    zero_ax.legend(handles=[base_line], fontsize='small', loc='lower right')   # the arms: the left panel's legend
    fig.suptitle('Does the network learn to read hints? (the network alone, validation photos)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(results, base_scores):
    lines = ['| arm | iterations | PSNR 0 pts | PSNR %d pts | gain dB | AuC rebal. 0 / %d pts |' % ((CURVE['points'],) * 2),
             '|---|---|---|---|---|---|',
             '| base (no hints) | %d | %.2f | | | %.2f |' % (base_scores['iterations'], base_scores['psnr'],
                                                           base_scores['auc_rebal'])]
    p = str(CURVE['points'])
    for arm, by_count in results.items():
        for c in sorted(by_count, key=int):
            s = by_count[c]
            lines.append('| %s | %s | %.2f | %.2f | %+.2f | %.2f / %.2f |' % (
                arm, c, s['0']['psnr'], s[p]['psnr'], s['gain_psnr'], s['0']['auc_rebal'], s[p]['auc_rebal']))
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--photos', required=True, help='photo folder with split_train.txt and split_val.txt')
    p.add_argument('--out', required=True, help='output folder (reused: finished runs and scores are kept)')
    p.add_argument('--budget-min', type=float, default=config.HINT_CURVE['budget_min'],
                   help='the quality experiment\'s chain budget whose FCN-32s iterations are 1x (default %(default)s)')
    p.add_argument('--multiples', type=numbers_int, default=list(CURVE['multiples']),
                   help='iterations as multiples of the budget\'s (default %(default)s)')
    p.add_argument('--arms', type=lambda t: [a.strip() for a in t.split(',') if a.strip()],
                   default=list(CURVE['arms']), help='arms of config.HINT_CURVE (default: all)')
    args = p.parse_args(argv)
    unknown = [a for a in args.arms if a not in CURVE['arms']]
    if unknown:
        raise UserError('unknown arm %s (known: %s)' % (', '.join(unknown), ', '.join(CURVE['arms'])))
    val_list, names = split_photos(args.photos, 'val')
    split_photos(args.photos, 'train')
    os.makedirs(args.out, exist_ok=True)
    unit, _ = stage_iterations(args.budget_min, config.get_config(BASE_CONFIG)['batch_size'], 0)
    counts = sorted({unit * m for m in args.multiples})
    base = train_base(args, BASE_ARCH)
    for arm in args.arms:
        train_arm(args, arm, train_base(args, CURVE['arms'][arm][2]), counts)
    photos = []   # the validation photos, read once and only when something is to be scored

    def val_photos():
        if not photos:
            photos.extend((name, read_photo(args.photos, name, val_list)) for name in names)
        return photos
    scores_path = os.path.join(args.out, 'hint_curve.json')
    saved = read_json(scores_path) or {}
    results = saved.get('arms', {})
    if 'base' not in saved:
        base_scores = network_gain(base, val_photos(), CURVE['points'])['0']
        saved['base'] = dict(base_scores, iterations=unit)
    for arm in args.arms:
        for count in counts:
            path = snapshot_path(args, arm, count)
            stamp = file_stamp(path)   # a score is reused only for the file it scored (or one recorded unstamped)
            found = results.get(arm, {}).get(str(count))
            if found is None or found.get('snapshot', stamp) != stamp:
                results.setdefault(arm, {})[str(count)] = dict(network_gain(path, val_photos(), CURVE['points']),
                                                               snapshot=stamp)
                say('scored %s at iteration %d: gain %+.2f dB' % (arm, count, results[arm][str(count)]['gain_psnr']))
                write_json(scores_path, dict(saved, arms=results, photos=names, points=CURVE['points'], unit=unit))
    write_json(scores_path, dict(saved, arms=results, photos=names, points=CURVE['points'], unit=unit))
    with open(os.path.join(args.out, 'hint_curve.md'), 'w') as f:
        f.write(table(results, saved['base']))
    plot(results, saved['base'], os.path.join(args.out, 'hint_curve.png'))
    print(table(results, saved['base']))
    return 0


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
