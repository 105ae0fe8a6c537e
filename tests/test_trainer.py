"""Real training runs on the CPU (config 199, a folder of ten small photos): the stages
FCN-32s -> FCN-16s -> FCN-8s with every run-folder artefact, resume, binnings, splits, refusals."""
import csv
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import cli
import config
import data_loader
import models
import trainer
import utils
from conftest import skimage_photo, temporary_folder

SEED_HEADER = ('epoch,iteration,train/loss,train/acc,train/acc_cls,train/mean_iu,train/fwavacc,'
               'valid/loss,valid/acc,valid/acc_cls,valid/mean_iu,valid/fwavacc,elapsed_time')
IM = 64   # config 199's image side
K = 8     # config 199's number of bins


def read_rows(run_dir):
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        return list(csv.DictReader(f))


def iterations(rows, kind):
    """Iterations of the train or valid rows, in log order."""
    return [int(r['iteration']) for r in rows if r[kind + '/loss'] != '']


def ckpt(run_dir, name=trainer.CHECKPOINT):
    return trainer.load_checkpoint(os.path.join(run_dir, name))


@pytest.fixture(scope='module')
def stages(photo_folder, train):
    """FCN-32s (3 iterations) -> FCN-16s from its best model -> FCN-8s from FCN-16s's best model.

    FCN-16s first runs 0 iterations (its checkpoint is then the initialised
    network) and is resumed for 2; FCN-8s runs 2, then is resumed up to 4.
    """
    with temporary_folder() as root:
        runs = {arch: os.path.join(root, arch) for arch in ('fcn32s', 'fcn16s', 'fcn8s')}
        train('fcn32s', '-d', photo_folder, '-o', runs['fcn32s'], '--max-iter', 3)
        train('fcn16s', '-d', photo_folder, '-o', runs['fcn16s'], '--max-iter', 0,
              '-m', os.path.join(runs['fcn32s'], trainer.MODEL_BEST))
        fcn16s_initial = ckpt(runs['fcn16s'])
        train('fcn16s', '--resume', os.path.join(runs['fcn16s'], trainer.CHECKPOINT), '--max-iter', 2)
        train('fcn8s', '-d', photo_folder, '-o', runs['fcn8s'], '--max-iter', 2,
              '-m', os.path.join(runs['fcn16s'], trainer.MODEL_BEST))
        with open(os.path.join(runs['fcn8s'], 'log.csv')) as f:
            fcn8s_log_before_resume = f.read()
        train('fcn8s', '--resume', os.path.join(runs['fcn8s'], trainer.CHECKPOINT), '--max-iter', 4)
        yield dict(runs=runs, fcn16s_initial=fcn16s_initial, fcn8s_log_before_resume=fcn8s_log_before_resume)


@pytest.mark.parametrize('arch,last_iteration', [('fcn32s', 3), ('fcn16s', 2), ('fcn8s', 4)])
def test_each_stage_writes_every_artefact(stages, photo_folder, arch, last_iteration):
    run_dir = stages['runs'][arch]
    with open(os.path.join(run_dir, 'log.csv')) as f:
        assert f.readline().rstrip('\n') == SEED_HEADER + ',valid/psnr,train/data_time,train/step_time'
    rows = read_rows(run_dir)
    assert iterations(rows, 'train') == list(range(last_iteration))
    valid = iterations(rows, 'valid')
    assert valid[0] == 0 and valid[-1] == last_iteration
    assert all(np.isfinite(float(r['valid/loss'])) and float(r['valid/psnr']) > 0
               for r in rows if r['valid/loss'])

    with open(os.path.join(run_dir, 'config.yaml')) as f:
        saved = yaml.safe_load(f)
    assert (saved['arch'], saved['config_number'], saved['numbins'], saved['im_size']) == (arch, 199, K, [IM, IM])

    last = ckpt(run_dir)
    assert (last['arch'], last['iteration'], last['num_bins'], last['binning']) == (arch, last_iteration, K, 'soft')
    assert 'optim_state_dict' in last and 'rng' in last
    best = ckpt(run_dir, trainer.MODEL_BEST)
    assert 'optim_state_dict' not in best   # the colorizing model carries no training state
    assert best['best_loss'] == min(float(r['valid/loss']) for r in rows if r['valid/loss'])
    net = models.model_from_checkpoint(best).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, IM, IM)).shape == (1, K, IM, IM)

    with open(os.path.join(run_dir, 'split_val.txt')) as f:
        n_val = sum(1 for line in f if line.strip())
    rows_drawn = min(n_val, 2)   # config 199: viz_images = 2
    for it in valid:
        tile = np.asarray(Image.open(os.path.join(run_dir, 'visualization_viz', 'iter%012d.png' % it)))
        assert tile.shape == (rows_drawn * (IM + 2) + 2, 4 * (IM + 2) + 2, 3)

    with np.load(os.path.join(run_dir, 'gmm.npz'), allow_pickle=False) as gmm:
        assert gmm['weights'].shape == (K,) and gmm['means'].shape == (K, 2) and gmm['covariances'].shape == (K, 2, 2)
        np.testing.assert_allclose(gmm['means'], last['encoder']['bins']['means'].numpy())
    assert float(np.load(os.path.join(run_dir, 'mean_l.npy'))) == pytest.approx(last['encoder']['mean_l'])
    with open(os.path.join(run_dir, trainer.SKIPPED_COUNT)) as f:
        assert f.read().strip() == '0'


