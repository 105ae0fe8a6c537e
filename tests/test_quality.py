"""experiments/quality.py: end to end on 3 tiny photos (config 199 for every stage, a 1-minute
budget of big batches: a few iterations per run), its plan of runs, its statistics and its errors."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import colorize
import config
import evaluate
from data_loader import read_list
import utils
from conftest import NARROW, PHOTO_SIZE, REPO_DIR, write_photos

sys.path.insert(0, os.path.join(REPO_DIR, 'experiments'))
import quality  # noqa: E402
import quality_folds  # noqa: E402
import quality_plan  # noqa: E402
import quality_hints  # noqa: E402
import quality_report  # noqa: E402
import quality_runs  # noqa: E402

SPLITS = {'train': 'astronaut', 'val': 'chelsea', 'test': 'coffee'}
TINY = ['--budget-min', '1', '--configs', '199,199,199', '--set', 'batch_size=32', '--set', 'workers=0',
        '--set', 'interval_validate=1000', '--set', 'binning=uniform', '--set', 'numbins=9'   # no GMM to fit
        ] + NARROW + ['--folds', '1']


def split_folder(folder, lists=True):
    write_photos(folder, tuple(SPLITS.values()))
    if lists:
        for split, name in SPLITS.items():
            with open(os.path.join(folder, 'split_%s.txt' % split), 'w') as f:
                f.write(name + '.png\n')
    return folder


def run_quality(capsys, *argv):
    status = quality.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_end_to_end_writes_every_file_and_reuses_finished_runs(tmp_path, capsys):
    photos, out = split_folder(str(tmp_path / 'photos')), tmp_path / 'out'
    argv = ['--photos', photos, '--out', out, '--variants', 'rebalance,decoding', '--seeds', '0', '--hints',
            '--hint-configs', '198,198,198', '--jobs', '2'] + TINY
    status, stdout, err = run_quality(capsys, *argv)
    assert status == 0, stdout + err
    for name in ('results.md', 'results.json', 'default/model_best.pth.tar', 'default/test_grid.png'):
        assert (out / name).is_file(), name
    result = json.loads((out / 'results.json').read_text())
    # the default model is the stage the selection rule picks on validation
    val = {arch: result['default'][arch]['val'] for arch in ('fcn32s', 'fcn16s', 'fcn8s')}
    assert result['default_model'] == quality_folds.select(val)['chosen']
    colorizer = colorize.load_colorizer(str(out / 'default' / 'model_best.pth.tar'))
    assert colorizer.model.__class__.__name__ == {'fcn32s': 'FCN32sColor', 'fcn16s': 'FCN16sColor',
                                                  'fcn8s': 'FCN8sColor'}[result['default_model']]
    methods = {'model', 'grayscale', 'target'}
    for arch in ('fcn32s', 'fcn16s', 'fcn8s'):
        stage = result['default'][arch]
        assert stage['seeds'] == [0] and methods <= set(stage['test']) and methods <= set(stage['val'])
        # the aggregate is the evaluation of that stage's own run on the test list
        scored = json.loads((out / 'default' / 'seed0' / arch / 'eval-final-test-annealed' / 'metrics.json')
                            .read_text())
        assert stage['test']['model']['auc_rebal']['mean'] == scored['model']['auc_rebal']
        assert scored['n_images'] == 1
    arms = result['variants']['rebalance']['arms']
    assert set(arms) == {'off', 'on'}
    for arm in arms.values():
        assert methods <= set(arm['test']) and methods <= set(arm['val'])
    # config 199 has no rebalancing: 'off' is the default chain's FCN-32s, 'on' a run of its own
    assert arms['off']['runs'] == ['default/seed0/fcn32s'] and arms['on']['runs'] == ['rebalance-on/seed0/fcn32s']
    assert (out / 'rebalance-on' / 'seed0' / 'fcn32s' / 'bin_prior.npy').is_file()
    assert not (out / 'rebalance-on' / 'seed0' / 'fcn16s').exists()
    md = (out / 'results.md').read_text()
    for arch in ('fcn32s', 'fcn16s', 'fcn8s'):
        name = '**%s: default model**' % arch if arch == result['default_model'] else arch
        assert '| %s | 0 | model |' % name in md
    assert '| rebalance | on | 0 |' in md
    # the decoding chosen on validation (among every decoding of the FCN-32s) is the default model's own
    decodings = result['variants']['decoding']
    assert set(decodings['arms']) == set(config.QUALITY_EXPERIMENT['decodings'])
    for label, arm in decodings['arms'].items():
        scored = json.loads((out / 'default' / 'seed0' / 'fcn32s' / ('eval-final-val-' + label) / 'metrics.json')
                            .read_text())
        assert (scored['decode'], scored['temperature']) == quality_runs.decoding_of(label)
        assert arm['val']['model']['auc_rebal']['mean'] == scored['model']['auc_rebal']
    chosen = decodings['decision']['chosen']
    assert chosen == quality.choose(decodings['arms'], 'annealed', 1)['chosen']
    assert colorizer.decoding[0] == quality_runs.decoding_of(chosen)[0]
    assert colorizer.decoding[1] == (quality_runs.decoding_of(chosen)[1] or config.DEFAULTS['temperature'])
    grid = np.asarray(Image.open(out / 'default' / 'test_grid.png'))
    height = round(utils.GRID_CELL * PHOTO_SIZE[1] / PHOTO_SIZE[0])   # the photo drawn GRID_CELL wide
    assert grid.shape[:2] == (height + 4, 3 * (utils.GRID_CELL + 2) + 2)  # one photo, 3 columns

    # --hints: the hint chain from the default chain's FCN-32s, its model chosen on validation, its sweep
    hints_result = result['hints']
    val = {arch: hints_result['stages'][arch]['val'] for arch in val}
    assert hints_result['hint_model'] == quality_folds.select(val)['chosen']
    assert colorize.load_colorizer(str(out / 'hints' / 'model_best.pth.tar')).takes_hints
    assert hints_result['arm'] == 'hints-198-198-198' and hints_result['configs'] == [198, 198, 198]
    assert not (out / 'hints-198-198-198' / quality_hints.VAL_SWEEP).exists()   # one chain: nothing to choose
    started_from = (out / 'hints-198-198-198' / 'seed0' / 'fcn32s' / 'quality.log').read_text()
    assert '-m %s' % (out / 'default' / 'seed0' / 'fcn32s' / 'checkpoint.pth.tar') in started_from
    sweep = json.loads((out / 'hints' / 'sweep-test' / 'hints.json').read_text())
    assert sweep == hints_result['sweeps']['hints_test'] and set(sweep['levin']) == {str(n) for n in
                                                                                     config.QUALITY_EXPERIMENT['hint_points']}
    assert set(hints_result['goal']) == {'zero_points', 'ten_points'}
    # the default model's sweeps: validation (its stage's run on split_val) chooses the hint method, which the
    # default and hint models carry; test scores the default path
    chosen_dir = out / 'default' / 'seed0' / result['default_model']
    assert json.loads((chosen_dir / quality_hints.VAL_SWEEP / 'hints.json').read_text()) == \
        hints_result['sweeps']['default_val']
    assert json.loads((out / 'default' / 'sweep-test' / 'hints.json').read_text()) == \
        hints_result['sweeps']['default_test']
    for model in ('default', 'hints'):
        assert colorize.load_colorizer(str(out / model / 'model_best.pth.tar')).hint_method == \
            hints_result['best_method']
    val_sweep = hints_result['sweeps']['default_val']
    with_points = [n for n in val_sweep['model'] if int(n) > 0]
    tolerance = config.QUALITY_EXPERIMENT['hint_method_tolerance_db']
    psnr = {m: np.mean([val_sweep[m][n]['psnr'] for n in with_points]) for m in config.HINT_METHODS
            if all(val_sweep[m][n]['psnr'] >= val_sweep['levin'][n]['psnr'] - tolerance for n in with_points)}
    assert hints_result['best_method'] == max(psnr, key=psnr.get)
    goal = hints_result['propagation_goals']['default_test']
    assert all(v['met'] for v in goal['zero_points'].values())   # 0 points: the automatic figures exactly
    assert set(goal['points']) == {str(n) for n in config.QUALITY_EXPERIMENT['hint_points'] if n > 0}
    assert '### Hint sweep of the default model, test split' in md and 'Hint method chosen on validation' in md
    assert '### Hint sweeps on validation, the mean over 1 run(s)' in md
    assert '### Hint sweep of the hint model' in md and '### Quality goals' in md

    marker = out / 'default' / 'seed0' / 'fcn8s' / quality.DONE_MARKER
    before = marker.stat().st_mtime_ns
    status, stdout, err = run_quality(capsys, *argv)
    assert status == 0, stdout + err
    assert ' train ' not in stdout and 'scored' not in stdout  # nothing trained or scored again
    assert marker.stat().st_mtime_ns == before


def test_an_evaluation_in_the_experiments_process_scores_as_evaluate_py_and_keeps_its_output_and_failures_in_the_log(
        plain_model, tmp_path, capsys, monkeypatch):
    """quality_runs.score runs evaluate.py's main in quality.py's process: the same metrics as the command,
    what it prints in the run's log and not on the terminal; a user's error and a crash each give a non-zero
    status with the error line or the traceback in the log, and the experiment goes on."""
    photos, log = split_folder(str(tmp_path / 'photos')), tmp_path / 'quality.log'
    argv = ['-m', plain_model, '-d', photos, '--list', os.path.join(photos, 'split_test.txt'), '--device', 'cpu']
    capsys.readouterr()
    assert quality_runs.score(argv + ['-o', str(tmp_path / 'scored')], str(log))[0] == 0
    out, err = capsys.readouterr()
    assert out == '' and err == ''
    assert evaluate.main(argv + ['-o', str(tmp_path / 'command')]) == 0
    assert '1 images scored' in capsys.readouterr().out   # the command prints on the terminal
    scored, command = (json.loads((tmp_path / d / 'metrics.json').read_text()) for d in ('scored', 'command'))
    assert scored == command and scored['n_images'] == 1
    assert '1 images scored (annealed decoding' in log.read_text() and 'grayscale' in log.read_text()
    missing = str(tmp_path / 'missing.pth.tar')
    assert quality_runs.score(['-m', missing, '-o', str(tmp_path / 'x')], str(log))[0] == 2
    assert 'error: ' in log.read_text() and missing in log.read_text().split('error: ')[-1]

    def crash(*_):
        raise RuntimeError('a bug in scoring')
    monkeypatch.setattr(evaluate, 'score_batch', crash)
    assert quality_runs.score(argv + ['-o', str(tmp_path / 'y')], str(log))[0] == 1
    assert 'Traceback' in log.read_text() and 'RuntimeError: a bug in scoring' in log.read_text()
    assert capsys.readouterr() == ('', '')


def test_every_choice_is_scored_scaled_down_the_test_score_at_full_size_and_another_size_is_redone(
        plain_model, tmp_path, monkeypatch):
    """A fold's run (and the learning curve's) is scored at val_max_side, as evaluate.py --max-side scores it;
    the recommended model's test score at full size; a score found at another size is kept aside and
    redone, never reused."""
    import argparse
    import shutil
    photos = split_folder(str(tmp_path / 'photos'))
    monkeypatch.setitem(config.QUALITY_EXPERIMENT, 'val_max_side', 48)
    lists = {'val': os.path.join(photos, 'split_val.txt'), 'test': os.path.join(photos, 'split_test.txt')}
    fold_run, final = (quality_plan.Run('default', {}, 0, 0, 'fcn32s', 199, 2, 1.0, str(tmp_path / 'out'), fold,
                                        lists) for fold in (0, quality_plan.ALL))
    for run in (fold_run, final):
        os.makedirs(run.dir)
        shutil.copyfile(plain_model, run.model)
    assert (fold_run.max_side('val'), fold_run.max_side('test'), final.max_side('test')) == (48, 48, None)
    args = argparse.Namespace(photos=photos)
    scored = quality_runs.evaluate(fold_run, 'val', 'annealed', args)
    assert evaluate.main(['-m', plain_model, '-d', photos, '--list', lists['val'], '-o', str(tmp_path / 'cmd'),
                          '--max-side', '48']) == 0
    by_command = json.loads((tmp_path / 'cmd' / 'metrics.json').read_text())
    assert scored['max_side'] == 48 and scored['model'] == by_command['model'] and PHOTO_SIZE[0] > 48
    full = quality_runs.evaluate(final, 'test', 'annealed', args)
    assert full['max_side'] is None
    stale = fold_run.eval_dir('val', 'annealed')
    quality_runs.write_json(os.path.join(stale, 'metrics.json'), dict(scored, max_side=None, model='stale'))
    again = quality_runs.evaluate(fold_run, 'val', 'annealed', args)
    assert again['model'] == scored['model']
    assert json.loads(open(os.path.join(stale + '.other-size-1', 'metrics.json')).read())['model'] == 'stale'


def test_a_training_child_is_a_fresh_process_whose_output_and_exit_status_come_back(tmp_path, monkeypatch):
    """quality_runs.run_child: a script in a process forked from the torch-importing server, none of this
    process's state in it (a module attribute patched here is not seen there, as in a new interpreter),
    run from the repository with its arguments, its output in the log and its exit status back."""
    import runtime
    runtime.fresh_process_context()
    log = tmp_path / 'quality.log'
    script = os.path.join(REPO_DIR, 'train_color_fcn32s.py')
    status, _ = quality_runs.run_child([sys.executable, script, '-c', '999'], str(log), 'bad')
    assert status == 2 and 'error: no configuration 999' in log.read_text()
    probe = tmp_path / 'probe.py'
    probe.write_text('import multiprocessing, os, sys, torch, config\nprint("argv", sys.argv[1:], "cwd", '
                     'os.getcwd(), "patched", hasattr(config, "PATCHED"), "start", multiprocessing.get_start_method())'
                     '\nsys.exit(3)\n')
    monkeypatch.setattr(config, 'PATCHED', True, raising=False)
    status, _ = quality_runs.run_child([sys.executable, str(probe), 'a', 'b'], str(log), 'probe')
    # its DataLoader workers start as a new interpreter's would, not from the forkserver (whose semaphores
    # the resource tracker reported as leaked at the end of a long experiment)
    fresh = subprocess.run([sys.executable, '-c', 'import multiprocessing; print(multiprocessing.get_start_method())'],
                           capture_output=True, text=True).stdout.strip()
    assert status == 3 and "argv ['a', 'b'] cwd %s patched False start %s\n" % (REPO_DIR, fresh) in log.read_text()


def test_the_default_model_carries_the_decoding_chosen_for_it(plain_model, tmp_path):
    """save_colorizer_checkpoint writes a decoding of QUALITY_EXPERIMENT['decodings'] into the checkpoint's
    config (colorize.py, evaluate.py and the page decode by it); the same label gives evaluate.py's flags."""
    for label in ('annealed-T0.2', 'mode', 'annealed'):
        path = str(tmp_path / (label + '.pth.tar'))
        quality_runs.save_colorizer_checkpoint(plain_model, path, label)
        decode, temperature = config.QUALITY_EXPERIMENT['decodings'][label]
        assert colorize.load_colorizer(path).decoding == (decode, temperature or config.DEFAULTS['temperature'])
        args = evaluate.parse_args(['-m', path] + quality_runs.decoding_argv(label))
        assert (args.decode, args.temperature) == (decode, temperature)
    assert quality_runs.decoding_argv('annealed-T0.2') == ['--decode', 'annealed', '-T', '0.2']


