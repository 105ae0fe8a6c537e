"""``quality.py --hints``: the hint sweeps (``evaluate.py --hint-points``) and the candidate hint chains
(``config.QUALITY_EXPERIMENT['hint_chains']``: 113 -> 114 -> 115 with colour-hint input and the chains
that must read their hints) on the same photos and budget.  The sweeps of the default (lightness-only) chain's chosen
stage on validation (each fold's run on its own fold, averaged) choose the hint method (``config.HINT_METHODS``);
the candidates' sweeps on validation choose the hint chain and its own method (:func:`best_hint_chain`);
the default model's and the hint model's sweeps on the test split measure them.  Each sweep scores the
network alone, every hint method, ``default`` (the checkpoint's method), Levin et al. 2004 on the same
points and grayscale.

The goals it checks on the test split: the hint model with 0 points no worse than the default
model; the ``default`` path with 0 points equal to the automatic model, and from 2 points on at least
Levin's PSNR and rebalanced AuC on the same points (for both models).
"""
import json
import os
import shutil

import numpy as np

import config
from quality_runs import file_stamp, read_json, write_json

HINT_DIR = 'hints'             # OUT/hints: the chosen hint chain's model and its test sweep
TEST_SWEEP = 'sweep-test'     # in OUT/hints and OUT/default: the test split's sweep
VAL_SWEEP = 'hint-sweep-val'  # in each run that chooses the hint method (a fold's chosen stage): its sweep
SOURCE_FILE = 'made_from.json'   # in a sweep's folder: the stamp of the model file it scored
GOAL_METRICS = ('psnr', 'auc_rebal')
GOAL_POINTS = 10
SAME_FIGURE = 1e-4            # the 0-point path and the automatic score, two float32 computations of one
                              # colorization, agree within this (dB, %; measured up to 1.7e-6)


def hint_arm(numbers):
    """The arm (run folder) of the hint chain of configs ``numbers``: 'hints-113-114-115'."""
    return '-'.join([HINT_DIR] + [str(n) for n in numbers])


def is_hint_arm(arm):
    return arm.startswith(HINT_DIR + '-')


def sweep(model_path, counts, args, list_path, out, log_path, score, say, max_side=None, method=None, source=None):
    """hints.json of ``evaluate.py -m MODEL --hint-points COUNTS`` (run by ``score``, logging to ``log_path``)
    on the photos of ``list_path``, scaled down to ``max_side`` pixels (None: full size), in the folder
    ``out``, with ``method`` as its ``default`` (evaluate.py --hint-method; None: the checkpoint's); reused
    when present, made with that method and from the same ``source`` (the file the model was written from,
    default the model itself: ``SOURCE_FILE`` records its stamp; a sweep without the record is reused).
    None when it failed."""
    result_path = os.path.join(out, 'hints.json')
    made = read_json(os.path.join(out, 'metrics.json')) or {}
    stamp = file_stamp(source or model_path)
    made_from = read_json(os.path.join(out, SOURCE_FILE))
    if os.path.isfile(result_path) and method in (None, made.get('hint_method')) and made_from in (None, stamp):
        with open(result_path) as f:
            return json.load(f)
    tmp = out + '.tmp'
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    argv = ['-m', model_path, '-d', args.photos, '--list', list_path,
            '--hint-points', ','.join(str(n) for n in counts), '-o', tmp]
    if max_side is not None:
        argv += ['--max-side', str(max_side)]
    if method is not None:
        argv += ['--hint-method', method]
    status, wall = score(argv, log_path)
    if status != 0 or not os.path.isfile(os.path.join(tmp, 'hints.json')):
        say('FAILED the hint sweep (exit status %d); see %s' % (status, log_path))
        return None
    write_json(os.path.join(tmp, SOURCE_FILE), stamp)
    if os.path.isdir(out):       # a sweep made with another default method or model: replaced by the new one
        shutil.rmtree(out)
    os.replace(tmp, out)
    with open(result_path) as f:
        result = json.load(f)
    ten = str(GOAL_POINTS)
    at_ten = ': default %.2f dB, model %.2f dB, Levin %.2f dB at %s points' % (
        result['default'][ten]['psnr'], result['model'][ten]['psnr'], result['levin'][ten]['psnr'], ten) \
        if ten in result['model'] else ''
    say('hint sweep of %s on %s in %.0f s%s' % (model_path, os.path.basename(list_path), wall, at_ten))
    return result


def mean_sweep(sweeps):
    """The folds' hints.json dicts -> one of the same shape, each figure the mean over the folds (None
    while any is missing)."""
    if not sweeps or any(s is None for s in sweeps):
        return None
    return {m: {n: {k: float(np.mean([s[m][n][k] for s in sweeps])) for k in per_n[n]} for n in per_n}
            for m, per_n in sweeps[0].items()}


