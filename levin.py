"""Edge-aware colour propagation on the chroma plane (numpy / scipy only).

Two tools that make colour follow the lightness image:

* :func:`levin_colorize` - Levin, Lischinski & Weiss 2004, "Colorization using
  Optimization": spread a few colour hints (or refine a network's prediction)
  so that neighbours of similar lightness get similar colours.
* :func:`coarse_fit_guided_upsample` - a coarse chroma plane upsampled by He,
  Sun & Tang 2010's guided filter fitted at the coarse size (He & Sun 2015's fast
  guided filter), so colour edges snap to the full-resolution lightness edges.

Colour is the chroma plane (a, b) = C (cos 2 pi H, sin 2 pi H) of ``utils``;
planes are ``[2, H, W]``, lightness ``[H, W]`` in [0, 1].
"""
import functools

import numpy as np
import scipy.ndimage
import scipy.sparse
import scipy.sparse.linalg

# Affinity constants of the authors' getColorExact.m (Levin et al. 2004, Matlab code on the
# project page www.cs.huji.ac.il/~yweiss/Colorization): w_rs = exp(-(Y(r) - Y(s))^2 / csig), with
# csig (= 2 sigma_r^2) = max(0.6 * window variance, -min_s (Y(r) - Y(s))^2 / ln(0.01), 2e-6).
VARIANCE_SCALE = 0.6           # csig = 0.6 * var: the window variance, tightened
NEAREST_WEIGHT_FLOOR = 0.01    # the most similar neighbour keeps at least this unnormalised weight
CSIG_FLOOR = 2e-6              # flat windows (var = 0): all neighbours weigh the same
ND_LEAF = 3                    # nested dissection stops at blocks of this side (fill and time lowest at 256 x 341)


# --------------------------------------------------------------------------
# Levin et al. 2004
# --------------------------------------------------------------------------

def window_offsets(radius=1):
    """(dy, dx) of the ``(2 radius + 1)^2 - 1`` neighbours of a pixel, row-major, centre left out."""
    span = range(-radius, radius + 1)
    return [(dy, dx) for dy in span for dx in span if (dy, dx) != (0, 0)]


def affinity_weights(lightness, radius=1, variance_scale=VARIANCE_SCALE):
    """Per-pixel neighbour weights ``[K, H, W]`` (K = len(window_offsets)) and validity ``[K, H, W]``.

    ``variance_scale``: csig = variance_scale * window variance (getColorExact.m: 0.6); smaller makes the
    weights across a lightness edge smaller.

    Windows are cut at the image border, as in getColorExact.m: the variance uses the
    pixels that exist (centre included, population variance) and the weights of each
    pixel sum to 1 over its existing neighbours (0 where a neighbour falls outside).
    """
    y = np.asarray(lightness, dtype=np.float64)
    h, w = y.shape
    offsets = window_offsets(radius)
    padded = np.pad(y, radius, constant_values=np.nan)
    nbr = np.stack([padded[radius + dy:radius + dy + h, radius + dx:radius + dx + w] for dy, dx in offsets])
    valid = ~np.isnan(nbr)
    nbr = np.where(valid, nbr, 0.0)
    count = valid.sum(0) + 1.0
    mean = (nbr.sum(0) + y) / count
    var = ((np.where(valid, nbr - mean, 0.0) ** 2).sum(0) + (y - mean) ** 2) / count
    d2 = np.where(valid, (nbr - y) ** 2, np.inf)
    csig = np.maximum(variance_scale * var, d2.min(0) / -np.log(NEAREST_WEIGHT_FLOOR))
    csig = np.maximum(csig, CSIG_FLOOR)
    weights = np.exp(-d2 / csig)            # exp(-inf) = 0 outside the image
    return weights / weights.sum(0), valid


def affinity_matrix(lightness, radius=1, variance_scale=VARIANCE_SCALE):
    """Sparse row-stochastic W ``[N, N]`` (N = H W, row-major pixels): U(r) ~ sum_s W[r, s] U(s)."""
    h, w = np.shape(lightness)
    weights, valid = affinity_weights(lightness, radius, variance_scale)
    index = np.arange(h * w).reshape(h, w)
    rows = np.broadcast_to(index, weights.shape)[valid]
    cols = np.stack([index + dy * w + dx for dy, dx in window_offsets(radius)])[valid]
    return scipy.sparse.csr_matrix((weights[valid], (rows, cols)), shape=(h * w, h * w))


