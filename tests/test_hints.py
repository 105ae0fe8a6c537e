"""Colour hints: the training sampler's statistics, hint files (JSON and PNG) and their maps, the
evaluation sweep's points, and the 1 -> 4 input-channel extension of a network."""
import json
import math

import numpy as np
import pytest
import scipy.stats
import torch
from PIL import Image

import hints
import models
import utils


def random_plane(batch, height, width, seed=0):
    """A chroma plane ``[B, 2, H, W]`` of random colours (|ab| <= 1), as from rgb_to_hcl."""
    rgb = torch.rand((batch, 3, height, width), generator=torch.Generator().manual_seed(seed))
    hue, chroma, _ = utils.rgb_to_hcl(rgb)
    return utils.hue_chroma_to_plane(hue, chroma)


def sample(plane, seed=0, none_share=1 / 8, max_points=50, patch=(1, 9), positions='gaussian', sigma=0.25):
    return hints.sample_training_hints(plane, hints.step_generator('cpu', seed, 0), none_share, max_points,
                                       list(patch), positions, sigma)


# --------------------------------------------------------------------------
# the training sampler
# --------------------------------------------------------------------------

def test_point_counts_follow_the_geometric_distribution():
    """P(N = k) = p (1 - p)^k: scipy's geom (support from 1) of N + 1; a chi-square test over 0..15+."""
    p, draws = 1 / 8, 40000
    counts = hints.geometric_counts(torch.Generator().manual_seed(1), draws, p, 50, 'cpu').numpy()
    edges = np.arange(17)
    observed = np.array([(counts == k).sum() for k in edges[:-1]] + [(counts >= 16).sum()])
    expected_p = np.append(scipy.stats.geom.pmf(edges[:-1] + 1, p), scipy.stats.geom.sf(16, p))
    assert abs(observed[0] / draws - p) < 4 * math.sqrt(p * (1 - p) / draws)
    chi2 = ((observed - draws * expected_p) ** 2 / (draws * expected_p)).sum()
    assert chi2 < scipy.stats.chi2.ppf(0.999, len(observed) - 1)
    assert counts.max() <= 50


def test_about_one_image_in_eight_trains_without_hints():
    masks = sample(random_plane(3000, 16, 16), seed=3)[1]
    empty = (masks.sum((1, 2, 3)) == 0).float().mean().item()
    assert abs(empty - 1 / 8) < 4 * math.sqrt(1 / 8 * 7 / 8 / 3000)


def test_one_point_is_a_square_of_its_patch_mean_and_the_mask_is_exactly_there():
    plane = random_plane(400, 24, 20, seed=5)
    hint_plane, mask = sample(plane, seed=7, none_share=1e-9, max_points=1, patch=(1, 9))
    sides = []
    for i in range(plane.shape[0]):
        ys, xs = np.nonzero(mask[i, 0].numpy())
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        assert y1 - y0 == x1 - x0 and len(ys) == (y1 - y0) ** 2       # one filled square, nothing else
        sides.append(y1 - y0)
        expected = plane[i, :, y0:y1, x0:x1].numpy().reshape(2, -1).mean(1)
        inside = hint_plane[i, :, y0:y1, x0:x1].numpy().reshape(2, -1)
        np.testing.assert_allclose(inside, np.repeat(expected[:, None], inside.shape[1], 1), atol=1e-5)
        assert not hint_plane[i][:, mask[i, 0] == 0].any()             # zero where there is no hint
    histogram = np.bincount(sides, minlength=10)[1:]
    assert scipy.stats.chisquare(histogram).pvalue > 1e-3              # sides uniform over 1..9


def test_overlapping_squares_are_painted_like_a_numpy_reference():
    colours = torch.tensor([[[0.5, 0.0], [0.0, -0.5], [0.1, 0.2]]])
    y0, x0, side = torch.tensor([[1, 3, 10]]), torch.tensor([[2, 4, 0]]), torch.tensor([[4, 3, 2]])
    plane, mask = hints.paint_squares(colours, y0, x0, side, torch.tensor([2]), 12, 12)
    total, cover = np.zeros((2, 12, 12)), np.zeros((12, 12))
    for n in range(2):                                                  # the third square is beyond count
        y, x, s = int(y0[0, n]), int(x0[0, n]), int(side[0, n])
        total[:, y:y + s, x:x + s] += colours[0, n].numpy()[:, None, None]
        cover[y:y + s, x:x + s] += 1
    np.testing.assert_allclose(plane[0].numpy(), total / np.maximum(cover, 1), atol=1e-6)
    np.testing.assert_array_equal(mask[0, 0].numpy(), cover > 0)


