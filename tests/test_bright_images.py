"""run_imagenet_bright_images.py ranks by mean per-pixel RGB variance, most colourful first."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import run_imagenet_bright_images as bright  # noqa: E402


def make_root(tmp_path, n=12):
    """train/ with images whose colourfulness grows with their number, plus a broken file."""
    rng = np.random.RandomState(0)
    for i in range(n):
        grey = rng.randint(60, 200, (24, 32, 1)).astype(np.float64)
        tint = np.array([1.0, -0.5, -0.5]) * i * 8  # more red/less green-blue as i grows
        rgb = np.clip(grey + tint, 0, 255).astype(np.uint8)
        folder = tmp_path / 'train' / ('n%08d' % (i % 3))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(str(folder / ('img_%02d.JPEG' % i)), quality=95)
    (tmp_path / 'train' / 'broken.jpg').write_bytes(b'not a jpeg')
    return tmp_path


def test_score_is_the_mean_per_pixel_rgb_variance():
    rgb = np.random.RandomState(1).randint(0, 256, (9, 7, 3)).astype(np.uint8)
    x = rgb / 255.0
    expected = np.mean([[np.var(x[i, j]) for j in range(7)] for i in range(9)])
    assert np.isclose(bright.colourfulness_score(rgb, 'rgbvar'), expected)
    grey = np.full((5, 5, 3), 128, np.uint8)
    assert bright.colourfulness_score(grey, 'rgbvar') == 0 == bright.colourfulness_score(grey, 'chroma')


def test_ranking_lists_plot_and_montage(tmp_path):
    root = make_root(tmp_path / 'imagenet')
    out = tmp_path / 'out'
    subprocess.run([sys.executable, os.path.join(REPO, 'run_imagenet_bright_images.py'), '--root', str(root),
                    '--split', 'train', '--out', str(out), '-j', '0'], check=True, cwd=REPO,
                   capture_output=True)
    ranked = (out / 'files-rgbvar-train.txt').read_text().split()
    assert len(ranked) == 12 and all(p.startswith('train/') for p in ranked)
    numbers = [int(p[-7:-5]) for p in ranked]
    assert numbers == sorted(numbers, reverse=True)  # most colourful first
    values = [float(l.split('\t')[1]) for l in (out / 'files-rgbvar-train-values.txt').read_text().splitlines()]
    assert values == sorted(values, reverse=True)
    assert 'broken.jpg' in (out / 'files-rgbvar-train-skipped.txt').read_text()
    assert (out / 'rgbvar-train-sorted.png').stat().st_size > 0
    montage = Image.open(str(out / 'montage-1-100.jpg'))
    assert montage.size == (10 * (bright.THUMB_SIDE + 1) + 1, 2 * (bright.THUMB_SIDE + 1) + 1)
    # the README's slicing: sed -n "A,Bp" on the ranked list
    sliced = subprocess.run(['sed', '-n', '2,4p', str(out / 'files-rgbvar-train.txt')], check=True,
                            capture_output=True, text=True).stdout.split()
    assert sliced == ranked[1:4]
