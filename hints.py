"""Colour hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization with Learned Deep Priors").

A hint says "this spot has this colour".  Only its hue and chroma count: on the
chroma plane it is the point (a, b) = C (cos 2 pi H, sin 2 pi H), and the photo
keeps its own lightness.  A hint model's input is four channels at the network's
resolution: L, the hints' a and b (0 where there is none) and their mask.

Where hints come from:

* training: :func:`sample_training_hints`, on the training device, drawn from
  the ground truth as Zhang et al.'s training does (a geometric number of
  points, square patches of 1-9 network pixels, each the mean colour of its patch);
* evaluation: :func:`sample_sweep_points`, Zhang et al.'s test (N points,
  6 px patches at 256 px, uniform positions), seeded per photo;
* people: a JSON file ``{"points": [{"x": 412, "y": 96, "color": "#3b7dd8",
  "size": 9}, ...]}`` (x, y in the photo's own pixels from its top-left
  corner) or a hint image (a PNG of the photo's size, transparent where there
  is no hint): :func:`read_hints_file`.

Points are dicts as in the JSON file; a program may give ``"ab": [a, b]`` (the
chroma-plane colour itself) instead of ``"color"``.  :func:`hint_maps` paints
points or a hint image into full-resolution maps, :func:`reduce_hint_maps`
brings them to the network's size.
"""
import json
import math
import os
import re

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

import cli
import config
import recolour
import utils

HINT_CHANNELS = 3  # a, b, mask: what a hint model's input has beyond L
_HEX = re.compile(r'^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$')
_NUMBER = r'\s*(\d+(?:\.\d*)?|\.\d+)\s*'
_RGB_FUNCTION = re.compile(r'^rgba?\(%s,%s,%s(?:,\s*(?:\d+(?:\.\d*)?|\.\d+)\s*)?\)$' % ((_NUMBER,) * 3))


class HintError(cli.UserError):
    """Hints that cannot be used: a malformed file, a point outside the photo, a colour that is none."""


# --------------------------------------------------------------------------
# colours
# --------------------------------------------------------------------------

def parse_color(text):
    """'#3b7dd8', '#37d' or 'rgb(59, 125, 216)' -> (r, g, b) integers in 0..255; HintError otherwise."""
    if isinstance(text, str):
        text = text.strip()
        match = _HEX.match(text)
        if match:
            digits = match.group(1)
            if len(digits) == 3:
                digits = ''.join(d * 2 for d in digits)
            return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))
        match = _RGB_FUNCTION.match(text)
        if match and all(float(v) <= 255 for v in match.groups()):
            return tuple(int(round(float(v))) for v in match.groups())
    raise HintError('%r is not a colour (write it as "#rrggbb", e.g. "#3b7dd8")' % (text,))


def rgb_to_plane(rgb_uint8):
    """uint8 RGB ``[..., 3]`` -> float32 chroma plane ``[..., 2]`` (a, b) = C (cos 2piH, sin 2piH)."""
    rgb = np.asarray(rgb_uint8, np.float32) / 255.0
    flat = torch.from_numpy(rgb.reshape(-1, 3).T.copy())[:, :, None]    # [3, N, 1]
    hue, chroma, _ = utils.rgb_to_hcl(flat)
    plane = utils.hue_chroma_to_plane(hue, chroma)                        # [2, N, 1]
    return plane[..., 0].T.reshape(rgb.shape[:-1] + (2,)).numpy()


def plane_to_hex(ab, lightness=0.5):
    """A chroma-plane colour (a, b) at ``lightness`` -> '#rrggbb' (chroma cut to what L allows)."""
    hue, chroma = utils.plane_to_hue_chroma(torch.tensor(ab, dtype=torch.float32).reshape(2, 1, 1))
    rgb = utils.hue_chroma_to_rgb(hue, chroma, torch.full_like(hue, float(lightness)))
    return '#%02x%02x%02x' % tuple(int(v) for v in utils.to_uint8(rgb.reshape(3)).tolist())


def point_color(point):
    """A point's colour as '#rrggbb' (a point given on the chroma plane: at mid lightness)."""
    return plane_to_hex(point['ab']) if 'ab' in point else point['color']


def default_size(width, height):
    """A point's side when its ``size`` is not given: Zhang et al.'s test patch, scaled to the photo."""
    sweep = config.HINT_SWEEP
    return max(1, int(round(sweep['patch'] * min(width, height) / sweep['side'])))


# --------------------------------------------------------------------------
# the JSON file and the hint image
# --------------------------------------------------------------------------

