"""Decoding per-pixel bin distributions to (hue, chroma): utils.anneal / decode_bins /
decode_hue_and_chroma_heads, checked on hand-made distributions against numpy."""
import numpy as np
import pytest
import torch

import targets
import utils

RNG = np.random.RandomState(0)


def random_probs(b, k, h, w, seed=0):
    """Dirichlet-like random distributions ``[B, K, H, W]`` (float64 numpy)."""
    p = np.random.RandomState(seed).gamma(0.7, size=(b, k, h, w))
    return p / p.sum(1, keepdims=True)


def circular_expectation(probs, hue, chroma):
    """numpy reference: E[C e^{2 pi i H}] per pixel -> (hue in [0, 1), |.|)."""
    z = np.einsum('bkhw,k->bhw', probs, chroma * np.exp(2j * np.pi * hue))
    return np.mod(np.angle(z) / (2 * np.pi), 1.0), np.abs(z)


def hue_distance(a, b):
    """Distance on the hue circle (0 == 1)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) % 1.0
    return np.minimum(d, 1.0 - d)


CENTRES = np.array([[0.05, 0.3], [0.3, 0.6], [0.55, 0.2], [0.8, 0.45], [0.95, 0.1]])


@pytest.mark.parametrize('temperature', [0.1, 0.38, 1.0, 2.5])
def test_anneal_is_renormalised_power(temperature):
    probs = random_probs(2, 5, 3, 4)
    expected = probs ** (1.0 / temperature)
    expected /= expected.sum(1, keepdims=True)
    got = utils.anneal(torch.from_numpy(probs), temperature).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('temperature', [0.0, -0.5])
def test_anneal_refuses_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match='temperature'):
        utils.anneal(torch.full((1, 3, 1, 1), 1 / 3), temperature)


def test_anneal_keeps_half_precision_and_sums_to_one():
    probs = torch.from_numpy(random_probs(1, 6, 2, 2)).half()
    out = utils.anneal(probs, 0.05)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    np.testing.assert_allclose(out.float().sum(1).numpy(), 1.0, atol=2e-3)


def test_mode_is_the_centre_of_the_most_likely_bin():
    probs = random_probs(2, 5, 3, 4, seed=1)
    hue, chroma = utils.decode_bins(torch.from_numpy(probs), torch.from_numpy(CENTRES), 'mode')
    best = probs.argmax(1)
    np.testing.assert_allclose(hue.numpy(), CENTRES[best, 0])
    np.testing.assert_allclose(chroma.numpy(), CENTRES[best, 1])
    assert hue.shape == (2, 3, 4)


def test_mean_is_the_expectation_on_the_chroma_plane():
    probs = random_probs(2, 5, 3, 4, seed=2)
    hue, chroma = utils.decode_bins(torch.from_numpy(probs), torch.from_numpy(CENTRES), 'mean')
    ref_hue, ref_chroma = circular_expectation(probs, CENTRES[:, 0], CENTRES[:, 1])
    np.testing.assert_allclose(chroma.numpy(), ref_chroma, atol=1e-6)
    assert hue_distance(hue.numpy(), ref_hue).max() < 1e-6


def test_annealed_with_t_one_equals_mean():
    probs = torch.from_numpy(random_probs(1, 5, 4, 4, seed=3))
    centres = torch.from_numpy(CENTRES)
    for got, ref in zip(utils.decode_bins(probs, centres, 'annealed', 1.0), utils.decode_bins(probs, centres, 'mean')):
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-6)


def test_annealed_with_t_to_zero_equals_mode():
    probs = random_probs(2, 5, 4, 4, seed=4)
    top2 = np.sort(probs, 1)[:, -2:]
    assert (top2[:, 1] / top2[:, 0]).min() > 1.001  # a unique mode everywhere
    centres = torch.from_numpy(CENTRES)
    mode = utils.decode_bins(torch.from_numpy(probs), centres, 'mode')
    annealed = utils.decode_bins(torch.from_numpy(probs), centres, 'annealed', 1e-5)
    assert hue_distance(annealed[0].numpy(), mode[0].numpy()).max() < 1e-6
    np.testing.assert_allclose(annealed[1].numpy(), mode[1].numpy(), atol=1e-6)
    # and in between, annealing moves the colour from the mean towards the mode
    mean = utils.decode_bins(torch.from_numpy(probs), centres, 'mean')
    middle = utils.decode_bins(torch.from_numpy(probs), centres, 'annealed', 0.38)
    d_mean = hue_distance(mean[0].numpy(), mode[0].numpy()).mean()
    d_middle = hue_distance(middle[0].numpy(), mode[0].numpy()).mean()
    assert d_middle < d_mean


@pytest.mark.parametrize('method', ['mean', 'annealed'])
def test_two_reds_across_the_hue_seam_decode_to_red_not_cyan(method):
    centres = torch.tensor([[0.03, 0.8], [0.97, 0.8], [0.5, 0.8]], dtype=torch.float64)
    probs = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
    hue, chroma = utils.decode_bins(probs, centres, method)
    assert hue_distance(hue.item(), 0.0) < 1e-6          # a naive average of hue would give 0.5 (cyan)
    np.testing.assert_allclose(chroma.item(), 0.8 * np.cos(2 * np.pi * 0.03), rtol=1e-6)
    rgb = utils.hcl_to_rgb(hue, chroma, torch.full_like(hue, 0.5))[0, :, 0, 0].numpy()
    assert rgb[0] > 0.8 and rgb[1] < 0.2 and rgb[2] < 0.2   # red


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match='unknown decode method'):
        utils.decode_bins(torch.ones(1, 2, 1, 1) / 2, torch.zeros(2, 2), 'median')
    with pytest.raises(ValueError, match='unknown decode method'):
        utils.decode_hue_and_chroma_heads(torch.ones(1, 2, 1, 1) / 2, torch.ones(1, 2, 1, 1) / 2,
                                          torch.zeros(2), torch.zeros(2), 'median')


# --- separate hue and chroma heads (one-hot binning) ------------------------------

HUE_CENTRES = np.array([0.02, 0.25, 0.5, 0.75, 0.98])
CHROMA_CENTRES = np.array([0.0, 0.2, 0.4, 0.6, 0.8])


def decode_heads(hue_p, chroma_p, method, temperature=utils.DEFAULT_TEMPERATURE):
    return utils.decode_hue_and_chroma_heads(torch.from_numpy(hue_p), torch.from_numpy(chroma_p),
                                             torch.from_numpy(HUE_CENTRES), torch.from_numpy(CHROMA_CENTRES),
                                             method, temperature)


def test_heads_mean_is_circular_for_hue_and_linear_for_chroma():
    hue_p, chroma_p = random_probs(2, 5, 3, 3, seed=5), random_probs(2, 5, 3, 3, seed=6)
    hue, chroma = decode_heads(hue_p, chroma_p, 'mean')
    ref_hue, _ = circular_expectation(hue_p, HUE_CENTRES, np.ones(5))
    assert hue_distance(hue.numpy(), ref_hue).max() < 1e-6
    np.testing.assert_allclose(chroma.numpy(), np.einsum('bkhw,k->bhw', chroma_p, CHROMA_CENTRES), atol=1e-7)


def test_heads_annealing_limits():
    hue_p, chroma_p = random_probs(1, 5, 4, 4, seed=7), random_probs(1, 5, 4, 4, seed=8)
    for got, ref in zip(decode_heads(hue_p, chroma_p, 'annealed', 1.0), decode_heads(hue_p, chroma_p, 'mean')):
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-6)
    mode_h, mode_c = decode_heads(hue_p, chroma_p, 'mode')
    np.testing.assert_allclose(mode_h.numpy(), HUE_CENTRES[hue_p.argmax(1)])
    np.testing.assert_allclose(mode_c.numpy(), CHROMA_CENTRES[chroma_p.argmax(1)])
    cold_h, cold_c = decode_heads(hue_p, chroma_p, 'annealed', 1e-4)
    assert hue_distance(cold_h.numpy(), mode_h.numpy()).max() < 1e-6
    np.testing.assert_allclose(cold_c.numpy(), mode_c.numpy(), atol=1e-6)


def test_heads_hue_seam():
    hue_p = np.array([0.5, 0, 0, 0, 0.5]).reshape(1, 5, 1, 1)
    chroma_p = np.array([0, 0, 0, 0, 1.0]).reshape(1, 5, 1, 1)
    hue, chroma = decode_heads(hue_p, chroma_p, 'mean')
    assert hue_distance(hue.item(), 0.0) < 1e-6 and chroma.item() == pytest.approx(0.8)


@pytest.mark.parametrize('method', utils.DECODE_METHODS)
def test_one_hot_bins_decode_their_own_labels_to_bin_centres(method):
    bins = targets.OneHotBins(6)
    hue = torch.tensor([[[0.0, 0.1, 0.45, 0.9]]])
    chroma = torch.tensor([[[0.05, 0.3, 0.7, 0.99]]])
    labels = bins.encode(hue, chroma)                                   # [1, 2, 1, 4]
    probs = torch.cat([torch.nn.functional.one_hot(labels[:, i], 6).permute(0, 3, 1, 2) for i in range(2)], 1)
    got_h, got_c = bins.decode(probs.float(), method)
    centres = bins.bin_centres.numpy()
    assert hue_distance(got_h.numpy(), centres[labels[:, 0].numpy()]).max() < 1e-6
    np.testing.assert_allclose(got_c.numpy(), centres[labels[:, 1].numpy()], atol=1e-6)
    assert (got_h >= 0).all() and (got_h < 1).all()


def test_mode_hue_is_wrapped_into_unit_interval():
    """OneHotBins' last hue bin has centre 1.0; mode decoding reports it as 0.0 (same colour)."""
    bins = targets.OneHotBins(4)
    assert bins.bin_centres[-1].item() == 1.0
    probs = torch.zeros(1, 8, 1, 1)
    probs[0, 3] = probs[0, 4 + 2] = 1.0
    hue, _ = bins.decode(probs, 'mode')
    assert hue.item() == 0.0


def test_gmm_bins_decode_mode_mean_through_the_bins_object():
    k = len(CENTRES)
    bins = targets.GMMBins(np.full(k, 1 / k), CENTRES, np.tile(np.eye(2) * 0.01, (k, 1, 1)))
    probs = torch.from_numpy(random_probs(1, k, 2, 3, seed=9)).float()
    for method in utils.DECODE_METHODS:
        got = bins.decode(probs, method)
        ref = utils.decode_bins(probs, torch.from_numpy(CENTRES).float(), method)
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g.numpy(), r.numpy(), atol=1e-6)
