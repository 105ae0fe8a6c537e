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
  from the others (leave-one-out, at ``loo_side`` pixels, all at once by a Schur
  complement: :meth:`Propagator.held_out`), and ``a`` minimises
  those predictions' squared error (a closed form: the error is linear in ``a``);
  its corrections leak ``a`` times as much (a distrusted prediction is replaced
  as far as the hints reach);
* ``confidence``: ``c P + S'(h - c P)``, ``c`` per pixel the prediction's own
  confidence, 1 - its distribution's normalised entropy (peaked: trusted; flat: the
  hints win);
* ``stacked``: ``(1 - b) S(h) + b (cP + S'(h - cP))``, ``levin`` and ``confidence`` blended with one ``b``
  in [0, 1] per photo, again chosen by leave-one-out on the hints: each hint is predicted by both arms
  from the others and ``b`` minimises the blend's squared error (stacked regression, Breiman 1996); with a
  single hint ``b`` = 1.

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
BLENDED_ARMS = {'stacked': ('levin', 'confidence')}   # an arm computed from other arms


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

    def _system(self, leak):
        """M = I - (1 - leak) W ``[N, N]`` (sparse): the walk's system, before any hint fixes a row."""
        return scipy.sparse.identity(self.weights.shape[0], format='csr') - (1.0 - leak) * self.weights

    def _factor(self, hinted, leak):
        """Sparse LU of the free rows' system, and the rows' matrix, for one hinted set and leak."""
        key = (leak, hashlib.blake2b(np.packbits(hinted).tobytes(), digest_size=16).digest())

        def build():
            a_free = self._system(leak)[~hinted]
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
        S(c) / S(1) times a reach g = S(1)^2 (1 + fade^2) / (S(1)^2 + fade^2) (:func:`faded`).

        S(1) in [0, 1] is the share of the walk from a pixel that reaches a hint: where it is well above
        ``fade``, g ~ 1 and the hints' colours arrive whole; well below, g ~ 0 and the prediction is
        kept.  Linear in the corrections for a given hinted set.  ``leak`` = 0: S(1) = 1, plain Levin.
        """
        ones = np.ones((1,) + self.shape)
        return faded(self.spread(hinted, np.concatenate([corrections, ones]), leak), fade)

    def held_out(self, hinted, values, leak=0.0):
        """Leave-one-out at every hinted pixel at once: ``hinted`` ``[h, w]`` bool, ``values`` ``[C, h, w]`` ->
        ``[C, n]`` (the n hinted pixels in row-major order), each the value :meth:`spread` gives at that
        pixel from all the other hinted pixels.

        With M = I - (1 - leak) W and the hinted pixels' Schur complement S = M_HH - M_HF M_FF^-1 M_FH (one
        factorisation, n solves), freeing pixel j alone leaves S_jj u_j + sum_k!=j S_jk v_k = 0, so
        u_j = v_j - (S v)_j / S_jj: the leave-one-out formula of a Gaussian Markov random field.
        """
        hinted = np.asarray(hinted, bool).reshape(-1)
        flat = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)[:, hinted]
        rows = self._system(leak)[hinted]
        schur = rows[:, hinted].toarray()
        if not hinted.all():
            lu, a_free_hinted = self._factor(hinted, leak)
            schur -= rows[:, ~hinted] @ lu.solve(a_free_hinted.toarray())
        return flat - (flat @ schur.T) / np.diag(schur)


def faded(spread, fade):
    """:meth:`Propagator.spread` of ``[corrections; 1]`` ``[C + 1, ...]`` -> the corrections' weighted mean
    S(c) / S(1) times the reach g = S(1)^2 (1 + fade^2) / (S(1)^2 + fade^2): ``[C, ...]``."""
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


def hint_points(hinted, hint_plane):
    """Each hint (a connected hinted region) as one pixel: the region's pixel nearest its centre, holding
    the region's mean colour -> (points ``[h, w]`` bool, plane ``[2, h, w]``)."""
    labels, _ = scipy.ndimage.label(hinted)
    points = np.zeros(hinted.shape, bool)
    plane = np.zeros(hint_plane.shape)
    for index, region in enumerate(scipy.ndimage.find_objects(labels), start=1):
        inside = labels[region] == index
        ys, xs = np.nonzero(inside)
        centre = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
        y, x = ys[centre] + region[0].start, xs[centre] + region[1].start
        points[y, x] = True
        plane[:, y, x] = hint_plane[:, region[0], region[1]][:, inside].mean(1)
    return points, plane


