"""Rank a folder's images by colourfulness, most colourful first (the curriculum's lists).

    python run_imagenet_bright_images.py --root IMAGENET --split train --out IMAGENET
    sed -n "1000,101000p" IMAGENET/files-rgbvar-train.txt > IMAGENET/files-rgbvar-train-1000-101000.txt

Writes, into ``--out``: ``files-<method>-<split>.txt`` (root-relative paths,
ranked), ``files-<method>-<split>-values.txt`` (path and score),
``<method>-<split>-sorted.png`` (the sorted scores) and 10x10 montages
``montage-<rank>-100.jpg`` starting at ranks 1, 1k, 10k, 100k, ... that exist.
Without ``--root`` the photos bundled with scikit-image are ranked.
Exit status: 0 when done, 2 for a usage error (one ``error:`` line).
"""
import argparse
import logging
import os
import sys

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

import cli
import config
import data_loader
import utils

log = logging.getLogger('colorizer')

SCORE_SIDE = 128         # images are scored at this size (the ranking barely changes, 10x faster)
MONTAGE_GRID = 10        # montages are MONTAGE_GRID x MONTAGE_GRID thumbnails
THUMB_SIDE = 64          # thumbnail size in the montages
MONTAGE_STARTS = (1, 1000, 10000, 100000, 200000, 500000, 1000000)


def colourfulness_score(rgb, method):
    """uint8 ``[H, W, 3]`` -> one number, larger = more colourful.

    ``rgbvar``: mean over pixels of the variance of (R, G, B) at that pixel (the seed's);
    ``saturation``: mean HSV saturation; ``chroma``: mean chroma C = max - min.
    """
    x = rgb.astype(np.float64) / 255.0
    if method == 'rgbvar':
        return float(x.var(axis=2).mean())
    h, c, l = utils.rgb_to_hcl(torch.from_numpy(x).permute(2, 0, 1))
    if method == 'chroma':
        return float(c.mean())
    if method == 'saturation':
        value = l + c / 2
        return float(torch.where(value > 0, c / value.clamp_min(1e-12), torch.zeros_like(c)).mean())
    raise ValueError('unknown method %r' % method)


class ScoredImages(torch.utils.data.Dataset):
    """Score of each file (NaN + reason for unreadable files), computed in DataLoader workers."""

    def __init__(self, root, files, method, max_pixels):
        self.root, self.files, self.method, self.max_pixels = root, files, method, max_pixels

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        try:
            rgb = data_loader.load_rgb(os.path.join(self.root, self.files[i]), self.max_pixels)
        except data_loader.UnreadableImage as err:
            return i, float('nan'), str(err)
        img = Image.fromarray(rgb)
        img.thumbnail((SCORE_SIDE, SCORE_SIDE), Image.BILINEAR)
        return i, colourfulness_score(np.asarray(img), self.method), ''


def rank_images(root, files, method, workers, max_pixels):
    """(ranked files, their scores, skipped [(file, reason)]) — most colourful first."""
    loader = torch.utils.data.DataLoader(ScoredImages(root, files, method, max_pixels), batch_size=None,
                                         num_workers=workers)
    scores = np.full(len(files), np.nan)
    skipped = []
    for i, score, reason in tqdm(loader, total=len(files), desc='scoring', ncols=90):
        scores[i] = score
        if reason:
            skipped.append((files[i], reason))
            log.warning('skipped unreadable image %s (%s)', files[i], reason)
    ok = np.flatnonzero(np.isfinite(scores))
    order = ok[np.argsort(-scores[ok], kind='stable')]
    return [files[i] for i in order], scores[order], skipped


def montage(root, files, max_pixels):
    """Up to 100 files -> a 10x10 mosaic of square thumbnails (uint8)."""
    thumbs = []
    for f in files[:MONTAGE_GRID ** 2]:
        try:
            rgb = data_loader.load_rgb(os.path.join(root, f), max_pixels)
        except data_loader.UnreadableImage:
            rgb = np.zeros((THUMB_SIDE, THUMB_SIDE, 3), np.uint8)
        thumbs.append(np.asarray(Image.fromarray(rgb).resize((THUMB_SIDE, THUMB_SIDE), Image.BILINEAR)))
    blank = np.full((THUMB_SIDE, THUMB_SIDE, 3), 255, np.uint8)
    rows = [thumbs[r:r + MONTAGE_GRID] for r in range(0, len(thumbs), MONTAGE_GRID)]
    rows[-1] = rows[-1] + [blank] * (MONTAGE_GRID - len(rows[-1]))
    return utils.tile_images(rows, pad=1)


def rank_label(rank):
    """1 -> '1', 1000 -> '1k', 100000 -> '100k' (the seed's montage names)."""
    return '%dk' % (rank // 1000) if rank >= 1000 and rank % 1000 == 0 else str(rank)


def plot_sorted(values, method, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(values) + 1), values)
    ax.set_xlabel('rank')
    ax.set_ylabel(method)
    ax.set_title('images sorted by %s' % method)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--root', default=None, help='ImageNet root (with --split) or any photo folder; '
                                                 'default: the photos bundled with scikit-image')
    p.add_argument('--split', default=None, help='sub-folder of --root to rank (train, val); '
                                                  'default: all of --root')
    p.add_argument('--method', choices=('rgbvar', 'saturation', 'chroma'), default='rgbvar')
    p.add_argument('--out', default='.', help='folder for the lists, plot and montages')
    p.add_argument('-j', '--workers', type=cli.natural_int, default=max(0, (os.cpu_count() or 1) - 1))
    p.add_argument('--max-image-pixels', type=cli.positive_int, default=config.DEFAULTS['max_image_pixels'],
                   help='refuse larger images from their header')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')

    root = args.root or data_loader.materialise_bundled()
    scan = os.path.join(root, args.split) if args.split else root
    if not os.path.isdir(scan):
        raise cli.MissingFile('%s is not a folder' % scan)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise cli.UserError('--out %s is a file, not a folder' % args.out)
    files = [os.path.join(args.split, f) if args.split else f for f in data_loader.find_images(scan)]
    if not files:
        raise cli.UserError('no image files in %s' % scan)
    split = args.split or os.path.basename(os.path.normpath(root))
    os.makedirs(args.out, exist_ok=True)

    ranked, values, skipped = rank_images(root, files, args.method, args.workers, args.max_image_pixels)
    stem = os.path.join(args.out, 'files-%s-%s' % (args.method, split))
    data_loader.write_list(stem + '.txt', ranked)
    data_loader.write_list(stem + '-values.txt', ['%s\t%.6g' % fv for fv in zip(ranked, values)])
    if skipped:
        data_loader.write_list(stem + '-skipped.txt', ['%s\t%s' % fr for fr in skipped])
    plot_sorted(values, args.method, os.path.join(args.out, '%s-%s-sorted.png' % (args.method, split)))
    for start in MONTAGE_STARTS:
        if start > len(ranked):
            break
        path = os.path.join(args.out, 'montage-%s-100.jpg' % rank_label(start))
        Image.fromarray(montage(root, ranked[start - 1:], args.max_image_pixels)).save(path, quality=90)
    log.info('ranked %d images (%d unreadable skipped) -> %s.txt', len(ranked), len(skipped), stem)
    return ranked, values


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
