"""Colorize any photo with a trained checkpoint.

    python colorize.py -m logs/RUN/model_best.pth.tar [--decode annealed|mean|mode] [-T 0.38]
                       [-o OUTDIR] [--side-by-side] [--edge-aware] INPUT...
    python colorize.py -m CHECKPOINT --hints FILE [--hint-method NAME] [-o OUTDIR] PHOTO


INPUT: image files or folders (searched recursively).  Every input, colour or
grey, of any size and any format PIL reads (EXIF orientation applied), gives
``OUTDIR/<name>.png`` at its own width and height: the network sees its
lightness resized to the checkpoint's ``im_size``; the predicted colours are
upsampled on the chroma plane and recombined with the full-resolution lightness.
An unreadable input is reported and skipped.  Exit status: 0 when every input
was colorized, 1 when some could not be read (the others are still written; the
summary line counts them), 2 for a usage error (one ``error:`` line).

``--hints FILE`` (any checkpoint, one photo): a JSON file
``{"points": [{"x": 412, "y": 96, "color": "#3b7dd8", "size": 9}, ...]}`` (x, y
in the photo's pixels from its top-left corner, after EXIF rotation; ``size``
the side of the hint square, optional) or a PNG of the photo's size,
transparent where there is no hint.  The network predicts (a hint model with
the hints as input), then the hints' colours are spread along lightness edges
and fused with the prediction (``--hint-method``, default the checkpoint's
``hint_method``; see ``propagate.py``); the hints' own squares keep their hue
and chroma, the photo its own lightness.  A point outside the photo, a colour
that is none, a malformed file or a hint image of another size: one ``error:``
line, exit 2, nothing written.

``load_colorizer`` / :class:`Colorizer` are the library side (``evaluate.py`` uses them).
"""
import argparse
import hashlib
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import cli
import config
import data_loader
import hints as hint_input
import levin
import models
import propagate
import targets
import utils

DEFAULT_OUT_DIR = os.path.join('out', 'colorized')
RECOMBINE_BLOCK_PIXELS = 1 << 19  # full-resolution colour maths in blocks of ~0.5 MP
PNG_COMPRESSION = 1               # zlib level of the PNGs written: fast (12 MP in about a second), same pixels
SUGGESTED_LIGHTNESS = (0.3, 0.7)  # palette swatches: the pixel's L, kept where most chroma survives


