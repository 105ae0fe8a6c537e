"""Colour targets: the bins, the batch encoder on the device, and their fitting to a dataset.

* Bins (``-b/--binning``, ``-k/--numbins``): :class:`GMMBins` (``soft``: K Gaussians
  fitted to the data's (H, C) pixels, posteriors as targets; ``uniform``: a sqrt(K) x sqrt(K)
  grid of equal Gaussians) and :class:`OneHotBins` (``one-hot``: K hue bins and K chroma
  bins, integer labels).  Their ``state()`` is what a checkpoint keeps (plain tensors).
* ``ColorEncoder.encode`` turns a whole uint8 batch, already on the training
  device, into the network input (mean-centred L, ``[B, 1, H, W]``) and the
  target: bin posteriors ``[B, K, H, W]`` or labels ``[B, 2, H, W]``; ``to_rgb`` is the way back.
* :func:`fit_encoder`: the encoder of a dataset's colour statistics (mean L, the GMM,
  the bin prior of class rebalancing), cached as plain arrays in the run folder.
"""
import math
import os

import numpy as np
import torch

import utils


BINNINGS = ('soft', 'uniform', 'one-hot')
GMM_SPACES = ('polar', 'plane')   # GMM fitted on (H, C), or on the chroma plane (C cos 2piH, C sin 2piH)

ENCODE_BLOCK_PIXELS_CPU = 8192  # pixels per block of GMMBins.encode on a CPU (cache-sized temporaries)
# Pruned posteriors (CPU): the GMM's square ((H, C) in [0, 1]^2, the plane's [-1, 1]^2) is cut into
# PRUNE_GRID^2 cells; a component whose log-posterior is provably PRUNE_LOG_MARGIN below the best one
# everywhere in a cell gets exactly 0 there (each such posterior < e^-20 = 2e-9, all of them < K * 2e-9).
PRUNE_GRID = 64
PRUNE_LOG_MARGIN = 20.0
PRUNE_BOX_PAD = 1e-6  # cells reach this far past their edges: float32 low-pass output may be 1 + 2e-7


# --------------------------------------------------------------------------
# colour bins
# --------------------------------------------------------------------------

def quadratic_range_over_boxes(coefficients, h0, h1, c0, c1):
    """(min, max) over each box [h0, h1] x [c0, c1] of q_k = (a d_h + b d_c)^2 + e d_c^2.

    ``coefficients [6, K]`` as :meth:`GMMBins._coefficients`; box corners
    broadcast against K (e.g. ``[cells, 1]``) -> two ``[cells, K]`` arrays.
    q_k is convex: its maximum is at a corner; its minimum is 0 where the mean
    is inside, else on an edge, at the edge's own minimiser clamped to the edge.
    """
    mu_h, mu_c, a, b, e, _ = coefficients
    qa, qb, qc = a * a, a * b, b * b + e            # q = qa d_h^2 + 2 qb d_h d_c + qc d_c^2

    def q(h, c):
        d_h, d_c = h - mu_h, c - mu_c
        return qa * d_h * d_h + 2 * qb * d_h * d_c + qc * d_c * d_c

    q_max = np.maximum.reduce([q(h, c) for h in (h0, h1) for c in (c0, c1)])
    on_edges = [q(h, np.clip(mu_c - qb * (h - mu_h) / qc, c0, c1)) for h in (h0, h1)]
    on_edges += [q(np.clip(mu_h - qb * (c - mu_c) / qa, h0, h1), c) for c in (c0, c1)]
    inside = (h0 <= mu_h) & (mu_h <= h1) & (c0 <= mu_c) & (mu_c <= c1)
    return np.where(inside, 0.0, np.minimum.reduce(on_edges)), q_max


