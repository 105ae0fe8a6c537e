"""What the benchmarks share: a timing helper, a large test photo, a checkpoint with random weights."""
import time

import numpy as np
import torch
from PIL import Image

import config
import models
import run_setup
import targets


def median_seconds(fn, repeats):
    """Median wall time of ``repeats`` calls after one warm-up call (page faults, caches, kernels)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def noisy_astronaut(path, width, height):
    """A ``width`` x ``height`` JPEG: scikit-image's astronaut upscaled, plus sensor-like noise."""
    import skimage.data
    big = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.BICUBIC))
    noise = np.random.RandomState(0).normal(0, 3, big.shape)
    Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(path, quality=92)


def demo_checkpoint(path, hints=False):
    """Random weights and random GMM bins with config 100's architecture, K and im_size (hint input on
    with ``hints``)."""
    cfg = dict(config.get_config(100), hints=hints)
    k = cfg['numbins']
    rng = np.random.RandomState(0)
    bins = targets.GMMBins(np.full(k, 1.0 / k), np.stack([rng.rand(k), 0.6 * rng.rand(k)], 1),
                           np.tile(np.eye(2) * 0.01, (k, 1, 1)))
    encoder = targets.ColorEncoder(bins, 0.45, cfg['img_lowpass'])
    kwargs = run_setup.model_kwargs(cfg, encoder)
    model = models.build_model('fcn32s', **kwargs)
    torch.save({'arch': 'fcn32s', 'model_kwargs': kwargs, 'model_state_dict': model.state_dict(),
                'encoder': encoder.state(), 'num_bins': k, 'binning': 'soft',
                'im_size': tuple(cfg['im_size']), 'config': cfg}, path)