def _integer(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise HintError('%s is %r: it must be a whole number of pixels' % (what, value))
    return int(value)


def check_point(point, width, height, where='hint'):
    """A validated copy of one point dict; HintError naming ``where`` otherwise."""
    if not isinstance(point, dict):
        raise HintError('%s is %r: each point must be {"x": ..., "y": ..., "color": "#rrggbb"}' % (where, point))
    unknown = set(point) - {'x', 'y', 'color', 'size', 'ab'}
    if unknown:
        raise HintError('%s has unknown keys %s (known: x, y, color, size)' % (where, ', '.join(sorted(unknown))))
    for key in ('x', 'y'):
        if key not in point:
            raise HintError('%s has no "%s"' % (where, key))
    x, y = _integer(point['x'], where + ' x'), _integer(point['y'], where + ' y')
    if not (0 <= x < width and 0 <= y < height):
        raise HintError('%s at x=%d, y=%d is outside the photo (%d x %d pixels: x in 0..%d, y in 0..%d)'
                        % (where, x, y, width, height, width - 1, height - 1))
    checked = {'x': x, 'y': y}
    if 'ab' in point:
        ab = point['ab']
        if not (isinstance(ab, (list, tuple)) and len(ab) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ab)
                and math.hypot(*ab) <= 1.0 + 1e-6):
            raise HintError('%s: "ab" must be two numbers on the chroma plane (|ab| <= 1)' % where)
        checked['ab'] = [float(ab[0]), float(ab[1])]
    elif 'color' in point:
        parse_color(point['color'])
        checked['color'] = point['color']
    else:
        raise HintError('%s has no "color"' % where)
    if point.get('size') is not None:
        size = _integer(point['size'], where + ' size')
        if size < 1:
            raise HintError('%s size is %d: it must be at least 1 pixel' % (where, size))
        checked['size'] = size
    return checked


def points_from_json(obj, width, height):
    """``{"points": [...]}`` (parsed JSON) -> validated point dicts for a ``width`` x ``height`` photo."""
    if not isinstance(obj, dict) or not isinstance(obj.get('points'), list):
        raise HintError('a hint file must be {"points": [{"x": ..., "y": ..., "color": "#rrggbb"}, ...]}')
    return [check_point(p, width, height, 'hint %d' % (i + 1)) for i, p in enumerate(obj['points'])]


def points_to_json(points):
    """Point dicts -> ``{"points": [...]}`` as colorize.py reads it."""
    return {'points': [{k: p[k] for k in ('x', 'y', 'color', 'ab', 'size') if k in p} for p in points]}


def read_hints_file(path, width, height):
    """A JSON hint file -> point dicts, or a hint image -> RGBA uint8 ``[H, W, 4]``; HintError otherwise."""
    if not os.path.isfile(path):
        raise HintError('hint file %s does not exist' % path)
    try:
        with open(path, 'rb') as f:
            head = f.read(8)
    except OSError as err:
        raise HintError('hint file %s cannot be read (%s)' % (path, err.strerror or err)) from None
    if head.startswith(b'\x89PNG') or os.path.splitext(path)[1].lower() in ('.png', '.webp', '.tif', '.tiff'):
        try:
            with Image.open(path) as img:
                if img.size != (width, height):
                    raise HintError('hint image %s is %d x %d pixels but the photo is %d x %d: paint the hints '
                                    'on a copy of the photo\'s size' % ((path,) + img.size + (width, height)))
                if 'A' not in img.getbands() and not (img.mode == 'P' and 'transparency' in img.info):
                    raise HintError('hint image %s has no transparency: leave it transparent where there is '
                                    'no hint' % path)
                return np.asarray(img.convert('RGBA'))
        except (UnidentifiedImageError, OSError) as err:
            raise HintError('hint image %s cannot be read (%s)' % (path, err)) from None
    try:
        with open(path, encoding='utf-8') as f:
            obj = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise HintError('hint file %s is neither JSON nor a PNG image (%s)' % (path, err)) from None
    return points_from_json(obj, width, height)


# --------------------------------------------------------------------------
# hint maps
# --------------------------------------------------------------------------

def point_box(point, width, height):
    """(x0, y0, x1, y1) of a point's square, clipped to the photo (x1, y1 exclusive)."""
    size = point.get('size') or default_size(width, height)
    x0, y0 = point['x'] - (size - 1) // 2, point['y'] - (size - 1) // 2
    return max(0, x0), max(0, y0), min(width, x0 + size), min(height, y0 + size)


def point_plane(point):
    """The chroma-plane colour (a, b) of a point dict."""
    if 'ab' in point:
        return np.asarray(point['ab'], np.float32)
    return rgb_to_plane(np.asarray(parse_color(point['color']), np.uint8))


