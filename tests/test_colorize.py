"""colorize.py: checkpoint loading, the full-resolution recombination and the command line,
with a real checkpoint from a 2-iteration run of config 199 (trained once for the module)."""
import json
import os
import pathlib

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from skimage.color import hsv2rgb, rgb2hsv
from skimage.metrics import peak_signal_noise_ratio

from conftest import temporary_folder
import colorize
import targets
import trainer
import utils


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(run folder, Trainer) of ``train_color_fcn32s.py -c 199 --max-iter 2``."""
    with temporary_folder() as folder:
        run = pathlib.Path(folder) / 'run'
        yield run, trainer.main('fcn32s', ['-c', '199', '-o', str(run), '--max-iter', '2'])


@pytest.fixture(scope='module')
def best(trained):
    return str(trained[0] / trainer.MODEL_BEST)


def lightness_of(rgb_uint8):
    """L = V - C/2 through scikit-image's HSV (C = S V), in [0, 1]."""
    hsv = rgb2hsv(rgb_uint8)
    return hsv[..., 2] - hsv[..., 1] * hsv[..., 2] / 2.0


def photo(width, height):
    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.BILINEAR))


def run_cli(args):
    return colorize.main(['--device', 'cpu'] + [str(a) for a in args])


def read(path):
    return np.asarray(Image.open(path))


# --- the checkpoint ------------------------------------------------------------------

def test_checkpoint_round_trip_with_weights_only(trained):
    run, state = trained
    path = run / trainer.CHECKPOINT  # written at the last validation, like the in-memory model
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    assert ckpt['arch'] == 'fcn32s' and ckpt['num_bins'] == 8 and tuple(ckpt['im_size']) == (64, 64)
    colorizer = colorize.load_colorizer(str(path), 'cpu')
    for name, tensor in state.bare_model.state_dict().items():
        torch.testing.assert_close(colorizer.model.state_dict()[name], tensor, rtol=0, atol=0)
    np.testing.assert_array_equal(colorizer.encoder.bins.means, state.encoder.bins.means)
    assert colorizer.encoder.mean_l == state.encoder.mean_l and not colorizer.model.training
    net_input = torch.rand(2, 1, 64, 64) - 0.5
    state.bare_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(colorizer.model(net_input), state.bare_model(net_input))


def test_without_decode_flags_a_checkpoint_is_decoded_as_its_config_says(best, tmp_path):
    """``decode`` / ``temperature`` in a checkpoint's config (what quality.py writes into its default model)
    are colorize.py's and evaluate.py's defaults; a flag still wins; without them: annealed at 0.38."""
    import evaluate
    ckpt = torch.load(best, map_location='cpu', weights_only=True)
    assert colorize.load_colorizer(best).decoding == ('annealed', utils.DEFAULT_TEMPERATURE)
    mode_model, cold_model = str(tmp_path / 'mode.pth.tar'), str(tmp_path / 'cold.pth.tar')
    torch.save(dict(ckpt, config=dict(ckpt['config'], decode='mode')), mode_model)
    torch.save(dict(ckpt, config=dict(ckpt['config'], temperature=0.2)), cold_model)
    Image.fromarray(photo(96, 64)).save(tmp_path / 'p.png')
    runs = {'mode default': [mode_model], 'mode flag': [best, '--decode', 'mode'],
            'cold default': [cold_model], 'cold flag': [best, '-T', '0.2'], 'plain': [best],
            'mode model, annealed flag': [mode_model, '--decode', 'annealed']}
    out = {}
    for name, (model, *flags) in runs.items():
        assert run_cli(['-m', model, *flags, '-o', tmp_path / name, tmp_path / 'p.png']) == 0
        out[name] = read(tmp_path / name / 'p.png')
    assert np.array_equal(out['mode default'], out['mode flag'])
    assert np.array_equal(out['cold default'], out['cold flag'])
    assert np.array_equal(out['mode model, annealed flag'], out['plain'])
    assert not np.array_equal(out['mode flag'], out['plain']) and not np.array_equal(out['cold flag'], out['plain'])
    folder = tmp_path / 'photos'
    folder.mkdir()
    Image.fromarray(photo(96, 64)).save(folder / 'p.png')
    for model, decoding in ((mode_model, 'mode'), (cold_model, 'annealed'), (best, 'annealed')):
        scored = tmp_path / ('scored-' + os.path.basename(model))
        assert evaluate.main(['-m', model, '--device', 'cpu', '-d', str(folder), '-o', str(scored)]) == 0
        assert json.loads((scored / 'metrics.json').read_text())['decode'] == decoding


