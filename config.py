"""Every number that defines an experiment.

``configurations[N]`` holds the keys in which setting N differs from
``DEFAULTS``; ``get_config(N)`` merges them.  Settings 0-31 are the seed's
(26 was commented out there), with its machine paths replaced by config
numbers: ``init_from`` names the config whose newest ``model_best.pth.tar``
under ``logs/`` initialises this stage, ``color_stats_from`` the config whose
GMM and mean lightness are reused.  Settings 100-102 are the CPU-sized demo
(FCN-32s -> FCN-16s -> FCN-8s on the bundled photos or any ``-d`` folder).

``SCHEMA`` declares, beside DEFAULTS, what each key may hold; ``check_value`` /
``check_config`` raise :class:`ConfigError` whose message is the user's one line
(``numbins: 0 - must be an integer >= 2``).

Settings 110-112 are issue 11's generalisation experiment: the same chain on the
folder of ``experiments/get_photos.py`` (``-d DIR``, its split lists), with random
resized crops and mirror images so that ~17 training photos give hundreds of views
per epoch, and the GMM fitted on the chroma plane.
"""
import copy
import difflib
import math


class ConfigError(ValueError):
    """A setting the code cannot run with; the message is the one line the user sees."""


REFUSED = object()  # what Spec.accept returns for a value the key cannot hold


class Spec:
    """The values one config key may hold.

    ``allowed`` says which in words (a string, or a function giving one);
    ``accept(value)`` returns the value as the code uses it (integers as int,
    pairs as tuples) or REFUSED.  ``noun`` names the type a value must have at
    all ('a number'), for a clearer message when it has not; ``choices`` are
    offered as 'did you mean' for a mistyped word.
    """

    def __init__(self, allowed, accept, noun=None, choices=None):
        self.allowed, self.accept, self.noun, self.choices = allowed, accept, noun, choices

    def describe(self):
        return self.allowed() if callable(self.allowed) else self.allowed


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value):
    return _is_number(value) and float(value).is_integer()


def integer(low, high=None):
    """An integer >= low (and <= high); 1e5 from YAML is taken as 100000."""
    def accept(value):
        ok = _is_integer(value) and low <= value and (high is None or value <= high)
        return int(value) if ok else REFUSED
    return Spec('an integer >= %d' % low if high is None else 'an integer from %d to %d' % (low, high),
                accept, noun='a number')


def number(low=None, high=None, above=None, below=None):
    """A finite number with inclusive (low, high) or exclusive (above, below) bounds."""
    bounds = [op % bound for op, bound in (('>= %r', low), ('> %r', above), ('<= %r', high), ('< %r', below))
              if bound is not None]

    def accept(value):
        ok = _is_number(value) and math.isfinite(value) and (low is None or value >= low) \
            and (above is None or value > above) and (high is None or value <= high) \
            and (below is None or value < below)
        return value if ok else REFUSED
    return Spec(' '.join(['a number', ' and '.join(bounds)]).strip(), accept, noun='a number')


def choice(*values):
    """One of ``values`` (compared exactly: 'adam' is not 'Adam')."""
    return Spec('one of %s' % ', '.join(str(v) for v in values), lambda v: v if v in values else REFUSED,
                choices=values)


def boolean():
    return Spec('true or false', lambda v: v if isinstance(v, bool) else REFUSED)


def size_pair(low):
    """(height, width), each an integer >= low; a YAML list is taken as the tuple."""
    def accept(value):
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_integer(v) and v >= low
                                                                         for v in value)
        return tuple(int(v) for v in value) if ok else REFUSED
    return Spec('two integers >= %d ([height, width])' % low, accept)


def integer_range(low):
    """[min, max] integers with low <= min <= max (a list, as YAML writes it)."""
    def accept(value):
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_integer(v) for v in value) \
            and low <= value[0] <= value[1]
        return [int(value[0]), int(value[1])] if ok else REFUSED
    return Spec('[min, max] integers with %d <= min <= max' % low, accept)


def number_range(above, high):
    """[min, max] with above < min <= max <= high (a list, as YAML writes it)."""
    def accept(value):
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value) \
            and above < value[0] <= value[1] <= high
        return [value[0], value[1]] if ok else REFUSED
    return Spec('[min, max] with %r < min <= max <= %r' % (above, high), accept)


def path():
    return Spec('a file path', lambda v: v if isinstance(v, str) and v.strip() else REFUSED)


def config_number():
    """The number of a configuration below (a previous stage, reused statistics)."""
    return Spec(lambda: 'a configuration number of config.py (%s)' % number_ranges(configurations),
                lambda v: v if _is_integer(v) and not isinstance(v, float) and v in configurations else REFUSED)


def optional(spec):
    """``spec`` or None (null in YAML)."""
    return Spec(lambda: '%s, or null' % spec.describe(), lambda v: None if v is None else spec.accept(v),
                noun=spec.noun, choices=spec.choices)


def either(word, spec):
    """The string ``word`` or a value of ``spec``."""
    return Spec(lambda: '%r or %s' % (word, spec.describe()), lambda v: v if v == word else spec.accept(v))


