"""Fully convolutional VGG16 networks (FCN-32s/16s/8s) for colourisation.

The input is the lightness channel of a photo, ``[B, 1, H, W]`` (a hint model's: L plus the
hints' a, b and mask, ``[B, in_channels = 4, H, W]``); the output is
one score per colour bin and pixel, ``[B, n_class, H, W]``, at exactly the
input resolution.  The layout follows wkentaro/pytorch-fcn (same layer names
where they exist) with BatchNorm after every convolution and fixed (frozen)
bilinear upsamplers.

This module imports nothing from the project so a checkpoint can be used
without the trainer: ``build_model(arch, n_class, ...)`` + ``load_state_dict``.
"""
import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'get_upsampling_weight', 'fill_hints', 'FCN32sColor', 'FCN16sColor', 'FCN8sColor',
    'ARCHITECTURES', 'build_model', 'CheckpointError', 'load_checkpoint', 'load_vgg16',
]

# Output widths of conv1_1..conv5_3, one tuple per VGG16 block.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256),
                (512, 512, 512), (512, 512, 512))
VGG16_WIDTH = VGG16_BLOCKS[0][0]   # conv1's channels; the other blocks keep VGG16's ratios to it
IN_CHANNELS = 1          # lightness only (hint models: + the hints' a, b and mask = 4)
HINT_BRANCH_DILATIONS = (1, 2, 4)   # the full-resolution hint branch's 3x3 convolutions (receptive field 15)
HINT_FILL_CHANNELS = 3   # fill_hints: the filled (a, b) and the reach
CONV_KERNEL = 3          # every trunk convolution is 3x3
POOL_SIZE = 2            # pool1..pool5: 2x2 windows, stride 2, ceil mode
FC6_KERNEL = 7           # fc6 is VGG's first fully connected layer as a 7x7 conv
VGG_FC_CHANNELS = 4096   # width of VGG16's classifier.0 / classifier.3
DROPOUT_P = 0.5
PADDING_SCHEMES = ('same', 'caffe')
CAFFE_CONV1_1_PADDING = 100  # pytorch-fcn: lets any input survive fc6 unpadded


