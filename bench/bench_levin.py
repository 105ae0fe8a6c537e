"""Seconds for Levin et al. colour propagation (256x384, 10 hints) and edge-aware upsampling (1 MP), on the CPU.

    .venv/bin/python bench/bench_levin.py [--repeats 5]

The lightness is scikit-image's astronaut resized; hints are 10 random pixels with
random chroma-plane colours. levin.py is numpy / scipy only: the sparse LU runs on one
core, the box filters and matrix products on what BLAS / numpy use. Prints medians, the
ratios edge-aware upsampling / bilinear and / Levin measured in the same run, and one JSON line.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_common import median_seconds  # noqa: E402
import cli  # noqa: E402
import levin  # noqa: E402


def astronaut_lightness(size):
    """Lightness L = (max + min) / 2 of the astronaut, bilinearly resized to ``size`` (H, W)."""
    import skimage.data
    import skimage.transform
    rgb = skimage.data.astronaut() / 255.0
    lightness = (rgb.max(-1) + rgb.min(-1)) / 2.0
    return skimage.transform.resize(lightness, size, order=1, anti_aliasing=False)


def main():
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=cli.positive_int, default=5)
    args = p.parse_args()
    rng = np.random.RandomState(0)

    lightness = astronaut_lightness((256, 384))
    mask = np.zeros(lightness.shape, bool)
    mask.flat[rng.choice(mask.size, 10, replace=False)] = True
    hints = rng.uniform(-0.3, 0.3, (2,) + lightness.shape)
    prior = rng.uniform(-0.3, 0.3, (2,) + lightness.shape)
    t_levin = median_seconds(lambda: levin.levin_colorize(lightness, hints, mask), args.repeats)
    t_prior = median_seconds(lambda: levin.levin_colorize(lightness, hints, mask, prior_plane=prior,
                                                          prior_weight=0.1), args.repeats)

    guide = astronaut_lightness((1000, 1000))
    coarse = rng.uniform(-0.3, 0.3, (2, 32, 48))
    t_coarse_fit = median_seconds(lambda: levin.coarse_fit_guided_upsample(guide, coarse, 1, 1e-3), args.repeats)
    t_bilinear = median_seconds(lambda: levin.bilinear_resize(coarse, guide.shape), args.repeats)

    print('levin_colorize 256x384, 10 hints (%d cores seen): median %.3f s over %d runs'
          % (os.cpu_count(), t_levin, args.repeats))
    print('levin_colorize 256x384, 10 hints + prior (weight 0.1): median %.3f s' % t_prior)
    print('coarse_fit_guided_upsample 32x48 -> 1000x1000 (r=1, eps=1e-3): median %.3f s, bilinear alone %.3f s'
          % (t_coarse_fit, t_bilinear))
    print('ratios: edge-aware / bilinear upsampling %.2f, edge-aware upsampling / levin_colorize %.3f'
          % (t_coarse_fit / t_bilinear, t_coarse_fit / t_levin))
    print(json.dumps({'levin_s': round(t_levin, 4), 'levin_prior_s': round(t_prior, 4),
                      'bilinear_1mp_s': round(t_bilinear, 4), 'coarse_fit_guided_upsample_1mp_s': round(t_coarse_fit, 4),
                      'ratio_edge_aware_over_bilinear': round(t_coarse_fit / t_bilinear, 4),
                      'ratio_edge_aware_over_levin': round(t_coarse_fit / t_levin, 4), 'repeats': args.repeats,
                      'cpu_count': os.cpu_count()}))


if __name__ == '__main__':
    sys.exit(cli.run_cli(lambda argv: main()))