def test_plan_reuses_the_default_run_for_arms_equal_to_the_default(tmp_path):
    args = quality.parse_args(['--photos', str(tmp_path), '--out', str(tmp_path / 'out'), '--folds', '1'])
    chain = list(config.QUALITY_EXPERIMENT['chain'])
    runs, arms = quality.plan(args, chain, quality.selected_variants('all'), [0, 1])
    base = config.get_config(chain[0][1])
    by_name = {r.name: r for r in runs}
    assert len(by_name) == len(runs)                       # every run once
    first_label = {}                                       # config of an arm -> the label of its run
    for variant, overrides_by_arm in config.QUALITY_EXPERIMENT['variants'].items():
        for arm, overrides in overrides_by_arm.items():
            cfg = dict(base, **overrides)
            is_default = cfg == base
            label = first_label.setdefault(repr(sorted(cfg.items())), '%s-%s' % (variant, arm))
            for seed, run in zip((0, 1), arms[variant][arm]):
                assert run.seed == seed and run.arch == 'fcn32s'
                assert run.arm == ('default' if is_default else label)
                assert run.iterations == by_name['default/seed%d/fcn32s' % seed].iterations
    # arms of equal configs share a run: the binning variant's GMM arm is the gmm_space variant's polar arm
    assert arms['binning']['gmm'] == arms['gmm_space']['polar']
    assert len({r.arm for r in runs}) == len(first_label)
    assert [r.arch for r in arms['stages']['fcn8s']] == ['fcn8s', 'fcn8s']
    assert {(r.seed, r.arch) for r in runs if r.arm == 'default'} == {
        (s, a) for s in (0, 1) for a, _ in chain}
    # the first stage's iterations: its share of the budget x reference images/s / batch size
    e = config.QUALITY_EXPERIMENT
    expected = e['budget_min'] * 60 * e['stage_shares'][0] * e['reference_images_per_s'][0] / base['batch_size']
    assert by_name['default/seed0/fcn32s'].iterations == round(expected)
    # the default invocation: one seed's chain, nothing else
    runs, arms = quality.plan(args, chain, [], [0, 1])
    assert [r.name for r in runs] == ['default/seed0/%s' % a for a, _ in chain] and arms == {}


