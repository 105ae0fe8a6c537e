"""The training loop, its losses, logging and checkpoints; ``main`` of the three train scripts.

``main(arch)`` is what ``train_color_fcn{32,16,8}s.py`` call.  A run folder holds:
``config.yaml``, ``log.csv`` (the seed's columns, then ``valid/psnr`` and the step
timing), TensorBoard's ``events.out.tfevents.*`` (the same values, the learning
rate, the pictures, the config), ``checkpoint.pth.tar`` (everything to resume),
``model_best.pth.tar`` (everything to colorize), ``visualization_viz/iter%012d.png``,
``gmm.npz`` / ``mean_l.npy``
(colour statistics), ``skipped_files.txt`` / ``skipped_count.txt`` (unreadable
inputs) and ``train.log``.

Under ``torchrun`` every process runs this same code (``runtime.Runtime``, one
place for device, AMP and DDP, reads the environment torchrun sets); rank 0 alone fits the colour statistics, makes the
file lists and writes the run folder, and shares what it made by broadcast.
"""
import collections
import csv
import datetime
import glob
import hashlib
import logging
import math
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import cli
import config as config_module
import data_loader
import models
from runtime import (Runtime, ResumableSampler, atomic_torch_save, default_workers, give_back_freed_memory,
                     remove_stale_temporaries, rng_state, seed_everything, set_rng_state)
import utils

log = logging.getLogger('colorizer')

LOGS_DIR = os.path.join(data_loader.REPO_DIR, 'logs')  # beside the code, as pytorch-fcn
LOG_HEADER = ['epoch', 'iteration', 'train/loss', 'train/acc', 'train/acc_cls', 'train/mean_iu',
              'train/fwavacc', 'valid/loss', 'valid/acc', 'valid/acc_cls', 'valid/mean_iu',
              'valid/fwavacc', 'elapsed_time', 'valid/psnr', 'train/data_time', 'train/step_time']
TIMING_COLUMNS = LOG_HEADER[-2:]   # seconds waiting for the batch / of forward + backward + optimizer
CHECKPOINT = 'checkpoint.pth.tar'
MODEL_BEST = 'model_best.pth.tar'
SKIPPED_FILES = 'skipped_files.txt'
SKIPPED_COUNT = 'skipped_count.txt'
# config keys that define the colour targets: fixed for the whole of a run, resumes included
ENCODER_KEYS = ('binning', 'numbins', 'uniform_sigma', 'img_lowpass', 'rebalance_lambda', 'rebalance_sigma',
                'gmm_space')


class TrainingStopped(RuntimeError):
    """A run that was going cannot go on (its inputs became unreadable); the message names the last checkpoint."""


# stops of a run that was going (one error line, exit status 1), each naming the last good checkpoint
STOPS = (FloatingPointError, TrainingStopped)
PROGRESS_INTERVAL_NOT_TTY = 10   # seconds between progress-bar refreshes when stderr is a file
IMAGENET_VGG16 = {'imagenet': 'VGG16_Weights', 'imagenet_bn': 'VGG16_BN_Weights'}  # --vgg16 -> torchvision
STAGE_COPIES = {('fcn32s', 'fcn16s'): 'copy_params_from_fcn32s',
                ('fcn16s', 'fcn8s'): 'copy_params_from_fcn16s'}


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def parse_args(arch, argv=None):
    p = cli.ArgumentParser(
        description='Train %s to colorize (see README.md). Under torchrun every process runs this '
                    'script; the config\'s batch_size is per process.' % arch.upper())
    p.add_argument('-e', '--exp_name', default=arch, help='experiment name, used in the run folder name')
    p.add_argument('-g', '--gpu', type=int, default=None,
                   help='CUDA device index (default: the first GPU if any, else the CPU; '
                        'under torchrun: LOCAL_RANK)')
    p.add_argument('-c', '--config', type=int, default=None,
                   help='configuration number in config.py (required unless --resume)')
    p.add_argument('-b', '--binning', choices=data_loader.BINNINGS, default=None,
                   help='colour targets: soft (GMM), uniform (grid), one-hot (H and C); '
                        'default: the config\'s, else soft')
    p.add_argument('-k', '--numbins', type=int, default=None,
                   help='number of colour bins K (default: the config\'s, else 128)')
    p.add_argument('-d', '--dataset_path', default=None,
                   help='ImageNet root (train/, val/) or any folder of photos; '
                        'default: the photos bundled with scikit-image')
    p.add_argument('-m', '--model_path', default=None,
                   help='checkpoint of the previous stage to start from (default: the config\'s init_from)')
    p.add_argument('--resume', default=None, metavar='CHECKPOINT',
                   help='continue a run exactly where its checkpoint.pth.tar stopped (same batches, '
                        'same random numbers); its config is used, updated by the flags given here')
    p.add_argument('-o', '--out', default=None,
                   help='run folder (default logs/MODEL-<exp>_CFG-<NNN>_TIME-<stamp>; '
                        'with --resume: the checkpoint\'s folder)')
    p.add_argument('--max-iter', type=cli.natural_int, default=None, help='override max_iteration (smoke runs)')
    p.add_argument('-j', '--workers', type=cli.natural_int, default=None, help='DataLoader workers per process')
    p.add_argument('--vgg16', default=None, metavar='imagenet|imagenet_bn|none|PATH',
                   help='start from VGG16: torchvision\'s ImageNet weights (downloaded once into the torch '
                        'hub cache, $TORCH_HOME), their vgg16_bn variant, random weights (none), or a local '
                        'torchvision vgg16(_bn) state dict; default: the config\'s vgg16')
    p.add_argument('--save-interval', type=cli.positive_int, default=None,
                   help='also write checkpoint.pth.tar every N iterations (independent of validation)')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', dest='overrides',
                   help='override any config.py key, VALUE read as YAML (e.g. --set lr=1e-4 '
                        '--set im_size=[128,128]); repeatable; recorded in config.yaml')
    args = p.parse_args(argv)
    if args.config is None and args.resume is None:
        p.error('-c/--config is required (unless --resume)')
    return args


def parse_overrides(pairs):
    """``['lr=1e-4', 'sync_bn=true']`` -> ``{'lr': 0.0001, 'sync_bn': True}``, each checked by config.SCHEMA."""
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition('=')
        key = key.strip()
        if not sep:
            raise config_module.ConfigError('--set %r: expected KEY=VALUE' % pair)
        if key not in config_module.SCHEMA:
            raise config_module.ConfigError('--set: ' + config_module.unknown_key_message(key))
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise config_module.ConfigError('--set %s: %r is not a YAML value' % (key, text)) from None
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        overrides[key] = config_module.check_value(key, value)
    return overrides