@functools.lru_cache(maxsize=8)
def nested_dissection_order(height, width, separator=1, leaf=ND_LEAF):
    """The pixels of a ``height`` x ``width`` grid (flat, row-major indices ``[height * width]``) in nested
    dissection order: the longer side is cut by a line ``separator`` pixels wide, each half ordered
    likewise, the line last, down to blocks of ``leaf`` x ``leaf``.  With a stencil of radius
    ``separator`` the halves never touch, so eliminating them fills nothing between them (George 1973)."""
    order = []

    def visit(r0, r1, c0, c1):
        if (r1 - r0) * (c1 - c0) <= leaf * leaf or min(r1 - r0, c1 - c0) <= 2 * separator:
            order.append((np.arange(r0, r1)[:, None] * width + np.arange(c0, c1)).ravel())
        elif c1 - c0 >= r1 - r0:
            m = (c0 + c1 - separator) // 2
            visit(r0, r1, c0, m)
            visit(r0, r1, m + separator, c1)
            order.append((np.arange(r0, r1)[:, None] * width + np.arange(m, m + separator)).ravel())
        else:
            m = (r0 + r1 - separator) // 2
            visit(r0, m, c0, c1)
            visit(m + separator, r1, c0, c1)
            order.append((np.arange(m, m + separator)[:, None] * width + np.arange(c0, c1)).ravel())
    visit(0, height, 0, width)
    out = np.concatenate(order)
    out.flags.writeable = False
    return out


class GridLU:
    """Sparse LU of a system on the ``free`` pixels ``[h, w]`` of a grid, rows and columns in
    :func:`nested_dissection_order` (~1.5x faster than SuperLU's minimum degree at 256 x 341, with
    less fill); :meth:`solve` takes and returns the free pixels in row-major order.

    Diagonal pivots are safe: I - W restricted to the unhinted pixels is a nonsingular M-matrix
    (W >= 0, rows sum to at most 1, every pixel linked to a hint), whose LU needs no pivoting in
    any symmetric order; the normal equations of the prior term are symmetric positive definite.
    """

    def __init__(self, matrix, free, separator=1):
        free = np.asarray(free, bool)
        position = np.cumsum(free.ravel()) - 1
        order = nested_dissection_order(*free.shape, separator)
        self.perm = position[order[free.ravel()[order]]]
        matrix = matrix.tocsr()[self.perm][:, self.perm]
        self.lu = scipy.sparse.linalg.splu(matrix.tocsc(), permc_spec='NATURAL', diag_pivot_thresh=0.0,
                                           options={'SymmetricMode': True})

    def solve(self, rhs):
        """``rhs`` ``[n_free]`` or ``[n_free, C]`` -> the solution, same shape."""
        out = np.empty_like(rhs, dtype=np.float64)
        out[self.perm] = self.lu.solve(np.ascontiguousarray(rhs[self.perm], dtype=np.float64))
        return out


def levin_colorize(lightness, hint_plane, hint_mask, prior_plane=None, prior_weight=0.0, radius=1):
    """Chroma plane ``[2, H, W]`` float64 from lightness ``[H, W]``, hints ``[2, H, W]`` where mask ``[H, W]``.

    Minimises, over the unhinted pixels r (hinted pixels are hard constraints U = hint),

        J(U) = sum_r (U(r) - sum_s w_rs U(s))^2 + prior_weight * sum_r |U(r) - P(r)|^2

    with w from :func:`affinity_matrix`.  Without a prior this is the square system
    (I - W) U = 0 on unhinted rows, U = hint on hinted rows (getColorExact.m's ``A \\ b``,
    J = 0 at the optimum); with a prior ``[2, H, W]`` it is the normal equations
    (A^T A + lambda I) U = A^T c + lambda P, which pull a network's prediction P along
    lightness edges.  Both channels share one sparse LU factorisation.  No hints and no
    prior: zeros (grey).
    """
    y = np.asarray(lightness, dtype=np.float64)
    h, w = y.shape
    hints = np.asarray(hint_plane, dtype=np.float64).reshape(2, h * w).T
    hinted = (np.asarray(hint_mask) > 0.5).reshape(-1)
    use_prior = prior_plane is not None and prior_weight > 0
    if not hinted.any() and not use_prior:
        return np.zeros((2, h, w))
    free = ~hinted
    out = np.where(hinted[:, None], hints, 0.0)
    if free.any():
        weights = affinity_matrix(y, radius)
        a_free = (scipy.sparse.identity(h * w, format='csr') - weights)[free]
        a_ff = a_free[:, free]
        rhs = -(a_free[:, hinted] @ hints[hinted])                      # [n_free, 2]
        if use_prior:
            prior = np.asarray(prior_plane, dtype=np.float64).reshape(2, h * w).T[free]
            a_t = a_ff.T.tocsr()
            system = a_t @ a_ff + prior_weight * scipy.sparse.identity(a_ff.shape[0], format='csr')
            rhs = a_t @ rhs + prior_weight * prior
        else:
            system = a_ff
        out[free] = GridLU(system, free.reshape(h, w), separator=2 * radius if use_prior else radius).solve(rhs)
    return out.T.reshape(2, h, w)


