"""evaluate.py: which images it scores, and its scores checked against scikit-image and
colorize.py's own output, with a real checkpoint of config 199 (conftest's plain_model, trained once
for the session)."""
import csv
import json
import os

import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage.color import rgb2hsv
from skimage.metrics import peak_signal_noise_ratio

import colorize
import data_loader
import evaluate
import utils

PHOTOS = ('astronaut', 'chelsea', 'coffee')


@pytest.fixture(scope='module')
def best(plain_model):
    return plain_model


def write_photos(folder, names=PHOTOS, size=(80, 60)):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        rgb = getattr(skimage.data, name)()
        Image.fromarray(rgb).resize(size, Image.BILINEAR).save(os.path.join(folder, name + '.png'))


def grey_of(rgb):
    """The grayscale baseline, independently: L = V - C/2 from scikit-image's HSV, 3 channels."""
    hsv = rgb2hsv(rgb)
    lightness = hsv[..., 2] - hsv[..., 1] * hsv[..., 2] / 2.0
    halves = np.round(lightness * 255 * 2) / 2  # (max + min) / 2 is a whole or half level
    return np.repeat(np.round(halves).astype(np.uint8)[..., None], 3, -1)


def args_for(*argv):
    return evaluate.parse_args(['-m', 'unused.pth.tar'] + [str(a) for a in argv])


def cfg_for(dataset_path):
    return {'dataset_path': dataset_path, 'val_set': 'small', 'val_fraction': 0.3}


# --- which images -----------------------------------------------------------------------

def test_default_set_of_a_bundled_run_is_the_bundled_photos(best, tmp_path):
    colorizer = colorize.load_colorizer(best)
    assert colorizer.config['dataset_path'] is None
    paths = evaluate.evaluation_paths(args_for(), colorizer.config, best)
    root = data_loader.materialise_bundled()
    assert paths == [os.path.join(root, p) for p in data_loader.find_images(root)] and len(paths) == 10
    assert evaluate.main(['-m', best, '--device', 'cpu', '--max-images', '2', '-o', str(tmp_path)]) == 0
    assert json.loads((tmp_path / 'metrics.json').read_text())['n_images'] == 2


def test_photo_folder_run_uses_its_validation_split(tmp_path):
    folder = tmp_path / 'photos'
    write_photos(folder, ('astronaut', 'chelsea', 'coffee', 'rocket', 'retina', 'colorwheel'), (8, 8))
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    checkpoint = str(run_dir / 'model_best.pth.tar')
    cfg = cfg_for(str(folder))
    hashed = data_loader.hash_split(data_loader.find_images(str(folder)), 0.3)[1]
    assert evaluate.evaluation_paths(args_for(), cfg, checkpoint) == [str(folder / p) for p in hashed]
    data_loader.write_list(str(run_dir / 'split_val.txt'), ['rocket.png', 'chelsea.png'])
    expected = [str(folder / 'rocket.png'), str(folder / 'chelsea.png')]
    assert evaluate.evaluation_paths(args_for(), cfg, checkpoint) == expected
    assert evaluate.evaluation_paths(args_for('-d', folder), cfg, checkpoint) == expected  # same folder
    other = tmp_path / 'other'
    write_photos(other, ('coffee', 'astronaut'), (8, 8))
    assert evaluate.evaluation_paths(args_for('-d', other), cfg, checkpoint) == \
        [str(other / 'astronaut.png'), str(other / 'coffee.png')]  # a new folder: all of it
    with pytest.raises(FileNotFoundError, match='does not exist here'):
        evaluate.evaluation_paths(args_for(), cfg_for(str(tmp_path / 'gone')), checkpoint)


def test_imagenet_root_uses_the_configs_val_list(tmp_path):
    root = tmp_path / 'imagenet'
    (root / 'train').mkdir(parents=True)
    (root / 'val').mkdir()
    data_loader.write_list(str(root / 'files_100k_val.txt'), ['val/b.JPEG', 'val/a.JPEG'])
    paths = evaluate.evaluation_paths(args_for('-d', root), cfg_for(None), str(tmp_path / 'ckpt.pth.tar'))
    assert paths == [str(root / 'val' / 'b.JPEG'), str(root / 'val' / 'a.JPEG')]