# arms of propagate.py that spread given hints and fuse them with the network's prediction
HINT_METHODS = ('levin', 'corrections', 'shrinkage', 'confidence', 'stacked')

VGG16_TRUNK_WIDTH = 64       # conv1's channels in VGG16: the only width its weights fit

DEFAULTS = dict(
    # --- optimisation -----------------------------------------------------
    max_iteration=100000,      # training iterations (one batch each)
    lr=1e-10,                  # learning rate
    optim='SGD',               # 'SGD' (with momentum) or 'Adam' (momentum = beta1)
    momentum=0.99,             # SGD momentum / Adam beta1
    weight_decay=0.0005,       # L2 penalty
    loss_reduction='sum',      # 'sum' over pixels, mean over batch (seed / pytorch-fcn) or 'mean'
    nonfinite_loss='stop',     # a NaN/inf loss: 'stop' the run, or 'skip' the step and count it
    seed=0,                    # torch / numpy / python RNGs, sampler shuffles, pixel sampling
    # --- data ---------------------------------------------------------------
    im_size=(256, 256),        # (height, width) every image is resized to (bilinear)
    batch_size=1,              # images per step PER PROCESS (validation: val_batch_size)
    val_batch_size=1,          # validation batch size (the seed used 1)
    train_set='full',          # ImageNet set: tiny | small | full | bright-1 (see data_loader.SET_LISTS)
    val_set='small',           # ImageNet set used for validation
    val_fraction=0.1,          # share of a photo folder held out for validation (hash split)
    max_image_pixels=89478485, # larger images are refused from their header (PIL's own limit)
    jpeg_draft=True,           # JPEGs decode at the smallest DCT scale (1/2..1/8) still >= im_size
    crops_per_photo=1,         # training views per photo per epoch (an epoch = photos x this)
    aug_crop_area=None,        # random resized crop: [min, max] share of the photo's area; None = whole photo
    aug_crop_aspect=[3 / 4, 4 / 3],  # range of the crop's aspect (width / height), drawn log-uniform
    aug_hflip=False,           # mirror half the training views left-right
    workers=None,              # DataLoader workers per process; None = min(8, cores per process)
    prefetch_factor=4,         # batches each worker keeps ready
    # --- colour targets -------------------------------------------------------
    binning=None,              # soft | uniform | one-hot; None = the -b flag (default soft)
    numbins=None,              # K; None = the -k flag (default 128)
    uniform_sigma='default',   # uniform bins' sigma; 'default' = Voronoi radius spacing/sqrt(2)
    img_lowpass=None,          # low-pass the H/C targets by this factor (None = full resolution)
    gmm_space='polar',         # soft bins' GMM fitted on (H, C) 'polar' (seed) or the chroma 'plane' (no hue seam)
    stats_num_images=5000,     # images sampled for the GMM and the mean lightness
    stats_pixels_per_image=20, # random pixels taken from each of them
    rebalance_lambda=None,     # class rebalancing (Zhang et al.): None = off, 0.5 = their lambda
    rebalance_sigma=0.05,      # smoothing of the bin prior on the chroma plane
    # --- colour hints (Zhang et al. 2017: user points as extra input channels) ---
    hints=False,               # input = L + the hints' chroma plane (a, b) + their mask (4 channels)
    hint_none_share=1 / 8,     # p of the geometric number of points per image: P(no points) = p
    hint_max_points=50,        # the geometric draw is capped here (P(N > 50) = (1-p)^51 ~ 0.1 %)
    hint_patch=[1, 9],         # hint square's side in network pixels, uniform over [min, max]
    hint_positions='gaussian', # 'gaussian' around the centre or 'uniform' over the image
    hint_position_sigma=0.25,  # gaussian positions: std as a share of height / width (Zhang et al.: 1/4)
    precise_bn_batches=0,      # at the end of a run, BatchNorm statistics recomputed over this many batches
    hint_branch=0,             # hint models: channels of a full-resolution hint branch added to the scores (0: none)
    hint_lr_mult=10.0,         # ... its learning rate, x lr (its weights start at zero and are new)
    hint_fill=False,           # ... which also reads the hints filled to every pixel and gates their colour
                               # into the scores (models.fill_hints, bin_scores)
    hint_gate_lr_mult=30.0,    # ... the gate's learning rate, x lr (it starts at 0 and must reach about 1
                               # within the few dozen steps of a quality-experiment budget)
    hint_fill_edge_sigma=0.0,  # ... the fill spread along lightness edges: pixels this far apart in lightness
                               # weigh exp(-1/2) in its diffusion (0: the plain push-pull fill)
    hint_fill_edge_iterations=8,  # ... diffusion steps per pyramid level
    hint_gate_init=0.0,        # ... the gate's starting value near a hint (0: the fill is learnt to be trusted;
                               # no hints give no fill term whatever it is)
    hint_branch_gated=False,   # ... the branch's own scores also weighed by the fill's nearness (0 without hints)
    hint_trunk_lr_mult=1.0,    # hint models: the learning rate of every weight outside the hint branch and its
                               # gate, x lr (0: they stay the model the hint model grew from)
    recolour_share=0.0,        # hint models: share of training images recoloured (recolour.py), each hinted
    recolour_regions=6,        # ... remapped per sector of the image's own hue (this many sectors)
    recolour_hue_shift=0.15,   # ... each sector's extra hue shift, uniform in +- this many turns
    recolour_chroma_scale=[0.5, 1.5],  # ... and its chroma scale, uniform in [min, max]
    hint_method='stacked',     # how given hints are spread and fused with the prediction (propagate.py;
                               # chosen on the quality experiment's validation folds, docs/hints.md; the
                               # 3-minute FCN-32s's folds tie it with shrinkage, 0.01 dB, so it stays)
    # --- model ------------------------------------------------------------------
    padding='same',            # 'same' (no wasted compute) or 'caffe' (conv1 pad 100, as the seed)
    fc_channels=4096,          # width of fc6 / fc7 (VGG16: 4096)
    trunk_width=VGG16_TRUNK_WIDTH,  # conv1's channels, the other blocks in VGG16's proportion
    vgg16=None,                # start from VGG16: 'imagenet' | 'imagenet_bn' (torchvision) | a local file | None
    init_from=None,            # config number whose best model initialises this stage
    color_stats_from=None,     # config number whose GMM + mean L are reused
    sync_bn=False,             # SyncBatchNorm under torch.distributed
    bn_dropout_eval=False,     # train with BatchNorm statistics frozen and Dropout off (fine-tuning)
    # --- logging / checkpoints ----------------------------------------------------
    interval_validate=None,    # validate (and checkpoint) every N iterations; None = one epoch
    save_interval=None,        # also checkpoint every N iterations (None = only at validation)
    viz_images=9,              # validation images drawn in visualization_viz/*.png
    decode='annealed',         # how predictions become colours: annealed | mean | mode
    temperature=0.38,          # annealed-mean temperature (Zhang et al. 2016)
    data_wait_warn_share=0.2,  # warn once when waiting for data takes more than this share of the steps' time
    data_wait_window=100,      # ... over this many last training steps
    # --- speed (amp, channels_last, cudnn, pin_memory: CUDA only; CPU runs float32) ---
    amp=True,                  # torch.autocast: bf16 where supported, else fp16 + GradScaler
    channels_last=True,        # NHWC memory format
    cudnn_benchmark=True,      # let cuDNN pick the fastest convolution algorithms
    pin_memory=True,           # page-locked host batches, non-blocking copies
    compile=False,             # torch.compile the model
    keep_freed_memory=True,    # glibc: reuse freed memory, no fresh page faults per step (CPU and host)
)