class Colorizer:
    """A trained network and its colour encoder (from one checkpoint), on one device.

    Images go in as uint8 numpy ``[H, W, 3]``; everything at full resolution is
    torch float32 on ``device``.  The three steps are public so that
    ``evaluate.py`` can run its baselines through exactly the model's path:
    :meth:`lightness` -> :meth:`predicted_planes` (or :meth:`target_planes`) ->
    :meth:`recombine`.
    """

    def __init__(self, model, encoder, im_size, device, checkpoint_config=None):
        self.model, self.encoder = model, encoder
        self.im_size = tuple(int(s) for s in im_size)
        self.device = torch.device(device)
        self.config = dict(checkpoint_config or {})
        self._last_probs = None   # (key of a photo's lightness, its probabilities): see _photo_probabilities

    @property
    def takes_hints(self):
        """Whether the network was trained with colour-hint input (L + a, b, mask)."""
        return getattr(self.model, 'in_channels', 1) > 1

    @property
    def hint_method(self):
        """How hints are spread and fused with the prediction (``propagate.HINT_METHODS``): the
        checkpoint's ``hint_method``, or the default for checkpoints written before it existed."""
        return self.config.get('hint_method') or config.DEFAULTS['hint_method']

    @property
    def decoding(self):
        """(decode, temperature) that the checkpoint's config asks for (``decode``, ``temperature``: what
        experiments/quality.py chose on validation for its default model), else annealed at the default T."""
        return (self.config.get('decode') or config.DEFAULTS['decode'],
                self.config.get('temperature') or config.DEFAULTS['temperature'])

    def full_hint_maps(self, hints, height, width):
        """Points / a hint image (see ``hints``) -> torch maps on the device: (a, b) ``[2, H, W]``, mask ``[H, W]``."""
        plane, mask = hint_input.hint_maps(hints, width, height)
        return torch.from_numpy(plane).to(self.device), torch.from_numpy(mask).to(self.device)

    def lightness(self, rgb_uint8):
        """uint8 ``[H, W, 3]`` -> L = V - C/2 = (max + min) / 2 ``[H, W]`` in [0, 1]."""
        rgb = torch.from_numpy(np.array(rgb_uint8, dtype=np.uint8)).to(self.device)  # a writable copy
        return (rgb.amax(-1).float() + rgb.amin(-1).float()).div_(510.0)

    @torch.no_grad()
    def probabilities(self, lightnesses, hint_maps=None):
        """Full-resolution L maps ``[H_i, W_i]`` (+ a hint model's full-resolution hint maps, one
        pair per image, or None for an image without hints) -> bin probabilities ``[B, K, h, w]`` at im_size.

        Only L (and the hints) reach the network, resized with an antialiased
        bilinear filter (hints: area averages), so a colour photo and its grey
        version get the same colours.
        """
        small = torch.stack([F.interpolate(l[None, None], size=self.im_size, mode='bilinear',
                                           align_corners=False, antialias=True)[0, 0]
                             for l in lightnesses])
        net_input = self.encoder.lightness_input(small)
        if self.takes_hints:
            no_hints = (small.new_zeros((1, 2) + self.im_size), small.new_zeros((1, 1) + self.im_size))
            planes, masks = zip(*[no_hints if maps is None else
                                  hint_input.reduce_hint_maps(maps[0][None], maps[1][None, None], self.im_size)
                                  for maps in (hint_maps or [None] * len(lightnesses))])
            net_input = hint_input.network_input(net_input, torch.cat(planes), torch.cat(masks))
        return self.encoder.probabilities(self.model(net_input))

    @torch.no_grad()
    def predicted_planes(self, lightnesses, method='annealed', temperature=utils.DEFAULT_TEMPERATURE,
                         hint_maps=None):
        """Full-resolution L maps ``[H_i, W_i]`` -> predicted chroma plane ``[B, 2, h, w]`` at im_size."""
        hue, chroma = self.encoder.bins.decode(self.probabilities(lightnesses, hint_maps), method, temperature)
        return utils.hue_chroma_to_plane(hue, chroma)

    def propagated_planes(self, lightness, hint_maps, probs, methods, method='annealed',
                          temperature=utils.DEFAULT_TEMPERATURE):
        """One photo's L ``[H, W]``, full-resolution hint maps and bin probabilities ``[K, h, w]`` (the
        network's, with those hints where it takes them) -> {arm: chroma plane ``[2, h', w']``} at the
        working size (``config.HINT_PROPAGATION``), for each arm of ``propagate.HINT_METHODS`` in ``methods``."""
        prediction = self._decoded(probs, method, temperature)
        size = propagate.working_size(*lightness.shape, config.HINT_PROPAGATION['side'])
        small_plane, hinted = propagate.resize_hints(*hint_maps, size)
        certainty = None
        if 'confidence' in propagate.arms_needed(methods):
            heads = 2 if self.encoder.binning == 'one-hot' else 1
            certainty = propagate.resize_plane(propagate.confidence(probs, heads)[None], size)[0]
        fused = propagate.fused_planes(methods, propagate.resize_lightness(lightness, size), small_plane, hinted,
                                       propagate.resize_plane(prediction, size), certainty)
        return {m: torch.from_numpy(p).float().to(self.device) for m, p in fused.items()}

    @torch.no_grad()
    def hinted_outputs(self, lightness, hint_maps, methods, method='annealed', temperature=utils.DEFAULT_TEMPERATURE):
        """One photo's L ``[H, W]`` and full-resolution hint maps -> {arm: uint8 RGB ``[H, W, 3]``}.

        ``methods``: arms of ``propagate.HINT_METHODS`` (the fused plane upsampled edge-aware, the hints'
        squares pasted) and ``'model'`` (the network's own prediction, bilinear, squares pasted).  With no
        hinted pixel every arm is the automatic colorization, bit for bit, except ``levin`` (grey).
        """
        probs = self._photo_probabilities(lightness, hint_maps)
        outputs = {}
        if not bool((hint_maps[1] > 0).any()):
            automatic = self.recombine(self._decoded(probs, method, temperature), lightness)
            grey = self.recombine(torch.zeros(2, 1, 1, device=self.device), lightness)
            return {m: grey if m == 'levin' else automatic for m in methods}
        if 'model' in methods:
            outputs['model'] = self.recombine(self._decoded(probs, method, temperature), lightness, hint_maps)
        arms = [m for m in methods if m != 'model']
        for m, plane in self.propagated_planes(lightness, hint_maps, probs, arms, method, temperature).items():
            outputs[m] = self.recombine(plane, lightness, hint_maps, edge_aware=True)
        return {m: outputs[m] for m in methods}

    def _photo_probabilities(self, lightness, hint_maps):
        """One photo's bin probabilities ``[K, h, w]``; a lightness-only network's are kept for the last
        photo (the web page re-colorizes one photo on every click: its prediction does not change)."""
        if self.takes_hints:
            return self.probabilities([lightness], [hint_maps])[0]
        key = hashlib.blake2b(lightness.cpu().numpy().tobytes(), digest_size=16).digest()
        if self._last_probs is None or self._last_probs[0] != key:
            self._last_probs = (key, self.probabilities([lightness])[0])
        return self._last_probs[1]

    def _decoded(self, probs, method, temperature):
        """Bin probabilities ``[K, h, w]`` -> chroma plane ``[2, h, w]``."""
        return utils.hue_chroma_to_plane(*self.encoder.bins.decode(probs[None], method, temperature))[0]

    @torch.no_grad()
    def target_planes(self, rgbs, method='annealed', temperature=utils.DEFAULT_TEMPERATURE):
        """The originals through the bin encoding (as in training: RGB resized, low-pass) and
        decoded: the best this binning can do, chroma plane ``[B, 2, h, w]``."""
        height, width = self.im_size
        small = np.stack([np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))
                          for rgb in rgbs])
        _, target = self.encoder.encode(torch.from_numpy(small).permute(0, 3, 1, 2).to(self.device))
        if self.encoder.binning == 'one-hot':  # labels [B, 2, h, w] -> one-hot per head [B, 2K, h, w]
            target = torch.cat([F.one_hot(target[:, i], self.encoder.num_bins).permute(0, 3, 1, 2)
                                for i in range(2)], 1).float()
        hue, chroma = self.encoder.bins.decode(target.float(), method, temperature)
        return utils.hue_chroma_to_plane(hue, chroma)

    @torch.no_grad()
    def recombine(self, plane, lightness, hint_maps=None, edge_aware=False):
        """Chroma plane ``[2, h, w]`` + full-resolution L ``[H, W]`` -> uint8 RGB ``[H, W, 3]``.

        The plane is upsampled bilinearly (no hue-seam artefacts), or with
        ``edge_aware`` by the guided filter's linear model fitted at the coarse
        size (levin.coarse_fit_guided_upsample), so colour edges follow the
        lightness edges.  Full-resolution hint maps ``(plane [2, H, W], mask [H, W])``
        are then applied on their squares.  hcl_to_rgb limits chroma to what L
        allows, so the output keeps L.
        """
        height, width = lightness.shape
        if edge_aware:
            radius, eps = config.EDGE_AWARE['radius'], config.EDGE_AWARE['eps']
            ab = torch.from_numpy(levin.coarse_fit_guided_upsample(
                lightness.cpu().numpy(), plane.float().cpu().numpy(), radius, eps)).float().to(lightness.device)
        else:
            ab = F.interpolate(plane[None].float(), size=(height, width), mode='bilinear', align_corners=False)[0]
        if hint_maps is not None:
            hint_plane, hint_mask = hint_maps
            ab = torch.where(hint_mask > 0, hint_plane, ab)
        out = torch.empty(height, width, 3, dtype=torch.uint8, device=lightness.device)
        rows = max(1, RECOMBINE_BLOCK_PIXELS // width)
        for top in range(0, height, rows):  # blocks that stay in cache: 3-5x faster on a CPU
            l = lightness[top:top + rows]
            hue, chroma = utils.plane_to_hue_chroma(ab[:, top:top + rows])
            out[top:top + rows] = utils.hcl_to_rgb(hue, chroma, l).mul_(255.0).round_().permute(1, 2, 0)
        return out.cpu().numpy()

    def colorize(self, rgbs, method='annealed', temperature=utils.DEFAULT_TEMPERATURE, hints=None,
                 edge_aware=False, hint_method=None):
        """List of uint8 ``[H_i, W_i, 3]`` (any colours) -> list of colorized uint8, same sizes.

        One image ``[H, W, 3]`` gives one image.  ``hints``: for one image its
        points (dicts as in the hint JSON) or RGBA hint image; for a list, one
        such entry (or None) per image.  Hints work with every checkpoint: they are
        spread and fused with the prediction by ``hint_method`` (default: the
        checkpoint's, :attr:`hint_method`; see ``propagate``).  An image without
        a hinted pixel gets the automatic colorization.
        """
        if isinstance(rgbs, np.ndarray) and rgbs.ndim == 3:
            return self.colorize([rgbs], method, temperature, None if hints is None else [hints], edge_aware,
                                 hint_method)[0]
        hint_method = hint_method or self.hint_method
        hints = [None] * len(rgbs) if hints is None else list(hints)
        lightnesses = [self.lightness(rgb) for rgb in rgbs]
        maps = [None if h is None else self.full_hint_maps(h, *l.shape) for h, l in zip(hints, lightnesses)]
        maps = [m if m is not None and bool((m[1] > 0).any()) else None for m in maps]
        automatic = [i for i, m in enumerate(maps) if m is None]
        planes = self.predicted_planes([lightnesses[i] for i in automatic], method, temperature) if automatic else []
        out = [None] * len(rgbs)
        for i, plane in zip(automatic, planes):
            out[i] = self.recombine(plane, lightnesses[i], None, edge_aware)
        for i, m in enumerate(maps):
            if m is not None:
                out[i] = self.hinted_outputs(lightnesses[i], m, [hint_method], method, temperature)[hint_method]
        return out

    @torch.no_grad()
    def suggest_colors(self, rgb, x, y, hints=None, count=8):
        """The ``count`` most likely colours at pixel (x, y) under the model (with ``hints``), as
        '#rrggbb', most likely first: the bins' centres at the pixel's lightness (Zhang et al.'s palette)."""
        lightness = self.lightness(rgb)
        height, width = lightness.shape
        maps = self.full_hint_maps(hints, height, width) if hints is not None and self.takes_hints else None
        probs = self._photo_probabilities(lightness, maps)
        h, w = probs.shape[-2:]
        p = probs[:, min(h - 1, int(y * h / height)), min(w - 1, int(x * w / width))].float().cpu()
        if self.encoder.binning == 'one-hot':
            k, centres = self.encoder.num_bins, self.encoder.bins.bin_centres
            joint = (p[:k, None] * p[None, k:]).reshape(-1)
            order = torch.argsort(joint, descending=True)
            hc = torch.stack([centres[order // k], centres[order % k]], 1)
        else:
            hc = self.encoder.bins.centres[torch.argsort(p, descending=True)]
        low, high = SUGGESTED_LIGHTNESS
        l = torch.full((len(hc),), float(lightness[int(y), int(x)].clamp(low, high)))
        rgbs = utils.to_uint8(utils.hue_chroma_to_rgb(hc[:, 0].reshape(-1, 1), hc[:, 1].reshape(-1, 1),
                                                      l.reshape(-1, 1)).reshape(3, -1).T)
        colours = []
        for r, g, b in rgbs.tolist():
            hexed = '#%02x%02x%02x' % (r, g, b)
            if hexed not in colours:
                colours.append(hexed)
        return colours[:count]


def load_colorizer(path, device='cpu'):
    """``checkpoint.pth.tar`` / ``model_best.pth.tar`` -> :class:`Colorizer` in eval mode on ``device``.

    Refuses (``models.CheckpointError`` / ``config.ConfigError``, naming the file)
    a checkpoint whose network outputs do not fit its colour bins or whose config
    does not pass config.SCHEMA.
    """
    ckpt = models.load_checkpoint(path)
    if ckpt.get('config') is not None:  # keys added since it was written: as a resume sees them
        config.check_config({**config.DEFAULTS, **config.RESUME_DEFAULTS, **ckpt['config']},
                            '%s (its config)' % path, ignore_unknown=True)
    encoder = targets.ColorEncoder.from_state(ckpt['encoder'])
    n_class = ckpt['model_kwargs'].get('n_class')
    if n_class != encoder.num_outputs or ckpt.get('num_bins', encoder.num_bins) != encoder.num_bins:
        raise models.CheckpointError('%s: the network has %d outputs, its %s binning with K=%d needs %d'
                         % (path, n_class, encoder.binning, encoder.num_bins, encoder.num_outputs))
    model = models.model_from_checkpoint(ckpt).to(device).eval()
    return Colorizer(model, encoder, ckpt['im_size'], device, ckpt.get('config'))


def default_device():
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a number' % text) from None
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError('must be > 0 (for T -> 0 use --decode mode), got %s' % text)
    return value


def device_name(text):
    """argparse type: a torch device this machine has."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError('%r is not a device (cpu, cuda, cuda:1 ...)' % text) from None
    if device.type == 'cuda' and not (torch.cuda.is_available()
                                      and (device.index or 0) < torch.cuda.device_count()):
        raise argparse.ArgumentTypeError('%s is not available on this machine' % text)
    if device.type not in ('cpu', 'cuda'):
        raise argparse.ArgumentTypeError('%s: only cpu and cuda devices are supported' % text)
    return text


def check_out_dir(out):
    """-o must be a folder or not exist yet (checked before any work)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise cli.UserError('-o %s is a file, not a folder' % out)


def add_model_arguments(parser):
    """Flags shared with evaluate.py: checkpoint, decoding, device, batch, pixel limit."""
    parser.add_argument('-m', '--model', required=True, metavar='CHECKPOINT',
                        help='model_best.pth.tar (or checkpoint.pth.tar) of a training run')
    parser.add_argument('--decode', choices=utils.DECODE_METHODS, default=None,
                        help='bin probabilities -> colour: annealed mean, mean, or mode (default: the '
                        'checkpoint\'s config, annealed unless it says otherwise)')
    parser.add_argument('-T', '--temperature', type=positive_float, default=None,
                        help='annealed-mean temperature (default: the checkpoint\'s config, %s unless it says '
                        'otherwise; Zhang et al. 2016)' % utils.DEFAULT_TEMPERATURE)
    parser.add_argument('--batch-size', type=cli.positive_int, default=8, help='images per network call')
    parser.add_argument('--device', type=device_name, default=default_device(),
                        help='cpu, cuda, cuda:1 ... (default %(default)s)')
    parser.add_argument('--max-pixels', type=cli.positive_int, default=config.DEFAULTS['max_image_pixels'],
                        help='refuse larger images (default %(default)s)')


def resolve_decoding(args, colorizer):
    """``--decode`` / ``-T`` not given: the checkpoint's own (:attr:`Colorizer.decoding`), set on ``args``."""
    decode, temperature = colorizer.decoding
    args.decode = args.decode or decode
    args.temperature = args.temperature or temperature


def read_batches(paths, batch_size, max_pixels, max_side=None):
    """Yield, per batch of ``paths``: ([(index, uint8 [H, W, 3])], [(index, why unreadable)]); photos longer
    than ``max_side`` pixels scaled down to it."""
    batch_size = max(1, batch_size)
    for start in range(0, len(paths), batch_size):
        readable, unreadable = [], []
        for index in range(start, min(start + batch_size, len(paths))):
            try:
                readable.append((index, data_loader.load_rgb(paths[index], max_pixels, max_side=max_side)))
            except data_loader.UnreadableImage as err:
                unreadable.append((index, str(err)))
        yield readable, unreadable


def expand_inputs(inputs):
    """Command-line inputs -> [(path, output name without extension)], names unique.

    A folder contributes every image below it, named by its path inside the folder.
    """
    entries, used = [], set()
    for item in inputs:
        if os.path.isdir(item):
            found = [(os.path.join(item, rel), os.path.splitext(rel)[0]) for rel in data_loader.find_images(item)]
        else:
            found = [(item, os.path.splitext(os.path.basename(item))[0])]
        for path, name in found:
            unique, n = name, 1
            while unique in used:  # a.jpg and a.png -> a, a_2
                n += 1
                unique = '%s_%d' % (name, n)
            used.add(unique)
            entries.append((path, unique))
    return entries


def save_png(path, rgb_uint8, compress_level):
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    Image.fromarray(rgb_uint8).save(path, compress_level=compress_level)


def parse_args(argv=None):
    p = cli.ArgumentParser(description='Colorize photos with a trained colorizer-fcn checkpoint.')
    add_model_arguments(p)
    p.add_argument('-o', '--out', default=DEFAULT_OUT_DIR, help='output folder (default %(default)s)')
    p.add_argument('--side-by-side', action='store_true', help='also write OUTDIR/<name>_side_by_side.png')
    p.add_argument('--hints', metavar='FILE', help='colour hints for the one PHOTO: a JSON file {"points": '
                   '[{"x": .., "y": .., "color": "#rrggbb", "size": ..}]} or a PNG of the photo\'s size, '
                   'transparent where there is no hint')
    p.add_argument('--hint-method', choices=propagate.HINT_METHODS, default=None,
                   help="how the hints are spread and fused with the prediction: levin (the hints alone, "
                   "Levin et al. 2004), corrections (prediction + propagated hint - prediction), shrinkage "
                   "(the same with the prediction scaled by a weight chosen from the hints, leave-one-out), "
                   "confidence (scaled per pixel by the prediction's certainty), stacked (levin and confidence "
                   "blended by a weight chosen from the hints, leave-one-out); default: the checkpoint's "
                   "(%s unless it says otherwise)" % config.DEFAULTS['hint_method'])
    p.add_argument('--edge-aware', action='store_true', help='upsample the colours along the lightness edges '
                   '(guided by the full-resolution lightness) instead of bilinearly')
    p.add_argument('--png-compression', type=int, default=PNG_COMPRESSION, choices=range(10), metavar='0-9',
                   help='zlib level of the PNGs (default %(default)s: fast, 12 MP in about a second)')
    p.add_argument('inputs', nargs='+', metavar='INPUT', help='image files or folders')
    return p.parse_args(argv)


def write_colorized(args, name, rgb, out):
    """OUTDIR/<name>.png (and with --side-by-side <name>_side_by_side.png: input | output)."""
    save_png(os.path.join(args.out, name + '.png'), out, args.png_compression)
    if args.side_by_side:
        save_png(os.path.join(args.out, name + '_side_by_side.png'), np.concatenate([rgb, out], 1),
                 args.png_compression)


def colorize_with_hints(colorizer, entries, args):
    """``--hints FILE``: one photo, its hints checked before anything is written."""
    if len(entries) != 1:
        raise cli.UserError('--hints FILE colours one photo; %d were given' % len(entries))
    path, name = entries[0]
    try:
        rgb = data_loader.load_rgb(path, args.max_pixels)
    except data_loader.UnreadableImage as err:
        raise cli.UserError('cannot read %s (%s)' % (path, err)) from None
    given = hint_input.read_hints_file(args.hints, rgb.shape[1], rgb.shape[0])
    out = colorizer.colorize(rgb, args.decode, args.temperature, hints=given, edge_aware=args.edge_aware,
                             hint_method=args.hint_method)
    write_colorized(args, name, rgb, out)
    print('colorized 1 image with %s into %s' % (args.hints, args.out))
    return 0


def main(argv=None):
    """Returns the exit status: 0 when every input was colorized, 1 when some were unreadable.

    Usage errors (a bad checkpoint, no image found) raise ``cli.USER_ERRORS``: status 2 by ``cli.run_cli``.
    """
    args = parse_args(argv)
    from tqdm import tqdm
    check_out_dir(args.out)
    if args.hint_method is not None and args.hints is None:
        raise cli.UserError('--hint-method %s needs --hints FILE' % args.hint_method)
    colorizer = load_colorizer(args.model, args.device)
    resolve_decoding(args, colorizer)
    entries = expand_inputs(args.inputs)
    if not entries:
        raise cli.UserError('no image found in %s' % ' '.join(args.inputs))
    if args.hints is not None:
        return colorize_with_hints(colorizer, entries, args)

    done, failed = 0, 0
    bar = tqdm(total=len(entries), unit='image', disable=not any(os.path.isdir(i) for i in args.inputs))
    for readable, unreadable in read_batches([path for path, _ in entries], args.batch_size, args.max_pixels):
        for index, why in unreadable:
            tqdm.write('error: cannot read %s (%s): skipped' % (entries[index][0], why), file=sys.stderr)
        outputs = colorizer.colorize([rgb for _, rgb in readable], args.decode, args.temperature,
                                     edge_aware=args.edge_aware) if readable else []
        for (index, rgb), out in zip(readable, outputs):
            write_colorized(args, entries[index][1], rgb, out)
        done, failed = done + len(readable), failed + len(unreadable)
        bar.update(len(readable) + len(unreadable))
    bar.close()
    print('colorized %d image(s) into %s%s' % (done, args.out, ', %d unreadable' % failed if failed else ''))
    return cli.STOPPED if failed else 0


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