# the flags that set a config key (flag, key): their values are checked as the key's
FLAG_KEYS = (('binning', 'binning'), ('numbins', 'numbins'), ('max_iter', 'max_iteration'),
             ('workers', 'workers'), ('vgg16', 'vgg16'), ('save_interval', 'save_interval'))


def apply_overrides(cfg, args):
    """Config dict updated by ``--set`` and then by the explicit flags (a fresh run or a resume), checked."""
    cfg.update(parse_overrides(args.overrides))
    for flag, key in FLAG_KEYS:
        value = getattr(args, flag)
        if value is not None:
            cfg[key] = config_module.check_value(key, value)
    cfg['binning'] = cfg['binning'] or 'soft'
    cfg['numbins'] = cfg['numbins'] or 128
    return config_module.check_config(cfg)


def resolve_config(args, resume_ckpt=None):
    """The run's config: the checkpoint's (resume) or config N's, then command-line overrides; checked."""
    if resume_ckpt is not None:  # keys added to config.py since then: RESUME_DEFAULTS, else DEFAULTS
        saved = {**config_module.DEFAULTS, **config_module.RESUME_DEFAULTS, **resume_ckpt['config']}
        config_module.check_config(saved, '%s (its config)' % args.resume, ignore_unknown=True)
        # keys this code does not know (a newer version's) mean nothing here
        cfg = {k: v for k, v in saved.items() if k in config_module.SCHEMA or k in config_module.RUN_KEYS}
    else:
        cfg = config_module.get_config(args.config)
        cfg['config_number'] = args.config
    cfg['dataset_path'] = args.dataset_path or cfg.get('dataset_path')
    cfg = apply_overrides(cfg, args)
    if resume_ckpt is not None:
        changed = [key for key in ENCODER_KEYS if cfg[key] != saved[key]]
        if changed:
            raise config_module.ConfigError(
                '--resume continues with the colour targets of %s; %s cannot change '
                '(start a new run from it with -m instead)' % (args.resume, ', '.join(changed)))
    return cfg


def newest_run_file(config_number, name=MODEL_BEST, logs_dir=LOGS_DIR):
    """The newest ``name`` (default ``model_best.pth.tar``) of a run of ``config_number`` under ``logs/``."""
    pattern = os.path.join(logs_dir, '*_CFG-%03d_*' % config_number, name)
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not found:
        raise cli.MissingFile('no %s from a run of config %d under %s/: train that config first%s'
                              % (name, config_number, logs_dir, ' or pass -m' if name == MODEL_BEST else ''))
    return found[-1]


# --------------------------------------------------------------------------
# data loaders
# --------------------------------------------------------------------------

def make_loader(dataset, sampler, batch_size, cfg, runtime, workers):
    """DataLoader with its own seeded generator: starting an epoch never draws from the
    global torch RNG (whose stream drives dropout and is checkpointed)."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        collate_fn=data_loader.collate_skip_unreadable, pin_memory=runtime.pin_memory,
        prefetch_factor=cfg['prefetch_factor'] if workers else None,
        persistent_workers=workers > 0,
        worker_init_fn=give_back_freed_memory if runtime.keeps_freed_memory else None,
        generator=torch.Generator().manual_seed(cfg['seed']))


# --------------------------------------------------------------------------
# checkpoints (written by runtime.atomic_torch_save, read by models.load_checkpoint)
# --------------------------------------------------------------------------

load_checkpoint = models.load_checkpoint          # the one reader of checkpoints
model_from_checkpoint = models.model_from_checkpoint


def check_compatible(ckpt, path, arch, cfg, resuming):
    """Refuse a checkpoint of another architecture (or stage order) or other colour bins than this run's."""
    if resuming and ckpt['arch'] != arch:
        raise models.CheckpointError('%s is a %s checkpoint: resume it with train_color_%s.py, not %s'
                                     % (path, ckpt['arch'], ckpt['arch'], arch))
    if ckpt['arch'] != arch and (ckpt['arch'], arch) not in STAGE_COPIES:
        raise models.CheckpointError('cannot initialise %s from a %s checkpoint (%s): the stages go %s'
                                     % (arch, ckpt['arch'], path, ' -> '.join(['fcn32s', 'fcn16s', 'fcn8s'])))
    if ckpt['binning'] != cfg['binning'] or ckpt['num_bins'] != cfg['numbins']:
        raise models.CheckpointError('%s was trained with %s binning and K=%d, this run asks for %s binning and '
                                     'K=%d (set -b/-k to match)' % (path, ckpt['binning'], ckpt['num_bins'],
                                                                    cfg['binning'], cfg['numbins']))


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------

def soft_target_loss(scores, target, class_weights=None):
    """Per-pixel KL(target || softmax(scores)) ``[B, H, W]`` for ``[B, K, H, W]`` inputs.

    Cross-entropy with probability targets (fused in torch) minus the target's
    entropy, so no second K-channel copy is kept for backward.  With
    ``class_weights [K]`` each pixel is weighted by the weight of its target bin.
    """
    target_f = target
    if target.dtype != scores.dtype:  # low-precision targets (AMP): back to a distribution summing to 1
        target_f = target.float()
        target_f = target_f / target_f.sum(1, keepdim=True)
    with torch.no_grad():
        entropy = torch.special.entr(target_f).sum(1)
        weight = None if class_weights is None else class_weights.to(scores.device)[target.argmax(1)]
    kl = F.cross_entropy(scores, target_f, reduction='none') - entropy
    return kl if weight is None else kl * weight


def one_hot_loss(scores, labels, bins):
    """Cross-entropy of the hue head plus that of the chroma head, per pixel ``[B, H, W]``."""
    hue_scores, chroma_scores = bins.split_heads(scores)
    return (F.cross_entropy(hue_scores, labels[:, 0], reduction='none')
            + F.cross_entropy(chroma_scores, labels[:, 1], reduction='none'))


def pixel_losses(scores, target, encoder):
    if encoder.binning == 'one-hot':
        return one_hot_loss(scores, target, encoder.bins)
    return soft_target_loss(scores, target, encoder.class_weights)


def reduce_loss(per_pixel, how):
    """'mean' over every pixel, or 'sum' over the pixels of an image then mean over the batch."""
    if how == 'sum':
        return per_pixel.flatten(1).sum(1).mean()
    return per_pixel.mean()


