"""recolour.py: recoloured training images keep their lightness exactly and move the chroma plane as
asked (checked against numpy's rotation and skimage's HSV), only inside their regions, for the
configured share of a batch, by seed; recoloured images always get a hint; a share of 0 trains as before."""
import math

import numpy as np
import pytest
import skimage.color
import torch

import config
import hints
import recolour
import targets
import utils


def photo_batch(count=4, size=24, seed=0):
    """Colourful uint8 photos ``[B, 3, H, W]``: random smooth colour fields."""
    rng = np.random.default_rng(seed)
    low = rng.random((count, 3, 4, 4))
    big = torch.nn.functional.interpolate(torch.from_numpy(low), size=(size, size), mode='bilinear',
                                          align_corners=False)
    return (big * 255).round().to(torch.uint8)


def hcl(batch):
    return utils.rgb_to_hcl(batch.float() / 255)


def settings(**kw):
    return dict(config.DEFAULTS, **kw)


def test_a_hue_rotation_by_theta_turns_every_chroma_vector_by_two_pi_theta():
    hue, chroma, lightness = hcl(photo_batch())
    turns = torch.tensor([0.0, 0.125, 0.5, 0.9])
    rotated = recolour.rotate_hue(hue, turns)
    before = utils.hue_chroma_to_plane(hue, chroma).numpy()
    after = utils.hue_chroma_to_plane(rotated, chroma).numpy()
    for i, t in enumerate(turns.tolist()):
        angle = 2 * math.pi * t
        matrix = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        expected = np.einsum('ij,jhw->ihw', matrix, before[i])
        np.testing.assert_allclose(after[i], expected, atol=1e-5)
    assert float(rotated.min()) >= 0 and float(rotated.max()) < 1


def test_recolouring_keeps_the_lightness_exactly_and_the_chroma_within_what_it_allows():
    batch = photo_batch(8)
    hue, chroma, lightness = hcl(batch)
    cfg = settings(recolour_share=1.0, recolour_chroma_scale=[2.0, 3.0])   # every image, chroma pushed up
    new_hue, new_chroma, chosen = recolour.recolour(hue, chroma, lightness, torch.Generator().manual_seed(0), cfg)
    assert bool(chosen.all())
    assert float((new_chroma - recolour.max_chroma(lightness)).max()) <= 1e-6
    rgb = utils.hcl_to_rgb(new_hue, new_chroma, lightness)
    _, _, back = utils.rgb_to_hcl(rgb)
    np.testing.assert_allclose(back.numpy(), lightness.numpy(), atol=1e-6)        # the same L, to float precision
    # and against skimage's HSV: L = V - S V / 2 of the recoloured RGB
    hsv = skimage.color.rgb2hsv(rgb[0].permute(1, 2, 0).numpy().astype(np.float64))
    np.testing.assert_allclose(hsv[..., 2] - hsv[..., 1] * hsv[..., 2] / 2, lightness[0].numpy(), atol=1e-6)
    assert float((new_hue - hue).abs().mean()) > 0.05                                  # the colours did move


def test_a_region_remap_moves_only_its_own_region():
    hue, chroma, lightness = hcl(photo_batch(2))
    labels = torch.zeros_like(hue, dtype=torch.long)
    labels[:, :, 12:] = 1
    shifts = torch.tensor([[0.0, 0.25], [0.0, 0.25]])
    scales = torch.tensor([[1.0, 0.5], [1.0, 0.5]])
    new_hue, new_chroma = recolour.remap_regions(hue, chroma, lightness, labels, shifts, scales)
    assert torch.equal(new_hue[:, :, :12], hue[:, :, :12]) and torch.equal(new_chroma[:, :, :12], chroma[:, :, :12])
    inside = chroma[:, :, 12:] > 0
    turned = torch.remainder(new_hue[:, :, 12:] - hue[:, :, 12:], 1.0)
    np.testing.assert_allclose(turned[inside].numpy(), 0.25, atol=1e-5)
    np.testing.assert_allclose(new_chroma[:, :, 12:].numpy(), 0.5 * chroma[:, :, 12:].numpy(), atol=1e-6)
    # the hue sectors: every pixel's label is the sector of its hue
    regions = recolour.hue_regions(hue, chroma, 6)
    coloured = chroma > 0
    np.testing.assert_array_equal(regions[coloured].numpy(), np.floor(hue[coloured].numpy() * 6).astype(int))


def test_the_recoloured_share_is_as_configured_and_seeded():
    hue, chroma, lightness = hcl(photo_batch(1))
    many = 4000
    big = [x.expand(many, -1, -1).contiguous() for x in (hue, chroma, lightness)]
    _, _, chosen = recolour.recolour(*big, torch.Generator().manual_seed(3), settings(recolour_share=0.3))
    share = float(chosen.float().mean())
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / many)      # 4 binomial standard deviations
    again = recolour.recolour(*big, torch.Generator().manual_seed(3), settings(recolour_share=0.3))
    other = recolour.recolour(*big, torch.Generator().manual_seed(4), settings(recolour_share=0.3))
    assert torch.equal(again[2], chosen) and not torch.equal(other[2], chosen)
    none = recolour.recolour(*big, torch.Generator().manual_seed(3), settings(recolour_share=0.0))
    assert not bool(none[2].any()) and torch.equal(none[0], big[0])


def test_a_recoloured_image_always_gets_a_hint_and_a_share_of_zero_trains_as_before():
    batch = photo_batch(64, size=16)
    encoder = targets.ColorEncoder(targets.GMMBins.uniform_grid(16), 0.5)
    cfg = settings(hints=True, hint_none_share=0.9, recolour_share=0.5)       # most images would get no hint
    net_input, target = hints.training_batch(encoder, batch, hints.step_generator('cpu', 0, 1), cfg)
    generator = hints.step_generator('cpu', 0, 1)
    hue, chroma, lightness = hcl(batch)
    _, _, chosen = recolour.recolour(hue, chroma, lightness, generator, cfg)
    hinted = net_input[:, 3].flatten(1).amax(1) > 0
    assert bool(hinted[chosen].all()) and float(hinted[~chosen].float().mean()) < 0.5
    np.testing.assert_allclose(net_input[:, 0].numpy(), (lightness - 0.5).numpy(), atol=0)   # L input untouched
    # share 0: the batch of the former path (encode, then hints from the same generator), bit for bit
    plain_cfg = dict(cfg, recolour_share=0.0)
    a_input, a_target = hints.training_batch(encoder, batch, hints.step_generator('cpu', 0, 1), plain_cfg)
    b_input, b_target = encoder.encode(batch)
    plane, mask = hints.sample_training_hints(utils.hue_chroma_to_plane(hue, chroma), hints.step_generator('cpu', 0, 1),
                                              0.9, cfg['hint_max_points'], cfg['hint_patch'], cfg['hint_positions'],
                                              cfg['hint_position_sigma'])
    assert torch.equal(a_input, hints.network_input(b_input, plane, mask)) and torch.equal(a_target, b_target)


@pytest.mark.parametrize('key, value', [('recolour_share', 1.5), ('recolour_chroma_scale', [2.0, 1.0]),
                                        ('recolour_regions', 0)])
def test_recolour_settings_are_checked(key, value):
    with pytest.raises(config.ConfigError, match=key):
        config.check_value(key, value)
    assert config.check_value(key, config.DEFAULTS[key]) == config.DEFAULTS[key]