def test_patch_means_match_numpy():
    plane = random_plane(2, 9, 11, seed=2)
    y0, x0, side = torch.tensor([[0, 4], [7, 2]]), torch.tensor([[0, 6], [9, 3]]), torch.tensor([[9, 3], [2, 1]])
    means = hints.patch_means(plane, y0, x0, side)
    for b in range(2):
        for n in range(2):
            y, x, s = int(y0[b, n]), int(x0[b, n]), int(side[b, n])
            np.testing.assert_allclose(means[b, n].numpy(), plane[b, :, y:y + s, x:x + s].mean((1, 2)).numpy(),
                                       atol=1e-6)


def test_gaussian_positions_are_centre_biased_and_uniform_ones_are_not():
    plane = random_plane(1500, 32, 32)

    def mean_distance(positions):
        mask = sample(plane, seed=4, none_share=1e-9, max_points=1, patch=(1, 1), positions=positions)[1]
        ys, xs = np.nonzero(mask[:, 0].numpy())[1:]
        return np.hypot(ys + 0.5 - 16, xs + 0.5 - 16).mean()
    # uniform over a 32 x 32 square: mean distance from the centre ~ 0.383 x 32 = 12.2;
    # a gaussian of std 8 px per axis: Rayleigh mean 8 sqrt(pi / 2) = 10.0
    assert abs(mean_distance('uniform') - 0.3826 * 32) < 0.6
    assert abs(mean_distance('gaussian') - 8 * math.sqrt(math.pi / 2)) < 0.6


def test_the_sampler_is_deterministic_by_seed_and_step():
    plane = random_plane(8, 32, 32)
    a = hints.sample_training_hints(plane, hints.step_generator('cpu', 0, 5), 1 / 8, 50, [1, 9], 'gaussian', 0.25)
    b = hints.sample_training_hints(plane, hints.step_generator('cpu', 0, 5), 1 / 8, 50, [1, 9], 'gaussian', 0.25)
    c = hints.sample_training_hints(plane, hints.step_generator('cpu', 0, 6), 1 / 8, 50, [1, 9], 'gaussian', 0.25)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


# --------------------------------------------------------------------------
# hint files and maps
# --------------------------------------------------------------------------

POINTS = [{'x': 10, 'y': 5, 'color': '#3b7dd8', 'size': 5}, {'x': 30, 'y': 20, 'color': '#e0301e', 'size': 3}]


def test_a_hint_json_and_a_hint_png_give_the_same_maps(tmp_path):
    width, height = 40, 28
    json_path = tmp_path / 'hints.json'
    json_path.write_text(json.dumps({'points': POINTS}))
    rgba = np.zeros((height, width, 4), np.uint8)                       # the same squares, painted
    rgba[3:8, 8:13] = (0x3b, 0x7d, 0xd8, 255)
    rgba[19:22, 29:32] = (0xe0, 0x30, 0x1e, 255)
    png_path = tmp_path / 'hints.png'
    Image.fromarray(rgba, 'RGBA').save(png_path)
    from_json = hints.hint_maps(hints.read_hints_file(str(json_path), width, height), width, height)
    from_png = hints.hint_maps(hints.read_hints_file(str(png_path), width, height), width, height)
    np.testing.assert_array_equal(from_json[1], from_png[1])
    np.testing.assert_allclose(from_json[0], from_png[0], atol=1e-6)
    assert from_json[1].sum() == 25 + 9
    # the colour is the hint's hue and chroma (skimage's HSV: C = V * S), not its lightness
    hsv = __import__('skimage.color', fromlist=['rgb2hsv']).rgb2hsv(np.array([[[0x3b, 0x7d, 0xd8]]], np.uint8))[0, 0]
    chroma, angle = hsv[2] * hsv[1], 2 * math.pi * hsv[0]
    np.testing.assert_allclose(from_json[0][:, 5, 10], [chroma * math.cos(angle), chroma * math.sin(angle)],
                               atol=1e-6)