def line_fit(target, start, end):
    """The least-squares ``b`` in [0, 1] of ``target`` ~ ``start`` + b (``end`` - ``start``) (arrays of one
    shape): the closed form sum r . d / sum |d|^2 (r = target - start, d = end - start), clipped; 1 when
    ``end`` = ``start`` everywhere (nothing to choose)."""
    r, d = np.asarray(target) - start, np.asarray(end) - start
    den = float((d * d).sum())
    return float(np.clip(float((r * d).sum()) / den, 0.0, 1.0)) if den > 1e-12 else 1.0


def leave_one_out(lightness, hint_plane, hinted, planes, settings, predict):
    """Each hint predicted from the others, at ``settings['loo_side']`` pixels on the short side.

    Inputs at the working size (numpy): ``planes`` ``[C, h, w]`` that ``predict`` needs (the prediction,
    its certainty), resized with the rest.  Each hint becomes one pixel (:func:`hint_points`), so a hint
    is never predicted from its own neighbouring pixels.  ``predict(small_l, points, small_h,
    small_planes)`` -> a list of planes ``[2, n]``: at each of the n points (row-major), the arm's value
    from every other point (:meth:`Propagator.held_out`).  Returns (the hints ``[2, n]``, that list), or
    None with fewer than two hints (no hint to predict from another).
    """
    size = working_size(*lightness.shape, settings['loo_side'])
    small_l = resize_lightness(torch.from_numpy(lightness), size)
    small_h, small_mask = resize_hints(torch.from_numpy(hint_plane * hinted), torch.from_numpy(hinted * 1.0), size)
    small_planes = [resize_plane(torch.from_numpy(np.asarray(p, dtype=np.float64)), size) for p in planes]
    points, small_h = hint_points(small_mask, small_h)
    if points.sum() < 2:
        return None
    return small_h[:, points], predict(small_l, points, small_h, small_planes)


def shrinkage_factor(lightness, hint_plane, hinted, prediction, settings):
    """The per-photo ``a`` of the ``shrinkage`` arm, by :func:`leave_one_out` on the hints.

    For hint j left out, Levin from the other hints predicts it as a P + S_j(h - a P) =
    S_j(h) + a (P - S_j(P)) (S_j: Levin's system with the other hints, linear in what it spreads): a line
    in a from S_j(h) (a = 0) to S_j(h) + P - S_j(P) (a = 1), so the least-squares a over every hint is
    :func:`line_fit`'s.  1 (the prediction kept whole) when the hints say nothing about it: a single
    hint has no other hint to be predicted from, and a correction is no evidence against the prediction
    elsewhere.
    """
    def predict(small_l, points, small_h, planes):
        held = Propagator.of(small_l).held_out(points, np.concatenate([small_h, planes[0]]))
        return [held[:2], held[:2] + planes[0][:, points] - held[2:]]
    held = leave_one_out(lightness, hint_plane, hinted, [prediction], settings, predict)
    return 1.0 if held is None else line_fit(held[0], *held[1])


def stacking_weight(lightness, hint_plane, hinted, prediction, certainty, settings):
    """The per-photo ``b`` of the ``stacked`` arm, (1 - b) ``levin`` + b ``confidence``, by
    :func:`leave_one_out` on the hints: each hint predicted by both arms from the other hints, and b the
    least-squares blend of those predictions (:func:`line_fit`; Breiman 1996's stacked regression with two
    members).  1 (``confidence``, which keeps a lone click inside its region) with a single hint.  Inputs
    at the working size (numpy); certainty ``[h, w]``.
    """
    def predict(small_l, points, small_h, planes):
        prior = planes[1] * planes[0]                      # c P
        ones = np.ones((1,) + small_l.shape)
        spread = Propagator.of(small_l, settings['variance_scale']).held_out(
            points, np.concatenate([small_h - prior, ones]), leak_at(small_l.shape, settings))
        return [Propagator.of(small_l).held_out(points, small_h), prior[:, points] + faded(spread, settings['fade'])]
    held = leave_one_out(lightness, hint_plane, hinted, [prediction, np.asarray(certainty)[None]], settings, predict)
    return 1.0 if held is None else line_fit(held[0], *held[1])


