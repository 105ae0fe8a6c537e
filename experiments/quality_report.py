"""results.md of experiments/quality.py: the default chain's test table, the variants table, the
decisions, the hint chain (quality_hints.py) and the runs."""
import os
import platform

import config
import quality_folds
import quality_hints
from quality_runs import duration

EXPERIMENT = config.QUALITY_EXPERIMENT
METRICS = ('psnr', 'rmse', 'auc', 'auc_rebal', 'colorfulness')
METRIC_NAMES = ('PSNR dB', 'RMSE (ab)', 'AuC %', 'AuC rebal. %', 'colourfulness')
HIGHER_IS_BETTER = dict(psnr=True, rmse=False, auc=True, auc_rebal=True, colorfulness=True)
DEFAULT_ARM = 'default'
CURVE_FIGURE = 'learning_curve.png'   # in OUT, beside results.md
CURVE_BUDGETS = {'per_photo': 'same budget per photo', 'fixed': 'the same budget'}


def within_spread(a, b):
    """Two mean_spread dicts whose intervals mean +- spread overlap."""
    return abs(a['mean'] - b['mean']) <= a['spread'] + b['spread']


def cell(ms, digits=2):
    if ms is None:
        return ''
    if len(ms['values']) < 2:
        return '%.*f' % (digits, ms['mean'])
    return '%.*f ± %.*f' % (digits, ms['mean'], digits, ms['spread'])


def metric_cells(summary, method):
    return [cell(summary[method][k], 1 if k == 'colorfulness' else 2) for k in METRICS]


def reference_rows(summary):
    """Table rows of grayscale and the ground truth's colourfulness, under a model's rows."""
    return ['| grayscale | | | %s |' % ' | '.join(metric_cells(summary, 'grayscale')),
            '| ground truth | | | %s%s |' % (' | ' * (len(METRICS) - 1),
                                             cell(summary['ground_truth']['colorfulness'], 1))]


def verdict(summary):
    """'auc_rebal beats grayscale with every seed; ...' for a summary's model against its grayscale."""
    out = []
    for k in ('auc_rebal', 'colorfulness', 'psnr'):
        values = zip(summary['model'][k]['values'], summary['grayscale'][k]['values'])
        beats = all((m > g) == HIGHER_IS_BETTER[k] for m, g in values)
        out.append('%s %s' % (k, 'beats grayscale with every seed' if beats else 'does NOT beat grayscale'))
    return '; '.join(out)


def curve_lines(result):
    """results.md's learning curve: the curve's stage on the test split per share of each fold's photos."""
    lines = ['## Learning curve, test split (%s, photos scaled to a long side of %s pixels, mean ± spread over '
             'the folds)' % (result['learning_curve_arch'], result['val_max_side']), '',
             '![learning curve](%s)' % CURVE_FIGURE, '',
             '| budget | share of a fold\'s photos | photos | folds | %s |' % ' | '.join(METRIC_NAMES),
             '|---|---|---|---|%s' % ('---|' * len(METRICS))]
    for budget, points in result['learning_curve'].items():
        for p in points:
            cells = metric_cells(p['test'], 'model') if p['test'] else ['not finished'] + [''] * (len(METRICS) - 1)
            lines.append('| %s | %g | %s | %d | %s |' % (
                CURVE_BUDGETS[budget], p['share'], '%.1f' % p['photos'] if p['photos'] else '', p['folds'],
                ' | '.join(cells)))
    return lines + ['']


def plot_learning_curve(result, path):
    """PSNR and rebalanced AuC on the test split against the training photos per fold, one line per budget
    rule, the spread over the folds as error bars, grayscale dashed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    grey = None
    for budget, points in result['learning_curve'].items():
        done = [p for p in points if p['test'] and p['photos']]
        if not done:
            continue
        grey = done[-1]['test']['grayscale']
        for ax, key in zip(axes, ('psnr', 'auc_rebal')):
            ax.errorbar([p['photos'] for p in done], [p['test']['model'][key]['mean'] for p in done],
                        yerr=[p['test']['model'][key]['spread'] for p in done], marker='o', capsize=3,
                        label=CURVE_BUDGETS[budget])
    for ax, key, name in zip(axes, ('psnr', 'auc_rebal'), ('PSNR dB', 'AuC rebal. %')):
        if grey:
            ax.axhline(grey[key]['mean'], color='grey', linestyle='--', label='grayscale')
        ax.set_xlabel('training photos (per fold)')
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    if grey is None:   # nothing scored yet
        plt.close(fig)
        return
    axes[0].legend()
    fig.suptitle('%s on the test split, trained on shares of each fold' % result['learning_curve_arch'])
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def seeds_cell(r, folds):
    """'0, 1' (the seeds), with folds '0 (4 folds)'."""
    text = ', '.join(str(s) for s in sorted(set(r['seeds'])))
    return text + (' (%d folds)' % len(r['folds']) if folds > 1 else '')


def not_needed(run, result):
    """A run of the recommended model's chain after the chosen stage (never trained)."""
    archs = [s['arch'] for s in result['stages']]
    return result['default_model'] in archs and archs.index(run['arch']) > archs.index(result['default_model'])