# --------------------------------------------------------------------------
# guided upsampling (He, Sun & Tang 2010)
# --------------------------------------------------------------------------

def bilinear_matrix(n_out, n_in):
    """``[n_out, n_in]`` 1-D linear interpolation with half-pixel centres and edge clamping (sparse CSR:
    two weights a row).

    The same sampling as torch ``F.interpolate(mode='bilinear', align_corners=False)``
    and ``skimage.transform.resize(order=1, mode='edge')`` without anti-aliasing.
    """
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    rows = np.repeat(np.arange(n_out), 2)
    return scipy.sparse.csr_matrix((np.stack([1.0 - frac, frac], 1).ravel(), (rows, np.stack([lo, hi], 1).ravel())),
                                   shape=(n_out, n_in))


def area_matrix(n_out, n_in):
    """``[n_out, n_in]`` 1-D area averaging: output cell i is the mean of input [i s, (i + 1) s), s = n_in / n_out
    (sparse CSR)."""
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    pix = np.arange(n_in)[None, :]
    return scipy.sparse.csr_matrix(np.clip(np.minimum(pix + 1, lo + scale) - np.maximum(pix, lo), 0.0, None) / scale)


def bilinear_resize(plane, size):
    """Bilinear resize of ``[C, h, w]`` to ``[C, H, W]`` = size, as two sparse matrix products per channel."""
    plane = np.asarray(plane, dtype=np.float64)
    rows = bilinear_matrix(size[0], plane.shape[-2])
    cols_t = bilinear_matrix(size[1], plane.shape[-1]).T
    return np.stack([(cols_t.T @ (rows @ channel).T).T for channel in plane])


def box_mean(x, radius):
    """Mean of ``[..., H, W]`` over each (2 radius + 1)^2 window cut at the border (He et al.'s boxfilter / N).

    Two running sums (``uniform_filter1d`` with zeros outside, O(1) per pixel whatever
    the radius); only the border rows and columns, whose cut windows hold fewer pixels,
    are then rescaled.
    """
    x = np.asarray(x, dtype=np.float64)
    size = 2 * radius + 1
    h, w = x.shape[-2:]
    tmp = scipy.ndimage.uniform_filter1d(x, size, axis=-1, mode='constant')
    out = scipy.ndimage.uniform_filter1d(tmp, size, axis=-2, mode='constant')
    for n, axis in ((h, -2), (w, -1)):
        scale = size / (np.minimum(np.arange(n) + radius + 1, n) - np.maximum(np.arange(n) - radius, 0))
        edge = np.flatnonzero(scale != 1.0)
        view = np.moveaxis(out, axis, 0)
        view[edge] *= scale[edge].reshape((-1,) + (1,) * (out.ndim - 1))
    return out


def coarse_fit_guided_upsample(guide, plane, radius, eps):
    """Coarse plane ``[2, h, w]`` -> ``[2, H, W]``, the guided filter's linear model fitted at the coarse size.

    As He & Sun 2015's "Fast Guided Filter": the guide is area-averaged to ``[h, w]``, the
    per-window q = a I + b is fitted there against the coarse plane itself (radius in
    coarse pixels), and only the averaged a, b are upsampled bilinearly and applied to the
    full-resolution guide.  A coarse pixel that mixes two colours across a lightness edge
    also mixes the two lightnesses, so the fit explains the mixture and the full-resolution
    guide puts the colour step back where the edge is.  A guided filter run at full
    resolution on the bilinear upsampling would keep bilinear's ramp wherever its windows
    see a flat guide, and cost box filters over every full-resolution pixel.
    """
    guide = np.asarray(guide, dtype=np.float64)
    plane = np.asarray(plane, dtype=np.float64)
    c, h, w = plane.shape
    small = (area_matrix(w, guide.shape[1]) @ (area_matrix(h, guide.shape[0]) @ guide).T).T
    means = box_mean(np.concatenate([small[None], (small * small)[None], plane, small * plane]), radius)
    mean_i, mean_ii, mean_p, mean_ip = means[0], means[1], means[2:2 + c], means[2 + c:]
    a = (mean_ip - mean_i * mean_p) / (mean_ii - mean_i * mean_i + eps)
    coef = bilinear_resize(box_mean(np.concatenate([a, mean_p - a * mean_i]), radius), guide.shape)
    out = coef[:c] * guide
    out += coef[c:]
    return out
