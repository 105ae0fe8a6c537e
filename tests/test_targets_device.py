"""The device-side target encoder against its CPU references (issue 3).

GMM posteriors vs scikit-learn's ``predict_proba`` (float32, grey pixels and
the hue seam included), uniform-grid posteriors, the float32 low-pass vs the
scikit-image definition, batch independence of ``ColorEncoder.encode`` and its
behaviour under CPU autocast.  Speed is measured in bench/, not here.
"""
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color, data, filters, transform
from scipy.optimize import lsq_linear
from sklearn.mixture import GaussianMixture

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import targets  # noqa: E402
import utils  # noqa: E402

POSTERIOR_ATOL = 1e-4   # issue 3: posteriors equal predict_proba within 1e-4 in float32
LOWPASS_ATOL = 1e-5     # float32 low-pass vs the float64 scikit-image definition
BF16_SUM_ATOL = 2e-2    # K bf16 probabilities (8-bit mantissa) summed


def photo(name, size):
    """uint8 ``[H, W, 3]`` scikit-image photo resized to ``size`` = (width, height)."""
    return np.asarray(Image.fromarray(getattr(data, name)()[..., :3]).resize(size, Image.BILINEAR))


def photo_batch(names=('astronaut', 'coffee', 'chelsea'), size=(45, 37)):
    """uint8 ``[B, 3, H, W]`` of bundled photos at an odd size."""
    return torch.from_numpy(np.stack([photo(n, size) for n in names])).permute(0, 3, 1, 2).contiguous()


def skimage_hue_chroma(rgb_uint8):
    """(H, C) ``[H, W]`` float64 by scikit-image: rgb2hsv, C = V * S."""
    hsv = color.rgb2hsv(rgb_uint8)
    return hsv[..., 0], hsv[..., 1] * hsv[..., 2]


def skimage_lowpass(x, s):
    """The CPU definition of the target low-pass: blur, shrink by s, bilinear back (float64)."""
    blurred = filters.gaussian(x, sigma=s, mode='nearest', truncate=4.0, preserve_range=True)
    small = transform.rescale(blurred, 1.0 / s, order=1, anti_aliasing=False, mode='edge')
    return transform.resize(small, x.shape, order=1, anti_aliasing=False, mode='edge')


@pytest.fixture(scope='module')
def photo_gmm():
    """(sklearn GMM, GMMBins of it, test pixels [N, 2] float32) from the astronaut photo.

    The test pixels hold every grey pixel (C = 0), every hue within 0.02 of the
    seam (near 0 and near 1) and a random share of the rest, plus exact corner
    cases; the GMM is fitted on the same photo, so it has sharp components there.
    """
    hue, chroma = (a.ravel() for a in skimage_hue_chroma(photo('astronaut', (128, 128))))
    hc = np.stack([hue, chroma], 1)
    rng = np.random.RandomState(0)
    grey, low, high = chroma == 0, (hue < 0.02) & (chroma > 0), hue > 0.98
    assert grey.sum() >= 10 and low.sum() >= 10 and high.sum() >= 10   # the photo has all three
    gmm = GaussianMixture(16, covariance_type='full', init_params='kmeans', random_state=0)
    gmm.fit(hc[rng.choice(len(hc), 4000, replace=False)])
    corners = [[0.0, 0.0], [0.0, 1.0], [0.9999, 0.5], [0.0001, 0.5], [0.5, 0.0]]
    test = np.concatenate([hc[grey], hc[low], hc[high], hc[rng.choice(len(hc), 2000, replace=False)], corners])
    bins = targets.GMMBins(gmm.weights_, gmm.means_, gmm.covariances_)
    return gmm, bins, test.astype(np.float32)


def test_gmm_posteriors_equal_predict_proba_in_float32(photo_gmm):
    gmm, bins, hc = photo_gmm
    hue = torch.from_numpy(hc[:, 0]).view(1, -1, 1)
    chroma = torch.from_numpy(hc[:, 1]).view(1, -1, 1)
    post = bins.encode(hue, chroma)
    assert post.shape == (1, 16, len(hc), 1) and post.dtype == torch.float32
    ours = post[0, :, :, 0].T.double().numpy()
    ref = gmm.predict_proba(hc.astype(np.float64))   # the same float32 pixels, in float64
    assert np.abs(ours - ref).max() <= POSTERIOR_ATOL
    # the seam is not smoothed over: the GMM lives in plain (H, C), as predict_proba
    near0, near1 = ref[-2].argmax(), ref[-3].argmax()
    assert ours[-2].argmax() == near0 and ours[-3].argmax() == near1