def hint_maps(hints, width, height):
    """Points (or an RGBA hint image) -> full-resolution maps: plane ``[2, H, W]``, mask ``[H, W]`` float32.

    Later points are painted over earlier ones.  ``None`` or no points: zeros.
    """
    plane = np.zeros((2, height, width), np.float32)
    mask = np.zeros((height, width), np.float32)
    if hints is None:
        return plane, mask
    if isinstance(hints, np.ndarray):
        if hints.shape != (height, width, 4):
            raise HintError('the hint image is %s, the photo %d x %d' % (hints.shape, width, height))
        mask[:] = hints[..., 3] > 0
        plane[:] = rgb_to_plane(hints[..., :3]).transpose(2, 0, 1) * mask
        return plane, mask
    for point in hints:
        x0, y0, x1, y1 = point_box(point, width, height)
        plane[:, y0:y1, x0:x1] = point_plane(point)[:, None, None]
        mask[y0:y1, x0:x1] = 1.0
    return plane, mask


def reduce_hint_maps(plane, mask, size):
    """Full-resolution maps ``[B, 2, H, W]``, ``[B, 1, H, W]`` -> the network's ``size`` (h, w).

    Area averages, so every hint keeps at least one network pixel however
    small it is: a cell with any hint in it is hinted, with the mean colour of
    the hinted part.
    """
    covered = F.adaptive_avg_pool2d(mask, size)
    colour = F.adaptive_avg_pool2d(plane * mask, size)
    hinted = covered > 0
    return torch.where(hinted, colour / covered.clamp_min(1e-12), torch.zeros_like(colour)), hinted.to(mask.dtype)


def network_input(lightness_input, plane, mask):
    """A hint model's input ``[B, 4, h, w]``: L ``[B, 1, h, w]``, the hints' (a, b) ``[B, 2, h, w]``, mask."""
    return torch.cat([lightness_input, plane.to(lightness_input.dtype), mask.to(lightness_input.dtype)], dim=1)


# --------------------------------------------------------------------------
# training hints (Zhang et al. 2017, section 3.3), on the training device
# --------------------------------------------------------------------------

def geometric_counts(generator, batch, none_share, max_points, device):
    """``[B]`` point counts, P(N = k) = p (1 - p)^k (so P(none) = p), capped at ``max_points``."""
    u = torch.rand(batch, generator=generator, device=device).clamp_min(torch.finfo(torch.float32).tiny)
    return torch.floor(torch.log(u) / math.log1p(-none_share)).clamp_(max=max_points).long()


def patch_means(plane, y0, x0, side):
    """Mean of ``plane`` ``[B, 2, H, W]`` over squares (``[B, N]`` tops, lefts, sides) -> ``[B, N, 2]``."""
    b, _, h, w = plane.shape
    integral = F.pad(plane.double().cumsum(-1).cumsum(-2), (1, 0, 1, 0))  # [B, 2, H + 1, W + 1]
    flat = integral.flatten(2)                                          # [B, 2, (H + 1)(W + 1)]

    def at(y, x):
        index = (y * (w + 1) + x).unsqueeze(1).expand(-1, 2, -1)
        return flat.gather(2, index)                                    # [B, 2, N]
    y1, x1 = y0 + side, x0 + side
    total = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)
    return (total / (side * side).unsqueeze(1)).transpose(1, 2).to(plane.dtype)


def paint_squares(colours, y0, x0, side, count, height, width):
    """Squares ``[B, N]`` with colours ``[B, N, 2]`` -> plane ``[B, 2, H, W]``, mask ``[B, 1, H, W]``.

    Only the first ``count[b]`` squares of image b are drawn; where squares
    overlap, their colours are averaged.  Two small matrix products: no
    per-point loop.
    """
    n = colours.shape[1]
    device = colours.device
    live = (torch.arange(n, device=device) < count[:, None]).to(colours.dtype)          # [B, N]
    ys, xs = torch.arange(height, device=device), torch.arange(width, device=device)
    rows = ((ys >= y0[..., None]) & (ys < (y0 + side)[..., None])).to(colours.dtype) * live[..., None]
    cols = ((xs >= x0[..., None]) & (xs < (x0 + side)[..., None])).to(colours.dtype)   # [B, N, W]
    cover = torch.einsum('bny,bnx->byx', rows, cols)
    total = torch.einsum('bny,bnx,bnc->bcyx', rows, cols, colours)
    hinted = cover > 0
    plane = torch.where(hinted[:, None], total / cover.clamp_min(1)[:, None], torch.zeros_like(total))
    return plane, hinted[:, None].to(colours.dtype)


