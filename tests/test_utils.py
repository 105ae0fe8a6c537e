"""Colour maths, low-pass, segmentation metrics and plots vs scikit-image / scikit-learn / numpy."""
import os
import sys

import numpy as np
import pytest
import torch
from skimage import color, filters, transform
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data_loader  # noqa: E402
import utils  # noqa: E402


def bundled_photos():
    root = data_loader.materialise_bundled()
    return [data_loader.load_rgb(os.path.join(root, f), 10 ** 8) for f in data_loader.find_images(root)]


def chw(rgb_uint8):
    return torch.from_numpy(np.array(rgb_uint8)).permute(2, 0, 1).double() / 255.0


@pytest.fixture(scope='module')
def photos():
    return bundled_photos()


def test_bundled_set_has_the_skimage_colour_photos(photos):
    assert len(photos) == len(data_loader.BUNDLED_PHOTOS) >= 9
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for p in photos)


def test_hue_and_chroma_agree_with_skimage_rgb2hsv(photos):
    for rgb in photos:
        hsv = color.rgb2hsv(rgb)
        h, c, l = utils.rgb_to_hcl(chw(rgb))
        np.testing.assert_allclose(h.numpy(), hsv[..., 0], atol=1e-12)
        np.testing.assert_allclose(c.numpy(), hsv[..., 1] * hsv[..., 2], atol=1e-12)
        np.testing.assert_allclose(l.numpy(), hsv[..., 2] - hsv[..., 1] * hsv[..., 2] / 2, atol=1e-12)


def test_round_trip_within_one_level_on_every_bundled_photo(photos):
    for rgb in photos:
        h, c, l = utils.rgb_to_hcl(chw(rgb).float())
        back = utils.hcl_to_rgb(h, c, l)
        assert np.abs(utils.to_uint8(back).astype(int) - rgb.astype(int)).max() <= 1


def test_inverse_agrees_with_skimage_hsv2rgb():
    rng = np.random.RandomState(0)
    hsv = rng.rand(17, 23, 3)
    rgb_ref = color.hsv2rgb(hsv)
    h, s, v = (torch.from_numpy(hsv[..., i]) for i in range(3))
    chroma = v * s
    np.testing.assert_allclose(utils.hcl_to_rgb(h, chroma, v - chroma / 2).permute(1, 2, 0).numpy(),
                               rgb_ref, atol=1e-12)


def test_grey_pixels_have_zero_hue_and_chroma():
    grey = torch.full((3, 4, 4), 0.4, dtype=torch.float64)
    h, c, l = utils.rgb_to_hcl(grey)
    assert torch.all(h == 0) and torch.all(c == 0) and torch.allclose(l, torch.tensor(0.4, dtype=torch.float64))


def test_chroma_plane_round_trip_and_wrapping():
    hue = torch.tensor([0.0, 0.02, 0.5, 0.98, 0.999999])
    chroma = torch.tensor([0.3, 0.5, 0.1, 0.5, 0.2])
    h2, c2 = utils.plane_to_hue_chroma(utils.hue_chroma_to_plane(hue, chroma))
    assert torch.all((h2 >= 0) & (h2 < 1))
    circular = torch.remainder(h2 - hue + 0.5, 1.0) - 0.5
    assert circular.abs().max() < 1e-5 and torch.allclose(c2, chroma, atol=1e-6)


def skimage_lowpass(x, s):
    """The project's CPU reference of the target low-pass (see utils.lowpass)."""
    blurred = filters.gaussian(x, sigma=s, mode='nearest', truncate=4.0, preserve_range=True)
    small = transform.rescale(blurred, 1.0 / s, order=1, anti_aliasing=False, mode='edge')
    return transform.resize(small, x.shape, order=1, anti_aliasing=False, mode='edge')


@pytest.mark.parametrize('shape,scale', [((61, 77), 4), ((64, 64), 8), ((33, 20), 2)])
def test_lowpass_equals_the_skimage_definition(shape, scale):
    x = np.random.RandomState(1).rand(*shape)
    out = utils.lowpass(torch.from_numpy(x)[None, None], scale)[0, 0].numpy()
    np.testing.assert_allclose(out, skimage_lowpass(x, scale), atol=1e-12)


