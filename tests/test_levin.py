"""levin.py: Levin et al. 2004 colour propagation and guided upsampling, against references built here.

The references are written independently of the module: per-pixel loops that follow the
authors' getColorExact.m for the affinities, dense numpy solves of the constrained
system, torch's bilinear interpolation, scipy.ndimage.uniform_filter and explicit window loops.
"""
import math
import os
import sys

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import levin  # noqa: E402


# --------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------

def loop_weights(y, radius=1):
    """Dense W [N, N] pixel by pixel, as getColorExact.m: cut windows, csig = max(0.6 var, -min d^2/ln 0.01, 2e-6)."""
    h, w = y.shape
    big_w = np.zeros((h * w, h * w))
    for i in range(h):
        for j in range(w):
            nbrs = [(ii, jj) for ii in range(max(0, i - radius), min(h, i + radius + 1))
                    for jj in range(max(0, j - radius), min(w, j + radius + 1)) if (ii, jj) != (i, j)]
            vals = np.array([y[p] for p in nbrs])
            window = np.append(vals, y[i, j])
            csig = 0.6 * np.mean((window - window.mean()) ** 2)
            csig = max(csig, -np.min((vals - y[i, j]) ** 2) / math.log(0.01), 2e-6)
            g = np.exp(-(vals - y[i, j]) ** 2 / csig)
            for (ii, jj), gv in zip(nbrs, g / g.sum()):
                big_w[i * w + j, ii * w + jj] = gv
    return big_w


def dense_levin(y, hints, mask, prior=None, prior_weight=0.0):
    """Minimise sum over unhinted r of (U(r) - sum_s w_rs U(s))^2 (+ prior term) with U = hint on the mask.

    Unknowns are the unhinted pixels; the residual rows are solved with lstsq (exact when
    there is no prior, since there are as many rows as unknowns).
    """
    h, w = y.shape
    a = np.eye(h * w) - loop_weights(y)
    hinted = mask.reshape(-1)
    free = ~hinted
    u = np.zeros((h * w, 2))
    u[hinted] = hints.reshape(2, -1).T[hinted]
    mat = a[free][:, free]
    rhs = -a[free][:, hinted] @ u[hinted]
    if prior is not None:
        k = math.sqrt(prior_weight)
        mat = np.vstack([mat, k * np.eye(free.sum())])
        rhs = np.vstack([rhs, k * prior.reshape(2, -1).T[free]])
    u[free] = np.linalg.lstsq(mat, rhs, rcond=None)[0]
    return u.T.reshape(2, h, w)