class GMMBins:
    """K Gaussian bins with full 2x2 covariances; posteriors are soft targets.

    ``weights [K]``, ``means [K, 2]``, ``covariances [K, 2, 2]`` (float64 numpy), in the
    coordinates of ``space``: ``'polar'`` (H, C), as the seed, or ``'plane'``
    (C cos 2piH, C sin 2piH), where reds at H = 0.98 and H = 0.02 are neighbours.
    Pixels always come in and centres go out as (H, C).
    """

    binning = 'soft'

    def __init__(self, weights, means, covariances, binning='soft', space='polar'):
        self.weights = np.asarray(weights, np.float64)
        self.means = np.asarray(means, np.float64)
        self.covariances = np.asarray(covariances, np.float64)
        self.binning = binning
        if space not in GMM_SPACES:
            raise ValueError('unknown gmm_space %r (choose from %s)' % (space, GMM_SPACES))
        self.space = space
        self.square = (0.0, 1.0) if space == 'polar' else (-1.0, 1.0)   # where the pixels' coordinates lie
        k = len(self.weights)
        if self.means.shape != (k, 2) or self.covariances.shape != (k, 2, 2):
            raise ValueError('GMM arrays do not describe K=%d 2-D components' % k)
        # log N(x | mu, Sigma) = -0.5 |U^T (x - mu)|^2 + log det U - log 2 pi, U U^T = Sigma^-1, U lower
        self._prec_chol = np.stack([np.linalg.cholesky(np.linalg.inv(c)) for c in self.covariances])
        self._log_norm = (np.log(self.weights) - math.log(2 * math.pi)
                          + np.log(self._prec_chol[:, 0, 0] * self._prec_chol[:, 1, 1]))
        self._device_cache = {}

    @property
    def num_bins(self):
        return len(self.weights)

    @property
    def num_outputs(self):
        return self.num_bins

    @property
    def centres(self):
        """``[K, 2]`` (H, C) of each bin, for decoding."""
        if self.space == 'polar':
            return torch.from_numpy(self.means).float()
        hue, chroma = utils.plane_to_hue_chroma(torch.from_numpy(self.means.T.copy()))
        return torch.stack([hue, chroma], 1).float()

    @property
    def centres_on_plane(self):
        """``[K, 2]`` float64 numpy: each bin's centre on the chroma plane."""
        if self.space == 'plane':
            return self.means
        return hue_chroma_to_plane_np(self.means)

    def coordinates(self, hc):
        """(H, C) pixels ``[N, 2]`` (numpy) -> this GMM's coordinates ``[N, 2]``."""
        return np.asarray(hc, np.float64) if self.space == 'polar' else hue_chroma_to_plane_np(hc)

    @classmethod
    def fit(cls, hc, num_bins, seed, space='polar'):
        """Fit scikit-learn's GaussianMixture (full covariance, k-means init) on ``[N, 2]`` (H, C)
        pixels, in the coordinates of ``space``."""
        from sklearn.mixture import GaussianMixture
        if len(hc) < num_bins:
            raise ValueError('%d sampled pixels cannot fit %d GMM bins: sample more pixels '
                             '(stats_pixels_per_image) or use fewer bins (-k)' % (len(hc), num_bins))
        gmm = GaussianMixture(n_components=num_bins, covariance_type='full',
                              init_params='kmeans', random_state=seed)
        gmm.fit(hc if space == 'polar' else hue_chroma_to_plane_np(hc))
        return cls(gmm.weights_, gmm.means_, gmm.covariances_, space=space)

    @classmethod
    def uniform_grid(cls, num_bins, sigma='default'):
        """``uniform`` binning: a sqrt(K) x sqrt(K) grid of centres on [0, 1]^2, equal weights.

        ``sigma='default'`` is the radius of a bin's Voronoi cell, spacing / sqrt(2).
        """
        check_num_bins('uniform', num_bins)
        side = int(round(math.sqrt(num_bins)))
        axis = np.linspace(0.0, 1.0, side)
        hh, cc = np.meshgrid(axis, axis, indexing='ij')
        if sigma in (None, 'default'):
            sigma = (axis[1] - axis[0]) / math.sqrt(2.0)
        cov = np.tile(np.eye(2) * float(sigma) ** 2, (num_bins, 1, 1))
        return cls(np.full(num_bins, 1.0 / num_bins), np.stack([hh.ravel(), cc.ravel()], 1),
                   cov, binning='uniform')

    @classmethod
    def load(cls, path):
        """A GMM saved by :meth:`save` (files without ``space`` are from before it: polar)."""
        with np.load(path, allow_pickle=False) as z:
            space = str(z['space']) if 'space' in z.files else 'polar'
            return cls(z['weights'], z['means'], z['covariances'], space=space)

    def save(self, path):
        tmp = path + '.tmp%d.npz' % os.getpid()
        extra = {} if self.space == 'polar' else {'space': np.array(self.space)}   # polar: the seed's files
        np.savez(tmp, weights=self.weights, means=self.means, covariances=self.covariances, **extra)
        os.replace(tmp, path)

    def _coefficients(self):
        """``[6, K]`` float64: mu_h, mu_c, a, b, e, log_norm of each component.

        (h, c) stand for the GMM's two coordinates (H, C, or the plane's two axes).
        With U lower triangular (U U^T = Sigma^-1) and d = (h - mu_h, c - mu_c),
        |U^T d|^2 / 2 = (a d_h + b d_c)^2 + e d_c^2, a = U00/sqrt2, b = U10/sqrt2, e = U11^2/2,
        and log w_k N_k = log_norm_k - that.
        """
        u = self._prec_chol
        return np.stack([self.means[:, 0], self.means[:, 1], u[:, 0, 0] / math.sqrt(2), u[:, 1, 0] / math.sqrt(2),
                         u[:, 1, 1] ** 2 / 2, self._log_norm])

    def _params_on(self, device):
        """The coefficients as ``[K, 1]`` float32 columns on ``device`` (cached)."""
        key = ('dense', str(device))
        if key not in self._device_cache:
            self._device_cache[key] = [torch.as_tensor(col, dtype=torch.float32, device=device).view(-1, 1)
                                       for col in self._coefficients()]
        return self._device_cache[key]

    def candidates(self, grid=PRUNE_GRID, margin=PRUNE_LOG_MARGIN):
        """``[grid^2, M]`` component indices per cell, and which of them are candidates.

        Cell ``i * grid + j`` covers the first coordinate in [i, i+1] / grid, the second in
        [j, j+1] / grid of :attr:`square` (the unit square: H, C).
        Component k is a candidate there unless max over the cell of its log
        w_k N_k is below max_j min over the cell of log w_j N_j minus ``margin``
        (then its posterior is < e^-margin at every point of the cell).  Each
        row lists the candidates first, then other components to fill M slots.
        """
        edges = np.linspace(*self.square, grid + 1)
        pad = PRUNE_BOX_PAD
        h0, c0 = np.meshgrid(edges[:-1] - pad, edges[:-1] - pad, indexing='ij')
        h1, c1 = np.meshgrid(edges[1:] + pad, edges[1:] + pad, indexing='ij')
        q_min, q_max = quadratic_range_over_boxes(self._coefficients(), *(x.reshape(-1, 1) for x in (h0, h1, c0, c1)))
        log_norm = self._log_norm
        keep = log_norm - q_min >= (log_norm - q_max).max(1, keepdims=True) - margin   # [cells, K]
        order = np.argsort(~keep, axis=1, kind='stable')[:, :keep.sum(1).max()]
        return order, np.take_along_axis(keep, order, 1)

    def _pruned_params_on(self, device):
        """(6 ``[cells, M]`` float32 tables of each cell's slots' coefficients, log_norm -inf off
        the candidates; ``[cells, M]`` int64 component indices), cached."""
        key = ('pruned', str(device))
        if key not in self._device_cache:
            order, keep = self.candidates()
            tables = self._coefficients()[:, order]                      # [6, cells, M]
            tables[5] = np.where(keep, tables[5], -np.inf)
            self._device_cache[key] = ([torch.as_tensor(t, dtype=torch.float32, device=device) for t in tables],
                                       torch.as_tensor(order, device=device))
        return self._device_cache[key]

    def prunes(self, x0, x1):
        """Whether :meth:`encode` computes only the candidates: on a CPU, with every cell at
        most K/2 candidates and the GMM coordinates ``[B, n]`` inside the cells' boxes."""
        if x0.device.type != 'cpu' or x0.numel() == 0:
            return False
        if self._pruned_params_on(x0.device)[1].shape[1] > self.num_bins // 2:
            return False
        low, high = self.square[0] - PRUNE_BOX_PAD, self.square[1] + PRUNE_BOX_PAD
        return bool(x0.min() >= low and x0.max() <= high and x1.min() >= low and x1.max() <= high)

    def encode(self, hue, chroma, prune=None):
        """(H, C) ``[B, H, W]`` -> posterior over the K bins ``[B, K, H, W]`` (sums to 1).

        The pixels go to the GMM's coordinates (the chroma plane for ``space='plane'``);
        log w_k N_k(x) - in float32 but centred on each mean first (no cancellation;
        equals scikit-learn's ``predict_proba`` within 1e-4) - then a softmax over K.
        ``prune`` (default :meth:`prunes`) computes only each cell's candidates
        (:meth:`candidates`; the coordinates must lie in :attr:`square`) and scatters them
        into zeros; otherwise all K, in blocks of pixels whose temporaries stay in
        cache on a CPU.
        """
        batch, image_shape, n_pix = hue.shape[0], hue.shape[1:], hue[0].numel()
        hue, chroma = hue.reshape(batch, -1).float(), chroma.reshape(batch, -1).float()
        if self.space == 'plane':
            angle = hue * (2.0 * math.pi)                      # from here on the plane's two axes
            hue, chroma = chroma * torch.cos(angle), chroma * torch.sin(angle)
        if prune is None:
            prune = self.prunes(hue, chroma)
        fill = self._encode_pruned if prune else self._encode_dense
        out = (torch.zeros if prune else torch.empty)(batch, self.num_bins, n_pix, dtype=torch.float32,
                                                     device=hue.device)
        block = ENCODE_BLOCK_PIXELS_CPU if hue.device.type == 'cpu' else max(n_pix, 1)
        for i in range(batch):
            for start in range(0, n_pix, block):
                stop = min(start + block, n_pix)
                fill(hue[i, start:stop], chroma[i, start:stop], out[i, :, start:stop])
        return out.view(batch, self.num_bins, *image_shape)

    def _encode_dense(self, hue, chroma, out):
        """``[n]`` H, C -> ``out [K, n]`` (all components)."""
        mu_h, mu_c, a, b, e, log_norm = self._params_on(hue.device)
        d_c = chroma - mu_c                                                      # [K, n]
        logp = (hue - mu_h).mul_(a).addcmul_(d_c, b).square_()
        logp = torch.sub(log_norm, logp.addcmul_(d_c.square_(), e), out=logp)
        torch.softmax(logp, 0, out=out)

    def _encode_pruned(self, hue, chroma, out):
        """``[n]`` coordinates in :attr:`square` -> the candidates' posteriors written into zeros ``out [K, n]``."""
        tables, index = self._pruned_params_on(hue.device)
        grid = PRUNE_GRID
        low, scale = self.square[0], grid / (self.square[1] - self.square[0])
        cell = ((hue - low) * scale).long().clamp_(0, grid - 1).mul_(grid).add_(
            ((chroma - low) * scale).long().clamp_(0, grid - 1))
        mu_h, mu_c, a, b, e, log_norm = (t.index_select(0, cell) for t in tables)   # each [n, M]
        d_c = chroma[:, None] - mu_c
        logp = (hue[:, None] - mu_h).mul_(a).addcmul_(d_c, b).square_()
        logp = torch.sub(log_norm, logp.addcmul_(d_c.square_(), e), out=logp)
        probs = torch.softmax(logp, 1, out=d_c)
        out.T.scatter_(1, index.index_select(0, cell), probs)

    def decode(self, probs, method='annealed', temperature=utils.DEFAULT_TEMPERATURE):
        """``[B, K, H, W]`` probabilities -> (hue, chroma) ``[B, H, W]``."""
        return utils.decode_bins(probs, self.centres, method, temperature)

    def empirical_prior(self, hc, sigma):
        """Bin prior ``[K]`` from pixels ``[N, 2]``: mean posterior, smoothed over bin centres.

        The smoothing is a Gaussian of width ``sigma`` on the chroma plane between centres.
        """
        post = self.encode(torch.from_numpy(hc[:, 0]).view(1, -1, 1),
                           torch.from_numpy(hc[:, 1]).view(1, -1, 1))
        prior = post.double().mean(dim=(0, 2, 3)).numpy()
        if sigma:
            ab = self.centres_on_plane                                                  # [K, 2]
            dist2 = ((ab[:, None, :] - ab[None, :, :]) ** 2).sum(-1)
            kernel = np.exp(-0.5 * dist2 / sigma ** 2)
            prior = kernel @ prior / kernel.sum(1)
        return prior / prior.sum()

    def state(self):
        """Plain tensors for a checkpoint (``torch.load(weights_only=True)`` reads them)."""
        return {'binning': self.binning, 'weights': torch.from_numpy(self.weights),
                'means': torch.from_numpy(self.means), 'covariances': torch.from_numpy(self.covariances),
                'space': self.space}


