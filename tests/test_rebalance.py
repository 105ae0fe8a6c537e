"""Class rebalancing (Zhang et al. 2016): the bin prior, the weights, their cache and the
weighted loss (targets.GMMBins.empirical_prior, rebalancing_weights, fit_encoder;
losses.soft_target_loss).  Config 199 cannot switch rebalancing on from the command
line, so the functions are exercised directly."""
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.mixture import GaussianMixture

import data_loader
import losses
import targets

LAMBDAS = [0.0, 0.25, 0.5, 0.9, 1.0]


def random_prior(k, seed):
    p = np.random.RandomState(seed).gamma(0.5, size=k) + 1e-6
    return p / p.sum()


@pytest.mark.parametrize('lam', LAMBDAS)
def test_weights_have_expectation_one_under_the_prior(lam):
    for seed in range(3):
        prior = random_prior(13, seed)
        weights = targets.rebalancing_weights(prior, lam)
        assert np.dot(prior, weights) == pytest.approx(1.0)
        assert (weights > 0).all()


@pytest.mark.parametrize('lam', LAMBDAS)
def test_uniform_prior_gives_unit_weights(lam):
    np.testing.assert_allclose(targets.rebalancing_weights(np.full(10, 0.1), lam), 1.0)


@pytest.mark.parametrize('lam', [0.0, 0.5, 0.9])
def test_rarer_bins_get_larger_weights_in_zhang_proportions(lam):
    prior = random_prior(9, 7)
    weights = targets.rebalancing_weights(prior, lam)
    order = np.argsort(prior)
    assert (np.diff(weights[order]) < 0).all()  # strictly decreasing with the prior
    mixed = (1 - lam) * prior + lam / len(prior)  # Zhang et al.: w ~ 1 / ((1 - lam) p + lam / K)
    np.testing.assert_allclose(weights[:, None] / weights[None, :], mixed[None, :] / mixed[:, None], rtol=1e-10)


def test_lambda_one_switches_rebalancing_off():
    np.testing.assert_allclose(targets.rebalancing_weights(random_prior(6, 1), 1.0), 1.0)


# --- the prior ------------------------------------------------------------------------

def gmm_and_pixels(k=5, n=400, seed=0):
    rng = np.random.RandomState(seed)
    hc = np.concatenate([rng.normal([0.1, 0.5], 0.03, (n // 2, 2)), rng.normal([0.6, 0.2], 0.05, (n // 4, 2)),
                         rng.uniform(0, 1, (n - n // 2 - n // 4, 2))])
    gmm = GaussianMixture(k, covariance_type='full', random_state=seed).fit(hc)
    return gmm, targets.GMMBins(gmm.weights_, gmm.means_, gmm.covariances_), hc


def test_unsmoothed_prior_is_the_mean_posterior_of_scikit_learn():
    gmm, bins, hc = gmm_and_pixels()
    np.testing.assert_allclose(bins.empirical_prior(hc, None), gmm.predict_proba(hc).mean(0), atol=1e-4)


def test_smoothing_limits():
    _, bins, hc = gmm_and_pixels(seed=1)
    raw = bins.empirical_prior(hc, None)
    np.testing.assert_allclose(bins.empirical_prior(hc, 1e-6), raw, atol=1e-9)
    np.testing.assert_allclose(bins.empirical_prior(hc, 1e3), 1.0 / bins.num_bins, atol=1e-6)
    smoothed = bins.empirical_prior(hc, 0.3)
    assert smoothed.sum() == pytest.approx(1.0) and (smoothed > 0).all()
    assert smoothed.max() / smoothed.min() < raw.max() / raw.min()


# --- estimated once, cached with the GMM, carried by the encoder -------------------------

def photo_folder(tmp_path, n=3, size=24):
    rng = np.random.RandomState(0)
    names = []
    for i in range(n):
        rgb = (rng.rand(4, 4, 3) * 255).astype(np.uint8)
        Image.fromarray(rgb).resize((size, size), Image.BILINEAR).save(tmp_path / ('p%d.png' % i))
        names.append('p%d.png' % i)
    return names


def dataset(tmp_path, names, bins='soft'):
    return data_loader.ColorizeImageNet(str(tmp_path), files=names, bins=bins, num_hc_bins=4, im_size=(16, 16),
                                        gmm_path=str(tmp_path / 'gmm.npz'), mean_l_path=str(tmp_path / 'mean_l.npy'))


def test_prior_is_cached_beside_the_gmm_and_reused(tmp_path):
    names = photo_folder(tmp_path)
    encoder = targets.fit_encoder(dataset(tmp_path, names), 3, 100, 0, rebalance_lambda=0.5, rebalance_sigma=0.05)
    cached = tmp_path / 'bin_prior.npy'
    assert cached.is_file() and (tmp_path / 'gmm.npz').is_file()
    prior = np.load(cached)
    assert prior.shape == (4,) and prior.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(encoder.class_weights.numpy(), targets.rebalancing_weights(prior, 0.5), rtol=1e-6)
    # a second build reads the cache instead of estimating again
    edited = np.array([0.7, 0.1, 0.1, 0.1])
    np.save(cached, edited)
    again = targets.fit_encoder(dataset(tmp_path, names), 3, 100, 0, rebalance_lambda=0.5, rebalance_sigma=0.05)
    np.testing.assert_allclose(again.class_weights.numpy(), targets.rebalancing_weights(edited, 0.5), rtol=1e-6)
    # and the weights survive the checkpoint state
    restored = targets.ColorEncoder.from_state(again.state())
    np.testing.assert_allclose(restored.class_weights.numpy(), again.class_weights.numpy())


def test_rebalancing_is_off_by_default_and_refused_for_one_hot(tmp_path):
    names = photo_folder(tmp_path)
    assert targets.fit_encoder(dataset(tmp_path, names), 3, 100, 0).class_weights is None
    with pytest.raises(ValueError, match='one-hot'):
        targets.fit_encoder(dataset(tmp_path, names, bins='one-hot'), 3, 100, 0, rebalance_lambda=0.5)


# --- applied per pixel by the target bin ------------------------------------------------

def kl_reference(scores, target):
    """numpy KL(target || softmax(scores)) per pixel, 0 log 0 = 0."""
    logq = scores - scores.max(1, keepdims=True)
    logq = logq - np.log(np.exp(logq).sum(1, keepdims=True))
    with np.errstate(divide='ignore', invalid='ignore'):
        terms = np.where(target > 0, target * (np.log(target) - logq), 0.0)
    return terms.sum(1)


def test_soft_target_loss_weights_each_pixel_by_its_target_bin():
    rng = np.random.RandomState(3)
    scores = rng.normal(size=(2, 5, 3, 4))
    target = rng.gamma(0.5, size=(2, 5, 3, 4))
    target /= target.sum(1, keepdims=True)
    target[0, :, 0, 0] = [0, 0, 1, 0, 0]  # a one-hot pixel (0 log 0 terms)
    weights = targets.rebalancing_weights(random_prior(5, 4), 0.5)
    got = losses.soft_target_loss(torch.from_numpy(scores).float(), torch.from_numpy(target).float(),
                                   torch.from_numpy(weights).float())
    expected = kl_reference(scores, target) * weights[target.argmax(1)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
    plain = losses.soft_target_loss(torch.from_numpy(scores).float(), torch.from_numpy(target).float())
    np.testing.assert_allclose(plain.numpy(), kl_reference(scores, target), rtol=1e-4, atol=1e-5)