# What each key of DEFAULTS may hold.  A new key is declared here too, one line (a test keeps the two
# in step): integer(low[, high]), number(low=, high=, above=, below=), choice(*words), boolean(),
# size_pair(low), integer_range(low), path(), config_number(), optional(spec) (also None), either('word', spec).
# get_config, every --set and flag of the train scripts, and the config inside a checkpoint go through it.
SCHEMA = dict(
    max_iteration=integer(0),
    lr=number(above=0),
    optim=choice('SGD', 'Adam'),
    momentum=number(low=0, below=1),
    weight_decay=number(low=0),
    loss_reduction=choice('sum', 'mean'),
    nonfinite_loss=choice('stop', 'skip'),
    seed=integer(0, 2 ** 32 - 1),
    im_size=size_pair(32),
    batch_size=integer(1),
    val_batch_size=integer(1),
    train_set=choice('tiny', 'small', 'full', 'bright-1'),
    val_set=choice('tiny', 'small', 'full', 'bright-1'),
    val_fraction=number(above=0, below=1),
    max_image_pixels=integer(1),
    jpeg_draft=boolean(),
    crops_per_photo=integer(1),
    aug_crop_area=optional(number_range(above=0, high=1)),
    aug_crop_aspect=number_range(above=0, high=float('inf')),
    aug_hflip=boolean(),
    workers=optional(integer(0)),
    prefetch_factor=integer(1),
    binning=optional(choice('soft', 'uniform', 'one-hot')),
    numbins=optional(integer(2)),
    uniform_sigma=either('default', number(above=0)),
    img_lowpass=optional(number(low=1)),
    stats_num_images=integer(1),
    stats_pixels_per_image=integer(1),
    rebalance_lambda=optional(number(low=0, high=1)),
    rebalance_sigma=number(above=0),
    gmm_space=choice('polar', 'plane'),
    hints=boolean(),
    hint_none_share=number(above=0, below=1),
    hint_max_points=integer(1),
    hint_patch=integer_range(1),
    hint_positions=choice('gaussian', 'uniform'),
    hint_position_sigma=number(above=0),
    precise_bn_batches=integer(0),
    hint_branch=integer(0),
    hint_lr_mult=number(above=0),
    hint_fill=boolean(),
    hint_gate_lr_mult=number(above=0),
    hint_fill_edge_sigma=number(low=0),
    hint_fill_edge_iterations=integer(0),
    hint_gate_init=number(low=0),
    hint_branch_gated=boolean(),
    hint_trunk_lr_mult=number(low=0),
    recolour_share=number(low=0, high=1),
    recolour_regions=integer(1),
    recolour_hue_shift=number(low=0, high=0.5),
    recolour_chroma_scale=number_range(0, 10),
    hint_method=choice(*HINT_METHODS),
    padding=choice('same', 'caffe'),
    fc_channels=integer(1),
    trunk_width=integer(1),
    vgg16=optional(path()),
    init_from=optional(config_number()),
    color_stats_from=optional(config_number()),
    sync_bn=boolean(),
    bn_dropout_eval=boolean(),
    interval_validate=optional(integer(1)),
    save_interval=optional(integer(1)),
    viz_images=integer(0),
    decode=choice('annealed', 'mean', 'mode'),
    temperature=number(above=0),
    data_wait_warn_share=number(above=0, high=1),
    data_wait_window=integer(1),
    amp=boolean(),
    channels_last=boolean(),
    cudnn_benchmark=boolean(),
    pin_memory=boolean(),
    compile=boolean(),
    keep_freed_memory=boolean(),
)
# keys a run adds to its config (config.yaml, checkpoints): not settings, not checked
RUN_KEYS = ('config_number', 'dataset_path')

