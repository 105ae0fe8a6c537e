"""Checkpoints written before the code was split into modules (issue 19) still load.

``fixtures/checkpoint_v1.pth.tar.gz`` is a ``model_best.pth.tar`` written by the code of
commit c7bbf15 (``train_color_fcn32s.py -c 199 -d <the ten conftest photos> --max-iter 2
--set rebalance_lambda=0.5``: soft bins, K=8, class weights), with the 13 large conv
weights (conv1_2 ... conv5_3, fc6) replaced by zeros of the same shape so that it
gzips to ~150 KB; every other key, the config, the encoder and bins state and the
dtypes are as that code wrote them.  ``fixtures/checkpoint_v1_astronaut_48x32.png`` is
what that code's colorize.py made of a 48x32 astronaut with it, and ``V1_METRICS``
what its evaluate.py scored on that photo.
"""
import gzip
import json
import os
import shutil

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import colorize
import config
import evaluate
import models
import run_setup
import trainer
from conftest import SMOKE_ARGS

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
V1_COLORIZED = os.path.join(FIXTURES, 'checkpoint_v1_astronaut_48x32.png')
V1_METRICS = {'model': {'psnr': 19.824820865172427, 'auc': 88.17881944444444},
              'target': {'psnr': 22.234247478282285, 'auc': 92.724609375},
              'grayscale': {'psnr': 18.123548810679033, 'auc': 86.73111979166667}}
V1_MEAN_L = 0.3999989106753813


@pytest.fixture(scope='module')
def v1_checkpoint(tmp_path_factory):
    """(path of the unzipped checkpoint, what torch.load(weights_only=True) reads from it)."""
    path = str(tmp_path_factory.mktemp('v1') / 'model_best.pth.tar')
    with gzip.open(os.path.join(FIXTURES, 'checkpoint_v1.pth.tar.gz'), 'rb') as src, open(path, 'wb') as dst:
        shutil.copyfileobj(src, dst)
    return path, torch.load(path, map_location='cpu', weights_only=True)


def astronaut_48x32():
    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((48, 32), Image.BILINEAR))


def assert_encoder_is_the_checkpoints(encoder, saved):
    """``encoder`` (a targets.ColorEncoder) holds the bins, mean L, low-pass and class weights of ``saved``."""
    bins = saved['bins']
    assert encoder.binning == bins['binning'] == 'soft' and encoder.bins.space == bins['space'] == 'polar'
    assert encoder.num_bins == encoder.num_outputs == 8
    for name in ('weights', 'means', 'covariances'):
        np.testing.assert_array_equal(getattr(encoder.bins, name), bins[name].numpy())
        assert getattr(encoder.bins, name).dtype == np.float64
    assert encoder.mean_l == saved['mean_l'] == V1_MEAN_L
    assert encoder.img_lowpass == saved['img_lowpass'] == 4
    torch.testing.assert_close(encoder.class_weights, saved['class_weights'], rtol=0, atol=0)


def test_v1_checkpoint_is_what_the_old_code_wrote(v1_checkpoint):
    _, ckpt = v1_checkpoint
    assert sorted(ckpt) == ['arch', 'best_loss', 'binning', 'config', 'encoder', 'epoch', 'im_size', 'iteration',
                            'model_kwargs', 'model_state_dict', 'num_bins', 'vgg16_weights']
    assert (ckpt['arch'], ckpt['binning'], ckpt['num_bins'], tuple(ckpt['im_size'])) == ('fcn32s', 'soft', 8, (64, 64))
    assert ckpt['model_kwargs'] == {'n_class': 8, 'padding': 'same', 'fc_channels': 32}
    assert ckpt['config']['config_number'] == 199 and ckpt['config']['rebalance_lambda'] == 0.5
    assert sorted(ckpt['encoder']) == ['bins', 'class_weights', 'img_lowpass', 'mean_l']
    assert sorted(ckpt['encoder']['bins']) == ['binning', 'covariances', 'means', 'space', 'weights']
    assert os.path.getsize(os.path.join(FIXTURES, 'checkpoint_v1.pth.tar.gz')) < 1 << 20


