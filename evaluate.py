"""Score a checkpoint's colorizations against the originals, with two baselines.

    python evaluate.py -m logs/RUN/model_best.pth.tar [-d ROOT] [--list LIST]
                       [--decode annealed|mean|mode] [-T 0.38] [-o OUTDIR]

Which images:
  * default: the validation split of the checkpoint's own dataset (the bundled
    scikit-image photos, the run's ``split_val.txt`` / hash split of a photo
    folder, or the config's ``val_set`` list of an ImageNet root);
  * ``-d FOLDER``: that folder's validation split if the checkpoint was trained
    on it, else every image in it; ``-d IMAGENET_ROOT``: the config's val set;
  * ``--list LIST -d ROOT``: the paths of LIST (first column; Larsson et al.'s
    ``/<wnid>/<file> <class>`` lines work) under ROOT.  Each path is looked up as
    ``ROOT/<path>``, then ``ROOT/val/<path>``, then ``ROOT/val/<file name>``, so
    ``lists/ctest10k.txt`` works with val images in class folders or flat in ``val/``.

Three colorizations of each image, all at its original resolution:
``model``; ``grayscale`` (its lightness L = V - C/2 in all three channels); and
``target`` (the original through the bin encoding at the model's input size and
decoded the same way as the model: the ceiling of the binning).  Scores, averaged
per image (see utils ``colorization_metrics``): PSNR on 8-bit RGB (capped at
100 dB), RMSE of the per-pixel CIE Lab ab error, AuC of its cumulative
distribution over thresholds 0..150 (Zhang et al. 2016) plain and rebalanced by
the inverse frequency of the original's ab colours, Hasler & Suesstrunk
colourfulness.  Writes OUTDIR/metrics.json, OUTDIR/per_image.csv, OUTDIR/grid.png
(original | grayscale | target | model, each GRID_CELL pixels wide, a row as tall as
its photo) and prints a table.

Exit status: 0 when every image was scored, 1 when some could not be read (the
others are scored and written; the summary counts them; a ``--list`` line that
names no file is one of them, reported with its line number), 2 for a usage
error (one ``error:`` line).
"""
import csv
import json
import os
import sys

import numpy as np
from PIL import Image

import cli
import colorize
import config
import data_loader
import hint_sweep
import utils

DEFAULT_OUT_DIR = os.path.join('out', 'evaluate')
METHODS = ('model', 'grayscale', 'target')
GRID_CELL = utils.GRID_CELL  # width in pixels of each image of grid.png (its height: the photo's aspect)


# --------------------------------------------------------------------------
# which images
# --------------------------------------------------------------------------

def locate(root, listed):
    """Path of a list entry: ROOT/entry, else ROOT/val/entry, else ROOT/val/<file name>."""
    for candidate in (os.path.join(root, listed), os.path.join(root, 'val', listed),
                      os.path.join(root, 'val', os.path.basename(listed))):
        if os.path.isfile(candidate):
            return candidate
    return os.path.join(root, listed)  # reported as unreadable, with this path


def validation_files(dataset_path, cfg, run_dir):
    """(root, relative paths) of the validation split a run of ``cfg`` used on ``dataset_path``."""
    if dataset_path is None:
        root = data_loader.materialise_bundled()
        return root, data_loader.find_images(root)  # the bundled set trains and validates on all
    if not os.path.isdir(dataset_path):
        raise cli.MissingFile('dataset %s does not exist here: pass -d ROOT' % dataset_path)
    if data_loader.is_imagenet_root(dataset_path):
        return dataset_path, data_loader.read_list(
            data_loader.resolve_list(dataset_path, cfg['val_set'], 'val', run_dir))
    split = os.path.join(run_dir, 'split_val.txt')
    if os.path.isfile(split):
        return dataset_path, data_loader.read_list(split)
    return dataset_path, data_loader.hash_split(data_loader.find_images(dataset_path), cfg['val_fraction'])[1]


def same_folder(a, b):
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def listed_paths(list_path, root, unlisted):
    """Paths of a --list file's lines under ``root``; a line that names no file there is noted in
    ``unlisted`` ({path: why, with the line number}) and still returned (it is reported as unreadable)."""
    if not os.path.isfile(list_path):
        raise cli.MissingFile('--list %s: no such file' % list_path)
    paths = []
    with open(list_path, errors='replace') as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            path = locate(root, line.split()[0].lstrip('/'))
            if not os.path.isfile(path):
                unlisted[path] = 'line %d of %s names no file under %s' % (number, list_path, root)
            paths.append(path)
    return paths


