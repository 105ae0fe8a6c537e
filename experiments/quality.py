"""Does it generalise?  Train the default FCN-32s -> 16s -> 8s chain on a photo folder within a
time budget, score it on the held-out test split, and compare one-change variants.

    python experiments/quality.py --photos DIR --out DIR [--budget-min N] [--variants NAME,...|all]
                                  [--seeds 0,1] [--folds K] [--val-list FILE] [--test-list FILE]
                                  [--configs 110,111,112] [--set KEY=VALUE ...] [--learning-curve] [--hints]

DIR (``experiments/get_photos.py --out DIR``) holds the photos and ``split_train.txt``,
``split_val.txt``, ``split_test.txt``.  The default invocation cross-validates the first seed's
chain (``config.QUALITY_EXPERIMENT``: configs 110 -> 111 -> 112, each stage from the previous
one's model) over K folds of the photos outside the test split (quality_folds.py): fold f's chain
trains on the other folds and each stage is scored on fold f with ``evaluate.py`` (photos scaled to
``val_max_side``, as every validation score); the selection
rule picks a stage on the means over the folds; that stage's chain is trained again on every
non-test photo and scored once on the test split.  It writes ``OUT/results.md``,
``OUT/results.json``, ``OUT/folds/`` (the fold lists), ``OUT/default/model_best.pth.tar`` (the
recommended model) and ``OUT/default/test_grid.png`` (original | grayscale | model, every test
photo).  ``--folds 1``: the former protocol (train on split_train.txt, choose on split_val.txt,
every stage scored on the test split).

Every run is a fixed budget and its model is the last iterate (``checkpoint.pth.tar``), which
also starts the next stage: a validation split of a few photos is too small to select
checkpoints on (the lowest validation loss was often the untrained start of a stage).

``--variants`` adds, for every seed (and fold), the one-change variants of the chain's FCN-32s
stage, each trained for the same iterations as that stage (``all``, or names from
``QUALITY_EXPERIMENT['variants']``, ``stages`` = the whole chain for every seed, ``decoding`` =
the FCN-32s model decoded five ways: annealed mean at three temperatures, mean and mode; the chosen
decoding is written into the default model's config, which colorize.py, evaluate.py and the page
follow).  An arm is chosen by the same rule on the validation
scores; the tables show mean +- spread (half the range) over the folds and seeds (with
``--folds 1``: the test split over the seeds).

``--hints`` chooses the hint method (``config.HINT_METHODS``) on hint sweeps of each fold's chosen
stage on its own fold (photos scaled down to ``QUALITY_EXPERIMENT['val_max_side']``), writes it
into the default model, and chooses among the candidate hint chains (``--hint-configs``, default
``QUALITY_EXPERIMENT['hint_chains']``: 113 -> 114 -> 115 with colour-hint input, and the chains that
must read their hints, docs/hints.md; each from the same fold's FCN-32s of the default chain, the same
budget) on the same folds: each trained up to
the default model's stage and swept with that hint method on its own fold.  The chosen chain is trained
on every non-test photo (with ``--folds 1``: its stage chosen on validation) into
``OUT/hints/model_best.pth.tar``; both models' hints are swept on the test split
(experiments/quality_hints.py).

The budget (minutes on the reference CPU) becomes iteration counts through the reference
throughput in ``config.QUALITY_EXPERIMENT``, so the same command trains the same iterations on any
machine (slower ones take longer).  Training runs as ``train_color_fcn*s.py`` child processes (their
output goes to ``quality.log`` in each run folder); evaluations call ``evaluate.main`` in this process
(what they print goes to the same ``quality.log``).
Everything finished is reused: run it again with more ``--variants`` (or after an interruption)
and only the missing runs are trained.
"""
import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import sys
import threading
import time

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

