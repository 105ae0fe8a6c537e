"""The training loop: ``Trainer`` (steps, validation, logging, checkpoints) and ``main`` of the train scripts.

``main(arch)`` is what ``train_color_fcn{32,16,8}s.py`` call: the command line
(``cli.parse_train_args``, ``cli.resolve_config``), the checks and the set-up of a run
(``run_setup``: run folder, datasets, colour encoder, network), then ``Trainer.train``.
A run folder holds: ``config.yaml``, ``log.csv`` (the seed's columns, then ``valid/psnr``
and the step timing), TensorBoard's ``events.out.tfevents.*`` (the same values, the
learning rate, the pictures, the config), ``checkpoint.pth.tar`` (everything to resume),
``model_best.pth.tar`` (everything to colorize), ``visualization_viz/iter%012d.png``,
``gmm.npz`` / ``mean_l.npy`` (colour statistics), ``skipped_files.txt`` /
``skipped_count.txt`` (unreadable inputs) and ``train.log``.

Under ``torchrun`` every process runs this same code (``runtime.Runtime``, one
place for device, AMP and DDP, reads the environment torchrun sets); rank 0 alone fits the colour statistics, makes the
file lists and writes the run folder, and shares what it made by broadcast.
"""
import collections
import csv
import logging
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import cli
import data_loader
import hints
import losses
import models
import run_setup
from run_setup import CHECKPOINT, MODEL_BEST   # the run folder's two checkpoints
from runtime import (Runtime, ResumableSampler, atomic_torch_save, default_workers, give_back_freed_memory,
                     rng_state, seed_everything, set_rng_state)
import targets
import utils

log = logging.getLogger('colorizer')

LOG_HEADER = ['epoch', 'iteration', 'train/loss', 'train/acc', 'train/acc_cls', 'train/mean_iu',
              'train/fwavacc', 'valid/loss', 'valid/acc', 'valid/acc_cls', 'valid/mean_iu',
              'valid/fwavacc', 'elapsed_time', 'valid/psnr', 'train/data_time', 'train/step_time']
TIMING_COLUMNS = LOG_HEADER[-2:]   # seconds waiting for the batch / of forward + backward + optimizer
SKIPPED_FILES = 'skipped_files.txt'
SKIPPED_COUNT = 'skipped_count.txt'


class TrainingStopped(RuntimeError):
    """A run that was going cannot go on (its inputs became unreadable); the message names the last checkpoint."""


# stops of a run that was going (one error line, exit status 1), each naming the last good checkpoint
STOPS = (FloatingPointError, TrainingStopped)
PROGRESS_INTERVAL_NOT_TTY = 10   # seconds between progress-bar refreshes when stderr is a file


# --------------------------------------------------------------------------
# data loaders and checkpoints (written by runtime.atomic_torch_save, read by models.load_checkpoint)
# --------------------------------------------------------------------------

load_checkpoint = models.load_checkpoint          # the one reader of checkpoints


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
# the trainer
# --------------------------------------------------------------------------