def best_method(val_sweep, tolerance_db=None):
    """The hint method that becomes ``hint_method``'s default, by the rule of docs/hints.md: among the
    methods whose validation PSNR is within ``tolerance_db`` of Levin's at every count with points
    (Levin itself qualifies), the highest PSNR averaged over those counts (rebalanced AuC breaks a
    tie).  None before a sweep."""
    if not val_sweep:
        return None
    tolerance_db = config.QUALITY_EXPERIMENT['hint_method_tolerance_db'] if tolerance_db is None else tolerance_db
    counts = [n for n in val_sweep['model'] if int(n) > 0]

    def near_levin(m):
        return all(val_sweep[m][n]['psnr'] >= val_sweep['levin'][n]['psnr'] - tolerance_db for n in counts)

    def score(m):
        return tuple(float(np.mean([val_sweep[m][n][k] for n in counts])) for k in GOAL_METRICS)
    return max((m for m in config.HINT_METHODS if m in val_sweep and near_levin(m)), key=score)


def best_hint_chain(val_sweeps, default_val, tolerance_db=None):
    """The hint chain whose model a person gets, by the rule of docs/hints.md: among the chains whose network
    with 0 points is within ``tolerance_db`` of the default model's validation PSNR (``default_val``: its
    sweep; the goal of issue 28), the highest mean PSNR over the counts with points of the chain's own best
    hint method (:func:`best_method` on its sweep: a network that reads hints may fuse best another way;
    rebalanced AuC breaks a tie).  ``val_sweeps``: {arm: validation sweep or None}; None when no chain
    qualifies."""
    tolerance_db = config.QUALITY_EXPERIMENT['hint_chain_tolerance_db'] if tolerance_db is None else tolerance_db

    def qualifies(arm):
        found = val_sweeps[arm]
        if not found:
            return False
        return not default_val or '0' not in found['model'] or \
            found['model']['0']['psnr'] >= default_val['model']['0']['psnr'] - tolerance_db
    qualified = [arm for arm in val_sweeps if qualifies(arm)]
    return max(qualified, key=lambda arm: method_means(val_sweeps[arm])) if qualified else None


def method_means(val_sweep, method=None):
    """(PSNR, rebalanced AuC) of ``method`` (default: the sweep's :func:`best_method`), each the mean over
    the counts with points."""
    method = method or best_method(val_sweep)
    counts = [n for n in val_sweep[method] if int(n) > 0]
    return tuple(float(np.mean([val_sweep[method][n][k] for n in counts])) for k in GOAL_METRICS)


def gain_in_sweep(sweep_result, points=GOAL_POINTS):
    """The network's own hint gain in PSNR: ``model`` at ``points`` minus at 0 (None without both)."""
    found = sweep_result and sweep_result.get('model') or {}
    if '0' not in found or str(points) not in found:
        return None
    return found[str(points)]['psnr'] - found['0']['psnr']


def propagation_goal(automatic_test, sweep_result):
    """#25's goal on one model's test sweep: ``default`` at 0 points equals the automatic figures; at every
    count with points ``default`` >= ``levin`` in PSNR and rebalanced AuC; the margin at 10 points."""
    if not sweep_result:
        return None
    out = {'zero_points': {k: {'default': sweep_result['default']['0'][k], 'automatic': automatic_test['model'][k]['mean'],
                               'met': abs(sweep_result['default']['0'][k] - automatic_test['model'][k]['mean'])
                               < SAME_FIGURE}
                           for k in GOAL_METRICS} if '0' in sweep_result['default'] and automatic_test else {},
           'points': {}}
    for n in sorted(sweep_result['default'], key=int):
        if int(n) > 0:
            out['points'][n] = {k: {'default': sweep_result['default'][n][k], 'levin': sweep_result['levin'][n][k],
                                    'met': sweep_result['default'][n][k] >= sweep_result['levin'][n][k]}
                                for k in GOAL_METRICS}
    return out


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
            out['ten_points'][k] = {'model': sweep_result['model'][ten][k], 'default': sweep_result['default'][ten][k],
                                    'levin': sweep_result['levin'][ten][k],
                                    'met': sweep_result['default'][ten][k] > sweep_result['levin'][ten][k]}
    return out


def sweep_table(title, sweep_result):
    """results.md lines: one sweep, PSNR dB / AuC rebal. % per count and method."""
    methods = [m for m in ('default', 'model') + tuple(config.HINT_METHODS) + ('grayscale',) if m in sweep_result]
    lines = ['', '### %s: PSNR dB / AuC rebal. %%' % title, '',
             '| points | %s |' % ' | '.join(methods), '|---|%s' % ('---|' * len(methods))]
    for n in sorted(sweep_result['model'], key=int):
        lines.append('| %s | %s |' % (n, ' | '.join('%.2f / %.2f' % (sweep_result[m][n]['psnr'],
                                                                   sweep_result[m][n]['auc_rebal'])
                                                  for m in methods)))
    return lines


def goal_lines(name, g):
    """results.md lines of :func:`propagation_goal`."""
    lines = []
    for k, v in g['zero_points'].items():
        lines.append('- %s, 0 points, %s: default %.4f vs automatic %.4f: %s'
                     % (name, k, v['default'], v['automatic'], 'met' if v['met'] else 'NOT met'))
    for n, per_metric in g['points'].items():
        lines.append('- %s, %s points: %s' % (name, n, ', '.join(
            '%s default %.2f vs Levin %.2f (%+.2f) %s' % (k, v['default'], v['levin'], v['default'] - v['levin'],
                                                         'met' if v['met'] else 'NOT met')
            for k, v in per_metric.items())))
    return lines