def trunk_blocks(width):
    """VGG16_BLOCKS with conv1's ``width`` channels instead of 64, every block in VGG16's proportion
    (64 -> VGG16 itself; 16 -> 16, 32, 64, 128, 128: a sixteenth of the compute, for tests and quick trials)."""
    return tuple(tuple(c * width // VGG16_WIDTH for c in block) for block in VGG16_BLOCKS)


def get_upsampling_weight(in_channels, out_channels, kernel_size):
    """Bilinear kernel for a ConvTranspose2d, diagonal in channels.

    Same formula as pytorch-fcn / Caffe's ``bilinear`` filler.
    Returns a float32 tensor of shape [in_channels, out_channels, k, k] whose
    [c, c] slices hold the 2D bilinear filter and all others are zero.
    """
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = np.ogrid[:kernel_size, :kernel_size]
    filt = ((1 - abs(og[0] - center) / factor)
            * (1 - abs(og[1] - center) / factor))
    weight = np.zeros((in_channels, out_channels, kernel_size, kernel_size),
                      dtype=np.float64)
    diag = np.arange(min(in_channels, out_channels))
    weight[diag, diag, :, :] = filt
    return torch.from_numpy(weight).float()


def _bilinear_upsampler(channels, stride):
    """Frozen bilinear ConvTranspose2d (kernel 2*stride), one filter per
    channel: weight [channels, 1, k, k].

    Same output as pytorch-fcn's dense diagonal [C, C, k, k] kernel
    (``get_upsampling_weight(C, C, k)``) but groups=C makes it C times smaller
    and cheaper (C=128, x32: 2 MiB instead of 256 MiB).
    """
    kernel = 2 * stride
    up = nn.ConvTranspose2d(channels, channels, kernel, stride=stride,
                            groups=channels, bias=False)
    with torch.no_grad():
        up.weight.copy_(get_upsampling_weight(1, 1, kernel).expand_as(up.weight))
    up.weight.requires_grad_(False)
    return up


def _hint_pyramid(plane, mask, lightness=None):
    """[(colour, weight, lightness)] per level, finest first: 2x2 sums down to one cell; a cell's colour
    the mean of its hinted children's, its weight 1 when one is hinted, its lightness their mean."""
    levels = []
    colour, weight, light = plane, mask, lightness
    while True:
        levels.append((colour, weight, light))
        if max(weight.shape[-2:]) == 1:
            return levels
        pad = (0, weight.shape[-1] % 2, 0, weight.shape[-2] % 2)
        total = F.avg_pool2d(F.pad(colour * weight, pad), POOL_SIZE) * POOL_SIZE ** 2
        count = F.avg_pool2d(F.pad(weight, pad), POOL_SIZE) * POOL_SIZE ** 2
        colour = total / count.clamp_min(1.0)   # weights are 0 or 1: a count of hinted cells
        weight = count.clamp_max(1.0)
        if light is not None:
            light = F.avg_pool2d(F.pad(light, pad, mode='replicate'), POOL_SIZE)


def _neighbours(t):
    """[B, C, H, W] -> [B, C, 9, H, W]: each pixel's 3x3 neighbourhood (edges replicated)."""
    b, c, h, w = t.shape
    return F.unfold(F.pad(t, (1, 1, 1, 1), mode='replicate'), CONV_KERNEL).view(b, c, CONV_KERNEL ** 2, h, w)


def _diffuse_along_edges(values, colour, weight, lightness, sigma, iterations):
    """Jacobi steps of edge-aware diffusion: each unhinted pixel becomes the mean of its 3x3 neighbours
    weighted by exp(-(lightness difference)^2 / 2 sigma^2); hinted pixels keep their colour."""
    similar = torch.exp(-(_neighbours(lightness) - lightness[:, :, None]) ** 2 / (2 * sigma ** 2))
    similar = similar / similar.sum(2, keepdim=True)
    for _ in range(iterations):
        values = weight * colour + (1 - weight) * (similar * _neighbours(values)).sum(2)
    return values


def fill_hints(plane, mask, lightness=None, edge_sigma=0.0, edge_iterations=0):
    """Push-pull fill (Gortler et al. 1996, "The Lumigraph"): the hints' colours carried to every pixel.

    plane [B, 2, H, W] (the hints' (a, b), 0 elsewhere), mask [B, 1, H, W] in {0, 1} ->
    [B, 3, H, W]: the filled (a, b) -- a hinted pixel keeps its colour, any other takes the
    mean colour of the hints in the smallest pyramid cell around it that holds one, blended
    bilinearly between levels (0 without hints) -- and the reach: the share of the pyramid's
    levels (2x2 sums, down to one cell) climbed from the pixel before a cell holds a hint (0 on
    a hint, about log2(distance to the nearest hint) / log2(size) elsewhere, 1 without hints).
    With ``edge_sigma`` > 0 and the ``lightness`` [B, 1, H, W], each level is then diffused
    ``edge_iterations`` times along the lightness edges (coarse to fine, a multigrid
    approximation of an edge-aware propagation such as Levin et al. 2004's).
    Parameter-free, so a hint branch that reads it learns only how far to trust it.
    """
    edges = edge_sigma > 0 and lightness is not None
    levels = _hint_pyramid(plane, mask, lightness if edges else None)
    filled, reach = levels[-1][0], 1 - levels[-1][1]
    for colour, weight, light in reversed(levels[:-1]):
        size = colour.shape[-2:]
        filled = weight * colour + (1 - weight) * F.interpolate(filled, size=size, mode='bilinear',
                                                                 align_corners=False)
        if edges:
            filled = _diffuse_along_edges(filled, colour, weight, light, edge_sigma, edge_iterations)
        reach = (1 - weight) * (1 + F.interpolate(reach, size=size, mode='bilinear', align_corners=False))
    return torch.cat([filled, reach / len(levels)], dim=1)


def bin_scores(plane, centres):
    """Colours as scores over colour bins, the log of a Gaussian soft encoding.

    plane [B, 2, H, W] (a, b) and the bins' centres [K, 2] on the chroma plane ->
    [B, K, H, W]: -(distance to the centre / spacing)^2 / 2, where spacing is the median
    distance from a centre to its nearest neighbour, so a softmax of them peaks at the
    colour's bins (all 0 while the centres are unset, all at 0).
    """
    gaps = torch.cdist(centres, centres) + torch.diag(torch.full_like(centres[:, 0], float('inf')))
    spacing = gaps.min(1).values.median()
    scale = torch.where(spacing > 0, 0.5 / spacing ** 2, torch.zeros_like(spacing))
    return (plane[:, None] - centres[None, :, :, None, None]).pow(2).sum(2) * -scale    # [B, K, H, W]


def _crop(t, offset, size):
    """Window ``t[..., o:o+h, o:o+w]`` of a [B, C, H', W'] map; fails if the
    window does not fit (slicing would otherwise silently shrink it)."""
    h, w = size
    if offset < 0 or offset + h > t.shape[-2] or offset + w > t.shape[-1]:
        raise RuntimeError(
            f'crop at offset {offset} of size {(h, w)} out of range for a '
            f'map of size {tuple(t.shape[-2:])}')
    return t[:, :, offset:offset + h, offset:offset + w]


class FCN32sColor(nn.Module):
    """FCN-32s colouriser: VGG16 trunk + score_fr + one 32x bilinear upsampler.

    forward: x [B, in_channels, H, W] -> scores [B, n_class, H, W]; channel 0
    is the lightness, a hint model's channels 1-3 the hints' chroma plane (a, b)
    and their mask (Zhang et al. 2017: hints enter at the first convolution).  With
    ``hint_branch`` channels (> 0, hint models) the input also goes through a small
    full-resolution branch (3x3 convolutions, dilations ``HINT_BRANCH_DILATIONS``) whose
    scores, zero-initialised, are added to the upsampled ones: a short path from a hint
    to the output at its own resolution.  With ``hint_fill`` the branch also reads
    :func:`fill_hints` of the hints (every pixel sees the nearest hints' colour however far
    they are; with ``fill_edge_sigma`` > 0 spread along the lightness edges) and adds that
    colour's :func:`bin_scores` (bins ``hint_bins``, set from the encoder by
    :meth:`set_hint_bins`) times a gate it computes, its weights zero-initialised and its
    bias ``gate_init``: how far to trust the filled colour at each pixel (0 without hints, whatever
    the gate, so a lightness-only model grown into it computes what it did while no hint is given).
    With ``branch_gated`` the branch's own scores are weighed alike: without hints it adds nothing,
    however it has learnt.

    padding='same' (default): conv1_1 pads 1 and fc6 pads 3, so no compute is
    spent on padding; the ceil-mode pools give pool5 size ceil(H/32).
    padding='caffe': pytorch-fcn's scheme (conv1_1 pads 100, fc6 unpadded,
    fixed Caffe crop offsets), for reproducing the original geometry.

    Crop offsets (pixels, applied to both spatial dims):
      * 'final': where the output window starts in the last upsampled map.
      * 'pool4'/'pool3': skip fusion. 'caffe' crops the (larger) skip score
        map to the upsampled size, 'same' crops the (larger) upsampled map to
        the skip size.
    'same' derivation: a 2x2/stride-2 pool puts output j at input 2j + 0.5,
    so a stride-s map has pixel j centred at s*j + (s-1)/2.  A transposed
    conv with the bilinear kernel 2s, stride s places j at output s*j + s -
    1/2 = (its input position) + s/2.  Hence offset = s/2: 16 for x32, 8 for
    x16, 4 for x8, 1 for each x2 skip fusion.  Every window is in range for
    any size: an upsampled map has s*ceil(n/s) + s >= n + s pixels.
    """

    CAFFE_OFFSETS = {'final': 19}
    SAME_OFFSETS = {'final': 16}
    SCORE_LAYERS = ('score_fr',)  # zero-initialised like pytorch-fcn

    def __init__(self, n_class=32, padding='same', fc_channels=4096, in_channels=IN_CHANNELS, hint_branch=0,
                 trunk_width=VGG16_WIDTH, hint_fill=False, fill_edge_sigma=0.0, fill_edge_iterations=0,
                 gate_init=0.0, branch_gated=False):
        super().__init__()
        if padding not in PADDING_SCHEMES:
            raise ValueError(f'padding must be one of {PADDING_SCHEMES}, '
                             f'got {padding!r}')
        if min(int(n_class), int(fc_channels), int(in_channels), int(trunk_width)) < 1:
            raise ValueError('n_class, fc_channels, in_channels and trunk_width must be positive, got '
                             f'{n_class}, {fc_channels}, {in_channels} and {trunk_width}')
        self.n_class = int(n_class)
        self.in_channels = int(in_channels)
        self.hint_branch_channels = int(hint_branch)
        if self.hint_branch_channels < 0 or (self.hint_branch_channels and self.in_channels < 2):
            raise ValueError(f'hint_branch must be 0, or positive with a hint input (in_channels > 1), got '
                             f'{hint_branch} with in_channels {in_channels}')
        self.hint_fill = bool(hint_fill)
        if self.hint_fill and not self.hint_branch_channels:
            raise ValueError('hint_fill needs a hint branch (hint_branch > 0)')
        self.fill_edge_sigma, self.fill_edge_iterations = float(fill_edge_sigma), int(fill_edge_iterations)
        self.gate_init, self.branch_gated = float(gate_init), bool(branch_gated)
        if self.branch_gated and not self.hint_fill:
            raise ValueError('branch_gated needs the fill (hint_fill): its reach weighs the branch')
        self.padding = padding
        self.fc_channels = int(fc_channels)
        self.trunk_width = int(trunk_width)
        self.blocks = trunk_blocks(self.trunk_width)
        caffe = padding == 'caffe'
        self.offsets = dict(self.CAFFE_OFFSETS if caffe else self.SAME_OFFSETS)

        # VGG16 trunk: conv{b}_{i} -> bn{b}_{i} -> ReLU, pool{b} after block b.
        self._trunk = []  # [(conv name, bn name), ...] per block, in order
        in_ch = self.in_channels
        for b, widths in enumerate(self.blocks, start=1):
            names = []
            for i, out_ch in enumerate(widths, start=1):
                pad = CAFFE_CONV1_1_PADDING if caffe and (b, i) == (1, 1) else 1
                setattr(self, f'conv{b}_{i}',
                        nn.Conv2d(in_ch, out_ch, CONV_KERNEL, padding=pad))
                setattr(self, f'bn{b}_{i}', nn.BatchNorm2d(out_ch))
                names.append((f'conv{b}_{i}', f'bn{b}_{i}'))
                in_ch = out_ch
            setattr(self, f'pool{b}',
                    nn.MaxPool2d(POOL_SIZE, stride=POOL_SIZE, ceil_mode=True))
            self._trunk.append(names)
        self.relu = nn.ReLU(inplace=True)

        # fc6/fc7: VGG's classifier as convolutions.
        fc6_pad = 0 if caffe else FC6_KERNEL // 2
        self.fc6 = nn.Conv2d(in_ch, self.fc_channels, FC6_KERNEL,
                             padding=fc6_pad)
        self.bn6 = nn.BatchNorm2d(self.fc_channels)
        self.drop6 = nn.Dropout2d(DROPOUT_P)
        self.fc7 = nn.Conv2d(self.fc_channels, self.fc_channels, 1)
        self.bn7 = nn.BatchNorm2d(self.fc_channels)
        self.drop7 = nn.Dropout2d(DROPOUT_P)
        self.score_fr = nn.Conv2d(self.fc_channels, self.n_class, 1)
        if self.hint_branch_channels:
            layers, width = [], self.in_channels + (HINT_FILL_CHANNELS if self.hint_fill else 0)
            for dilation in HINT_BRANCH_DILATIONS:
                layers += [nn.Conv2d(width, self.hint_branch_channels, CONV_KERNEL, padding=dilation,
                                     dilation=dilation), nn.ReLU(inplace=True)]
                width = self.hint_branch_channels
            layers.append(nn.Conv2d(width, self.n_class, 1))
            self.hint_branch = nn.Sequential(*layers)
        if self.hint_fill:
            self.hint_gate = nn.Conv2d(self.hint_branch_channels, 1, 1)
            self.register_buffer('hint_bins', torch.zeros(self.n_class, 2))

        self._build_head()
        self._init_weights()

    # -- architecture-specific parts (overridden by FCN16s/FCN8s) ----------
    def _build_head(self):
        self.upscore = _bilinear_upsampler(self.n_class, stride=32)

    def _decode(self, score_fr, feats):
        """score_fr [B, K, h32, w32] -> uncropped full-resolution scores."""
        return self.upscore(score_fr)

    # -- shared machinery ---------------------------------------------------
    def _init_weights(self):
        if self.conv1_1.weight.is_meta:  # a shapes-only skeleton (load_checkpoint): nothing to draw
            return
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                if name in self.SCORE_LAYERS:
                    nn.init.zeros_(m.weight)
                else:
                    nn.init.kaiming_normal_(m.weight, mode='fan_out',
                                            nonlinearity='relu')
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.hint_branch_channels:   # its scores start at zero: the network computes what it did without it
            nn.init.zeros_(self.hint_branch[-1].weight)
        if self.hint_fill:   # the gate's bias: how far the filled colour is trusted before any training
            nn.init.zeros_(self.hint_gate.weight)
            nn.init.constant_(self.hint_gate.bias, self.gate_init)
            # ConvTranspose2d upsamplers were set bilinear and frozen.

    def _fuse(self, up, skip, key):
        """Add an upsampled score map and a skip score map on their overlap."""
        off = self.offsets[key]
        if self.padding == 'caffe':
            return up + _crop(skip, off, up.shape[-2:])
        return _crop(up, off, skip.shape[-2:]) + skip

    def forward(self, x):
        """x: [B, in_channels, H, W] -> [B, n_class, H, W] (dense, same memory format
        as the network's activations)."""
        feats = {}
        h = x
        for b, names in enumerate(self._trunk, start=1):
            for conv, bn in names:
                h = self.relu(getattr(self, bn)(getattr(self, conv)(h)))
            h = getattr(self, f'pool{b}')(h)
            feats[f'pool{b}'] = h
        h = self.drop6(self.relu(self.bn6(self.fc6(h))))
        h = self.drop7(self.relu(self.bn7(self.fc7(h))))
        h = self._decode(self.score_fr(h), feats)
        fmt = (torch.channels_last
               if h.is_contiguous(memory_format=torch.channels_last)
               and not h.is_contiguous() else torch.contiguous_format)
        h = _crop(h, self.offsets['final'], x.shape[-2:])
        if self.hint_branch_channels:
            h = h + self.hint_scores(x)
        return h.contiguous(memory_format=fmt)

    def hint_scores(self, x):
        """The hint branch's scores [B, n_class, H, W] for the input x [B, in_channels, H, W]."""
        if not self.hint_fill:
            return self.hint_branch(x)
        filled = fill_hints(x[:, 1:3], x[:, 3:4], x[:, :1], self.fill_edge_sigma, self.fill_edge_iterations)
        features = self.hint_branch[:-1](torch.cat([x, filled], dim=1))
        near = 1 - filled[:, 2:]                                   # 0 without hints
        trusted = self.hint_gate(features) * near                  # ... whatever the gate
        own = self.hint_branch[-1](features)
        return (own * near if self.branch_gated else own) + trusted * bin_scores(filled[:, :2], self.hint_bins)

    def set_hint_bins(self, centres):
        """The colour bins' centres [n_class, 2] on the chroma plane, for the filled hints' scores."""
        centres = torch.as_tensor(centres, dtype=self.hint_bins.dtype)
        if centres.shape != self.hint_bins.shape:
            raise ValueError(f'hint bins: expected {tuple(self.hint_bins.shape)}, got {tuple(centres.shape)}')
        self.hint_bins.copy_(centres)

    def _trunk_convs(self):
        return [conv for names in self._trunk for conv, _ in names]

    def copy_params_from_vgg16(self, state_dict):
        """Initialise the trunk (and fc6/fc7) from a torchvision VGG16.

        state_dict: a ``vgg16`` or ``vgg16_bn`` state dict (already loaded by
        the caller). conv1_1's RGB weights are averaged to one input channel
        (a hint model's other input channels start at zero);
        BN parameters/statistics are copied for vgg16_bn; classifier.0/.3
        become fc6 [4096, 512, 7, 7] / fc7 [4096, 4096, 1, 1] only when
        fc_channels == 4096. Returns the list of state_dict keys written.
        """
        if self.trunk_width != VGG16_WIDTH:
            raise ValueError(f'VGG16 weights need trunk_width {VGG16_WIDTH}, this network has {self.trunk_width}')
        copy_fc = self.fc_channels == VGG_FC_CHANNELS
        convs, bns = _parse_vgg16_state_dict(state_dict, require_fc=copy_fc)
        dst = self.state_dict()
        copied = []

        def put(key, value):
            with torch.no_grad():
                dst[key].copy_(value.reshape(dst[key].shape))
            copied.append(key)

        for idx, (name, src) in enumerate(zip(self._trunk_convs(), convs)):
            w = state_dict[f'features.{src}.weight']
            if idx == 0:  # RGB -> lightness: average over input channels
                w = widen_input_weight(w.float().mean(dim=1, keepdim=True), self.in_channels)
            put(f'{name}.weight', w)
            put(f'{name}.bias', state_dict[f'features.{src}.bias'])
        bn_names = [bn for names in self._trunk for _, bn in names]
        for name, src in zip(bn_names, bns):
            for field in ('weight', 'bias', 'running_mean', 'running_var',
                          'num_batches_tracked'):
                if f'features.{src}.{field}' in state_dict:
                    put(f'{name}.{field}', state_dict[f'features.{src}.{field}'])

        if copy_fc:
            for name, src in (('fc6', 'classifier.0'), ('fc7', 'classifier.3')):
                put(f'{name}.weight', state_dict[f'{src}.weight'])
                put(f'{name}.bias', state_dict[f'{src}.bias'])
        else:
            warnings.warn(f'fc_channels={self.fc_channels} != '
                          f'{VGG_FC_CHANNELS}: fc6/fc7 not copied from VGG16')
        return copied

    def copy_params_from(self, other):
        """Every tensor of a trained network of this architecture (``--init``); a
        lightness-only one's conv1_1 is widened with zeros for a hint model."""
        return self._copy_shared_state(other, type(self))

    def _copy_shared_state(self, other, expected_type):
        """Copy every state_dict entry (params and buffers) that ``other``
        shares with ``self`` by key. Returns the list of keys copied."""
        if not isinstance(other, expected_type):
            raise TypeError(f'expected a {expected_type.__name__}, '
                            f'got {type(other).__name__}')
        # a hint branch may be new (it stays at zero)
        for attr in ('n_class', 'padding', 'fc_channels', 'trunk_width'):
            if getattr(self, attr) != getattr(other, attr):
                raise ValueError(f'{attr} differs: {getattr(self, attr)!r} '
                                 f'(self) vs {getattr(other, attr)!r} (source)')
        if other.in_channels > self.in_channels:
            raise ValueError(f'in_channels: a {self.in_channels}-channel network cannot start '
                             f'from a {other.in_channels}-channel one')
        dst, src = self.state_dict(), other.state_dict()
        src['conv1_1.weight'] = widen_input_weight(src['conv1_1.weight'], self.in_channels)
        shared = [k for k in src if k in dst]
        for k in shared:
            if dst[k].shape != src[k].shape:
                raise ValueError(f'shape mismatch for {k}: '
                                 f'{tuple(dst[k].shape)} vs {tuple(src[k].shape)}')
        with torch.no_grad():
            for k in shared:
                dst[k].copy_(src[k])
        return shared


class FCN16sColor(FCN32sColor):
    """FCN-16s: x2 upsampled score_fr + score_pool4, then x16 upsampling.

    forward: x [B, in_channels, H, W] -> [B, n_class, H, W].
    """

    CAFFE_OFFSETS = {'pool4': 5, 'final': 27}
    SAME_OFFSETS = {'pool4': 1, 'final': 8}
    SCORE_LAYERS = ('score_fr', 'score_pool4')

    def _build_head(self):
        pool4_ch = self.blocks[3][-1]
        self.score_pool4 = nn.Conv2d(pool4_ch, self.n_class, 1)
        self.upscore2 = _bilinear_upsampler(self.n_class, stride=2)
        self.upscore16 = _bilinear_upsampler(self.n_class, stride=16)

    def _decode(self, score_fr, feats):
        h = self._fuse(self.upscore2(score_fr),
                       self.score_pool4(feats['pool4']), 'pool4')
        return self.upscore16(h)

    def copy_params_from_fcn32s(self, fcn32s):
        """Copy trunk, BN statistics and score_fr from a trained FCN32sColor
        with the same n_class/padding/fc_channels. Returns keys copied."""
        return self._copy_shared_state(fcn32s, FCN32sColor)


class FCN8sColor(FCN16sColor):
    """FCN-8s: FCN-16s fusion, then x2 + score_pool3, then x8 upsampling.

    forward: x [B, in_channels, H, W] -> [B, n_class, H, W].
    """

    CAFFE_OFFSETS = {'pool4': 5, 'pool3': 9, 'final': 31}
    SAME_OFFSETS = {'pool4': 1, 'pool3': 1, 'final': 4}
    SCORE_LAYERS = ('score_fr', 'score_pool4', 'score_pool3')

    def _build_head(self):
        pool3_ch, pool4_ch = self.blocks[2][-1], self.blocks[3][-1]
        self.score_pool4 = nn.Conv2d(pool4_ch, self.n_class, 1)
        self.score_pool3 = nn.Conv2d(pool3_ch, self.n_class, 1)
        self.upscore2 = _bilinear_upsampler(self.n_class, stride=2)
        self.upscore_pool4 = _bilinear_upsampler(self.n_class, stride=2)
        self.upscore8 = _bilinear_upsampler(self.n_class, stride=8)

    def _decode(self, score_fr, feats):
        h = self._fuse(self.upscore2(score_fr),
                       self.score_pool4(feats['pool4']), 'pool4')
        h = self._fuse(self.upscore_pool4(h),
                       self.score_pool3(feats['pool3']), 'pool3')
        return self.upscore8(h)

    def copy_params_from_fcn16s(self, fcn16s):
        """Copy trunk, BN statistics, score_fr, score_pool4 and upscore2 from
        a trained FCN16sColor with the same configuration. Returns keys."""
        return self._copy_shared_state(fcn16s, FCN16sColor)


def _parse_vgg16_state_dict(state_dict, require_fc):
    """Validate a torchvision vgg16 / vgg16_bn state dict (with classifier.0
    and classifier.3 if ``require_fc``).

    Returns (conv indices, bn indices) into ``features``, in order; bn indices
    is empty for plain vgg16. Raises ValueError for any other layout.
    """
    def fail(why):
        raise ValueError('expected a torchvision vgg16 or vgg16_bn state dict '
                         f'(features.N.* / classifier.N.*): {why}')

    if not isinstance(state_dict, Mapping):
        fail(f'got a {type(state_dict).__name__}')
    idx = set()
    for k in state_dict:
        parts = str(k).split('.')
        if len(parts) == 3 and parts[0] == 'features' and parts[1].isdigit():
            idx.add(int(parts[1]))
    convs = [i for i in sorted(idx)
             if getattr(state_dict.get(f'features.{i}.weight'), 'ndim', 0) == 4]
    bns = [i for i in sorted(idx) if f'features.{i}.running_mean' in state_dict]
    widths = [w for block in VGG16_BLOCKS for w in block]
    if len(convs) != len(widths):
        fail(f'found {len(convs)} conv layers, VGG16 has {len(widths)}')
    in_ch = 3  # VGG16 takes RGB
    for i, out_ch in zip(convs, widths):
        shape = tuple(state_dict[f'features.{i}.weight'].shape)
        if shape != (out_ch, in_ch, CONV_KERNEL, CONV_KERNEL):
            fail(f'features.{i}.weight has shape {shape}')
        if f'features.{i}.bias' not in state_dict:
            fail(f'features.{i}.bias missing')
        in_ch = out_ch
    if bns and bns != [i + 1 for i in convs]:
        fail('BatchNorm layers do not follow every conv (vgg16_bn layout)')
    for b in bns:
        for field in ('weight', 'bias', 'running_var'):
            if f'features.{b}.{field}' not in state_dict:
                fail(f'features.{b}.{field} missing')
    fc_shapes = {'classifier.0.weight': (VGG_FC_CHANNELS, 512 * FC6_KERNEL ** 2),
                 'classifier.3.weight': (VGG_FC_CHANNELS, VGG_FC_CHANNELS)}
    for k, shape in fc_shapes.items():
        if k not in state_dict:
            if require_fc:
                fail(f'{k} missing')
        elif tuple(state_dict[k].shape) != shape:
            fail(f'{k} has shape {tuple(state_dict[k].shape)}')
        elif require_fc and k.replace('weight', 'bias') not in state_dict:
            fail(f"{k.replace('weight', 'bias')} missing")
    return convs, bns


ARCHITECTURES = {'fcn32s': FCN32sColor, 'fcn16s': FCN16sColor,
                 'fcn8s': FCN8sColor}


def build_model(arch, n_class, *args, **kwargs):
    """Instantiate ``ARCHITECTURES[arch]`` (e.g. 'fcn8s'); the other arguments are FCN32sColor's."""
    if arch not in ARCHITECTURES:
        raise ValueError(f'unknown arch {arch!r}; choose from '
                         f'{sorted(ARCHITECTURES)}')
    return ARCHITECTURES[arch](n_class, *args, **kwargs)


def widen_input_weight(weight, in_channels):
    """conv1_1 weights [64, c, 3, 3] -> [64, in_channels, 3, 3], the new input channels zero.

    A hint model started from a lightness-only one therefore computes exactly
    what that model computed while no hints are given.
    """
    extra = in_channels - weight.shape[1]
    if extra <= 0:
        return weight
    return torch.cat([weight, weight.new_zeros((weight.shape[0], extra) + tuple(weight.shape[2:]))], dim=1)


# --------------------------------------------------------------------------
# checkpoints of these networks (no trainer needed to use one)
# --------------------------------------------------------------------------

CHECKPOINT_KEYS = ('arch', 'model_kwargs', 'model_state_dict', 'encoder', 'im_size')
LISTED_NAMES = 3  # tensor names quoted in a message about a mismatched state dict


class CheckpointError(ValueError):
    """A file given as a checkpoint or VGG16 state dict that is not one; the message names the file."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """The file does not exist."""


def _read_torch_file(path, what, mmap=False):
    """``torch.load(path, weights_only=True)`` on the CPU; CheckpointError naming the file if it is not one."""
    if os.path.isdir(path):
        raise CheckpointError('%s is a folder, not a %s file' % (path, what))
    if not os.path.isfile(path):
        raise CheckpointNotFound('%s %s does not exist' % (what, path))
    if not os.access(path, os.R_OK):
        raise CheckpointError('%s: %s cannot be read (no permission)' % (path, what))
    try:
        try:
            return torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
        except RuntimeError as err:  # files of torch < 1.6 (no zip archive) cannot be memory-mapped
            if not mmap or 'mmap' not in str(err):
                raise
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # a file that is not a torch save fails in many ways (pickle, zip, EOF ...)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ''
        raise CheckpointError('%s cannot be read as a %s: truncated or not a torch file (%s: %s)'
                              % (path, what, type(err).__name__, first_line[:200])) from None


def _names(keys):
    keys = sorted(keys)
    more = ' and %d more' % (len(keys) - LISTED_NAMES) if len(keys) > LISTED_NAMES else ''
    return ', '.join(keys[:LISTED_NAMES]) + more


def check_state_dict(state_dict, model, path):
    """CheckpointError naming ``path`` and the missing, unexpected or misshaped tensors, if any."""
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError('%s: model_state_dict is not a dict of tensors' % path)
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state_dict), set(state_dict) - set(expected)
    misshaped = ['%s %s (expected %s)' % (k, tuple(state_dict[k].shape), tuple(v.shape))
                 for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    problems = (['missing %s' % _names(missing)] if missing else []) \
        + (['unexpected %s' % _names(unexpected)] if unexpected else []) \
        + (['misshaped %s' % _names(misshaped)] if misshaped else [])
    if problems:
        raise CheckpointError('%s: its weights do not fit a %s%s: %s' % (
            path, type(model).__name__, ' with these model_kwargs' if not missing else '', '; '.join(problems)))


def load_checkpoint(path):
    """A colorizer-fcn checkpoint as a dict, read with ``weights_only=True`` (no code runs).

    Raises :class:`CheckpointError` naming ``path`` for a missing file, a file
    torch cannot read safely (truncated, another format), another program's
    checkpoint, an unknown architecture, or weights that do not fit it
    (missing, unexpected or misshaped tensors).
    """
    ckpt = _read_torch_file(path, 'checkpoint')
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError('%s is not a colorizer-fcn checkpoint (no %s)' % (path, ', '.join(missing)))
    if ckpt['arch'] not in ARCHITECTURES:
        raise CheckpointError('%s: unknown architecture %r (this code builds %s)'
                              % (path, ckpt['arch'], ', '.join(ARCHITECTURES)))
    if not isinstance(ckpt['model_kwargs'], dict):
        raise CheckpointError('%s: model_kwargs is not a dict' % path)
    try:
        with torch.device('meta'):  # shapes only: no memory, no initialisation cost
            skeleton = build_model(ckpt['arch'], **ckpt['model_kwargs'])
    except (TypeError, ValueError) as err:
        raise CheckpointError('%s: its model_kwargs %r do not build a %s (%s)'
                              % (path, ckpt['model_kwargs'], ckpt['arch'], err)) from None
    check_state_dict(ckpt['model_state_dict'], skeleton, path)
    return ckpt


def load_vgg16(path, require_fc):
    """A torchvision vgg16 / vgg16_bn state dict from ``path`` (memory-mapped when possible), checked.

    ``require_fc``: classifier.0 / classifier.3 must be there (fc6 / fc7 are
    copied).  Raises :class:`CheckpointError` naming ``path`` for anything else.
    """
    state_dict = _read_torch_file(path, 'VGG16 state dict', mmap=True)
    try:
        _parse_vgg16_state_dict(state_dict, require_fc)
    except ValueError as err:
        raise CheckpointError('%s: %s' % (path, err)) from None
    return state_dict


def model_from_checkpoint(ckpt):
    """Rebuild the network of a checkpoint dict (weights loaded, train mode)."""
    model = build_model(ckpt['arch'], **ckpt['model_kwargs'])
    model.load_state_dict(ckpt['model_state_dict'])
    return model