import config  # noqa: E402
import data_loader  # noqa: E402
import quality_folds  # noqa: E402
from quality_folds import check_photos, split_sizes  # noqa: E402
import quality_hints  # noqa: E402
import quality_report  # noqa: E402
from quality_report import machine, test_grid  # noqa: E402
from quality_report import DEFAULT_ARM, METRICS, markdown, within_spread  # noqa: E402
from quality_plan import (ALL, HINT_CHAINS_TEXT, SPLITS, curve_stage, evaluations,  # noqa: E402
                          parse_hint_chains, parse_numbers, plan, scored_splits, selected_variants,
                          write_fold_lists)
from quality_runs import (DONE_MARKER, UserError, duration, evaluate, read_json, score,  # noqa: E402
                          save_colorizer_checkpoint, say, train, write_json)

EXPERIMENT = config.QUALITY_EXPERIMENT
METHODS = ('model', 'grayscale', 'target')


# --------------------------------------------------------------------------
# aggregating
# --------------------------------------------------------------------------

def mean_spread(values):
    """{'mean', 'spread' (half the range), 'values'} of the seeds' values."""
    values = [float(v) for v in values]
    return {'mean': sum(values) / len(values), 'spread': (max(values) - min(values)) / 2.0, 'values': values}


def summary_of(scores):
    """List of metrics.json dicts (one per seed) -> {method: {metric: mean_spread}} (+ seeds' n_images)."""
    out = {m: {k: mean_spread([s[m][k] for s in scores]) for k in METRICS} for m in METHODS}
    out['ground_truth'] = {'colorfulness': mean_spread([s['ground_truth']['colorfulness'] for s in scores])}
    out['n_images'] = scores[0]['n_images']
    return out


def collect(runs, scores, decode='annealed'):
    """{'seeds', 'folds', 'runs', 'decode', <split>: summary} over the runs scored on every split they are
    scored on (a fold's runs: 'val', the mean over the folds; None when none)."""
    splits = scored_splits(runs[0]) if runs else SPLITS
    done = [(r, [scores.get((r.name, s, decode)) for s in splits]) for r in runs]
    done = [(r, found) for r, found in done if all(found)]
    if not done:
        return None
    out = {'seeds': [r.seed for r, _ in done], 'folds': [r.fold for r, _ in done], 'runs': [r.name for r, _ in done],
           'decode': decode}
    for i, split in enumerate(splits):
        out[split] = summary_of([found[i] for _, found in done])
    return out


def choose(arms_result, baseline, n_runs):
    """The arm the selection rule (quality_folds.select) picks on the validation means; whether it is
    within the spread of the baseline's is said beside."""
    scored = {arm: r for arm, r in arms_result.items() if r}
    if not scored:
        return None
    selection = quality_folds.select({arm: r and r['val'] for arm, r in arms_result.items()})
    best = selection['chosen']
    decision = {'metric': quality_folds.SELECTION['metric'], 'rule': selection['rule'],
                'qualified': selection['qualified'], 'best_on_val': best, 'baseline': baseline, 'chosen': best}
    if baseline in scored and best != baseline:
        key = quality_folds.SELECTION['metric']
        decision['within_spread'] = within_spread(scored[best]['val']['model'][key],
                                                  scored[baseline]['val']['model'][key])
    decision['complete'] = len(scored) == len(arms_result) and all(len(r['runs']) == n_runs for r in scored.values())
    return decision


def default_stage(stages):
    """The default model's stage: the one the selection rule (quality_folds.select) picks on the validation
    means (over the folds); None before any is scored."""
    return quality_folds.select({arch: r and r['val'] for arch, r in stages.items()})['chosen']