def sample_training_hints(plane, generator, none_share, max_points, patch, positions, position_sigma,
                          at_least_one=None):
    """Hints drawn from the ground truth chroma plane ``[B, 2, H, W]`` (network resolution).

    Per image: N ~ geometric (P(N = 0) = ``none_share``, at most
    ``max_points``; at least 1 where ``at_least_one`` ``[B]`` is true); each point a square of side uniform in ``patch`` = [min,
    max] pixels, centred at a 'uniform' or 'gaussian' position (around the
    centre, std ``position_sigma`` x the height and x the width), kept inside the image; its
    colour the mean of ``plane`` over the square.  Returns (hint plane ``[B,
    2, H, W]``, mask ``[B, 1, H, W]``), both on ``plane``'s device and dtype.
    """
    b, _, h, w = plane.shape
    device = plane.device
    count = geometric_counts(generator, b, none_share, max_points, device)
    if at_least_one is not None:
        count = torch.where(at_least_one, count.clamp(min=1), count)
    n = max(int(count.max()), 1)
    side = torch.randint(patch[0], patch[1] + 1, (b, n), generator=generator, device=device)
    side = side.clamp_(max=min(h, w))
    if positions == 'uniform':
        cy = torch.rand((b, n), generator=generator, device=device) * h
        cx = torch.rand((b, n), generator=generator, device=device) * w
    else:
        cy = h / 2 + torch.randn((b, n), generator=generator, device=device) * (position_sigma * h)
        cx = w / 2 + torch.randn((b, n), generator=generator, device=device) * (position_sigma * w)
    y0 = torch.minimum(torch.clamp(torch.floor(cy - side / 2), min=0).long(), h - side)
    x0 = torch.minimum(torch.clamp(torch.floor(cx - side / 2), min=0).long(), w - side)
    colours = patch_means(plane, y0, x0, side)
    return paint_squares(colours, y0, x0, side, count, h, w)


def training_batch(encoder, rgb_uint8, generator, cfg, target_dtype=torch.float32, recolouring=True):
    """A hint model's batch: uint8 ``[B, 3, H, W]`` -> (input ``[B, 4, H, W]``, target), on its device.

    With ``recolouring`` (training steps) a ``cfg['recolour_share']`` of the images is recoloured
    (``recolour.recolour``; the lightness kept) and gets at least one hint; the hints are drawn from the
    batch's own (recoloured) colours.  With a share of 0 nothing extra is drawn from ``generator``.
    """
    with torch.autocast(rgb_uint8.device.type, enabled=False):
        hue, chroma, lightness = utils.rgb_to_hcl(encoder.rgb_float(rgb_uint8))
    recoloured = None
    if recolouring and cfg['recolour_share'] > 0:
        hue, chroma, recoloured = recolour.recolour(hue, chroma, lightness, generator, cfg)
    net_input, target = encoder.encode_hcl(hue, chroma, lightness, target_dtype)
    plane, mask = sample_training_hints(utils.hue_chroma_to_plane(hue, chroma), generator, cfg['hint_none_share'],
                                        cfg['hint_max_points'], cfg['hint_patch'], cfg['hint_positions'],
                                        cfg['hint_position_sigma'], recoloured)
    return network_input(net_input, plane, mask), target


def step_generator(device, seed, step, rank=0):
    """A generator on ``device`` seeded by (seed, step, rank): the same hints after an exact resume."""
    generator = torch.Generator(device=device)
    generator.manual_seed((int(seed) * 1_000_003 + int(step) * 8191 + int(rank)) % (2 ** 63))
    return generator


# --------------------------------------------------------------------------
# the evaluation sweep (Zhang et al. 2017, section 4.2)
# --------------------------------------------------------------------------

def sweep_seed(name, count, base=0):
    """A photo's own seed: every method (and every run) sees the same points for (photo, N).

    The file name alone counts (not its folder), so a list scores the same wherever its root is.
    """
    digest = 0
    for ch in '%s|%d|%d' % (os.path.basename(name), count, base):
        digest = (digest * 131 + ord(ch)) % (2 ** 32)
    return digest


def sample_sweep_points(rgb_uint8, count, seed):
    """``count`` hint points drawn from a photo ``[H, W, 3]`` as Zhang et al.'s test does.

    Squares of 6 px at 256 px on the short side, scaled to the photo; uniform
    positions; colour (``"ab"``) the mean of the photo's chroma plane over the
    square.  Deterministic in ``seed``.
    """
    height, width = rgb_uint8.shape[:2]
    size = min(default_size(width, height), height, width)
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(count):
        x0, y0 = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
        ab = rgb_to_plane(rgb_uint8[y0:y0 + size, x0:x0 + size]).reshape(-1, 2).mean(0)
        points.append({'x': x0 + (size - 1) // 2, 'y': y0 + (size - 1) // 2, 'ab': ab.tolist(), 'size': size})
    return points
