"""Colour conversions, bin decoding, metrics and plots.

Everything here is a small pure function on torch tensors (CPU or CUDA) or
numpy arrays, tested one by one against scikit-image / scikit-learn / numpy.

Colour model (after Larsson et al.'s autocolorize): RGB -> HSV, then
hue H in [0, 1), chroma C = V * S = max - min, lightness L = V - C / 2.
Images are channel-first: ``[..., 3, H, W]`` with values in [0, 1].
"""
import csv
import functools
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

TWO_PI = 2.0 * math.pi


# --------------------------------------------------------------------------
# colour conversions
# --------------------------------------------------------------------------

def _wrap_hue(h):
    """Map hue into [0, 1): float rounding can turn -1e-9 % 1 into 1.0."""
    h = torch.remainder(h, 1.0)
    return torch.where(h >= 1.0, h - 1.0, h)


def rgb_to_hcl(rgb):
    """RGB ``[..., 3, H, W]`` in [0, 1] -> (hue, chroma, lightness), each ``[..., H, W]``.

    Hue follows ``skimage.color.rgb2hsv`` (0 where the pixel is grey).
    """
    r, g, b = rgb.unbind(-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # precedence as in skimage: blue over green over red where maxima tie
    hue = torch.where(r == maxc, (g - b) / safe, torch.zeros_like(r))
    hue = torch.where(g == maxc, 2.0 + (b - r) / safe, hue)
    hue = torch.where(b == maxc, 4.0 + (r - g) / safe, hue)
    hue = torch.where(chroma > 0, _wrap_hue(hue / 6.0), torch.zeros_like(hue))
    return hue, chroma, (maxc + minc) / 2.0


def hcl_to_rgb(hue, chroma, lightness):
    """Exact inverse of :func:`rgb_to_hcl`: ``[..., H, W]`` x3 -> RGB ``[..., 3, H, W]``.

    Chroma beyond what L allows (C <= 2 min(L, 1 - L)) is cut, so a predicted
    colour never changes the lightness.  Uses V = L + C/2 and the HSV formula
    channel_n = V - C * clip(min(k, 4 - k), 0, 1), k = (n + 6H) mod 6, n = 5, 3, 1 for R, G, B.
    """
    chroma = torch.minimum(chroma, 2.0 * torch.minimum(lightness, 1.0 - lightness))  # keeps L exact
    value = lightness + chroma / 2.0
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + 6.0 * hue, 6.0)
        channels.append(value - chroma * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, dim=-3).clamp_(0.0, 1.0)


def _plane_dim(ndim):
    """Where (a, b) are stacked: dim -3 of images, dim 0 of vectors ``[2, K]``."""
    return -3 if ndim >= 3 else 0


def hue_chroma_to_plane(hue, chroma):
    """(H, C) -> the chroma plane (a, b) = C (cos 2 pi H, sin 2 pi H), stacked on dim -3.

    Averaging colours is only meaningful here: the hue seam (0 == 1) disappears.
    """
    angle = TWO_PI * hue
    return torch.stack((chroma * torch.cos(angle), chroma * torch.sin(angle)), dim=_plane_dim(hue.ndim + 1))


def plane_to_hue_chroma(ab):
    """Chroma plane ``[..., 2, H, W]`` (or ``[2, K]``) -> (hue in [0, 1), chroma >= 0)."""
    a, b = ab.unbind(_plane_dim(ab.ndim))
    chroma = torch.hypot(a, b)
    hue = _wrap_hue(torch.atan2(b, a) / TWO_PI)
    return torch.where(chroma > 0, hue, torch.zeros_like(hue)), chroma


def hue_chroma_to_rgb(hue, chroma, lightness):
    """Alias that names the common use: predicted (H, C) + known L -> RGB."""
    return hcl_to_rgb(hue, chroma, lightness)


# --------------------------------------------------------------------------
# low-pass of the colour targets
# --------------------------------------------------------------------------

GAUSSIAN_TRUNCATE = 4.0  # kernel radius in sigmas, as scipy.ndimage / skimage