def aggregate(args, chain, runs, arms, seeds, scores, walls, started):
    """The results.json dict."""
    result = {
        'command': ' '.join([os.path.relpath(sys.argv[0], REPO_DIR)] + sys.argv[1:]),
        'date_utc': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M'),
        'machine': machine(), 'photos': os.path.abspath(args.photos), 'split_sizes': split_sizes(args),
        'val_list': args.val_list, 'test_list': args.test_list, 'budget_min': args.budget_min,
        'seeds': seeds, 'overrides': list(args.overrides),
        'stages': [{'arch': arch, 'config': number} for arch, number in chain],
        'reference_images_per_s': list(EXPERIMENT['reference_images_per_s']),
        'val_max_side': EXPERIMENT['val_max_side'],
        'elapsed_s': time.time() - started,
        'runs': [{'name': r.name, 'arm': r.arm, 'seed': r.seed, 'fold': r.fold, 'arch': r.arch,
                  'config': r.config_number,
                  'overrides': r.overrides, 'iterations': r.iterations, 'budget_s': r.budget_s,
                  'train_wall_s': walls.get(r.name), 'finished': os.path.isfile(os.path.join(r.dir, DONE_MARKER)),
                  'metrics': {'%s/%s' % (s, d): scores.get((r.name, s, d)) for s, d in evaluations(r, arms)
                              if scores.get((r.name, s, d))}}
                 for r in runs],
        'default': {}, 'variants': {},
    }
    result['folds'] = args.folds
    for i, (arch, _) in enumerate(chain):
        stage_runs = [r for r in runs if r.arm == DEFAULT_ARM and r.stage_index == i and r.fold != ALL]
        result['default'][arch] = collect(stage_runs, scores)
    result['default_model'] = default_stage(result['default'])
    result['selection_rule'] = quality_folds.select({})['rule']
    for variant, arm_runs in arms.items():
        if variant == 'decoding':
            arms_result = {d: collect(rs, scores, d) for d, rs in arm_runs.items()}
            baseline = 'annealed'
        else:
            arms_result = {a: collect(rs, scores) for a, rs in arm_runs.items()}
            # the default's arm; in a variant without one (the GMM's space under uniform bins) the first arm
            baseline = next((a for a, rs in arm_runs.items() if rs[0].arm == DEFAULT_ARM), next(iter(arm_runs)))
            if variant == 'stages':                     # the default model's stage, best on validation
                baseline = result['default_model'] or chain[-1][0]
        result['variants'][variant] = {'arms': arms_result,
                                       'decision': choose(arms_result, baseline, len(seeds) * max(1, args.folds))}
    if args.folds > 1:
        final = recommended_run(runs, result)
        decode = recommended_decode(result)
        test = final and scores.get((final.name, 'test', decode))
        result['recommended'] = {'arch': result['default_model'], 'run': final and final.name, 'decode': decode,
                                 'test': summary_of([test]) if test else None}
    if args.hints:
        candidates = getattr(args, 'hint_candidates', None) or {}
        arm = getattr(args, 'hint_arm', None) or quality_hints.hint_arm([n for _, n in args.hint_chains[0]])
        stages = hint_stages(runs, arm, scores, 'annealed' if args.folds == 1 else recommended_decode(result))
        # the default model's test scores: with folds the recommended model's
        default = result['recommended'] if args.folds > 1 else result['default'].get(result['default_model'])
        sweeps = getattr(args, 'hint_sweeps', {})
        sweep = sweeps.get('hints_test')
        # with folds the chosen hint chain trains on every non-test photo up to the default model's stage
        hint_model = default_stage(stages) if args.folds == 1 else result['default_model']
        result['hints'] = {'configs': [r.config_number for r in runs if r.arm == arm and r.fold in (None, ALL)],
                           'arm': arm, 'candidates': candidates, 'stages': stages,
                           'hint_model': hint_model, 'sweeps': sweeps, 'val_sweeps': getattr(args, 'val_sweeps', None),
                           'best_method': quality_hints.best_method(sweeps.get('default_val')),
                           'hint_model_method': quality_hints.best_method(candidates.get(arm, {}).get('val_sweep')),
                           'goal': quality_hints.goal(default and default['test'], sweep),
                           'propagation_goals': {k: quality_hints.propagation_goal(
                               default and default['test'] if k == 'default_test' else None, sweeps.get(k))
                               for k in ('default_test', 'hints_test')}}
    if args.learning_curve:
        result['learning_curve_arch'] = chain[curve_stage(chain)][0]
        result['learning_curve'] = learning_curve(runs, scores, result['learning_curve_arch'],
                                                  recommended_decode(result))
    return result


