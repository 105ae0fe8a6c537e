"""Zhang et al. 2017's hint sweep (``evaluate.py --hint-points 0,1,2,5,10,20,50``).

For every photo and every N, N hint points are drawn from the ground truth
(:func:`hints.sample_sweep_points`, seeded by photo and N, so every method sees
the same points) and scored for:

* ``model``: the network alone (a hint model with the hints as input), its
  colours upsampled bilinearly, the hints pasted on their squares;
* every arm of ``propagate.HINT_METHODS`` (``levin``: Levin et al. 2004's
  colorization by optimization from the hints alone, no learning; ``corrections``,
  ``shrinkage``, ``confidence``, ``stacked``: the prediction fused with the propagated hints),
  solved at ``config.HINT_PROPAGATION['side']`` pixels on the short side,
  upsampled edge-aware and recombined with the full-resolution lightness;
* ``default``: the arm that ``colorize.py`` and the web page use for this
  checkpoint (``Colorizer.hint_method``), under its own key too; with 0 points
  the automatic colorization, as theirs (even for ``levin``);
* ``grayscale``: no colour at all.

With 0 points every arm but ``levin`` (grey) is the automatic colorization.
"""
import json
import os

import numpy as np
import torch
from PIL import Image, ImageDraw

import config
import hints
import levin
import propagate
import utils

ARMS = ('model',) + tuple(propagate.HINT_METHODS)   # colorized per photo and N
METHODS = ARMS + ('default', 'grayscale')            # keys of hints.json
PLOTTED = ('default', 'levin', 'model', 'grayscale')  # hints_psnr.png's curves
GRID_POINTS = (0, 2, 10)   # the grid's columns after the photo
GRID_WIDTH = utils.GRID_CELL   # pixels of a grid cell's width (its height: the photo's aspect)
DOT_RADIUS = 4             # pixels of a hint dot in the grid
OUTPUTS = ('hints.json', 'hints_table.txt', 'hints_psnr.png', 'hints_grid.png')


def levin_plane(lightness, plane, mask, side=None, prior=None, prior_weight=0.0):
    """Levin et al.'s chroma plane ``[2, h, w]`` at ``side`` pixels on the short side (default the
    propagation's), from full-resolution L ``[H, W]`` and hint maps ``[2, H, W]``, ``[H, W]`` (torch), pulled
    towards a network's chroma plane ``prior`` ``[2, h', w']`` (resized bilinearly) with ``prior_weight``
    (Levin's system with a data term: experiments/hint_prior.py)."""
    size = propagate.working_size(*lightness.shape, side or config.HINT_PROPAGATION['side'])
    small_plane, small_mask = propagate.resize_hints(plane, mask, size)
    if prior is not None:
        prior = propagate.resize_plane(prior, size)
    solved = levin.levin_colorize(propagate.resize_lightness(lightness, size), small_plane, small_mask,
                                  prior, prior_weight)
    return torch.from_numpy(solved).float().to(lightness.device)


def colorized_arms(colorizer, lightness, points, method='annealed', temperature=utils.DEFAULT_TEMPERATURE,
                   prior_weights=(), arms=ARMS):
    """One photo's L ``[H, W]`` and hint points -> {arm: uint8 RGB} for every arm of ``arms`` (of
    :data:`ARMS`), and for each of ``prior_weights`` w, ``levin_prior_<w>``: Levin's system pulled towards
    the model's prediction (experiments/hint_prior.py)."""
    maps = colorizer.full_hint_maps(points, *lightness.shape)
    outputs = colorizer.hinted_outputs(lightness, maps, arms, method, temperature)
    if prior_weights:
        predicted = colorizer.predicted_planes([lightness], method, temperature, [maps])[0]
    for w in prior_weights:
        plane = levin_plane(lightness, *maps, prior=predicted, prior_weight=w)
        outputs['levin_prior_%g' % w] = colorizer.recombine(plane, lightness, maps)
    return outputs