def label_maps(scores, target, encoder):
    """(true, predicted) argmax bins; one-hot: hue and chroma heads stacked on dim 0."""
    if encoder.binning == 'one-hot':
        hue_scores, chroma_scores = encoder.bins.split_heads(scores)
        pred = torch.stack([hue_scores.argmax(1), chroma_scores.argmax(1)])
        return target.permute(1, 0, 2, 3), pred
    return target.argmax(1), scores.argmax(1)


def confusion(scores, target, encoder):
    """``[heads, K, K]`` confusion of the argmax bins (one head, or hue + chroma heads)."""
    true, pred = label_maps(scores, target, encoder)
    if encoder.binning == 'one-hot':
        return torch.stack([utils.confusion_matrix(t, p, encoder.num_bins) for t, p in zip(true, pred)])
    return utils.confusion_matrix(true, pred, encoder.num_bins).unsqueeze(0)


def scores_of(conf):
    """Mean over heads of (acc, acc_cls, mean_iu, fwavacc)."""
    per_head = [utils.scores_from_confusion(c) for c in conf.cpu().numpy()]
    return [float(np.mean(v)) for v in zip(*per_head)]



# --------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------

def set_train_mode(model, bn_dropout_eval):
    """``model.train()``; with ``bn_dropout_eval`` BatchNorm and Dropout stay in eval mode.

    Then every image's loss and gradient are independent of its batch-mates
    (BatchNorm uses its running statistics, no dropout mask is drawn), so N
    processes of batch B step exactly like one process of batch N*B.
    """
    model.train()
    if bn_dropout_eval:
        for module in model.modules():
            if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.dropout._DropoutNd)):
                module.eval()