def learning_curve(runs, scores, arch, decode):
    """{budget rule: [{'share', 'photos' (mean training photos per fold), 'folds', 'test': summary or None}]}:
    the curve's stage ``arch`` on the test split, each share's runs over the folds (share 1: the folds' own)."""
    curve = {}
    for budget in EXPERIMENT['learning_curve']['budgets']:
        points = []
        for share in tuple(EXPERIMENT['learning_curve']['shares']) + (1.0,):
            if share < 1:
                chosen = [r for r in runs if r.arch == arch and r.curve == (share, budget)]
            else:
                chosen = [r for r in runs if r.arch == arch and r.curve is None and r.arm == DEFAULT_ARM
                          and r.fold not in (None, ALL) and r.seed == runs[0].seed]
            found = [scores[(r.name, 'test', decode)] for r in chosen if (r.name, 'test', decode) in scores]
            sizes = [len(data_loader.read_list(r.lists['train'])) for r in chosen if os.path.isfile(r.lists['train'])]
            points.append({'share': share, 'photos': sum(sizes) / len(sizes) if sizes else None,
                           'folds': len(found), 'test': summary_of(found) if found else None})
        curve[budget] = points
    return curve


def recommended_run(runs, result):
    """With folds: the run of the chosen stage trained on every non-test photo (None before a choice)."""
    return next((r for r in runs if r.fold == ALL and r.arch == result['default_model']), None)


def recommended_decode(result):
    """The decoding the rule chose (the decoding variant), else annealed."""
    decision = result['variants'].get('decoding', {}).get('decision') or {}
    return decision.get('chosen') or 'annealed'


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def write_results(args, chain, runs, arms, seeds, scores, walls, started):
    """OUT/results.json and OUT/results.md from everything scored so far (each replaced atomically)."""
    result = aggregate(args, chain, runs, arms, seeds, scores, walls, started)
    write_json(os.path.join(args.out, 'results.json'), result)
    if result.get('learning_curve'):
        quality_report.plot_learning_curve(result, os.path.join(args.out, quality_report.CURVE_FIGURE))
    tmp = os.path.join(args.out, 'results.md.tmp')
    with open(tmp, 'w') as f:
        f.write(markdown(result))
    os.replace(tmp, os.path.join(args.out, 'results.md'))
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    p.add_argument('--photos', required=True, help='photo folder with split_*.txt (get_photos.py), or an '
                                                   'ImageNet root with --val-list / --test-list')
    p.add_argument('--out', required=True, help='experiment folder (runs, results.md, results.json)')
    p.add_argument('--budget-min', type=float, default=EXPERIMENT['budget_min'],
                   help='training minutes of the whole chain on the reference CPU (default %(default)g); '
                        'each variant run gets the FCN-32s share')
    p.add_argument('--variants', default=None,
                   help='all, or comma-separated: %s (default: none, the chain only)'
                        % ', '.join(EXPERIMENT['variant_order']))
    p.add_argument('--seeds', default=','.join(str(s) for s in EXPERIMENT['seeds']),
                   help='seeds of the variants; the default chain alone uses the first (default %(default)s)')
    p.add_argument('--val-list', default=None, help='validation list (default PHOTOS/split_val.txt)')
    p.add_argument('--test-list', default=None, help='test list (default PHOTOS/split_test.txt; ImageNet: '
                                                     'lists/ctest10k.txt)')
    p.add_argument('--configs', default=','.join(str(n) for _, n in EXPERIMENT['chain']),
                   help='config numbers of the FCN-32s, 16s and 8s stages (default %(default)s)')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', dest='overrides',
                   help='config override for every run (as the train scripts\' --set); repeatable')
    p.add_argument('--folds', type=int, default=EXPERIMENT['folds'],
                   help='k of the cross-validation over the photos outside the test split: every choice is made '
                        'on the mean over k folds and the recommended model is trained on them all (default '
                        '%(default)s; 1: split_train.txt / split_val.txt as they are)')
    p.add_argument('--jobs', type=int, default=1,
                   help='chains trained side by side (the runs of different folds, arms and seeds are '
                        'independent); default %(default)s, for a machine with cores or GPUs to spare')
    p.add_argument('--learning-curve', action='store_true',
                   help='also train the FCN-32s stage on shares %s of each fold\'s training photos, at the '
                        'same budget per photo and at the same budget, and score them on the test split'
                        % ', '.join('%g' % x for x in EXPERIMENT['learning_curve']['shares']))
    p.add_argument('--hints', action='store_true', help='also choose the hint method and the hint chain on the '
                   'validation folds, train the chosen chain (OUT/hints/model_best.pth.tar) and sweep both models\' '
                   'hints on the test split')
    p.add_argument('--hint-configs', default=HINT_CHAINS_TEXT,
                   help='with --hints: the candidate hint chains, each the config numbers of its stages, chains '
                        'separated by "/" (default %(default)s)')
    return p.parse_args(argv)


