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
from bench_common import demo_checkpoint, noisy_astronaut  # noqa: E402
import cli  # noqa: E402
import colorize  # noqa: E402
import config  # noqa: E402
import data_loader  # noqa: E402


def main():
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=cli.positive_int, default=2, help='torch CPU threads (default 2)')
    p.add_argument('--repeats', type=cli.positive_int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        photo, ckpt, out = (os.path.join(tmp, n) for n in ('photo.jpg', 'model.pth.tar', 'out'))
        noisy_astronaut(photo, 4000, 3000)
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
