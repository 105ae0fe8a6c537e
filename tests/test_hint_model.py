"""Hint models end to end: a tiny model trained with hints (config 198) uses them; colorize.py's
--hints (JSON and PNG) and its errors; checkpoints say whether a model takes hints; the hint sweep."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import colorize
import evaluate
import hints
import utils

HINT_COLOURS = ('#10c030', '#2050e0')   # a green and a blue
HINTED_RATIO = 0.5   # the trained hint model: with / without hints at most this (measured: 0.0003 to 0.04)
FAR_GAP, FAR_RATIO = 4, 0.75   # ... and at least FAR_GAP pixels from every hint's square (measured: 0.31)
UNSEEN_PHOTOS = ('rocket', 'motorcycle_left', 'immunohistochemistry')   # none of the hint model's


@pytest.fixture(scope='module')
def photo():
    import conftest
    return conftest.skimage_photo('coffee', (160, 120))


def save(path, rgb):
    Image.fromarray(rgb).save(path)
    return str(path)


def test_checkpoints_say_whether_a_model_takes_hints(hint_model, plain_model):
    assert colorize.load_colorizer(hint_model).takes_hints
    assert not colorize.load_colorizer(plain_model).takes_hints
    ckpt = torch.load(hint_model, map_location='cpu', weights_only=True)
    assert ckpt['model_kwargs']['in_channels'] == 4 and ckpt['config']['hints'] is True
    assert ckpt['model_state_dict']['conv1_1.weight'].shape[1] == 4


def test_a_hint_checkpoint_cannot_start_a_run_without_hints(hint_model, tmp_path, capsys):
    import cli
    import conftest
    import trainer
    status = cli.run_cli(lambda argv: trainer.main('fcn32s', argv),
                         conftest.SMOKE_ARGS + ['-m', hint_model, '-o', str(tmp_path / 'run')])
    err = capsys.readouterr().err
    assert status == 2 and 'Traceback' not in err, err
    assert err.startswith('error: %s takes colour hints and this run has none' % hint_model), err
    assert not (tmp_path / 'run').exists()


def test_the_trained_hint_model_colours_a_hinted_region_towards_the_hint_and_away_from_its_squares(hint_model, tmp_path):
    """On photos it never saw (conftest.recoloured_photos with another seed: which half is orange and
    which blue only hints can tell), the network's own prediction (before the hints are applied on
    their squares) over four hinted squares, two in each half, is far closer to the hints' colours
    than without hints: the mean distance on the chroma plane with hints is under HINTED_RATIO of
    the one without.  Away from the squares (every pixel at least FAR_GAP pixels from all four) the
    network carries the hints' colours to the rest of each half: its distance to the photo's own colours
    with hints is under FAR_RATIO of the one without (measured 2026-12-07, seed 0, 2-core AMD EPYC:
    0.60 without, 0.19 with, ratio 0.31; 0.23 right outside the squares, 0.47 at 8 pixels).

    Measured ratios (hint_model's training, config 198, seeds 0-4; 2-core Intel Xeon, KVM):
    0.0006, 0.0029, 0.0156, 0.0118 and 0.0256; the threshold, 0.5, is 20 times the largest.  Before issue 29 (one random hue per
    photo, model_best of validations every 50 iterations) it was 0.89, 1.04 and 1.05 for seeds 0-2
    against a threshold of 0.9."""
    import conftest
    folder = conftest.recoloured_photos(str(tmp_path), count=8, seed=1, names=UNSEEN_PHOTOS)
    colorizer = colorize.load_colorizer(hint_model)
    distances, far_distances = [], []
    for name in sorted(os.listdir(folder)):
        photo = np.asarray(Image.open(os.path.join(folder, name)).convert('RGB'))
        lightness = colorizer.lightness(photo)
        height, width = lightness.shape
        centres = [(x, y) for x in (16, 52) for y in (14, 40)]
        points = [{'x': x, 'y': y, 'size': 16, 'ab': hints.rgb_to_plane(photo[y - 8:y + 8, x - 8:x + 8])
                   .reshape(-1, 2).mean(0).tolist()} for x, y in centres]
        maps = colorizer.full_hint_maps(points, height, width)
        wanted, hinted = hints.reduce_hint_maps(maps[0][None], maps[1][None, None], colorizer.im_size)
        hinted = hinted[0, 0] > 0
        truth = torch.from_numpy(hints.rgb_to_plane(photo)).permute(2, 0, 1)
        ys, xs = np.mgrid[:height, :width]
        far = torch.from_numpy(np.all([(abs(xs - x) >= 8 + FAR_GAP) | (abs(ys - y) >= 8 + FAR_GAP)
                                       for x, y in centres], axis=0))

        def distance(given):
            plane = colorizer.predicted_planes([lightness], hint_maps=[given])[0]
            full = torch.nn.functional.interpolate(plane[None], size=(height, width), mode='bilinear',
                                                   align_corners=False)[0]
            return (float((plane - wanted[0]).norm(dim=0)[hinted].mean()),
                    float((full - truth).norm(dim=0)[far].mean()))
        (without, far_without), (with_hints, far_with) = distance(colorizer.full_hint_maps([], height, width)), \
            distance(maps)
        distances.append((without, with_hints))
        far_distances.append((far_without, far_with))
    without, with_hints = np.mean(distances, axis=0)
    assert with_hints < HINTED_RATIO * without, distances
    far_without, far_with = np.mean(far_distances, axis=0)
    assert far_with < FAR_RATIO * far_without, far_distances


def test_colorize_hints_from_json_and_png_give_the_same_picture(hint_model, photo, tmp_path):
    photo_path = save(tmp_path / 'photo.png', photo)
    points = [{'x': 30, 'y': 20, 'color': HINT_COLOURS[0], 'size': 7}, {'x': 120, 'y': 90, 'color': HINT_COLOURS[1]}]
    (tmp_path / 'hints.json').write_text(json.dumps({'points': points}))
    rgba = np.zeros(photo.shape[:2] + (4,), np.uint8)
    for p in points:
        x0, y0, x1, y1 = hints.point_box(p, photo.shape[1], photo.shape[0])
        rgba[y0:y1, x0:x1] = hints.parse_color(p['color']) + (255,)
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'hints.png')
    for name in ('json', 'png'):
        assert colorize.main(['-m', hint_model, '--hints', str(tmp_path / ('hints.' + name)),
                              '-o', str(tmp_path / name), photo_path]) == 0
    from_json = np.asarray(Image.open(tmp_path / 'json' / 'photo.png'))
    np.testing.assert_array_equal(from_json, np.asarray(Image.open(tmp_path / 'png' / 'photo.png')))
    library = colorize.load_colorizer(hint_model).colorize(photo, hints=points)
    np.testing.assert_array_equal(from_json, library)
    # on the hint's square: its hue and chroma with the photo's own lightness
    hue, chroma, lightness = utils.rgb_to_hcl(torch.from_numpy(from_json.copy()).permute(2, 0, 1).float() / 255)
    _, _, photo_l = utils.rgb_to_hcl(torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255)
    assert (lightness - photo_l).abs().max() <= 1 / 255 + 1e-6
    want_hue, want_chroma, _ = utils.rgb_to_hcl(torch.tensor(hints.parse_color(points[0]['color'])).float()
                                                .reshape(3, 1, 1) / 255)
    square = (slice(17, 24), slice(27, 34))
    fits = chroma[square] >= want_chroma.item() - 0.02                   # where L leaves room for the chroma
    hue_error = torch.remainder(hue[square] - want_hue.item() + 0.5, 1.0) - 0.5
    assert fits.float().mean() > 0.5 and hue_error[fits].abs().max() < 0.02


@pytest.mark.parametrize('content, message', [
    ('{"points": [{"x": 500, "y": 5, "color": "#ff0000"}]}', 'outside the photo'),
    ('{"points": [{"x": 5, "y": 5, "color": "reddish"}]}', 'is not a colour'),
    ('{"points": [{"x": 5, "y": 5, "color": "rgb(1.2.3, 0, 0)"}]}', 'is not a colour'),
    ('{"points": [{"x": 5, "y": 5, "ab": [true, false]}]}', '"ab" must be two numbers'),
    ('{"points": [', 'neither JSON nor a PNG'),
])
def test_bad_hint_files_are_one_error_line_and_nothing_is_written(hint_model, photo, tmp_path, capsys, content,
                                                                 message):
    import cli
    (tmp_path / 'hints.json').write_text(content)
    status = cli.run_cli(colorize.main, ['-m', hint_model, '--hints', str(tmp_path / 'hints.json'),
                                         '-o', str(tmp_path / 'out'), save(tmp_path / 'photo.png', photo)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith('error: ') and message in err[0]
    assert not (tmp_path / 'out').exists()


def test_suggested_colours_are_the_most_likely_bins(hint_model, photo):
    colorizer = colorize.load_colorizer(hint_model)
    suggested = colorizer.suggest_colors(photo, 40, 30, count=5)
    lightness = colorizer.lightness(photo)
    probs = colorizer.probabilities([lightness])[0][:, 30 * 64 // 120, 40 * 64 // 160]
    best = colorizer.encoder.bins.centres[int(probs.argmax())]
    l = float(lightness[30, 40].clamp(*colorize.SUGGESTED_LIGHTNESS))
    expected = utils.to_uint8(utils.hue_chroma_to_rgb(best[0].reshape(1, 1), best[1].reshape(1, 1),
                                                      torch.full((1, 1), l)).reshape(3))
    assert 1 <= len(suggested) <= 5 and len(set(suggested)) == len(suggested)
    assert suggested[0] == '#%02x%02x%02x' % tuple(expected.tolist())


def test_evaluate_hint_sweep_writes_the_three_curves(hint_model, tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    import conftest
    conftest.write_photos(str(folder), names=('astronaut', 'coffee'), size=(96, 72))
    out = tmp_path / 'eval'
    assert evaluate.main(['-m', hint_model, '--device', 'cpu', '-o', str(out), '--hint-points', '0,2,10',
                          '-d', str(folder)]) == 0
    result = json.loads((out / 'hints.json').read_text())
    assert {'model', 'levin', 'grayscale'} <= set(result)
    for method in result:
        assert set(result[method]) == {'0', '2', '10'}
        assert {'psnr', 'auc'} <= set(result[method]['0'])
    assert result['grayscale']['0'] == result['grayscale']['10']
    assert result['levin']['10']['psnr'] > result['levin']['0']['psnr']   # Levin with no points is grey
    assert (out / 'hints_psnr.png').exists() and (out / 'hints_grid.png').exists()
    assert result['default'] == result[colorize.load_colorizer(hint_model).hint_method]
    # --hint-method: another method scored as "default" (quality.py's sweeps of models that carry none)
    other = tmp_path / 'eval-corrections'
    assert evaluate.main(['-m', hint_model, '--device', 'cpu', '-o', str(other), '--hint-points', '0,2,10',
                          '-d', str(folder), '--hint-method', 'corrections']) == 0
    swept = json.loads((other / 'hints.json').read_text())
    assert swept['default'] == swept['corrections'] != swept[colorize.load_colorizer(hint_model).hint_method]
    assert json.loads((other / 'metrics.json').read_text())['hint_method'] == 'corrections'
