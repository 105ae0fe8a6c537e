"""What experiments/quality.py runs: the runs of the default chain, its variants' arms, the folds
and the learning curve (``Run``, :func:`plan`), the photo lists each run trains on and is scored on
(``OUT/folds/``), and how a time budget becomes iterations (:func:`stage_iterations`)."""
import os

import config
import data_loader
import quality_folds
import quality_hints
from quality_report import DEFAULT_ARM
from quality_runs import FINAL_MODEL, UserError, set_pairs

EXPERIMENT = config.QUALITY_EXPERIMENT
SPLITS = ('val', 'test')
ALL = 'all'                          # the fold of the runs trained on every non-test photo


class Run:
    """One training run: an arm (a set of config overrides), a seed, a fold and a stage of the chain.

    ``fold``: None trains on split_train.txt and is scored on split_val.txt and the test split (``--folds
    1``); an integer f trains on every fold but f and is scored on fold f; ``ALL`` trains on every
    non-test photo and is scored on the test split (the recommended model).  ``lists``: split -> the
    photo list it is scored on (and ``train``: the list it trains on, None for split_train.txt)."""

    def __init__(self, arm, overrides, seed, stage_index, arch, config_number, iterations, budget_s, out,
                 fold=None, lists=None):
        self.arm, self.overrides, self.seed, self.fold = arm, overrides, seed, fold
        self.stage_index, self.arch, self.config_number = stage_index, arch, config_number
        self.iterations, self.budget_s = iterations, budget_s
        parts = [arm, 'seed%d' % seed] + ([] if fold is None else [fold_name(fold)]) + [arch]
        self.name = '/'.join(parts)
        self.dir = os.path.join(out, *parts)
        self.lists = lists or {}
        self.scored_on = SPLITS if fold is None else ('test',) if fold == ALL else ('val',)
        self.curve = None             # a learning curve's run: (share of the photos, budget rule)
        self.previous = None          # the Run whose final model initialises this one
        self.failed = False

    @property
    def model(self):
        """The run's model: its last iterate (the checkpoint written at its final iteration)."""
        return os.path.join(self.dir, FINAL_MODEL)

    def eval_dir(self, split, decode):
        return os.path.join(self.dir, 'eval-final-%s-%s' % (split, decode))

    def max_side(self, split):
        """The long side its photos of ``split`` are scored at: full size (None) only for the test score of a
        model trained on every training photo (the recommended model, ``--folds 1``'s stages); every choice
        and the learning curve are scored at ``EXPERIMENT['val_max_side']``."""
        return None if split == 'test' and self.fold in (None, ALL) else EXPERIMENT['val_max_side']


def fold_name(fold):
    return 'all' if fold == ALL else 'fold%d' % fold


def effective_config(config_number, override_pairs):
    """config N updated by ``--set`` pairs (strings) -> dict; raises UserError on a bad key."""
    import cli
    try:
        cfg = config.get_config(config_number)
        cfg.update(cli.parse_overrides(override_pairs))
    except (KeyError, ValueError) as e:
        raise UserError(str(e).strip('"'))
    return cfg


def stage_iterations(budget_min, batch_size, stage_index):
    """Iterations of one stage: its share of the budget x the reference images/s / batch size."""
    seconds = budget_min * 60.0 * EXPERIMENT['stage_shares'][stage_index]
    images = seconds * EXPERIMENT['reference_images_per_s'][stage_index]
    return max(1, int(round(images / batch_size))), seconds