def test_later_stages_start_from_the_previous_best_model(stages):
    """FCN-16s at iteration 0 holds FCN-32s's best weights in every layer the two share."""
    best32 = ckpt(stages['runs']['fcn32s'], trainer.MODEL_BEST)
    initial16 = stages['fcn16s_initial']
    assert initial16['iteration'] == 0
    shared = [k for k, v in best32['model_state_dict'].items()
              if k in initial16['model_state_dict'] and initial16['model_state_dict'][k].shape == v.shape
              and not k.startswith('upscore')]
    assert {'conv1_1.weight', 'bn5_3.running_mean', 'fc6.weight', 'fc7.weight', 'score_fr.weight'} <= set(shared)
    for k in shared:
        assert torch.equal(initial16['model_state_dict'][k], best32['model_state_dict'][k]), k
    assert not torch.equal(best32['model_state_dict']['conv1_1.weight'],
                           ckpt(stages['runs']['fcn16s'])['model_state_dict']['conv1_1.weight'])  # then it trained
    # the colour bins travel with the model
    for arch in ('fcn16s', 'fcn8s'):
        assert torch.equal(ckpt(stages['runs'][arch])['encoder']['bins']['means'], best32['encoder']['bins']['means'])


def test_resume_continues_at_the_next_iteration_and_extends_the_log(stages):
    run_dir = stages['runs']['fcn8s']
    before = stages['fcn8s_log_before_resume']
    with open(os.path.join(run_dir, 'log.csv')) as f:
        after = f.read()
    assert after.startswith(before) and len(after) > len(before)
    rows = read_rows(run_dir)
    assert iterations(rows, 'train') == [0, 1, 2, 3]
    assert iterations(rows, 'valid') == [0, 2, 4]   # interval_validate = 2; each once
    elapsed = [float(r['elapsed_time']) for r in rows]
    assert elapsed == sorted(elapsed)   # the clock continues too


def test_plot_log_csv_writes_log_plots_png(stages):
    log_path = os.path.join(stages['runs']['fcn32s'], 'log.csv')
    out = utils.plot_log_csv(log_path)
    png = os.path.join(stages['runs']['fcn32s'], 'log_plots.png')
    assert os.path.abspath(out) == os.path.abspath(png)
    assert Image.open(png).size[0] > 100


def test_checkpoints_for_other_bins_or_architectures_are_refused(stages, train, work_dir):
    best32 = os.path.join(stages['runs']['fcn32s'], trainer.MODEL_BEST)
    out = os.path.join(work_dir, 'refused')
    with pytest.raises(ValueError, match=r'soft binning and K=8, this run asks for soft binning and K=16'):
        train('fcn16s', '-m', best32, '-k', 16, '-o', out)
    with pytest.raises(ValueError, match=r'K=8, this run asks for one-hot binning'):
        train('fcn16s', '-m', best32, '-b', 'one-hot', '-o', out)
    with pytest.raises(ValueError, match=r'continues with the colour targets and network of .*; numbins cannot change'):
        train('fcn32s', '--resume', os.path.join(stages['runs']['fcn32s'], trainer.CHECKPOINT), '-k', 9, '-o', out)
    with pytest.raises(ValueError, match=r'img_lowpass, rebalance_lambda cannot change'):
        train('fcn32s', '--resume', os.path.join(stages['runs']['fcn32s'], trainer.CHECKPOINT),
              '--set', 'img_lowpass=2', '--set', 'rebalance_lambda=0.5', '-o', out)
    with pytest.raises(ValueError, match=r'hints, fc_channels cannot change'):
        train('fcn32s', '--resume', os.path.join(stages['runs']['fcn32s'], trainer.CHECKPOINT),
              '--set', 'hints=true', '--set', 'fc_channels=16', '-o', out)
    with pytest.raises(ValueError, match=r'perfect square'):
        train('fcn32s', '-b', 'uniform', '-k', 10, '-o', os.path.join(work_dir, 'never-made'))
    assert not os.path.exists(os.path.join(work_dir, 'never-made'))  # refused before anything is written
    with pytest.raises(ValueError, match=r'fcn32s checkpoint: resume it with train_color_fcn32s.py'):
        train('fcn8s', '--resume', os.path.join(stages['runs']['fcn32s'], trainer.CHECKPOINT), '-o', out)
    with pytest.raises(ValueError, match=r'cannot initialise fcn8s from a fcn32s checkpoint'):
        train('fcn8s', '-m', best32, '-o', out)
    with pytest.raises(FileExistsError, match=r'already holds a run'):   # never mixes two runs' logs
        train('fcn32s', '-o', stages['runs']['fcn32s'])


