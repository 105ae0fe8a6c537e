"""Colour hints spread along lightness edges and fused with the network's prediction.

A person's hint says "this region is this colour".  The network alone moves
little when given hints (docs/hints.md), so every checkpoint's hint path is:

1. the network predicts a chroma plane P (a hint model with the hints as input);
2. at a working size (``config.HINT_PROPAGATION['side']`` pixels on the short
   side) the hints are spread along lightness edges with Levin et al. 2004's
   affinities (``levin.py``) and fused with P by one of :data:`HINT_METHODS`;
3. the fused plane is upsampled edge-aware (``levin.coarse_fit_guided_upsample``)
   and recombined with the full-resolution lightness, the hints' own squares
   keeping the hints' hue and chroma (``colorize.Colorizer.recombine``).

Levin's solution with hard constraints is linear in the values on the hinted
pixels, so with one factorisation per hint set every arm is a sum of a few
propagated planes, written ``S(v)``: the solution that equals ``v`` on the hinted
pixels.

* ``levin``: ``S(h)``, the hints alone (grey where no hint is, with no hints at all);
* ``corrections``: ``P + S'(h - P)``, the prediction plus the propagated corrections;
  S' walks on sharper affinities (``variance_scale``) and fades where the hints
  hardly reach (``leak``, ``fade``: :meth:`Propagator.spread_corrections`), so the
  prediction stays behind sharp edges;
* ``shrinkage``: ``a P + S'(h - a P)`` with one ``a`` in [0, 1] per photo, chosen
  from the hints themselves: each hint (a connected hinted region) is predicted
  from the others (leave-one-out, at ``loo_side`` pixels), and ``a`` minimises
  those predictions' squared error (a closed form: the error is linear in ``a``);
  its corrections leak ``a`` times as much (a distrusted prediction is replaced
  as far as the hints reach);
* ``confidence``: ``c P + S'(h - c P)``, ``c`` per pixel the prediction's own
  confidence, 1 - its distribution's normalised entropy (peaked: trusted; flat: the
  hints win).

Planes are numpy float64 ``[2, h, w]`` (the chroma plane (a, b) of ``utils``),
masks ``[h, w]`` bool, at the working size.
"""
import collections
import hashlib

import numpy as np
import scipy.ndimage
import scipy.sparse
import torch
import torch.nn.functional as F

import config
import hints as hint_input
import levin

HINT_METHODS = config.HINT_METHODS


def working_size(height, width, side):
    """(h, w) with the short side at ``side`` pixels, the aspect kept, never enlarged."""
    scale = min(1.0, side / min(height, width))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_lightness(lightness, size):
    """Full-resolution L ``[H, W]`` (torch) -> numpy float64 ``[h, w]``, antialiased bilinear."""
    small = F.interpolate(lightness[None, None].float(), size=size, mode='bilinear', align_corners=False,
                          antialias=True)[0, 0]
    return small.cpu().numpy().astype(np.float64)


def resize_hints(plane, mask, size):
    """Full-resolution hint maps (torch ``[2, H, W]``, ``[H, W]``) -> numpy ``[2, h, w]`` float64, ``[h, w]``
    bool: area averages (``hints.reduce_hint_maps``), so every hint keeps at least one pixel."""
    small_plane, small_mask = hint_input.reduce_hint_maps(plane[None].float(), mask[None, None].float(), size)
    return small_plane[0].cpu().numpy().astype(np.float64), small_mask[0, 0].cpu().numpy() > 0.5


def resize_plane(plane, size):
    """A chroma plane (torch ``[C, h', w']``) -> numpy float64 ``[C, h, w]``, bilinear."""
    out = F.interpolate(plane[None].float(), size=size, mode='bilinear', align_corners=False)[0]
    return out.cpu().numpy().astype(np.float64)