def markdown(result):
    """results.md: the default chain's test table, the variants table, the decisions, the runs."""
    folds = result.get('folds', 1)
    split = 'val' if folds > 1 else 'test'           # the split of the tables
    lines = ['# Quality experiment', '',
             '`%s`' % result['command'], '',
             '- date (UTC): %s; machine: %s' % (result['date_utc'], result['machine']),
             ('- photos: %s (train %s / val %s / test %s photos); test list %s'
              % (result['photos'], *[result['split_sizes'][s] for s in ('train', 'val', 'test')], result['test_list'])
              if folds < 2 else '- photos: %s (%s photos outside the test split in %d folds by photo: OUT/folds/; '
              'test %s photos); test list %s' % (result['photos'], sum(result['split_sizes'][s] or 0 for s in
                                                                     ('train', 'val')), folds,
                                                 result['split_sizes']['test'], result['test_list'])),
             '- budget: %.3g min for the chain on the reference CPU (%s); reference images/s %s'
             % (result['budget_min'], ', '.join('%s %d iterations' % (r['arch'], r['iterations'])
                                                for r in result['runs'] if r['arm'] == DEFAULT_ARM
                                                and r['seed'] == result['seeds'][0] and r.get('fold') in (None, 0)),
                ' / '.join('%g' % v for v in result['reference_images_per_s'])),
             '- scores: test split, annealed mean (T = 0.38) unless said; mean ± spread (half the range) '
             'over the seeds listed; variants chosen on the validation split' if folds < 2 else
             '- scores: validation folds: mean ± spread (half the range) over the %d folds (each fold\'s model '
             'trained on the other folds, the same budget) and the seeds listed; annealed mean (T = 0.38) unless '
             'said; validation photos scaled to a long side of %s pixels; the test split scores the recommended '
             'model once, at full size' % (folds, result.get('val_max_side')),
             '- selection rule: %s' % result.get('selection_rule', ''), '']
    if result['overrides']:
        lines[-1:-1] = ['- every run with --set %s' % ' '.join(result['overrides'])]
    lines += ['## Default chain, %s' % ('test split' if folds < 2 else '%d-fold cross-validation' % folds), '',
              '| stage | seeds | | %s |' % ' | '.join(METRIC_NAMES), '|---|---|---|%s' % ('---|' * len(METRICS))]
    for arch, r in result['default'].items():
        if r is None:
            lines.append('| %s | not finished | | %s|' % (arch, ' | ' * len(METRICS)))
            continue
        seeds = seeds_cell(r, folds)
        name = '**%s: default model**' % arch if arch == result['default_model'] else arch
        lines.append('| %s | %s | model | %s |' % (name, seeds, ' | '.join(metric_cells(r[split], 'model'))))
        lines.append('| | | target (ceiling) | %s |' % ' | '.join(metric_cells(r[split], 'target')))
    chosen = result['default_model']
    last = result['default'][chosen] if chosen else None
    if last:
        lines += reference_rows(last[split])
        lines += ['', 'Default model: %s, chosen by the selection rule on the %s.' % (
            chosen, 'validation split' if folds < 2 else 'means over the folds')]
        if folds < 2:
            lines[-1] += ' Against grayscale on the test split: %s.' % verdict(last['test'])
    recommended = result.get('recommended')
    if recommended:
        lines += ['', '## Recommended model, test split', '']
        if recommended['test'] is None:
            lines.append('%s trained on every photo outside the test split: not finished.' % recommended['arch'])
        else:
            lines += ['| stage (decoding) | trained on | | %s |' % ' | '.join(METRIC_NAMES),
                      '|---|---|---|%s' % ('---|' * len(METRICS)),
                      '| %s (%s) | every non-test photo | model | %s |' % (
                          recommended['arch'], recommended['decode'],
                          ' | '.join(metric_cells(recommended['test'], 'model'))),
                      '| | | target (ceiling) | %s |' % ' | '.join(metric_cells(recommended['test'], 'target'))]
            lines += reference_rows(recommended['test'])
            lines += ['', 'Against grayscale on the test split: %s.' % verdict(recommended['test'])]
    lines += ['']
    if result['variants']:
        lines += ['## Variants, %s (chosen by the selection rule)' % (
                      'test split' if folds < 2 else 'mean over the %d folds' % folds), '',
                  '| variant | arm | seeds | %s | val AuC rebal. %% | vs baseline on val |'
                  % ' | '.join(METRIC_NAMES), '|---|---|---|%s---|---|' % ('---|' * len(METRICS))]
        for variant, v in result['variants'].items():
            d = v['decision'] or {}
            for arm, r in v['arms'].items():
                if r is None:
                    lines.append('| %s | %s | not finished |%s | | |' % (variant, arm, ' |' * len(METRICS)))
                    continue
                base = v['arms'].get(d.get('baseline'))
                if arm == d.get('baseline'):
                    note = 'baseline'
                elif base:
                    a, b = r['val']['model']['auc_rebal'], base['val']['model']['auc_rebal']
                    if len(a['values']) < 2 or len(b['values']) < 2:
                        spread_note = 'one seed: no spread'
                    else:
                        spread_note = 'within spread' if within_spread(a, b) else 'beyond spread'
                    note = '%+.2f, %s' % (a['mean'] - b['mean'], spread_note)
                else:
                    note = ''
                if arm == d.get('chosen'):
                    note += ' **chosen**'
                lines.append('| %s | %s | %s | %s | %s | %s |' % (
                    variant, arm, seeds_cell(r, folds), ' | '.join(metric_cells(r[split], 'model')),
                    cell(r['val']['model']['auc_rebal']), note))
        lines += ['', '## Decisions', '']
        for variant, v in result['variants'].items():
            d = v['decision']
            if not d:
                lines.append('- %s: not finished' % variant)
                continue
            text = '- %s: the rule chooses %s' % (variant, d['chosen'])
            if d['chosen'] == d['baseline']:
                text += ', the baseline'
            elif 'within_spread' in d:
                text += ', %s the spread of the baseline (%s)' % ('within' if d['within_spread'] else 'beyond',
                                                                   d['baseline'])
            if len(d.get('qualified', [])) < len(v['arms']):
                text += '; within %g AuC point of grayscale: %s' % (
                    quality_folds.SELECTION['auc_points'], ', '.join(d.get('qualified', [])) or 'none')
            if not d['complete']:
                text += ' (incomplete: not every arm has every seed, so no decision)'
            lines.append(text)
        lines.append('')
    if result.get('learning_curve'):
        lines += curve_lines(result)
    if result.get('hints'):
        lines += quality_hints.markdown(result['hints'], metric_cells, METRIC_NAMES)
    lines += ['## Runs', '', '| run | iterations | budget | train wall time | evaluation wall time |',
              '|---|---|---|---|---|']
    for r in result['runs']:
        evals = sum(m.get('wall_s', 0.0) for m in r['metrics'].values())
        lines.append('| %s | %d | %s | %s | %s |' % (
            r['name'], r['iterations'], duration(r['budget_s']),
            duration(r['train_wall_s']) if r['train_wall_s'] is not None else
            'not needed (the chosen stage is earlier)' if r.get('fold') == 'all' and not_needed(r, result) else
            'not finished',
            duration(evals) if evals else ''))
    lines += ['', 'Whole invocation: %s.' % duration(result['elapsed_s']), '']
    return '\n'.join(lines)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return '%s, %d cores, %s, Python %s' % (cpu, cores, platform.machine(), platform.python_version())


def test_grid(model_path, args, out_path):
    """original | grayscale | model (in the checkpoint's decoding) for every test photo, one row each."""
    from PIL import Image
    import colorize
    import data_loader
    import evaluate as evaluate_module
    import utils
    colorizer = colorize.load_colorizer(model_path, 'cpu')
    paths = [evaluate_module.locate(args.photos, p) for p in data_loader.read_list(args.test_list)]
    rows = []
    for readable, _ in colorize.read_batches(paths, 4, config.DEFAULTS['max_image_pixels']):
        outputs = colorizer.colorize([rgb for _, rgb in readable], *colorizer.decoding)
        for (_, rgb), out in zip(readable, outputs):
            rows.append([evaluate_module.thumbnail(x) for x in (rgb, utils.grayscale(rgb), out)])
    if rows:
        tmp = out_path + '.tmp.png'
        Image.fromarray(utils.tile_images(rows)).save(tmp)
        os.replace(tmp, out_path)
    return len(rows)