class OneHotBins:
    """Separate hue and chroma bins, edges ``linspace(0, 1, K)``; labels ``digitize - 1``.

    The network has two heads (2K outputs: hue scores then chroma scores).
    """

    binning = 'one-hot'

    def __init__(self, num_bins):
        if num_bins < 2:
            raise ValueError('one-hot binning needs K >= 2')
        self.num_bins = num_bins
        self.edges = torch.linspace(0.0, 1.0, num_bins, dtype=torch.float64)
        upper = torch.cat([self.edges[1:], self.edges[-1:]])
        self.bin_centres = ((self.edges + upper) / 2).float()

    @property
    def num_outputs(self):
        return 2 * self.num_bins

    def labels(self, x):
        """Values ``[...]`` in [0, 1] -> bin indices (numpy.digitize(x, edges) - 1)."""
        edges = self.edges.to(device=x.device, dtype=x.dtype)
        return (torch.bucketize(x, edges, right=True) - 1).clamp_(0, self.num_bins - 1)

    def encode(self, hue, chroma):
        """(H, C) ``[B, H, W]`` -> labels ``[B, 2, H, W]`` (hue bin, chroma bin), int64."""
        return torch.stack([self.labels(hue), self.labels(chroma)], dim=1)

    def split_heads(self, scores):
        """``[B, 2K, H, W]`` network output -> (hue scores, chroma scores)."""
        return scores[:, :self.num_bins], scores[:, self.num_bins:]

    def decode(self, probs, method='annealed', temperature=utils.DEFAULT_TEMPERATURE):
        """``[B, 2K, H, W]`` per-head probabilities -> (hue, chroma) ``[B, H, W]``."""
        hue_p, chroma_p = self.split_heads(probs)
        return utils.decode_hue_and_chroma_heads(hue_p, chroma_p, self.bin_centres,
                                                 self.bin_centres, method, temperature)

    def state(self):
        return {'binning': self.binning, 'num_bins': self.num_bins}