def test_bad_checkpoints_are_refused_clearly(best, tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        colorize.load_colorizer(str(tmp_path / 'missing.pth.tar'))
    (tmp_path / 'text.pth.tar').write_text('not a checkpoint')
    with pytest.raises(ValueError, match='cannot be read as a checkpoint'):
        colorize.load_colorizer(str(tmp_path / 'text.pth.tar'))
    torch.save({'weights': torch.zeros(3)}, tmp_path / 'other.pth.tar')
    with pytest.raises(ValueError, match='not a colorizer-fcn checkpoint'):
        colorize.load_colorizer(str(tmp_path / 'other.pth.tar'))
    ckpt = torch.load(best, weights_only=True)
    ckpt['num_bins'] = 16  # claims other bins than its encoder holds
    torch.save(ckpt, tmp_path / 'k16.pth.tar')
    with pytest.raises(ValueError, match='K=8'):
        colorize.load_colorizer(str(tmp_path / 'k16.pth.tar'))


# --- the full-resolution colour maths --------------------------------------------------

def test_recombine_matches_hsv_and_keeps_lightness(best):
    """A constant plane (H, C) over L -> the HSV colour V = L + C/2, S = C / V (scikit-image)."""
    colorizer = colorize.load_colorizer(best, 'cpu')
    hue, chroma = 0.6, 0.3
    plane = utils.hue_chroma_to_plane(torch.full((3, 5), hue), torch.full((3, 5), chroma))
    lightness = torch.linspace(0.2, 0.8, 7 * 11).view(7, 11)  # chroma 0.3 fits everywhere
    out = colorizer.recombine(plane, lightness)
    assert out.shape == (7, 11, 3) and out.dtype == np.uint8
    value = lightness.numpy() + chroma / 2
    hsv = np.stack([np.full_like(value, hue), chroma / value, value], -1)
    np.testing.assert_array_less(np.abs(out.astype(float) - hsv2rgb(hsv) * 255), 0.51)
    # where L leaves no room for C (near black and white) chroma shrinks and L is kept
    extreme = torch.tensor([[0.02, 0.98, 0.0, 1.0]])
    out = colorizer.recombine(plane, extreme)
    np.testing.assert_allclose(lightness_of(out), extreme.numpy(), atol=0.5 / 255 + 1e-9)


def test_colour_photo_and_its_grey_version_get_the_same_colours(best):
    colorizer = colorize.load_colorizer(best, 'cpu')
    rgb = photo(90, 70)
    grey = np.round(lightness_of(rgb) * 255).astype(np.uint8)
    colour_out, grey_out = colorizer.colorize([rgb, np.repeat(grey[..., None], 3, -1)])
    assert np.abs(colour_out.astype(float) - grey_out).mean() < 1.0


def test_batches_do_not_change_results(best, tmp_path):
    sizes = [(50, 40), (33, 71), (64, 64)]
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(photo(w, h)).save(tmp_path / ('in%d.png' % i))
    inputs = [tmp_path / ('in%d.png' % i) for i in range(3)]
    assert run_cli(['-m', best, '--batch-size', 1, '-o', tmp_path / 'one'] + inputs) == 0
    assert run_cli(['-m', best, '--batch-size', 3, '-o', tmp_path / 'three'] + inputs) == 0
    for i in range(3):
        np.testing.assert_array_equal(read(tmp_path / 'one' / ('in%d.png' % i)),
                                      read(tmp_path / 'three' / ('in%d.png' % i)))


# --- the command line ------------------------------------------------------------------

def test_keeps_size_and_lightness_of_a_1003x667_photo(best, tmp_path):
    rgb = photo(1003, 667)
    Image.fromarray(rgb).save(tmp_path / 'big.png')
    assert run_cli(['-m', best, '-o', tmp_path / 'out', tmp_path / 'big.png']) == 0
    out = read(tmp_path / 'out' / 'big.png')
    assert out.shape == (667, 1003, 3)
    assert peak_signal_noise_ratio(lightness_of(rgb), lightness_of(out), data_range=1.0) >= 40.0
    assert utils.colorfulness(out) > 1.0  # it did add colour


def test_any_mode_and_exif_orientation(best, tmp_path):
    rgb = photo(40, 30)
    Image.fromarray(rgb).convert('L').save(tmp_path / 'grey.png')
    Image.fromarray(rgb).convert('P').save(tmp_path / 'palette.gif')
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / 'rotated.jpg', exif=exif)
    assert run_cli(['-m', best, '-o', tmp_path / 'out', tmp_path / 'grey.png', tmp_path / 'palette.gif',
                    tmp_path / 'rotated.jpg']) == 0
    assert read(tmp_path / 'out' / 'grey.png').shape == (30, 40, 3)
    assert read(tmp_path / 'out' / 'palette.png').shape == (30, 40, 3)
    assert read(tmp_path / 'out' / 'rotated.png').shape == (40, 30, 3)