# A checkpoint written before a key existed resumes with the behaviour it ran with, not the new default.
RESUME_DEFAULTS = dict(
    jpeg_draft=False,          # JPEG draft decoding came later: older runs decoded at full size
)

_ADAM = dict(optim='Adam')
_LOWPASS8 = dict(_ADAM, momentum=0.8, interval_validate=50, img_lowpass=8, train_set='full', val_set='small')
_BIG_BATCH = dict(_ADAM, max_iteration=300000, momentum=0.9, interval_validate=50, batch_size=8,
                  train_set='full', val_set='small', color_stats_from=21)
_BRIGHT = dict(_ADAM, max_iteration=100000, lr=1e-6, momentum=0.9, interval_validate=100,
               img_lowpass=4, im_size=(256, 256), batch_size=4, train_set='bright-1', val_set='small')

configurations = {
    0: dict(max_iteration=100000, lr=1e-10, momentum=0.99, interval_validate=4000),
    1: dict(max_iteration=500000, lr=1e-10, momentum=0.99, interval_validate=1000),
    2: dict(max_iteration=500000, lr=1e-12, momentum=0.9, interval_validate=1000),
    3: dict(max_iteration=500000, lr=1e-10, momentum=0.9, interval_validate=1000),
    4: dict(max_iteration=500000, lr=1e-10, momentum=0.9, interval_validate=5),
    5: dict(max_iteration=10000, lr=0.01, momentum=0.9, interval_validate=5),
    6: dict(max_iteration=10000, lr=1e-10, momentum=0.9, interval_validate=10),
    # the seed's 9-image sanity run (-b soft -k 32); the seed edited the script to pick `tiny`
    7: dict(max_iteration=10000, lr=1e-08, momentum=0.9, interval_validate=50,
            train_set='tiny', val_set='tiny'),
    8: dict(max_iteration=10000, lr=1e-10, momentum=0.9, interval_validate=50),
    9: dict(_ADAM, max_iteration=1000, lr=1e-4, momentum=0.9, interval_validate=50),
    10: dict(_ADAM, max_iteration=100, lr=1e-4, momentum=0.9, interval_validate=10),
    11: dict(_ADAM, max_iteration=100000, lr=1e-4, momentum=0.9, interval_validate=50),
    12: dict(_ADAM, max_iteration=100000, lr=1e-5, momentum=0.8, interval_validate=50),
    13: dict(_ADAM, max_iteration=100000, lr=1e-6, momentum=0.8, interval_validate=50),
    # FCN-32s, targets low-passed 8x, run with -k 16
    14: dict(_LOWPASS8, max_iteration=100000, lr=1e-6),
    # FCN-16s from 14's best model
    15: dict(_LOWPASS8, max_iteration=100000, lr=1e-6, init_from=14),
    16: dict(_LOWPASS8, max_iteration=100000, lr=1e-9, init_from=14, color_stats_from=15),
    17: dict(_LOWPASS8, max_iteration=100000, lr=1e-7, init_from=14, color_stats_from=15),
    # FCN-8s from 16's best model
    18: dict(_LOWPASS8, max_iteration=100000, lr=1e-6, init_from=16, color_stats_from=15),
    19: dict(_LOWPASS8, max_iteration=100000, lr=1e-6, img_lowpass=4),
    20: dict(_ADAM, max_iteration=1000000, lr=1e-5, momentum=0.9, interval_validate=50,
             img_lowpass=4, train_set='full', val_set='full', init_from=16),
    21: dict(_BIG_BATCH, lr=1e-7, color_stats_from=None),
    22: dict(_BIG_BATCH, lr=1e-8),
    23: dict(_BIG_BATCH, lr=1e-9),
    24: dict(_BIG_BATCH, lr=1e-10),
    25: dict(_BRIGHT, train_set='full'),
    27: dict(_BRIGHT),
    28: dict(_BRIGHT, batch_size=3, binning='uniform', numbins=256),  # K: the seed ran them with -k 256
    29: dict(_BRIGHT, binning='uniform', numbins=256, init_from=28, color_stats_from=28),
    30: dict(_BRIGHT, binning='uniform', numbins=256, init_from=29, color_stats_from=28),
    31: dict(_BRIGHT, lr=1e-7, binning='uniform', numbins=256, init_from=29, color_stats_from=28),
}

