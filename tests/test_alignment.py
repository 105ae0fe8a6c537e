"""Spatial alignment: FCN-32s/16s/8s in both paddings put the response to an input feature on
the pixels that feature came from (pytorch-fcn's crop offsets), and a new stage starts as the
previous one (its extra score layers start at zero)."""
import numpy as np
import pytest
import torch

import models
from models import ARCHITECTURES, build_model

ARCHS = sorted(ARCHITECTURES)
PADDINGS = ('same', 'caffe')
# each score layer, and the stride of the map it scores
SCORE_PATHS = {'fcn32s': {'score_fr': 32},
               'fcn16s': {'score_fr': 32, 'score_pool4': 16},
               'fcn8s': {'score_fr': 32, 'score_pool4': 16, 'score_pool3': 8}}
HEIGHT, WIDTH = 264, 328     # not multiples of 32, not square
MARGIN = 96                  # impulses this far from the borders: no response is cut by the crop
DIAGONAL_SHIFT = 40          # impulse at (p, p + 40): x and y cross cell borders at other p


def pass_through_network(arch, padding, path, monkeypatch):
    """The real network geometry (kernels, paddings, ceil-mode pools, upsamplers, crops) with one
    channel per layer: every convolution passes its centre tap on, BatchNorm is the identity
    (eval, unit statistics), and only score layer ``path`` lets the signal reach the output.
    A positive impulse then travels down to exactly one cell of that layer's map."""
    monkeypatch.setattr(models, 'VGG16_BLOCKS', tuple((1,) * len(block) for block in models.VGG16_BLOCKS))
    net = build_model(arch, 1, padding=padding, fc_channels=1).eval()
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, torch.nn.Conv2d) and not isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.zero_()
                module.bias.zero_()
                if not name.startswith('score') or name == path:
                    kh, kw = module.kernel_size
                    module.weight[:, :, kh // 2, kw // 2] = 1.0
    return net


def centroids(response, axis):
    """Weighted mean coordinate of each ``[N, H, W]`` response along ``axis`` (1: y, 2: x)."""
    coords = torch.arange(response.shape[axis], dtype=torch.float64)
    profile = response.double().sum(3 - axis)
    return (profile * coords).sum(1) / profile.sum(1)


def assert_centred_on_their_cells(positions, centres, stride):
    """Impulses giving the same output centre form a cell; that centre must be the middle of the
    cell's input positions.  Cells cut by the ends of the sweep are not judged."""
    keys = np.round(centres, 3)
    complete = 0
    for key in np.unique(keys):
        members = positions[keys == key]
        if positions[0] in members or positions[-1] in members:
            continue
        complete += 1
        assert len(members) == stride and np.all(np.diff(members) == 1), (key, members)
        assert abs(centres[keys == key].mean() - members.mean()) < 1e-3, \
            'output centred at %.2f for the input cell %d..%d (middle %.2f)' % (
                key, members[0], members[-1], members.mean())
    assert complete >= 1


@pytest.mark.parametrize('padding', PADDINGS)
@pytest.mark.parametrize('arch', ARCHS)
def test_an_impulse_comes_out_on_the_middle_of_its_input_cell(arch, padding, monkeypatch):
    positions = np.arange(MARGIN, HEIGHT - MARGIN)
    impulses = torch.zeros(len(positions), 1, HEIGHT, WIDTH)
    impulses[np.arange(len(positions)), 0, positions, positions + DIAGONAL_SHIFT] = 1.0
    for path, stride in SCORE_PATHS[arch].items():
        net = pass_through_network(arch, padding, path, monkeypatch)
        with torch.no_grad():
            response = net(impulses)[:, 0]
        assert response.shape == (len(positions), HEIGHT, WIDTH)
        assert (response >= 0).all() and (response.flatten(1).sum(1) > 0).all(), path
        assert_centred_on_their_cells(positions, centroids(response, 1).numpy(), stride)
        assert_centred_on_their_cells(positions + DIAGONAL_SHIFT, centroids(response, 2).numpy(), stride)


@pytest.mark.parametrize('padding', PADDINGS)
def test_a_shifted_input_gives_the_same_output_shifted(padding, monkeypatch):
    """A random input moved by one cell (32 px) down and right: the FCN-8s output moves by
    exactly 32 px (the pass-through network is shift-equivariant in steps of its stride)."""
    net = pass_through_network('fcn8s', padding, 'score_fr', monkeypatch)
    with torch.no_grad():
        for name in ('score_pool4', 'score_pool3'):
            getattr(net, name).weight[:, :, 0, 0] = 0.5
    x = torch.zeros(1, 1, HEIGHT, WIDTH)
    x[..., 64:160, 64:192] = torch.rand(96, 128, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(x, (32, 32), (2, 3))
    with torch.no_grad():
        out, out_shifted = net(x), net(shifted)
    torch.testing.assert_close(out_shifted[..., 32:, 32:], out[..., :-32, :-32], rtol=1e-5, atol=1e-6)
    assert out.abs().max() > 0.1


@pytest.mark.parametrize('arch', ['fcn16s', 'fcn8s'])
def test_skip_score_layers_start_at_zero_so_a_stage_starts_as_the_previous_one(arch):
    torch.manual_seed(0)
    fresh = build_model(arch, 5, fc_channels=16)
    for name in models.ARCHITECTURES[arch].SCORE_LAYERS:
        layer = getattr(fresh, name)
        assert torch.count_nonzero(layer.weight) == 0 and torch.count_nonzero(layer.bias) == 0, name
    previous_arch = {'fcn16s': 'fcn32s', 'fcn8s': 'fcn16s'}[arch]
    previous = build_model(previous_arch, 5, fc_channels=16)
    with torch.no_grad():
        for name, param in previous.named_parameters():
            if name.startswith('score'):
                param.normal_(0, 0.5)
    getattr(fresh, 'copy_params_from_' + previous_arch)(previous)
    x = torch.randn(2, 1, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = previous.eval()(x), fresh.eval()(x)
    # the skip maps add nothing: only the upsampling (x2 then x16 instead of x32) differs a little
    # (measured: 3-9 % of the spread; with Kaiming-initialised skip layers 80-230 %)
    spread = before.std()
    assert spread > 0.05
    assert (after - before).abs().mean() < 0.2 * spread
    assert (after.argmax(1) == before.argmax(1)).float().mean() > 0.9