def test_gmm_posteriors_keep_the_shape_of_image_batches(photo_gmm):
    gmm, bins, _ = photo_gmm
    hue, chroma = skimage_hue_chroma(photo('coffee', (21, 13)))
    h = torch.from_numpy(np.stack([hue, hue[::-1]])).float()
    c = torch.from_numpy(np.stack([chroma, chroma[::-1]])).float()
    post = bins.encode(h, c)
    assert post.shape == (2, 16, 13, 21)
    for b in range(2):
        pixels = np.stack([h[b].double().numpy().ravel(), c[b].double().numpy().ravel()], 1)
        ref = gmm.predict_proba(pixels).T.reshape(16, 13, 21)
        assert np.abs(post[b].double().numpy() - ref).max() <= POSTERIOR_ATOL


def test_uniform_grid_posteriors_sum_to_one_and_peak_at_the_nearest_centre():
    bins = targets.GMMBins.uniform_grid(25)
    rng = np.random.RandomState(3)
    hc = np.concatenate([rng.rand(3000, 2), bins.means + 0.01 * rng.randn(25, 2)]).clip(0, 1)
    post = bins.encode(torch.from_numpy(hc[:, 0]).float().view(1, -1, 1),
                       torch.from_numpy(hc[:, 1]).float().view(1, -1, 1))[0, :, :, 0].T.numpy()
    np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-5)
    dist = np.linalg.norm(hc[:, None, :] - bins.means[None, :, :], axis=2)
    order = np.sort(dist, axis=1)
    clear = order[:, 1] - order[:, 0] > 1e-3        # leave out near-ties between two centres
    assert clear.sum() > 2500
    np.testing.assert_array_equal(post[clear].argmax(1), dist[clear].argmin(1))


def test_float32_lowpass_of_a_photo_equals_the_skimage_definition_on_an_odd_size():
    rgb = photo_batch(('astronaut', 'rocket'), size=(61, 45))
    hue, chroma, _ = utils.rgb_to_hcl(rgb.float() / 255.0)
    plane = utils.hue_chroma_to_plane(hue, chroma)                       # [2, 2, 45, 61] float32
    out = utils.lowpass(plane, 4)
    assert out.dtype == torch.float32 and out.shape == plane.shape
    ref = np.stack([[skimage_lowpass(p, 4) for p in img] for img in plane.double().numpy()])
    assert np.abs(out.double().numpy() - ref).max() <= LOWPASS_ATOL
    # and the (H, C) the encoder uses are those of the low-passed plane
    h_lp, c_lp = utils.lowpass_hue_chroma(hue, chroma, 4)
    ref_c = np.hypot(ref[:, 0], ref[:, 1])
    ref_h = np.arctan2(ref[:, 1], ref[:, 0]) / (2 * np.pi) % 1.0
    assert np.abs(c_lp.double().numpy() - ref_c).max() <= LOWPASS_ATOL
    coloured = ref_c > 0.02
    d = np.abs(h_lp.double().numpy() - ref_h)[coloured]
    assert np.minimum(d, 1 - d).max() <= 10 * LOWPASS_ATOL   # hue = angle: error / chroma


def test_encode_of_a_batch_equals_encode_of_each_image(photo_gmm):
    _, bins, _ = photo_gmm
    encoder = targets.ColorEncoder(bins, mean_l=0.45, img_lowpass=4)
    rgb = photo_batch()
    net_input, target = encoder.encode(rgb)
    assert net_input.shape == (3, 1, 37, 45) and target.shape == (3, 16, 37, 45)
    for b in range(3):
        one_input, one_target = encoder.encode(rgb[b:b + 1])
        torch.testing.assert_close(one_input, net_input[b:b + 1], atol=0, rtol=0)
        # no leak between images; float32 matmuls may round differently for another batch shape
        torch.testing.assert_close(one_target, target[b:b + 1], atol=1e-5, rtol=0)


