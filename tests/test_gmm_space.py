"""GMM soft bins fitted on the chroma plane (gmm_space='plane') against scikit-learn, and the
hue seam: a red straddling H = 0 is one colour on the plane, two in (H, C)."""
import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

import data_loader
import targets


def plane(hc):
    angle = 2 * np.pi * hc[:, 0]
    return np.stack([hc[:, 1] * np.cos(angle), hc[:, 1] * np.sin(angle)], 1)


def seam_sample(seed=0, n=400):
    """(H, C) pixels: reds at H ~ 0.98 and H ~ 0.02 (the same colour, across the seam), a green,
    a blue and near-greys; returns (pixels [N, 2], which rows are the two reds)."""
    rng = np.random.RandomState(seed)
    parts = [np.stack([rng.normal(h, 0.006, n), rng.normal(c, 0.03, n)], 1)
             for h, c in ((0.985, 0.8), (0.015, 0.8), (0.33, 0.6), (0.66, 0.5), (0.5, 0.04))]
    hc = np.concatenate(parts)
    hc[:, 0] %= 1.0
    hc[:, 1] = hc[:, 1].clip(0.0, 1.0)
    return hc, (np.arange(len(hc)) < n), (np.arange(len(hc)) >= n) & (np.arange(len(hc)) < 2 * n)


def argmax_bins(bins, hc):
    post = bins.encode(torch.from_numpy(hc[:, 0]).view(1, -1, 1), torch.from_numpy(hc[:, 1]).view(1, -1, 1))
    return post[0, :, :, 0].argmax(0).numpy()


def majority(labels):
    return np.bincount(labels).argmax()


def test_a_red_across_the_hue_seam_is_one_plane_bin_and_two_polar_bins():
    hc, red_high, red_low = seam_sample()
    for space, coords in (('polar', hc), ('plane', plane(hc))):
        bins = targets.GMMBins.fit(hc, 4, seed=0, space=space)
        labels = argmax_bins(bins, hc)
        reference = GaussianMixture(4, covariance_type='full', init_params='kmeans', random_state=0).fit(coords)
        np.testing.assert_array_equal(labels, reference.predict(coords))
        same = majority(labels[red_high]) == majority(labels[red_low])
        assert same == (space == 'plane'), space


@pytest.mark.parametrize('prune', [False, True])
def test_plane_posteriors_equal_scikit_learns(prune):
    rng = np.random.RandomState(1)
    hc = np.stack([rng.rand(4000), rng.rand(4000) ** 2], 1)
    bins = targets.GMMBins.fit(hc, 24, seed=0, space='plane')
    reference = GaussianMixture(24, covariance_type='full', init_params='kmeans', random_state=0).fit(plane(hc))
    post = bins.encode(torch.from_numpy(hc[:, 0]).view(2, -1, 1), torch.from_numpy(hc[:, 1]).view(2, -1, 1),
                       prune=prune)
    got = post.permute(0, 2, 3, 1).reshape(-1, 24).numpy()
    np.testing.assert_allclose(got, reference.predict_proba(plane(hc)), atol=1e-4)


def test_plane_bins_decode_from_their_centres_and_give_a_prior():
    hc, _, _ = seam_sample(2)
    bins = targets.GMMBins.fit(hc, 5, seed=0, space='plane')
    centres = bins.centres.double()
    np.testing.assert_allclose(plane(centres.numpy()), bins.means, atol=1e-6)
    one_hot = torch.eye(5).view(1, 5, 5, 1)          # pixel k is certain of bin k
    hue, chroma = bins.decode(one_hot, 'mode')
    np.testing.assert_allclose(torch.stack([hue[0, :, 0], chroma[0, :, 0]], 1).numpy(), centres.numpy(),
                               atol=1e-5)
    prior = bins.empirical_prior(hc, sigma=0)
    reference = GaussianMixture(5, covariance_type='full', init_params='kmeans', random_state=0).fit(plane(hc))
    np.testing.assert_allclose(prior, reference.predict_proba(plane(hc)).mean(0), atol=1e-4)
    ab = plane(centres.numpy())                           # smoothing: a Gaussian between centres on the plane
    kernel = np.exp(-0.5 * ((ab[:, None] - ab[None]) ** 2).sum(-1) / 0.05 ** 2)
    smoothed = kernel @ prior / kernel.sum(1)
    np.testing.assert_allclose(bins.empirical_prior(hc, sigma=0.05), smoothed / smoothed.sum(), atol=1e-4)


def test_the_space_survives_files_and_checkpoints_and_old_ones_read_as_polar(tmp_path):
    hc, _, _ = seam_sample(3)
    bins = targets.GMMBins.fit(hc, 4, seed=0, space='plane')
    path = str(tmp_path / 'gmm.npz')
    bins.save(path)
    again = targets.GMMBins.load(path)
    assert again.space == 'plane'
    np.testing.assert_array_equal(again.means, bins.means)
    state = bins.state()
    assert targets.bins_from_state(state).space == 'plane'
    del state['space']                                   # a checkpoint from before gmm_space
    assert targets.bins_from_state(state).space == 'polar'
    np.savez(path, weights=bins.weights, means=bins.means, covariances=bins.covariances)
    assert targets.GMMBins.load(path).space == 'polar'
    with pytest.raises(ValueError, match='gmm_space'):
        targets.GMMBins(bins.weights, bins.means, bins.covariances, space='cartesian')


def test_a_cached_gmm_of_the_other_space_is_refused(tmp_path):
    from PIL import Image
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 256, (20, 20, 3), dtype=np.uint8)).save(str(tmp_path / 'a.png'))
    gmm_path = str(tmp_path / 'gmm.npz')
    kwargs = dict(files=['a.png'], im_size=(16, 16), num_hc_bins=4, gmm_path=gmm_path)
    targets.fit_encoder(data_loader.ColorizeImageNet(str(tmp_path), gmm_space='polar', **kwargs), 1, 200, 0)
    plane_set = data_loader.ColorizeImageNet(str(tmp_path), gmm_space='plane', **kwargs)
    with pytest.raises(ValueError, match='gmm_space'):
        targets.fit_encoder(plane_set, 1, 200, 0)