def gaussian_kernel1d(sigma, truncate=GAUSSIAN_TRUNCATE, dtype=torch.float32, device=None):
    """Normalised 1-D Gaussian, radius int(truncate * sigma + 0.5) like scipy.ndimage."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x, sigma):
    """Separable Gaussian blur of ``[B, C, H, W]`` with edge replication.

    Matches ``skimage.filters.gaussian(..., mode='nearest', truncate=4)``.
    """
    kernel = gaussian_kernel1d(sigma, dtype=x.dtype, device=x.device)
    radius = kernel.numel() // 2
    n_ch = x.shape[1]
    kx = kernel.view(1, 1, 1, -1).expand(n_ch, 1, 1, -1)
    ky = kernel.view(1, 1, -1, 1).expand(n_ch, 1, -1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode='replicate'), kx, groups=n_ch)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode='replicate'), ky, groups=n_ch)


@functools.lru_cache(maxsize=32)
def lowpass_operators(n, scale, device, dtype):
    """(shrink ``[m, n]``, grow ``[n, m]``), m = round(n / scale): the 1-D low-pass in two steps.

    Shrink = blur (sigma = scale) then bilinear to m samples; grow = bilinear
    back to n.  Built by sending unit impulses through :func:`gaussian_blur` and
    ``F.interpolate`` themselves, so they are the same operators, applied as matmuls
    (through the m samples: about 3x fewer FLOPs than one ``[n, n]`` matrix).
    """
    small = max(1, int(round(n / scale)))
    impulses = torch.eye(n, dtype=torch.float64).view(n, 1, n, 1)   # n one-column images
    shrink = F.interpolate(gaussian_blur(impulses, float(scale)), size=(small, 1), mode='bilinear',
                           align_corners=False)[:, 0, :, 0].T
    impulses = torch.eye(small, dtype=torch.float64).view(small, 1, small, 1)
    grow = F.interpolate(impulses, size=(n, 1), mode='bilinear', align_corners=False)[:, 0, :, 0].T
    return (shrink.contiguous().to(device=device, dtype=dtype), grow.contiguous().to(device=device, dtype=dtype))


def lowpass(x, scale):
    """Low-pass ``[..., H, W]``: blur with sigma = scale, shrink by scale, bilinear back.

    The reference is skimage: ``gaussian(sigma=s, mode='nearest')``, then
    ``rescale(1/s, order=1, anti_aliasing=False)`` and ``resize`` back (mode='edge').
    Both axes are separable linear maps, so it runs as
    ``G_h @ (S_h @ x @ S_w^T) @ G_w^T`` (:func:`lowpass_operators`).
    """
    if not scale or scale <= 1:
        return x
    h, w = x.shape[-2:]
    shrink_h, grow_h = lowpass_operators(h, float(scale), x.device, x.dtype)
    shrink_w, grow_w = lowpass_operators(w, float(scale), x.device, x.dtype)
    small = torch.matmul(torch.matmul(shrink_h, x), shrink_w.T)
    return torch.matmul(torch.matmul(grow_h, small), grow_w.T)


def lowpass_hue_chroma(hue, chroma, scale):
    """Low-pass (H, C) ``[B, H, W]`` on the chroma plane, so red never averages to cyan."""
    if not scale or scale <= 1:
        return hue, chroma
    return plane_to_hue_chroma(lowpass(hue_chroma_to_plane(hue, chroma), scale))


# --------------------------------------------------------------------------
# decoding a per-pixel distribution over colour bins
# --------------------------------------------------------------------------

DECODE_METHODS = ('annealed', 'mean', 'mode')
DEFAULT_TEMPERATURE = 0.38  # Zhang et al. 2016


def anneal(probs, temperature, dim=1):
    """Re-normalise p^(1/T) along ``dim`` (computed in float32 log space for small T).

    T = 1 leaves ``probs`` as they are, T -> 0 tends to the one-hot mode; T <= 0
    has no meaning (use the ``mode`` method) and is refused.
    """
    if not temperature > 0:
        raise ValueError('annealing temperature must be > 0, got %r (for T -> 0 use the mode method)'
                         % (temperature,))
    logp = torch.log(probs.float().clamp_min(1e-30)) / temperature
    return torch.softmax(logp, dim=dim).to(probs.dtype)


def decode_bins(probs, centres_hc, method='annealed', temperature=DEFAULT_TEMPERATURE):
    """Per-pixel bin probabilities ``[B, K, H, W]`` -> (hue, chroma) ``[B, H, W]``.

    ``centres_hc`` ``[K, 2]`` holds each bin's (H, C). ``mode`` takes the most
    likely bin's centre; ``mean`` the expectation and ``annealed`` the expectation
    of the annealed distribution, both on the chroma plane.
    """
    centres_hc = centres_hc.to(probs)
    if method == 'mode':
        best = probs.argmax(dim=1)
        return _wrap_hue(centres_hc[:, 0][best]), centres_hc[:, 1][best]
    if method == 'annealed':
        probs = anneal(probs, temperature)
    elif method != 'mean':
        raise ValueError('unknown decode method %r (choose from %s)' % (method, DECODE_METHODS))
    centres_ab = hue_chroma_to_plane(centres_hc[:, 0], centres_hc[:, 1])  # [2, K]
    ab = torch.einsum('bkhw,ck->bchw', probs, centres_ab)
    return plane_to_hue_chroma(ab)


def decode_hue_and_chroma_heads(hue_probs, chroma_probs, hue_centres, chroma_centres,
                                method='annealed', temperature=DEFAULT_TEMPERATURE):
    """Separate hue / chroma distributions (one-hot binning) -> (hue, chroma) ``[B, H, W]``.

    The hue expectation is taken on the unit circle, the chroma expectation on the line.
    """
    hue_centres, chroma_centres = hue_centres.to(hue_probs), chroma_centres.to(chroma_probs)
    if method == 'mode':
        return _wrap_hue(hue_centres[hue_probs.argmax(1)]), chroma_centres[chroma_probs.argmax(1)]
    if method == 'annealed':
        hue_probs, chroma_probs = anneal(hue_probs, temperature), anneal(chroma_probs, temperature)
    elif method != 'mean':
        raise ValueError('unknown decode method %r (choose from %s)' % (method, DECODE_METHODS))
    unit = hue_chroma_to_plane(hue_centres, torch.ones_like(hue_centres))  # [2, K]
    hue, _ = plane_to_hue_chroma(torch.einsum('bkhw,ck->bchw', hue_probs, unit))
    chroma = torch.einsum('bkhw,k->bhw', chroma_probs, chroma_centres)
    return hue, chroma


# --------------------------------------------------------------------------
# segmentation-style metrics over the argmax bin (as the seed / pytorch-fcn)
# --------------------------------------------------------------------------

def confusion_matrix(label_true, label_pred, n_class):
    """Integer labels (any shape, torch) -> ``[n_class, n_class]`` counts, rows = truth."""
    label_true, label_pred = label_true.reshape(-1), label_pred.reshape(-1)
    valid = (label_true >= 0) & (label_true < n_class)
    index = n_class * label_true[valid].long() + label_pred[valid].long()
    return torch.bincount(index, minlength=n_class ** 2).reshape(n_class, n_class)


def scores_from_confusion(hist):
    """Confusion matrix -> (acc, acc_cls, mean_iu, fwavacc), classes absent from both ignored."""
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diag(hist)
    with np.errstate(divide='ignore', invalid='ignore'):
        acc = diag.sum() / hist.sum()
        acc_cls = np.nanmean(diag / hist.sum(axis=1))
        iu = diag / (hist.sum(axis=1) + hist.sum(axis=0) - diag)
        mean_iu = np.nanmean(iu)
        freq = hist.sum(axis=1) / hist.sum()
        fwavacc = (freq[freq > 0] * iu[freq > 0]).sum()
    return float(acc), float(acc_cls), float(mean_iu), float(fwavacc)


def label_accuracy_score(label_trues, label_preds, n_class):
    """pytorch-fcn's signature: lists/arrays of label maps -> (acc, acc_cls, mean_iu, fwavacc)."""
    hist = np.zeros((n_class, n_class), dtype=np.int64)
    for lt, lp in zip(label_trues, label_preds):
        hist += confusion_matrix(torch.as_tensor(np.asarray(lt)), torch.as_tensor(np.asarray(lp)),
                                 n_class).numpy()
    return scores_from_confusion(hist)