class Trainer:
    """One readable loop: validate / checkpoint when due, then a training step, every iteration."""

    def __init__(self, arch, cfg, run_dir, runtime, model, encoder, train_set, val_set, workers,
                 vgg16_record=None):
        self.arch, self.cfg, self.run_dir, self.rt = arch, cfg, run_dir, runtime
        self.vgg16_record = vgg16_record   # the VGG16 weights the run started from (file, hash), or None
        self.model, self.encoder = model, encoder
        self.train_set, self.val_set = train_set, val_set
        self.train_sampler = ResumableSampler(len(train_set), True, cfg['seed'], runtime.rank, runtime.world_size,
                                              numbered_by_epoch=True)   # new augmented views each epoch
        self.val_sampler = ResumableSampler(len(val_set), False, cfg['seed'], runtime.rank, runtime.world_size,
                                            pad=False)
        self.train_loader = make_loader(train_set, self.train_sampler, cfg['batch_size'], cfg, runtime, workers)
        self.val_loader = make_loader(val_set, self.val_sampler, cfg['val_batch_size'], cfg, runtime, workers)
        self.optim = make_optimizer(model, cfg)
        self.global_batch = cfg['batch_size'] * runtime.world_size   # sampler positions per step
        self.batches_per_epoch = math.ceil(len(train_set) / self.global_batch)
        self.interval_validate = cfg['interval_validate'] or self.batches_per_epoch
        self.iteration, self.epoch, self.sample_in_epoch = 0, 0, 0
        self.validated_at = self.saved_at = None
        self.best_loss = float('inf')
        self.nonfinite_steps = 0
        self.unusable_batches = 0     # batches in a row with no readable image on some rank
        self.start_time, self.elapsed_before = time.time(), 0.0
        self.log_path = os.path.join(run_dir, 'log.csv')
        self.tensorboard = None       # rank 0's SummaryWriter while train() runs
        self.resumed_at = None
        self.workers = workers
        self.timing_window = collections.deque(maxlen=cfg['data_wait_window'])  # (data, step) seconds
        self.data_time_total = self.step_time_total = 0.0
        self.images_trained = 0
        self.data_wait_warned = False
        self.skipped = read_skipped(os.path.join(run_dir, SKIPPED_FILES)) if runtime.is_main else {}

    # --- state ------------------------------------------------------------

    @property
    def bare_model(self):
        """The network without its torch.compile / DDP wrappers."""
        model = getattr(self.model, '_orig_mod', self.model)
        return getattr(model, 'module', model)

    def checkpoint_state(self, rng_states=None):
        """Everything to colorize; with every rank's ``rng_states`` also everything to resume."""
        state = {
            'arch': self.arch, 'model_kwargs': model_kwargs(self.cfg, self.encoder),
            'model_state_dict': self.bare_model.state_dict(),
            'encoder': self.encoder.state(), 'num_bins': self.encoder.num_bins,
            'binning': self.encoder.binning, 'im_size': tuple(self.cfg['im_size']),
            'config': self.cfg, 'iteration': self.iteration, 'epoch': self.epoch,
            'best_loss': self.best_loss, 'vgg16_weights': self.vgg16_record,
        }
        if rng_states is not None:
            state.update({
                'optim_state_dict': self.optim.state_dict(),
                'scaler_state_dict': self.rt.scaler.state_dict(),
                'sample_in_epoch': self.sample_in_epoch, 'validated_at': self.validated_at,
                'log_rows': count_rows(self.log_path), 'rng': rng_states,
                'world_size': self.rt.world_size, 'elapsed_time': self.elapsed(),
                'nonfinite_steps': self.nonfinite_steps,
            })
        return state

    def save_checkpoint(self):
        """checkpoint.pth.tar (atomically); every rank calls it, its RNG state goes in."""
        rng_states = self.rt.all_gather(rng_state())
        if self.rt.is_main:
            atomic_torch_save(self.checkpoint_state(rng_states), os.path.join(self.run_dir, CHECKPOINT))
        self.saved_at = self.iteration

    def resume(self, ckpt):
        """Continue exactly: model, optimizer, sampler position, RNGs; log rows after the checkpoint go."""
        self.bare_model.load_state_dict(ckpt['model_state_dict'])
        self.optim.load_state_dict(ckpt['optim_state_dict'])
        self.rt.scaler.load_state_dict(ckpt['scaler_state_dict'])
        self.iteration, self.epoch = ckpt['iteration'], ckpt['epoch']
        self.sample_in_epoch, self.validated_at = ckpt['sample_in_epoch'], ckpt['validated_at']
        self.saved_at = self.iteration
        self.best_loss, self.elapsed_before = ckpt['best_loss'], ckpt['elapsed_time']
        self.nonfinite_steps = ckpt['nonfinite_steps']
        if len(ckpt['rng']) == self.rt.world_size:
            set_rng_state(ckpt['rng'][self.rt.rank])
        else:
            log.warning('the checkpoint was written by %d processes, this run has %d: the random '
                        'streams (dropout) are re-seeded', len(ckpt['rng']), self.rt.world_size)
            seed_everything(self.cfg['seed'] + self.rt.rank + self.iteration)
        if self.rt.is_main:
            truncate_rows(self.log_path, ckpt['log_rows'])
            add_log_columns(self.log_path)
        self.resumed_at = self.iteration
        log.info('resumed at iteration %d (epoch %d, sample %d of it)', self.iteration, self.epoch,
                 self.sample_in_epoch)

    def last_good_state(self):
        """Where a stopped run can be resumed from, as the end of its message."""
        path = os.path.join(self.run_dir, CHECKPOINT)
        if self.saved_at is None and not os.path.exists(path):
            return 'no checkpoint was written yet'
        return 'the last good state is %s (iteration %s)' % (path, self.saved_at)

    def elapsed(self):
        return self.elapsed_before + time.time() - self.start_time

    # --- logging ------------------------------------------------------------

    def write_row(self, train=None, valid=None, timing=None):
        """One log.csv row (rank 0), its train/* and valid/* values also as TensorBoard scalars.

        ``train``: loss, acc, acc_cls, mean_iu, fwavacc; ``valid``: the same and
        psnr; ``timing``: seconds of data wait and of the step.
        """
        if not self.rt.is_main:
            return
        values = dict(zip(LOG_HEADER[2:7], train or []))
        values.update(zip(LOG_HEADER[7:12] + ['valid/psnr'], valid or []))
        values.update(zip(TIMING_COLUMNS, timing or []))
        row = dict(values, epoch=self.epoch, iteration=self.iteration, elapsed_time='%.2f' % self.elapsed())
        new_file = not os.path.exists(self.log_path)
        with open(self.log_path, 'a', newline='') as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(LOG_HEADER)
            writer.writerow([row.get(column, '') for column in LOG_HEADER])
        for tag, value in values.items():
            self.tensorboard.add_scalar(tag, value, self.iteration)
        if train:
            self.tensorboard.add_scalar('train/lr', self.optim.param_groups[0]['lr'], self.iteration)

    def open_tensorboard(self):
        """Rank 0's TensorBoard event files, in the run folder.

        A resume hides the events logged after its checkpoint (``purge_step``)
        and logs again what log.csv and visualization_viz/ keep from that iteration.
        """
        from torch.utils.tensorboard import SummaryWriter
        self.tensorboard = SummaryWriter(self.run_dir, purge_step=self.resumed_at)
        if self.resumed_at is not None:
            logged = utils.read_log_csv(self.log_path)
            for i in np.flatnonzero(logged.get('iteration', np.zeros(0)) >= self.resumed_at):
                for tag, values in logged.items():
                    if tag.startswith(('train/', 'valid/')) and math.isfinite(values[i]):
                        self.tensorboard.add_scalar(tag, values[i], int(logged['iteration'][i]))
            if os.path.exists(self.viz_path(self.resumed_at)):
                self.tensorboard.add_image('valid/visualization', np.asarray(Image.open(self.viz_path(
                    self.resumed_at)).convert('RGB')), self.resumed_at, dataformats='HWC')
        config_text = yaml.safe_dump(dict(self.cfg, im_size=list(self.cfg['im_size']), arch=self.arch,
                                          vgg16_weights=self.vgg16_record), sort_keys=True)
        self.tensorboard.add_text('config', '```\n%s```' % config_text, self.iteration)
        for summary in tensorboard_hparams(self.cfg, self.arch):
            self.tensorboard.file_writer.add_summary(summary)

    def note_skipped(self, batch, dataset):
        """Record the unreadable files of a batch (see :meth:`record_skipped`)."""
        self.record_skipped({dataset.path(i): reason for i, reason in batch['skipped']})

    def record_skipped(self, entries):
        """New unreadable files: one warning each; rank 0 lists them and their count in the run folder."""
        new = {path: reason for path, reason in entries.items() if path not in self.skipped}
        for path, reason in new.items():
            log.warning('skipped unreadable image %s (%s)', path, reason)
        self.skipped.update(new)
        if new and self.rt.is_main:
            with open(os.path.join(self.run_dir, SKIPPED_FILES), 'a') as f:
                f.writelines('%s\t%s\n' % item for item in new.items())
            self.write_skip_count()

    def write_skip_count(self):
        with open(os.path.join(self.run_dir, SKIPPED_COUNT), 'w') as f:
            f.write('%d\n' % len(self.skipped))

    # --- one step -----------------------------------------------------------

    def forward(self, rgb, model):
        """uint8 batch -> (input, target, scores as float32)."""
        with torch.no_grad():
            net_input, target = self.encoder.encode(rgb.to(self.rt.device, non_blocking=self.rt.pin_memory),
                                                    self.rt.target_dtype)
        if self.rt.channels_last:
            net_input = net_input.contiguous(memory_format=torch.channels_last)
        with self.rt.autocast():
            scores = model(net_input)
        return net_input, target, scores.float()

    def train_step(self, rgb):
        """One optimizer step; None when the loss was not finite on some rank and the step was skipped."""
        set_train_mode(self.model, self.cfg['bn_dropout_eval'])
        _, target, scores = self.forward(rgb, self.model)
        per_pixel = pixel_losses(scores, target, self.encoder)
        loss = reduce_loss(per_pixel, self.cfg['loss_reduction'])
        self.optim.zero_grad(set_to_none=True)
        self.rt.scaler.scale(loss).backward()   # also when not finite: DDP's ranks stay in step
        if not self.rt.all_true(torch.isfinite(loss)):
            self.optim.zero_grad(set_to_none=True)
            if self.cfg['nonfinite_loss'] != 'skip':
                where = '%s on rank %d' % (loss.item(), self.rt.rank) if not torch.isfinite(loss) \
                    else 'on another rank'   # every rank stops; rank 0's message is the one logged
                raise FloatingPointError('non-finite training loss (%s) at iteration %d; %s'
                                         % (where, self.iteration, self.last_good_state()))
            self.nonfinite_steps += 1
            log.warning('non-finite loss at iteration %d: step skipped (%d so far)',
                        self.iteration, self.nonfinite_steps)
            return None
        self.rt.scaler.step(self.optim)
        self.rt.scaler.update()
        metrics = scores_of(confusion(scores.detach(), target, self.encoder))
        return [per_pixel.detach().mean().item()] + metrics

    # --- validation -----------------------------------------------------------

    @torch.no_grad()
    def validate(self):
        """Loss, argmax-bin scores and PSNR over the validation set (reduced over ranks).

        Each rank evaluates its share with the bare network (no collective
        inside the loop, so shares may differ in size); sums are reduced after.
        """
        model = self.bare_model
        model.eval()
        n_out = 2 if self.encoder.binning == 'one-hot' else 1
        conf = torch.zeros(n_out, self.encoder.num_bins, self.encoder.num_bins, dtype=torch.long,
                           device=self.rt.device)
        sums = torch.zeros(4, dtype=torch.float64, device=self.rt.device)  # loss, pixels, psnr, images
        viz = []
        for batch in self.val_loader:
            self.note_skipped(batch, self.val_set)
            if batch['rgb'] is None:
                continue
            net_input, target, scores = self.forward(batch['rgb'], model)
            per_pixel = pixel_losses(scores, target, self.encoder)
            conf += confusion(scores, target, self.encoder)
            probs = self.encoder.probabilities(scores)
            rgb_pred = self.encoder.to_rgb(net_input, probs, self.cfg['decode'], self.cfg['temperature'])
            truth = batch['rgb'].permute(0, 2, 3, 1).numpy()
            psnrs = [utils.capped_psnr(t, utils.to_uint8(p)) for t, p in zip(truth, rgb_pred)]
            sums += torch.tensor([per_pixel.sum().item(), per_pixel.numel(), sum(psnrs), len(psnrs)],
                                 dtype=torch.float64, device=self.rt.device)
            if self.rt.is_main and len(viz) < self.cfg['viz_images']:
                viz.extend(self.viz_rows(batch['rgb'], net_input, target, rgb_pred))
        self.rt.all_reduce_sum(conf)
        self.rt.all_reduce_sum(sums)
        if self.rt.distributed:  # every rank's unreadable files reach rank 0's list
            for entries in self.rt.all_gather(dict(self.skipped)):
                self.record_skipped(entries)
        loss_sum, pixels, psnr_sum, images = sums.tolist()
        if images == 0:
            raise TrainingStopped('no readable validation image in %s at iteration %d; %s'
                                  % (self.val_set.describe(), self.iteration, self.last_good_state()))
        valid = [loss_sum / pixels] + scores_of(conf) + [psnr_sum / images]
        self.write_row(valid=valid)
        if self.rt.is_main and viz:
            self.save_viz(viz[:self.cfg['viz_images']])
        self.validated_at = self.iteration
        if math.isfinite(valid[0]) and valid[0] < self.best_loss:  # a broken model is never the best
            self.best_loss = valid[0]
            if self.rt.is_main:  # before the checkpoint: a kill in between re-validates on resume
                atomic_torch_save(self.checkpoint_state(), os.path.join(self.run_dir, MODEL_BEST))
        self.save_checkpoint()
        return valid

    def viz_rows(self, rgb, net_input, target, rgb_pred):
        """[original | colour of the target bins | grayscale input | colour of the prediction]."""
        if self.encoder.binning == 'one-hot':
            target_probs = torch.cat([F.one_hot(target[:, i], self.encoder.num_bins).permute(0, 3, 1, 2)
                                      for i in range(2)], 1).float()
        else:
            target_probs = target.float()
        rgb_target = self.encoder.to_rgb(net_input, target_probs, self.cfg['decode'], self.cfg['temperature'])
        gray = (net_input[:, 0].float() + self.encoder.mean_l).clamp(0, 1)
        rows = []
        for i in range(len(rgb)):
            rows.append([rgb[i].permute(1, 2, 0).numpy(), utils.to_uint8(rgb_target[i]),
                         utils.to_uint8(gray[i].unsqueeze(0).expand(3, -1, -1)),
                         utils.to_uint8(rgb_pred[i])])
        return rows

    def viz_path(self, iteration):
        return os.path.join(self.run_dir, 'visualization_viz', 'iter%012d.png' % iteration)

    def save_viz(self, rows):
        """visualization_viz/iter%012d.png, also as TensorBoard's image 'valid/visualization'."""
        os.makedirs(os.path.dirname(self.viz_path(0)), exist_ok=True)
        tile = utils.tile_images(rows)
        Image.fromarray(tile).save(self.viz_path(self.iteration))
        self.tensorboard.add_image('valid/visualization', tile, self.iteration, dataformats='HWC')

    # --- the loop -------------------------------------------------------------

    def validate_or_checkpoint(self, final=False):
        """Validation (which checkpoints) when due, else a checkpoint every save_interval iterations."""
        if (final or self.iteration % self.interval_validate == 0) and self.validated_at != self.iteration:
            self.validate()
        elif self.cfg['save_interval'] and self.iteration % self.cfg['save_interval'] == 0 \
                and self.saved_at != self.iteration:
            self.save_checkpoint()

    def note_timing(self, data_time, step_time, images):
        """Add one step's times; warn once when the data wait exceeds its share over the last steps."""
        self.timing_window.append((data_time, step_time))
        self.data_time_total += data_time
        self.step_time_total += step_time
        self.images_trained += images
        if self.data_wait_warned or len(self.timing_window) < self.timing_window.maxlen:
            return
        share = data_wait_share(self.timing_window)
        if share > self.cfg['data_wait_warn_share']:
            self.data_wait_warned = True
            log.warning('waiting for data took %.0f %% of the last %d steps (more than %.0f %%): the %s is '
                        'starved; more DataLoader workers (workers, -j; now %d), a larger prefetch_factor '
                        '(now %d) or jpeg_draft=true (now %s) may help', 100 * share, len(self.timing_window),
                        100 * self.cfg['data_wait_warn_share'], 'GPU' if self.rt.cuda else 'CPU',
                        self.workers, self.cfg['prefetch_factor'], self.cfg['jpeg_draft'])

    def log_throughput(self):
        """The end-of-run line: images/s over the steps and their data waits, and the share of the waits."""
        seconds = self.data_time_total + self.step_time_total
        if self.images_trained and seconds > 0:
            log.info('throughput: %d images in %.1f s of steps and data waits: %.2f images/s, %.1f %% of it '
                     'waiting for data', self.images_trained, seconds, self.images_trained / seconds,
                     100 * self.data_time_total / seconds)

    def progress_bar(self, max_iter):
        """tqdm on rank 0; refreshed at most every PROGRESS_INTERVAL_NOT_TTY s when stderr is a file."""
        if not self.rt.is_main:
            return None
        from tqdm import tqdm
        tty = sys.stderr.isatty()
        return tqdm(total=max_iter, initial=self.iteration, desc='train', ncols=110,
                    mininterval=0.1 if tty else PROGRESS_INTERVAL_NOT_TTY,
                    disable=not tty and os.environ.get('CI') == 'true')

    def train(self):
        max_iter = self.cfg['max_iteration']
        if self.rt.is_main:
            self.open_tensorboard()
        bar = self.progress_bar(max_iter)
        try:
            while self.iteration < max_iter:
                self.train_sampler.set_position(self.epoch, self.sample_in_epoch)
                waiting_since = time.perf_counter()
                for batch in self.train_loader:
                    data_time = time.perf_counter() - waiting_since
                    self.validate_or_checkpoint()
                    self.sample_in_epoch += self.global_batch
                    self.note_skipped(batch, self.train_set)
                    if not self.rt.all_true(batch['rgb'] is not None):
                        self.unusable_batches += 1
                        if self.unusable_batches > self.batches_per_epoch:
                            raise TrainingStopped('a whole epoch of batches without a readable image on some '
                                                  'process: too few readable images in %s; %s'
                                                  % (self.train_set.describe(), self.last_good_state()))
                        waiting_since = time.perf_counter()
                        continue
                    self.unusable_batches = 0
                    step_start = time.perf_counter()
                    train = self.train_step(batch['rgb'])
                    if self.rt.cuda:  # the step's .item() calls already wait for the GPU; this makes it explicit
                        torch.cuda.synchronize(self.rt.device)
                    step_time = time.perf_counter() - step_start
                    self.note_timing(data_time, step_time, len(batch['rgb']) * self.rt.world_size)
                    if train is not None:
                        self.write_row(train=train, timing=[round(data_time, 6), round(step_time, 6)])
                    self.iteration += 1
                    if bar is not None:
                        if train is not None:
                            bar.set_postfix(loss='%.4f' % train[0], data='%.3fs' % data_time,
                                            step='%.3fs' % step_time, refresh=False)
                        bar.update(1)
                    if self.iteration >= max_iter:
                        break
                    waiting_since = time.perf_counter()
                else:
                    self.epoch, self.sample_in_epoch = self.epoch + 1, 0
            self.validate_or_checkpoint(final=True)
        finally:
            if bar is not None:
                bar.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        if self.rt.is_main:
            self.write_skip_count()
        self.log_throughput()


