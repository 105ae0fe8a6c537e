"""Spatial alignment: FCN-32s/16s/8s in both paddings put the response to an input feature on
the pixels that feature came from (pytorch-fcn's crop offsets), and a new stage starts as the
previous one (its extra score layers start at zero)."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import models
from models import ARCHITECTURES, build_model

ARCHS = sorted(ARCHITECTURES)
PADDINGS = ('same', 'caffe')
# each score layer, and the stride of the map it scores
SCORE_PATHS = {'fcn32s': {'score_fr': 32},
               'fcn16s': {'score_fr': 32, 'score_pool4': 16},
               'fcn8s': {'score_fr': 32, 'score_pool4': 16, 'score_pool3': 8}}
HEIGHT, WIDTH = 264, 328     # not multiples of 32, not square
MARGIN = 96                  # impulses this far from the borders: no response is cut by the crop
DIAGONAL_SHIFT = 40          # impulse at (p, p + 40): x and y cross cell borders at other p


def pass_through_network(arch, padding, path, monkeypatch):
    """The real network geometry (kernels, paddings, ceil-mode pools, upsamplers, crops) with one
    channel per layer: every convolution passes its centre tap on, BatchNorm is the identity
    (eval, unit statistics), and only score layer ``path`` lets the signal reach the output.
    A positive impulse then travels down to exactly one cell of that layer's map."""
    monkeypatch.setattr(models, 'VGG16_BLOCKS', tuple((1,) * len(block) for block in models.VGG16_BLOCKS))
    net = build_model(arch, 1, padding=padding, fc_channels=1).eval()
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, torch.nn.Conv2d) and not isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.zero_()
                module.bias.zero_()
                if not name.startswith('score') or name == path:
                    kh, kw = module.kernel_size
                    module.weight[:, :, kh // 2, kw // 2] = 1.0
    return net


def centroids(response, axis):
    """Weighted mean coordinate of each ``[N, H, W]`` response along ``axis`` (1: y, 2: x)."""
    coords = torch.arange(response.shape[axis], dtype=torch.float64)
    profile = response.double().sum(3 - axis)
    return (profile * coords).sum(1) / profile.sum(1)


def assert_centred_on_their_cells(positions, centres, stride):
    """Impulses giving the same output centre form a cell; that centre must be the middle of the
    cell's input positions.  Cells cut by the ends of the sweep are not judged."""
    keys = np.round(centres, 3)
    complete = 0
    for key in np.unique(keys):
        members = positions[keys == key]
        if positions[0] in members or positions[-1] in members:
            continue
        complete += 1
        assert len(members) == stride and np.all(np.diff(members) == 1), (key, members)
        assert abs(centres[keys == key].mean() - members.mean()) < 1e-3, \
            'output centred at %.2f for the input cell %d..%d (middle %.2f)' % (
                key, members[0], members[-1], members.mean())
    assert complete >= 1


@pytest.mark.parametrize('padding', PADDINGS)
@pytest.mark.parametrize('arch', ARCHS)
def test_an_impulse_comes_out_on_the_middle_of_its_input_cell(arch, padding, monkeypatch):
    positions = np.arange(MARGIN, HEIGHT - MARGIN)
    impulses = torch.zeros(len(positions), 1, HEIGHT, WIDTH)
    impulses[np.arange(len(positions)), 0, positions, positions + DIAGONAL_SHIFT] = 1.0
    for path, stride in SCORE_PATHS[arch].items():
        net = pass_through_network(arch, padding, path, monkeypatch)
        with torch.no_grad():
            response = net(impulses)[:, 0]
        assert response.shape == (len(positions), HEIGHT, WIDTH)
        assert (response >= 0).all() and (response.flatten(1).sum(1) > 0).all(), path
        assert_centred_on_their_cells(positions, centroids(response, 1).numpy(), stride)
        assert_centred_on_their_cells(positions + DIAGONAL_SHIFT, centroids(response, 2).numpy(), stride)


@pytest.mark.parametrize('padding', PADDINGS)
def test_a_shifted_input_gives_the_same_output_shifted(padding, monkeypatch):
    """A random input moved by one cell (32 px) down and right: the FCN-8s output moves by
    exactly 32 px (the pass-through network is shift-equivariant in steps of its stride)."""
    net = pass_through_network('fcn8s', padding, 'score_fr', monkeypatch)
    with torch.no_grad():
        for name in ('score_pool4', 'score_pool3'):
            getattr(net, name).weight[:, :, 0, 0] = 0.5
    x = torch.zeros(1, 1, HEIGHT, WIDTH)
    x[..., 64:160, 64:192] = torch.rand(96, 128, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(x, (32, 32), (2, 3))
    with torch.no_grad():
        out, out_shifted = net(x), net(shifted)
    torch.testing.assert_close(out_shifted[..., 32:, 32:], out[..., :-32, :-32], rtol=1e-5, atol=1e-6)
    assert out.abs().max() > 0.1


@pytest.mark.parametrize('arch', ['fcn16s', 'fcn8s'])
def test_skip_score_layers_start_at_zero_so_a_stage_starts_as_the_previous_one(arch):
    torch.manual_seed(0)
    fresh = build_model(arch, 5, fc_channels=16)
    for name in models.ARCHITECTURES[arch].SCORE_LAYERS:
        layer = getattr(fresh, name)
        assert torch.count_nonzero(layer.weight) == 0 and torch.count_nonzero(layer.bias) == 0, name
    previous_arch = {'fcn16s': 'fcn32s', 'fcn8s': 'fcn16s'}[arch]
    previous = build_model(previous_arch, 5, fc_channels=16)
    with torch.no_grad():
        for name, param in previous.named_parameters():
            if name.startswith('score'):
                param.normal_(0, 0.5)
    getattr(fresh, 'copy_params_from_' + previous_arch)(previous)
    x = torch.randn(2, 1, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = previous.eval()(x), fresh.eval()(x)
    # the skip maps add nothing: only the upsampling (x2 then x16 instead of x32) differs a little
    # (measured: 3-9 % of the spread; with Kaiming-initialised skip layers 80-230 %)
    spread = before.std()
    assert spread > 0.05
    assert (after - before).abs().mean() < 0.2 * spread
    assert (after.argmax(1) == before.argmax(1)).float().mean() > 0.9


# --------------------------------------------------------------------------
# end to end: colorize.py and evaluate.py put each colour on its own pixels
# --------------------------------------------------------------------------

QUADRANT_HUES = (0.0, 0.25, 0.75, 0.5)   # top-left, top-right, bottom-left, bottom-right: neighbours 90 deg apart
CHROMA = 0.4
NET_SIZE = (48, 80)                      # the checkpoint's im_size (h, w): not square either


class QuadrantScores(torch.nn.Module):
    """A stand-in network whose scores are a fixed function of position on the checkpoint's
    ``im_size``: bin ``2 * (lower half) + (right half)`` scores 20, the others 0.  An input of
    any other size (e.g. height and width swapped) fails to broadcast."""

    def __init__(self, size):
        super().__init__()
        h, w = size
        lower = (torch.arange(h) >= h / 2).long()[:, None]
        right = (torch.arange(w) >= w / 2).long()[None, :]
        self.scores = torch.nn.functional.one_hot(2 * lower + right, 4).permute(2, 0, 1).float() * 20.0

    def forward(self, x):
        return self.scores + 0.0 * x


@pytest.fixture
def quadrant_checkpoint(tmp_path, monkeypatch):
    """A colorizer-fcn checkpoint whose bins are the four quadrant hues, loaded as QuadrantScores."""
    import targets
    means = np.array([[hue, CHROMA] for hue in QUADRANT_HUES])
    bins = targets.GMMBins(np.full(4, 0.25), means, np.tile(np.eye(2) * 0.05 ** 2, (4, 1, 1)))
    encoder = targets.ColorEncoder(bins, mean_l=0.5)
    kwargs = {'n_class': 4, 'padding': 'same', 'fc_channels': 8}
    ckpt = {'arch': 'fcn32s', 'model_kwargs': kwargs,
            'model_state_dict': build_model('fcn32s', **kwargs).state_dict(),
            'encoder': encoder.state(), 'num_bins': 4, 'im_size': NET_SIZE,
            'config': {'dataset_path': None, 'val_set': 'small', 'val_fraction': 0.1}}
    path = tmp_path / 'quadrants.pth.tar'
    torch.save(ckpt, path)
    monkeypatch.setattr(models, 'model_from_checkpoint', lambda ckpt: QuadrantScores(ckpt['im_size']))
    return str(path)


def lightness_ramp(height, width):
    """L ``[H, W]`` in [0.3, 0.7], different along each axis and each direction."""
    y, x = np.mgrid[:height, :width]
    return 0.3 + 0.25 * x / width + 0.15 * y / height


def quadrant_photo(height, width):
    """uint8 ``[H, W, 3]``: the quadrant hues at chroma 0.4 over the lightness ramp (scikit-image HSV)."""
    from skimage.color import hsv2rgb
    lightness = lightness_ramp(height, width)
    hue = np.empty((height, width))
    for i, h in enumerate(QUADRANT_HUES):
        rows = slice(0, height // 2) if i < 2 else slice(height // 2, None)
        cols = slice(0, width // 2) if i % 2 == 0 else slice(width // 2, None)
        hue[rows, cols] = h
    value = lightness + CHROMA / 2
    return np.round(hsv2rgb(np.stack([hue, CHROMA / value, value], -1)) * 255).astype(np.uint8)


def hue_distance(a, b):
    return np.abs((a - b + 0.5) % 1.0 - 0.5)


def first_of_second_colour(hues, first, second):
    """Index where a line of hues turns from hue ``first`` to hue ``second`` (nearest of the two),
    checking that it turns exactly once."""
    is_second = hue_distance(hues, second) < hue_distance(hues, first)
    turn = int(np.argmax(is_second))
    assert not is_second[:turn].any() and is_second[turn:].all()
    return turn


def assert_quadrant_colours(rgb_uint8, lightness):
    """Every pixel farther than 1.5 network pixels from the middle lines has its quadrant's hue
    (scikit-image's HSV hue), the colours turn at the middle lines (within 1.5 pixels: the
    network's half-pixel boundary upsampled), and every pixel keeps ``lightness``."""
    from skimage.color import rgb2hsv
    height, width = lightness.shape
    assert rgb_uint8.shape == (height, width, 3)
    hsv = rgb2hsv(rgb_uint8)
    got_lightness = hsv[..., 2] - hsv[..., 1] * hsv[..., 2] / 2
    assert np.abs(got_lightness - lightness).max() < 1.0 / 255
    margin_y, margin_x = (int(np.ceil(1.5 * n / s)) for n, s in zip((height, width), NET_SIZE))
    for i, hue in enumerate(QUADRANT_HUES):
        rows = slice(0, height // 2 - margin_y) if i < 2 else slice(height // 2 + margin_y, None)
        cols = slice(0, width // 2 - margin_x) if i % 2 == 0 else slice(width // 2 + margin_x, None)
        off = hue_distance(hsv[rows, cols, 0], hue)
        assert off.max() < 0.02, 'quadrant %d: hue off by up to %.3f' % (i, off.max())
    top_left, top_right, bottom_left, bottom_right = QUADRANT_HUES
    for row, (left, right) in ((height // 4, (top_left, top_right)), (3 * height // 4, (bottom_left, bottom_right))):
        assert abs(first_of_second_colour(hsv[row, :, 0], left, right) - width / 2) <= 1.5
    for col, (top, bottom) in ((width // 4, (top_left, bottom_left)), (3 * width // 4, (top_right, bottom_right))):
        assert abs(first_of_second_colour(hsv[:, col, 0], top, bottom) - height / 2) <= 1.5


def save_rotated_jpeg(path, displayed):
    """A JPEG stored rotated 90 degrees anticlockwise with EXIF orientation 6 (rotate 90 degrees
    clockwise to display), so a viewer shows ``displayed``."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(displayed, 1))).save(path, exif=exif, quality=98)


@pytest.mark.parametrize('width, height', [(1003, 667), (667, 1003)])
def test_colorize_puts_each_colour_on_its_own_pixels_at_full_resolution(quadrant_checkpoint, tmp_path,
                                                                        width, height):
    import colorize
    photo = quadrant_photo(height, width)
    Image.fromarray(photo).save(tmp_path / 'photo.png')
    rotated_display = quadrant_photo(400, 640)
    save_rotated_jpeg(tmp_path / 'rotated.jpg', rotated_display)
    assert colorize.main(['--device', 'cpu', '-m', quadrant_checkpoint, '-o', str(tmp_path / 'out'),
                          str(tmp_path / 'photo.png'), str(tmp_path / 'rotated.jpg')]) == 0
    assert_quadrant_colours(np.asarray(Image.open(tmp_path / 'out' / 'photo.png')), lightness_ramp(height, width))
    rotated = np.asarray(Image.open(tmp_path / 'out' / 'rotated.png'))
    # the lightness of the JPEG's own pixels (compressed), turned upright here with numpy
    from skimage.color import rgb2hsv
    jpeg_hsv = rgb2hsv(np.rot90(np.asarray(Image.open(tmp_path / 'rotated.jpg')), -1))
    jpeg_lightness = jpeg_hsv[..., 2] * (1 - jpeg_hsv[..., 1] / 2)
    assert np.abs(jpeg_lightness - lightness_ramp(400, 640)).mean() < 0.01
    assert_quadrant_colours(rotated, jpeg_lightness)


def test_evaluate_scores_the_colours_on_their_own_pixels(quadrant_checkpoint, tmp_path):
    """Photos that are exactly what the stand-in network predicts: the model's full-resolution
    output matches them (any swap, flip or shift of the colours would cost tens of dB)."""
    import csv
    import evaluate
    folder = tmp_path / 'photos'
    folder.mkdir()
    Image.fromarray(quadrant_photo(667, 1003)).save(folder / 'a_wide.png')
    Image.fromarray(quadrant_photo(1003, 667)).save(folder / 'b_tall.png')
    save_rotated_jpeg(folder / 'c_rotated.jpg', quadrant_photo(400, 640))
    out = tmp_path / 'eval'
    assert evaluate.main(['--device', 'cpu', '-m', quadrant_checkpoint, '-d', str(folder), '-o', str(out)]) == 0
    with open(out / 'per_image.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [(os.path.basename(r['path']), int(r['width']), int(r['height'])) for r in rows] == [
        ('a_wide.png', 1003, 667), ('b_tall.png', 667, 1003), ('c_rotated.jpg', 640, 400)]
    for row in rows:
        assert float(row['model/psnr']) > 30.0, row
        assert float(row['model/psnr']) > float(row['grayscale/psnr']) + 10.0, row