def summary(auc_rebal, auc, grey_auc=80.0):
    return {'model': {'auc_rebal': {'mean': auc_rebal}, 'auc': {'mean': auc}}, 'grayscale': {'auc': {'mean': grey_auc}}}


def test_the_selection_rule_takes_the_best_rebalanced_auc_among_those_near_grayscales_auc():
    """A hand-made table (grayscale's plain AuC 80): fcn8s has the best rebalanced AuC but loses 1.5 points of
    plain AuC, so it does not qualify; of the rest fcn16s; ties go to the higher plain AuC, then to the
    first listed; nothing qualifying: the best plain AuC."""
    table = {'fcn32s': summary(74.0, 80.5), 'fcn16s': summary(75.0, 79.2), 'fcn8s': summary(77.0, 78.5)}
    chosen = quality_folds.select(table)
    assert chosen['chosen'] == 'fcn16s' and chosen['qualified'] == ['fcn32s', 'fcn16s']
    assert quality_folds.select(table, dict(metric='auc_rebal', auc_points=2.0))['chosen'] == 'fcn8s'
    table['fcn32s'] = summary(75.0, 79.5)                                  # a tie on rebalanced AuC ...
    assert quality_folds.select(table)['chosen'] == 'fcn32s'               # ... to the higher plain AuC
    table['fcn16s'] = summary(75.0, 79.5)                                  # a full tie: the first listed
    assert quality_folds.select(table)['chosen'] == 'fcn32s'
    assert quality_folds.select(dict(reversed(list(table.items()))))['chosen'] == 'fcn16s'
    nothing = {'a': summary(90.0, 70.0), 'b': summary(60.0, 75.0), 'c': None}   # none near grayscale; c not scored
    assert quality_folds.select(nothing) == dict(quality_folds.select(nothing), chosen='b', qualified=[])
    assert quality_folds.select({'a': None})['chosen'] is None
    # the experiment's stage and arm choices are this rule
    stages = {arch: {'val': s} for arch, s in table.items()}
    assert quality.default_stage(stages) == quality_folds.select(table)['chosen']
    arms = {'off': {'val': summary(75.0, 80.0), 'runs': ['x', 'y']},
            'on': {'val': summary(78.0, 78.0), 'runs': ['z', 'w']}}
    decision = quality.choose(arms, 'off', 2)
    assert decision['chosen'] == 'off' and decision['qualified'] == ['off'] and decision['complete']


