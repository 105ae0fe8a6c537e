"""Colorization metrics of utils (PSNR, ab error / RMSE, cumulative-error AuC, colourfulness)
against independent computations: scikit-image, a direct sRGB -> CIE Lab formula, plain loops."""
import json
import math
import statistics

import numpy as np
import pytest
import skimage.data
from skimage.metrics import peak_signal_noise_ratio

import utils


def random_image(h=24, w=31, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=(h, w, 3), dtype=np.uint8)


def chelsea_small():
    return skimage.data.chelsea()[::6, ::6].copy()


def gray_of(rgb):
    """L = (max + min) / 2 in all three channels (the grayscale baseline)."""
    rgb = rgb.astype(np.float64)
    l = np.round((rgb.max(-1) + rgb.min(-1)) / 2.0).astype(np.uint8)
    return np.repeat(l[..., None], 3, -1)


def lab_reference(rgb_uint8):
    """sRGB (D65, 2 degree observer) -> CIE Lab, written out from the standard's formulas."""
    c = rgb_uint8.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.412453, 0.357580, 0.180423],
                  [0.212671, 0.715160, 0.072169],
                  [0.019334, 0.119193, 0.950227]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    delta = 6.0 / 29.0
    f = np.where(xyz > delta ** 3, np.cbrt(xyz), xyz / (3 * delta ** 2) + 4.0 / 29.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def auc_by_loop(errors, weights=None):
    """Share of pixels with error <= t for t = 0..150, trapezoidal area / 150, in %."""
    errors = np.ravel(errors)
    weights = np.ones_like(errors) if weights is None else np.ravel(weights)
    thresholds = np.arange(151)
    share = [weights[errors <= t].sum() / weights.sum() for t in thresholds]
    return 100.0 * np.trapezoid(share, thresholds) / 150.0


# --- PSNR ---------------------------------------------------------------------------

@pytest.mark.parametrize('seed', [0, 1])
def test_psnr_matches_skimage(seed):
    truth, test = random_image(seed=seed), random_image(seed=seed + 10)
    assert utils.psnr(truth, test) == pytest.approx(peak_signal_noise_ratio(truth, test, data_range=255))
    assert utils.capped_psnr(truth, test) == pytest.approx(peak_signal_noise_ratio(truth, test, data_range=255))
    cat = chelsea_small()
    assert utils.psnr(cat, gray_of(cat)) == pytest.approx(peak_signal_noise_ratio(cat, gray_of(cat), data_range=255))


def test_identical_images_give_infinite_psnr_capped_for_averaging():
    cat = chelsea_small()
    with np.errstate(divide='ignore'):
        assert peak_signal_noise_ratio(cat, cat, data_range=255) == math.inf
    assert utils.psnr(cat, cat) == math.inf
    assert utils.capped_psnr(cat, cat) == utils.PSNR_CAP_DB
    one_level_off = cat.astype(np.int16) + 1
    assert utils.capped_psnr(cat, np.clip(one_level_off, 0, 255)) < utils.PSNR_CAP_DB


# --- Lab, ab error, RMSE -----------------------------------------------------------

def test_ab_channels_match_the_lab_formula():
    for rgb in (random_image(seed=2), chelsea_small(),
                np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]], np.uint8)):
        np.testing.assert_allclose(utils.ab_channels(rgb), lab_reference(rgb)[..., 1:], atol=0.02)
    # known values: pure sRGB red is about (53.2, 80.1, 67.2) in Lab
    np.testing.assert_allclose(utils.ab_channels(np.array([[[255, 0, 0]]], np.uint8))[0, 0], [80.1, 67.2], atol=0.1)


def test_ab_error_and_rmse():
    a, b = random_image(seed=3), random_image(seed=4)
    ab_a, ab_b = lab_reference(a)[..., 1:], lab_reference(b)[..., 1:]
    errors = utils.ab_error(utils.ab_channels(a), utils.ab_channels(b))
    np.testing.assert_allclose(errors, np.linalg.norm(ab_a - ab_b, axis=-1), atol=0.05)
    assert utils.rmse(errors) == pytest.approx(np.linalg.norm(errors) / math.sqrt(errors.size))
    assert utils.rmse(utils.ab_error(ab_a, ab_a)) == 0.0


# --- AuC -------------------------------------------------------------------------

@pytest.mark.parametrize('scale', [5.0, 40.0, 120.0])
def test_auc_matches_a_loop_over_thresholds(scale):
    errors = np.abs(np.random.RandomState(5).normal(0, scale, size=(17, 23)))
    errors[0, :5] = [0.0, 3.0, 150.0, 150.5, 7.0]  # on and beside thresholds
    assert utils.cumulative_error_auc(errors) == pytest.approx(auc_by_loop(errors), abs=1e-9)
    weights = np.random.RandomState(6).rand(17, 23)
    assert utils.cumulative_error_auc(errors, weights) == pytest.approx(auc_by_loop(errors, weights), abs=1e-9)


