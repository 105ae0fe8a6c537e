"""The colour targets of targets.py: GMM / uniform / one-hot bins, the batch encoder and its
fitting to a dataset (cached statistics).  The device-side posteriors against their CPU
references are in test_targets_device.py."""
import os
import sys

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data_loader  # noqa: E402
import targets  # noqa: E402
import utils  # noqa: E402


def test_gmm_bins_cache_as_plain_arrays_and_reload(tmp_path):
    rng = np.random.RandomState(0)
    hc = np.concatenate([rng.normal([0.2, 0.3], 0.05, (300, 2)), rng.normal([0.7, 0.6], 0.05, (300, 2))])
    bins = targets.GMMBins.fit(hc, 2, seed=0)
    path = str(tmp_path / 'gmm.npz')
    bins.save(path)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ['covariances', 'means', 'weights']
    again = targets.GMMBins.load(path)
    np.testing.assert_array_equal(again.means, bins.means)
    ref = GaussianMixture(2, covariance_type='full', init_params='kmeans', random_state=0).fit(hc)
    np.testing.assert_allclose(np.sort(bins.means[:, 0]), np.sort(ref.means_[:, 0]))
    with pytest.raises(ValueError, match='cannot fit'):
        targets.GMMBins.fit(hc[:3], 8, seed=0)


def test_uniform_grid_centres_sigma_and_non_square_k():
    bins = targets.GMMBins.uniform_grid(16)
    axis = np.linspace(0, 1, 4)
    assert sorted(set(np.round(bins.means[:, 0], 9))) == list(np.round(axis, 9))
    spacing = axis[1] - axis[0]
    np.testing.assert_allclose(bins.covariances[:, 0, 0], (spacing / np.sqrt(2)) ** 2)
    with pytest.raises(ValueError, match='perfect square'):
        targets.GMMBins.uniform_grid(15)


def test_one_hot_labels_match_numpy_digitize():
    k = 10
    bins = targets.OneHotBins(k)
    x = np.concatenate([np.random.RandomState(0).rand(500), [0.0, 1.0, 0.5, 1 / 9]])
    edges = np.linspace(0, 1, k)
    ref = np.clip(np.digitize(x, edges) - 1, 0, k - 1)
    np.testing.assert_array_equal(bins.labels(torch.from_numpy(x)).numpy(), ref)
    hue = torch.from_numpy(x[:100]).float().view(1, 10, 10)
    labels = bins.encode(hue, hue.flip(-1))
    assert labels.shape == (1, 2, 10, 10) and labels.dtype == torch.int64


def test_encoder_makes_mean_centred_lightness_and_lowpassed_targets():
    root = data_loader.materialise_bundled()
    ds = data_loader.ColorizeImageNet(root, 'train', files=data_loader.find_images(root)[:3], im_size=(48, 64),
                                      bins='uniform', num_hc_bins=16, img_lowpass=4)
    batch = data_loader.collate_skip_unreadable([ds[i] for i in range(3)])
    encoder = targets.ColorEncoder(targets.GMMBins.uniform_grid(16), mean_l=0.45, img_lowpass=4)
    net_input, target = encoder.encode(batch['rgb'])
    assert net_input.shape == (3, 1, 48, 64) and target.shape == (3, 16, 48, 64)
    h, c, l = utils.rgb_to_hcl(batch['rgb'].double() / 255)
    torch.testing.assert_close(net_input[:, 0].double(), l - 0.45, atol=1e-6, rtol=0)
    torch.testing.assert_close(target.sum(1), torch.ones(3, 48, 64), atol=1e-5, rtol=0)
    h_lp, c_lp = utils.lowpass_hue_chroma(h, c, 4)
    expected = encoder.bins.encode(h_lp.float(), c_lp.float())
    torch.testing.assert_close(target, expected, atol=1e-5, rtol=0)
    # the state survives a trip through plain tensors
    again = targets.ColorEncoder.from_state(encoder.state())
    torch.testing.assert_close(again.encode(batch['rgb'])[1], target)