def test_folds_are_disjoint_by_photo_cover_the_non_test_photos_and_keep_near_duplicates_together(tmp_path):
    names = ['p%02d.jpg' % i for i in range(9)] + ['scikit-image/motorcycle_left.png',
                                                   'scikit-image/motorcycle_right.png']
    photos = tmp_path / 'photos'
    photos.mkdir()
    (photos / 'split_train.txt').write_text('\n'.join(names[:7] + names[9:]) + '\n')
    (photos / 'split_val.txt').write_text('\n'.join(names[7:9] + ['t1.jpg']) + '\n')   # t1: also in test
    (photos / 'split_test.txt').write_text('t0.jpg\nt1.jpg\n')
    non_test = quality_folds.non_test_photos(str(photos), str(photos / 'split_test.txt'))
    assert non_test == sorted(names)
    folds = quality_folds.make_folds(non_test, 4)
    assert sorted(p for fold in folds for p in fold) == sorted(names)        # disjoint and covering
    assert all(folds)
    assert any(set(names[9:]) <= set(fold) for fold in folds)                # the motorcycle pair: one fold
    assert quality_folds.make_folds(list(reversed(non_test)), 4) == folds     # by photo, not by list order
    with pytest.raises(ValueError, match='at least 11'):
        quality_folds.make_folds(non_test, 11)                                # 10 groups
    # the runs: a fold's run trains on the other folds and is scored on its own, never on a test photo
    args = quality.parse_args(['--photos', str(photos), '--out', str(tmp_path / 'out'), '--folds', '4'])
    args.val_list, args.test_list = str(photos / 'split_val.txt'), str(photos / 'split_test.txt')
    written = quality.write_fold_lists(args)
    assert written == folds
    runs, _ = quality.plan(args, list(config.QUALITY_EXPERIMENT['chain']), [], [0])
    fold_runs = [r for r in runs if r.fold != quality.ALL]
    assert sorted({r.fold for r in fold_runs}) == [0, 1, 2, 3] and len(fold_runs) == 12
    for run in fold_runs:
        train, val = (set(open(run.lists[s]).read().split()) for s in ('train', 'val'))
        assert val == set(folds[run.fold]) and train == set(names) - val
        assert quality.evaluations(run, {}) == [('val', 'annealed')]
        assert run.previous is None or run.previous.fold == run.fold
    final = [r for r in runs if r.fold == quality.ALL]
    assert [r.arch for r in final] == [a for a, _ in config.QUALITY_EXPERIMENT['chain']]
    assert set(open(final[0].lists['train']).read().split()) == set(names)
    assert all(quality.evaluations(r, {}) == [('test', 'annealed')] for r in final)


