"""Setting up a training run, everything before the loop: pre-flight checks, run folder, logging,
datasets, the colour encoder's fitting, VGG16 weights and the network.

``trainer.main`` calls these in order.  Every check here runs before anything is
written (``cli.USER_ERRORS`` name what to fix); under ``torchrun`` rank 0 alone
makes the run folder, the file lists and the colour statistics (``runtime.on_main``).
A run folder is ``logs/MODEL-<exp>_CFG-<NNN>_TIME-<stamp>`` unless ``-o`` names one.
"""
import datetime
import glob
import hashlib
import inspect
import logging
import os
import shutil
import sys
import urllib.error
import urllib.parse

import torch

import cli
import config
import data_loader
import hints
import models
from runtime import remove_stale_temporaries
import targets

log = logging.getLogger('colorizer')

LOGS_DIR = os.path.join(data_loader.REPO_DIR, 'logs')  # beside the code, as pytorch-fcn
CHECKPOINT = 'checkpoint.pth.tar'   # everything to resume
MODEL_BEST = 'model_best.pth.tar'   # everything to colorize
IMAGENET_VGG16 = {'imagenet': 'VGG16_Weights', 'imagenet_bn': 'VGG16_BN_Weights'}  # --vgg16 -> torchvision
STAGE_COPIES = {('fcn32s', 'fcn16s'): 'copy_params_from_fcn32s',
                ('fcn16s', 'fcn8s'): 'copy_params_from_fcn16s'}


# --------------------------------------------------------------------------
# pre-flight checks (nothing written yet)
# --------------------------------------------------------------------------

def check_compatible(ckpt, path, arch, cfg, resuming):
    """Refuse a checkpoint of another architecture (or stage order) or other colour bins than this run's."""
    if resuming and ckpt['arch'] != arch:
        raise models.CheckpointError('%s is a %s checkpoint: resume it with train_color_%s.py, not %s'
                                     % (path, ckpt['arch'], ckpt['arch'], arch))
    if ckpt['arch'] != arch and (ckpt['arch'], arch) not in STAGE_COPIES:
        raise models.CheckpointError('cannot initialise %s from a %s checkpoint (%s): the stages go %s'
                                     % (arch, ckpt['arch'], path, ' -> '.join(['fcn32s', 'fcn16s', 'fcn8s'])))
    if ckpt['model_kwargs'].get('in_channels', models.IN_CHANNELS) > models.IN_CHANNELS and not cfg['hints']:
        raise models.CheckpointError('%s takes colour hints and this run has none: set `hints: true` (--set '
                                     'hints=true) or start from a lightness-only checkpoint' % path)
    built_with = inspect.signature(models.FCN32sColor).parameters   # a key a checkpoint lacks: its default
    for key in ('padding', 'fc_channels', 'trunk_width'):   # the shapes a stage copies
        theirs = ckpt['model_kwargs'].get(key, built_with[key].default)
        if theirs != cfg[key]:
            raise models.CheckpointError('%s was trained with %s %s, this run asks for %s (--set %s=%s to match)'
                                         % (path, key, theirs, cfg[key], key, theirs))
    if ckpt['binning'] != cfg['binning'] or ckpt['num_bins'] != cfg['numbins']:
        raise models.CheckpointError('%s was trained with %s binning and K=%d, this run asks for %s binning and '
                                     'K=%d (set -b/-k to match)' % (path, ckpt['binning'], ckpt['num_bins'],
                                                                    cfg['binning'], cfg['numbins']))


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
        raise config.ConfigError('sync_bn: true - torch.nn.SyncBatchNorm runs on CUDA only and this '
                                 'machine has none; set sync_bn=false (or bn_dropout_eval=true)')


def check_run_folder(args):
    """-o must be a folder (or not exist yet); a fresh run never writes into a folder that holds a run."""
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise cli.UserError('-o %s is a file, not a folder' % args.out)
    if args.out and not args.resume and os.path.exists(os.path.join(args.out, 'log.csv')):
        raise cli.RunFolderTaken('%s already holds a run (log.csv): continue it with --resume %s or '
                                 'choose another -o' % (args.out, os.path.join(args.out, CHECKPOINT)))


# --------------------------------------------------------------------------
# the previous stage and VGG16 weights
# --------------------------------------------------------------------------

def initial_checkpoint(args, cfg):
    """Path of the previous stage's model (-m, else the config's init_from), or None."""
    if args.model_path:
        return args.model_path
    if cfg['init_from'] is not None:
        return newest_run_file(cfg['init_from'])
    return None


def newest_run_file(config_number, name=MODEL_BEST, logs_dir=LOGS_DIR):
    """The newest ``name`` (default ``model_best.pth.tar``) of a run of ``config_number`` under ``logs/``."""
    pattern = os.path.join(logs_dir, '*_CFG-%03d_*' % config_number, name)
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not found:
        raise cli.MissingFile('no %s from a run of config %d under %s/: train that config first%s'
                              % (name, config_number, logs_dir, ' or pass -m' if name == MODEL_BEST else ''))
    return found[-1]


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


def vgg16_weights(cfg, resume_ckpt, init_ckpt):
    """The run's VGG16 record (:func:`fetch_vgg16`): a resumed run's own; none when a previous stage
    initialises the network; else the config's ``vgg16``, fetched and checked to load."""
    if resume_ckpt is not None:
        return resume_ckpt.get('vgg16_weights')
    if init_ckpt is not None:
        return None
    record = fetch_vgg16(cfg['vgg16'])
    if record is not None:
        models.load_vgg16(record['file'], require_fc=vgg16_needs_fc(cfg))  # memory-mapped: a cheap check
    return record


