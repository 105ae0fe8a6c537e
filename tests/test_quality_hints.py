"""The quality experiment's hint parts: the rules that choose the hint method and the hint chain on
validation (experiments/quality_hints.py), a hint sweep's reuse, experiments/hint_curve.py and
experiments/hint_bound.py."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

import colorize
import config
from conftest import REPO_DIR, skimage_photo
from test_quality import SPLITS, split_folder

sys.path.insert(0, os.path.join(REPO_DIR, 'experiments'))
import hint_bound  # noqa: E402
import hint_curve  # noqa: E402
import hint_sweep  # noqa: E402
import quality_hints  # noqa: E402
import quality_plan  # noqa: E402


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


def test_the_hint_chain_rule_prefers_the_best_own_method_among_those_near_the_default_model_with_no_points():
    """Hand-made validation sweeps: chain b has the best hint method but its network with 0 points is 0.5 dB
    below the default model's, so it does not qualify at 0.3 dB; of the others c has the best mean over the
    counts with points of its own best method (Levin's here: its other method falls below Levin); a tie goes
    to the better rebalanced AuC; an unfinished chain never."""
    def sweep(psnr0, psnr2, psnr10, auc=80.0, method='stacked'):
        row = lambda p: {'psnr': p, 'auc_rebal': auc}     # noqa: E731
        found = {'model': {'0': row(psnr0), '10': row(psnr0 + 0.5)},
                 'levin': {'0': row(psnr0), '2': row(psnr2 - 1), '10': row(psnr10 - 1)}}
        found[method] = {'0': row(psnr0), '2': row(psnr2), '10': row(psnr10)}
        return found
    default_val = sweep(20.0, 20.0, 20.0)
    found = {'a': sweep(20.0, 22.0, 24.0), 'b': sweep(19.5, 23.0, 26.0), 'c': sweep(19.8, 23.0, 23.0, method='shrinkage'),
             'd': None}
    found['c']['shrinkage']['10']['psnr'] = 20.0                  # c's shrinkage: far below Levin at 10 points
    found['c']['levin'] = {n: {'psnr': 24.0, 'auc_rebal': 80.0} for n in ('0', '2', '10')}   # ... its Levin: 24
    assert quality_hints.best_method(found['c']) == 'levin'
    assert quality_hints.best_hint_chain(found, default_val, tolerance_db=0.3) == 'c'
    assert quality_hints.best_hint_chain(found, default_val, tolerance_db=0.6) == 'b'
    assert quality_hints.best_hint_chain(found, default_val, tolerance_db=0.1) == 'a'
    found['a'] = sweep(20.0, 24.0, 24.0, auc=81.0)           # c's PSNR, a better AuC
    assert quality_hints.best_hint_chain(found, default_val, tolerance_db=0.3) == 'a'
    assert quality_hints.best_hint_chain({'a': sweep(19.0, 22, 24)}, default_val, tolerance_db=0.3) is None
    assert quality_hints.gain_in_sweep(found['b']) == pytest.approx(0.5)
    assert quality_hints.gain_in_sweep({'model': {'0': {'psnr': 1.0}}}) is None


def test_the_hint_curve_continues_one_run_per_arm_to_each_multiple_and_reuses_every_snapshot(tmp_path, monkeypatch):
    """Training and scoring stubbed: each 'checkpoint' holds the iteration it was trained to."""
    import shutil
    photos, out = split_folder(str(tmp_path / 'photos')), tmp_path / 'out'
    commands = []

    def fake_run_child(command, log_path, label, run_dir=None, total=None):
        commands.append(command)
        with open(os.path.join(run_dir, 'checkpoint.pth.tar'), 'w') as f:
            f.write(str(total))
        return 0, 0.0

    def fake_gain(model_path, photo_list, points):
        trained_to = int(open(model_path).read())
        assert [name for name, _ in photo_list] == [SPLITS['val'] + '.png']   # validation photos only
        return {'0': {'psnr': 20.0, 'auc_rebal': 70.0}, str(points): {'psnr': 20.0 + trained_to, 'auc_rebal': 71.0},
                'gain_psnr': float(trained_to)}
    monkeypatch.setattr(hint_curve, 'run_child', fake_run_child)
    monkeypatch.setattr(hint_curve, 'save_colorizer_checkpoint', shutil.copyfile)
    monkeypatch.setattr(hint_curve, 'network_gain', fake_gain)
    argv = ['--photos', photos, '--out', str(out), '--budget-min', '1', '--multiples', '1,4']
    assert hint_curve.main(argv) == 0
    base_arch, base_config = config.QUALITY_EXPERIMENT['chain'][0]
    unit = quality_plan.stage_iterations(1, config.get_config(base_config)['batch_size'], 0)[0]
    base = commands.pop(0)
    assert base[base.index('-c') + 1] == str(base_config) and base[base.index('--max-iter') + 1] == str(unit)
    assert '-m' not in base
    # the base of a later stage's arm: the chain continued from the previous stage's base for its own iterations
    arms = config.HINT_CURVE['arms']
    chain = config.QUALITY_EXPERIMENT['chain']
    for index in range(1, 1 + max([a for a, _ in chain].index(arch) for _, _, arch in arms.values())):
        (stage_arch, stage_config), previous = chain[index], chain[index - 1][0]
        later = [i for i, c in enumerate(commands) if '-c' in c and c[c.index('-c') + 1] == str(stage_config)]
        assert len(later) == 1
        stage_base = commands.pop(later[0])
        assert stage_base[1].endswith('train_color_%s.py' % stage_arch)
        assert stage_base[stage_base.index('-m') + 1] == \
            str(out / ('base.pth.tar' if index == 1 else 'base-%s.pth.tar' % previous))
        assert stage_base[stage_base.index('--max-iter') + 1] == \
            str(quality_plan.stage_iterations(1, config.get_config(stage_config)['batch_size'], index)[0])
    assert len(commands) == 2 * len(arms)
    result = json.loads((out / 'hint_curve.json').read_text())
    for (arm, (number, overrides, arch)), first, second in zip(arms.items(), commands[::2], commands[1::2]):
        # a fresh run of its stage's script from the base of that stage with the arm's overrides, then the
        # same run continued
        base_model = out / ('base.pth.tar' if arch == base_arch else 'base-%s.pth.tar' % arch)
        assert first[1].endswith('train_color_%s.py' % arch) and second[1].endswith('train_color_%s.py' % arch)
        assert first[first.index('-c') + 1] == str(number) and first[first.index('-m') + 1] == str(base_model)
        assert first[first.index('-o') + 1] == str(out / arm / 'run') and first[first.index('--max-iter') + 1] == str(unit)
        for key, value in overrides.items():
            assert '%s=%s' % (key, json.dumps(value)) in first
        assert second[second.index('--resume') + 1] == str(out / arm / 'run' / 'checkpoint.pth.tar')
        assert second[second.index('--max-iter') + 1] == str(4 * unit)
        # each multiple scored from its own snapshot
        assert {c: s['gain_psnr'] for c, s in result['arms'][arm].items()} == {str(unit): unit, str(4 * unit): 4 * unit}
    assert (out / 'hint_curve.png').is_file() and '| %+.2f |' % (4 * unit) in (out / 'hint_curve.md').read_text()
    commands.clear()
    assert hint_curve.main(argv) == 0 and commands == []          # everything reused
    first_arm = next(iter(arms))
    (out / first_arm / ('it%d.pth.tar' % unit)).write_text('7')   # trained again (its folder removed, say)
    assert hint_curve.main(argv) == 0 and commands == []          # ... so that snapshot alone is scored again
    rescored = json.loads((out / 'hint_curve.json').read_text())['arms']
    assert rescored[first_arm][str(unit)]['gain_psnr'] == 7 and rescored[first_arm][str(4 * unit)]['gain_psnr'] == 4 * unit
    assert hint_curve.main(argv[:-1] + ['1,2']) == 0               # a new multiple: only that is trained
    assert len(commands) == len(arms) and all('--resume' in c for c in commands)


def test_the_hint_curves_network_gain_is_the_sweeps_model_arm(plain_model):
    """hint_curve.network_gain scores what evaluate.py --hint-points scores as ``model``, on the same points."""
    photo = ('astronaut.png', skimage_photo('astronaut', (96, 80)))
    gain = hint_curve.network_gain(plain_model, [photo], 10)
    scores, _, _ = hint_sweep.score_photo(colorize.load_colorizer(plain_model), photo[1], photo[0], [0, 10])
    for count in ('0', '10'):
        for key in ('psnr', 'auc_rebal'):
            assert gain[count][key] == pytest.approx(scores[int(count)]['model'][key], abs=1e-9)
    assert gain['gain_psnr'] == pytest.approx(scores[10]['model']['psnr'] - scores[0]['model']['psnr'], abs=1e-9)
    assert gain['gain_psnr'] > 0.01   # a lightness-only model: the gain is only the pasted squares, but there is one


def test_a_hint_sweep_is_reused_only_when_made_with_the_asked_default_method_from_the_same_model(tmp_path):
    """A default model whose hint method changed gets a new test sweep, and so does a model file written
    anew; a failed sweep keeps the old one."""
    from types import SimpleNamespace
    made, calls = {'method': 'stacked', 'status': 0}, []

    def score(argv, log_path):         # evaluate.py's outputs, made with the model's method
        calls.append(argv)
        if made['status']:
            return made['status'], 0.1
        out = argv[argv.index('-o') + 1]
        os.makedirs(out)
        with open(os.path.join(out, 'hints.json'), 'w') as f:
            json.dump({'model': {'0': {'psnr': len(calls)}}}, f)
        with open(os.path.join(out, 'metrics.json'), 'w') as f:
            json.dump({'hint_method': made['method']}, f)
        return 0, 0.1
    out = str(tmp_path / 'sweep-test')

    model = tmp_path / 'm.pth.tar'
    model.write_text('the first model')

    def sweep(method):
        return quality_hints.sweep(str(model), [0], SimpleNamespace(photos='P'), 'list.txt', out,
                                   str(tmp_path / 'log'), score, lambda line: None, method=method)
    assert sweep('stacked')['model']['0']['psnr'] == 1
    assert sweep('stacked')['model']['0']['psnr'] == 1 and len(calls) == 1    # reused
    assert sweep(None)['model']['0']['psnr'] == 1 and len(calls) == 1       # any method will do
    made['method'] = 'levin'
    assert sweep('levin')['model']['0']['psnr'] == 2 and len(calls) == 2      # made again
    made['status'] = 1
    assert sweep('confidence') is None and len(calls) == 3
    assert json.loads((tmp_path / 'sweep-test' / 'hints.json').read_text())['model']['0']['psnr'] == 2   # kept
    made['status'] = 0
    model.write_text('another model, written where the first was')
    assert sweep('levin')['model']['0']['psnr'] == 4 and len(calls) == 4      # a new model: made again
    assert sweep('levin')['model']['0']['psnr'] == 4 and len(calls) == 4
    os.remove(tmp_path / 'sweep-test' / quality_hints.SOURCE_FILE)          # made before the record existed
    model.write_text('a third')
    assert sweep('levin')['model']['0']['psnr'] == 4 and len(calls) == 4      # ... reused


def test_the_truth_chosen_blend_is_the_least_squares_weight_in_0_1():
    """best_blend against a fine grid of weights (numpy): the same weight and no grid weight closer to the
    truth; a truth outside the segment between the two clips the weight to 0 or 1; equal arms give 0."""
    rng = np.random.default_rng(0)
    first, second = rng.uniform(0, 255, (2, 12, 10, 3))
    truth = 0.3 * first + 0.7 * second + rng.normal(0, 20, first.shape)
    weight, blend = hint_bound.best_blend(first, second, truth)
    grid = np.linspace(0, 1, 10001)
    errors = [((w * first + (1 - w) * second - truth) ** 2).sum() for w in grid]
    assert weight == pytest.approx(grid[int(np.argmin(errors))], abs=2e-4)
    assert ((blend - truth) ** 2).sum() <= min(errors) + 1e-6
    assert 0.2 < weight < 0.4
    assert hint_bound.best_blend(first, second, first + 2 * (first - second))[0] == 1.0
    assert hint_bound.best_blend(first, second, second - (first - second))[0] == 0.0
    assert hint_bound.best_blend(first, first, truth)[0] == 0.0


def test_the_hint_bound_scores_each_arm_and_a_blend_no_worse_than_either(plain_model, tmp_path, capsys):
    """hint_bound.py on a photo folder: per photo the truth-chosen blend of levin and the network scores at
    least the better of the two (PSNR of the rounded blend, so within rounding); levin's and the model's
    PSNR are what evaluate.py's sweep scores on the same points."""
    photos = split_folder(tmp_path / 'photos')
    assert hint_bound.main(['-m', plain_model, '--photos', str(photos), '--arms', 'model', '--points', '10']) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: [float(v) for v in line.split('per photo:')[1].strip(' )').split()]
            for line in out.splitlines() if line.strip().startswith('N=10')}
    assert {'levin', 'model', 'levin+model'} <= set(rows)
    assert rows['levin+model'][0] >= max(rows['levin'][0], rows['model'][0]) - 0.05
    name = SPLITS['test'] + '.png'
    rgb = np.asarray(Image.open(photos / name).convert('RGB'))
    scores, _, _ = hint_sweep.score_photo(colorize.load_colorizer(plain_model), rgb, name, [10])
    assert rows['levin'][0] == pytest.approx(scores[10]['levin']['psnr'], abs=0.006)
    assert rows['model'][0] == pytest.approx(scores[10]['model']['psnr'], abs=0.006)