def test_cross_validated_run_chooses_on_the_folds_and_scores_the_recommended_model_once(tmp_path, capsys,
                                                                                         monkeypatch):
    """--folds 2 on 4 photos outside the test split: each stage trained twice (once per fold, the two folds'
    chains side by side: --jobs 2, each stage after the one it starts from), scored on its held-out fold;
    the chosen stage retrained on all four, scored once on the test photo, decoded as the decoding variant
    would choose (here forced to T = 0.2, which the tiny runs would seldom choose)."""
    monkeypatch.setattr(quality, 'recommended_decode', lambda result: 'annealed-T0.2')
    from conftest import PHOTOS
    photos = tmp_path / 'photos'
    write_photos(str(photos), PHOTOS[:5])
    (photos / 'split_train.txt').write_text(''.join(n + '.png\n' for n in PHOTOS[:3]))
    (photos / 'split_val.txt').write_text(PHOTOS[3] + '.png\n')
    (photos / 'split_test.txt').write_text(PHOTOS[4] + '.png\n')
    out = tmp_path / 'out'
    status, stdout, err = run_quality(capsys, '--photos', photos, '--out', out, '--jobs', '2', '--hints',
                                      '--hint-configs', '198,198,198/197,197,197', *(TINY[:-1] + ['2']))
    assert status == 0, stdout + err
    result = json.loads((out / 'results.json').read_text())
    assert result['folds'] == 2
    for arch in ('fcn32s', 'fcn16s', 'fcn8s'):
        stage = result['default'][arch]
        assert stage['folds'] == [0, 1] and 'test' not in stage
        assert stage['val']['n_images'] in (1, 2, 3)
    chosen = result['default_model']
    assert chosen == quality_folds.select({a: r['val'] for a, r in result['default'].items()})['chosen']
    recommended = result['recommended']
    assert recommended['arch'] == chosen and recommended['run'] == 'default/seed0/all/%s' % chosen
    assert recommended['decode'] == 'annealed-T0.2'
    scored = json.loads((out / 'default' / 'seed0' / 'all' / chosen / 'eval-final-test-annealed-T0.2' /
                         'metrics.json').read_text())
    assert recommended['test']['model']['auc_rebal']['mean'] == scored['model']['auc_rebal'] and scored['n_images'] == 1
    assert scored['max_side'] is None       # the test score at full size, every validation score scaled down
    fold_scores = [json.loads(p.read_text()) for p in out.glob('default/seed0/fold*/*/eval-final-val-*/metrics.json')]
    assert len(fold_scores) == 6 and {m['max_side'] for m in fold_scores} == {config.QUALITY_EXPERIMENT['val_max_side']}
    archs = [a for a, _ in config.QUALITY_EXPERIMENT['chain']]
    later = archs[archs.index(chosen) + 1:]
    assert all(not (out / 'default' / 'seed0' / 'all' / a).exists() for a in later)   # not needed, not trained
    assert not list(out.glob('default/seed0/fold*/*/eval-*-test-*'))                 # folds never see the test split
    trained_on = (out / 'default' / 'seed0' / 'all' / 'fcn32s' / 'split_train.txt').read_text().split()
    assert sorted(trained_on) == sorted(n + '.png' for n in PHOTOS[:4])
    md = (out / 'results.md').read_text()
    assert '## Default chain, 2-fold cross-validation' in md and '## Recommended model, test split' in md
    assert 'selection rule: the highest mean auc_rebal' in md
    assert colorize.load_colorizer(str(out / 'default' / 'model_best.pth.tar')).model.__class__.__name__ == {
        'fcn32s': 'FCN32sColor', 'fcn16s': 'FCN16sColor', 'fcn8s': 'FCN8sColor'}[chosen]
    # --hints: the hint method is chosen on each fold's chosen stage swept on its own fold (never a test
    # photo), averaged; the hint chain trains on every non-test photo up to the chosen stage
    hints_result = result['hints']
    folds = [sorted(read_list(out / 'folds' / ('fold%d-val.txt' % fold))) for fold in (0, 1)]
    sweeps = []
    for fold in (0, 1):
        sweep_dir = out / 'default' / 'seed0' / ('fold%d' % fold) / chosen / quality_hints.VAL_SWEEP
        with open(sweep_dir / 'per_image.csv') as f:
            scored = sorted(os.path.relpath(row['path'], photos) for row in csv.DictReader(f))
        assert scored == folds[fold]
        sweeps.append(json.loads((sweep_dir / 'hints.json').read_text()))
    assert hints_result['sweeps']['default_val'] == quality_hints.mean_sweep(sweeps)
    assert sweeps[0] != sweeps[1]
    assert hints_result['best_method'] == quality_hints.best_method(quality_hints.mean_sweep(sweeps))
    assert hints_result['hint_model'] == chosen and hints_result['sweeps']['hints_test']
    # ... and the hint chain by the rule on each candidate's chosen stage, trained on each fold from that
    # fold's FCN-32s and swept on its own fold with the chosen method; only the chosen one trains on all
    candidates = hints_result['candidates']
    assert set(candidates) == {'hints-198-198-198', 'hints-197-197-197'}
    for arm, candidate in candidates.items():
        fold_sweeps = []
        for fold in (0, 1):
            run_dir = out / arm / 'seed0' / ('fold%d' % fold) / chosen
            assert candidate['runs'][fold] == '%s/seed0/fold%d/%s' % (arm, fold, chosen)
            started_from = (out / arm / 'seed0' / ('fold%d' % fold) / 'fcn32s' / 'quality.log').read_text()
            assert '-m %s' % (out / 'default' / 'seed0' / ('fold%d' % fold) / 'fcn32s' / 'checkpoint.pth.tar') \
                in started_from
            with open(run_dir / quality_hints.VAL_SWEEP / 'per_image.csv') as f:
                assert sorted(os.path.relpath(row['path'], photos) for row in csv.DictReader(f)) == folds[fold]
            assert json.loads((run_dir / quality_hints.VAL_SWEEP / 'metrics.json').read_text())['hint_method'] == \
                hints_result['best_method']
            fold_sweeps.append(json.loads((run_dir / quality_hints.VAL_SWEEP / 'hints.json').read_text()))
        assert candidate['val_sweep'] == quality_hints.mean_sweep(fold_sweeps)
        assert all(not (out / arm / 'seed0' / f / a).exists() for f in ('fold0', 'fold1') for a in later)
    arm = hints_result['arm']
    assert arm == (quality_hints.best_hint_chain({a: c['val_sweep'] for a, c in candidates.items()},
                                                 hints_result['sweeps']['default_val']) or 'hints-198-198-198')
    other = next(a for a in candidates if a != arm)
    assert not (out / other / 'seed0' / 'all').exists()
    assert hints_result['configs'] == [int(n) for n in arm.split('-')[1:]]
    hint_model = colorize.load_colorizer(str(out / 'hints' / 'model_best.pth.tar'))
    # it fuses with its own chain's best method on validation (the default model's when it has no sweep)
    assert hints_result['hint_model_method'] == quality_hints.best_method(candidates[arm]['val_sweep'])
    assert hint_model.hint_method == hints_result['hint_model_method']
    assert hint_model.config['hint_branch'] == config.get_config(hints_result['configs'][0])['hint_branch']
    started_from = (out / arm / 'seed0' / 'all' / 'fcn32s' / 'quality.log').read_text()
    assert '-m %s' % (out / 'default' / 'seed0' / 'all' / 'fcn32s' / 'checkpoint.pth.tar') in started_from
    assert all(not (out / arm / 'seed0' / 'all' / a).exists() for a in later)
    # its test score, decoded as the recommended model
    scored = json.loads((out / arm / 'seed0' / 'all' / chosen / 'eval-final-test-annealed-T0.2' / 'metrics.json')
                        .read_text())
    assert hints_result['stages'][chosen]['test']['model']['psnr']['mean'] == scored['model']['psnr']
    md = (out / 'results.md').read_text()
    assert '### Hint chains on validation' in md and '**%s: chosen**' % arm in md
    assert '| **%s: hint model** | model |' % chosen in md