# CPU-sized demo: the bundled photos (or -d FOLDER) in a few minutes on 2 cores
_DEMO = dict(
    optim='Adam', lr=1e-3, momentum=0.9, weight_decay=0.0, loss_reduction='mean',
    im_size=(96, 96), batch_size=4, binning='soft', numbins=32, img_lowpass=4,
    stats_num_images=500, stats_pixels_per_image=500, fc_channels=512,
    interval_validate=40, train_set='small', val_set='small',
)
configurations[100] = dict(_DEMO, max_iteration=200)                  # FCN-32s
configurations[101] = dict(_DEMO, max_iteration=100, init_from=100)   # FCN-16s from 100
configurations[102] = dict(_DEMO, max_iteration=100, init_from=101)   # FCN-8s from 101


# Issue 11 (generalisation from few photos, 2 CPU cores): train on `get_photos.py --out DIR`
# (-d DIR).  An epoch is 17 photos x 16 crops = 272 views (68 steps of 4); validation (2 whole photos
# resized) every 100 steps.  experiments/quality.py sets max_iteration from a time budget (--max-iter).
# Bins and rebalancing follow the validation split of the README's variants table (uniform 6 x 6 bins,
# rebalancing off; the GMM, when asked for, in polar (H, C)).
_GENERALISE = dict(
    optim='Adam', lr=1e-3, momentum=0.9, weight_decay=0.0, loss_reduction='mean',
    im_size=(128, 128), batch_size=4, binning='uniform', numbins=36, img_lowpass=4, gmm_space='polar',
    rebalance_lambda=None, stats_num_images=500, stats_pixels_per_image=2000, fc_channels=512,
    crops_per_photo=16, aug_crop_area=[0.2, 1.0], aug_crop_aspect=[3 / 4, 4 / 3], aug_hflip=True,
    interval_validate=100, viz_images=4, precise_bn_batches=16,
)
configurations[110] = dict(_GENERALISE, max_iteration=1500)                  # FCN-32s
configurations[111] = dict(_GENERALISE, max_iteration=500, init_from=110)    # FCN-16s from 110
configurations[112] = dict(_GENERALISE, max_iteration=500, init_from=111)    # FCN-8s from 111

# The hint chain (issue 20, Zhang et al. 2017): the same data and budget with colour-hint input; its
# FCN-32s starts from the default chain's FCN-32s (conv1_1 widened with zeros for the hint channels,
# so it starts as that model), each later stage from the previous one.
_HINTS = dict(_GENERALISE, hints=True)


def _hint_chain(first, settings, later=None):
    """Configs first, first + 1, first + 2: FCN-32s from 110 (1500 iterations), FCN-16s and FCN-8s each
    from the stage before (500); ``later``: the settings of those two when they differ."""
    configurations[first] = dict(settings, max_iteration=1500, init_from=110)
    configurations[first + 1] = dict(later or settings, max_iteration=500, init_from=first)
    configurations[first + 2] = dict(later or settings, max_iteration=500, init_from=first + 1)


_hint_chain(113, _HINTS)   # 113 -> 114 -> 115: the default chain with hints

# The hint chain that must read its hints (issue 28): half of each batch recoloured (recolour.py: its colours
# only the hints tell) and a full-resolution hint branch of 32 channels added to the scores (10x the lr);
# `quality.py --hints` weighs it against 113 -> 114 -> 115 on validation.
_READ_HINTS = dict(_HINTS, recolour_share=0.5, hint_branch=32)
_hint_chain(116, _READ_HINTS)
# ... and with the hints filled to every pixel for the branch (models.fill_hints): a hint's colour reaches
# regions far from it without being learnt through the trunk
_FILLED_HINTS = dict(_READ_HINTS, hint_fill=True)
_hint_chain(119, _FILLED_HINTS)
# ... and with the fill spread along lightness edges (a sigma chosen on the folds' validation photos,
# docs/hints.md: the fill alone at 128 px with 10 hints, 0.02 beat Levin et al. by 0.12 dB, 0.05 tied it)
_EDGE_FILLED_HINTS = dict(_FILLED_HINTS, hint_fill_edge_sigma=0.02)
_hint_chain(122, _EDGE_FILLED_HINTS)
# ... and with the gate started to trust the fill (a start chosen on the folds' validation photos with the
# network untrained, docs/hints.md: 10 hints, gate 2 / 4 / 8 / 16; no hints still give no fill term)
_TRUSTED_FILL_HINTS = dict(_EDGE_FILLED_HINTS, hint_gate_init=8.0)
_hint_chain(125, _TRUSTED_FILL_HINTS)
# ... and the FCN-32s's weights outside the hint branch and its gate kept as grown from the default chain
# (docs/hints.md: with them learning, 125 lost 1.8 dB with no hints on the folds); FCN-16s and 8s must
# learn their new skip layers, so they learn everything again
_hint_chain(128, dict(_TRUSTED_FILL_HINTS, hint_trunk_lr_mult=0.0), later=_TRUSTED_FILL_HINTS)
# ... and the branch's own scores weighed by the fill's nearness too: with the trunk kept and no hints the
# FCN-32s is the default model (docs/hints.md: 128 lost 1.1 dB with no hints on the folds, from the
# branch's scores)
_GATED_BRANCH_HINTS = dict(_TRUSTED_FILL_HINTS, hint_branch_gated=True)
_hint_chain(131, dict(_GATED_BRANCH_HINTS, hint_trunk_lr_mult=0.0), later=_GATED_BRANCH_HINTS)