def make_optimizer(model, cfg):
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg['optim'] == 'Adam':
        return torch.optim.Adam(params, lr=cfg['lr'], betas=(cfg['momentum'], 0.999),
                                weight_decay=cfg['weight_decay'])
    if cfg['optim'] == 'SGD':
        return torch.optim.SGD(params, lr=cfg['lr'], momentum=cfg['momentum'],
                               weight_decay=cfg['weight_decay'])
    raise ValueError('unknown optim %r (SGD or Adam)' % cfg['optim'])


def model_kwargs(cfg, encoder):
    return {'n_class': encoder.num_outputs, 'padding': cfg['padding'], 'fc_channels': cfg['fc_channels']}


def read_skipped(path):
    """skipped_files.txt -> {path: reason} (empty when absent)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return dict(line.rstrip('\n').split('\t', 1) for line in f if '\t' in line)


def data_wait_share(timings):
    """Share of the time spent waiting for data, for ``(data_seconds, step_seconds)`` pairs."""
    data = sum(d for d, _ in timings)
    total = data + sum(s for _, s in timings)
    return data / total if total > 0 else 0.0


def tensorboard_hparams(cfg, arch):
    """TensorBoard's hparams summaries (experiment, session start) for this run's config.

    Values TensorBoard cannot show as a number, string or bool (None, tuples) are
    shown as their text; the metrics are the logged validation scalars.
    """
    from torch.utils.tensorboard.summary import hparams
    shown = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
             for key, value in dict(cfg, arch=arch).items()}
    experiment, start, _ = hparams(shown, {'valid/loss': float('nan'), 'valid/psnr': float('nan')})
    return [experiment, start]


def count_rows(path):
    """Data rows of a CSV log (0 when it does not exist)."""
    if not os.path.exists(path):
        return 0
    with open(path, newline='') as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


def truncate_rows(path, keep):
    """Keep the header and the first ``keep`` rows (rows logged after a checkpoint go)."""
    if not os.path.exists(path):
        return
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    if len(rows) - 1 <= keep:
        return
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='') as f:
        csv.writer(f).writerows(rows[:keep + 1])
    os.replace(tmp, path)
    log.info('log.csv: dropped %d rows written after the checkpoint', len(rows) - 1 - keep)


def add_log_columns(path):
    """A log.csv from before the timing columns gets them (blank in its rows), rewritten atomically."""
    if not os.path.exists(path):
        return
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] == LOG_HEADER or rows[0] != LOG_HEADER[:len(rows[0])]:
        return
    missing = len(LOG_HEADER) - len(rows[0])
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='') as f:
        csv.writer(f).writerows([LOG_HEADER] + [row + [''] * missing for row in rows[1:]])
    os.replace(tmp, path)
    log.info('log.csv: added the columns %s', ', '.join(LOG_HEADER[-missing:]))


# --------------------------------------------------------------------------
# assembling a run
# --------------------------------------------------------------------------

def make_run_dir(args, cfg, runtime):
    """(run folder, whether this call made it): rank 0 creates it; a fresh run refuses a folder with a log."""
    if args.out:
        run_dir = args.out
    elif args.resume:
        run_dir = os.path.dirname(os.path.abspath(args.resume))
    else:
        stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
        run_dir = os.path.join(LOGS_DIR, 'MODEL-%s_CFG-%03d_TIME-%s' % (args.exp_name, cfg['config_number'], stamp))

    def create():
        made = not os.path.exists(run_dir)
        if not args.resume and os.path.exists(os.path.join(run_dir, 'log.csv')):
            raise cli.RunFolderTaken('%s already holds a run (log.csv): continue it with --resume %s or '
                                     'choose another -o' % (run_dir, os.path.join(run_dir, CHECKPOINT)))
        os.makedirs(run_dir, exist_ok=True)
        remove_stale_temporaries(run_dir, (CHECKPOINT, MODEL_BEST))
        return run_dir, made
    return runtime.on_main(create)


def setup_logging(run_dir, runtime):
    """The 'colorizer' logger prints to stderr and (rank 0) to train.log, for this run only."""
    close_logging()
    log.setLevel(logging.INFO if runtime.is_main else logging.WARNING)
    fmt = logging.Formatter('%%(asctime)s %%(levelname)s [rank %d] %%(message)s' % runtime.rank)
    handlers = [logging.StreamHandler()]
    if runtime.is_main:
        handlers.append(logging.FileHandler(os.path.join(run_dir, 'train.log')))
    for handler in handlers:
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.propagate = False


def close_logging():
    """Back to plain propagation to the root logger (an in-process caller's logging is left as it was)."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.setLevel(logging.NOTSET)
    log.propagate = True


def initial_checkpoint(args, cfg):
    """Path of the previous stage's model (-m, else the config's init_from), or None."""
    if args.model_path:
        return args.model_path
    if cfg['init_from'] is not None:
        return newest_run_file(cfg['init_from'])
    return None


def make_datasets(cfg, run_dir):
    """(train, val) datasets, checked to hold a readable image (rank 0 only: it may write lists)."""
    train_set, val_set = data_loader.make_datasets(cfg['dataset_path'], cfg, run_dir,
                                                   cfg['binning'], cfg['numbins'])
    try:
        train_set.check_readable()
        val_set.check_readable()
    except ValueError as err:  # check_readable's only error: not one readable image
        raise cli.UserError(str(err)) from None
    return train_set, val_set


def fit_encoder_state(train_set, cfg, init_ckpt):
    """The colour encoder's state (rank 0 only), its statistics cached in the run folder.

    Bins and mean lightness come from the initialising checkpoint (so the stages
    share them), else from a reused config's run, else they are fitted on the
    training set; the low-pass and class rebalancing are this run's config.
    """
    inherited = None
    if init_ckpt is not None:
        inherited = data_loader.ColorEncoder.from_state(init_ckpt['encoder'])
    elif cfg['color_stats_from'] not in (None, cfg['config_number']):
        for name, target in (('mean_l.npy', train_set.mean_l_path), ('gmm.npz', train_set.gmm_path)):
            if (name != 'gmm.npz' or cfg['binning'] == 'soft') and not os.path.exists(target):
                shutil.copyfile(newest_run_file(cfg['color_stats_from'], name), target)
    encoder = train_set.build_encoder(cfg['stats_num_images'], cfg['stats_pixels_per_image'], cfg['seed'],
                                      cfg['rebalance_lambda'], cfg['rebalance_sigma'], inherited)
    return encoder.state()


def file_sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def imagenet_vgg16_file(choice):
    """(torchvision weights enum, the path torch.hub caches its file at) for 'imagenet' / 'imagenet_bn'."""
    import torchvision
    weights = getattr(torchvision.models, IMAGENET_VGG16[choice]).IMAGENET1K_V1
    name = os.path.basename(urllib.parse.urlparse(weights.url).path)
    return weights, os.path.join(torch.hub.get_dir(), 'checkpoints', name)


def fetch_vgg16(choice):
    """Where a fresh run's VGG16 weights are, as a record for config.yaml; None to start from random weights.

    ``choice``: 'imagenet' / 'imagenet_bn' (torchvision's IMAGENET1K_V1 weights,
    downloaded once into the torch hub cache, ``$TORCH_HOME/hub/checkpoints``,
    and read from there without network afterwards), 'none' / None, or a local
    file.  Called before the run folder exists: a file that is missing and
    cannot be downloaded stops the run with one line.
    """
    if choice is None or str(choice).lower() == 'none':
        return None
    if choice in IMAGENET_VGG16:
        weights, path = imagenet_vgg16_file(choice)
        if not os.path.exists(path):
            try:  # as torch.hub does it: a temporary file, hash-checked, then renamed to `path`
                os.makedirs(os.path.dirname(path), exist_ok=True)
                torch.hub.download_url_to_file(weights.url, path, torch.hub.HASH_REGEX.search(path).group(1),
                                               progress=sys.stderr.isatty())
            except (urllib.error.URLError, OSError) as e:
                raise cli.MissingFile('--vgg16 %s needs torchvision\'s %s, which is not in %s and cannot be '
                                 'downloaded (%s): put the file from %s there (the folder is $TORCH_HOME/hub/'
                                 'checkpoints), or train from random weights with --vgg16 none'
                                 % (choice, os.path.basename(path), os.path.dirname(path),
                                    getattr(e, 'reason', e), weights.url))
    else:
        path = choice
        if not os.path.isfile(path):
            raise cli.MissingFile('--vgg16 %s does not exist (give a torchvision vgg16 / vgg16_bn state '
                             'dict, or imagenet, imagenet_bn or none)' % path)
    return {'source': str(choice), 'file': os.path.abspath(path), 'sha256_prefix': file_sha256(path)[:12]}


def vgg16_state_dict(record, cfg):
    """The state dict of a :func:`fetch_vgg16` record (torchvision's weights API for the ImageNet ones)."""
    if record['source'] in IMAGENET_VGG16:
        return imagenet_vgg16_file(record['source'])[0].get_state_dict(progress=False)  # the cached file
    return models.load_vgg16(record['file'], require_fc=vgg16_needs_fc(cfg))


def build_network(arch, cfg, encoder, init_ckpt, init_path, vgg16_record=None):
    model = models.build_model(arch, **model_kwargs(cfg, encoder))
    if init_ckpt is not None:
        previous = model_from_checkpoint(init_ckpt)
        if init_ckpt['arch'] == arch:
            model.load_state_dict(previous.state_dict())
        else:
            getattr(model, STAGE_COPIES[(init_ckpt['arch'], arch)])(previous)
        log.info('initialised %s from %s (%s)', arch, init_path, init_ckpt['arch'])
    elif vgg16_record is not None:
        model.copy_params_from_vgg16(vgg16_state_dict(vgg16_record, cfg))
        log.info('initialised the VGG16 trunk from %s (%s, sha256 %s...)', vgg16_record['file'],
                 vgg16_record['source'], vgg16_record['sha256_prefix'])
    return model


def vgg16_needs_fc(cfg):
    """fc6 / fc7 come from VGG16's classifier only at its width."""
    return cfg['fc_channels'] == models.VGG_FC_CHANNELS


def first_image(folder):
    """Path of some image file below ``folder`` (None if there is none); stops at the first."""
    for dirpath, _, filenames in os.walk(folder, followlinks=True):
        for name in filenames:
            if name.lower().endswith(data_loader.IMAGE_EXTENSIONS):
                return os.path.join(dirpath, name)
    return None


def check_dataset(path, cfg):
    """-d (or the resumed run's dataset): a folder with images, or an ImageNet root with its lists."""
    if path is None:
        return
    if not os.path.isdir(path):
        raise cli.MissingFile('dataset folder %s %s' % (path, 'is not a folder' if os.path.exists(path)
                                                        else 'does not exist'))
    if data_loader.is_imagenet_root(path):
        for set_name, split in ((cfg['train_set'], 'train'), (cfg['val_set'], 'val')):
            name = data_loader.SET_LISTS[set_name].format(split=split)
            if set_name != 'full' and not any(os.path.isfile(os.path.join(folder, name))
                                              for folder in (path, data_loader.LISTS_DIR)):
                raise cli.MissingFile('list %s of set %r found neither in %s nor in %s'
                                      % (name, set_name, path, data_loader.LISTS_DIR))
    elif first_image(path) is None:
        raise cli.UserError('no image files (%s) in dataset folder %s'
                            % (', '.join(data_loader.IMAGE_EXTENSIONS), path))


def check_machine(args, cfg):
    """-g and sync_bn against the devices this machine has."""
    cuda = torch.cuda.is_available()
    if args.gpu is not None and not (cuda and 0 <= args.gpu < torch.cuda.device_count()):
        raise cli.UserError('-g %d: %s' % (args.gpu, 'this machine has %d CUDA devices' % torch.cuda.device_count()
                                           if cuda else 'CUDA is not available (leave out -g to train on the CPU)'))
    if cfg['sync_bn'] and not cuda:
        raise config_module.ConfigError('sync_bn: true - torch.nn.SyncBatchNorm runs on CUDA only and this '
                                        'machine has none; set sync_bn=false (or bn_dropout_eval=true)')


def check_run_folder(args):
    """-o must be a folder (or not exist yet); a fresh run never writes into a folder that holds a run."""
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise cli.UserError('-o %s is a file, not a folder' % args.out)
    if args.out and not args.resume and os.path.exists(os.path.join(args.out, 'log.csv')):
        raise cli.RunFolderTaken('%s already holds a run (log.csv): continue it with --resume %s or '
                                 'choose another -o' % (args.out, os.path.join(args.out, CHECKPOINT)))


def main(arch, argv=None):
    """Entry point of train_color_fcn{32,16,8}s.py; returns the finished :class:`Trainer`.

    Every setting and file is checked before anything is written (``cli.USER_ERRORS``
    name what to fix); the train scripts run it through ``cli.run_cli``.
    """
    args = parse_args(arch, argv)
    resume_ckpt = load_checkpoint(args.resume) if args.resume else None
    cfg = resolve_config(args, resume_ckpt)
    init_path = None if resume_ckpt is not None else initial_checkpoint(args, cfg)
    init_ckpt = load_checkpoint(init_path) if init_path else None
    for ckpt, path in ((resume_ckpt, args.resume), (init_ckpt, init_path)):
        if ckpt is not None:
            check_compatible(ckpt, path, arch, cfg, resuming=ckpt is resume_ckpt)
    vgg16_record = resume_ckpt.get('vgg16_weights') if resume_ckpt is not None else \
        None if init_ckpt is not None else fetch_vgg16(cfg['vgg16'])
    if vgg16_record is not None and resume_ckpt is None:
        models.load_vgg16(vgg16_record['file'], require_fc=vgg16_needs_fc(cfg))  # memory-mapped: a cheap check
    check_dataset(cfg['dataset_path'], cfg)
    check_machine(args, cfg)
    check_run_folder(args)
    runtime = Runtime(args.gpu, cfg)
    try:
        return run(arch, args, cfg, runtime, resume_ckpt, init_ckpt, init_path, vgg16_record)
    finally:
        close_logging()
        runtime.close()


def run(arch, args, cfg, runtime, resume_ckpt, init_ckpt, init_path, vgg16_record=None):
    """Everything after the checks: run folder, data, colour encoder, network, then the loop.

    ``vgg16_record`` (:func:`fetch_vgg16`, made before the run folder exists)
    names the VGG16 weights a fresh run starts from; it goes to config.yaml and
    the checkpoints.
    """
    seed_everything(cfg['seed'] + runtime.rank)  # ranks draw different dropout masks
    run_dir, made = make_run_dir(args, cfg, runtime)
    try:
        trainer = set_up(arch, args, cfg, runtime, resume_ckpt, init_ckpt, init_path, run_dir, vgg16_record)
    except BaseException:  # no half-made run folder: one this run made goes with it (nothing else's is in it)
        if made and runtime.is_main:
            close_logging()
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    trainer.train()
    log.info('done: %s (best validation loss %.4f)', run_dir, trainer.best_loss)
    return trainer


def set_up(arch, args, cfg, runtime, resume_ckpt, init_ckpt, init_path, run_dir, vgg16_record):
    """Logging, data, colour encoder, config.yaml, network: the Trainer, ready to train."""
    setup_logging(run_dir, runtime)
    train_set, val_set = runtime.on_main(lambda: make_datasets(cfg, run_dir))  # (a failure: one error line)
    log.info('run folder %s on %s (world size %d, batch size %d per process)', run_dir, runtime.device,
             runtime.world_size, cfg['batch_size'])
    encoder_state = resume_ckpt['encoder'] if resume_ckpt is not None else \
        runtime.on_main(lambda: fit_encoder_state(train_set, cfg, init_ckpt))
    encoder = data_loader.ColorEncoder.from_state(encoder_state)
    if runtime.is_main:
        with open(os.path.join(run_dir, 'config.yaml'), 'w') as f:
            yaml.safe_dump(dict(cfg, im_size=list(cfg['im_size']), arch=arch,
                                init_from_path=init_path, resumed_from=args.resume,
                                vgg16_weights=vgg16_record), f, sort_keys=True)

    fresh_vgg16 = vgg16_record if resume_ckpt is None else None
    model = runtime.wrap(build_network(arch, cfg, encoder, init_ckpt, init_path, fresh_vgg16), cfg['sync_bn'])
    if cfg['compile']:
        model = torch.compile(model)
    workers = cfg['workers'] if cfg['workers'] is not None else default_workers()
    trainer = Trainer(arch, cfg, run_dir, runtime, model, encoder, train_set, val_set, workers, vgg16_record)
    if resume_ckpt is not None:
        trainer.resume(resume_ckpt)
    return trainer
