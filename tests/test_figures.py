"""What the plots and pictures show: plot_log_csv draws the CSV's values (read back from the
figure's lines), the training visualization tile is [original | target colour | grayscale |
prediction] with a grey grayscale column equal to L, and evaluate.py's grid rows are the photos."""
import os

import numpy as np
from PIL import Image

import data_loader
import evaluate
import utils
from test_alignment import quadrant_checkpoint  # noqa: F401  (a fixture: the stand-in network)

HEADER = ('epoch,iteration,train/loss,train/acc,train/acc_cls,train/mean_iu,train/fwavacc,valid/loss,'
          'valid/acc,valid/acc_cls,valid/mean_iu,valid/fwavacc,elapsed_time,valid/psnr')
PAD = 2   # utils.tile_images' default border


def lightness_levels(rgb_uint8):
    """L = (max + min) / 2 in 8-bit levels (float)."""
    return (rgb_uint8.max(-1).astype(float) + rgb_uint8.min(-1)) / 2


def trailing_mean(values, window):
    return np.array([np.mean(values[max(0, i - window + 1):i + 1]) for i in range(len(values))])


def cell(tile, row, col, height, width):
    y, x = PAD + row * (height + PAD), PAD + col * (width + PAD)
    return tile[y:y + height, x:x + width]


def test_plot_log_csv_draws_the_values_of_the_csv(tmp_path, monkeypatch):
    rng = np.random.RandomState(0)
    train_loss, train_iou = rng.uniform(1, 3, 25).tolist(), rng.uniform(0, 1, 25).tolist()
    valid = {0: (2.9, 0.11, 19.5), 10: (2.1, 0.32, 21.0), 20: (1.7, 0.45, 23.25)}
    lines = [HEADER]
    for it in range(25):
        lines.append('0,%d,%r,0.5,0.5,%r,0.5,,,,,,%d,' % (it, train_loss[it], train_iou[it], it))
        if it in valid:
            loss, iou, psnr = valid[it]
            lines.append('0,%d,,,,,,%r,0.5,0.5,%r,0.5,%d,%r' % (it, loss, iou, it, psnr))
    (tmp_path / 'log.csv').write_text('\n'.join(lines) + '\n')
    figures = []
    import matplotlib.pyplot as plt
    monkeypatch.setattr(plt, 'close', figures.append)   # keep the figure to read its lines back
    utils.plot_log_csv(str(tmp_path / 'log.csv'), smoothing_window=5)
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == ['loss', 'mean IoU', 'PSNR (dB)']
    valid_its = sorted(valid)
    for ax, train_values, column in ((axes[0], train_loss, 0), (axes[1], train_iou, 1)):
        raw, smooth, dots = ax.get_lines()
        for line in (raw, smooth):
            np.testing.assert_array_equal(line.get_xdata(), np.arange(25))
        np.testing.assert_allclose(raw.get_ydata(), train_values)
        np.testing.assert_allclose(smooth.get_ydata(), trailing_mean(train_values, 5))
        np.testing.assert_array_equal(dots.get_xdata(), valid_its)
        np.testing.assert_allclose(dots.get_ydata(), [valid[i][column] for i in valid_its])
    (psnr,) = axes[2].get_lines()
    np.testing.assert_array_equal(psnr.get_xdata(), valid_its)
    np.testing.assert_allclose(psnr.get_ydata(), [valid[i][2] for i in valid_its])


def test_visualization_tile_is_original_target_grayscale_prediction(photo_folder, work_dir, train):
    done = train('fcn32s', '-d', photo_folder, '-o', work_dir, '--max-iter', 1)
    tile = np.asarray(Image.open(os.path.join(work_dir, 'visualization_viz', 'iter%012d.png' % 1)))
    height, width = done.cfg['im_size']
    rows = min(done.cfg['viz_images'], len(done.val_set))
    assert tile.shape == (rows * (height + PAD) + PAD, 4 * (width + PAD) + PAD, 3)
    for row in range(rows):
        original = data_loader.load_rgb(done.val_set.path(row), 10 ** 8, resize_to=(height, width))
        np.testing.assert_array_equal(cell(tile, row, 0, height, width), original)
        grey = cell(tile, row, 2, height, width).astype(int)
        assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
        np.testing.assert_allclose(grey[..., 0], lightness_levels(original), atol=1.0)
        # the two colourings keep the original's lightness and add colour
        for col in (1, 3):
            coloured = cell(tile, row, col, height, width)
            np.testing.assert_allclose(lightness_levels(coloured), lightness_levels(original), atol=1.0)
        target = cell(tile, row, 1, height, width)
        assert utils.colorfulness(target) > 0.3 * utils.colorfulness(original) > 0


def test_evaluation_grid_rows_are_the_photos_in_order(quadrant_checkpoint, tmp_path):  # noqa: F811
    import skimage.data
    folder = tmp_path / 'photos'
    folder.mkdir()
    photos = {'a.png': skimage.data.astronaut(), 'b.png': skimage.data.chelsea(), 'c.png': skimage.data.coffee()}
    sizes = {'a.png': (120, 90), 'b.png': (90, 120), 'c.png': (100, 100)}   # under one grid cell: not resized
    for name, rgb in photos.items():
        photos[name] = np.asarray(Image.fromarray(rgb).resize(sizes[name], Image.BILINEAR))
        Image.fromarray(photos[name]).save(folder / name)
    out = tmp_path / 'eval'
    assert evaluate.main(['--device', 'cpu', '-m', quadrant_checkpoint, '-d', str(folder), '-o', str(out)]) == 0
    grid = np.asarray(Image.open(out / 'grid.png'))
    size = evaluate.GRID_CELL
    assert grid.shape == (3 * (size + PAD) + PAD, 4 * (size + PAD) + PAD, 3)
    for row, name in enumerate(sorted(photos)):
        rgb = photos[name]
        h, w = rgb.shape[:2]
        top, left = (size - h) // 2, (size - w) // 2

        def picture(col):
            return cell(grid, row, col, size, size)[top:top + h, left:left + w]
        np.testing.assert_array_equal(picture(0), rgb)                  # original
        grey = picture(1).astype(int)                                   # grayscale: grey, = L
        assert (grey[..., 0] == grey[..., 2]).all() and (grey[..., 1] == grey[..., 2]).all()
        np.testing.assert_allclose(grey[..., 0], lightness_levels(rgb), atol=0.5)
        for col in (2, 3):                                              # target, model: L kept
            np.testing.assert_allclose(lightness_levels(picture(col)), lightness_levels(rgb), atol=1.0)
        model = picture(3)   # the stand-in network's top-left quadrant is red (hue 0)
        corner = model[:h // 4, :w // 4].astype(int)
        assert (corner[..., 0] >= corner[..., 1]).mean() > 0.95 and (corner[..., 0] >= corner[..., 2]).mean() > 0.95
