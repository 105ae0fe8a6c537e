"""Tests for models.py (CPU, small widths: fc_channels=64 unless stated)."""
import math
import re
import warnings

import numpy as np
import pytest
import torch

import models
from models import (ARCHITECTURES, FCN8sColor, FCN16sColor, FCN32sColor,
                    build_model, get_upsampling_weight)

FC = 64  # small fc6/fc7 width keeps every test fast
ARCHS = sorted(ARCHITECTURES)
PADDINGS = ('same', 'caffe')
SIZES = [32, 33, (37, 45), 64, (65, 97)]
CAFFE_REAL_SIZES = [33, (37, 45)]
UPSAMPLERS = {'fcn32s': ['upscore'], 'fcn16s': ['upscore2', 'upscore16'],
              'fcn8s': ['upscore2', 'upscore_pool4', 'upscore8']}


def _hw(size):
    return (size, size) if isinstance(size, int) else size


def _bilinear_reference(k):
    """Independent 2D tent: outer product of 1 - |i - (k-1)/2| / ceil(k/2)."""
    f = math.ceil(k / 2)
    w1 = np.array([1 - abs(i - (k - 1) / 2) / f for i in range(k)])
    return np.outer(w1, w1)


@pytest.mark.parametrize('k', [3, 4, 16, 32, 64])
def test_upsampling_weight_matches_bilinear_formula(k):
    w = get_upsampling_weight(3, 3, k)
    assert w.shape == (3, 3, k, k) and w.dtype == torch.float32
    ref = torch.from_numpy(_bilinear_reference(k)).float()
    for i in range(3):
        for j in range(3):
            expected = ref if i == j else torch.zeros(k, k)
            torch.testing.assert_close(w[i, j], expected)


@pytest.mark.parametrize('stride', [2, 8, 16, 32])
def test_upsampler_interpolates_constant_and_ramp(stride):
    up = models._bilinear_upsampler(2, stride)
    n = 6
    const = torch.full((1, 2, n, n), 3.0)
    ramp = torch.arange(n, dtype=torch.float32).expand(1, 2, n, n)
    with torch.no_grad():
        yc, yr = up(const), up(ramp)
    inner = slice(stride, stride * n)  # away from the borders
    torch.testing.assert_close(yc[..., inner, inner],
                               torch.full_like(yc[..., inner, inner], 3.0))
    # Along W, consecutive outputs differ by 1/stride (linear interpolation).
    dx = yr[..., inner, inner].diff(dim=-1)
    torch.testing.assert_close(dx, torch.full_like(dx, 1.0 / stride))


@pytest.mark.parametrize('stride', [2, 16, 32])
def test_depthwise_upsampler_equals_dense_diagonal_kernel(stride):
    """The groups=C upsampler matches pytorch-fcn's dense [C, C, k, k] one."""
    c = 5
    x = torch.randn(2, c, 4, 3)
    dense = get_upsampling_weight(c, c, 2 * stride)
    with torch.no_grad():
        ref = torch.nn.functional.conv_transpose2d(x, dense, stride=stride)
        out = models._bilinear_upsampler(c, stride)(x)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize('stride', [2, 8, 16, 32])