def score_into(scores, run, split, decode, args, lock=None):
    """``run`` scored on ``split`` decoded by ``decode`` (quality_runs.evaluate) into ``scores``; its metrics or
    None."""
    metrics = evaluate(run, split, decode, args)
    if metrics is not None:
        with lock or contextlib.nullcontext():
            scores[(run.name, split, decode)] = metrics
    return metrics


def train_and_score(runs, arms, args, scores, walls, deferred, report):
    """Train ``runs`` (``--jobs`` chains side by side: the stages of one arm, seed and fold in order, a stage
    after the run it starts from) and score each when trained; the other decodings go to ``deferred``.
    ``report()`` after each run, one at a time."""
    chains = {}
    for run in runs:
        chains.setdefault((run.arm, run.seed, run.fold), []).append(run)
    finished = {run.name: threading.Event() for run in runs}
    lock = threading.Lock()

    def one(run):
        try:
            if run.previous is not None and run.previous.name in finished:
                finished[run.previous.name].wait()
            if not train(run, args):
                return
            with lock:
                walls[run.name] = read_json(os.path.join(run.dir, DONE_MARKER))['wall_s']
            for split, decode in evaluations(run, arms):
                if decode != 'annealed' and not os.path.isfile(os.path.join(run.eval_dir(split, decode),
                                                                            'metrics.json')):
                    with lock:
                        deferred.append((run, split, decode))  # the other decodings after every training
                    continue
                score_into(scores, run, split, decode, args, lock)
            with lock:
                report()
        finally:
            finished[run.name].set()

    def chain_of(stages):
        for run in sorted(stages, key=lambda r: r.stage_index):
            one(run)
    # chains start in plan order, so a run another chain waits for has always started before it
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(chain_of, stages) for stages in chains.values()]:
            future.result()


def train_recommended(args, final, decode, scores, walls):
    """Train the chosen stage's chain on every non-test photo up to ``final`` and score it once on the test
    split (``decode``)."""
    chain_runs = []
    run = final
    while run is not None:
        chain_runs.insert(0, run)
        run = run.previous
    for run in chain_runs:
        if not train(run, args):
            return
        walls[run.name] = read_json(os.path.join(run.dir, DONE_MARKER))['wall_s']
    score_into(scores, final, 'test', decode, args)


def train_curve(args, runs, stage_index, decode, scores, walls, report):
    """The learning curve: each fold's run of the chain's stage ``stage_index`` scored on the test split (the
    whole share), then every share's chain trained up to that stage, its last stage scored on the test split;
    every point decoded by ``decode`` (the recommended model's)."""
    for run in runs:
        if (run.curve is None and run.arm == DEFAULT_ARM and run.fold not in (None, ALL)
                and run.stage_index == stage_index and run.seed == runs[0].seed):
            score_into(scores, run, 'test', decode, args)
    curve_runs = [r for r in runs if r.curve is not None and r.stage_index <= stage_index]
    for run in curve_runs:
        run.scored_on = ()      # scored below, with the decoding of the whole share's points
    say('learning curve: %d runs (shares %s of each fold\'s photos, budgets %s)' % (
        len(curve_runs), ', '.join('%g' % s for s in EXPERIMENT['learning_curve']['shares']),
        ', '.join(EXPERIMENT['learning_curve']['budgets'])))
    train_and_score(curve_runs, {}, args, scores, walls, [], report)
    for run in curve_runs:
        if run.stage_index == stage_index and not run.failed:
            run.scored_on = ('test',)
            score_into(scores, run, 'test', decode, args)


