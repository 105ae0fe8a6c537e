"""The training loop, its logging and its checkpoints (one place for device, AMP and DDP).

``main(arch)`` is what ``train_color_fcn{32,16,8}s.py`` call.  A run folder holds:
``config.yaml``, ``log.csv`` (the seed's columns, then ``valid/psnr``),
``checkpoint.pth.tar`` (everything to resume), ``model_best.pth.tar`` (everything
to colorize), ``visualization_viz/iter%012d.png``, ``gmm.npz`` / ``mean_l.npy``
(colour statistics), ``skipped_files.txt`` (unreadable inputs) and ``train.log``.

Under ``torchrun`` every process runs this same code; rank 0 alone writes.
"""
import argparse
import csv
import datetime
import glob
import logging
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from PIL import Image

import config as config_module
import data_loader
import models
import utils

log = logging.getLogger('colorizer')

LOGS_DIR = 'logs'
LOG_HEADER = ['epoch', 'iteration', 'train/loss', 'train/acc', 'train/acc_cls', 'train/mean_iu',
              'train/fwavacc', 'valid/loss', 'valid/acc', 'valid/acc_cls', 'valid/mean_iu',
              'valid/fwavacc', 'elapsed_time', 'valid/psnr']
CHECKPOINT = 'checkpoint.pth.tar'
MODEL_BEST = 'model_best.pth.tar'
STAGE_COPIES = {('fcn32s', 'fcn16s'): 'copy_params_from_fcn32s',
                ('fcn16s', 'fcn8s'): 'copy_params_from_fcn16s'}


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def parse_args(arch, argv=None):
    p = argparse.ArgumentParser(description='Train %s to colorize (see README.md).' % arch.upper())
    p.add_argument('-e', '--exp_name', default=arch, help='experiment name, used in the run folder name')
    p.add_argument('-g', '--gpu', type=int, default=None,
                   help='CUDA device index (default: the first GPU if any, else the CPU; '
                        'under torchrun: LOCAL_RANK)')
    p.add_argument('-c', '--config', type=int, required=True, help='configuration number in config.py')
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
                   help='continue a run exactly where its checkpoint.pth.tar stopped')
    p.add_argument('-o', '--out', default=None,
                   help='run folder (default logs/MODEL-<exp>_CFG-<NNN>_TIME-<stamp>)')
    p.add_argument('--max-iter', type=int, default=None, help='override max_iteration (smoke runs)')
    p.add_argument('-j', '--workers', type=int, default=None, help='DataLoader workers per process')
    p.add_argument('--vgg16', default=None, help='local torchvision vgg16(_bn) state dict to start from')
    p.add_argument('--save-interval', type=int, default=None,
                   help='also write checkpoint.pth.tar every N iterations')
    return p.parse_args(argv)


def resolve_config(args):
    """Config number + command-line overrides -> the run's config dict."""
    cfg = config_module.get_config(args.config)
    cfg['config_number'] = args.config
    cfg['binning'] = args.binning or cfg['binning'] or 'soft'
    cfg['numbins'] = args.numbins or cfg['numbins'] or 128
    for key, value in (('max_iteration', args.max_iter), ('workers', args.workers),
                       ('vgg16', args.vgg16), ('save_interval', args.save_interval)):
        if value is not None:
            cfg[key] = value
    cfg['im_size'] = tuple(cfg['im_size'])
    return cfg


def newest_best_model(config_number, logs_dir=LOGS_DIR):
    """The newest ``model_best.pth.tar`` of a run of ``config_number`` under ``logs/``."""
    pattern = os.path.join(logs_dir, '*_CFG-%03d_*' % config_number, MODEL_BEST)
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not found:
        raise FileNotFoundError('no %s of config %d under %s/: train that config first or pass -m'
                                % (MODEL_BEST, config_number, logs_dir))
    return found[-1]


def newest_run_file(config_number, name, logs_dir=LOGS_DIR):
    pattern = os.path.join(logs_dir, '*_CFG-%03d_*' % config_number, name)
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not found:
        raise FileNotFoundError('no %s from a run of config %d under %s/' % (name, config_number, logs_dir))
    return found[-1]


# --------------------------------------------------------------------------
# devices and processes
# --------------------------------------------------------------------------