def recompute_bn_statistics(model, batches, count, forward=None):
    """BatchNorm running statistics of ``model`` recomputed over the first ``count`` of ``batches`` (network
    inputs, or what ``forward(batch, i)`` runs the model on): plain means of the batches' means and
    unbiased variances (momentum None), the model in train mode without gradients.  Returns the batches
    seen; the momenta are restored."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    seen = 0
    with torch.no_grad():
        for batch in batches:
            if seen >= count:
                break
            if forward is None:
                model(batch)
            else:
                forward(batch, seen)
            seen += 1
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return seen


def set_train_mode(model, bn_dropout_eval):
    """``model.train()``; with ``bn_dropout_eval`` BatchNorm and Dropout stay in eval mode.

    Then every image's loss and gradient are independent of its batch-mates
    (BatchNorm uses its running statistics, no dropout mask is drawn), so N
    processes of batch B step exactly like one process of batch N*B (hint models
    aside: each rank draws its own training hints).
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
        self.optim = run_setup.make_optimizer(model, cfg)
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
            'arch': self.arch, 'model_kwargs': run_setup.model_kwargs(self.cfg, self.encoder),
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

    def forward(self, rgb, model, hint_seed=0, recolouring=False):
        """uint8 batch -> (input, target, scores as float32).

        A hint model's input also gets hints drawn from the batch's own colours,
        on the device, by a generator seeded with (config seed, ``hint_seed``, rank);
        in training steps (``recolouring``) a share of the batch is recoloured first.
        """
        with torch.no_grad():
            rgb = rgb.to(self.rt.device, non_blocking=self.rt.pin_memory)
            if self.cfg['hints']:
                generator = hints.step_generator(self.rt.device, self.cfg['seed'], hint_seed, self.rt.rank)
                net_input, target = hints.training_batch(self.encoder, rgb, generator, self.cfg,
                                                         self.rt.target_dtype, recolouring)
            else:
                net_input, target = self.encoder.encode(rgb, self.rt.target_dtype)
        if self.rt.channels_last:
            net_input = net_input.contiguous(memory_format=torch.channels_last)
        with self.rt.autocast():
            scores = model(net_input)
        return net_input, target, scores.float()

    def train_step(self, rgb):
        """One optimizer step; None when the loss was not finite on some rank and the step was skipped."""
        set_train_mode(self.model, self.cfg['bn_dropout_eval'])
        _, target, scores = self.forward(rgb, self.model, hint_seed=self.iteration, recolouring=True)
        per_pixel = losses.pixel_losses(scores, target, self.encoder)
        loss = losses.reduce_loss(per_pixel, self.cfg['loss_reduction'])
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
        metrics = losses.scores_of(losses.confusion(scores.detach(), target, self.encoder))
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
        for index, batch in enumerate(self.val_loader):
            self.note_skipped(batch, self.val_set)
            if batch['rgb'] is None:
                continue
            net_input, target, scores = self.forward(batch['rgb'], model, hint_seed=-1 - index)  # same every time
            per_pixel = losses.pixel_losses(scores, target, self.encoder)
            conf += losses.confusion(scores, target, self.encoder)
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
        valid = [loss_sum / pixels] + losses.scores_of(conf) + [psnr_sum / images]
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

    def precise_bn(self):
        """'Precise BN' at the end of a run: BatchNorm's running statistics recomputed as plain means over
        ``precise_bn_batches`` training batches with the final weights (averaged over the ranks).

        The running averages lag behind weights that still move at the end of a short run; a last iterate
        whose late steps shifted the activations then predicts in eval mode from statistics of older
        weights (issue 27: a quality run's FCN-16s painted every photo red until they were recomputed).
        """
        if not self.cfg['precise_bn_batches'] or self.cfg['bn_dropout_eval']:
            return

        def inputs():
            for batch in self.train_loader:
                if batch['rgb'] is not None:
                    yield batch['rgb']
        seen = recompute_bn_statistics(self.model, inputs(), self.cfg['precise_bn_batches'],
                                       lambda rgb, i: self.forward(rgb, self.model, hint_seed=self.iteration + i))
        if self.rt.world_size > 1:
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    for stat in (m.running_mean, m.running_var):
                        stat.copy_(self.rt.all_reduce_sum(stat.clone()) / self.rt.world_size)
        log.info('BatchNorm statistics recomputed over %d training batches with the final weights', seen)

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
            if self.validated_at != self.iteration:   # not when a finished run is resumed
                self.precise_bn()
            self.validate_or_checkpoint(final=True)
        finally:
            if bar is not None:
                bar.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        if self.rt.is_main:
            self.write_skip_count()
        self.log_throughput()


# --------------------------------------------------------------------------
# the log: log.csv, TensorBoard, skipped files
# --------------------------------------------------------------------------

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
# main
# --------------------------------------------------------------------------