def score_photo(colorizer, rgb, name, counts, method='annealed', temperature=utils.DEFAULT_TEMPERATURE):
    """One photo through the sweep -> ({N: {method: metrics}}, {N: {method: uint8 image}}, {N: points})."""
    ab_truth = utils.ab_channels(rgb)
    rebalance = utils.inverse_frequency_weights(ab_truth)
    lightness = colorizer.lightness(rgb)
    grey = utils.grayscale(rgb)
    grey_scores = utils.colorization_metrics(rgb, grey, ab_truth, rebalance)
    scores, images, drawn = {}, {}, {}
    for count in counts:
        points = hints.sample_sweep_points(rgb, count, hints.sweep_seed(name, count))
        outputs = colorized_arms(colorizer, lightness, points, method, temperature)
        scores[count] = {m: utils.colorization_metrics(rgb, out, ab_truth, rebalance) for m, out in outputs.items()}
        default = colorizer.hint_method if points else 'model'   # no hints: Colorizer.colorize's automatic colours
        scores[count]['default'] = scores[count][default]
        scores[count]['grayscale'] = grey_scores
        outputs['default'] = outputs[default]
        outputs['grayscale'] = grey
        images[count], drawn[count] = outputs, points
    return scores, images, drawn


def summarise(per_photo, counts):
    """[{N: {method: metrics}}] -> ``{method: {"N": {metric: mean over photos}}}`` (hints.json)."""
    means = {m: {str(n): {k: float(np.mean([p[n][m][k] for p in per_photo])) for k in utils.COLORIZATION_METRICS}
                 for n in counts} for m in METHODS}
    return means


def format_table(summary, counts, hint_method):
    lines = ['default = %s' % hint_method, '%-6s %-13s %8s %8s %8s %10s %14s' % ('points', 'method', 'PSNR dB', 'RMSE', 'AuC %', 'AuC reb %',
                                                  'colourfulness')]
    for n in counts:
        for m in METHODS:
            s = summary[m][str(n)]
            lines.append('%-6d %-13s %8.2f %8.2f %8.2f %10.2f %14.2f'
                         % (n, m, s['psnr'], s['rmse'], s['auc'], s['auc_rebal'], s['colorfulness']))
    return '\n'.join(lines)


def plot(summary, counts, path, hint_method):
    """PSNR against the number of points (symmetric log axis: 0 points stays on it), one curve a method."""
    from matplotlib.figure import Figure   # no pyplot: its global state is not for threads
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for m, style in zip(PLOTTED, ('o-', '^-', 's--', 'x:')):
        label = 'default (%s)' % hint_method if m == 'default' else m
        ax.plot(counts, [summary[m][str(n)]['psnr'] for n in counts], style, label=label)
    ax.set_xscale('symlog', linthresh=1)
    ax.set_xticks(counts)
    ax.set_xticklabels([str(n) for n in counts])
    ax.set_xlabel('hint points per photo')
    ax.set_ylabel('PSNR (dB)')
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def with_dots(rgb, points, scale):
    """A photo scaled by ``scale`` with each hint point drawn as a dot of its colour, ringed black and white."""
    img = Image.fromarray(rgb).resize((max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                                      Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for p in points:
        x, y, r = p['x'] * scale, p['y'] * scale, DOT_RADIUS
        fill = hints.point_color(p)
        draw.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], fill=(255, 255, 255))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(0, 0, 0))
    return np.asarray(img)


def grid_row(rgb, images, drawn):
    """photo | 0, 2, 10 hints (the ``default`` arm's output, the hints drawn), each GRID_WIDTH pixels wide."""
    scale = GRID_WIDTH / rgb.shape[1]
    cells = [with_dots(rgb, [], scale)]
    cells += [with_dots(images[n]['default'], drawn[n], scale) for n in GRID_POINTS if n in images]
    return cells


def write(out_dir, summary, counts, grid_rows, hint_method):
    """OUT/hints.json, hints_table.txt, hints_psnr.png and hints_grid.png."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'hints.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out_dir, 'hints_table.txt'), 'w') as f:
        f.write(format_table(summary, counts, hint_method) + '\n')
    plot(summary, counts, os.path.join(out_dir, 'hints_psnr.png'), hint_method)
    if grid_rows:
        Image.fromarray(utils.tile_images(grid_rows)).save(os.path.join(out_dir, 'hints_grid.png'))