class Propagator:
    """One photo's Levin affinities W ``[N, N]`` (N = h w, row-stochastic, ``levin.affinity_matrix``) at one
    size, built once; :meth:`spread` solves for any hinted set.

    The web page re-solves one photo on every click: :meth:`of` keeps the last few photos' propagators,
    and each keeps its last few factorisations, so a recoloured hint or an undo solves without one.
    """
    KEPT_LIGHTNESS = 4          # propagators kept by ``of`` (a photo has two: working and leave-one-out size)
    KEPT_FACTORS = 2            # factorisations kept per propagator (~90 MB each at 256 x 341 pixels)
    _recent = collections.OrderedDict()

    def __init__(self, lightness, variance_scale=levin.VARIANCE_SCALE):
        self.shape = np.shape(lightness)
        self.weights = levin.affinity_matrix(lightness, variance_scale=variance_scale)
        self._factors = collections.OrderedDict()

    @classmethod
    def of(cls, lightness, variance_scale=levin.VARIANCE_SCALE):
        """The propagator of ``lightness`` ``[h, w]``, built or, for the same values, reused."""
        lightness = np.ascontiguousarray(lightness, dtype=np.float64)
        key = (lightness.shape, variance_scale, hashlib.blake2b(lightness.tobytes(), digest_size=16).digest())
        return _recently_used(cls._recent, key, lambda: cls(lightness, variance_scale), cls.KEPT_LIGHTNESS)

    def _factor(self, hinted, leak):
        """Sparse LU of the free rows' system, and the rows' matrix, for one hinted set and leak."""
        key = (leak, hashlib.blake2b(np.packbits(hinted).tobytes(), digest_size=16).digest())

        def build():
            system = scipy.sparse.identity(hinted.size, format='csr') - (1.0 - leak) * self.weights
            a_free = system[~hinted]
            return levin.GridLU(a_free[:, ~hinted], ~hinted.reshape(self.shape)), a_free[:, hinted]
        return _recently_used(self._factors, key, build, self.KEPT_FACTORS)

    def spread(self, hinted, values, leak=0.0):
        """``hinted`` ``[h, w]`` bool, ``values`` ``[C, h, w]`` -> ``[C, h, w]``: equal to ``values`` on the
        hinted pixels, (I - (1 - leak) W) U = 0 on the others, one sparse LU for every channel.

        ``leak`` = 0 is Levin et al.'s system: U(r) is the mean of the hints weighted by where a random
        walk on W from r is first absorbed, so every pixel takes some hint's colour.  With ``leak`` > 0
        the walk also dies with that probability at each step (a grey sink), so colour fades where the
        hints hardly reach, e.g. across a sharp lightness edge.  Nothing hinted: zeros.
        """
        hinted = np.asarray(hinted, bool).reshape(-1)
        channels = values.shape[0]
        flat = np.asarray(values, dtype=np.float64).reshape(channels, -1).T
        out = np.where(hinted[:, None], flat, 0.0)
        if hinted.any() and not hinted.all():
            lu, a_free_hinted = self._factor(hinted, leak)
            out[~hinted] = lu.solve(-(a_free_hinted @ flat[hinted]))
        return out.T.reshape((channels,) + self.shape)

    def spread_corrections(self, hinted, corrections, leak, fade):
        """Corrections ``[C, h, w]`` (given on the hinted pixels) spread with ``leak``, as their weighted mean
        S(c) / S(1) times a reach g = S(1)^2 (1 + fade^2) / (S(1)^2 + fade^2).

        S(1) in [0, 1] is the share of the walk from a pixel that reaches a hint: where it is well above
        ``fade``, g ~ 1 and the hints' colours arrive whole; well below, g ~ 0 and the prediction is
        kept.  Linear in the corrections for a given hinted set.  ``leak`` = 0: S(1) = 1, plain Levin.
        """
        ones = np.ones((1,) + self.shape)
        spread = self.spread(hinted, np.concatenate([corrections, ones]), leak)
        reach = np.maximum(spread[-1], 1e-12)
        return spread[:-1] * (reach * (1.0 + fade ** 2) / (reach ** 2 + fade ** 2))


def _recently_used(cache, key, build, kept):
    """``cache[key]``, built by ``build()`` when absent; the cache keeps its ``kept`` most recent entries."""
    if key in cache:
        cache.move_to_end(key)
    else:
        cache[key] = build()
        while len(cache) > kept:
            cache.popitem(last=False)
    return cache[key]


def leak_at(shape, settings):
    """The per-step ``leak`` for a plane of ``shape``: ``settings['leak']`` holds at ``side`` x ``side``
    pixels and scales with 1 / pixels, so the hints' reach is the same share of the photo at any size
    (a walk needs ~pixels steps to cross a region)."""
    return min(0.5, settings['leak'] * settings['side'] ** 2 / float(np.prod(shape)))


def loo_folds(hinted, max_folds):
    """The hinted pixels ``[h, w]`` -> fold labels ``[h, w]`` (0 = not hinted, 1..F): each connected hinted
    region is a hint; with more than ``max_folds`` regions they are dealt round-robin into ``max_folds``."""
    labels, count = scipy.ndimage.label(hinted)
    if count > max_folds:
        labels = np.where(labels > 0, (labels - 1) % max_folds + 1, 0)
    return labels


