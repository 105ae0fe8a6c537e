"""Command-line plumbing of the entry scripts: a user's mistake is one ``error: ...`` line, not a traceback.

``run_cli(main)`` runs ``main(argv)`` and returns the exit status:

* what ``main`` returns (an int), 0 for anything else (a finished Trainer);
* 2 with ``error: MESSAGE`` on stderr for a user error: a bad argument
  (:class:`ArgumentParser`, argparse's own status), a bad setting
  (``config.ConfigError``), a file that is not a checkpoint / VGG16 state dict
  (``models.CheckpointError``), or any other :class:`UserError`;
* 1 with ``error: MESSAGE`` for a declared stop (e.g. a non-finite training loss);
* any other exception is a bug: its traceback is shown as usual.

``--debug`` shows the traceback of every error.  Under torchrun (``RANK`` set)
only rank 0 prints the message; every process exits with the same status.

The train scripts' command line is here too: :func:`parse_train_args`, and
:func:`resolve_config` (config N or the resumed checkpoint's, then ``--set`` and the flags).
"""
import argparse
import os
import sys
import traceback

import yaml

import config
import models
import targets

USAGE_ERROR = 2   # argparse's status for a bad command line; ours for any user error
STOPPED = 1       # a declared stop, or (colorize / evaluate) some inputs could not be read
DEBUG_FLAG = '--debug'


class UserError(ValueError):
    """A mistake in the command line or its inputs (a missing folder, a run folder in use, no image)."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder named on the command line (or by a config) that is not there."""


class RunFolderTaken(UserError, FileExistsError):
    """A fresh run asked to write into a folder that already holds a run."""


USER_ERRORS = (UserError, config.ConfigError, models.CheckpointError)


def is_main_process():
    """Rank 0 of a torchrun job, or a plain process."""
    return int(os.environ.get('RANK', '0') or 0) == 0


def report(message):
    """``error: message`` on stderr, one line, from rank 0 only."""
    if is_main_process():
        print('error: %s' % ' '.join(str(message).split()), file=sys.stderr, flush=True)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one ``error: ...`` line (status 2), with a ``--debug`` flag."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action='store_true', help='show the Python traceback of any error')

    def error(self, message):
        report('%s (see %s --help)' % (message, self.prog))
        sys.exit(USAGE_ERROR)


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def natural_int(text):
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text, low):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not an integer' % text) from None
    if value < low:
        raise argparse.ArgumentTypeError('%d - must be an integer >= %d' % (value, low))
    return value


def run_cli(main, argv=None, stops=()):
    """Exit status of ``main(argv)`` (see the module docstring); ``stops``: exception types reported as 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = DEBUG_FLAG in argv
    try:
        status = main(argv)
    except USER_ERRORS as err:
        return _fail(err, USAGE_ERROR, debug)
    except tuple(stops) as err:
        return _fail(err, STOPPED, debug)
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


def _fail(err, status, debug):
    if debug and is_main_process():
        traceback.print_exc()
    report(err)
    return status


# --------------------------------------------------------------------------
# the train scripts' command line and config
# --------------------------------------------------------------------------

def parse_train_args(arch, argv=None):
    """The command line of train_color_fcn{32,16,8}s.py (``arch``: fcn32s, fcn16s or fcn8s)."""
    p = ArgumentParser(
        description='Train %s to colorize (see README.md). Under torchrun every process runs this '
                    'script; the config\'s batch_size is per process.' % arch.upper())
    p.add_argument('-e', '--exp_name', default=arch, help='experiment name, used in the run folder name')
    p.add_argument('-g', '--gpu', type=int, default=None,
                   help='CUDA device index (default: the first GPU if any, else the CPU; '
                        'under torchrun: LOCAL_RANK)')
    p.add_argument('-c', '--config', type=int, default=None,
                   help='configuration number in config.py (required unless --resume)')
    p.add_argument('-b', '--binning', choices=targets.BINNINGS, default=None,
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
    p.add_argument('--max-iter', type=natural_int, default=None, help='override max_iteration (smoke runs)')
    p.add_argument('-j', '--workers', type=natural_int, default=None, help='DataLoader workers per process')
    p.add_argument('--vgg16', default=None, metavar='imagenet|imagenet_bn|none|PATH',
                   help='start from VGG16: torchvision\'s ImageNet weights (downloaded once into the torch '
                        'hub cache, $TORCH_HOME), their vgg16_bn variant, random weights (none), or a local '
                        'torchvision vgg16(_bn) state dict; default: the config\'s vgg16')
    p.add_argument('--save-interval', type=positive_int, default=None,
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
            raise config.ConfigError('--set %r: expected KEY=VALUE' % pair)
        if key not in config.SCHEMA:
            raise config.ConfigError('--set: ' + config.unknown_key_message(key))
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise config.ConfigError('--set %s: %r is not a YAML value' % (key, text)) from None
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        overrides[key] = config.check_value(key, value)
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
            cfg[key] = config.check_value(key, value)
    cfg['binning'] = cfg['binning'] or 'soft'
    cfg['numbins'] = cfg['numbins'] or 128
    return config.check_config(cfg)


# config keys that define the colour targets and the network's shape: fixed for the whole of a run,
# resumes included (the checkpoint's weights and bins are those)
ENCODER_KEYS = ('binning', 'numbins', 'uniform_sigma', 'img_lowpass', 'rebalance_lambda', 'rebalance_sigma',
                'gmm_space')
NETWORK_KEYS = ('hints', 'padding', 'fc_channels')


def resolve_config(args, resume_ckpt=None):
    """The run's config: the checkpoint's (resume) or config N's, then command-line overrides; checked."""
    if resume_ckpt is not None:  # keys added to config.py since then: RESUME_DEFAULTS, else DEFAULTS
        saved = {**config.DEFAULTS, **config.RESUME_DEFAULTS, **resume_ckpt['config']}
        config.check_config(saved, '%s (its config)' % args.resume, ignore_unknown=True)
        # keys this code does not know (a newer version's) mean nothing here
        cfg = {k: v for k, v in saved.items() if k in config.SCHEMA or k in config.RUN_KEYS}
    else:
        cfg = config.get_config(args.config)
        cfg['config_number'] = args.config
    cfg['dataset_path'] = args.dataset_path or cfg.get('dataset_path')
    cfg = apply_overrides(cfg, args)
    if resume_ckpt is not None:
        changed = [key for key in ENCODER_KEYS + NETWORK_KEYS if cfg[key] != saved[key]]
        if changed:
            raise config.ConfigError(
                '--resume continues with the colour targets and network of %s; %s cannot change '
                '(start a new run from it with -m instead)' % (args.resume, ', '.join(changed)))
    return cfg
