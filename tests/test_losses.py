"""The training losses against independent references: one-hot cross-entropy per head
(torch's cross_entropy on each head alone), the seed's 'sum' reduction (pytorch-fcn: summed
over pixels, divided by the batch size) and the soft-target KL (numpy).  The cached GMM the
soft targets come from is checked in test_targets.py."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import config
import losses
import targets

B, K, H, W = 3, 6, 5, 7


def numpy_log_softmax(scores, axis=1):
    shifted = scores - scores.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


def numpy_kl(target, scores):
    """KL(target || softmax(scores)) per pixel, 0 log 0 = 0, float64."""
    log_q = numpy_log_softmax(scores.astype(np.float64))
    t = target.astype(np.float64)
    t_log_t = np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0)
    return (t_log_t - t * log_q).sum(1)


def random_soft_target(generator, zero_share=0.3):
    """Posteriors ``[B, K, H, W]`` summing to 1 with some exact zeros (pruned bins)."""
    t = torch.rand(B, K, H, W, generator=generator, dtype=torch.float64)
    t[torch.rand(B, K, H, W, generator=generator) < zero_share] = 0
    t[:, 0] += 1e-3   # never an all-zero pixel
    return t / t.sum(1, keepdim=True)


def test_one_hot_loss_is_the_cross_entropy_of_each_head_summed():
    g = torch.Generator().manual_seed(0)
    bins = targets.OneHotBins(K)
    scores = torch.randn(B, 2 * K, H, W, generator=g) * 3
    labels = torch.stack([torch.randint(0, K - 1, (B, H, W), generator=g),     # hue: K - 1 bins in use
                          torch.randint(0, K, (B, H, W), generator=g)], 1)
    got = losses.one_hot_loss(scores, labels, bins)
    assert got.shape == (B, H, W)
    hue = F.cross_entropy(scores[:, :K], labels[:, 0], reduction='none')
    chroma = F.cross_entropy(scores[:, K:], labels[:, 1], reduction='none')
    torch.testing.assert_close(got, hue + chroma)
    # and the same from numpy's log-softmax of each head, picked at the label
    log_p = [numpy_log_softmax(scores[:, i * K:(i + 1) * K].numpy().astype(np.float64)) for i in range(2)]
    picked = sum(-np.take_along_axis(log_p[i], labels[:, i:i + 1].numpy(), 1)[:, 0] for i in range(2))
    np.testing.assert_allclose(got.numpy(), picked, rtol=1e-5, atol=1e-5)


def test_soft_target_loss_is_the_kl_divergence_computed_in_numpy():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(B, K, H, W, generator=g) * 2
    target = random_soft_target(g)
    got = losses.soft_target_loss(scores, target.float())
    assert got.shape == (B, H, W)
    expected = numpy_kl(target.numpy(), scores.numpy())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert expected.min() > 0
    # a target equal to the prediction costs nothing
    same = torch.softmax(scores, 1)
    assert losses.soft_target_loss(scores, same).abs().max() < 1e-5


def test_soft_target_loss_of_bfloat16_targets_is_the_kl_of_the_renormalised_target():
    """AMP stores targets in bf16: their sum drifts from 1; the loss uses them renormalised."""
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(B, K, H, W, generator=g)
    target = random_soft_target(g).to(torch.bfloat16)
    renormalised = target.double() / target.double().sum(1, keepdim=True)
    expected = numpy_kl(renormalised.numpy(), scores.numpy())
    np.testing.assert_allclose(losses.soft_target_loss(scores, target).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('binning', ['soft', 'one-hot'])
def test_sum_reduction_is_pytorch_fcns_pixel_sum_over_the_batch_size(binning):
    """pytorch-fcn: ``nll_loss(..., reduction='sum')`` then ``loss /= len(data)``; 'mean' is per pixel."""
    g = torch.Generator().manual_seed(3)
    if binning == 'one-hot':
        encoder = targets.ColorEncoder(targets.OneHotBins(K), 0.5)
        scores = torch.randn(B, 2 * K, H, W, generator=g)
        target = torch.randint(0, K - 1, (B, 2, H, W), generator=g)
        total = sum(F.cross_entropy(scores[:, i * K:(i + 1) * K], target[:, i], reduction='sum') for i in range(2))
    else:
        encoder = targets.ColorEncoder(targets.GMMBins.uniform_grid(4), 0.5)
        scores = torch.randn(B, 4, H, W, generator=g)
        target = random_soft_target(g)[:, :4]
        target = (target / target.sum(1, keepdim=True)).float()
        total = torch.tensor(numpy_kl(target.numpy(), scores.numpy()).sum(), dtype=torch.float32)
    per_pixel = losses.pixel_losses(scores, target, encoder)
    torch.testing.assert_close(losses.reduce_loss(per_pixel, 'sum'), total / B, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(losses.reduce_loss(per_pixel, 'mean'), total / (B * H * W), rtol=1e-5, atol=1e-6)


def test_the_seed_configs_sum_over_pixels():
    seed_numbers = [n for n in config.configurations if n < 100]
    assert seed_numbers and all(config.get_config(n)['loss_reduction'] == 'sum' for n in seed_numbers)
