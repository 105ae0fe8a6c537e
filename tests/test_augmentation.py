"""Training views (random resized crops, mirror images, crops per photo), the split lists of a
photo folder, and the resumable sampler's epoch-numbered samples."""
import os

import numpy as np
import pytest
import skimage.color
import torch
from PIL import Image
from sklearn.mixture import GaussianMixture

import config
import data_loader
import runtime
import targets

BLOCK = 24                      # side of each flat colour block of the test photo, pixels
BLOCKS = (5, 7)                 # (rows, columns) of blocks
IM_SIZE = (32, 32)


def block_photo(seed=0):
    """uint8 ``[120, 168, 3]``: 5 x 7 flat blocks of random, clearly coloured RGB."""
    rng = np.random.RandomState(seed)
    colours = rng.randint(0, 256, (BLOCKS[0], BLOCKS[1], 3)).astype(np.uint8)
    return np.repeat(np.repeat(colours, BLOCK, 0), BLOCK, 1)


def hcl_reference(rgb_uint8):
    """(H, C, L) of uint8 RGB ``[..., 3]`` from scikit-image's HSV hue and numpy max/min."""
    rgb = rgb_uint8.astype(np.float64) / 255.0
    hue = skimage.color.rgb2hsv(rgb.reshape(-1, 1, 3))[..., 0].reshape(rgb.shape[:-1])
    top, bottom = rgb.max(-1), rgb.min(-1)
    return np.where(top > bottom, hue, 0.0), top - bottom, (top + bottom) / 2


def augmented_set(folder, names, **views):
    views = dict(dict(seed=3, crops_per_photo=4, crop_area=(0.2, 0.6), hflip=True), **views)
    return data_loader.ColorizeImageNet(str(folder), files=names, im_size=IM_SIZE, jpeg_draft=False,
                                        augmentation=data_loader.Augmentation(**views))