def test_lowpass_keeps_red_red_across_the_hue_seam():
    # left half hue 0.98, right half 0.02: both red; a plain-number blur would give ~0.5 (cyan)
    hue = torch.where(torch.arange(32) < 16, torch.tensor(0.98), torch.tensor(0.02)).expand(1, 32, 32)
    chroma = torch.full_like(hue, 0.8)
    h, c = utils.lowpass_hue_chroma(hue, chroma, 4)
    circular_distance_to_red = torch.minimum(h, 1 - h)
    assert circular_distance_to_red.max() < 0.05   # 0.02: each side keeps its own red (a plain blur: 0.5)
    assert c.min() > 0.7


def test_confusion_and_scores_against_sklearn():
    rng = np.random.RandomState(0)
    n = 6
    true = rng.randint(0, n, size=(3, 20, 20))
    pred = np.where(rng.rand(3, 20, 20) < 0.6, true, rng.randint(0, n, size=(3, 20, 20)))
    hist = utils.confusion_matrix(torch.from_numpy(true), torch.from_numpy(pred), n).numpy()
    ref = sk_confusion_matrix(true.ravel(), pred.ravel(), labels=list(range(n)))
    np.testing.assert_array_equal(hist, ref)
    acc, acc_cls, mean_iu, fwavacc = utils.label_accuracy_score(list(true), list(pred), n)
    tp = np.diag(ref).astype(float)
    iou = tp / (ref.sum(0) + ref.sum(1) - tp)
    freq = ref.sum(1) / ref.sum()
    assert acc == pytest.approx(tp.sum() / ref.sum())
    assert acc_cls == pytest.approx(np.mean(tp / ref.sum(1)))
    assert mean_iu == pytest.approx(iou.mean())
    assert fwavacc == pytest.approx((freq * iou).sum())


def test_scores_ignore_classes_absent_from_truth_and_prediction():
    true = torch.tensor([0, 0, 1, 1])
    acc, acc_cls, mean_iu, _ = utils.label_accuracy_score([true], [true], 5)
    assert (acc, acc_cls, mean_iu) == (1.0, 1.0, 1.0)


def test_plot_log_csv_writes_png_beside_the_csv(tmp_path):
    header = ('epoch,iteration,train/loss,train/acc,train/acc_cls,train/mean_iu,train/fwavacc,'
              'valid/loss,valid/acc,valid/acc_cls,valid/mean_iu,valid/fwavacc,elapsed_time,valid/psnr')
    rows = [header]
    for it in range(30):
        rows.append('0,%d,%f,0.1,0.1,%f,0.1,,,,,,%d,' % (it, 3 - it * 0.05, it * 0.01, it))
        if it % 10 == 0:
            rows.append('0,%d,,,,,,%f,0.1,0.1,%f,0.1,%d,%f' % (it, 3 - it * 0.04, it * 0.01, it, 20 + it * 0.1))
    path = tmp_path / 'log.csv'
    path.write_text('\n'.join(rows) + '\n')
    out = utils.plot_log_csv(str(path))
    assert out == str(tmp_path / 'log_plots.png') and os.path.getsize(out) > 1000
    log = utils.read_log_csv(str(path))
    assert np.isfinite(log['valid/loss']).sum() == 3


def test_tile_images_places_each_image():
    a = np.zeros((4, 5, 3), np.uint8)
    b = np.full((4, 5, 3), 200, np.uint8)
    mosaic = utils.tile_images([[a, b], [b, a]], pad=1)
    assert mosaic.shape == (2 * 5 + 1, 2 * 6 + 1, 3)
    assert (mosaic[1:5, 7:12] == 200).all() and (mosaic[1:5, 1:6] == 0).all()


def test_tile_images_rows_are_as_tall_as_their_tallest_image_columns_as_wide_as_their_widest():
    wide, tall = np.zeros((2, 6, 3), np.uint8), np.full((5, 3, 3), 100, np.uint8)
    mosaic = utils.tile_images([[wide, wide], [tall, tall]], pad=1)
    assert mosaic.shape == (1 + 2 + 1 + 5 + 1, 1 + 6 + 1 + 6 + 1, 3)
    assert (mosaic[1:3, 1:7] == 0).all() and (mosaic[1:3, 8:14] == 0).all()        # row 1: 2 pixels tall
    assert (mosaic[4:9, 1:4] == 100).all() and (mosaic[4:9, 8:11] == 100).all()    # row 2 from pixel 4
    assert (mosaic[4:9, 4:7] == 255).all()                                         # beside the narrow image