def get_config(number):
    """DEFAULTS updated with ``configurations[number]`` (a fresh dict), checked against SCHEMA."""
    if number not in configurations:
        raise ConfigError('no configuration %r in config.py (known: %s)' % (number, number_ranges(configurations)))
    unknown = set(configurations[number]) - set(DEFAULTS)
    if unknown:
        raise ConfigError('configuration %d has unknown keys %s' % (number, sorted(unknown)))
    cfg = copy.deepcopy(DEFAULTS)
    cfg.update(copy.deepcopy(configurations[number]))
    return check_config(cfg, 'configuration %d' % number)


def number_ranges(numbers):
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8' (the known configuration numbers, short)."""
    spans = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ', '.join(str(a) if a == b else '%d-%d' % (a, b) for a, b in spans)


# Zhang et al. 2017's test sweep (evaluate.py --hint-points): N points per photo, squares of `patch`
# pixels at `side` pixels on the short side (scaled to the photo), uniform positions, each the mean colour
# of its square; a hint point given without a size (hint JSON, web page) is such a square too.  Levin et
# al. 2004's baseline solves at `side` pixels on the short side.
HINT_SWEEP = dict(points=[0, 1, 2, 5, 10, 20, 50], patch=6, side=256)

# Given hints (colorize.py --hints, the web page, the sweep) are spread along lightness edges with Levin
# et al. 2004's system at `side` pixels on the short side and fused with the prediction (propagate.py):
# corrections spread by a walk on Levin's affinities (csig = `variance_scale` x the window's variance; Levin:
# 0.6) that dies with probability `leak` per step (at side x side pixels), faded where less than about
# `fade` of it reaches a hint;
# the `shrinkage` and `stacked` arms pick their per-photo weights by leave-one-out over the hints, solved at
# `loo_side` pixels.
HINT_PROPAGATION = dict(side=256, leak=1e-5, fade=0.1, variance_scale=0.3, loo_side=64)

# colorize.py --edge-aware: the predicted colours upsampled by the guided filter's linear model fitted at
# the network's size (levin.coarse_fit_guided_upsample), guided by the full-resolution lightness:
# windows of 2 * radius + 1 network pixels, eps in lightness units squared.
EDGE_AWARE = dict(radius=1, eps=1e-3)


# the test suite's smoke setting: seconds per run on a CPU (tests override the data folder)
configurations[199] = dict(
    _DEMO, max_iteration=4, im_size=(64, 64), batch_size=2, numbins=8, fc_channels=32,
    stats_num_images=20, stats_pixels_per_image=200, interval_validate=2, viz_images=2,
    workers=0,
)
# ... with colour-hint input (tests of the hint paths and the web page): larger squares anywhere and
# about 19 of them per image (P(none) = 1/20), so that a few hundred steps teach the tiny model to take
# colours from them (tests/conftest.py's hint_model, on photos whose colour only the hints tell)
configurations[198] = dict(configurations[199], hints=True, hint_patch=[6, 12], hint_positions='uniform',
                           hint_none_share=0.05)
# ... and the tiny version of 119 (recoloured, a hint branch reading the filled hints): the second hint chain
# of quality.py's tests
configurations[197] = dict(configurations[198], recolour_share=0.5, hint_branch=4, hint_fill=True)