def test_larsson_lists_find_class_folders_or_flat_val(tmp_path):
    listing = tmp_path / 'ctest.txt'
    listing.write_text('/n01440764/ILSVRC2012_val_00000293.JPEG 0\n/n01443537/ILSVRC2012_val_00000236.JPEG 1\n')
    by_class = tmp_path / 'by_class'
    (by_class / 'n01440764').mkdir(parents=True)
    (by_class / 'n01440764' / 'ILSVRC2012_val_00000293.JPEG').write_bytes(b'')
    flat = tmp_path / 'flat'
    (flat / 'val').mkdir(parents=True)
    (flat / 'val' / 'ILSVRC2012_val_00000236.JPEG').write_bytes(b'')
    ckpt = str(tmp_path / 'ckpt.pth.tar')
    assert evaluate.evaluation_paths(args_for('--list', listing, '-d', by_class), cfg_for(None), ckpt) == [
        str(by_class / 'n01440764' / 'ILSVRC2012_val_00000293.JPEG'),
        str(by_class / 'n01443537' / 'ILSVRC2012_val_00000236.JPEG')]  # absent: reported as unreadable later
    assert evaluate.evaluation_paths(args_for('--list', listing, '-d', flat), cfg_for(None), ckpt)[1] == \
        str(flat / 'val' / 'ILSVRC2012_val_00000236.JPEG')
    with pytest.raises(ValueError, match='--list needs -d'):
        evaluate.evaluation_paths(args_for('--list', listing), cfg_for(None), ckpt)


# --- the scores -------------------------------------------------------------------------

def test_scores_outputs_and_skips(best, tmp_path):
    folder = tmp_path / 'photos'
    write_photos(folder)
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    out = tmp_path / 'eval'
    argv = ['-m', best, '--device', 'cpu', '-d', str(folder), '-o', str(out), '--batch-size', '2']
    assert evaluate.main(argv) == 1   # one unreadable: status 1, the others scored

    summary = json.loads((out / 'metrics.json').read_text())
    assert summary['n_images'] == 3 and summary['n_skipped'] == 1
    assert summary['skipped'][0]['path'] == str(folder / 'broken.png') and summary['skipped'][0]['reason']
    for method in evaluate.METHODS:
        assert set(summary[method]) == {'psnr', 'rmse', 'auc', 'auc_rebal', 'colorfulness'}
    with open(out / 'per_image.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [os.path.basename(r['path']) for r in rows] == ['astronaut.png', 'chelsea.png', 'coffee.png']
    for method in evaluate.METHODS:
        for key in utils.COLORIZATION_METRICS:
            assert summary[method][key] == pytest.approx(np.mean([float(r['%s/%s' % (method, key)]) for r in rows]))

    # the model's images are colorize.py's images; grayscale is L in three channels
    assert colorize.main(['-m', best, '--device', 'cpu', '-o', str(tmp_path / 'col'), str(folder)]) == 1  # broken.png
    for row in rows:
        truth = data_loader.load_rgb(row['path'], 10 ** 8)
        assert (int(row['width']), int(row['height'])) == (80, 60)
        model_out = np.asarray(Image.open(tmp_path / 'col' / os.path.basename(row['path'])))
        assert float(row['model/psnr']) == pytest.approx(peak_signal_noise_ratio(truth, model_out, data_range=255))
        grey = grey_of(truth)
        assert float(row['grayscale/psnr']) == pytest.approx(peak_signal_noise_ratio(truth, grey, data_range=255))
        assert float(row['grayscale/colorfulness']) == 0.0
        assert float(row['truth/colorfulness']) == pytest.approx(utils.colorfulness(truth))
    # the target (the bins' ceiling, on photos the bins were fitted to) beats no colour at all
    assert summary['target']['psnr'] > summary['grayscale']['psnr']
    assert summary['target']['auc'] > summary['grayscale']['auc']

    grid = np.asarray(Image.open(out / 'grid.png'))   # 80 x 60 photos drawn GRID_CELL wide, rows as tall
    width, height = evaluate.GRID_CELL, evaluate.GRID_CELL * 60 // 80
    assert grid.shape == (3 * (height + 2) + 2, 4 * (width + 2) + 2, 3)


def test_nothing_readable_fails(best, tmp_path):
    folder = tmp_path / 'bad'
    folder.mkdir()
    (folder / 'a.jpg').write_bytes(b'nope')
    assert evaluate.main(['-m', best, '--device', 'cpu', '-d', str(folder), '-o', str(tmp_path / 'o')]) == 1
    assert not (tmp_path / 'o' / 'metrics.json').exists()


def test_table_lists_every_method():
    summary = {m: dict(zip(utils.COLORIZATION_METRICS, [20.0, 10.0, 90.0, 80.0, 30.0])) for m in evaluate.METHODS}
    summary['ground_truth'] = {'colorfulness': 40.0}
    table = evaluate.format_table(summary).splitlines()
    assert [line.split()[0] for line in table[1:]] == ['model', 'grayscale', 'target', 'ground']
    assert table[-1].split()[-1] == '40.00'