def test_encode_under_cpu_autocast_gives_finite_normalised_targets(photo_gmm):
    _, bins, _ = photo_gmm
    encoder = targets.ColorEncoder(bins, mean_l=0.45, img_lowpass=4)
    rgb = photo_batch()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        net_input, target = encoder.encode(rgb, torch.bfloat16)
    assert target.dtype == torch.bfloat16 and target.shape == (3, 16, 37, 45)
    assert torch.isfinite(net_input).all() and torch.isfinite(target.float()).all()
    assert (target >= 0).all()
    torch.testing.assert_close(target.float().sum(1), torch.ones(3, 37, 45), atol=BF16_SUM_ATOL, rtol=0)
    # the input is the same lightness as without autocast (within bf16 if it ran in bf16)
    plain_input, _ = encoder.encode(rgb)
    torch.testing.assert_close(net_input.float(), plain_input, atol=1e-2, rtol=0)


@pytest.fixture(scope='module')
def photo_gmm_64():
    """(sklearn GMM with K = 64 on two photos' (H, C), GMMBins, test pixels [N, 2] float32).

    Test pixels: the low-passed pixels of a third photo, uniform random points of
    the unit square, and its edges and corners.
    """
    hc = np.concatenate([np.stack([a.ravel() for a in skimage_hue_chroma(photo(n, (96, 96)))], 1)
                         for n in ('astronaut', 'coffee')])
    rng = np.random.RandomState(1)
    gmm = GaussianMixture(64, covariance_type='full', init_params='kmeans', random_state=0)
    gmm.fit(hc[rng.choice(len(hc), 6000, replace=False)])
    rgb = torch.from_numpy(photo('chelsea', (64, 48)).copy()).permute(2, 0, 1)[None].float() / 255
    hue, chroma, _ = utils.rgb_to_hcl(rgb)
    hue, chroma = utils.lowpass_hue_chroma(hue, chroma, 4)
    edges = [[x, y] for x in (0.0, 0.5, np.nextafter(np.float32(1), np.float32(0))) for y in (0.0, 0.5, 1.0)]
    test = np.concatenate([np.stack([hue.numpy().ravel(), chroma.numpy().ravel()], 1),
                           rng.uniform(0, 1, (3000, 2)), edges]).astype(np.float32)
    return gmm, targets.GMMBins(gmm.weights_, gmm.means_, gmm.covariances_), test


@pytest.mark.parametrize('prune', [True, False])
def test_pruned_and_full_posteriors_both_equal_predict_proba(photo_gmm_64, prune):
    gmm, bins, hc = photo_gmm_64
    order, _ = bins.candidates()
    assert order.shape[1] <= bins.num_bins // 2   # pruning pays on this GMM: the default on a CPU
    post = bins.encode(torch.from_numpy(hc[:, 0]).view(1, -1, 1), torch.from_numpy(hc[:, 1]).view(1, -1, 1),
                       prune=prune)[0, :, :, 0].T.double().numpy()
    assert np.abs(post - gmm.predict_proba(hc.astype(np.float64))).max() <= POSTERIOR_ATOL
    assert np.abs(post.sum(1) - 1).max() <= 1e-5


def test_components_left_out_of_a_cell_have_posteriors_below_the_margin_there(photo_gmm_64):
    gmm, bins, hc = photo_gmm_64
    order, keep = bins.candidates()
    grid = targets.PRUNE_GRID
    cell = np.clip((hc[:, 0] * grid).astype(int), 0, grid - 1) * grid + np.clip((hc[:, 1] * grid).astype(int), 0, grid - 1)
    ref = gmm.predict_proba(hc.astype(np.float64))
    candidate = np.zeros_like(ref, dtype=bool)
    np.put_along_axis(candidate, order[cell], keep[cell], 1)
    assert candidate.any(1).all() and (~candidate).any()
    assert ref[~candidate].max() <= np.exp(-targets.PRUNE_LOG_MARGIN) * 1.001