def evaluation_paths(args, cfg, checkpoint_path, unlisted=None):
    """Full paths of the images to score, from -d / --list / the checkpoint's config.

    ``unlisted`` (a dict) receives the --list lines that name no file (see :func:`listed_paths`).
    """
    run_dir = os.path.dirname(os.path.abspath(checkpoint_path))
    trained_on = cfg.get('dataset_path')
    if args.list:
        root = args.dataset_path or trained_on
        if root is None:
            raise cli.UserError('--list needs -d ROOT, the folder its paths are relative to')
        paths = listed_paths(args.list, root, {} if unlisted is None else unlisted)
    elif args.dataset_path and not (data_loader.is_imagenet_root(args.dataset_path)
                                    or same_folder(args.dataset_path, trained_on)):
        if not os.path.isdir(args.dataset_path):
            raise cli.MissingFile('-d %s is not a folder' % args.dataset_path)
        paths = [os.path.join(args.dataset_path, p) for p in data_loader.find_images(args.dataset_path)]
    else:
        root, files = validation_files(args.dataset_path or trained_on, cfg, run_dir)
        paths = [locate(root, p) for p in files]
    if args.max_images:
        paths = paths[:args.max_images]
    if not paths:
        raise cli.UserError('no image to evaluate%s' % (' in %s' % (args.list or args.dataset_path)
                                                         if args.list or args.dataset_path else ''))
    return paths


# --------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------

def score_batch(colorizer, rgbs, method, temperature):
    """uint8 originals -> per image ({method: metrics}, truth colourfulness, {method: uint8 image})."""
    lightnesses = [colorizer.lightness(rgb) for rgb in rgbs]
    model_planes = colorizer.predicted_planes(lightnesses, method, temperature)
    target_planes = colorizer.target_planes(rgbs, method, temperature)
    results = []
    for rgb, l, model_plane, target_plane in zip(rgbs, lightnesses, model_planes, target_planes):
        outputs = {'model': colorizer.recombine(model_plane, l), 'grayscale': utils.grayscale(rgb),
                   'target': colorizer.recombine(target_plane, l)}
        ab_truth = utils.ab_channels(rgb)
        rebalance = utils.inverse_frequency_weights(ab_truth)
        scores = {m: utils.colorization_metrics(rgb, out, ab_truth, rebalance) for m, out in outputs.items()}
        results.append((scores, utils.colorfulness(rgb), outputs))
    return results


def thumbnail(rgb, width=GRID_CELL):
    """An image scaled to ``width`` pixels wide, aspect kept: a grid row is as tall as its photo
    (no white bands above and below a wide one)."""
    img = Image.fromarray(rgb)
    height = max(1, round(width * img.height / img.width))
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR, reducing_gap=2.0)   # as Image.thumbnail
    return np.asarray(img)


def summarise(rows, skipped, decode, temperature):
    """Per-image rows -> the metrics.json dict (means over images, and the decoding that made them)."""
    summary = {'n_images': len(rows), 'decode': decode, 'temperature': temperature if decode == 'annealed' else None}
    for m in METHODS:
        summary[m] = {k: float(np.mean([r['%s/%s' % (m, k)] for r in rows])) for k in utils.COLORIZATION_METRICS}
    summary['ground_truth'] = {'colorfulness': float(np.mean([r['truth/colorfulness'] for r in rows]))}
    summary['n_skipped'] = len(skipped)
    summary['skipped'] = [{'path': p, 'reason': why} for p, why in skipped]
    return summary


def format_table(summary):
    lines = ['%-13s %8s %8s %8s %10s %14s' % ('', 'PSNR dB', 'RMSE', 'AuC %', 'AuC reb %', 'colourfulness')]
    for m in METHODS:
        s = summary[m]
        lines.append('%-13s %8.2f %8.2f %8.2f %10.2f %14.2f'
                     % (m, s['psnr'], s['rmse'], s['auc'], s['auc_rebal'], s['colorfulness']))
    lines.append('%-13s %8s %8s %8s %10s %14.2f' % ('ground truth', '', '', '', '',
                                                    summary['ground_truth']['colorfulness']))
    return '\n'.join(lines)


def write_outputs(out_dir, summary, rows, grid_rows):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out_dir, 'per_image.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if grid_rows:
        Image.fromarray(utils.tile_images(grid_rows)).save(os.path.join(out_dir, 'grid.png'))


def hint_counts(text):
    """argparse type: '0,2,10' -> [0, 2, 10] (sorted, unique)."""
    counts = set()
    for part in text.split(','):
        counts.add(cli.natural_int(part.strip()))
    return sorted(counts)


