"""Seconds to colorize one 12-megapixel photo (4000x3000 JPEG -> PNG) on the CPU.

    .venv/bin/python bench/bench_colorize.py [--threads 2] [--repeats 3]

The network is an untrained FCN-32s of config 100's size (its weights do not
change the cost); the checkpoint is written the way the trainer writes one and
read back by colorize.load_colorizer, so the whole command-line path is timed:
read + EXIF, L, network at im_size, decode, full-resolution recombination, PNG.
"""
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
import colorize  # noqa: E402
import config  # noqa: E402
import data_loader  # noqa: E402
import models  # noqa: E402
import targets  # noqa: E402


def photo_12mp(path):
    """A 4000x3000 JPEG: scikit-image's astronaut upscaled, plus sensor-like noise."""
    import skimage.data
    big = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((4000, 3000), Image.BICUBIC))
    noise = np.random.RandomState(0).normal(0, 3, big.shape)
    Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(path, quality=92)


def demo_checkpoint(path):
    """Random weights and random GMM bins with config 100's architecture, K and im_size."""
    cfg = config.get_config(100)
    k = cfg['numbins']
    rng = np.random.RandomState(0)
    bins = targets.GMMBins(np.full(k, 1.0 / k), np.stack([rng.rand(k), 0.6 * rng.rand(k)], 1),
                               np.tile(np.eye(2) * 0.01, (k, 1, 1)))
    encoder = targets.ColorEncoder(bins, 0.45, cfg['img_lowpass'])
    kwargs = {'n_class': k, 'padding': cfg['padding'], 'fc_channels': cfg['fc_channels']}
    model = models.build_model('fcn32s', **kwargs)
    torch.save({'arch': 'fcn32s', 'model_kwargs': kwargs, 'model_state_dict': model.state_dict(),
                'encoder': encoder.state(), 'num_bins': k, 'binning': 'soft',
                'im_size': tuple(cfg['im_size']), 'config': cfg}, path)


def main():
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=cli.positive_int, default=2, help='torch CPU threads (default 2)')
    p.add_argument('--repeats', type=cli.positive_int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        photo, ckpt, out = (os.path.join(tmp, n) for n in ('photo.jpg', 'model.pth.tar', 'out'))
        photo_12mp(photo)
        demo_checkpoint(ckpt)
        argv = ['-m', ckpt, '--device', 'cpu', '-o', out, photo]
        colorize.main(argv)  # warm-up (allocator, kernels)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            colorize.main(argv)
            times.append(time.perf_counter() - start)
        size = Image.open(os.path.join(out, 'photo.png')).size

        # where the time goes, one pass
        colorizer = colorize.load_colorizer(ckpt, 'cpu')
        steps, start = {}, time.perf_counter()
        rgb = data_loader.load_rgb(photo, config.DEFAULTS['max_image_pixels'])
        steps['read JPEG'], start = time.perf_counter() - start, time.perf_counter()
        lightness = colorizer.lightness(rgb)
        steps['lightness'], start = time.perf_counter() - start, time.perf_counter()
        plane = colorizer.predicted_planes([lightness])[0]
        steps['network + decode'], start = time.perf_counter() - start, time.perf_counter()
        result = colorizer.recombine(plane, lightness)
        steps['recombine'], start = time.perf_counter() - start, time.perf_counter()
        colorize.save_png(os.path.join(out, 'again.png'), result, 1)
        steps['write PNG'] = time.perf_counter() - start
    print('12 MP colorize (%dx%d, %d torch threads, %d cores seen): best %.2f s, median %.2f s over %d runs'
          % (size[0], size[1], torch.get_num_threads(), os.cpu_count(), min(times), float(np.median(times)),
             len(times)))
    print('  ' + ', '.join('%s %.2f s' % kv for kv in steps.items()))


if __name__ == '__main__':
    sys.exit(cli.run_cli(lambda argv: main()))
