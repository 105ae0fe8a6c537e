"""experiments/quality.py: end to end on 3 tiny photos (config 199 for every stage, a 1-minute
budget of big batches: a few iterations per run), its plan of runs, its statistics and its errors."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

import colorize
import config
import utils
from conftest import PHOTO_SIZE, REPO_DIR, write_photos

sys.path.insert(0, os.path.join(REPO_DIR, 'experiments'))
import quality  # noqa: E402
import quality_hints  # noqa: E402

SPLITS = {'train': 'astronaut', 'val': 'chelsea', 'test': 'coffee'}
TINY = ['--budget-min', '1', '--configs', '199,199,199', '--set', 'batch_size=32', '--set', 'workers=0',
        '--set', 'interval_validate=1000']


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
    argv = ['--photos', photos, '--out', out, '--variants', 'rebalance', '--seeds', '0', '--hints',
            '--hint-configs', '198,198,198'] + TINY
    status, stdout, err = run_quality(capsys, *argv)
    assert status == 0, stdout + err
    for name in ('results.md', 'results.json', 'default/model_best.pth.tar', 'default/test_grid.png'):
        assert (out / name).is_file(), name
    result = json.loads((out / 'results.json').read_text())
    # the default model is the stage with the best validation score, as model_best of a training run
    val = {arch: result['default'][arch]['val']['model']['auc_rebal']['mean'] for arch in ('fcn32s', 'fcn16s', 'fcn8s')}
    assert result['default_model'] == max(reversed(list(val)), key=val.get)
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
    grid = np.asarray(Image.open(out / 'default' / 'test_grid.png'))
    height = round(utils.GRID_CELL * PHOTO_SIZE[1] / PHOTO_SIZE[0])   # the photo drawn GRID_CELL wide
    assert grid.shape[:2] == (height + 4, 3 * (utils.GRID_CELL + 2) + 2)  # one photo, 3 columns

    # --hints: the hint chain from the default chain's FCN-32s, its model chosen on validation, its sweep
    hints_result = result['hints']
    val = {arch: hints_result['stages'][arch]['val']['model']['auc_rebal']['mean'] for arch in val}
    assert hints_result['hint_model'] == max(reversed(list(val)), key=val.get)
    assert colorize.load_colorizer(str(out / 'hints' / 'model_best.pth.tar')).takes_hints
    started_from = (out / 'hints' / 'seed0' / 'fcn32s' / 'quality.log').read_text()
    assert '-m %s' % (out / 'default' / 'seed0' / 'fcn32s' / 'checkpoint.pth.tar') in started_from
    sweep = json.loads((out / 'hints' / 'sweep-test' / 'hints.json').read_text())
    assert sweep == hints_result['sweeps']['hints_test'] and set(sweep['levin']) == {str(n) for n in
                                                                                     config.QUALITY_EXPERIMENT['hint_points']}
    assert set(hints_result['goal']) == {'zero_points', 'ten_points'}
    # the default model's sweeps: validation chooses the hint method, test scores the default path
    for split in ('val', 'test'):
        default_sweep = json.loads((out / 'default' / ('sweep-' + split) / 'hints.json').read_text())
        assert default_sweep == hints_result['sweeps']['default_' + split]
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
    assert '### Hint sweep of the hint model' in md and '### Quality goals' in md

    marker = out / 'default' / 'seed0' / 'fcn8s' / quality.DONE_MARKER
    before = marker.stat().st_mtime_ns
    status, stdout, err = run_quality(capsys, *argv)
    assert status == 0, stdout + err
    assert ' train ' not in stdout and 'scored' not in stdout  # nothing trained or scored again
    assert marker.stat().st_mtime_ns == before


def test_plan_reuses_the_default_run_for_arms_equal_to_the_default(tmp_path):
    args = quality.parse_args(['--photos', str(tmp_path), '--out', str(tmp_path / 'out')])
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


def test_default_model_is_the_stage_best_on_validation():
    def stage(val, test):
        return {'val': {'model': {'auc_rebal': {'mean': val}}}, 'test': {'model': {'auc_rebal': {'mean': test}}}}
    stages = {'fcn32s': stage(86.0, 74.0), 'fcn16s': stage(82.0, 75.0), 'fcn8s': stage(79.0, 76.0)}
    assert quality.default_stage(stages) == 'fcn32s'                 # validation chooses, not test
    stages['fcn8s'] = stage(86.0, 76.0)
    assert quality.default_stage(stages) == 'fcn8s'                  # a tie goes to the later stage
    stages['fcn8s'] = None                                           # not finished
    assert quality.default_stage(dict(stages, fcn32s=None)) == 'fcn16s'
    assert quality.default_stage({'fcn32s': None}) is None


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
    status, out, err = run_quality(capsys, *argv)
    assert status == 2
    assert err.count('\n') == 1 and err.startswith('error: ') and fragment in err, err
    assert not (tmp_path / 'out').exists()


def test_the_hint_method_rule_prefers_the_best_mean_among_those_near_levin_at_every_count():
    """A hand-made validation sweep: `confidence` has the best mean PSNR but falls 0.3 dB below Levin at
    10 points, so it does not qualify; of the others `shrinkage` has the best mean; a tie on PSNR goes to
    the better rebalanced AuC."""
    def row(psnr2, psnr10, auc=80.0):
        return {'0': {'psnr': 20.0, 'auc_rebal': 70.0}, '2': {'psnr': psnr2, 'auc_rebal': auc},
                '10': {'psnr': psnr10, 'auc_rebal': auc}}
    sweep = {'model': row(20, 20), 'levin': row(22.0, 28.0), 'corrections': row(21.0, 28.5),
             'shrinkage': row(22.3, 27.95), 'confidence': row(23.5, 27.7)}
    assert quality_hints.best_method(sweep, tolerance_db=0.1) == 'shrinkage'
    assert quality_hints.best_method(sweep, tolerance_db=0.5) == 'confidence'
    assert quality_hints.best_method(sweep, tolerance_db=0.0) == 'levin'
    sweep['corrections'] = row(22.3, 27.95, auc=81.0)     # shrinkage's PSNR, a better AuC
    assert quality_hints.best_method(sweep, tolerance_db=0.1) == 'corrections'
    assert quality_hints.best_method(None) is None