class Runtime:
    """Device, precision and process group of this process, decided once."""

    def __init__(self, gpu, cfg):
        self.world_size = int(os.environ.get('WORLD_SIZE', 1))
        self.rank = int(os.environ.get('RANK', 0))
        self.local_rank = int(os.environ.get('LOCAL_RANK', 0))
        self.distributed = self.world_size > 1
        if torch.cuda.is_available():
            index = self.local_rank if self.distributed else (gpu or 0)
            self.device = torch.device('cuda', index)
            torch.cuda.set_device(self.device)
        elif gpu is not None:
            raise RuntimeError('-g %d given but CUDA is not available' % gpu)
        else:
            self.device = torch.device('cpu')
        if self.distributed and not dist.is_initialized():
            dist.init_process_group('nccl' if self.cuda else 'gloo')
        use_amp = self.cuda and cfg['amp']
        self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) \
            if use_amp else None
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.amp_dtype == torch.float16)
        self.channels_last = self.cuda and cfg['channels_last']
        self.pin_memory = self.cuda and cfg['pin_memory']
        if self.cuda:
            torch.backends.cudnn.benchmark = cfg['cudnn_benchmark']

    @property
    def cuda(self):
        return self.device.type == 'cuda'

    @property
    def is_main(self):
        return self.rank == 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    @property
    def target_dtype(self):
        """Soft targets are stored in the autocast dtype (half the memory of float32)."""
        return self.amp_dtype or torch.float32

    def barrier(self):
        if self.distributed:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's Python object, on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, tensor):
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather(self, obj):
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def default_workers(runtime):
    per_process = (os.cpu_count() or 1) // max(1, int(os.environ.get('LOCAL_WORLD_SIZE', 1)))
    return max(0, min(8, per_process - 1))


class ResumableSampler(torch.utils.data.Sampler):
    """Shuffled (or ordered) indices of one process, re-seeded each epoch, resumable mid-epoch.

    Epoch ``e`` is a permutation drawn from ``seed + e``; under DDP each rank
    takes every ``world_size``-th index of it (padded so ranks get equal
    shares, as DistributedSampler).  ``set_position(e, b)`` starts epoch ``e``
    at its ``b``-th batch.
    """

    def __init__(self, n, batch_size, shuffle, seed, rank=0, world_size=1, pad=True):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch, self.start_batch = 0, 0

    def epoch_indices(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad:
            total = math.ceil(self.n / self.world_size) * self.world_size
            order += order[:total - len(order)]
        return order[self.rank::self.world_size]

    def __len__(self):
        return len(self.epoch_indices()) - self.start_batch * self.batch_size

    def __iter__(self):
        return iter(self.epoch_indices()[self.start_batch * self.batch_size:])

    def set_position(self, epoch, start_batch=0):
        self.epoch, self.start_batch = epoch, start_batch

    def batches_per_epoch(self):
        return math.ceil(len(self.epoch_indices()) / self.batch_size)


def make_loader(dataset, sampler, batch_size, cfg, runtime, workers):
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        collate_fn=data_loader.collate_skip_unreadable, pin_memory=runtime.pin_memory,
        prefetch_factor=cfg['prefetch_factor'] if workers else None,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(cfg['seed']))  # leaves the global RNG untouched


# --------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------