def test_set_overrides_config_keys_and_rejects_unknown_ones(train, work_dir):
    with pytest.raises(ValueError, match=r"unknown config key 'lerning_rate'"):
        train('fcn32s', '--set', 'lerning_rate=1', '-o', work_dir)
    with pytest.raises(ValueError, match=r'expected KEY=VALUE'):
        train('fcn32s', '--set', 'lr', '-o', work_dir)


def test_one_hot_binning_trains_and_the_folder_split_is_written_then_reused(photo_folder, train, work_dir):
    photos = os.path.join(work_dir, 'photos')
    shutil.copytree(photo_folder, photos)
    run_dir = os.path.join(work_dir, 'one-hot')
    train('fcn32s', '-b', 'one-hot', '-d', photos, '-o', run_dir, '--max-iter', 0)
    split = {s: data_loader.read_list(os.path.join(run_dir, 'split_%s.txt' % s)) for s in ('train', 'val')}
    assert sorted(split['train'] + split['val']) == sorted(os.listdir(photo_folder))
    assert split['val'] and not set(split['train']) & set(split['val'])

    Image.fromarray(skimage_photo('astronaut')).save(os.path.join(photos, 'added-later.png'))
    done = train('fcn32s', '--resume', os.path.join(run_dir, trainer.CHECKPOINT), '--max-iter', 2)
    assert {s: data_loader.read_list(os.path.join(run_dir, 'split_%s.txt' % s)) for s in split} == split
    assert done.train_set.files == split['train'] and done.val_set.files == split['val']

    last = ckpt(run_dir)
    assert (last['binning'], last['num_bins'], last['iteration']) == ('one-hot', K, 2)
    assert last['model_kwargs']['n_class'] == 2 * K   # hue head + chroma head
    rows = read_rows(run_dir)
    assert iterations(rows, 'train') == [0, 1]
    assert all(np.isfinite(float(r['train/loss'])) for r in rows if r['train/loss'])
    assert not os.path.exists(os.path.join(run_dir, 'gmm.npz'))   # no GMM for one-hot bins


def test_uniform_binning_trains_with_a_square_k_and_refuses_another(photo_folder, train, work_dir):
    run_dir = os.path.join(work_dir, 'uniform')
    train('fcn32s', '-b', 'uniform', '-k', 9, '-d', photo_folder, '-o', run_dir, '--max-iter', 2,
          '--set', 'lr=0.002')
    last = ckpt(run_dir)
    assert (last['binning'], last['num_bins'], last['model_kwargs']['n_class']) == ('uniform', 9, 9)
    np.testing.assert_allclose(np.sort(np.unique(last['encoder']['bins']['means'].numpy())), [0, 0.5, 1])
    with open(os.path.join(run_dir, 'config.yaml')) as f:
        assert yaml.safe_load(f)['lr'] == 0.002   # --set is recorded
    assert iterations(read_rows(run_dir), 'train') == [0, 1]
    with pytest.raises(ValueError, match='perfect square'):
        train('fcn32s', '-b', 'uniform', '-k', 8, '-d', photo_folder, '-o', os.path.join(work_dir, 'k8'))


def test_a_stage_keeps_the_previous_bins_but_uses_its_own_lowpass_and_rebalancing(stages, train, work_dir):
    """-m brings the bins and mean lightness; img_lowpass and class rebalancing are the new config's."""
    best32 = trainer.load_checkpoint(os.path.join(stages['runs']['fcn32s'], trainer.MODEL_BEST))
    run_dir = os.path.join(work_dir, 'fcn16s')
    train('fcn16s', '-m', os.path.join(stages['runs']['fcn32s'], trainer.MODEL_BEST), '-o', run_dir,
          '--max-iter', 1, '--set', 'img_lowpass=2', '--set', 'rebalance_lambda=0.5')
    enc = trainer.load_checkpoint(os.path.join(run_dir, trainer.CHECKPOINT))['encoder']
    assert enc['img_lowpass'] == 2 != best32['encoder']['img_lowpass']
    torch.testing.assert_close(enc['bins']['means'], best32['encoder']['bins']['means'])
    assert enc['mean_l'] == best32['encoder']['mean_l']
    prior = np.load(os.path.join(run_dir, 'bin_prior.npy'))
    weights = enc['class_weights'].double().numpy()
    assert weights.shape == (K,) and abs((prior * weights).sum() - 1) < 1e-5  # E_prior[w] = 1
    expected = 1 / (0.5 * prior + 0.5 / K)
    np.testing.assert_allclose(weights, expected / (prior * expected).sum(), rtol=1e-5)



def test_a_checkpoint_from_before_jpeg_draft_resumes_decoding_at_full_size():
    old = {k: v for k, v in config_module_defaults().items() if k != 'jpeg_draft'}
    old.update(binning='soft', numbins=8, config_number=199)
    args = cli.parse_train_args('fcn32s', ['--resume', 'checkpoint.pth.tar'])
    assert cli.resolve_config(args, {'config': old})['jpeg_draft'] is False
    args = cli.parse_train_args('fcn32s', ['-c', '199'])
    assert cli.resolve_config(args)['jpeg_draft'] is True      # a new run gets the default


def config_module_defaults():
    return dict(config.DEFAULTS)