def test_augmented_views_keep_lightness_and_target_aligned_pixel_for_pixel(tmp_path):
    """Each view's L and target, at every output pixel well inside a block of the full photo
    (the block found by mapping the pixel back through the view's crop and mirror), are the
    L of that block's colour (scikit-image / numpy) and scikit-learn's posterior of its (H, C)."""
    photo = block_photo()
    Image.fromarray(photo).save(str(tmp_path / 'blocks.png'))
    dataset = augmented_set(tmp_path, ['blocks.png'])
    colours = photo[::BLOCK, ::BLOCK].reshape(-1, 3)
    hue, chroma, light = hcl_reference(colours)
    hc = np.repeat(np.stack([hue, chroma], 1), 40, 0) + np.random.RandomState(0).normal(0, 0.01, (40 * len(hue), 2))
    gmm = GaussianMixture(6, covariance_type='full', random_state=0).fit(hc)
    encoder = targets.ColorEncoder(targets.GMMBins(gmm.weights_, gmm.means_, gmm.covariances_), 0.5)
    expected_target = gmm.predict_proba(np.stack([hue, chroma], 1)).reshape(BLOCKS + (6,))
    expected_light = light.reshape(BLOCKS)

    height, width = photo.shape[:2]
    flips, checked = set(), 0
    for sample in range(len(dataset), 3 * len(dataset)):       # epochs 1 and 2
        rgb, index, _ = dataset[sample]
        net_input, target = encoder.encode(rgb[None])
        _, view = dataset.photo_and_view(sample)
        left, top, right, bottom = (f * s for f, s in zip(view.box(width, height), (width, height) * 2))
        assert (right - left) * (bottom - top) < 0.61 * width * height       # a crop, not the photo
        flips.add(view.flip)
        u = (np.arange(IM_SIZE[1]) + 0.5) / IM_SIZE[1]
        x = left + (1 - u if view.flip else u) * (right - left)               # source column of each output column
        y = top + (np.arange(IM_SIZE[0]) + 0.5) / IM_SIZE[0] * (bottom - top)
        margin_x = (right - left) / IM_SIZE[1] + 1.5                          # bilinear reach when shrinking
        margin_y = (bottom - top) / IM_SIZE[0] + 1.5
        inner_x = np.abs(x / BLOCK - np.round(x / BLOCK)) * BLOCK > margin_x
        inner_y = np.abs(y / BLOCK - np.round(y / BLOCK)) * BLOCK > margin_y
        rows, cols = np.nonzero(inner_y[:, None] & inner_x[None, :])
        block_r, block_c = (y[rows] // BLOCK).astype(int), (x[cols] // BLOCK).astype(int)
        got_light = (net_input[0, 0] + encoder.mean_l).numpy()[rows, cols]
        np.testing.assert_allclose(got_light, expected_light[block_r, block_c], atol=1e-5)
        np.testing.assert_allclose(target[0].permute(1, 2, 0).numpy()[rows, cols],
                                   expected_target[block_r, block_c], atol=2e-4)
        checked += len(rows)
    assert flips == {True, False}
    assert checked > 0.2 * 2 * len(dataset) * IM_SIZE[0] * IM_SIZE[1]


def test_views_are_fixed_by_seed_epoch_and_sample_and_change_with_each(tmp_path):
    for i in range(3):
        Image.fromarray(block_photo(i)).save(str(tmp_path / ('p%d.png' % i)))
    names = ['p0.png', 'p1.png', 'p2.png']
    first, again, other_seed = (augmented_set(tmp_path, names, seed=s) for s in (3, 3, 4))
    assert len(first) == 3 * 4
    assert sorted(first[s][1] for s in range(len(first))) == sorted(list(range(3)) * 4)  # 4 views per photo
    epoch_1 = [first[s][0] for s in range(len(first), 2 * len(first))]
    assert all(torch.equal(a, again[s][0]) for a, s in zip(epoch_1, range(len(first), 2 * len(first))))
    epoch_2 = [first[s][0] for s in range(2 * len(first), 3 * len(first))]
    assert not any(torch.equal(a, b) for a, b in zip(epoch_1, epoch_2))
    assert not any(torch.equal(a, other_seed[s][0]) for a, s in zip(epoch_1, range(len(first), 2 * len(first))))
    views_of_photo = [first[s][0] for s in range(len(first), 2 * len(first)) if first[s][1] == 0]
    assert len({v.numpy().tobytes() for v in views_of_photo}) == 4                 # 4 different crops


def test_random_crop_box_draws_area_and_aspect_in_range():
    rng = np.random.default_rng(0)
    for width, height in ((300, 200), (64, 640), (1000, 1000)):
        for _ in range(200):
            left, top, right, bottom = data_loader.random_crop_box(rng, width, height, (0.2, 0.6), (0.75, 4 / 3))
            w, h = right - left, bottom - top
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            if (width, height) != (64, 640):          # a thin photo: the centred fallback crop
                assert 0.2 - 0.02 <= w * h / (width * height) <= 0.6 + 0.02
            assert 0.75 - 0.02 <= w / h <= 4 / 3 + 0.02


def test_jpeg_draft_decodes_crops_large_enough_for_im_size(tmp_path, monkeypatch):
    """A small crop of a big JPEG is decoded at a DCT scale that keeps the crop >= im_size."""
    yy, xx = np.mgrid[0:1200, 0:1600]
    smooth = np.stack([xx / 1600 * 255, yy / 1200 * 255, (xx + yy) / 2800 * 255], -1).astype(np.uint8)
    Image.fromarray(smooth).save(str(tmp_path / 'big.jpg'), quality=95)
    crops = []
    real_apply = data_loader.PhotoView.apply

    def recording_apply(self, img, box):
        crops.append(((box[2] - box[0]) * img.size[0], (box[3] - box[1]) * img.size[1], img.size))
        return real_apply(self, img, box)

    monkeypatch.setattr(data_loader.PhotoView, 'apply', recording_apply)
    dataset = data_loader.ColorizeImageNet(str(tmp_path), files=['big.jpg'], im_size=(64, 64), jpeg_draft=True,
                                           augmentation=data_loader.Augmentation(0, 8, (0.05, 0.1)))
    plain = data_loader.ColorizeImageNet(str(tmp_path), files=['big.jpg'], im_size=(64, 64), jpeg_draft=False,
                                         augmentation=data_loader.Augmentation(0, 8, (0.05, 0.1)))
    for sample in range(len(dataset)):
        drafted, full = dataset[sample][0].float(), plain[sample][0].float()
        assert (drafted - full).abs().mean() < 3.0
    drafted_crops = crops[::2]
    assert all(w >= 64 and h >= 64 for w, h, _ in drafted_crops)
    assert any(size[0] < 1600 for _, _, size in drafted_crops)     # the draft did shrink the decode


def test_validation_and_default_views_are_whole_photos(tmp_path):
    Image.fromarray(block_photo()).save(str(tmp_path / 'blocks.png'))
    whole = data_loader.ColorizeImageNet(str(tmp_path), files=['blocks.png'], im_size=IM_SIZE)
    expected = np.asarray(Image.fromarray(block_photo()).resize(IM_SIZE[::-1], Image.BILINEAR))
    assert len(whole) == 1 and whole.photo_and_view(5) == (0, None)
    np.testing.assert_array_equal(whole[5][0].permute(1, 2, 0).numpy(), expected)
    assert config.DEFAULTS['crops_per_photo'] == 1 and config.DEFAULTS['aug_crop_area'] is None \
        and config.DEFAULTS['aug_hflip'] is False


def test_a_photo_folders_split_lists_are_used_and_copied_into_the_run(tmp_path):
    photos, run = tmp_path / 'photos', tmp_path / 'run'
    run.mkdir()
    for i, name in enumerate(['a/1.png', 'a/2.png', 'b/3.png', 'b/4.png']):
        (photos / os.path.dirname(name)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(block_photo(i)).save(str(photos / name))
    (photos / 'split_train.txt').write_text('a/1.png\nb/3.png\n')
    (photos / 'split_val.txt').write_text('a/2.png\n')
    (photos / 'split_test.txt').write_text('b/4.png\n')
    cfg = config.get_config(110)
    train, val = data_loader.make_datasets(str(photos), cfg, str(run), 'soft', 8)
    assert train.files == ['a/1.png', 'b/3.png'] and val.files == ['a/2.png']
    assert data_loader.read_list(str(run / 'split_train.txt')) == train.files
    assert data_loader.read_list(str(run / 'split_val.txt')) == val.files
    assert len(train) == 2 * cfg['crops_per_photo'] and train.augmentation.changes_pixels
    assert len(val) == 1 and not val.augmentation.changes_pixels


def test_sampler_numbers_samples_by_epoch_from_any_position():
    sampler = runtime.ResumableSampler(6, True, 5, numbered_by_epoch=True)
    sampler.set_position(3, 2)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(5 + 3)).tolist()
    assert list(sampler) == [3 * 6 + i for i in order[2:]]
    plain = runtime.ResumableSampler(6, True, 5)
    plain.set_position(3, 2)
    assert list(plain) == order[2:]


@pytest.mark.parametrize('bad', [dict(crops_per_photo=0), dict(crop_area=(0.5, 0.2)), dict(crop_area=(0, 1)),
                                 dict(crop_aspect=(2.0, 1.0))])
def test_impossible_augmentation_settings_are_refused(bad):
    with pytest.raises(ValueError):
        data_loader.Augmentation(**bad)
