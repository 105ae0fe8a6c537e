"""Seconds of one re-colorization on the web page (app.py): a click on a 1-megapixel photo, on the CPU.

    .venv/bin/python bench/bench_app.py [--threads 2] [--repeats 7] [--hints 10]

What a click costs the server: the hint is added (app.Engine.add_hint), the
photo is colorized at full resolution with every hint (Colorizer.colorize),
the palette is computed at the new hint (Colorizer.suggest_colors), the
full-resolution PNG and the hints JSON are written (the downloads) and the
picture the page shows is made (at most 1024 px, dots drawn, PNG).  The page's
goal: under a second.  The network is an untrained FCN-32s of config 100's
size with hint input (weights do not change the cost), written the way the
trainer writes a checkpoint and read back by colorize.load_colorizer.  Medians
over --repeats clicks, each on the photo with --hints hints already placed;
the ratios are of medians measured in this one run.
"""
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import app  # noqa: E402
from bench_common import demo_checkpoint, median_seconds, noisy_astronaut  # noqa: E402
import cli  # noqa: E402
import colorize  # noqa: E402

WIDTH, HEIGHT = 1155, 866   # 1.0 megapixel, 4:3
BUDGET = 1.0                # seconds: a click should feel live


def main():
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=cli.positive_int, default=2, help='torch CPU threads (default 2)')
    p.add_argument('--repeats', type=cli.positive_int, default=7)
    p.add_argument('--hints', type=cli.natural_int, default=10, help='hints already on the photo (default 10)')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.RandomState(1)
    with tempfile.TemporaryDirectory() as tmp:
        photo, ckpt = os.path.join(tmp, 'photo.jpg'), os.path.join(tmp, 'model.pth.tar')
        noisy_astronaut(photo, WIDTH, HEIGHT)
        demo_checkpoint(ckpt, hints=True)
        colorizer = colorize.load_colorizer(ckpt, 'cpu')
        engine = app.Engine(colorizer, ckpt, tmp)
        state = engine.open_photo(photo)
        for _ in range(args.hints):
            state = engine.add_hint(state, int(rng.randint(WIDTH)), int(rng.randint(HEIGHT)),
                                    '#%06x' % rng.randint(1 << 24))
        rgb = engine.store.get(state['photo'])
        points = state['points']

        def click():
            clicked = engine.add_hint(state, int(rng.randint(WIDTH)), int(rng.randint(HEIGHT)), '#2050e0')
            engine.render(clicked)

        steps = {
            'click (whole)': click,
            'colorize, no hints': lambda: colorizer.colorize([rgb])[0],
            'colorize, hints': lambda: colorizer.colorize(rgb, hints=points),
            'palette': lambda: colorizer.suggest_colors(rgb, 10, 10, hints=points, count=app.PALETTE_SIZE),
            'full PNG': lambda: colorize.save_png(os.path.join(tmp, 'out.png'), rgb, colorize.PNG_COMPRESSION),
            'shown picture': lambda: app.shown_picture(rgb, points).save(
                os.path.join(tmp, 'shown.png'), compress_level=colorize.PNG_COMPRESSION),
        }
        medians = {name: median_seconds(fn, args.repeats) for name, fn in steps.items()}
    whole, plain = medians['click (whole)'], medians['colorize, no hints']
    print('1 MP click on the page (%dx%d, %d hints + 1, %d torch threads, %d cores seen): median %.3f s over %d '
          'clicks = %.2f x the %.0f s budget, %.2f x a plain colorization (%.3f s)'
          % (WIDTH, HEIGHT, args.hints, torch.get_num_threads(), os.cpu_count(), whole, args.repeats,
             whole / BUDGET, BUDGET, whole / plain, plain))
    print('  medians: ' + ', '.join('%s %.3f s' % kv for kv in medians.items() if kv[0] != 'click (whole)'))


if __name__ == '__main__':
    sys.exit(cli.run_cli(lambda argv: main()))