def check_num_bins(binning, num_bins):
    """Fail early, before anything is written, on a K the binning cannot take."""
    if binning not in BINNINGS:
        raise ValueError('unknown binning %r (choose from %s)' % (binning, BINNINGS))
    side = int(round(math.sqrt(num_bins)))
    if binning == 'uniform' and (side * side != num_bins or side < 2):
        raise ValueError('uniform binning needs K to be a perfect square >= 4, got %d' % num_bins)
    if num_bins < 2:
        raise ValueError('K must be at least 2, got %d' % num_bins)


def bins_from_state(state):
    """Inverse of ``bins.state()`` (checkpoint -> bins object)."""
    if state['binning'] == 'one-hot':
        return OneHotBins(int(state['num_bins']))
    return GMMBins(state['weights'].numpy(), state['means'].numpy(), state['covariances'].numpy(),
                   binning=state['binning'], space=state.get('space', 'polar'))   # older checkpoints: polar


def hue_chroma_to_plane_np(hc):
    """(H, C) ``[N, 2]`` -> (C cos 2piH, C sin 2piH) ``[N, 2]`` float64 numpy."""
    hc = np.asarray(hc, np.float64)
    angle = 2.0 * math.pi * hc[:, 0]
    return np.stack([hc[:, 1] * np.cos(angle), hc[:, 1] * np.sin(angle)], 1)