def atomic_torch_save(obj, path):
    """torch.save to a temporary file in the same folder, fsync, rename: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, '.%s.tmp%d' % (os.path.basename(path), os.getpid()))
    with open(tmp, 'wb') as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def rng_state():
    """torch / CUDA / numpy / python RNG states as plain tensors and builtins."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        'numpy': {'keys': torch.from_numpy(np_state[1].astype(np.int64)), 'pos': int(np_state[2]),
                  'has_gauss': int(np_state[3]), 'cached_gaussian': float(np_state[4])},
        'python': {'version': py_state[0], 'state': list(py_state[1]), 'gauss': py_state[2]},
    }


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    n = state['numpy']
    np.random.set_state(('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(p['state']), p['gauss']))


def load_checkpoint(path):
    """A checkpoint of this project, read with ``weights_only=True`` (no code runs)."""
    if not os.path.isfile(path):
        raise FileNotFoundError('checkpoint %s does not exist' % path)
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(ckpt, dict) or 'model_state_dict' not in ckpt or 'arch' not in ckpt:
        raise ValueError('%s is not a colorizer-fcn checkpoint' % path)
    return ckpt


def model_from_checkpoint(ckpt):
    """Rebuild the network of a checkpoint (models.py only; no trainer state needed)."""
    model = models.build_model(ckpt['arch'], **ckpt['model_kwargs'])
    model.load_state_dict(ckpt['model_state_dict'])
    return model


def check_compatible(ckpt, cfg, path):
    """Refuse a checkpoint trained for other colour bins than this run's."""
    binning, k = ckpt['encoder']['bins']['binning'], ckpt['num_bins']
    if binning != cfg['binning'] or k != cfg['numbins']:
        raise ValueError('%s was trained with %s binning and K=%d, this run asks for %s and K=%d '
                         '(set -b/-k to match)' % (path, binning, k, cfg['binning'], cfg['numbins']))


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------

def soft_target_loss(scores, target, class_weights=None):
    """Per-pixel KL(target || softmax(scores)) ``[B, H, W]`` for ``[B, K, H, W]`` inputs.

    Cross-entropy with probability targets (fused in torch) minus the target's
    entropy, so no second K-channel copy is kept for backward.  With
    ``class_weights [K]`` each pixel is weighted by the weight of its target bin.
    """
    target_f = target.float() if target.dtype != scores.dtype else target
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

class Trainer:
    """One readable loop: validate / checkpoint, then a training step, every iteration."""

    def __init__(self, arch, cfg, run_dir, runtime, model, encoder, train_set, val_set, workers):
        self.arch, self.cfg, self.run_dir, self.rt = arch, cfg, run_dir, runtime
        self.model, self.encoder = model, encoder
        self.train_set, self.val_set = train_set, val_set
        self.train_sampler = ResumableSampler(len(train_set), cfg['batch_size'], True, cfg['seed'],
                                              runtime.rank, runtime.world_size)
        self.val_sampler = ResumableSampler(len(val_set), cfg['val_batch_size'], False, cfg['seed'],
                                            runtime.rank, runtime.world_size, pad=False)
        self.train_loader = make_loader(train_set, self.train_sampler, cfg['batch_size'], cfg, runtime, workers)
        self.val_loader = make_loader(val_set, self.val_sampler, cfg['val_batch_size'], cfg, runtime, workers)
        self.optim = make_optimizer(model, cfg)
        self.iteration, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.validated_at = None
        self.best_loss = float('inf')
        self.skipped = {}          # path -> reason, every unreadable file seen so far
        self.nonfinite_steps = 0
        self.start_time, self.elapsed_before = time.time(), 0.0
        self.interval_validate = cfg['interval_validate'] or self.train_sampler.batches_per_epoch()
        self.log_path = os.path.join(run_dir, 'log.csv')

    # --- state ------------------------------------------------------------

    @property
    def bare_model(self):
        return self.model.module if hasattr(self.model, 'module') else self.model

    def checkpoint_state(self, with_training_state=True):
        model = self.bare_model
        model = getattr(model, '_orig_mod', model)  # torch.compile wrapper
        state = {
            'arch': self.arch, 'model_kwargs': model_kwargs(self.cfg, self.encoder),
            'model_state_dict': model.state_dict(),
            'encoder': self.encoder.state(), 'num_bins': self.encoder.num_bins,
            'binning': self.encoder.binning, 'im_size': tuple(self.cfg['im_size']),
            'config': self.cfg, 'iteration': self.iteration, 'epoch': self.epoch,
            'best_loss': self.best_loss,
        }
        if with_training_state:
            state.update({
                'optim_state_dict': self.optim.state_dict(),
                'scaler_state_dict': self.rt.scaler.state_dict(),
                'batch_in_epoch': self.batch_in_epoch, 'validated_at': self.validated_at,
                'log_rows': count_rows(self.log_path), 'rng': rng_state(),
                'elapsed_time': self.elapsed(), 'nonfinite_steps': self.nonfinite_steps,
            })
        return state

    def save_checkpoint(self):
        if self.rt.is_main:
            atomic_torch_save(self.checkpoint_state(), os.path.join(self.run_dir, CHECKPOINT))

    def resume(self, ckpt):
        """Continue exactly: model, optimizer, RNGs, sampler position, log rows."""
        self.bare_model.load_state_dict(ckpt['model_state_dict'])
        self.optim.load_state_dict(ckpt['optim_state_dict'])
        self.rt.scaler.load_state_dict(ckpt['scaler_state_dict'])
        self.iteration, self.epoch = ckpt['iteration'], ckpt['epoch']
        self.batch_in_epoch, self.validated_at = ckpt['batch_in_epoch'], ckpt['validated_at']
        self.best_loss, self.elapsed_before = ckpt['best_loss'], ckpt['elapsed_time']
        self.nonfinite_steps = ckpt['nonfinite_steps']
        set_rng_state(ckpt['rng'])
        if self.rt.is_main:
            truncate_rows(self.log_path, ckpt['log_rows'])
        log.info('resumed at iteration %d (epoch %d, batch %d)', self.iteration, self.epoch,
                 self.batch_in_epoch)

    def elapsed(self):
        return self.elapsed_before + time.time() - self.start_time

    # --- logging ------------------------------------------------------------

    def write_row(self, train=None, valid=None):
        if not self.rt.is_main:
            return
        blank = [''] * 5
        row = [self.epoch, self.iteration] + (train or blank) + (valid[:5] if valid else blank) \
            + ['%.2f' % self.elapsed(), valid[5] if valid else '']
        new_file = not os.path.exists(self.log_path)
        with open(self.log_path, 'a', newline='') as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(LOG_HEADER)
            writer.writerow(row)

    def note_skipped(self, batch):
        """Remember the unreadable files of a batch (see :meth:`record_skipped`)."""
        self.record_skipped({batch['dataset'].path(i): reason for i, reason in batch['skipped']})

    def record_skipped(self, entries):
        """New unreadable files: one warning each; rank 0 appends them to skipped_files.txt."""
        for path, reason in entries.items():
            if path in self.skipped:
                continue
            self.skipped[path] = reason
            log.warning('skipped unreadable image %s (%s)', path, reason)
            if self.rt.is_main:
                with open(os.path.join(self.run_dir, 'skipped_files.txt'), 'a') as f:
                    f.write('%s\t%s\n' % (path, reason))

    # --- one step -----------------------------------------------------------

    def to_device(self, rgb):
        return rgb.to(self.rt.device, non_blocking=self.rt.pin_memory)

    def forward(self, rgb):
        """uint8 batch -> (input, target, scores as float32)."""
        with torch.no_grad():
            net_input, target = self.encoder.encode(self.to_device(rgb), self.rt.target_dtype)
        if self.rt.channels_last:
            net_input = net_input.contiguous(memory_format=torch.channels_last)
        with self.rt.autocast():
            scores = self.model(net_input)
        return net_input, target, scores.float()

    def train_step(self, rgb):
        self.model.train()
        _, target, scores = self.forward(rgb)
        per_pixel = pixel_losses(scores, target, self.encoder)
        loss = reduce_loss(per_pixel, self.cfg['loss_reduction'])
        if not torch.isfinite(loss):
            if self.cfg['nonfinite_loss'] != 'skip':
                raise FloatingPointError('non-finite training loss (%s) at iteration %d; the last '
                                         'good state is %s' % (loss.item(), self.iteration,
                                                               os.path.join(self.run_dir, CHECKPOINT)))
            self.nonfinite_steps += 1
            log.warning('non-finite loss at iteration %d: step skipped (%d so far)',
                        self.iteration, self.nonfinite_steps)
            self.optim.zero_grad(set_to_none=True)
            return None
        self.optim.zero_grad(set_to_none=True)
        self.rt.scaler.scale(loss).backward()
        self.rt.scaler.step(self.optim)
        self.rt.scaler.update()
        metrics = scores_of(confusion(scores.detach(), target, self.encoder))
        return [per_pixel.detach().mean().item()] + metrics

    # --- validation -----------------------------------------------------------

    @torch.no_grad()
    def validate(self):
        """Loss, argmax-bin scores and PSNR over the validation set (reduced over ranks)."""
        self.model.eval()
        n_out = 2 if self.encoder.binning == 'one-hot' else 1
        conf = torch.zeros(n_out, self.encoder.num_bins, self.encoder.num_bins, dtype=torch.long,
                           device=self.rt.device)
        sums = torch.zeros(4, dtype=torch.float64, device=self.rt.device)  # loss, pixels, psnr, images
        viz = []
        for batch in self.val_loader:
            batch['dataset'] = self.val_set
            self.note_skipped(batch)
            if batch['rgb'] is None:
                continue
            net_input, target, scores = self.forward(batch['rgb'])
            per_pixel = pixel_losses(scores, target, self.encoder)
            conf += confusion(scores, target, self.encoder)
            probs = self.encoder.probabilities(scores)
            rgb_pred = self.encoder.to_rgb(net_input, probs, self.cfg['decode'], self.cfg['temperature'])
            truth = batch['rgb'].permute(0, 2, 3, 1).numpy()
            psnrs = [min(utils.psnr(t, utils.to_uint8(p)), 100.0) for t, p in zip(truth, rgb_pred)]
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
            raise RuntimeError('no readable validation image in %s' % self.val_set.describe())
        valid = [loss_sum / pixels] + scores_of(conf) + [psnr_sum / images]
        self.write_row(valid=valid)
        if self.rt.is_main and viz:
            self.save_viz(viz[:self.cfg['viz_images']])
            self.write_skip_count()
        self.validated_at = self.iteration
        is_best = math.isfinite(valid[0]) and valid[0] < self.best_loss
        if is_best:
            self.best_loss = valid[0]
        self.save_checkpoint()
        if is_best and self.rt.is_main:
            atomic_torch_save(self.checkpoint_state(with_training_state=False),
                              os.path.join(self.run_dir, MODEL_BEST))
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

    def save_viz(self, rows):
        folder = os.path.join(self.run_dir, 'visualization_viz')
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(utils.tile_images(rows)).save(os.path.join(folder, 'iter%012d.png' % self.iteration))

    def write_skip_count(self):
        with open(os.path.join(self.run_dir, 'skipped_count.txt'), 'w') as f:
            f.write('%d\n' % len(self.skipped))

    # --- the loop -------------------------------------------------------------

    def train(self):
        max_iter = self.cfg['max_iteration']
        save_interval = self.cfg['save_interval']
        bar = None
        if self.rt.is_main:
            from tqdm import tqdm
            bar = tqdm(total=max_iter, initial=self.iteration, desc='train', ncols=90,
                       disable=not sys.stderr.isatty() and os.environ.get('CI') == 'true')
        while self.iteration < max_iter:
            self.train_sampler.set_position(self.epoch, self.batch_in_epoch)
            for batch in self.train_loader:
                if self.iteration % self.interval_validate == 0 and self.validated_at != self.iteration:
                    self.validate()
                elif save_interval and self.iteration % save_interval == 0 and self.batch_in_epoch:
                    self.save_checkpoint()
                self.batch_in_epoch += 1
                batch['dataset'] = self.train_set
                self.note_skipped(batch)
                if batch['rgb'] is None:
                    continue
                train = self.train_step(batch['rgb'])
                if train is not None:
                    self.write_row(train=train)
                self.iteration += 1
                if bar is not None:
                    bar.update(1)
                    if train is not None:
                        bar.set_postfix(loss='%.4f' % train[0])
                if self.iteration >= max_iter:
                    break
            else:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if self.validated_at != self.iteration:
            self.validate()
        if bar is not None:
            bar.close()
        if self.rt.is_main:
            self.write_skip_count()


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


# --------------------------------------------------------------------------
# assembling a run
# --------------------------------------------------------------------------

def make_run_dir(args, cfg, runtime):
    if args.resume and not args.out:
        return os.path.dirname(os.path.abspath(args.resume))
    if args.out:
        run_dir = args.out
    else:
        stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
        run_dir = os.path.join(LOGS_DIR, 'MODEL-%s_CFG-%03d_TIME-%s' % (args.exp_name, cfg['config_number'], stamp))
    return runtime.broadcast(run_dir)


def setup_logging(run_dir, runtime):
    log.setLevel(logging.INFO if runtime.is_main else logging.WARNING)
    log.handlers.clear()
    fmt = logging.Formatter('%%(asctime)s %%(levelname)s [rank %d] %%(message)s' % runtime.rank)
    stream = logging.StreamHandler()
    stream.setFormatter(fmt)
    log.addHandler(stream)
    if runtime.is_main:
        to_file = logging.FileHandler(os.path.join(run_dir, 'train.log'))
        to_file.setFormatter(fmt)
        log.addHandler(to_file)
    log.propagate = False


def initial_checkpoint(args, cfg):
    """Path of the previous stage's model (-m, else the config's init_from), or None."""
    if args.model_path:
        return args.model_path
    if cfg['init_from'] is not None:
        return newest_best_model(cfg['init_from'])
    return None


def build_encoder(train_set, cfg, init_ckpt, runtime):
    """The colour encoder: from the initialising checkpoint, a reused config's stats, or fitted.

    Rank 0 fits and caches first; the other ranks then load the same files.
    """
    if init_ckpt is not None:
        return data_loader.ColorEncoder.from_state(init_ckpt['encoder'])
    if cfg['color_stats_from'] not in (None, cfg['config_number']):
        for name, target in (('mean_l.npy', train_set.mean_l_path), ('gmm.npz', train_set.gmm_path)):
            if name == 'gmm.npz' and cfg['binning'] != 'soft':
                continue
            if runtime.is_main and not os.path.exists(target):
                shutil.copyfile(newest_run_file(cfg['color_stats_from'], name), target)
    encoder = None
    for turn in ('main', 'others'):
        if (turn == 'main') == runtime.is_main:
            encoder = train_set.build_encoder(cfg['stats_num_images'], cfg['stats_pixels_per_image'],
                                              cfg['seed'], cfg['rebalance_lambda'], cfg['rebalance_sigma'])
        runtime.barrier()
    return encoder


def build_network(arch, cfg, encoder, init_ckpt, init_path):
    model = models.build_model(arch, **model_kwargs(cfg, encoder))
    if init_ckpt is not None:
        previous = model_from_checkpoint(init_ckpt)
        if init_ckpt['arch'] == arch:
            model.load_state_dict(previous.state_dict())
        elif (init_ckpt['arch'], arch) in STAGE_COPIES:
            getattr(model, STAGE_COPIES[(init_ckpt['arch'], arch)])(previous)
        else:
            raise ValueError('cannot initialise %s from a %s checkpoint (%s)' % (arch, init_ckpt['arch'], init_path))
        log.info('initialised %s from %s (%s)', arch, init_path, init_ckpt['arch'])
    elif cfg['vgg16']:
        model.copy_params_from_vgg16(torch.load(cfg['vgg16'], map_location='cpu', weights_only=True))
        log.info('initialised the VGG16 trunk from %s', cfg['vgg16'])
    return model


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def main(arch, argv=None):
    """Entry point of train_color_fcn{32,16,8}s.py."""
    args = parse_args(arch, argv)
    resume_ckpt = load_checkpoint(args.resume) if args.resume else None
    if resume_ckpt is not None:
        cfg = dict(resume_ckpt['config'])
        if resume_ckpt['arch'] != arch:
            raise ValueError('%s is a %s checkpoint, not %s' % (args.resume, resume_ckpt['arch'], arch))
        for key, value in (('max_iteration', args.max_iter), ('workers', args.workers),
                           ('save_interval', args.save_interval)):
            if value is not None:
                cfg[key] = value
    else:
        cfg = resolve_config(args)
    runtime = Runtime(args.gpu, cfg)
    seed_everything(cfg['seed'])
    run_dir = make_run_dir(args, cfg, runtime)
    if runtime.is_main:
        os.makedirs(run_dir, exist_ok=True)
    runtime.barrier()
    setup_logging(run_dir, runtime)
    log.info('run folder %s on %s (world size %d)', run_dir, runtime.device, runtime.world_size)

    datasets = None
    for turn in ('main', 'others'):  # rank 0 writes split / list files first
        if (turn == 'main') == runtime.is_main:
            datasets = data_loader.make_datasets(args.dataset_path or cfg.get('dataset_path'), cfg, run_dir,
                                                 cfg['binning'], cfg['numbins'])
        runtime.barrier()
    train_set, val_set = datasets
    cfg['dataset_path'] = args.dataset_path or cfg.get('dataset_path')
    train_set.check_readable()
    val_set.check_readable()

    init_path = None if resume_ckpt is not None else initial_checkpoint(args, cfg)
    init_ckpt = load_checkpoint(init_path) if init_path else None
    if init_ckpt is not None:
        check_compatible(init_ckpt, cfg, init_path)
    if resume_ckpt is not None:
        check_compatible(resume_ckpt, cfg, args.resume)
        encoder = data_loader.ColorEncoder.from_state(resume_ckpt['encoder'])
    else:
        encoder = build_encoder(train_set, cfg, init_ckpt, runtime)
    if runtime.is_main and resume_ckpt is None:
        with open(os.path.join(run_dir, 'config.yaml'), 'w') as f:
            yaml.safe_dump(dict(cfg, im_size=list(cfg['im_size']), arch=arch, init_from_path=init_path),
                           f, sort_keys=True)

    model = build_network(arch, cfg, encoder, init_ckpt, init_path)
    if runtime.distributed and cfg['sync_bn']:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if runtime.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.cuda else None)
    if cfg['compile']:
        model = torch.compile(model)

    workers = cfg['workers'] if cfg['workers'] is not None else default_workers(runtime)
    trainer = Trainer(arch, cfg, run_dir, runtime, model, encoder, train_set, val_set, workers)
    if resume_ckpt is not None:
        trainer.resume(resume_ckpt)
    trainer.train()
    if runtime.is_main:
        log.info('done: %s (best validation loss %.4f)', run_dir, trainer.best_loss)
    if runtime.distributed:
        dist.destroy_process_group()
    return trainer