# experiments/quality.py ("Does it generalise?"): the default chain and its one-change variants.
# A budget in minutes becomes iterations through the reference throughput below, so the same command
# trains the same iterations on any machine (a slower machine takes longer; bench/bench_quality.py
# prints this machine's rate against it).  The README's tables were made with these numbers.
QUALITY_EXPERIMENT = dict(
    chain=(('fcn32s', 110), ('fcn16s', 111), ('fcn8s', 112)),  # (architecture, config) of each stage
    # --hints: the candidate hint chains (configs of their FCN-32s, 16s and 8s stages, each chain after the
    # default chain's FCN-32s); the one whose hint model does best on validation becomes OUT/hints
    hint_chains=((113, 114, 115), (116, 117, 118), (122, 123, 124), (131, 132, 133)),   # 119, 125, 128: each
                                  # a step on the way to the next, measured (docs/hints.md) and dropped
    hint_chain_tolerance_db=0.3,  # --hints: a hint chain qualifies when its network with 0 points is within
                                  # this of the default model's PSNR (validation; issue 28's goal)
    hint_points=tuple(HINT_SWEEP['points']),  # --hints: the hint model's sweep on the test split
    hint_method_tolerance_db=0.1,  # --hints: a hint method qualifies as default within this of Levin (validation)
    val_max_side=1024,          # every validation score (the folds', their hint sweeps) and the learning
                                # curve's test scores on photos scaled to this long side (pixels; the network
                                # trains on 128-pixel crops of them): 8x faster than the 20-MP wallpapers
    budget_min=3.0,             # default budget of the whole chain, minutes of training on the reference CPU
                                # (3: the whole experiment, --variants all --learning-curve, within 60
                                # minutes on 2 cores; docs/quality.md)
    stage_shares=(0.25, 0.375, 0.375),  # share of the chain's budget per stage
    reference_images_per_s=(2.5, 2.5, 2.5),  # images/s per stage on 2 CPU cores (measured idle: 1.9 to 7.2)
    seeds=(0,),                 # seeds of every variant (the spread is over the folds; --seeds 0,1 adds one)
    # decoding variant: one model, five decodings: label -> (decode, temperature); 'annealed' is the
    # default's (DEFAULTS), T = 1 would be 'mean' and T -> 0 'mode'
    decodings={'annealed': ('annealed', DEFAULTS['temperature']), 'annealed-T0.2': ('annealed', 0.2),
               'annealed-T0.6': ('annealed', 0.6), 'mean': ('mean', None), 'mode': ('mode', None)},
    # variant -> arm -> --set overrides of the chain's first stage (same iterations as its FCN-32s);
    # arms of equal configs share one run (an arm equal to the default reuses the default chain's
    # FCN-32s).  'stages' (the chain with every seed) and 'decoding' (evaluations only) are built in.
    variants=dict(
        rebalance=dict(off=dict(rebalance_lambda=None), on=dict(rebalance_lambda=0.5)),
        gmm_space=dict(polar=dict(binning='soft', numbins=32, gmm_space='polar'),
                       plane=dict(binning='soft', numbins=32, gmm_space='plane')),
        augmentation=dict(off=dict(crops_per_photo=1, aug_crop_area=None, aug_hflip=False), on=dict()),
        binning=dict(gmm=dict(binning='soft', numbins=32), uniform=dict(binning='uniform', numbins=36)),
        numbins=dict(K16=dict(numbins=16), K36=dict(numbins=36), K64=dict(numbins=64)),  # uniform: 4x4, 6x6, 8x8
    ),
    variant_order=('stages', 'rebalance', 'gmm_space', 'augmentation', 'binning', 'numbins', 'decoding'),
    choose_on='auc_rebal',      # validation metric that picks an arm (higher is better)
    folds=4,                    # k of the cross-validation over the non-test photos (by photo); 1: split_val.txt
    # the rule that picks a stage, a decoding or an arm on the folds' means (experiments/quality_folds.py):
    # the highest mean `metric` among those whose plain AuC is within `auc_points` of grayscale's
    selection=dict(metric='auc_rebal', auc_points=1.0),
    # --learning-curve: the chain's stage `stage` (0: FCN-32s, the stage the variants compare) trained on
    # these shares of each fold's training photos, with the budget scaled by the share ('per_photo') or
    # kept ('fixed'); the whole share is the folds' own runs
    learning_curve=dict(shares=(0.25, 0.5), budgets=('per_photo', 'fixed'), stage=0),
    overrun_warning=2.0,        # warn when a run's wall time exceeds this multiple of its budget
)

# experiments/hint_curve.py (issue 28): the network's own hint gain (PSNR at `points` points minus at 0, on
# the validation photos) of each arm's FCN-32s, started from the default chain's FCN-32s and trained to
# `multiples` of the quality experiment's FCN-32s iterations.  Arms: (hint config, --set overrides).
HINT_CURVE = dict(
    arms=dict(   # arm -> (hint config, --set overrides, the stage it trains: from the default chain's model of it)
        first_layer=(113, dict(), 'fcn32s'),                    # hints enter at conv1_1 only, natural photos
        branch=(116, dict(recolour_share=0.0), 'fcn32s'),       # + the full-resolution hint branch
        branch_recoloured=(116, dict(), 'fcn32s'),              # + half of each batch recoloured
        branch_recoloured_all=(116, dict(recolour_share=1.0), 'fcn32s'),   # ... every image recoloured
        branch_recoloured_16s=(117, dict(), 'fcn16s'),          # the same on FCN-16s (pool4's 1/16 skip)
        branch_recoloured_8s=(118, dict(), 'fcn8s'),            # ... and on FCN-8s (pool3's 1/8 skip)
        filled=(119, dict(), 'fcn32s'),                         # branch_recoloured + the hints filled (fill_hints)
        filled_half_unhinted=(119, dict(hint_none_share=0.5), 'fcn32s'),   # ... half the natural images unhinted
        filled_edges=(122, dict(), 'fcn32s'),                   # filled, the fill spread along lightness edges
        filled_kept=(131, dict(), 'fcn32s'),    # filled_edges, the gate started to trust the fill, the rest kept
    ),
    multiples=(1, 4, 16),
    budget_min=5.0,   # 1x: the FCN-32s iterations of a chain of this budget (47; the quality default until 2026-12-07)
    points=10,
    seed=0,
)


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------

