"""Hints that spread (propagate.py): every arm on hand-made planes, the shrinkage weight against a brute-force
leave-one-out, and the library / command-line / evaluation paths for a lightness-only checkpoint."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import colorize
import config
import hints
import levin
import propagate
import utils

HINT_AB = np.array([0.05, 0.25])     # a strong blue-ish chroma
PREDICTED_AB = np.array([0.12, 0.0])  # the prediction: one reddish colour everywhere


def two_regions(height=40, width=60):
    """Lightness ``[H, W]``: a dark left half and a light right half, split by a sharp edge."""
    lightness = np.full((height, width), 0.3)
    lightness[:, width // 2:] = 0.7
    return lightness


def one_hint(height, width, y=20, x=8, side=3):
    plane = np.zeros((2, height, width))
    mask = np.zeros((height, width), bool)
    mask[y:y + side, x:x + side] = True
    plane[:, mask] = HINT_AB[:, None]
    return plane, mask


def flat_prediction(height, width):
    return np.broadcast_to(PREDICTED_AB[:, None, None], (2, height, width)).copy()


@pytest.mark.parametrize('method', ['corrections', 'confidence', 'shrinkage', 'stacked'])
def test_a_hint_recolours_its_region_far_from_it_and_the_other_region_keeps_the_prediction(method):
    lightness = two_regions()
    plane, mask = one_hint(*lightness.shape)
    certainty = np.ones(lightness.shape)   # a certain prediction: confidence is corrections
    fused = propagate.fused_planes([method], lightness, plane, mask, flat_prediction(*lightness.shape),
                                   certainty)[method]
    far_same_side = fused[:, 2:38, 20:28]      # > 10 px from the hint, its own (dark) region
    other_side = fused[:, :, 34:]              # across the edge
    assert np.abs(far_same_side - HINT_AB[:, None, None]).max() < 0.01
    assert np.abs(other_side - PREDICTED_AB[:, None, None]).max() < 0.01
    np.testing.assert_allclose(fused[:, mask], np.repeat(HINT_AB[:, None], mask.sum(), 1))


def test_levin_is_the_hints_alone_and_matches_levin_colorize():
    lightness = np.random.default_rng(0).random((24, 30)) * 0.2 + two_regions(24, 30)
    plane, mask = one_hint(24, 30, y=5, x=5)
    fused = propagate.fused_planes(['levin'], lightness, plane, mask, flat_prediction(24, 30))['levin']
    np.testing.assert_allclose(fused, levin.levin_colorize(lightness, plane, mask), atol=1e-10)
    # one hint and no leak: Levin's walk ends at that hint from everywhere, so all of the photo takes it
    np.testing.assert_allclose(fused, np.broadcast_to(HINT_AB[:, None, None], fused.shape), atol=1e-6)


def test_confidence_weighs_the_prediction_per_pixel_by_its_certainty():
    """c = 0: the hints alone (spread as corrections of a zero prediction); c = 1: the corrections arm."""
    lightness = two_regions()
    plane, mask = one_hint(*lightness.shape)
    prediction = flat_prediction(*lightness.shape)
    uncertain = propagate.fused_planes(['confidence'], lightness, plane, mask, prediction,
                                       np.zeros(lightness.shape))['confidence']
    hints_alone = propagate.fused_planes(['corrections'], lightness, plane, mask, np.zeros_like(prediction))
    np.testing.assert_allclose(uncertain, hints_alone['corrections'], atol=1e-12)
    certain = propagate.fused_planes(['confidence', 'corrections'], lightness, plane, mask, prediction,
                                     np.ones(lightness.shape))
    np.testing.assert_allclose(certain['confidence'], certain['corrections'], atol=1e-12)
    assert np.abs(uncertain[:, :, 40:]).max() < 0.02    # across the edge: neither the hint nor the prediction


def test_confidence_is_one_for_a_certain_bin_and_zero_for_a_flat_distribution():
    k = 8
    probs = torch.full((k, 2, 2), 1.0 / k)
    probs[:, 0, 0] = 0
    probs[3, 0, 0] = 1
    c = propagate.confidence(probs)
    assert c[0, 0] == pytest.approx(1.0) and c[1, 1] == pytest.approx(0.0, abs=1e-6)
    from scipy.stats import entropy
    p = np.array([0.5, 0.25, 0.25, 0, 0, 0, 0, 0])
    probs[:, 0, 1] = torch.from_numpy(p)
    assert float(propagate.confidence(probs)[0, 1]) == pytest.approx(1 - entropy(p) / np.log(k), abs=1e-5)
    two_heads = torch.cat([probs, torch.full((k, 2, 2), 1.0 / k)])    # one-hot: hue head, chroma head
    assert float(propagate.confidence(two_heads, heads=2)[0, 0]) == pytest.approx(0.5, abs=1e-6)


def smooth_field_case(h=32, w=48, seed=3):
    """Two regions with texture, a smooth chroma field (the truth) and six one-pixel hints of it: at
    ``loo_side`` = h each hint is its own leave-one-out point."""
    rng = np.random.default_rng(seed)
    lightness = two_regions(h, w) + 0.05 * rng.random((h, w))
    yy, xx = np.mgrid[:h, :w]
    truth = np.stack([0.2 * xx / w - 0.1, 0.1 - 0.2 * yy / h])
    hinted = np.zeros((h, w), bool)
    for y, x in ((4, 4), (20, 10), (6, 30), (24, 40), (28, 20), (12, 44)):
        hinted[y, x] = True
    return rng, lightness, truth, hinted, truth * hinted, dict(config.HINT_PROPAGATION, loo_side=h)


def test_held_out_is_spread_from_every_other_hinted_pixel():
    """The Schur-complement leave-one-out against one solve per left-out pixel, with and without a leak."""
    rng = np.random.default_rng(0)
    lightness = two_regions(20, 30) + 0.1 * rng.random((20, 30))
    hinted = rng.random((20, 30)) < 0.05
    hinted[5:7, 5:7] = True                              # neighbours: each still predicted from the others
    values = rng.normal(size=(3, 20, 30))
    propagator = propagate.Propagator(lightness, 0.3)
    for leak in (0.0, 1e-3):
        got = propagator.held_out(hinted, values, leak)
        pixels = np.flatnonzero(hinted)
        assert got.shape == (3, pixels.size)
        for i, pixel in enumerate(pixels):
            rest = hinted.copy()
            rest.flat[pixel] = False
            expected = propagator.spread(rest, values, leak).reshape(3, -1)[:, pixel]
            np.testing.assert_allclose(got[:, i], expected, atol=1e-9)


def test_each_hint_is_one_point_at_its_centre_with_its_mean_colour():
    hinted = np.zeros((10, 40), bool)
    plane = np.zeros((2, 10, 40))
    hinted[2:5, 1:4] = True                               # a 3 x 3 square: its centre (3, 2)
    plane[:, 2:5, 1:4] = np.arange(9.0).reshape(3, 3)     # mean 4
    hinted[7, 30] = True
    plane[:, 7, 30] = [1.0, -1.0]
    points, values = propagate.hint_points(hinted, plane)
    assert sorted(zip(*np.nonzero(points))) == [(3, 2), (7, 30)]
    np.testing.assert_allclose(values[:, 3, 2], [4.0, 4.0])
    np.testing.assert_allclose(values[:, 7, 30], [1.0, -1.0])
    assert not values[:, ~points].any()


def test_the_shrinkage_weight_is_the_leave_one_out_least_squares_weight():
    """Against a brute-force search over a: each hint predicted by Levin from the others."""
    rng, lightness, truth, hinted, plane, settings = smooth_field_case()
    prediction = 1.6 * truth + rng.normal(0, 0.03, truth.shape)      # too saturated, noisy
    got = propagate.shrinkage_factor(lightness, plane, hinted, prediction, settings)

    def loo_error(a):
        total = 0.0
        for pixel in np.flatnonzero(hinted):
            rest = hinted.copy()
            rest.flat[pixel] = False
            guess = a * prediction + levin.levin_colorize(lightness, plane - a * prediction, rest)
            total += float(((guess - plane).reshape(2, -1)[:, pixel] ** 2).sum())
        return total
    grid = np.linspace(0, 1, 201)
    best = grid[np.argmin([loo_error(a) for a in grid])]
    assert 0 < got < 1 and abs(got - best) <= 0.005


def test_line_fit_is_the_clipped_least_squares_weight():
    rng = np.random.default_rng(0)
    start, end = rng.normal(size=(2, 50)), rng.normal(size=(2, 50))
    target = start + 0.3 * (end - start) + rng.normal(0, 0.05, (2, 50))
    grid = np.linspace(0, 1, 1001)
    brute = grid[np.argmin([((target - start - b * (end - start)) ** 2).sum() for b in grid])]
    assert abs(propagate.line_fit(target, start, end) - brute) <= 0.001
    assert propagate.line_fit(start - (end - start), start, end) == 0.0     # beyond start: clipped
    assert propagate.line_fit(end + (end - start), start, end) == 1.0       # beyond end: clipped
    assert propagate.line_fit(target, start, start) == 1.0                  # nothing to choose


def test_the_stacking_weight_is_the_leave_one_out_least_squares_blend_of_levin_and_confidence():
    """Against a brute-force search over b: each hint predicted from the others by (1 - b) levin + b confidence,
    both through fused_planes on the other hints."""
    rng, lightness, truth, hinted, plane, settings = smooth_field_case()
    prediction = 2.5 * truth + rng.normal(0, 0.03, truth.shape)      # far too saturated, noisy
    certainty = np.full(lightness.shape, 0.6)
    got = propagate.stacking_weight(lightness, plane, hinted, prediction, certainty, settings)
    arms = []
    for pixel in np.flatnonzero(hinted):
        rest = hinted.copy()
        rest.flat[pixel] = False
        fused = propagate.fused_planes(['levin', 'confidence'], lightness, plane, rest, prediction, certainty,
                                       settings)
        arms.append((pixel, fused['levin'].reshape(2, -1), fused['confidence'].reshape(2, -1)))
    grid = np.linspace(0, 1, 201)
    errors = [sum(float((((1 - b) * lev + b * conf - plane.reshape(2, -1))[:, pixel] ** 2).sum())
                  for pixel, lev, conf in arms) for b in grid]
    assert 0.1 < got < 0.9 and abs(got - grid[np.argmin(errors)]) <= 0.005
    fused = propagate.fused_planes(['levin', 'confidence', 'stacked'], lightness, plane, hinted, prediction,
                                   certainty, settings)
    np.testing.assert_allclose(fused['stacked'], (1 - got) * fused['levin'] + got * fused['confidence'])
    # a prediction that is the truth is trusted; one of the opposite colours gives way to Levin
    for scale, weight in ((1.0, 1.0), (-1.0, 0.0)):
        assert propagate.stacking_weight(lightness, plane, hinted, scale * truth, certainty, settings) == weight


def test_no_hinted_pixel_leaves_the_prediction_and_levin_grey():
    lightness = two_regions()
    prediction = flat_prediction(*lightness.shape)
    arms = propagate.fused_planes(config.HINT_METHODS, lightness, np.zeros((2,) + lightness.shape),
                                  np.zeros(lightness.shape, bool), prediction)
    for m in config.HINT_METHODS:
        np.testing.assert_array_equal(arms[m], np.zeros_like(prediction) if m == 'levin' else prediction)


def test_working_size_keeps_the_aspect_and_never_enlarges():
    assert propagate.working_size(3000, 4000, 256) == (256, 341)
    assert propagate.working_size(4000, 3000, 256) == (341, 256)
    assert propagate.working_size(100, 150, 256) == (100, 150)


# --- the library, the command line and the sweep with a lightness-only checkpoint ---------------

@pytest.fixture(scope='module')
def photo():
    import conftest
    return conftest.skimage_photo('chelsea', (120, 90))


def test_no_hints_is_bit_identical_to_the_automatic_colorization(plain_model, photo):
    colorizer = colorize.load_colorizer(plain_model)
    automatic = colorizer.colorize(photo)
    np.testing.assert_array_equal(colorizer.colorize(photo, hints=[]), automatic)
    transparent = np.zeros(photo.shape[:2] + (4,), np.uint8)
    for method in config.HINT_METHODS:
        np.testing.assert_array_equal(colorizer.colorize(photo, hints=transparent, hint_method=method), automatic)
    two = colorizer.colorize([photo, photo[::-1].copy()], hints=[None, []])
    np.testing.assert_array_equal(two[0], automatic)


def test_a_lightness_only_checkpoint_spreads_a_hint_over_its_region(plain_model):
    """A flat left half and a flat right half: one blue hint in the left half turns the left half blue far
    from the hint (not only its square); the right half stays the automatic colour; the square keeps the
    hint's hue and chroma."""
    height, width = 60, 80
    grey = np.full((height, width, 3), 90, np.uint8)
    grey[:, width // 2:] = 170
    colorizer = colorize.load_colorizer(plain_model)
    automatic = colorizer.colorize(grey)
    point = {'x': 10, 'y': 30, 'color': '#3050c0', 'size': 5}
    out = colorizer.colorize(grey, hints=[point], hint_method='corrections')
    hue, chroma, lightness = utils.rgb_to_hcl(torch.from_numpy(out.copy()).permute(2, 0, 1).float() / 255)
    want_hue, want_chroma, _ = utils.rgb_to_hcl(torch.tensor(hints.parse_color(point['color'])).float()
                                                .reshape(3, 1, 1) / 255)
    far = (slice(5, 55), slice(22, 36))            # >= 10 px from the hint's square, its own half
    hue_error = torch.remainder(hue[far] - want_hue.item() + 0.5, 1.0) - 0.5
    assert hue_error.abs().max() < 0.03 and (chroma[far] - want_chroma.item()).abs().max() < 0.03
    right, left = (slice(None), slice(width // 2 + 4, None)), (slice(None), slice(0, width // 2 - 4))
    moved = np.abs(out.astype(int) - automatic.astype(int)).sum(-1)
    assert moved[right].mean() < 0.1 * moved[left].mean(), (moved[right].mean(), moved[left].mean())
    square = (slice(28, 31), slice(8, 11))
    hue_error = torch.remainder(hue[square] - want_hue.item() + 0.5, 1.0) - 0.5
    assert hue_error.abs().max() < 0.02 and (chroma[square] - want_chroma.item()).abs().max() < 0.02
    _, _, grey_l = utils.rgb_to_hcl(torch.from_numpy(grey).permute(2, 0, 1).float() / 255)
    assert (lightness - grey_l).abs().max() <= 1 / 255 + 1e-6


def test_colorize_cli_takes_hints_with_a_lightness_only_checkpoint(plain_model, photo, tmp_path, capsys):
    import cli
    Image.fromarray(photo).save(tmp_path / 'photo.png')
    points = [{'x': 30, 'y': 20, 'color': '#10c030'}, {'x': 90, 'y': 70, 'color': '#2050e0', 'size': 6}]
    (tmp_path / 'hints.json').write_text(json.dumps({'points': points}))
    outputs = {}
    for method in (None,) + config.HINT_METHODS:
        out = tmp_path / str(method)
        argv = ['-m', plain_model, '--hints', str(tmp_path / 'hints.json'), '-o', str(out), str(tmp_path / 'photo.png')]
        assert cli.run_cli(colorize.main, argv + ([] if method is None else ['--hint-method', method])) == 0
        outputs[method] = np.asarray(Image.open(out / 'photo.png'))
    library = colorize.load_colorizer(plain_model).colorize(photo, hints=points)
    np.testing.assert_array_equal(outputs[None], library)
    np.testing.assert_array_equal(outputs[None], outputs[config.DEFAULTS['hint_method']])
    assert not np.array_equal(outputs['levin'], outputs['corrections'])
    status = cli.run_cli(colorize.main, ['-m', plain_model, '--hint-method', 'levin', '-o', str(tmp_path / 'x'),
                                         str(tmp_path / 'photo.png')])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == ['error: --hint-method levin needs --hints FILE'] and not (tmp_path / 'x').exists()


def test_checkpoints_record_the_hint_method_and_older_ones_get_the_default(plain_model, tmp_path):
    ckpt = torch.load(plain_model, map_location='cpu', weights_only=False)
    assert ckpt['config']['hint_method'] == config.DEFAULTS['hint_method']
    assert colorize.load_colorizer(plain_model).hint_method == config.DEFAULTS['hint_method']
    ckpt['config']['hint_method'] = 'levin'
    torch.save(ckpt, tmp_path / 'levin.pth.tar')
    assert colorize.load_colorizer(str(tmp_path / 'levin.pth.tar')).hint_method == 'levin'
    del ckpt['config']['hint_method']
    torch.save(ckpt, tmp_path / 'old.pth.tar')
    assert colorize.load_colorizer(str(tmp_path / 'old.pth.tar')).hint_method == config.DEFAULTS['hint_method']


def test_the_sweep_scores_every_arm_and_default_for_a_lightness_only_checkpoint(plain_model, tmp_path):
    import conftest
    import evaluate
    folder = tmp_path / 'photos'
    conftest.write_photos(str(folder), names=('astronaut', 'coffee'), size=(96, 72))
    out = tmp_path / 'eval'
    assert evaluate.main(['-m', plain_model, '--device', 'cpu', '-o', str(out), '--hint-points', '0,2,10',
                          '-d', str(folder)]) == 0
    result = json.loads((out / 'hints.json').read_text())
    assert set(result) == {'model', 'default', 'grayscale'} | set(config.HINT_METHODS)
    metrics = json.loads((out / 'metrics.json').read_text())
    for method in set(result) - {'levin', 'grayscale'}:     # 0 points: the automatic model's figures exactly
        assert result[method]['0']['psnr'] == pytest.approx(metrics['model']['psnr'], abs=1e-9), method
    assert result['levin']['0'] == result['grayscale']['0']
    assert result['default'] == result[config.DEFAULTS['hint_method']]
    assert result['levin']['10']['psnr'] > result['levin']['0']['psnr']
    # a checkpoint whose method is levin: with 0 points its default is what colorize.py gives, the automatic colours
    import models
    levin_model = str(tmp_path / 'levin.pth.tar')
    ckpt = models.load_checkpoint(plain_model)
    torch.save(dict(ckpt, config=dict(ckpt['config'], hint_method='levin')), levin_model)
    assert evaluate.main(['-m', levin_model, '--device', 'cpu', '-o', str(tmp_path / 'levin'), '--hint-points', '0,2',
                          '-d', str(folder)]) == 0
    levin_result = json.loads((tmp_path / 'levin' / 'hints.json').read_text())
    assert levin_result['default']['0'] == result['model']['0'] != levin_result['levin']['0']
    assert levin_result['default']['2'] == levin_result['levin']['2']


def test_a_propagator_is_reused_for_the_same_lightness_and_a_factorisation_for_the_same_hints(monkeypatch):
    """The web page's re-solves: same photo -> same affinities; same hinted set (a recoloured hint) -> no new
    factorisation, and the answer is the same as a fresh solve's."""
    lightness = two_regions() + 0.01 * np.random.default_rng(1).random((40, 60))
    plane, mask = one_hint(40, 60)
    fresh = propagate.Propagator(lightness).spread(mask, plane)
    first = propagate.Propagator.of(lightness)
    assert propagate.Propagator.of(lightness.copy()) is first
    assert propagate.Propagator.of(lightness + 1e-9) is not first
    calls = []
    factorize = levin.GridLU
    monkeypatch.setattr(levin, 'GridLU', lambda *args: calls.append(1) or factorize(*args))
    a = first.spread(mask, plane)
    b = first.spread(mask, 2 * plane)
    assert len(calls) == 1
    np.testing.assert_allclose(b, 2 * a, atol=1e-12)
    np.testing.assert_allclose(a, fresh, atol=1e-12)
    first.spread(mask, plane, leak=0.01)
    assert len(calls) == 2