def hint_sweep(args, model, list_path, name, max_side=None, method=None, source=None):
    """quality_hints.sweep of ``model`` (written from ``source``) on ``list_path`` into the folder ``name``
    beside the model, logged in the quality.log beside it."""
    folder = os.path.dirname(model)
    return quality_hints.sweep(model, EXPERIMENT['hint_points'], args, list_path, os.path.join(folder, name),
                               os.path.join(folder, 'quality.log'), score, say, max_side, method, source)


def choose_hint_method(args, runs, chosen):
    """The hint method by quality_hints.best_method on the validation sweeps: each fold's run of the chosen
    stage on its own fold (``--folds 1``: the chosen stage on split_val.txt), photos scaled down to
    ``EXPERIMENT['val_max_side']``, averaged over the folds; None when a sweep failed."""
    choosing = [r for r in runs if r.arm == DEFAULT_ARM and r.seed == runs[0].seed and r.arch == chosen
                and r.fold != ALL and r.curve is None and not r.failed and os.path.isfile(r.model)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        folds = list(pool.map(lambda run: hint_sweep(args, run.model, run.lists['val'], quality_hints.VAL_SWEEP,
                                                     EXPERIMENT['val_max_side']), choosing))
    args.val_sweeps = {'runs': [r.name for r in choosing], 'max_side': EXPERIMENT['val_max_side']}
    args.hint_sweeps['default_val'] = quality_hints.mean_sweep(folds)
    best = quality_hints.best_method(args.hint_sweeps['default_val'])
    say('hint method chosen on %d validation sweep(s): %s' % (len(folds), best))
    return best


def hint_stages(runs, arm, scores, decode='annealed'):
    """{arch: scores} of the hint chain ``arm``'s runs on every training photo (with folds: on the test split,
    decoded as the recommended model, ``decode``; ``--folds 1``: on split_val.txt and the test split)."""
    return {r.arch: collect([r], scores, decode) for r in runs if r.arm == arm and r.fold in (None, ALL)}


def choose_hint_chain(args, runs, chosen, hint_method, arms, scores, walls, report):
    """The arm of the hint chain chosen by quality_hints.best_hint_chain: each candidate's stage (with folds:
    ``chosen``, trained on each fold, from that fold's FCN-32s; ``--folds 1``: its own stage chosen on
    split_val.txt) swept with ``hint_method`` on the photos it did not train on (scaled to
    ``EXPERIMENT['val_max_side']``), averaged over the folds.  One candidate is chosen without a sweep; with
    none qualifying, the first."""
    arms_of = [quality_hints.hint_arm([n for _, n in c]) for c in args.hint_chains]
    args.hint_candidates = {arm: {'configs': [n for _, n in c], 'runs': [], 'val_sweep': None}
                            for arm, c in zip(arms_of, args.hint_chains)}
    if len(arms_of) == 1:
        return arms_of[0]
    if args.folds > 1:
        index = next(r.stage_index for r in runs if r.arch == chosen)
        fold_runs = [r for r in runs if r.arm in arms_of and r.fold not in (None, ALL) and r.stage_index <= index]
        say('%d hint chains on %d folds up to %s' % (len(arms_of), args.folds, chosen))
        train_and_score(fold_runs, arms, args, scores, walls, [], report)
        choosing = {arm: [r for r in fold_runs if r.arm == arm and r.arch == chosen] for arm in arms_of}
    else:
        choosing = {arm: [r for r in runs if r.arm == arm and r.arch == default_stage(hint_stages(runs, arm, scores))]
                    for arm in arms_of}
    pairs = [(arm, r) for arm in arms_of for r in choosing[arm] if not r.failed and os.path.isfile(r.model)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        found = list(pool.map(lambda pair: hint_sweep(args, pair[1].model, pair[1].lists['val'],
                                                      quality_hints.VAL_SWEEP, EXPERIMENT['val_max_side'],
                                                      hint_method), pairs))
    for arm in arms_of:
        mine = [f for (a, _), f in zip(pairs, found) if a == arm]
        complete = len(mine) == len(choosing[arm]) > 0
        args.hint_candidates[arm].update(runs=[r.name for r in choosing[arm]],
                                         val_sweep=quality_hints.mean_sweep(mine) if complete else None)
    best = quality_hints.best_hint_chain({a: c['val_sweep'] for a, c in args.hint_candidates.items()},
                                         args.hint_sweeps.get('default_val'))
    if best:
        say('hint chain chosen on validation: %s (its hint method: %s)'
            % (best, quality_hints.best_method(args.hint_candidates[best]['val_sweep'])))
        return best
    say('hint chain chosen on validation: none qualifies, the first: %s' % arms_of[0])
    return arms_of[0]


def test_sweeps(args, runs, result, default_model, default_source, hint_method):
    """The hint sweeps on the test split: the default model's (written from the run's ``default_source``), and
    (``--hints``) the hint model's, written as OUT/hints/model_best.pth.tar with its own hint method, chosen on
    its chain's validation sweep (else the default model's, ``hint_method``; ``--jobs`` of them side by side)."""
    tasks = [lambda: ('default_test', hint_sweep(args, default_model, args.test_list, quality_hints.TEST_SWEEP,
                                                 method=hint_method, source=default_source))]
    chosen = result['hints']['hint_model']
    final = next((r for r in runs if r.arm == result['hints']['arm'] and r.fold in (None, ALL) and r.arch == chosen),
                 None)
    if final is None or final.failed or not os.path.isfile(final.model):
        say('no hint model: the hint chain did not finish')
    else:
        hint_dir = os.path.join(args.out, quality_hints.HINT_DIR)
        target = os.path.join(hint_dir, 'model_best.pth.tar')
        os.makedirs(hint_dir, exist_ok=True)
        own_method = result['hints']['hint_model_method'] or hint_method
        save_colorizer_checkpoint(final.model, target, recommended_decode(result), own_method)
        say('hint model: %s (%s, hint method %s)' % (target, chosen, own_method))
        tasks.append(lambda: ('hints_test', hint_sweep(args, target, args.test_list, quality_hints.TEST_SWEEP,
                                                       method=own_method, source=final.model)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for key, found in pool.map(lambda task: task(), tasks):
            args.hint_sweeps[key] = found


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    try:
        if not args.budget_min > 0:
            raise UserError('--budget-min must be positive')
        seeds = parse_numbers(args.seeds, '--seeds')
        numbers = parse_numbers(args.configs, '--configs', len(EXPERIMENT['chain']))
        chain = [(arch, n) for (arch, _), n in zip(EXPERIMENT['chain'], numbers)]
        args.hint_chains = parse_hint_chains(args.hint_configs, args.overrides) if args.hints else []
        variants = selected_variants(args.variants)
        if args.folds < 1:
            raise UserError('--folds must be at least 1')
        if args.jobs < 1:
            raise UserError('--jobs must be at least 1')
        if args.learning_curve and args.folds < 2:
            raise UserError('--learning-curve needs --folds 2 or more (its spread is over the folds)')
        check_photos(args)
        if args.folds > 1 and data_loader.is_imagenet_root(args.photos):
            raise UserError('--folds %d: cross-validation needs a photo folder (get_photos.py); use --folds 1 '
                            'with an ImageNet root' % args.folds)
        runs, arms = plan(args, chain, variants, seeds)
        os.makedirs(args.out, exist_ok=True)
        if args.folds > 1:
            write_fold_lists(args)
        # a finished run trained for another budget or config is refused before anything trains
        for run in runs:
            marker = read_json(os.path.join(run.dir, DONE_MARKER))
            if marker is not None and marker['iterations'] != run.iterations:
                raise UserError('%s was trained for %d iterations, this budget asks for %d: use another --out'
                                % (run.dir, marker['iterations'], run.iterations))
            asked = (run.config_number, json.loads(json.dumps(run.overrides)))    # as the marker holds them
            if marker is not None and (marker.get('config'), marker.get('overrides')) != asked:
                raise UserError('%s was trained with config %s %s, this run asks for config %d %s: use another '
                                '--out' % (run.dir, marker.get('config'), marker.get('overrides'), run.config_number,
                                           run.overrides))
    except UserError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    n_eval = sum(len(evaluations(r, arms)) for r in runs)
    budget = sum(r.budget_s for r in runs)
    say('%d training runs (%s of training on the reference CPU) and %d evaluations into %s'
        % (len(runs), duration(budget), n_eval, args.out))
    scores, walls, deferred = {}, {}, []
    report = lambda: write_results(args, chain, runs, arms, seeds, scores, walls, started)  # noqa: E731
    # first the folds' chains (--folds 1: every stage and hint chain); the recommended model, the learning
    # curve and the hint chains' folds once the stage is chosen
    train_and_score([r for r in runs if r.fold != ALL and r.curve is None
                     and (r.fold is None or not quality_hints.is_hint_arm(r.arm))], arms, args, scores, walls,
                    deferred, report)
    for run, split, decode in deferred:
        if score_into(scores, run, split, decode, args) is not None:
            write_results(args, chain, runs, arms, seeds, scores, walls, started)
    result = write_results(args, chain, runs, arms, seeds, scores, walls, started)
    chosen = result['default_model']
    if args.folds > 1:
        final = recommended_run(runs, result)
        if final is not None:
            say('chosen on %d folds: %s; the recommended model trains on every photo outside the test split'
                % (args.folds, final.arch))
            train_recommended(args, final, recommended_decode(result), scores, walls)
            result = write_results(args, chain, runs, arms, seeds, scores, walls, started)
        if args.learning_curve:
            train_curve(args, runs, curve_stage(chain), recommended_decode(result), scores, walls, report)
            result = write_results(args, chain, runs, arms, seeds, scores, walls, started)
    else:
        final = next((r for r in runs if r.arm == DEFAULT_ARM and r.seed == seeds[0] and r.arch == chosen), None)
    args.hint_sweeps = {}
    if final is not None and not final.failed and os.path.isfile(final.model):
        hint_method = None
        if args.hints:
            hint_method = choose_hint_method(args, runs, chosen)
            args.hint_arm = choose_hint_chain(args, runs, chosen, hint_method, arms, scores, walls, report)
            result = write_results(args, chain, runs, arms, seeds, scores, walls, started)
            hint_final = next((r for r in runs if r.arm == args.hint_arm and r.fold == ALL
                               and r.arch == final.arch), None)
            if hint_final is not None:
                say('the hint chain %s, on every photo outside the test split, up to %s'
                    % (args.hint_arm, hint_final.arch))
                train_recommended(args, hint_final, recommended_decode(result), scores, walls)
                result = write_results(args, chain, runs, arms, seeds, scores, walls, started)
        default_dir = os.path.join(args.out, DEFAULT_ARM)
        default_model = os.path.join(default_dir, 'model_best.pth.tar')
        save_colorizer_checkpoint(final.model, default_model, recommended_decode(result), hint_method)
        grid = os.path.join(default_dir, 'test_grid.png')
        n = test_grid(default_model, args, grid)
        say('default model: %s (%s, the best on validation); test grid (%d photos): %s'
            % (default_model, chosen, n, grid))
        if args.hints:
            test_sweeps(args, runs, result, default_model, final.model, hint_method)
            write_results(args, chain, runs, arms, seeds, scores, walls, started)
    failed = [r.name for r in runs if r.failed]
    say('results: %s, %s (%s in all)' % (os.path.join(args.out, 'results.md'),
                                         os.path.join(args.out, 'results.json'), duration(time.time() - started)))
    if failed:
        print('error: %d run(s) failed: %s (see quality.log in their folders)' % (len(failed), ', '.join(failed)),
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