def main(arch, argv=None):
    """Entry point of train_color_fcn{32,16,8}s.py; returns the finished :class:`Trainer`.

    Every setting and file is checked before anything is written (``cli.USER_ERRORS``
    name what to fix); the train scripts run it through ``cli.run_cli``.
    """
    args = cli.parse_train_args(arch, argv)
    resume_ckpt = load_checkpoint(args.resume) if args.resume else None
    cfg = cli.resolve_config(args, resume_ckpt)
    init_path = None if resume_ckpt is not None else run_setup.initial_checkpoint(args, cfg)
    init_ckpt = load_checkpoint(init_path) if init_path else None
    for ckpt, path in ((resume_ckpt, args.resume), (init_ckpt, init_path)):
        if ckpt is not None:
            run_setup.check_compatible(ckpt, path, arch, cfg, resuming=ckpt is resume_ckpt)
    vgg16_record = run_setup.vgg16_weights(cfg, resume_ckpt, init_ckpt)
    run_setup.check_dataset(cfg['dataset_path'], cfg)
    run_setup.check_machine(args, cfg)
    run_setup.check_run_folder(args)
    runtime = Runtime(args.gpu, cfg)
    try:
        return run(arch, args, cfg, runtime, resume_ckpt, init_ckpt, init_path, vgg16_record)
    finally:
        run_setup.close_logging()
        runtime.close()


def run(arch, args, cfg, runtime, resume_ckpt, init_ckpt, init_path, vgg16_record=None):
    """Everything after the checks: run folder, data, colour encoder, network, then the loop.

    ``vgg16_record`` (``run_setup.vgg16_weights``, made before the run folder exists)
    names the VGG16 weights a fresh run starts from; it goes to config.yaml and
    the checkpoints.
    """
    seed_everything(cfg['seed'] + runtime.rank)  # ranks draw different dropout masks
    run_dir, made = run_setup.make_run_dir(args, cfg, runtime)
    try:
        trainer = set_up(arch, args, cfg, runtime, resume_ckpt, init_ckpt, init_path, run_dir, vgg16_record)
    except BaseException:  # no half-made run folder: one this run made goes with it (nothing else's is in it)
        if made and runtime.is_main:
            run_setup.close_logging()
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    trainer.train()
    log.info('done: %s (best validation loss %.4f)', run_dir, trainer.best_loss)
    return trainer


def set_up(arch, args, cfg, runtime, resume_ckpt, init_ckpt, init_path, run_dir, vgg16_record):
    """Logging, data, colour encoder, config.yaml, network: the Trainer, ready to train."""
    run_setup.setup_logging(run_dir, runtime)
    train_set, val_set = runtime.on_main(lambda: run_setup.make_datasets(cfg, run_dir))  # (a failure: one error line)
    log.info('run folder %s on %s (world size %d, batch size %d per process)', run_dir, runtime.device,
             runtime.world_size, cfg['batch_size'])
    encoder_state = resume_ckpt['encoder'] if resume_ckpt is not None else \
        runtime.on_main(lambda: run_setup.fit_encoder_state(train_set, cfg, init_ckpt))
    encoder = targets.ColorEncoder.from_state(encoder_state)
    if runtime.is_main:
        with open(os.path.join(run_dir, 'config.yaml'), 'w') as f:
            yaml.safe_dump(dict(cfg, im_size=list(cfg['im_size']), arch=arch,
                                init_from_path=init_path, resumed_from=args.resume,
                                vgg16_weights=vgg16_record), f, sort_keys=True)

    fresh_vgg16 = vgg16_record if resume_ckpt is None else None
    model = run_setup.build_network(arch, cfg, encoder, init_ckpt, init_path, fresh_vgg16)
    model = runtime.wrap(model, cfg['sync_bn'])
    if cfg['compile']:
        model = torch.compile(model)
    workers = cfg['workers'] if cfg['workers'] is not None else default_workers()
    trainer = Trainer(arch, cfg, run_dir, runtime, model, encoder, train_set, val_set, workers, vgg16_record)
    if resume_ckpt is not None:
        trainer.resume(resume_ckpt)
    return trainer