def vgg16_state_dict(record, cfg):
    """The state dict of a :func:`fetch_vgg16` record (torchvision's weights API for the ImageNet ones)."""
    if record['source'] in IMAGENET_VGG16:
        return imagenet_vgg16_file(record['source'])[0].get_state_dict(progress=False)  # the cached file
    return models.load_vgg16(record['file'], require_fc=vgg16_needs_fc(cfg))


def vgg16_needs_fc(cfg):
    """fc6 / fc7 come from VGG16's classifier only at its width."""
    return cfg['fc_channels'] == models.VGG_FC_CHANNELS


# --------------------------------------------------------------------------
# run folder and logging
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


# --------------------------------------------------------------------------
# data, colour encoder, network
# --------------------------------------------------------------------------

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
        inherited = targets.ColorEncoder.from_state(init_ckpt['encoder'])
    elif cfg['color_stats_from'] not in (None, cfg['config_number']):
        for name, target in (('mean_l.npy', train_set.mean_l_path), ('gmm.npz', train_set.gmm_path)):
            if (name != 'gmm.npz' or cfg['binning'] == 'soft') and not os.path.exists(target):
                shutil.copyfile(newest_run_file(cfg['color_stats_from'], name), target)
    encoder = targets.fit_encoder(train_set, cfg['stats_num_images'], cfg['stats_pixels_per_image'], cfg['seed'],
                                  cfg['rebalance_lambda'], cfg['rebalance_sigma'], inherited)
    return encoder.state()


def new_network(arch, cfg, encoder):
    """A fresh network of ``arch`` as the config asks; one that reads filled hints gets the bins' centres."""
    model = models.build_model(arch, **model_kwargs(cfg, encoder))
    if model.hint_fill:
        model.set_hint_bins(encoder.bins.centres_on_plane)
    return model


def build_network(arch, cfg, encoder, init_ckpt, init_path, vgg16_record=None):
    """The network of ``arch``: from the previous stage's checkpoint, else from VGG16 weights, else random."""
    model = new_network(arch, cfg, encoder)
    if init_ckpt is not None:
        previous = models.model_from_checkpoint(init_ckpt)
        if init_ckpt['arch'] == arch:
            model.copy_params_from(previous)   # a lightness-only model's conv1_1 widened for hints
        else:
            getattr(model, STAGE_COPIES[(init_ckpt['arch'], arch)])(previous)
        log.info('initialised %s from %s (%s)', arch, init_path, init_ckpt['arch'])
    elif vgg16_record is not None:
        model.copy_params_from_vgg16(vgg16_state_dict(vgg16_record, cfg))
        log.info('initialised the VGG16 trunk from %s (%s, sha256 %s...)', vgg16_record['file'],
                 vgg16_record['source'], vgg16_record['sha256_prefix'])
    return model


def model_kwargs(cfg, encoder):
    """``models.build_model``'s arguments (also kept in checkpoints)."""
    kwargs = {'n_class': encoder.num_outputs, 'padding': cfg['padding'], 'fc_channels': cfg['fc_channels']}
    if cfg['trunk_width'] != models.VGG16_WIDTH:   # VGG16's own width keeps the keys checkpoints always had
        kwargs['trunk_width'] = cfg['trunk_width']
    if cfg['hints']:   # lightness-only models keep the keys they always had
        kwargs['in_channels'] = models.IN_CHANNELS + hints.HINT_CHANNELS
        if cfg['hint_branch']:   # ... and hint models without a branch theirs
            kwargs['hint_branch'] = cfg['hint_branch']
            if cfg['hint_fill']:
                kwargs['hint_fill'] = True
                if cfg['hint_fill_edge_sigma'] > 0:
                    kwargs.update(fill_edge_sigma=cfg['hint_fill_edge_sigma'],
                                  fill_edge_iterations=cfg['hint_fill_edge_iterations'])
                if cfg['hint_gate_init']:
                    kwargs['gate_init'] = cfg['hint_gate_init']
                if cfg['hint_branch_gated']:
                    kwargs['branch_gated'] = True
    return kwargs


def make_optimizer(model, cfg):
    """The config's optimizer (Adam or SGD) over the trainable parameters; a hint branch's learn at
    ``hint_lr_mult`` times the rate and its gate's at ``hint_gate_lr_mult`` times (new weights that must
    move within a short budget); a hint model's others at ``hint_trunk_lr_mult`` times (0: they stay the
    model it grew from)."""
    groups = {'hint_branch.': cfg['lr'] * cfg['hint_lr_mult'], 'hint_gate.': cfg['lr'] * cfg['hint_gate_lr_mult']}
    rest_lr = cfg['lr'] * cfg['hint_trunk_lr_mult']   # 1 but in hint models (config.check_combinations)
    found = {prefix: [] for prefix in groups}
    rest = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            prefix = next((prefix for prefix in groups if name.startswith(prefix)), None)
            (found[prefix] if prefix else rest).append(p)
    params = [{'params': rest, 'lr': rest_lr}] + [{'params': found[prefix], 'lr': lr}
                                                  for prefix, lr in groups.items() if found[prefix]]
    if cfg['optim'] == 'Adam':
        return torch.optim.Adam(params, lr=cfg['lr'], betas=(cfg['momentum'], 0.999),
                                weight_decay=cfg['weight_decay'])
    if cfg['optim'] == 'SGD':
        return torch.optim.SGD(params, lr=cfg['lr'], momentum=cfg['momentum'],
                               weight_decay=cfg['weight_decay'])
    raise ValueError('unknown optim %r (SGD or Adam)' % cfg['optim'])