# --------------------------------------------------------------------------
# image quality metrics
# --------------------------------------------------------------------------

def to_uint8(rgb):
    """Float RGB in [0, 1] (torch ``[3, H, W]`` or numpy ``[H, W, 3]``) -> uint8 ``[H, W, 3]``."""
    if torch.is_tensor(rgb):
        rgb = rgb.detach().float().cpu()
        if rgb.ndim == 3 and rgb.shape[0] == 3:
            rgb = rgb.permute(1, 2, 0)
        rgb = rgb.numpy()
    rgb = np.nan_to_num(np.asarray(rgb, dtype=np.float64), nan=0.0)  # a broken model gives black, not a warning
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def grayscale(rgb_uint8):
    """The no-colour baseline: L = V - C/2 = (max + min) / 2 in all three channels (halves to even)."""
    lightness = np.round((rgb_uint8.max(-1).astype(np.float64) + rgb_uint8.min(-1)) / 2.0).astype(np.uint8)
    return np.repeat(lightness[..., None], 3, axis=-1)


def psnr(image_true, image_test, data_range=255.0):
    """Peak signal-to-noise ratio in dB of two same-shape arrays (inf when identical)."""
    err = np.mean((np.asarray(image_true, np.float64) - np.asarray(image_test, np.float64)) ** 2)
    if err == 0:
        return float('inf')
    return float(10.0 * np.log10(data_range ** 2 / err))


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------