def selected_variants(text):
    """'all' | 'a,b' | None -> names in the experiment's order; raises UserError on an unknown name."""
    known = EXPERIMENT['variant_order']
    if not text:
        return []
    names = known if text.strip() == 'all' else [n.strip() for n in text.split(',') if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError('--variants: unknown %s; choose from all, %s' % (', '.join(unknown), ', '.join(known)))
    return [n for n in known if n in names]


HINT_CHAINS_TEXT = '/'.join(','.join(str(n) for n in c) for c in EXPERIMENT['hint_chains'])


def parse_hint_chains(text, overrides):
    """'113,114,115/116,117,118' -> [[(arch, config), ...] per chain]; raises UserError on a chain of another
    length, one listed twice or a config without hints."""
    archs = [arch for arch, _ in EXPERIMENT['chain']]
    chains = [parse_numbers(part, '--hint-configs', len(archs)) for part in text.split('/')]
    if len({tuple(c) for c in chains}) < len(chains):
        raise UserError('--hint-configs %s: a chain is listed twice' % text)
    if not all(effective_config(n, overrides)['hints'] for c in chains for n in c):
        raise UserError('--hint-configs %s: every stage needs a config with hints: true' % text)
    return [list(zip(archs, c)) for c in chains]


def parse_numbers(text, what, count=None):
    try:
        numbers = [int(x) for x in text.split(',') if x.strip()]
    except ValueError:
        raise UserError('%s: expected comma-separated integers, got %r' % (what, text))
    if not numbers or (count is not None and len(numbers) != count):
        raise UserError('%s: expected %s integers, got %r' % (what, count or 'one or more', text))
    return numbers


def plan(args, chain, variants, seeds):
    """(runs in the order they train, {variant: {arm: [runs by seed]}}, per-stage iterations).

    The default chain comes first (first seed; every seed when 'stages' is asked for), then
    each variant's arms; arms of equal configs share one run, so an arm equal to the default
    reuses the default's FCN-32s.
    """
    base_pairs = list(args.overrides)
    folds = list(range(args.folds)) if args.folds > 1 else [None]
    runs, by_key = [], {}

    def run_of(arm, overrides, seed, stage_index, fold, curve=None):
        key = (arm, seed, fold, stage_index)
        if key not in by_key:
            arch, number = chain[stage_index]
            cfg = effective_config(number, base_pairs + set_pairs(overrides))
            share = curve[0] if curve and curve[1] == 'per_photo' else 1.0
            iterations, budget_s = stage_iterations(args.budget_min * share, cfg['batch_size'], stage_index)
            run = Run(arm, overrides, seed, stage_index, arch, number, iterations, budget_s, args.out, fold,
                      run_lists(args, fold))
            if curve:   # a learning curve's run: trained on a share of its fold's photos, scored on the test split
                run.curve, run.scored_on = curve, ('test',)
                run.lists = dict(run.lists, train=curve_list_path(args.out, fold, curve[0]), test=args.test_list)
            if stage_index > 0:
                run.previous = run_of(arm, overrides, seed, stage_index - 1, fold, curve)
            runs.append(run)
            by_key[key] = run
        return by_key[key]

    chain_seeds = seeds if 'stages' in variants else seeds[:1]
    for seed in chain_seeds:
        for fold in folds:
            for stage_index in range(len(chain)):
                run_of(DEFAULT_ARM, {}, seed, stage_index, fold)
    if args.folds > 1:   # the recommended model: the chain on every non-test photo, up to the chosen stage
        for stage_index in range(len(chain)):
            run_of(DEFAULT_ARM, {}, seeds[0], stage_index, ALL)
    if args.learning_curve:   # trained after the recommended model, up to the curve's stage
        for share in EXPERIMENT['learning_curve']['shares']:
            for budget in EXPERIMENT['learning_curve']['budgets']:
                for fold in folds:
                    for stage_index in range(curve_stage(chain) + 1):
                        run_of(curve_arm(share, budget), {}, seeds[0], stage_index, fold, (share, budget))
    if args.hints:   # each candidate hint chain, from the same fold's FCN-32s of the chain (first seed); with
        # folds on each fold (only when there is a choice to make) and on every non-test photo
        hint_folds = [None] if args.folds == 1 else (folds if len(args.hint_chains) > 1 else []) + [ALL]
        for hint_chain in args.hint_chains:
            arm = quality_hints.hint_arm([n for _, n in hint_chain])
            for fold in hint_folds:
                previous = by_key[(DEFAULT_ARM, seeds[0], fold, 0)]
                for stage_index, (arch, number) in enumerate(hint_chain):
                    cfg = effective_config(number, base_pairs)
                    iterations, budget_s = stage_iterations(args.budget_min, cfg['batch_size'], stage_index)
                    run = Run(arm, {}, seeds[0], stage_index, arch, number, iterations, budget_s, args.out, fold,
                              run_lists(args, fold))
                    run.previous, previous = previous, run
                    runs.append(run)
    configs = [(effective_config(chain[0][1], base_pairs), DEFAULT_ARM, {})]   # (config, label, overrides)
    arms = {}
    if 'stages' in variants:
        arms['stages'] = {arch: [by_key[(DEFAULT_ARM, s, f, i)] for s in seeds for f in folds]
                          for i, (arch, _) in enumerate(chain)}
    for name in variants:
        if name in ('stages', 'decoding'):
            continue
        arms[name] = {}
        for arm, overrides in EXPERIMENT['variants'][name].items():
            cfg = effective_config(chain[0][1], base_pairs + set_pairs(overrides))
            same = next(((label, o) for c, label, o in configs if c == cfg), None)
            if same is None:
                same = ('%s-%s' % (name, arm), overrides)
                configs.append((cfg,) + same)
            arms[name][arm] = [run_of(same[0], same[1], s, 0, f) for s in seeds for f in folds]
    if 'decoding' in variants:
        arms['decoding'] = {d: [run_of(DEFAULT_ARM, {}, s, 0, f) for s in seeds for f in folds]
                            for d in EXPERIMENT['decodings']}
    return runs, arms


def fold_list_paths(out, fold):
    """OUT/folds/<fold>-<split>.txt: the lists of one fold (written by :func:`write_fold_lists`)."""
    return {split: os.path.join(out, 'folds', '%s-%s.txt' % (fold_name(fold), split)) for split in ('train', 'val')}


def run_lists(args, fold):
    """{split: list path} a run of ``fold`` trains on ('train'; None: split_train.txt) and is scored on."""
    if fold is None:
        return {'train': None, 'val': args.val_list, 'test': args.test_list}
    if fold == ALL:   # its 'val' only feeds the trainer's fit curve: those photos are in its training set
        return {'train': fold_list_paths(args.out, ALL)['train'], 'val': args.val_list, 'test': args.test_list}
    return dict(fold_list_paths(args.out, fold), test=args.test_list)   # test: the learning curve's


def write_fold_lists(args):
    """OUT/folds/*.txt from the photos outside the test split (quality_folds.make_folds); the folds."""
    photos = quality_folds.non_test_photos(args.photos, args.test_list)
    try:
        folds = quality_folds.make_folds(photos, args.folds)
    except ValueError as e:
        raise UserError(str(e))
    os.makedirs(os.path.join(args.out, 'folds'), exist_ok=True)
    for f in range(args.folds):
        train, val = quality_folds.fold_lists(folds, f)
        for split, names in (('train', train), ('val', val)):
            data_loader.write_list(fold_list_paths(args.out, f)[split], names)
    data_loader.write_list(fold_list_paths(args.out, ALL)['train'], photos)
    if args.learning_curve:
        for f in range(args.folds):
            train, _ = quality_folds.fold_lists(folds, f)
            for share in EXPERIMENT['learning_curve']['shares']:
                data_loader.write_list(curve_list_path(args.out, f, share), quality_folds.photo_share(train, share))
    return folds


def evaluations(run, arms):
    """The (split, decode) pairs a run is scored with: annealed always, the other decodings for
    the runs of the decoding variant."""
    decodes = ['annealed']
    if 'decoding' in arms and any(run in runs for runs in arms['decoding'].values()):
        decodes = list(EXPERIMENT['decodings'])
    return [(split, d) for d in decodes for split in scored_splits(run)]


def scored_splits(run):
    """The splits a run is scored on: a fold's run its fold ('val'), the recommended model and a learning
    curve's runs the test split."""
    return run.scored_on


def curve_stage(chain):
    """The index of the chain's stage the learning curve trains (``EXPERIMENT['learning_curve']['stage']``)."""
    return min(EXPERIMENT['learning_curve']['stage'], len(chain) - 1)


def curve_arm(share, budget):
    """The learning curve's arm of a share of the photos and a budget rule: 'curve-0.25-fixed'."""
    return 'curve-%g-%s' % (share, budget)


def curve_list_path(out, fold, share):
    return os.path.join(out, 'folds', '%s-train-%g.txt' % (fold_name(fold), share))