def test_colorize_loads_a_v1_checkpoint_and_colours_as_the_old_code(v1_checkpoint):
    path, ckpt = v1_checkpoint
    colorizer = colorize.load_colorizer(path, 'cpu')
    assert_encoder_is_the_checkpoints(colorizer.encoder, ckpt['encoder'])
    assert colorizer.im_size == (64, 64) and not colorizer.model.training
    for name, tensor in ckpt['model_state_dict'].items():
        torch.testing.assert_close(colorizer.model.state_dict()[name], tensor, rtol=0, atol=0)
    out = colorizer.colorize([astronaut_48x32()])[0]
    expected = np.asarray(Image.open(V1_COLORIZED))
    assert out.shape == expected.shape == (32, 48, 3)
    assert np.abs(out.astype(int) - expected).max() <= 1   # float rounding of another CPU at most


def test_evaluate_scores_a_v1_checkpoint_as_the_old_code(v1_checkpoint, tmp_path):
    path, _ = v1_checkpoint
    (tmp_path / 'photos').mkdir()
    Image.fromarray(astronaut_48x32()).save(tmp_path / 'photos' / 'astronaut.png')
    out = tmp_path / 'eval'
    assert evaluate.main(['--device', 'cpu', '-m', path, '-d', str(tmp_path / 'photos'), '-o', str(out)]) == 0
    with open(out / 'metrics.json') as f:
        summary = json.load(f)
    assert summary['n_images'] == 1
    for method, scores in V1_METRICS.items():
        for key, value in scores.items():
            assert summary[method][key] == pytest.approx(value, abs=0.02), (method, key)


def test_a_v1_checkpoint_initialises_the_next_stage(v1_checkpoint, photo_folder, work_dir):
    path, ckpt = v1_checkpoint
    loaded = trainer.load_checkpoint(path)
    run_setup.check_compatible(loaded, path, 'fcn16s', dict(config.get_config(199), binning='soft', numbins=8),
                               resuming=False)
    # a checkpoint without a shape key was built with build_model's default: a run must ask for that one
    bare = dict(loaded, model_kwargs={k: v for k, v in loaded['model_kwargs'].items() if k != 'fc_channels'})
    run_setup.check_compatible(bare, path, 'fcn16s', dict(config.get_config(199), binning='soft', numbins=8,
                                                          fc_channels=4096), resuming=False)
    with pytest.raises(models.CheckpointError, match='trained with fc_channels 4096, this run asks for 32'):
        run_setup.check_compatible(bare, path, 'fcn16s', dict(config.get_config(199), binning='soft', numbins=8),
                                   resuming=False)
    done = trainer.main('fcn16s', SMOKE_ARGS + ['-d', photo_folder, '-m', path, '-o', work_dir, '--max-iter', '1',
                                                '--set', 'rebalance_lambda=0.5'])
    assert_encoder_is_the_checkpoints(done.encoder, ckpt['encoder'])   # the stages share bins and mean L
    written = trainer.load_checkpoint(os.path.join(work_dir, trainer.MODEL_BEST))
    assert written['arch'] == 'fcn16s'
    assert_encoder_is_the_checkpoints(colorize.load_colorizer(os.path.join(work_dir, trainer.MODEL_BEST)).encoder,
                                      ckpt['encoder'])
    with np.load(os.path.join(work_dir, 'gmm.npz')) as gmm:
        np.testing.assert_array_equal(gmm['means'], ckpt['encoder']['bins']['means'].numpy())
    # the trunk, BN statistics and score_fr of the next stage start as the checkpoint's
    fresh = run_setup.build_network('fcn16s', done.cfg, done.encoder, loaded, path).state_dict()
    shared = [name for name in ckpt['model_state_dict'] if not name.startswith('upscore')]
    assert 'conv1_1.weight' in shared and 'bn7.running_var' in shared and 'score_fr.bias' in shared
    for name in shared:
        torch.testing.assert_close(fresh[name], ckpt['model_state_dict'][name], rtol=0, atol=0)