def shrinkage_factor(lightness, hint_plane, hinted, prediction, settings):
    """The per-photo ``a`` of the ``shrinkage`` arm, by leave-one-out on the hints at ``settings['loo_side']``
    pixels on the short side, over at most ``settings['loo_max_folds']`` groups of hints.

    For hint j left out, Levin from the other hints predicts it as a P + S_j(h - a P) =
    S_j(h) + a (P - S_j(P)) (S_j: Levin's system with the other hints, linear in what it spreads); its
    error r_h - a r_P (r_h = h - S_j(h), r_P = P - S_j(P) on hint j) is linear in a, so the
    least-squares a over every hint is sum r_h . r_P / sum |r_P|^2, clipped to [0, 1].  Inputs at the
    working size (numpy).  1 (the prediction kept whole) when the hints say nothing about it: a single
    hint (or one connected group) has no other hint to be predicted from, and a correction is no evidence
    against the prediction elsewhere.
    """
    size = working_size(*lightness.shape, settings['loo_side'])
    small_l = resize_lightness(torch.from_numpy(lightness), size)
    small_h, small_mask = resize_hints(torch.from_numpy(hint_plane * hinted), torch.from_numpy(hinted * 1.0), size)
    small_p = resize_plane(torch.from_numpy(prediction), size)
    folds = loo_folds(small_mask, settings['loo_max_folds'])
    if folds.max() < 2:
        return 1.0
    propagator = Propagator.of(small_l)
    both = np.concatenate([small_h, small_p])
    num = den = 0.0
    for fold in range(1, folds.max() + 1):
        held = folds == fold
        spread = propagator.spread(small_mask & ~held, both)
        r_h = (small_h - spread[:2])[:, held]
        r_p = (small_p - spread[2:])[:, held]
        num += float((r_h * r_p).sum())
        den += float((r_p * r_p).sum())
    return float(np.clip(num / den, 0.0, 1.0)) if den > 1e-12 else 1.0


def confidence(probs, heads=1):
    """Bin probabilities ``[heads * K, h, w]`` (torch; a one-hot model has two heads, hue and chroma) ->
    ``[h, w]`` in [0, 1]: 1 - entropy / log K, averaged over the heads: 1 for a certain bin, 0 for a flat
    distribution."""
    p = probs.float().clamp_min(1e-12)
    p = p.reshape(heads, p.shape[0] // heads, *p.shape[1:])
    entropy = -(p * p.log()).sum(1) / np.log(p.shape[1])
    return (1 - entropy).mean(0).clamp(0, 1)


def fused_planes(methods, lightness, hint_plane, hinted, prediction, certainty=None, settings=None):
    """Arms of :data:`HINT_METHODS` at the working size -> {method: fused chroma plane ``[2, h, w]``} (numpy).

    lightness ``[h, w]``, hint_plane ``[2, h, w]``, hinted ``[h, w]`` bool, prediction ``[2, h, w]``,
    certainty ``[h, w]`` (the ``confidence`` arm's).  ``levin`` is S(h) with Levin's own system; the
    others are ``w P + S'(h - w P)`` for their weight w (``corrections``: 1, ``shrinkage``: a,
    ``confidence``: c), S' spreading with ``settings``' ``fade`` and ``leak``
    (:meth:`Propagator.spread_corrections`); ``shrinkage`` leaks a times as much: a prediction the hints
    distrust (a ~ 0) lets them reach as far as Levin's, one they trust is kept where they do not reach.
    Arms with the same leak share one factorisation.  No hinted pixel: the prediction itself (``levin``:
    grey).
    """
    settings = settings or config.HINT_PROPAGATION
    unknown = [m for m in methods if m not in HINT_METHODS]
    if unknown:
        raise ValueError('unknown hint method %r (choose from %s)' % (unknown[0], ', '.join(HINT_METHODS)))
    if not hinted.any():
        return {m: np.zeros_like(prediction) if m == 'levin' else prediction for m in methods}
    leak, fade = leak_at(lightness.shape, settings), settings['fade']
    out = {}
    if 'levin' in methods:
        out['levin'] = Propagator.of(lightness).spread(hinted, hint_plane)
    propagator = Propagator.of(lightness, settings['variance_scale'])
    weights, leaks = {'corrections': 1.0}, {'corrections': leak, 'confidence': leak}
    if 'shrinkage' in methods:
        weights['shrinkage'] = shrinkage_factor(lightness, hint_plane, hinted, prediction, settings)
        leaks['shrinkage'] = weights['shrinkage'] * leak
    if 'confidence' in methods:
        weights['confidence'] = np.asarray(certainty, dtype=np.float64)[None]
    arms = [m for m in methods if m != 'levin']
    for arm_leak in dict.fromkeys(leaks[m] for m in arms):
        group = [m for m in arms if leaks[m] == arm_leak]
        priors = [weights[m] * prediction for m in group]
        corrections = propagator.spread_corrections(hinted, np.concatenate([hint_plane - p for p in priors]),
                                                    arm_leak, fade)
        for i, (m, prior) in enumerate(zip(group, priors)):
            out[m] = prior + corrections[2 * i:2 * i + 2]
    return {m: out[m] for m in methods}