@pytest.mark.parametrize('obj, message', [
    ({'points': [{'x': 40, 'y': 5, 'color': '#3b7dd8'}]}, 'outside the photo'),
    ({'points': [{'x': 3, 'y': -1, 'color': '#3b7dd8'}]}, 'outside the photo'),
    ({'points': [{'x': 3, 'y': 4, 'color': 'blueish'}]}, 'is not a colour'),
    ({'points': [{'x': 3, 'y': 4}]}, 'has no "color"'),
    ({'points': [{'x': 3.5, 'y': 4, 'color': '#fff'}]}, 'whole number'),
    ({'pts': []}, 'a hint file must be'),
    ({'points': [{'x': 3, 'y': 4, 'color': '#fff', 'size': 0}]}, 'at least 1'),
])
def test_bad_hints_are_one_clear_error(obj, message):
    with pytest.raises(hints.HintError, match=message):
        hints.points_from_json(obj, 40, 28)


def test_a_hint_image_of_another_size_or_without_transparency_is_refused(tmp_path):
    Image.new('RGBA', (41, 28)).save(tmp_path / 'big.png')
    Image.new('RGB', (40, 28)).save(tmp_path / 'opaque.png')
    (tmp_path / 'broken.json').write_text('{"points": [')
    with pytest.raises(hints.HintError, match='41 x 28 pixels but the photo is 40 x 28'):
        hints.read_hints_file(str(tmp_path / 'big.png'), 40, 28)
    with pytest.raises(hints.HintError, match='no transparency'):
        hints.read_hints_file(str(tmp_path / 'opaque.png'), 40, 28)
    with pytest.raises(hints.HintError, match='neither JSON nor a PNG'):
        hints.read_hints_file(str(tmp_path / 'broken.json'), 40, 28)


def test_a_point_smaller_than_a_network_pixel_keeps_its_colour_at_the_network_size():
    width, height = 400, 300
    plane, mask = hints.hint_maps([{'x': 201, 'y': 150, 'color': '#20c020', 'size': 2}], width, height)
    small_plane, small_mask = hints.reduce_hint_maps(torch.from_numpy(plane)[None],
                                                     torch.from_numpy(mask)[None, None], (24, 32))
    assert 1 <= small_mask.sum() <= 4
    hinted = small_plane[0][:, small_mask[0, 0] > 0]
    np.testing.assert_allclose(hinted.numpy(), np.repeat(plane[:, 150, 201][:, None], hinted.shape[1], 1),
                               atol=1e-6)
    assert not small_plane[0][:, small_mask[0, 0] == 0].any()


def test_sweep_points_are_zhangs_test_patches():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (512, 768, 3), dtype=np.uint8)
    points = hints.sample_sweep_points(photo, 10, seed=3)
    assert points == hints.sample_sweep_points(photo, 10, seed=3)         # seeded per photo
    assert len(points) == 10 and all(p['size'] == 12 for p in points)    # 6 px at 256 -> 12 at 512
    for p in points:
        x0, y0, x1, y1 = hints.point_box(p, 768, 512)
        assert (x1 - x0, y1 - y0) == (12, 12)
        hsv = __import__('skimage.color', fromlist=['rgb2hsv']).rgb2hsv(photo[y0:y1, x0:x1]).reshape(-1, 3)
        chroma = hsv[:, 2] * hsv[:, 1]
        expected = [np.mean(chroma * np.cos(2 * np.pi * hsv[:, 0])), np.mean(chroma * np.sin(2 * np.pi * hsv[:, 0]))]
        np.testing.assert_allclose(p['ab'], expected, atol=1e-5)


