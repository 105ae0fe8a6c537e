"""The training losses and their scores, per pixel: what ``trainer.Trainer`` minimises and logs.

``soft`` / ``uniform`` bins: KL(target posteriors || softmax(scores)), optionally
weighted by class rebalancing (``targets.rebalancing_weights``); ``one-hot``: the
cross-entropy of the hue head plus that of the chroma head.  The scores of the
log (acc, acc_cls, mean_iu, fwavacc) come from the confusion of the argmax bins.
"""
import numpy as np
import torch
import torch.nn.functional as F

import utils


def soft_target_loss(scores, target, class_weights=None):
    """Per-pixel KL(target || softmax(scores)) ``[B, H, W]`` for ``[B, K, H, W]`` inputs.

    Cross-entropy with probability targets (fused in torch) minus the target's
    entropy, so no second K-channel copy is kept for backward.  With
    ``class_weights [K]`` each pixel is weighted by the weight of its target bin.
    """
    target_f = target
    if target.dtype != scores.dtype:  # low-precision targets (AMP): back to a distribution summing to 1
        target_f = target.float()
        target_f = target_f / target_f.sum(1, keepdim=True)
    with torch.no_grad():
        entropy = torch.special.entr(target_f).sum(1)
        weight = None if class_weights is None else class_weights.to(scores.device)[target.argmax(1)]
    kl = F.cross_entropy(scores, target_f, reduction='none') - entropy
    return kl if weight is None else kl * weight


def one_hot_loss(scores, labels, bins):
    """Cross-entropy of the hue head plus that of the chroma head, per pixel ``[B, H, W]``."""
    hue_scores, chroma_scores = bins.split_heads(scores)
    return (F.cross_entropy(hue_scores, labels[:, 0], reduction='none')
            + F.cross_entropy(chroma_scores, labels[:, 1], reduction='none'))


def pixel_losses(scores, target, encoder):
    if encoder.binning == 'one-hot':
        return one_hot_loss(scores, target, encoder.bins)
    return soft_target_loss(scores, target, encoder.class_weights)


def reduce_loss(per_pixel, how):
    """'mean' over every pixel, or 'sum' over the pixels of an image then mean over the batch."""
    if how == 'sum':
        return per_pixel.flatten(1).sum(1).mean()
    return per_pixel.mean()


def label_maps(scores, target, encoder):
    """(true, predicted) argmax bins; one-hot: hue and chroma heads stacked on dim 0."""
    if encoder.binning == 'one-hot':
        hue_scores, chroma_scores = encoder.bins.split_heads(scores)
        pred = torch.stack([hue_scores.argmax(1), chroma_scores.argmax(1)])
        return target.permute(1, 0, 2, 3), pred
    return target.argmax(1), scores.argmax(1)


def confusion(scores, target, encoder):
    """``[heads, K, K]`` confusion of the argmax bins (one head, or hue + chroma heads)."""
    true, pred = label_maps(scores, target, encoder)
    if encoder.binning == 'one-hot':
        return torch.stack([utils.confusion_matrix(t, p, encoder.num_bins) for t, p in zip(true, pred)])
    return utils.confusion_matrix(true, pred, encoder.num_bins).unsqueeze(0)


def scores_of(conf):
    """Mean over heads of (acc, acc_cls, mean_iu, fwavacc)."""
    per_head = [utils.scores_from_confusion(c) for c in conf.cpu().numpy()]
    return [float(np.mean(v)) for v in zip(*per_head)]