def confidence(probs, heads=1):
    """Bin probabilities ``[heads * K, h, w]`` (torch; a one-hot model has two heads, hue and chroma) ->
    ``[h, w]`` in [0, 1]: 1 - entropy / log K, averaged over the heads: 1 for a certain bin, 0 for a flat
    distribution."""
    p = probs.float().clamp_min(1e-12)
    p = p.reshape(heads, p.shape[0] // heads, *p.shape[1:])
    entropy = -(p * p.log()).sum(1) / np.log(p.shape[1])
    return (1 - entropy).mean(0).clamp(0, 1)


def arms_needed(methods):
    """The arms computing ``methods`` takes: each method and the arms it blends (:data:`BLENDED_ARMS`)."""
    return list(dict.fromkeys(arm for m in methods for arm in (m,) + BLENDED_ARMS.get(m, ())))


def fused_planes(methods, lightness, hint_plane, hinted, prediction, certainty=None, settings=None):
    """Arms of :data:`HINT_METHODS` at the working size -> {method: fused chroma plane ``[2, h, w]``} (numpy).

    lightness ``[h, w]``, hint_plane ``[2, h, w]``, hinted ``[h, w]`` bool, prediction ``[2, h, w]``,
    certainty ``[h, w]`` (the ``confidence`` and ``stacked`` arms').  ``levin`` is S(h) with Levin's own
    system; ``corrections``, ``shrinkage`` and ``confidence`` are ``w P + S'(h - w P)`` for their weight w
    (1, a, c), S' spreading with ``settings``' ``fade`` and ``leak`` (:meth:`Propagator.spread_corrections`);
    ``shrinkage`` leaks a times as much: a prediction the hints distrust (a ~ 0) lets them reach as far as
    Levin's, one they trust is kept where they do not reach; ``stacked`` is (1 - b) ``levin`` + b
    ``confidence``.  Arms with the same leak share one factorisation.  No hinted pixel: the prediction
    itself (``levin``: grey).
    """
    settings = settings or config.HINT_PROPAGATION
    unknown = [m for m in methods if m not in HINT_METHODS]
    if unknown:
        raise ValueError('unknown hint method %r (choose from %s)' % (unknown[0], ', '.join(HINT_METHODS)))
    if not hinted.any():
        return {m: np.zeros_like(prediction) if m == 'levin' else prediction for m in methods}
    needed = arms_needed(methods)
    leak, fade = leak_at(lightness.shape, settings), settings['fade']
    out = {}
    if 'levin' in needed:
        out['levin'] = Propagator.of(lightness).spread(hinted, hint_plane)
    propagator = Propagator.of(lightness, settings['variance_scale'])
    weights, leaks = {'corrections': 1.0}, {'corrections': leak, 'confidence': leak}
    if 'shrinkage' in needed:
        weights['shrinkage'] = shrinkage_factor(lightness, hint_plane, hinted, prediction, settings)
        leaks['shrinkage'] = weights['shrinkage'] * leak
    if 'confidence' in needed:
        weights['confidence'] = np.asarray(certainty, dtype=np.float64)[None]
    arms = [m for m in needed if m in weights]
    for arm_leak in dict.fromkeys(leaks[m] for m in arms):
        group = [m for m in arms if leaks[m] == arm_leak]
        priors = [weights[m] * prediction for m in group]
        corrections = propagator.spread_corrections(hinted, np.concatenate([hint_plane - p for p in priors]),
                                                    arm_leak, fade)
        for i, (m, prior) in enumerate(zip(group, priors)):
            out[m] = prior + corrections[2 * i:2 * i + 2]
    if 'stacked' in needed:
        b = stacking_weight(lightness, hint_plane, hinted, prediction, certainty, settings)
        out['stacked'] = (1.0 - b) * out['levin'] + b * out['confidence']
    return {m: out[m] for m in methods}