def test_quadratic_range_over_boxes_brackets_a_dense_sampling_of_each_box():
    rng = np.random.RandomState(5)
    k = 40
    covariances = []
    for _ in range(k):   # narrow and wide, tilted components
        a = rng.normal(size=(2, 2)) * rng.choice([0.002, 0.05, 0.3])
        covariances.append(a @ a.T + 1e-6 * np.eye(2))
    bins = targets.GMMBins(np.full(k, 1 / k), rng.uniform(-0.1, 1.1, (k, 2)), np.array(covariances))
    coef = bins._coefficients()
    boxes = rng.uniform(0, 1, (25, 2, 2))
    h0, h1 = boxes[:, 0].min(1, keepdims=True), boxes[:, 0].max(1, keepdims=True)
    c0, c1 = boxes[:, 1].min(1, keepdims=True), boxes[:, 1].max(1, keepdims=True)
    q_min, q_max = targets.quadratic_range_over_boxes(coef, h0, h1, c0, c1)
    t = np.linspace(0, 1, 121)
    for i in range(len(boxes)):
        hh, cc = np.meshgrid(h0[i] + t * (h1[i] - h0[i]), c0[i] + t * (c1[i] - c0[i]), indexing='ij')
        d_h, d_c = hh.reshape(-1, 1) - coef[0], cc.reshape(-1, 1) - coef[1]
        q = (coef[2] * d_h + coef[3] * d_c) ** 2 + coef[4] * d_c ** 2          # [samples, K]
        scale = 1e-9 * np.maximum(1, q.max(0))
        assert (q_min[i] <= q.min(0) + scale).all() and (q_max[i] >= q.max(0) - scale).all()
        np.testing.assert_allclose(q_max[i], q.max(0), rtol=1e-9)       # the maximum is at a corner
        for j in range(0, k, 3):   # the minimum: a bounded linear least-squares problem, solved by scipy
            a = np.array([[coef[2, j], coef[3, j]], [0.0, np.sqrt(coef[4, j])]])
            fit = lsq_linear(a, a @ coef[:2, j], bounds=([h0[i, 0], c0[i, 0]], [h1[i, 0], c1[i, 0]]),
                             method='bvls', tol=1e-12)
            assert q_min[i, j] == pytest.approx(2 * fit.cost, rel=1e-6, abs=1e-9)


def test_saturated_colours_keep_the_pruned_path_and_equal_predict_proba(photo_gmm_64):
    """Low-passed pure red / green / cyan come out of float32 at C = 1 + 2e-7 (on one CPU; another's
    rounding may give 1 - 6e-8: one float32 step more on every chroma makes the overshoot sure): still
    pruned, still exact."""
    gmm, bins, _ = photo_gmm_64
    rgb = torch.zeros(3, 3, 32, 48)
    rgb[0, 0] = 1          # red
    rgb[1, 1] = 1          # green
    rgb[2, 1:] = 1         # cyan
    hue, chroma, _ = utils.rgb_to_hcl(rgb)
    hue, chroma = utils.lowpass_hue_chroma(hue, chroma, 4)
    chroma = chroma * (1 + 2.0 ** -22)                                 # (1 - 2^-24)(1 + 2^-22) rounds to >= 1 + 2^-23
    assert float(chroma.max()) > 1.0                                  # the float32 overshoot is there
    assert bins.prunes(hue.reshape(3, -1), chroma.reshape(3, -1))
    post = bins.encode(hue, chroma).permute(0, 2, 3, 1).reshape(-1, 64).double().numpy()
    hc = np.stack([hue.double().numpy().ravel(), chroma.double().numpy().ravel()], 1)
    assert np.abs(post - gmm.predict_proba(hc)).max() <= POSTERIOR_ATOL


def test_encode_of_no_pixels_and_under_a_float64_default_dtype(photo_gmm_64):
    _, bins, _ = photo_gmm_64
    assert bins.encode(torch.zeros(1, 0, 5), torch.zeros(1, 0, 5)).shape == (1, 64, 0, 5)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for prune in (True, False):
            post = bins.encode(torch.full((1, 2, 2), 0.3), torch.full((1, 2, 2), 0.2), prune=prune)
            assert post.dtype == torch.float32 and torch.allclose(post.sum(1).double(), torch.ones(1, 2, 2))
    finally:
        torch.set_default_dtype(previous)
