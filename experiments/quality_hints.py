"""``quality.py --hints``: the hint chain (configs 113 -> 114 -> 115, colour-hint input) on the same
photos and budget, its model chosen on validation as the default model is, and that model's hint
sweep (``evaluate.py --hint-points``) on the test split: model, model with the edge-aware
upsampling, Levin et al. 2004 on the same points, grayscale.

The quality goal it checks: the hint model with 0 points no worse than the default model, and with
10 points above Levin et al. on the same points.
"""
import json
import os
import shutil
import sys

HINT_ARM = 'hints'
SWEEP_DIR = 'sweep-test'           # in OUT/hints: the chosen hint model's sweep on the test split
GOAL_METRICS = ('psnr', 'auc_rebal')
GOAL_POINTS = 10


def sweep(model_path, counts, args, out_root, run_child, say):
    """hints.json of ``evaluate.py -m MODEL --hint-points COUNTS`` on the test split (reused when present)."""
    out = os.path.join(out_root, SWEEP_DIR)
    result_path = os.path.join(out, 'hints.json')
    if os.path.isfile(result_path):
        with open(result_path) as f:
            return json.load(f)
    tmp = out + '.tmp'
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    points = ','.join(str(n) for n in counts)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, os.path.join(repo, 'evaluate.py'), '-m', model_path, '-d', args.photos,
               '--list', args.test_list, '--hint-points', points, '-o', tmp]
    status, wall = run_child(command, os.path.join(out_root, 'quality.log'), 'hint sweep on test')
    if status != 0 or not os.path.isfile(os.path.join(tmp, 'hints.json')):
        say('FAILED the hint sweep (exit status %d); see %s' % (status, os.path.join(out_root, 'quality.log')))
        return None
    os.replace(tmp, out)
    with open(result_path) as f:
        result = json.load(f)
    say('hint sweep on test in %.0f s: model %.2f dB, Levin %.2f dB at %d points'
        % (wall, result['model'][str(GOAL_POINTS)]['psnr'], result['levin'][str(GOAL_POINTS)]['psnr'], GOAL_POINTS)
        if str(GOAL_POINTS) in result['model'] else 'hint sweep on test in %.0f s' % wall)
    return result


def goal(default_test, sweep_result):
    """The quality goal, metric by metric: {'zero_points': {...}, 'ten_points': {...}} (None before a sweep)."""
    if not sweep_result or default_test is None:
        return None
    out = {'zero_points': {}, 'ten_points': {}}
    for k in GOAL_METRICS:
        default = default_test['model'][k]['mean']
        hinted = sweep_result['model']['0'][k] if '0' in sweep_result['model'] else None
        out['zero_points'][k] = {'hint_model': hinted, 'default_model': default,
                                 'met': hinted is not None and hinted >= default}
        ten = str(GOAL_POINTS)
        if ten in sweep_result['model']:
            best = max(('model', 'model_guided'), key=lambda m: sweep_result[m][ten][k])
            out['ten_points'][k] = {'model': sweep_result['model'][ten][k],
                                    'model_guided': sweep_result['model_guided'][ten][k],
                                    'levin': sweep_result['levin'][ten][k], 'best_arm': best,
                                    'met': sweep_result[best][ten][k] > sweep_result['levin'][ten][k]}
    return out


def markdown(hints_result, metric_cells, metric_names):
    """results.md's hint section: the chain's test table, the sweep table, the goal."""
    lines = ['## Hint chain (configs %s), test split, no hints' % ' -> '.join(str(n) for n in hints_result['configs']),
             '', '| stage | | %s |' % ' | '.join(metric_names), '|---|---|%s' % ('---|' * len(metric_names))]
    for arch, r in hints_result['stages'].items():
        if r is None:
            lines.append('| %s | not finished |%s' % (arch, ' |' * len(metric_names)))
            continue
        name = '**%s: hint model**' % arch if arch == hints_result['hint_model'] else arch
        lines.append('| %s | model | %s |' % (name, ' | '.join(metric_cells(r['test'], 'model'))))
    sweep_result = hints_result.get('sweep')
    if sweep_result:
        counts = sorted(sweep_result['model'], key=int)
        lines += ['', '### Hint sweep of the hint model (%s), test split: PSNR dB / AuC rebal. %%'
                  % hints_result['hint_model'], '',
                  '| points | %s |' % ' | '.join(sweep_result), '|---|%s' % ('---|' * len(sweep_result))]
        for n in counts:
            lines.append('| %s | %s |' % (n, ' | '.join('%.2f / %.2f' % (sweep_result[m][n]['psnr'],
                                                                       sweep_result[m][n]['auc_rebal'])
                                                      for m in sweep_result)))
    g = hints_result.get('goal')
    if g:
        lines += ['', '### Quality goal', '']
        for k, v in g['zero_points'].items():
            hinted = 'n/a (no 0-point sweep)' if v['hint_model'] is None else '%.2f' % v['hint_model']
            lines.append('- 0 points, %s: hint model %s vs default model %.2f: %s'
                         % (k, hinted, v['default_model'], 'met' if v['met'] else 'NOT met'))
        for k, v in g['ten_points'].items():
            lines.append('- %d points, %s: model %.2f, model + edge-aware %.2f vs Levin %.2f: %s'
                         % (GOAL_POINTS, k, v['model'], v['model_guided'], v['levin'],
                            'met (%s)' % v['best_arm'] if v['met'] else 'NOT met'))
    lines.append('')
    return lines