def parse_args(argv=None):
    p = cli.ArgumentParser(description='Evaluate a colorizer-fcn checkpoint (PSNR, RMSE, AuC, '
                                            'colourfulness) against grayscale and target baselines.')
    colorize.add_model_arguments(p)
    p.add_argument('-d', '--dataset_path', default=None,
                   help='photo folder or ImageNet root (default: the checkpoint\'s dataset)')
    p.add_argument('--list', default=None, help='list of image paths under -d ROOT, e.g. lists/ctest10k.txt')
    p.add_argument('-o', '--out', default=DEFAULT_OUT_DIR, help='output folder (default %(default)s)')
    p.add_argument('--max-images', type=cli.positive_int, default=None, help='score only the first N images')
    p.add_argument('--max-side', type=cli.positive_int, default=None,
                   help='score each photo scaled down to this long side, in pixels (a faster proxy: the '
                   'quality experiment\'s hint sweeps on its folds); default: full size')
    p.add_argument('--grid-images', type=cli.natural_int, default=8, help='images drawn in grid.png (default %(default)s)')
    p.add_argument('--hint-points', type=hint_counts, default=None, metavar='N,N,...',
                   help='also score N hint points per photo drawn from the original (Zhang et al. 2017\'s '
                   'test, e.g. %s) for the network, every hint method (the default one as "default"), '
                   'Levin et al. 2004 and grayscale: '
                   'OUT/hints.json, hints_table.txt, hints_psnr.png, hints_grid.png'
                   % ','.join(str(n) for n in config.HINT_SWEEP['points']))
    p.add_argument('--hint-method', choices=config.HINT_METHODS, default=None,
                   help='with --hint-points: the hint method scored as "default" (default: the checkpoint\'s)')
    return p.parse_args(argv)


def main(argv=None, log=None):
    """Returns the exit status: 0 when every image was scored, 1 when some (or all) could not be read.

    Usage errors raise ``cli.USER_ERRORS``: status 2 by ``cli.run_cli``.  ``log``: a text file that takes
    what it prints (its tables, skipped images, the no-image error) instead of the terminal, with no
    progress bar: experiments/quality.py scores in its own process, several at once.
    """
    args = parse_args(argv)
    from tqdm import tqdm
    out, err = (log, log) if log is not None else (sys.stdout, sys.stderr)
    colorize.check_out_dir(args.out)
    if args.hint_method is not None and not args.hint_points:
        raise cli.UserError('--hint-method %s needs --hint-points N,N,...' % args.hint_method)
    colorizer = colorize.load_colorizer(args.model, args.device)
    colorize.resolve_decoding(args, colorizer)
    if args.hint_method is not None:
        colorizer.config['hint_method'] = args.hint_method
    unlisted = {}
    sweep_scores, sweep_grid = [], []
    paths = evaluation_paths(args, colorizer.config, args.model, unlisted)
    rows, skipped, grid_rows = [], [], []
    bar = tqdm(total=len(paths), unit='image', desc='evaluate', disable=log is not None)
    for readable, unreadable in colorize.read_batches(paths, args.batch_size, args.max_pixels, args.max_side):
        for index, why in unreadable:
            why = unlisted.get(paths[index], why)
            skipped.append((paths[index], why))
            tqdm.write('skipped unreadable %s (%s)' % (paths[index], why), file=err)
        results = score_batch(colorizer, [rgb for _, rgb in readable], args.decode, args.temperature) \
            if readable else []
        for (index, rgb), (scores, truth_colorfulness, outputs) in zip(readable, results):
            row = {'path': paths[index], 'width': rgb.shape[1], 'height': rgb.shape[0]}
            row.update({'%s/%s' % (m, k): v for m in METHODS for k, v in scores[m].items()})
            row['truth/colorfulness'] = truth_colorfulness
            rows.append(row)
            if len(grid_rows) < args.grid_images:
                grid_rows.append([thumbnail(rgb)] + [thumbnail(outputs[m]) for m in ('grayscale', 'target', 'model')])
            if args.hint_points:
                scores, images, drawn = hint_sweep.score_photo(colorizer, rgb, paths[index], args.hint_points,
                                                               args.decode, args.temperature)
                sweep_scores.append(scores)
                if len(sweep_grid) < args.grid_images:
                    sweep_grid.append(hint_sweep.grid_row(rgb, images, drawn))
        bar.update(len(readable) + len(unreadable))
    bar.close()
    if not rows:
        print('error: none of the %d images could be read' % len(paths), file=err)
        return cli.STOPPED
    summary = summarise(rows, skipped, args.decode, args.temperature)
    summary['max_side'] = args.max_side
    summary['hint_method'] = colorizer.hint_method if args.hint_points else None   # hints.json's "default"
    write_outputs(args.out, summary, rows, grid_rows)
    temperature = ', T=%g' % args.temperature if args.decode == 'annealed' else ''
    print('%d images scored (%s decoding%s), %d skipped' % (len(rows), args.decode, temperature, len(skipped)),
          file=out)
    for path, why in skipped:
        print('  skipped %s: %s' % (path, why), file=out)
    print(format_table(summary), file=out)
    written = [os.path.join(args.out, n) for n in ('metrics.json', 'per_image.csv', 'grid.png')]
    print('written: %s' % ', '.join(written), file=out)
    if args.hint_points:
        sweep = hint_sweep.summarise(sweep_scores, args.hint_points)
        hint_sweep.write(args.out, sweep, args.hint_points, sweep_grid, colorizer.hint_method)
        print('hint sweep over %d photos:' % len(sweep_scores), file=out)
        print(hint_sweep.format_table(sweep, args.hint_points, colorizer.hint_method), file=out)
        print('written: %s' % ', '.join(os.path.join(args.out, n) for n in hint_sweep.OUTPUTS), file=out)
    return cli.STOPPED if skipped else 0


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