GRID_CELL = 160   # pixels of a grid image's width (evaluate.py, the hint sweep, the quality experiment)


def tile_images(rows, pad=2):
    """List of rows, each a list of uint8 ``[H, W, 3]`` images -> one mosaic on white, ``pad`` between.

    Each row is as tall as its tallest image and each column as wide as its widest,
    images at the top left of their cell: images of one size tile with no gaps but the padding.
    """
    n_cols = max(len(r) for r in rows)
    heights = [max(img.shape[0] for img in row) for row in rows]
    widths = [max(row[j].shape[1] for row in rows if j < len(row)) for j in range(n_cols)]
    tops = np.cumsum([pad] + [h + pad for h in heights])
    lefts = np.cumsum([pad] + [w + pad for w in widths])
    canvas = np.full((tops[-1], lefts[-1], 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas[tops[i]:tops[i] + img.shape[0], lefts[j]:lefts[j] + img.shape[1]] = img
    return canvas


def _smooth(values, window):
    """Trailing moving average that ignores NaN gaps."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full_like(values, np.nan)
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1):i + 1]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[i] = chunk.mean()
    return out


def read_log_csv(path):
    """log.csv -> dict of column name -> float numpy array (blank cells are NaN)."""
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}

    def number(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return float('nan')
    return {k: np.array([number(r.get(k)) for r in rows]) for k in rows[0]}


def plot_log_csv(log_path, smoothing_window=20):
    """Write ``log_plots.png`` beside ``log.csv``: train/valid loss and mean IoU (and PSNR)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    log = read_log_csv(log_path)
    if not log:
        raise ValueError('%s has no rows to plot' % log_path)
    panels = [('loss', 'train/loss', 'valid/loss'), ('mean IoU', 'train/mean_iu', 'valid/mean_iu')]
    if np.isfinite(log.get('valid/psnr', np.array([np.nan]))).any():
        panels.append(('PSNR (dB)', None, 'valid/psnr'))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    it = log['iteration']
    for ax, (title, train_key, valid_key) in zip(np.atleast_1d(axes), panels):
        if train_key:
            ok = np.isfinite(log[train_key])
            ax.plot(it[ok], log[train_key][ok], color='C0', alpha=0.25, lw=0.8)
            ax.plot(it[ok], _smooth(log[train_key][ok], smoothing_window), color='C0', label='train')
        ok = np.isfinite(log[valid_key])
        ax.plot(it[ok], log[valid_key][ok], 'o-', color='C1', ms=3, label='valid')
        ax.set_title(title)
        ax.set_xlabel('iteration')
        ax.legend()
    fig.tight_layout()
    out = os.path.join(os.path.dirname(os.path.abspath(log_path)), 'log_plots.png')
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------
# colorization metrics (evaluate.py): 8-bit RGB ``[H, W, 3]`` numpy in, floats out
# --------------------------------------------------------------------------

PSNR_CAP_DB = 100.0        # an exact reconstruction scores this instead of inf (means stay finite)
AUC_MAX_THRESHOLD = 150    # Zhang et al. 2016: ab error thresholds 0, 1, ..., 150
AB_GRID_STEP = 10.0        # Zhang et al.'s ab quantisation, for the colour frequencies


def capped_psnr(image_true, image_test, data_range=255.0, cap=PSNR_CAP_DB):
    """:func:`psnr`, at most ``cap`` dB, so that a per-image average stays finite."""
    return min(psnr(image_true, image_test, data_range), cap)


def ab_channels(rgb_uint8):
    """8-bit RGB ``[H, W, 3]`` -> CIE Lab (a, b) ``[H, W, 2]`` float64 (D65, skimage.color.rgb2lab)."""
    from skimage.color import rgb2lab
    return rgb2lab(np.asarray(rgb_uint8))[..., 1:]


def ab_error(ab_true, ab_test):
    """Per-pixel Euclidean distance ``[H, W]`` between two ``[H, W, 2]`` ab images (Lab units)."""
    return np.sqrt(((np.asarray(ab_true, np.float64) - np.asarray(ab_test, np.float64)) ** 2).sum(-1))


def rmse(errors):
    """Root mean square of per-pixel errors (any shape)."""
    return float(np.sqrt(np.mean(np.square(np.asarray(errors, np.float64)))))


def inverse_frequency_weights(ab_true, step=AB_GRID_STEP):
    """Per-pixel weights ``[H, W]`` proportional to 1 / frequency of the pixel's ab colour.

    The ground truth's ab plane is cut into ``step`` x ``step`` cells (Zhang et
    al.'s grid); every occupied cell then carries the same total weight, so
    rare colours count as much as the common (often greyish) ones.  Mean weight 1.
    """
    cells = np.floor(np.asarray(ab_true, np.float64) / step).astype(np.int64).reshape(-1, 2)
    cells -= cells.min(axis=0)
    cell_of_pixel = cells[:, 0] * (cells[:, 1].max() + 1) + cells[:, 1]
    weights = 1.0 / np.bincount(cell_of_pixel)[cell_of_pixel]
    return (weights * (weights.size / weights.sum())).reshape(np.shape(ab_true)[:-1])


def cumulative_error_auc(errors, weights=None, max_threshold=AUC_MAX_THRESHOLD):
    """Area under the cumulative error curve, in % (Zhang et al. 2016).

    For each threshold t = 0, 1, ..., ``max_threshold`` the (weighted) share of
    pixels whose error is <= t; the curve's trapezoidal area divided by
    ``max_threshold``.  100 when every error is 0.
    """
    errors = np.asarray(errors, np.float64).reshape(-1)
    weights = np.ones_like(errors) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    # error <= t  <=>  ceil(error) <= t for integer t: one weighted histogram serves all thresholds
    first_threshold = np.minimum(np.ceil(errors), max_threshold + 1).astype(np.int64)
    share = np.cumsum(np.bincount(first_threshold, weights, minlength=max_threshold + 2))[:max_threshold + 1]
    share /= weights.sum()
    area = share.sum() - (share[0] + share[-1]) / 2.0
    return float(100.0 * area / max_threshold)


def colorfulness(rgb_uint8):
    """Hasler & Suesstrunk 2003 colourfulness of 8-bit RGB ``[H, W, 3]``.

    rg = R - G, yb = (R + G) / 2 - B; M = sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2).
    """
    r, g, b = np.moveaxis(np.asarray(rgb_uint8, np.float64), -1, 0)
    rg, yb = r - g, (r + g) / 2.0 - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


COLORIZATION_METRICS = ('psnr', 'rmse', 'auc', 'auc_rebal', 'colorfulness')


def colorization_metrics(truth_uint8, output_uint8, ab_truth=None, rebalance=None):
    """Every score of one colorized image against its original, both 8-bit ``[H, W, 3]``.

    Returns ``{psnr (dB, capped), rmse (of the ab error, Lab units), auc, auc_rebal (%),
    colorfulness (of the output)}``.  ``ab_truth`` / ``rebalance`` (from
    :func:`ab_channels` / :func:`inverse_frequency_weights` of the original) may be
    passed in to be computed once for several outputs of the same image.
    """
    if np.shape(truth_uint8) != np.shape(output_uint8):
        raise ValueError('original %s and output %s differ in shape'
                         % (np.shape(truth_uint8), np.shape(output_uint8)))
    ab_truth = ab_channels(truth_uint8) if ab_truth is None else ab_truth
    rebalance = inverse_frequency_weights(ab_truth) if rebalance is None else rebalance
    errors = ab_error(ab_truth, ab_channels(output_uint8))
    return {'psnr': capped_psnr(truth_uint8, output_uint8), 'rmse': rmse(errors),
            'auc': cumulative_error_auc(errors), 'auc_rebal': cumulative_error_auc(errors, rebalance),
            'colorfulness': colorfulness(output_uint8)}