def test_mean_and_spread_over_seeds():
    values = [71.25, 68.5]
    ms = quality.mean_spread(values)
    assert ms['mean'] == pytest.approx(np.mean(values)) and ms['spread'] == pytest.approx(np.ptp(values) / 2)
    other = quality.mean_spread([66.0, 67.0])               # 66.5 +- 0.5 against 69.875 +- 1.375
    assert not quality.within_spread(ms, other)
    assert quality.within_spread(ms, quality.mean_spread([67.5, 68.5]))   # 68 +- 0.5 touches 68.5


@pytest.mark.parametrize('case, fragment', [
    ('empty', 'holds no photo'),
    ('no lists', 'split_train.txt'),
    ('missing', 'is not a folder'),
    ('bad variant', 'unknown'),
    ('hint chain twice', 'listed twice'),
    ('short hint chain', 'expected 3 integers'),
])
def test_user_mistakes_get_one_error_line(tmp_path, capsys, case, fragment):
    photos = tmp_path / 'photos'
    photos.mkdir()
    argv = ['--photos', photos, '--out', tmp_path / 'out'] + TINY
    if case == 'no lists':
        split_folder(str(photos), lists=False)
    elif case == 'missing':
        argv[1] = tmp_path / 'nowhere'
    elif case == 'bad variant':
        split_folder(str(photos))
        argv += ['--variants', 'rebalance,colour']
    elif case == 'hint chain twice':
        split_folder(str(photos))
        argv += ['--hints', '--hint-configs', '198,198,198/197,197,197/198,198,198']
    elif case == 'short hint chain':
        split_folder(str(photos))
        argv += ['--hints', '--hint-configs', '198,198,198/197,197']
    status, out, err = run_quality(capsys, *argv)
    assert status == 2
    assert err.count('\n') == 1 and err.startswith('error: ') and fragment in err, err
    assert not (tmp_path / 'out').exists()