def test_unreadable_inputs_are_reported_and_the_others_done(best, tmp_path, capsys):
    Image.fromarray(photo(32, 24)).save(tmp_path / 'good.png')
    (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 this is no JPEG')
    assert run_cli(['-m', best, '-o', tmp_path / 'out', tmp_path / 'broken.jpg', tmp_path / 'good.png',
                    tmp_path / 'missing.png']) == 1   # some unreadable: 1, the others written
    err = capsys.readouterr().err
    assert 'broken.jpg' in err and 'missing.png' in err
    assert sorted(os.listdir(tmp_path / 'out')) == ['good.png']
    assert run_cli(['-m', best, '-o', tmp_path / 'out2', tmp_path / 'broken.jpg']) == 1
    assert not os.path.exists(tmp_path / 'out2' / 'broken.png')


def test_folders_side_by_side_and_unique_names(best, tmp_path):
    folder = tmp_path / 'photos'
    (folder / 'sub').mkdir(parents=True)
    Image.fromarray(photo(30, 20)).save(folder / 'a.png')
    Image.fromarray(photo(30, 20)).save(folder / 'sub' / 'b.jpg')
    Image.fromarray(photo(26, 18)).save(tmp_path / 'a.jpg')
    assert run_cli(['-m', best, '-o', tmp_path / 'out', '--side-by-side', folder, tmp_path / 'a.jpg']) == 0
    out = tmp_path / 'out'
    assert read(out / 'a.png').shape == (20, 30, 3) and read(out / 'a_2.png').shape == (18, 26, 3)
    assert read(out / 'sub' / 'b.png').shape == (20, 30, 3)
    pair = read(out / 'a_side_by_side.png')
    assert pair.shape == (20, 60, 3)
    np.testing.assert_array_equal(pair[:, :30], photo(30, 20))
    np.testing.assert_array_equal(pair[:, 30:], read(out / 'a.png'))


@pytest.mark.parametrize('bins', [targets.OneHotBins(32), targets.GMMBins.uniform_grid(64)])
def test_target_planes_encode_and_decode_the_original_for_every_binning(bins):
    """A flat colour through the bins and back lands within half a bin of itself (mode decoding)."""
    colorizer = colorize.Colorizer(None, targets.ColorEncoder(bins, 0.5, img_lowpass=4), (16, 16), 'cpu')
    hue, chroma = 0.3, 0.45
    rgb = utils.hcl_to_rgb(torch.full((20, 30), hue), torch.full((20, 30), chroma), torch.full((20, 30), 0.5))
    rgb_uint8 = utils.to_uint8(rgb)
    plane = colorizer.target_planes([rgb_uint8], 'mode')
    assert plane.shape == (1, 2, 16, 16)
    got_hue, got_chroma = utils.plane_to_hue_chroma(plane)
    half_bin = 0.5 / (31 if isinstance(bins, targets.OneHotBins) else 7)
    assert (got_hue - hue).abs().max() <= half_bin + 0.01 and (got_chroma - chroma).abs().max() <= half_bin + 0.01
