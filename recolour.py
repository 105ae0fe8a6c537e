"""Recoloured training images: colours that only the hints can tell (issue 28).

With a few photos a network memorises each photo's colours, so a hint tells it nothing it
does not already know.  For a share of each training batch (``recolour_share``) the chroma
plane is remapped while the lightness is kept exactly: a random global hue rotation, then
per-region remaps (a hue shift and a chroma scale for each of ``recolour_regions`` regions:
sectors of the image's own hue, so a photo's blue sky and its green field move apart) with
the chroma cut to what the lightness allows.  A recoloured image always gets at least one
hint (``hints.sample_training_hints``): its colours can come only from there.  The rest of
the batch stays natural, so the network keeps its prior with no hints.

Everything runs on the training device, drawn from the step's generator (the same images
after an exact resume).  Hue in turns [0, 1), chroma and lightness in [0, 1], ``[B, H, W]``.
"""
import torch


def max_chroma(lightness):
    """The largest chroma at lightness L (L = V - C/2 with V <= 1 and V - C >= 0): 2 min(L, 1 - L)."""
    return 2 * torch.minimum(lightness, 1 - lightness)


def rotate_hue(hue, turns):
    """Hue ``[B, H, W]`` rotated by ``turns`` ``[B]`` (a turn = 2 pi on the chroma plane), in [0, 1)."""
    return torch.remainder(hue + turns.view(-1, 1, 1), 1.0)


def hue_regions(hue, chroma, count):
    """Region labels ``[B, H, W]`` in [0, count): the sector of each pixel's hue (grey pixels: sector 0,
    where a remap leaves them grey)."""
    return torch.where(chroma > 0, torch.floor(hue * count).long().clamp_(0, count - 1), torch.zeros_like(hue).long())


def remap_regions(hue, chroma, lightness, labels, shifts, scales):
    """Per-region remaps: pixel p of region r = labels[p] gets hue + shifts[b, r] (turns) and chroma x
    scales[b, r], cut to :func:`max_chroma` of its lightness.  ``shifts``, ``scales`` ``[B, R]``.
    Returns (hue, chroma)."""
    shift = torch.gather(shifts, 1, labels.flatten(1)).view_as(hue)
    scale = torch.gather(scales, 1, labels.flatten(1)).view_as(chroma)
    return torch.remainder(hue + shift, 1.0), torch.minimum(chroma * scale, max_chroma(lightness))


def recolour(hue, chroma, lightness, generator, cfg):
    """A batch's (hue, chroma) with a share of its images recoloured -> (hue, chroma, recoloured ``[B]`` bool).

    ``cfg``: ``recolour_share`` (each image with this probability), ``recolour_regions`` (R),
    ``recolour_hue_shift`` (each region's extra shift, uniform in +- this many turns) and
    ``recolour_chroma_scale`` ([min, max], uniform).  Lightness is never touched.
    """
    b, device = hue.shape[0], hue.device
    chosen = torch.rand(b, generator=generator, device=device) < cfg['recolour_share']
    regions = cfg['recolour_regions']
    turns = torch.rand(b, generator=generator, device=device)
    shifts = (torch.rand((b, regions), generator=generator, device=device) * 2 - 1) * cfg['recolour_hue_shift']
    low, high = cfg['recolour_chroma_scale']
    scales = low + (high - low) * torch.rand((b, regions), generator=generator, device=device)
    if not bool(chosen.any()):
        return hue, chroma, chosen
    new_hue, new_chroma = remap_regions(rotate_hue(hue, turns), chroma, lightness,
                                        hue_regions(hue, chroma, regions), shifts, scales)
    keep = chosen.view(-1, 1, 1)
    return torch.where(keep, new_hue, hue), torch.where(keep, new_chroma, chroma), chosen
