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


def evaluate_grid(checkpoint, folder, photos, out):
    """grid.png of evaluate.py on ``photos`` ({name: uint8 image}) written into ``folder``."""
    folder.mkdir()
    for name, rgb in photos.items():
        Image.fromarray(rgb).save(folder / name)
    assert evaluate.main(['--device', 'cpu', '-m', checkpoint, '-d', str(folder), '-o', str(out)]) == 0
    return np.asarray(Image.open(out / 'grid.png'))


def row_tops(heights):
    """Top pixel row of each grid row, for rows ``heights`` pixels tall."""
    return [PAD + sum(h + PAD for h in heights[:i]) for i in range(len(heights))]


def test_evaluation_grid_rows_are_the_photos_in_order(quadrant_checkpoint, tmp_path):  # noqa: F811
    import skimage.data
    width = evaluate.GRID_CELL
    sizes = {'a.png': (width, 120), 'b.png': (width, 213), 'c.png': (width, width)}   # grid width: not resized
    photos = {name: np.asarray(Image.fromarray(rgb).resize(sizes[name], Image.BILINEAR)) for name, rgb in
              zip(sorted(sizes), (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()))}
    grid = evaluate_grid(quadrant_checkpoint, tmp_path / 'photos', photos, tmp_path / 'eval')
    heights = [sizes[name][1] for name in sorted(photos)]
    assert grid.shape == (sum(heights) + 4 * PAD, 4 * (width + PAD) + PAD, 3)
    for name, top in zip(sorted(photos), row_tops(heights)):
        rgb = photos[name]
        h, w = rgb.shape[:2]

        def picture(col):
            left = PAD + col * (width + PAD)
            return grid[top:top + h, left:left + w]
        np.testing.assert_array_equal(picture(0), rgb)                  # original
        grey = picture(1).astype(int)                                   # grayscale: grey, = L
        assert (grey[..., 0] == grey[..., 2]).all() and (grey[..., 1] == grey[..., 2]).all()
        np.testing.assert_allclose(grey[..., 0], lightness_levels(rgb), atol=0.5)
        for col in (2, 3):                                              # target, model: L kept
            np.testing.assert_allclose(lightness_levels(picture(col)), lightness_levels(rgb), atol=1.0)
        model = picture(3)   # the stand-in network's top-left quadrant is red (hue 0)
        corner = model[:h // 4, :w // 4].astype(int)
        assert (corner[..., 0] >= corner[..., 1]).mean() > 0.95 and (corner[..., 0] >= corner[..., 2]).mean() > 0.95


def test_evaluation_grid_has_no_blank_bands_around_wide_or_small_photos(quadrant_checkpoint, tmp_path):  # noqa: F811
    """Every photo is drawn GRID_CELL wide (small ones scaled up) and its row is as tall as it:
    no white band taller than the padding, between rows or inside them."""
    import skimage.data
    sizes = {'a_wide.png': (480, 120), 'b_small.png': (40, 30), 'c_tall.png': (90, 200)}
    photos = {name: np.asarray(Image.fromarray(rgb).resize(sizes[name], Image.BILINEAR)) for name, rgb in
              zip(sorted(sizes), (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()))}
    grid = evaluate_grid(quadrant_checkpoint, tmp_path / 'photos', photos, tmp_path / 'eval')
    width = evaluate.GRID_CELL
    white_rows = np.flatnonzero((grid == 255).all(axis=(1, 2)))
    runs = np.split(white_rows, np.flatnonzero(np.diff(white_rows) > 1) + 1)
    assert max(len(run) for run in runs) <= PAD
    heights = [round(width * h / w) for w, h in (sizes[name] for name in sorted(sizes))]   # 40, 120, 356
    assert grid.shape == (sum(heights) + 4 * PAD, 4 * (width + PAD) + PAD, 3)
    np.testing.assert_array_equal(white_rows, [t + d for t in row_tops(heights) + [grid.shape[0]]
                                               for d in range(-PAD, 0)])   # the padding, nothing else
    for name, top, h in zip(sorted(photos), row_tops(heights), heights):
        drawn = grid[top:top + h, PAD:PAD + width]
        np.testing.assert_array_equal(drawn, evaluate.thumbnail(photos[name]))
        np.testing.assert_allclose(drawn.mean((0, 1)), photos[name].mean((0, 1)), atol=4)   # the same photo