def candidates_table(hints_result):
    """results.md lines: each candidate hint chain's validation sweep (its network with 0 and 10 points, the
    gain, its best hint method's mean over the counts with points) and the chosen one."""
    candidates = hints_result.get('candidates') or {}
    if len(candidates) < 2:
        return []
    val = hints_result.get('val_sweeps') or {'max_side': None}
    ten = str(GOAL_POINTS)
    lines = ['', '### Hint chains on validation (photos scaled to %s px; the rule: %s)' % (
        val['max_side'], 'within %g dB of the default model with 0 points, then the best mean PSNR over the '
        'counts with points of the chain\'s own best hint method' % config.QUALITY_EXPERIMENT['hint_chain_tolerance_db']),
        '', '| hint chain | runs | network, 0 pts | network, %s pts | network gain dB | its hint method: mean over '
        'counts with points |' % ten, '|---|---|---|---|---|---|']
    for arm, c in candidates.items():
        name = '**%s: chosen**' % arm if arm == hints_result['arm'] else arm
        s = c.get('val_sweep')
        if not s:
            lines.append('| %s | %d | not finished | | | |' % (name, len(c['runs'])))
            continue
        method = best_method(s)
        mean = method_means(s, method)
        cells = ['%.2f / %.2f' % (s['model'][n]['psnr'], s['model'][n]['auc_rebal']) if n in s['model'] else 'n/a'
                 for n in ('0', ten)]
        gain = gain_in_sweep(s)
        lines.append('| %s | %d | %s | %s | %s | %s: %.2f / %.2f |' % (
            name, len(c['runs']), cells[0], cells[1], 'n/a' if gain is None else '%+.2f' % gain, method, mean[0],
            mean[1]))
    return lines


def markdown(hints_result, metric_cells, metric_names):
    """results.md's hint section: the chosen chain's test table, the candidates on validation, the sweeps,
    the chosen method, the goals."""
    lines = ['## Hint chain (configs %s), test split, no hints' % ' -> '.join(str(n) for n in hints_result['configs']),
             '', '| stage | | %s |' % ' | '.join(metric_names), '|---|---|%s' % ('---|' * len(metric_names))]
    for arch, r in hints_result['stages'].items():
        if r is None:
            lines.append('| %s | not finished |%s' % (arch, ' |' * len(metric_names)))
            continue
        name = '**%s: hint model**' % arch if arch == hints_result['hint_model'] else arch
        lines.append('| %s | model | %s |' % (name, ' | '.join(metric_cells(r['test'], 'model'))))
    lines += candidates_table(hints_result)
    sweeps = hints_result.get('sweeps') or {}
    val = hints_result.get('val_sweeps') or {'runs': [], 'max_side': None}
    titles = {'default_val': 'Hint sweeps on validation, the mean over %d run(s) of the chosen stage, each on the '
                             'photos it did not train on, scaled to %s px (chooses the hint method)'
                             % (len(val['runs']), val['max_side']),
              'default_test': 'Hint sweep of the default model, test split',
              'hints_test': 'Hint sweep of the hint model (%s), test split' % hints_result['hint_model']}
    for key, title in titles.items():
        if sweeps.get(key):
            lines += sweep_table(title, sweeps[key])
    if hints_result.get('best_method'):
        lines += ['', 'Hint method chosen on validation (the best mean PSNR over the counts with points among '
                  'those within %g dB of Levin at every count): **%s** (the default of `hint_method`: %s)'
                  % (config.QUALITY_EXPERIMENT['hint_method_tolerance_db'], hints_result['best_method'],
                     config.DEFAULTS['hint_method'])]
    if hints_result.get('hint_model_method'):
        lines += ['', 'The hint model\'s own method, by the same rule on its chain\'s validation sweep: **%s**'
                  % hints_result['hint_model_method']]
    g = hints_result.get('goal')
    if g:
        lines += ['', '### Quality goals (test split)', '']
        for k, v in g['zero_points'].items():
            hinted = 'n/a (no 0-point sweep)' if v['hint_model'] is None else '%.2f' % v['hint_model']
            lines.append('- hint model, 0 points, %s: %s vs default model %.2f: %s'
                         % (k, hinted, v['default_model'], 'met' if v['met'] else 'NOT met'))
        for k, v in g['ten_points'].items():
            lines.append('- hint model, %d points, %s: network alone %.2f, default path %.2f vs Levin %.2f: %s'
                         % (GOAL_POINTS, k, v['model'], v['default'], v['levin'], 'met' if v['met'] else 'NOT met'))
    for key, name in (('default_test', 'default model'), ('hints_test', 'hint model')):
        g = (hints_result.get('propagation_goals') or {}).get(key)
        if g:
            lines += goal_lines(name, g)
    lines.append('')
    return lines