def loop_box_mean(x, radius):
    """Mean over each (2r+1)^2 window cut at the border, one pixel at a time."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            out[..., i, j] = x[..., max(0, i - radius):i + radius + 1, max(0, j - radius):j + radius + 1].mean((-2, -1))
    return out


def tiny_lightness():
    """6x7 lightness: noise, a near-flat patch (2e-6 floor), an outlier pixel (nearest-neighbour floor)."""
    y = np.random.RandomState(3).uniform(0.1, 0.9, (6, 7))
    y[3:, :3] = 0.5 + 1e-3 * (np.indices((3, 3)).sum(0) % 2)     # var * 0.6 < 2e-6
    y[:3, 4:] = 0.1 + 0.05 * (np.indices((3, 3)).sum(0) % 2)
    y[1, 5] = 0.9                                                  # -min d^2 / ln 0.01 > var * 0.6
    return y


def random_hints(shape, n, seed):
    rng = np.random.RandomState(seed)
    mask = np.zeros(shape, bool)
    mask.flat[rng.choice(mask.size, n, replace=False)] = True
    return rng.uniform(-0.4, 0.4, (2,) + shape), mask


# --------------------------------------------------------------------------
# Levin et al. 2004
# --------------------------------------------------------------------------

def test_two_flat_regions_each_take_their_own_hint_colour():
    y = np.full((16, 20), 0.3)
    y[:, 10:] = 0.7                                   # sharp vertical edge
    left, right = np.array([0.25, -0.1]), np.array([-0.15, 0.3])
    hints, mask = np.zeros((2, 16, 20)), np.zeros((16, 20), bool)
    hints[:, 3, 2], mask[3, 2] = left, True
    hints[:, 12, 17], mask[12, 17] = right, True
    out = levin.levin_colorize(y, hints, mask)
    assert out.shape == (2, 16, 20) and out.dtype == np.float64
    assert np.abs(out[:, :, :10] - left[:, None, None]).max() < 0.02
    assert np.abs(out[:, :, 10:] - right[:, None, None]).max() < 0.02


def test_hinted_pixels_equal_their_hints_exactly():
    y = np.random.RandomState(0).rand(20, 24)
    hints, mask = random_hints((20, 24), 15, seed=1)
    for kwargs in ({}, {'prior_plane': np.random.RandomState(2).rand(2, 20, 24), 'prior_weight': 5.0}):
        out = levin.levin_colorize(y, hints, mask.astype(np.float32), **kwargs)
        np.testing.assert_array_equal(out[:, mask], hints[:, mask])
        assert np.abs(out[:, ~mask] - hints[:, ~mask]).max() > 0.01   # the rest is not just copied


def test_affinity_matrix_equals_loop_reference():
    y = tiny_lightness()
    w = levin.affinity_matrix(y).toarray()
    np.testing.assert_allclose(w, loop_weights(y), rtol=0, atol=1e-12)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)


def test_sparse_solution_equals_dense_reference():
    y = tiny_lightness()
    hints, mask = random_hints(y.shape, 4, seed=5)
    np.testing.assert_allclose(levin.levin_colorize(y, hints, mask), dense_levin(y, hints, mask),
                               rtol=0, atol=1e-10)
    prior = np.random.RandomState(6).uniform(-0.3, 0.3, (2,) + y.shape)
    np.testing.assert_allclose(levin.levin_colorize(y, hints, mask, prior_plane=prior, prior_weight=0.3),
                               dense_levin(y, hints, mask, prior, 0.3), rtol=0, atol=1e-10)


def test_no_hints_gives_grey():
    y = np.random.RandomState(0).rand(9, 11)
    out = levin.levin_colorize(y, np.ones((2, 9, 11)), np.zeros((9, 11)))
    assert out.shape == (2, 9, 11)
    np.testing.assert_array_equal(out, 0.0)


def test_strong_prior_is_followed_and_zero_prior_is_plain_levin():
    y = np.random.RandomState(0).rand(18, 22)
    hints, mask = random_hints(y.shape, 6, seed=3)
    prior = np.random.RandomState(4).uniform(-0.3, 0.3, (2,) + y.shape)
    plain = levin.levin_colorize(y, hints, mask)
    np.testing.assert_array_equal(levin.levin_colorize(y, hints, mask, prior_plane=prior, prior_weight=0.0), plain)
    strong = levin.levin_colorize(y, hints, mask, prior_plane=prior, prior_weight=1e4)
    away = ~scipy.ndimage.binary_dilation(mask, iterations=2)   # two pixels or more from every hint
    assert np.abs(strong[:, away] - prior[:, away]).max() < 1e-3
    assert np.abs(plain[:, away] - prior[:, away]).max() > 0.1     # so the prior did the work


def test_the_sweeps_levin_plane_solves_at_the_short_side_with_the_prior_resized_to_it():
    import hint_sweep   # torch side: full-resolution maps in, the solve size out
    y = torch.from_numpy(np.random.RandomState(0).rand(40, 60)).float()
    hints, mask = random_hints(tuple(y.shape), 6, seed=3)
    plane, mask = torch.from_numpy(hints).float(), torch.from_numpy(mask.astype(np.float32))
    prior = torch.full((2, 4, 6), 0.2)          # a network's coarse prediction, flat
    plain = hint_sweep.levin_plane(y, plane, mask, side=20)
    assert tuple(plain.shape) == (2, 20, 30)
    np.testing.assert_array_equal(hint_sweep.levin_plane(y, plane, mask, side=20, prior=prior, prior_weight=0.0),
                                  plain)
    strong = hint_sweep.levin_plane(y, plane, mask, side=20, prior=prior, prior_weight=1e4)
    unhinted = F.interpolate(mask[None, None], size=(20, 30), mode='area')[0, 0] == 0
    assert (strong[:, unhinted] - 0.2).abs().max() < 1e-2
    assert (plain[:, unhinted] - 0.2).abs().max() > 0.1


# --------------------------------------------------------------------------
# guided upsampling
# --------------------------------------------------------------------------

def test_box_mean_equals_uniform_filter_inside_and_cut_windows_at_the_border():
    x = np.random.RandomState(0).rand(2, 13, 17)
    for r in (1, 3):
        out = levin.box_mean(x, r)
        inner = (slice(None), slice(r, -r), slice(r, -r))
        np.testing.assert_allclose(out[inner], scipy.ndimage.uniform_filter(x, (1, 2 * r + 1, 2 * r + 1))[inner],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(out, loop_box_mean(x, r), rtol=0, atol=1e-12)


def test_bilinear_resize_equals_torch_interpolate():
    plane = np.random.RandomState(0).rand(2, 5, 7)
    ref = F.interpolate(torch.from_numpy(plane)[None], size=(23, 40), mode='bilinear', align_corners=False)[0]
    np.testing.assert_allclose(levin.bilinear_resize(plane, (23, 40)), ref.numpy(), rtol=0, atol=1e-12)


def step_case(h=64, w=96, edge=52, factor=8):
    """Guide with a lightness step at column ``edge``; the ideal colour step there; the 1/factor
    area-averaged colour (the coarse pixel holding the edge mixes both colours)."""
    guide = np.where(np.arange(w) < edge, 0.3, 0.7) * np.ones((h, 1))
    ideal = np.zeros((2, h, w))
    ideal[:, :, :edge] = np.array([0.3, -0.1])[:, None, None]
    ideal[:, :, edge:] = np.array([-0.2, 0.25])[:, None, None]
    coarse = ideal.reshape(2, h // factor, factor, w // factor, factor).mean((2, 4))
    return guide, ideal, coarse


def test_coarse_fit_upsampling_restores_the_step_at_the_lightness_edge():
    guide, ideal, coarse = step_case()
    bilinear = levin.bilinear_resize(coarse, guide.shape)
    out = levin.coarse_fit_guided_upsample(guide, coarse, radius=1, eps=1e-4)
    assert out.shape == ideal.shape
    assert np.abs(out - ideal).max() < 0.01                      # every pixel, the edge columns included
    assert np.abs(out - ideal).mean() < 0.05 * np.abs(bilinear - ideal).mean()


def test_nested_dissection_orders_every_pixel_once_and_cuts_the_fill_of_row_major_order():
    """GridLU's order: a permutation of the grid (any shape), and its factor of Levin's 9-point system
    has far less fill than the natural row-major order's (a band of the width), with the same solution."""
    import scipy.sparse
    import scipy.sparse.linalg
    for h, w, separator in ((1, 1, 1), (3, 17, 1), (40, 61, 1), (29, 30, 2)):
        order = levin.nested_dissection_order(h, w, separator)
        np.testing.assert_array_equal(np.sort(order), np.arange(h * w))
    y = np.random.RandomState(3).rand(48, 64)
    free = np.ones(y.shape, bool)
    free[10:14, 20:30] = False
    system = (scipy.sparse.identity(y.size, format='csr') - 0.99 * levin.affinity_matrix(y))[free.ravel()][:, free.ravel()]
    grid = levin.GridLU(system, free)
    row_major = scipy.sparse.linalg.splu(system.tocsc(), permc_spec='NATURAL', diag_pivot_thresh=0.0,
                                         options={'SymmetricMode': True})
    assert grid.lu.L.nnz + grid.lu.U.nnz < 0.5 * (row_major.L.nnz + row_major.U.nnz)
    rhs = np.random.RandomState(4).rand(system.shape[0], 2)
    np.testing.assert_allclose(grid.solve(rhs), scipy.sparse.linalg.spsolve(system.tocsc(), rhs), rtol=0, atol=1e-10)
