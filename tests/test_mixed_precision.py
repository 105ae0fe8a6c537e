"""Mixed precision against float32: bf16 autocast through the trainer's own forward and loss
(each architecture, forward and backward), ``ColorEncoder.encode``, and the fp16 + GradScaler
training path with a scaler state that survives a resume.  On the CPU always; on CUDA as
well where there is one (marked ``cuda``)."""
import os
import types

import pytest
import torch

import config
import data_loader
import losses
import models
import runtime
import targets
import trainer
from conftest import NARROW, skimage_photo

DEVICES = ['cpu', pytest.param('cuda', marks=[
    pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')])]
ARCHS = sorted(models.ARCHITECTURES)
K = 16
# tolerances against float32 (measured on the CPU: loss within 2e-3, scores cosine >= 0.998,
# head gradients cosine >= 0.99)
LOSS_RTOL = 1e-2
SCORES_MIN_COSINE = 0.995
GRAD_MIN_COSINE = 0.98
# bf16 keeps 8 significant bits: a posterior in [0, 1] is stored within 2^-9
BF16_TARGET_ATOL = 2.0 ** -9


def photo_batch(size=(64, 48)):
    """uint8 ``[2, 3, H, W]`` of two scikit-image photos."""
    return torch.stack([torch.from_numpy(skimage_photo(name, size).copy()).permute(2, 0, 1)
                        for name in ('astronaut', 'coffee')])


def runtime_on(device, amp_dtype):
    """The project's Runtime, with the precision a CUDA device gets forced onto ``device``."""
    rt = runtime.Runtime(None, dict(config.DEFAULTS))
    rt.device, rt.amp_dtype = torch.device(device), amp_dtype
    return rt


def cosine(a, b):
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), 0))


def forward_backward(arch, device, amp_dtype):
    """Trainer.forward + the seed's summed loss + backward; (scores, loss, {name: gradient})."""
    torch.manual_seed(0)
    model = models.build_model(arch, K, fc_channels=32).to(device)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith('score'):   # zero-initialised: no gradient would reach the trunk
                param.normal_(0, 0.05)
    encoder = targets.ColorEncoder(targets.GMMBins.uniform_grid(K), 0.45, img_lowpass=4)
    trainer.set_train_mode(model, bn_dropout_eval=False)
    model.drop6.eval(), model.drop7.eval()   # the same (no) dropout mask in both precisions
    step = types.SimpleNamespace(encoder=encoder, rt=runtime_on(device, amp_dtype), cfg={'hints': False})
    _, target, scores = trainer.Trainer.forward(step, photo_batch(), model)
    loss = losses.reduce_loss(losses.pixel_losses(scores, target, encoder), 'sum')
    loss.backward()
    grads = {name: p.grad.detach().cpu() for name, p in model.named_parameters() if p.grad is not None}
    return scores.detach().cpu(), loss.item(), grads


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('arch', ARCHS)
def test_bf16_autocast_forward_and_backward_match_float32(arch, device):
    """Training-mode BatchNorm as the trainer: the loss, the scores and the gradients of the
    head (score layers, bn7).  The trunk's gradients are not compared: BatchNorm over a 2 x 2
    fc6 map makes them ill-conditioned in any precision (float32 itself is no reference there)."""
    scores, loss, grads = forward_backward(arch, device, None)
    scores_bf16, loss_bf16, grads_bf16 = forward_backward(arch, device, torch.bfloat16)
    assert scores_bf16.dtype == torch.float32 and scores_bf16.shape == scores.shape
    assert loss_bf16 == pytest.approx(loss, rel=LOSS_RTOL)
    assert cosine(scores_bf16, scores) > SCORES_MIN_COSINE
    head = [name for name in grads if name.startswith(('score', 'bn7'))]
    assert len(head) == 2 * len(models.ARCHITECTURES[arch].SCORE_LAYERS) + 2
    for name in head:
        assert grads_bf16[name].dtype == torch.float32 and grads[name].norm() > 0
        assert cosine(grads_bf16[name], grads[name]) > GRAD_MIN_COSINE, name