def curve_plan(tmp_path, names, folds):
    """A photo folder listing ``names`` (+ one validation and one test photo), its fold lists written for
    ``--folds folds --learning-curve`` -> (folder, args, folds, the planned runs of the chain)."""
    photos = tmp_path / 'photos'
    photos.mkdir()
    (photos / 'split_train.txt').write_text('\n'.join(names) + '\n')
    (photos / 'split_val.txt').write_text('v.jpg\n')
    (photos / 'split_test.txt').write_text('t.jpg\n')
    args = quality.parse_args(['--photos', str(photos), '--out', str(tmp_path / 'out'), '--folds', str(folds),
                               '--learning-curve'])
    args.val_list, args.test_list = str(photos / 'split_val.txt'), str(photos / 'split_test.txt')
    written = quality.write_fold_lists(args)
    runs, _ = quality.plan(args, list(config.QUALITY_EXPERIMENT['chain']), [], [0])
    return photos, args, written, runs


def test_the_learning_curve_trains_nested_shares_of_each_fold_at_both_budgets(tmp_path, capsys):
    """--learning-curve: for every share, budget rule and fold, a chain trained on that share of the fold's
    training photos (nested: a larger share holds the smaller), its iterations scaled by the share under
    'same budget per photo' and kept under 'the same budget', scored on the test split only."""
    names = ['p%02d.jpg' % i for i in range(15)] + ['scikit-image/motorcycle_left.png',
                                                    'scikit-image/motorcycle_right.png']
    half = quality_folds.photo_share(names, 0.5)
    quarter = quality_folds.photo_share(names, 0.25)
    assert set(quarter) < set(half) < set(names) and len(quarter) in (4, 5) and len(half) in (8, 9)
    assert {'scikit-image/motorcycle_left.png', 'scikit-image/motorcycle_right.png'} & set(half) in (
        set(), {'scikit-image/motorcycle_left.png', 'scikit-image/motorcycle_right.png'})   # a pair stays whole
    assert quality_folds.photo_share(names[:1], 0.25) == names[:1]                         # at least one
    photos, args, folds, runs = curve_plan(tmp_path, names, 3)
    chain = list(config.QUALITY_EXPERIMENT['chain'])
    curve = config.QUALITY_EXPERIMENT['learning_curve']
    base = {r.stage_index: r.iterations for r in runs if r.fold == 0 and r.curve is None and r.arm == 'default'}
    curve_runs = [r for r in runs if r.curve is not None]
    assert len(curve_runs) == len(curve['shares']) * len(curve['budgets']) * 3 * (curve['stage'] + 1)
    assert {r.stage_index for r in curve_runs} == set(range(curve['stage'] + 1)) and curve['stage'] < len(chain)
    for run in curve_runs:
        share, budget = run.curve
        train = open(run.lists['train']).read().split()
        fold_train, _ = quality_folds.fold_lists(folds, run.fold)
        assert train == quality_folds.photo_share(fold_train, share) and set(train) < set(fold_train)
        assert not set(train) & set(folds[run.fold]) and run.lists['test'] == args.test_list
        expected = base[run.stage_index] if budget == 'fixed' else max(1, round(base[run.stage_index] * share))
        assert abs(run.iterations - expected) <= 1 and run.scored_on == ('test',)
        assert run.previous is None or run.previous.curve == run.curve and run.previous.fold == run.fold
    status, out, err = run_quality(capsys, '--photos', photos, '--out', tmp_path / 'o1', '--folds', '1',
                                   '--learning-curve')
    assert status == 2 and err.startswith('error: --learning-curve needs --folds 2')


def test_the_learning_curve_table_and_plot_show_every_share_and_budget(tmp_path):
    def point(share, photos, psnr, spread):
        ms = lambda v, s: {'mean': v, 'spread': s, 'values': [v - s, v + s]}  # noqa: E731
        methods = {m: {k: ms(psnr if k == 'psnr' else 70.0, spread) for k in quality.METRICS}
                   for m in ('model', 'grayscale', 'target')}
        return {'share': share, 'photos': photos, 'folds': 2, 'test': dict(methods, ground_truth={})}
    result = {'default_model': 'fcn16s', 'learning_curve_arch': 'fcn32s', 'val_max_side': 1024,
              'learning_curve': {
                  'per_photo': [point(0.25, 3.0, 18.5, 0.4), point(0.5, 6.0, 19.0, 0.3), point(1.0, 12.0, 19.4, 0.2)],
                  'fixed': [point(0.25, 3.0, 18.9, 0.5), point(0.5, 6.0, 19.2, 0.2), dict(point(1.0, 12.0, 0, 0), test=None)]}}
    lines = quality_report.curve_lines(result)
    rows = [line for line in lines if line.startswith('| same budget per photo') or line.startswith('| the same')]
    assert len(rows) == 6 and '| the same budget | 1 | 12.0 | 2 | not finished |' in '\n'.join(rows)
    assert any('18.50 ± 0.40' in row for row in rows)
    path = str(tmp_path / 'curve.png')
    quality_report.plot_learning_curve(result, path)
    assert Image.open(path).size[0] > 500