def show(value):
    """A value as the user wrote it in YAML: 'abc', [0, 0], null, true."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[%s]' % ', '.join(show(v) for v in value)
    return repr(value)


def unknown_key_message(key):
    close = difflib.get_close_matches(str(key), SCHEMA, n=3)
    return 'unknown config key %r%s' % (key, ' (did you mean %s?)' % ', '.join(close) if close else '')


def check_value(key, value, source=None):
    """``value`` as key ``key`` uses it, or ConfigError naming the key, the value and what is allowed."""
    prefix = '%s: ' % source if source else ''
    if key not in SCHEMA:
        raise ConfigError(prefix + unknown_key_message(key))
    spec = SCHEMA[key]
    accepted = spec.accept(value)
    if accepted is not REFUSED:
        return accepted
    if spec.noun == 'a number' and value is not None and not _is_number(value):
        raise ConfigError('%s%s: %s is not a number (must be %s)' % (prefix, key, show(value), spec.describe()))
    hint = ''
    if spec.choices and isinstance(value, str):
        close = difflib.get_close_matches(value, [str(c) for c in spec.choices], n=1, cutoff=0.5) \
            or [c for c in spec.choices if str(c).lower() == value.lower()]
        hint = ' (did you mean %s?)' % close[0] if close else ''
    raise ConfigError('%s%s: %s - must be %s%s' % (prefix, key, show(value), spec.describe(), hint))


def check_combinations(cfg):
    """Settings that are each fine but cannot go together (checked once binning and K are known)."""
    binning, numbins = cfg.get('binning'), cfg.get('numbins')
    if binning == 'uniform' and numbins is not None and math.isqrt(numbins) ** 2 != numbins:
        return 'numbins: %s - uniform binning needs a perfect square K >= 4 (4, 9, 16, ..., 256)' % show(numbins)
    if cfg.get('vgg16') and cfg.get('trunk_width', VGG16_TRUNK_WIDTH) != VGG16_TRUNK_WIDTH:
        return 'trunk_width: %s - VGG16 weights (vgg16: %s) need trunk_width %d' % (
            show(cfg['trunk_width']), show(cfg['vgg16']), VGG16_TRUNK_WIDTH)
    if cfg.get('hint_fill') and not (cfg.get('hints') and cfg.get('hint_branch')):
        return 'hint_fill: true - the filled hints feed the hint branch: it needs hints: true and hint_branch > 0'
    if cfg.get('hint_fill') and binning == 'one-hot':
        return 'hint_fill: true - the filled hints are scored on joint bins (soft or uniform binning), not one-hot'
    if cfg.get('hint_trunk_lr_mult', 1.0) != 1.0 and not (cfg.get('hints') and cfg.get('hint_branch')):
        return 'hint_trunk_lr_mult: %s - a hint model\'s rate outside its hint branch: it needs hints: true and ' \
            'hint_branch > 0' % show(cfg['hint_trunk_lr_mult'])
    if cfg.get('hint_branch_gated') and not cfg.get('hint_fill'):
        return 'hint_branch_gated: true - the branch is weighed by the filled hints\' reach: it needs hint_fill: true'
    if cfg.get('hint_gate_init') and not cfg.get('hint_fill'):
        return 'hint_gate_init: %s - the gate weighs the filled hints: it needs hint_fill: true' % show(
            cfg['hint_gate_init'])
    if binning == 'one-hot' and cfg.get('rebalance_lambda'):
        return ('rebalance_lambda: %s - class rebalancing needs joint bins (soft or uniform binning), '
                'not one-hot' % show(cfg['rebalance_lambda']))
    return None


def check_config(cfg, source=None, ignore_unknown=False):
    """``cfg`` with every value checked against SCHEMA (and normalised in place); returns it.

    ``source`` (a configuration, a checkpoint) starts the message; keys that
    are not settings (RUN_KEYS) pass, others are refused unless ``ignore_unknown``
    (a checkpoint of a newer version of this code).
    """
    for key in list(cfg):
        if key in RUN_KEYS or (ignore_unknown and key not in SCHEMA):
            continue
        cfg[key] = check_value(key, cfg[key], source)
    problem = check_combinations(cfg)
    if problem:
        raise ConfigError('%s: %s' % (source, problem) if source else problem)
    return cfg


# web page limits (issue 26)
# app.py: what one request may ask (app_limits.py checks it before any work) and how the sessions share
# the workers.  Painting the hint maps costs each square's area, so the squares of one photo's hints may
# cover at most APP_MAX_HINT_AREA times its pixels; a hint's square is at most the photo's longer side.
APP_MAX_HINTS = 500          # hints on one photo (a person clicks tens; Zhang et al.'s sweep stops at 50)
APP_MAX_HINT_AREA = 8        # the hints' squares together: at most this many times the photo's pixels
APP_WORKERS = 2              # requests colorized at once (a session's one at a time, the sessions in turn)
APP_SESSION_QUEUE = 4        # requests one session may have running or waiting; more are refused at once