def test_fit_encoder_caches_mean_l_and_gmm_then_reloads(tmp_path):
    root = data_loader.materialise_bundled()
    kw = dict(files=data_loader.find_images(root), im_size=(32, 32), bins='soft', num_hc_bins=4,
              gmm_path=str(tmp_path / 'gmm.npz'), mean_l_path=str(tmp_path / 'mean_l.npy'))
    ds = data_loader.ColorizeImageNet(root, 'train', **kw)
    encoder = targets.fit_encoder(ds, num_images=10, pixels_per_image=50, seed=0)
    samples = ds.sample_pixels(10, 50, seed=0)
    assert encoder.mean_l == pytest.approx(samples[:, 2].mean())
    assert os.path.isfile(kw['gmm_path']) and os.path.isfile(kw['mean_l_path'])
    again = targets.fit_encoder(data_loader.ColorizeImageNet(root, 'train', **kw), 10, 50, seed=123)
    np.testing.assert_array_equal(again.bins.means, encoder.bins.means)
    assert again.mean_l == encoder.mean_l
    wrong_k = dict(kw, num_hc_bins=6)
    with pytest.raises(ValueError, match='holds 4 GMM bins'):
        targets.fit_encoder(data_loader.ColorizeImageNet(root, 'train', **wrong_k), 10, 50, seed=0)


def test_bin_prior_is_cached_and_a_stale_one_from_another_k_is_replaced(tmp_path):
    root = data_loader.materialise_bundled()
    kw = dict(files=data_loader.find_images(root), im_size=(32, 32), bins='uniform', num_hc_bins=9,
              gmm_path=str(tmp_path / 'gmm.npz'), mean_l_path=str(tmp_path / 'mean_l.npy'))
    np.save(str(tmp_path / 'bin_prior.npy'), np.full(4, 0.25))  # left by a K=4 run
    encoder = targets.fit_encoder(data_loader.ColorizeImageNet(root, 'train', **kw), 10, 50, 0, rebalance_lambda=0.5,
                                  rebalance_sigma=0.05)
    prior = np.load(str(tmp_path / 'bin_prior.npy'))
    assert prior.shape == (9,) and encoder.class_weights.shape == (9,)
    assert float((torch.from_numpy(prior).float() * encoder.class_weights).sum()) == pytest.approx(1.0, abs=1e-5)


def test_cached_gmm_is_the_gaussian_mixture_of_the_sampled_pixels(tmp_path):
    """gmm.npz holds what scikit-learn fits on the very pixels fit_encoder sampled (fitted here
    separately, with the documented settings: full covariances, k-means init, the run's seed)."""
    root = data_loader.materialise_bundled()
    seed, num_bins = 7, 4
    kw = dict(files=data_loader.find_images(root), im_size=(32, 32), bins='soft', num_hc_bins=num_bins,
              gmm_path=str(tmp_path / 'gmm.npz'), mean_l_path=str(tmp_path / 'mean_l.npy'))
    encoder = targets.fit_encoder(data_loader.ColorizeImageNet(root, 'train', **kw), 10, 50, seed=seed)
    pixels = data_loader.ColorizeImageNet(root, 'train', **kw).sample_pixels(10, 50, seed)
    reference = GaussianMixture(num_bins, covariance_type='full', init_params='kmeans',
                                random_state=seed).fit(pixels[:, :2])
    with np.load(kw['gmm_path'], allow_pickle=False) as cached:
        np.testing.assert_allclose(cached['weights'], reference.weights_, rtol=1e-10)
        np.testing.assert_allclose(cached['means'], reference.means_, rtol=1e-10)
        np.testing.assert_allclose(cached['covariances'], reference.covariances_, rtol=1e-10)
    assert float(np.load(kw['mean_l_path'])) == pytest.approx(pixels[:, 2].mean(), rel=1e-12)
    # and the encoder's posteriors are that mixture's predict_proba
    hc = pixels[:20, :2]
    posteriors = encoder.bins.encode(torch.from_numpy(hc[:, 0]).view(1, 1, -1),
                                     torch.from_numpy(hc[:, 1]).view(1, 1, -1))
    np.testing.assert_allclose(posteriors[0, :, 0].T.numpy(), reference.predict_proba(hc), atol=1e-5)