def test_same_crop_offset_aligns_with_input(stride):
    """A stride-s map has pixel j centred at input s*j + (s-1)/2; upsampling
    a ramp of those coordinates and cropping at s/2 must give output[o] == o."""
    n = 5
    centres = stride * torch.arange(n, dtype=torch.float32) + (stride - 1) / 2
    feat = centres.expand(1, 1, n, n)
    with torch.no_grad():
        out = models._bilinear_upsampler(1, stride)(feat)
    out = models._crop(out, stride // 2, (stride * n, stride * n))
    inner = slice(stride, stride * (n - 1))
    expected = torch.arange(stride * n, dtype=torch.float32)[inner]
    torch.testing.assert_close(out[0, 0, 3 * stride, inner], expected)
    offs = {2: [FCN16sColor.SAME_OFFSETS['pool4'],
                FCN8sColor.SAME_OFFSETS['pool3']],
            8: [FCN8sColor.SAME_OFFSETS['final']],
            16: [FCN16sColor.SAME_OFFSETS['final']],
            32: [FCN32sColor.SAME_OFFSETS['final']]}[stride]
    assert all(o == stride // 2 for o in offs)


@pytest.mark.parametrize('padding', PADDINGS)
@pytest.mark.parametrize('arch', ARCHS)
def test_output_shape_equals_input(arch, padding):
    torch.manual_seed(0)
    n_class = 7
    m = build_model(arch, n_class, padding=padding, fc_channels=FC).eval()
    assert isinstance(m, ARCHITECTURES[arch])
    meta = build_model(arch, n_class, padding=padding, fc_channels=8)
    meta = meta.to('meta').eval()
    with torch.no_grad():
        for size in SIZES:
            h, w = _hw(size)
            # 'caffe' pads every input by 200 px: run the costly sizes on the
            # meta device (same shape logic, no compute) to keep this fast.
            real = padding == 'same' or size in CAFFE_REAL_SIZES
            net, dev = (m, 'cpu') if real else (meta, 'meta')
            y = net(torch.randn(1, 1, h, w, device=dev))
            assert y.shape == (1, n_class, h, w), (size, y.shape)
            assert y.is_contiguous()


@pytest.mark.parametrize('arch', ARCHS)
def test_odd_size_sweep_on_meta(arch):
    """Shape-only check (meta device) over many odd/even sizes."""
    for padding in PADDINGS:
        m = build_model(arch, 3, padding=padding, fc_channels=8).to('meta')
        for h in (32, 35, 47, 63, 77, 100, 129, 255):
            w = h + 18
            y = m.eval()(torch.empty(1, 1, h, w, device='meta'))
            assert y.shape == (1, 3, h, w)


def test_train_mode_channels_last_and_autocast():
    torch.manual_seed(0)
    m = FCN8sColor(n_class=5, fc_channels=FC)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith('score'):
                p.normal_(0, 0.1)
    x = torch.randn(2, 1, 37, 45)
    y = m.train()(x)
    assert y.shape == (2, 5, 37, 45)
    m.eval()
    with torch.no_grad():
        ref = m(x)
        mcl = m.to(memory_format=torch.channels_last)
        ycl = mcl(x.to(memory_format=torch.channels_last))
        assert ycl.shape == ref.shape
        assert ycl.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(ycl, ref, rtol=1e-4, atol=1e-4)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            ya = m(x)
    assert ya.shape == ref.shape and torch.isfinite(ya).all()


@pytest.mark.parametrize('arch', ARCHS)
def test_upsamplers_frozen(arch):
    torch.manual_seed(0)
    m = build_model(arch, 4, fc_channels=FC).train()
    names = UPSAMPLERS[arch]
    before = {n: getattr(m, n).weight.detach().clone() for n in names}
    for n in names:
        assert not getattr(m, n).weight.requires_grad
        assert getattr(m, n).bias is None
        assert f'{n}.weight' in m.state_dict()
    score_before = m.score_fr.weight.detach().clone()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x = torch.randn(2, 1, 32, 32)
    target = torch.randint(0, 4, (2, 32, 32))
    loss = torch.nn.functional.cross_entropy(m(x), target)
    loss.backward()
    opt.step()
    for n in names:
        assert getattr(m, n).weight.grad is None
        torch.testing.assert_close(getattr(m, n).weight, before[n], rtol=0,
                                   atol=0)
    assert not torch.equal(m.score_fr.weight, score_before)  # step happened


def test_state_dict_keys_stable():
    keys32 = FCN32sColor(n_class=3, fc_channels=FC).state_dict().keys()
    for k in ('conv1_1.weight', 'conv1_1.bias', 'bn1_1.running_mean',
              'conv5_3.weight', 'bn5_3.num_batches_tracked', 'fc6.weight',
              'bn6.weight', 'fc7.weight', 'bn7.running_var',
              'score_fr.weight', 'score_fr.bias', 'upscore.weight'):
        assert k in keys32
    keys16 = FCN16sColor(n_class=3, fc_channels=FC).state_dict().keys()
    assert {'score_pool4.weight', 'upscore2.weight',
            'upscore16.weight'} <= set(keys16)
    assert 'upscore.weight' not in keys16
    keys8 = FCN8sColor(n_class=3, fc_channels=FC).state_dict().keys()
    assert {'score_pool4.weight', 'score_pool3.weight', 'upscore2.weight',
            'upscore_pool4.weight', 'upscore8.weight'} <= set(keys8)
    m = FCN32sColor(n_class=3, fc_channels=FC)
    assert m.upscore.weight.shape == (3, 1, 64, 64)  # depthwise
    assert m.conv1_1.weight.shape == (64, 1, 3, 3)
    assert m.fc6.weight.shape == (FC, 512, 7, 7)
    assert m.score_fr.weight.shape == (3, FC, 1, 1)
    assert torch.count_nonzero(m.score_fr.weight) == 0  # as pytorch-fcn


@pytest.mark.parametrize('arch', ARCHS)
def test_a_narrower_trunk_keeps_the_keys_and_vgg16s_proportions(arch):
    """trunk_width 16: every VGG16 layer a quarter as wide (the skip score layers read the narrower pools),
    the same state_dict keys, the same output shape; VGG16 weights refused; no stage copy across widths."""
    wide, narrow = (build_model(arch, 3, fc_channels=FC, trunk_width=w) for w in (64, 16))
    wide_sd, narrow_sd = wide.state_dict(), narrow.state_dict()
    assert list(wide_sd) == list(narrow_sd)
    for key, value in wide_sd.items():
        if re.match(r'(conv|bn)\d_\d\.', key) and value.ndim:   # the trunk's layers
            expected = ([value.shape[0] // 4, value.shape[1] // 4] + list(value.shape[2:]) if value.ndim == 4
                        else [value.shape[0] // 4])
            if key == 'conv1_1.weight':
                expected[1] = 1   # the lightness input
            assert list(narrow_sd[key].shape) == expected, key
    assert narrow_sd['fc6.weight'].shape == (FC, 128, 7, 7)
    for pool, channels in (('pool4', 128), ('pool3', 64)):
        if 'score_%s.weight' % pool in narrow_sd:
            assert narrow_sd['score_%s.weight' % pool].shape == (3, channels, 1, 1)
    x = torch.randn(1, 1, 70, 90)
    assert narrow.eval()(x).shape == (1, 3, 70, 90)
    with pytest.raises(ValueError, match='VGG16 weights need trunk_width 64'):
        narrow.copy_params_from_vgg16({})
    with pytest.raises(ValueError, match='trunk_width differs'):
        wide.copy_params_from(build_model(arch, 3, fc_channels=FC, trunk_width=32))


def test_caffe_padding_geometry_matches_pytorch_fcn():
    """pool5 of a 224 input: conv1_1 pads 100 (3x3), 2x2 ceil-mode pools."""
    n = 224 + 2 * 100 - 3 + 1
    for _ in range(5):
        n = math.ceil((n - 2) / 2) + 1
    assert n == 14
    m = FCN32sColor(n_class=3, padding='caffe', fc_channels=FC).eval()
    assert m.conv1_1.padding == (100, 100) and m.fc6.padding == (0, 0)
    assert m.offsets == {'final': 19}
    assert FCN16sColor.CAFFE_OFFSETS == {'pool4': 5, 'final': 27}
    assert FCN8sColor.CAFFE_OFFSETS == {'pool4': 5, 'pool3': 9, 'final': 31}
    shapes = {}

    def record(name):
        def hook(mod, inp, out):
            shapes[name] = out.shape
        return hook
    m.pool5.register_forward_hook(record('pool5'))
    m.fc6.register_forward_hook(record('fc6'))
    m = m.to('meta')
    y = m(torch.empty(1, 1, 224, 224, device='meta'))
    assert shapes['pool5'][-2:] == (n, n)
    assert shapes['fc6'][-2:] == (n - 6, n - 6)
    assert y.shape == (1, 3, 224, 224)


# -- VGG16 import -----------------------------------------------------------

@pytest.fixture(scope='module')
def vgg_states():
    """{name: state dict} of random torchvision VGG16 / VGG16-BN (1.1 GB in memory for this module)."""
    tv = pytest.importorskip('torchvision')
    torch.manual_seed(0)
    states = {}
    for name in ('vgg16', 'vgg16_bn'):
        net = getattr(tv.models, name)(weights=None)
        if name == 'vgg16_bn':  # make BN params/stats non-trivial
            with torch.no_grad():
                for mod in net.features:
                    if isinstance(mod, torch.nn.BatchNorm2d):
                        mod.weight.uniform_(0.5, 1.5)
                        mod.bias.normal_()
                        mod.running_mean.normal_()
                        mod.running_var.uniform_(0.5, 2)
                        mod.num_batches_tracked.fill_(7)
        states[name] = net.state_dict()
    return states


@pytest.mark.parametrize('name', ['vgg16', 'vgg16_bn'])
def test_copy_params_from_vgg16(vgg_states, name):
    sd = vgg_states[name]
    m = FCN32sColor(n_class=3, fc_channels=4096)
    m.copy_params_from_vgg16(sd)
    conv_idx = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    if name == 'vgg16_bn':  # each conv is followed by BN and ReLU
        conv_idx = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
    def eq(a, b):  # exact copies; torch.equal is cheap on the 100M fc6
        assert a.shape == b.shape and torch.equal(a, b)
    torch.testing.assert_close(
        m.conv1_1.weight, sd['features.0.weight'].mean(dim=1, keepdim=True))
    eq(m.conv1_1.bias, sd['features.0.bias'])
    eq(m.conv3_2.weight, sd[f'features.{conv_idx[5]}.weight'])
    eq(m.conv5_3.weight, sd[f'features.{conv_idx[-1]}.weight'])
    eq(m.conv5_3.bias, sd[f'features.{conv_idx[-1]}.bias'])
    if name == 'vgg16_bn':
        for bn, src in (('bn1_1', 1), ('bn5_3', 41)):
            for f in ('weight', 'bias', 'running_mean', 'running_var',
                      'num_batches_tracked'):
                eq(getattr(getattr(m, bn), f), sd[f'features.{src}.{f}'])
    else:
        eq(m.bn1_1.running_var, torch.ones(64))  # untouched
    eq(m.fc6.weight, sd['classifier.0.weight'].reshape(4096, 512, 7, 7))
    eq(m.fc6.bias, sd['classifier.0.bias'])
    eq(m.fc7.weight, sd['classifier.3.weight'].reshape(4096, 4096, 1, 1))
    eq(m.fc7.bias, sd['classifier.3.bias'])


def test_copy_params_from_vgg16_small_fc_warns_and_rejects_garbage(vgg_states):
    sd = vgg_states['vgg16_bn']
    m = FCN8sColor(n_class=3, fc_channels=FC)
    fc6_before = m.fc6.weight.detach().clone()
    with pytest.warns(UserWarning, match='fc6/fc7 not copied'):
        m.copy_params_from_vgg16(sd)
    torch.testing.assert_close(m.conv4_1.weight, sd['features.24.weight'])
    assert torch.equal(m.fc6.weight, fc6_before)

    for bad in ({'foo': torch.zeros(3)}, {}, [1, 2],
                {k: v for k, v in sd.items() if k != 'features.40.weight'},
                {k: (v[:, :1] if k == 'features.0.weight' else v)
                 for k, v in sd.items()}):
        with pytest.raises(ValueError):
            m.copy_params_from_vgg16(bad)
    big = FCN32sColor(n_class=3, fc_channels=4096)
    with pytest.raises(ValueError):  # needs the classifier to fill fc6/fc7
        big.copy_params_from_vgg16(
            {k: v for k, v in sd.items() if not k.startswith('classifier')})


# -- stage-wise initialisation ---------------------------------------------

def _randomise(model):
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.normal_()
            else:
                t.fill_(11)


def _assert_shared_equal(dst, src, expect_keys):
    d, s = dst.state_dict(), src.state_dict()
    shared = [k for k in s if k in d]
    assert set(expect_keys) <= set(shared)
    for k in shared:
        assert torch.equal(d[k], s[k]), k


def test_copy_params_from_fcn32s_and_fcn16s():
    torch.manual_seed(0)
    m32 = FCN32sColor(n_class=4, fc_channels=FC)
    _randomise(m32)
    m16 = FCN16sColor(n_class=4, fc_channels=FC)
    pool4_before = m16.score_pool4.weight.detach().clone()
    m16.copy_params_from_fcn32s(m32)
    _assert_shared_equal(m16, m32, ['conv1_1.weight', 'bn3_2.running_mean',
                                    'bn7.num_batches_tracked',
                                    'score_fr.weight', 'fc6.weight'])
    assert torch.equal(m16.score_pool4.weight, pool4_before)

    _randomise(m16)
    m8 = FCN8sColor(n_class=4, fc_channels=FC)
    m8.copy_params_from_fcn16s(m16)
    _assert_shared_equal(m8, m16, ['conv5_3.weight', 'bn5_3.running_var',
                                   'score_fr.bias', 'score_pool4.weight',
                                   'upscore2.weight'])

    with pytest.raises(ValueError):
        FCN16sColor(n_class=5, fc_channels=FC).copy_params_from_fcn32s(m32)
    with pytest.raises(ValueError):
        FCN16sColor(n_class=4, padding='caffe',
                    fc_channels=FC).copy_params_from_fcn32s(m32)
    with pytest.raises(ValueError):
        FCN8sColor(n_class=4, fc_channels=32).copy_params_from_fcn16s(m16)


def test_build_model_and_bad_arguments():
    assert set(ARCHITECTURES) == {'fcn32s', 'fcn16s', 'fcn8s'}
    m = build_model('fcn16s', 6, padding='caffe', fc_channels=FC)
    assert (m.n_class, m.padding, m.fc_channels) == (6, 'caffe', FC)
    with pytest.raises(ValueError):
        build_model('fcn4s', 6)
    with pytest.raises(ValueError):
        FCN32sColor(n_class=3, padding='valid', fc_channels=FC)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        FCN8sColor(fc_channels=FC)  # default n_class=32, no warnings
