"""results.md of experiments/quality.py: the default chain's test table, the variants table, the
decisions, the hint chain (quality_hints.py) and the runs."""
import config
import quality_hints

EXPERIMENT = config.QUALITY_EXPERIMENT
METRICS = ('psnr', 'rmse', 'auc', 'auc_rebal', 'colorfulness')
METRIC_NAMES = ('PSNR dB', 'RMSE (ab)', 'AuC %', 'AuC rebal. %', 'colourfulness')
HIGHER_IS_BETTER = dict(psnr=True, rmse=False, auc=True, auc_rebal=True, colorfulness=True)
DEFAULT_ARM = 'default'


def duration(seconds):
    seconds = int(round(seconds))
    return '%dm %02ds' % (seconds // 60, seconds % 60) if seconds >= 60 else '%ds' % seconds


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


def markdown(result):
    """results.md: the default chain's test table, the variants table, the decisions, the runs."""
    lines = ['# Quality experiment', '',
             '`%s`' % result['command'], '',
             '- date (UTC): %s; machine: %s' % (result['date_utc'], result['machine']),
             '- photos: %s (train %s / val %s / test %s photos); test list %s'
             % (result['photos'], *[result['split_sizes'][s] for s in ('train', 'val', 'test')], result['test_list']),
             '- budget: %.3g min for the chain on the reference CPU (%s); reference images/s %s'
             % (result['budget_min'], ', '.join('%s %d iterations' % (r['arch'], r['iterations'])
                                                for r in result['runs'] if r['arm'] == DEFAULT_ARM
                                                and r['seed'] == result['seeds'][0]),
                ' / '.join('%g' % v for v in result['reference_images_per_s'])),
             '- scores: test split, annealed mean (T = 0.38) unless said; mean ± spread (half the range) '
             'over the seeds listed; variants chosen on the validation split', '']
    if result['overrides']:
        lines[-1:-1] = ['- every run with --set %s' % ' '.join(result['overrides'])]
    lines += ['## Default chain, test split', '',
              '| stage | seeds | | %s |' % ' | '.join(METRIC_NAMES), '|---|---|---|%s' % ('---|' * len(METRICS))]
    for arch, r in result['default'].items():
        if r is None:
            lines.append('| %s | not finished | | %s|' % (arch, ' | ' * len(METRICS)))
            continue
        seeds = ', '.join(str(s) for s in r['seeds'])
        name = '**%s: default model**' % arch if arch == result['default_model'] else arch
        lines.append('| %s | %s | model | %s |' % (name, seeds, ' | '.join(metric_cells(r['test'], 'model'))))
        lines.append('| | | target (ceiling) | %s |' % ' | '.join(metric_cells(r['test'], 'target')))
    chosen = result['default_model']
    last = result['default'][chosen] if chosen else None
    if last:
        lines.append('| grayscale | | | %s |' % ' | '.join(metric_cells(last['test'], 'grayscale')))
        lines.append('| ground truth | | | %s%s |' % (' | ' * (len(METRICS) - 1),
                                                  cell(last['test']['ground_truth']['colorfulness'], 1)))
        verdict = []
        for k in ('auc_rebal', 'colorfulness', 'psnr'):
            values = zip(last['test']['model'][k]['values'], last['test']['grayscale'][k]['values'])
            beats = all((m > g) == HIGHER_IS_BETTER[k] for m, g in values)
            verdict.append('%s %s' % (k, 'beats grayscale with every seed' if beats else 'does NOT beat grayscale'))
        lines += ['', 'Default model: %s, the stage with the best validation %s; against grayscale on the '
                  'test split: %s.' % (chosen, EXPERIMENT['choose_on'], '; '.join(verdict))]
    lines += ['']
    if result['variants']:
        lines += ['## Variants, test split (chosen on validation: %s)' % EXPERIMENT['choose_on'], '',
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
                        verdict = 'one seed: no spread'
                    else:
                        verdict = 'within spread' if within_spread(a, b) else 'beyond spread'
                    note = '%+.2f, %s' % (a['mean'] - b['mean'], verdict)
                else:
                    note = ''
                if arm == d.get('chosen'):
                    note += ' **chosen**'
                lines.append('| %s | %s | %s | %s | %s | %s |' % (
                    variant, arm, ', '.join(str(s) for s in r['seeds']), ' | '.join(metric_cells(r['test'], 'model')),
                    cell(r['val']['model']['auc_rebal']), note))
        lines += ['', '## Decisions', '']
        for variant, v in result['variants'].items():
            d = v['decision']
            if not d:
                lines.append('- %s: not finished' % variant)
                continue
            text = '- %s: best on validation %s; ' % (variant, d['best_on_val'])
            if d['best_on_val'] == d['baseline']:
                text += 'the baseline (%s) stays' % d['baseline']
            elif d.get('within_spread'):
                text += 'within the spread of the baseline (%s), which stays' % d['baseline']
            else:
                text += 'beyond the spread of the baseline (%s): choose %s' % (d['baseline'], d['chosen'])
            if not d['complete']:
                text += ' (incomplete: not every arm has every seed, so no decision)'
            lines.append(text)
        lines.append('')
    if result.get('hints'):
        lines += quality_hints.markdown(result['hints'], metric_cells, METRIC_NAMES)
    lines += ['## Runs', '', '| run | iterations | budget | train wall time | evaluation wall time |',
              '|---|---|---|---|---|']
    for r in result['runs']:
        evals = sum(m.get('wall_s', 0.0) for m in r['metrics'].values())
        lines.append('| %s | %d | %s | %s | %s |' % (
            r['name'], r['iterations'], duration(r['budget_s']),
            duration(r['train_wall_s']) if r['train_wall_s'] is not None else 'not finished',
            duration(evals) if evals else ''))
    lines += ['', 'Whole invocation: %s.' % duration(result['elapsed_s']), '']
    return '\n'.join(lines)