def test_the_sweep_seeds_its_points_by_photo_and_count_and_every_method_sees_them(monkeypatch):
    """docs/hints.md's protocol, through hint_sweep.score_photo as evaluate.py calls it: a photo's
    points for N are one draw per (photo, N), which every method is scored on, seeded by (its file
    name, N): the same in every run and wherever its folder is, different for another photo (even
    with the same pixels) and for another N (the 5 points of N = 5 do not start with the 2 of N = 2)."""
    import colorize
    import hint_sweep
    import targets
    bins = targets.GMMBins(np.full(4, 0.25), np.array([[h, 0.4] for h in (0.0, 0.25, 0.5, 0.75)]),
                           np.tile(np.eye(2) * 0.05 ** 2, (4, 1, 1)))
    torch.manual_seed(0)
    network = models.build_model('fcn32s', n_class=4, fc_channels=8, in_channels=4).eval()
    colorizer = colorize.Colorizer(network, targets.ColorEncoder(bins, mean_l=0.5), (64, 64), 'cpu')
    photo = np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8)
    counts = (1, 2, 5, 10)
    draws, sample = [], hints.sample_sweep_points

    def recorded(rgb, count, seed):
        draws.append(sample(rgb, count, seed))
        return draws[-1]
    monkeypatch.setattr(hints, 'sample_sweep_points', recorded)

    def sweep(name):
        draws.clear()
        scores, _, drawn = hint_sweep.score_photo(colorizer, photo, name, counts)
        assert draws == [drawn[n] for n in counts]          # one draw per N: every method's points
        assert {'model', 'levin'} <= set(scores[counts[0]])
        assert [len(drawn[n]) for n in counts] == list(counts)
        return {n: [(p['x'], p['y']) for p in drawn[n]] for n in counts}

    cat = sweep('photos/cat.png')
    assert cat == sweep('photos/cat.png') == sweep('/elsewhere/cat.png')   # by file name: every run, any root
    dog = sweep('photos/dog.png')
    for n in counts:
        assert cat[n] != dog[n], 'the %d points of cat.png and dog.png are the same' % n
    for small, large in zip(counts, counts[1:]):
        assert cat[large][:small] != cat[small], 'N = %d starts with the points of N = %d' % (large, small)
    assert len({hints.sweep_seed(name, n) for name in ('cat.png', 'dog.png') for n in counts}) == 2 * len(counts)


# --------------------------------------------------------------------------
# the network's input
# --------------------------------------------------------------------------

@pytest.mark.parametrize('arch', ['fcn32s', 'fcn16s', 'fcn8s'])
def test_a_hint_model_started_from_a_lightness_model_computes_what_it_computed(arch):
    torch.manual_seed(0)
    source_arch = {'fcn32s': 'fcn32s', 'fcn16s': 'fcn32s', 'fcn8s': 'fcn16s'}[arch]
    grey = models.build_model(source_arch, n_class=6, fc_channels=16)
    for m in grey.modules():                                            # non-trivial statistics and heads
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
        if isinstance(m, torch.nn.Conv2d) and m.weight.abs().sum() == 0:
            m.weight.data.normal_(0, 0.01)
    hinted = models.build_model(arch, n_class=6, fc_channels=16, in_channels=4)
    if arch == source_arch:
        hinted.copy_params_from(grey)
    else:
        getattr(hinted, 'copy_params_from_' + source_arch)(grey)
    grey.eval()
    hinted.eval()
    lightness = torch.rand(2, 1, 64, 64) - 0.5
    if arch != source_arch:                                             # the new skip head starts at zero
        reference = models.build_model(arch, n_class=6, fc_channels=16)
        getattr(reference, 'copy_params_from_' + source_arch)(grey)
        grey = reference.eval()
    with torch.no_grad():
        expected = grey(lightness)
        no_hints = hinted(hints.network_input(lightness, torch.zeros(2, 2, 64, 64), torch.zeros(2, 1, 64, 64)))
        some_hints = hinted(hints.network_input(lightness, torch.rand(2, 2, 64, 64), torch.ones(2, 1, 64, 64)))
    assert expected.abs().max() > 0
    torch.testing.assert_close(no_hints, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(some_hints, expected, rtol=1e-5, atol=1e-6)  # new channels start at zero


def test_a_hint_model_cannot_initialise_a_lightness_model():
    with pytest.raises(ValueError, match='4-channel'):
        models.build_model('fcn32s', n_class=4, fc_channels=8).copy_params_from(
            models.build_model('fcn32s', n_class=4, fc_channels=8, in_channels=4))