def test_auc_edge_values():
    assert utils.cumulative_error_auc(np.zeros((4, 4))) == pytest.approx(100.0)
    assert utils.cumulative_error_auc(np.full((4, 4), 151.0)) == 0.0
    # a constant error of 75: the curve steps from 0 (t = 74) to 1 (t = 75): trapezoids 0.5 + 75 x 1
    assert utils.cumulative_error_auc(np.full((3, 3), 75.0)) == pytest.approx(100 * 75.5 / 150)


def test_inverse_frequency_weights_give_every_occupied_ab_cell_the_same_weight():
    ab = lab_reference(chelsea_small())[..., 1:]
    weights = utils.inverse_frequency_weights(ab)
    cells = [tuple(c) for c in np.floor(ab / 10.0).astype(int).reshape(-1, 2)]
    totals = {}
    for cell, w in zip(cells, weights.ravel()):
        totals[cell] = totals.get(cell, 0.0) + w
    assert weights.shape == ab.shape[:2] and weights.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(list(totals.values()), weights.size / len(totals))


def test_rebalancing_makes_errors_on_rare_colours_count():
    """90% grey pixels scored exactly, the 10% red ones wrong: rebalancing lowers the AuC."""
    truth = np.full((10, 10, 3), 128, np.uint8)
    truth[:1] = (220, 30, 30)
    output = truth.copy()
    output[:1] = (30, 30, 220)
    scores = utils.colorization_metrics(truth, output)
    assert scores['auc'] > 85.0 and scores['auc_rebal'] < 60.0   # 90.57 and 52.83 (float64, on any CPU)
    assert scores['auc_rebal'] == pytest.approx(
        auc_by_loop(utils.ab_error(utils.ab_channels(truth), utils.ab_channels(output)),
                    utils.inverse_frequency_weights(utils.ab_channels(truth))))


# --- colourfulness ---------------------------------------------------------------

def colorfulness_by_pixels(rgb):
    """Hasler & Suesstrunk with Python's statistics module, pixel by pixel."""
    rg, yb = [], []
    for r, g, b in rgb.reshape(-1, 3).astype(float).tolist():
        rg.append(r - g)
        yb.append(0.5 * (r + g) - b)
    sigma = math.sqrt(statistics.pvariance(rg) + statistics.pvariance(yb))
    mu = math.sqrt(statistics.fmean(rg) ** 2 + statistics.fmean(yb) ** 2)
    return sigma + 0.3 * mu


def test_colorfulness_matches_the_published_formula():
    for rgb in (random_image(8, 9, seed=7), chelsea_small()[:20, :20]):
        assert utils.colorfulness(rgb) == pytest.approx(colorfulness_by_pixels(rgb), rel=1e-9)
    assert utils.colorfulness(gray_of(chelsea_small())) == 0.0
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    assert utils.colorfulness(red) == pytest.approx(0.3 * math.hypot(255.0, 127.5))


# --- all together ----------------------------------------------------------------

def test_an_image_scored_against_itself():
    cat = chelsea_small()
    scores = utils.colorization_metrics(cat, cat)
    assert set(scores) == set(utils.COLORIZATION_METRICS)
    assert scores['psnr'] == utils.PSNR_CAP_DB and scores['rmse'] == 0.0
    assert scores['auc'] == pytest.approx(100.0) and scores['auc_rebal'] == pytest.approx(100.0)
    assert scores['colorfulness'] == pytest.approx(utils.colorfulness(cat))
    json.dumps(scores, allow_nan=False)  # finite, so metrics.json stays valid JSON


def test_grayscale_version_scores_below_the_original():
    cat = chelsea_small()
    gray = gray_of(cat)
    scores = utils.colorization_metrics(cat, gray)
    assert scores['psnr'] == pytest.approx(peak_signal_noise_ratio(cat, gray, data_range=255))
    errors = np.linalg.norm(lab_reference(cat)[..., 1:] - lab_reference(gray)[..., 1:], axis=-1)
    assert scores['rmse'] == pytest.approx(np.sqrt(np.mean(errors ** 2)), rel=1e-3)
    assert scores['auc'] == pytest.approx(auc_by_loop(errors), abs=0.1)
    assert scores['auc'] < 100.0 and scores['colorfulness'] == 0.0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match='differ in shape'):
        utils.colorization_metrics(random_image(4, 5), random_image(5, 4))