# --------------------------------------------------------------------------
# batch encoder (runs on the training device)
# --------------------------------------------------------------------------

class ColorEncoder:
    """uint8 RGB batch -> (mean-centred L ``[B, 1, H, W]``, target); also the way back."""

    def __init__(self, bins, mean_l, img_lowpass=None, class_weights=None):
        self.bins, self.mean_l, self.img_lowpass = bins, float(mean_l), img_lowpass
        self.class_weights = None if class_weights is None else torch.as_tensor(
            np.asarray(class_weights), dtype=torch.float32)

    @property
    def binning(self):
        return self.bins.binning

    @property
    def num_bins(self):
        return self.bins.num_bins

    @property
    def num_outputs(self):
        return self.bins.num_outputs

    def rgb_float(self, rgb_uint8):
        return rgb_uint8.float().div_(255.0)

    def lightness_input(self, lightness):
        """L ``[B, H, W]`` -> network input ``[B, 1, H, W]`` (mean-centred)."""
        return (lightness - self.mean_l).unsqueeze(1)

    def encode(self, rgb_uint8, target_dtype=torch.float32):
        """uint8 ``[B, 3, H, W]`` (on any device) -> (input ``[B, 1, H, W]``, target).

        Target: ``[B, K, H, W]`` posteriors in ``target_dtype`` or ``[B, 2, H, W]`` labels.
        Computed in float32 also inside an autocast region (only the storage is ``target_dtype``).
        """
        with torch.autocast(rgb_uint8.device.type, enabled=False):
            hue, chroma, lightness = utils.rgb_to_hcl(self.rgb_float(rgb_uint8))
        return self.encode_hcl(hue, chroma, lightness, target_dtype)

    def encode_hcl(self, hue, chroma, lightness, target_dtype=torch.float32):
        """(hue, chroma, lightness) ``[B, H, W]`` -> (input, target) as :meth:`encode` (a recoloured batch's)."""
        with torch.autocast(hue.device.type, enabled=False):   # bf16 low-pass matmuls move bins
            hue, chroma = utils.lowpass_hue_chroma(hue, chroma, self.img_lowpass)
            target = self.bins.encode(hue, chroma)
        if target.is_floating_point():
            target = target.to(target_dtype)
        return self.lightness_input(lightness), target

    def probabilities(self, scores):
        """Network scores -> per-pixel bin probabilities (softmax per head)."""
        if self.binning == 'one-hot':
            return torch.cat([torch.softmax(s.float(), 1) for s in self.bins.split_heads(scores)], 1)
        return torch.softmax(scores.float(), dim=1)

    def to_rgb(self, net_input, probs, method='annealed', temperature=utils.DEFAULT_TEMPERATURE):
        """(input ``[B, C, H, W]``, L first (hint models: then the hints), probabilities) -> RGB
        ``[B, 3, H, W]`` in [0, 1]."""
        hue, chroma = self.bins.decode(probs, method, temperature)
        return utils.hue_chroma_to_rgb(hue, chroma, net_input[:, 0].float() + self.mean_l)

    def state(self):
        """Everything needed to rebuild this encoder, as plain tensors and builtins."""
        return {'bins': self.bins.state(), 'mean_l': self.mean_l, 'img_lowpass': self.img_lowpass,
                'class_weights': self.class_weights}

    @classmethod
    def from_state(cls, state):
        return cls(bins_from_state(state['bins']), state['mean_l'], state['img_lowpass'],
                   state.get('class_weights'))