def test_progress_counts_training_rows_of_log_csv_not_its_header_or_validations(tmp_path):
    import quality_runs
    (tmp_path / 'log.csv').write_text('epoch,iteration,train/loss,valid/loss\n0,0,,1.2\n0,0,0.9,\n0,1,0.8,\n0,2,,1.1\n')
    assert quality_runs.count_iterations(str(tmp_path)) == 2
    assert quality_runs.count_iterations(str(tmp_path / 'nowhere')) == 0


def test_the_learning_curve_scores_its_stage_of_every_share_and_fold_on_the_test_split(tmp_path, monkeypatch):
    """train_curve with training and scoring stubbed (the real ones run end to end above): each fold's own
    run of the curve's stage and each share's chain up to it are scored on the test split only (scaled to
    val_max_side, as every fold run's scores), and the curve's table has every share, budget and the folds'
    spread."""
    names = ['p%02d.jpg' % i for i in range(12)]
    trained, scored = [], []

    def fake_train(run, _):
        os.makedirs(run.dir, exist_ok=True)
        quality.write_json(os.path.join(run.dir, quality.DONE_MARKER), {'wall_s': 1.0})
        trained.append(run.name)
        return True

    def fake_evaluate(run, split, decode, _):
        scored.append((run.name, split, decode))
        assert os.path.isfile(run.lists[split]) and run.max_side(split) == config.QUALITY_EXPERIMENT['val_max_side']
        value = 70.0 + len(open(run.lists['train']).read().split())   # more photos, a better score
        return {m: {k: value for k in quality.METRICS} for m in ('model', 'grayscale', 'target')} | {
            'ground_truth': {'colorfulness': 50.0}, 'n_images': 1}
    monkeypatch.setattr(quality, 'train', fake_train)
    monkeypatch.setattr(quality, 'evaluate', fake_evaluate)
    monkeypatch.setitem(config.QUALITY_EXPERIMENT['learning_curve'], 'stage', 1)   # the plan below: up to FCN-16s
    _, args, _, runs = curve_plan(tmp_path, names, 2)
    scores, walls = {}, {}
    quality.train_curve(args, runs, 1, 'annealed-T0.6', scores, walls, lambda: None)
    curve_runs = [r for r in runs if r.curve is not None]
    assert curve_runs and sorted(trained) == sorted(r.name for r in curve_runs)   # FCN-32s and FCN-16s
    assert {r.stage_index for r in curve_runs} == {0, 1}
    assert all(split == 'test' and decode == 'annealed-T0.6' for _, split, decode in scored)   # as every point
    assert sorted(n for n, _, _ in scored) == sorted(
        [r.name for r in curve_runs if r.arch == 'fcn16s'] + ['default/seed0/fold%d/fcn16s' % f for f in (0, 1)])
    curve = quality.learning_curve(runs, scores, 'fcn16s', 'annealed-T0.6')
    for budget, points in curve.items():
        assert [p['share'] for p in points] == [0.25, 0.5, 1.0] and all(p['folds'] == 2 for p in points)
        means = [p['test']['model']['psnr']['mean'] for p in points]
        assert means == sorted(means) and points[-1]['photos'] == 6.5     # 13 photos: folds of 7 and 6


# -- experiments/hint_curve.py: the network's own hint gain against iterations (issue 28) --

def test_a_finished_run_of_another_config_is_refused_not_reused(tmp_path, capsys):
    """--hint-configs 116,.. into a folder whose hint chain was trained with 113: one error line, nothing
    trained (the run folder's name does not say its config)."""
    photos = split_folder(str(tmp_path / 'photos'))
    out = tmp_path / 'out'
    argv = ['--photos', photos, '--out', out, '--hints', '--hint-configs', '198,198,198'] + TINY
    args = quality.parse_args([str(a) for a in argv])
    args.hint_chains = [[(arch, 198) for arch, _ in config.QUALITY_EXPERIMENT['chain']]]
    runs, _ = quality.plan(args, [(arch, 199) for arch, _ in config.QUALITY_EXPERIMENT['chain']], [], [0])
    hint_run = next(r for r in runs if quality_hints.is_hint_arm(r.arm))
    os.makedirs(hint_run.dir)
    marker = {'iterations': hint_run.iterations, 'config': 197, 'overrides': {}}
    with open(os.path.join(hint_run.dir, quality.DONE_MARKER), 'w') as f:
        json.dump(marker, f)
    status, stdout, err = run_quality(capsys, *argv)
    assert status == 2 and err.count('\n') == 1 and err.startswith('error: ')
    assert 'trained with config 197' in err and 'asks for config 198' in err, err
    assert ' train ' not in stdout and not (out / 'default').exists()