@pytest.mark.parametrize('device', DEVICES)
def test_encode_under_bf16_autocast_matches_float32(device):
    """An ambient autocast must not lower the precision the targets are computed in: only their
    storage is bf16 (low-pass matmuls in bf16 move H and C by ~4e-3 and flip pixels between bins)."""
    root = data_loader.materialise_bundled()
    ds = data_loader.ColorizeImageNet(root, 'train', files=data_loader.find_images(root), im_size=(32, 32),
                                      bins='soft', num_hc_bins=K)
    bins = targets.GMMBins.fit(ds.sample_pixels(10, 200, 0)[:, :2], K, 0)
    encoder = targets.ColorEncoder(bins, 0.45, img_lowpass=4)
    rgb = photo_batch((90, 70)).to(device)
    net_input, target = encoder.encode(rgb)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        net_input_amp, target_amp = encoder.encode(rgb, torch.bfloat16)
        _, target_amp_f32 = encoder.encode(rgb)
    assert target_amp.dtype == torch.bfloat16 and target_amp_f32.dtype == torch.float32
    torch.testing.assert_close(net_input_amp, net_input, rtol=0, atol=1e-6)
    torch.testing.assert_close(target_amp_f32, target, rtol=0, atol=1e-5)
    torch.testing.assert_close(target_amp.float(), target, rtol=0, atol=BF16_TARGET_ATOL)


# --------------------------------------------------------------------------
# fp16 + GradScaler, through the trainer, and a resume
# --------------------------------------------------------------------------

@pytest.fixture
def fp16_runtime(monkeypatch):
    """Every Runtime gets what a CUDA device without bf16 gets: fp16 autocast and an enabled
    GradScaler (growing after every good step, so its state changes within a short run)."""
    original_init = runtime.Runtime.__init__

    def fp16_like(self, gpu, cfg):
        original_init(self, gpu, cfg)
        self.amp_dtype = torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, init_scale=2.0 ** 8, growth_interval=1)

    monkeypatch.setattr(runtime.Runtime, '__init__', fp16_like)


def test_fp16_with_grad_scaler_trains_and_its_scale_survives_a_resume(photo_folder, work_dir, train,
                                                                      fp16_runtime):
    steps = 2   # fp16 convolutions are slow on a CPU: 32 x 32 images, 2 steps
    args = ['-d', photo_folder, '--set', 'optim=SGD', '--set', 'lr=1e-4', '--set', 'im_size=[32,32]'] + NARROW
    whole, resumed = os.path.join(work_dir, 'whole'), os.path.join(work_dir, 'resumed')
    done = train('fcn32s', *args, '-o', whole, '--max-iter', steps)
    assert done.rt.scaler.is_enabled() and done.rt.amp_dtype == torch.float16
    final = trainer.load_checkpoint(os.path.join(whole, trainer.CHECKPOINT))
    assert final['scaler_state_dict']['scale'] != 2.0 ** 8   # it grew (or backed off): the scaler ran
    train('fcn32s', *args, '-o', resumed, '--max-iter', steps // 2)
    halfway = trainer.load_checkpoint(os.path.join(resumed, trainer.CHECKPOINT))
    assert halfway['iteration'] == steps // 2
    train('fcn32s', '--resume', os.path.join(resumed, trainer.CHECKPOINT), '--max-iter', steps)
    again = trainer.load_checkpoint(os.path.join(resumed, trainer.CHECKPOINT))
    assert again['iteration'] == final['iteration'] == steps
    assert again['scaler_state_dict'] == final['scaler_state_dict']
    for name, value in final['model_state_dict'].items():
        torch.testing.assert_close(again['model_state_dict'][name], value, rtol=0, atol=0, msg=name)