# --------------------------------------------------------------------------
# fitting the encoder to a dataset
# --------------------------------------------------------------------------

def fit_encoder(dataset, num_images, pixels_per_image, seed, rebalance_lambda=None,
                rebalance_sigma=None, inherited=None):
    """The :class:`ColorEncoder` of ``dataset``'s colour statistics and this run's settings.

    ``dataset`` (a ``data_loader.ColorizeImageNet``) names the bins (``bins``,
    ``num_hc_bins``, ``gmm_space``, ``uniform_sigma``), the low-pass, the cache files
    (``gmm_path``, ``mean_l_path``) and gives pixels (``sample_pixels``).
    Bins and mean L come from ``inherited`` (the previous stage's encoder), or
    are loaded from ``mean_l_path`` / ``gmm_path`` when those files exist, or
    are estimated from sampled pixels; either way they are cached there
    (plain ``.npy`` / ``.npz`` arrays, never pickles), as is the bin prior of
    class rebalancing.  ``img_lowpass`` and the rebalancing are always this run's.
    """
    samples = []

    def pixels():  # sampled once, and only when something must be estimated
        if not samples:
            samples.append(dataset.sample_pixels(num_images, pixels_per_image, seed))
        return samples[0]

    if inherited is not None:
        bins, mean_l = inherited.bins, inherited.mean_l
        if bins.binning == 'soft' and dataset.gmm_path:
            bins.save(dataset.gmm_path)
    else:
        if dataset.mean_l_path and os.path.isfile(dataset.mean_l_path):
            mean_l = float(np.load(dataset.mean_l_path))
        else:
            mean_l = float(pixels()[:, 2].mean())
        if dataset.bins == 'soft':
            if dataset.gmm_path and os.path.isfile(dataset.gmm_path):
                bins = GMMBins.load(dataset.gmm_path)
                if bins.num_bins != dataset.num_hc_bins or bins.space != dataset.gmm_space:
                    raise ValueError('%s holds %d GMM bins fitted in %s space, the run asks for %d in %s '
                                     'space (gmm_space)' % (dataset.gmm_path, bins.num_bins, bins.space,
                                                            dataset.num_hc_bins, dataset.gmm_space))
            else:
                bins = GMMBins.fit(pixels()[:, :2], dataset.num_hc_bins, seed, dataset.gmm_space)
                if dataset.gmm_path:
                    bins.save(dataset.gmm_path)
        elif dataset.bins == 'uniform':
            bins = GMMBins.uniform_grid(dataset.num_hc_bins, dataset.uniform_sigma)
        else:
            bins = OneHotBins(dataset.num_hc_bins)
    if dataset.mean_l_path:
        save_array(dataset.mean_l_path, np.array(mean_l))

    class_weights = None
    if rebalance_lambda:
        if bins.binning == 'one-hot':
            raise ValueError('class rebalancing needs joint bins (soft or uniform), not one-hot')
        cached = prior_path(dataset.gmm_path) if dataset.gmm_path else None
        prior = np.load(cached) if cached and os.path.isfile(cached) else None
        if prior is None or prior.shape != (bins.num_bins,):  # absent, or left by another K
            prior = bins.empirical_prior(pixels()[:, :2], rebalance_sigma)
            if cached:
                save_array(cached, prior)
        class_weights = rebalancing_weights(prior, rebalance_lambda)
    return ColorEncoder(bins, mean_l, dataset.img_lowpass, class_weights)


def rebalancing_weights(prior, lam):
    """Zhang et al. 2016: w ~ ((1 - lam) p + lam / K)^-1, scaled so E_p[w] = 1."""
    prior = np.asarray(prior, np.float64)
    weights = 1.0 / ((1.0 - lam) * prior + lam / len(prior))
    return weights / (prior * weights).sum()


def rgb_to_hcl_flat(rgb):
    """``[3, 1, N]`` float RGB -> numpy (h, c, l) vectors of length N."""
    h, c, l = utils.rgb_to_hcl(rgb)
    return h.reshape(-1).numpy(), c.reshape(-1).numpy(), l.reshape(-1).numpy()


def prior_path(gmm_path):
    return os.path.join(os.path.dirname(gmm_path), 'bin_prior.npy')


def save_array(path, array):
    """np.save through a temporary file in the same folder, then an atomic rename."""
    tmp = path + '.tmp%d.npy' % os.getpid()
    np.save(tmp, array)
    os.replace(tmp, path)

