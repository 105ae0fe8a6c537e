"""The CUDA code paths without a GPU: autocast (bf16), channels_last and low-precision targets
run through the same trainer code on the CPU; a CPU run stays plain float32."""
import csv
import math
import os

import torch

import trainer


def read_losses(run_dir):
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    return [float(r['train/loss']) for r in rows if r['train/loss']], [float(r['valid/loss']) for r in rows if r['valid/loss']]


def test_cpu_runtime_is_plain_float32():
    cfg = dict(trainer.config_module.DEFAULTS)
    rt = trainer.Runtime(None, cfg)
    assert rt.device.type == 'cpu' and rt.amp_dtype is None and rt.target_dtype == torch.float32
    assert not rt.channels_last and not rt.pin_memory and not rt.scaler.is_enabled()


def test_autocast_and_channels_last_paths_train_on_cpu(photo_folder, work_dir, train, monkeypatch):
    original_init = trainer.Runtime.__init__

    def cuda_like(self, gpu, cfg):
        """The settings a CUDA device gets (bf16 autocast, NHWC), on the CPU."""
        original_init(self, gpu, cfg)
        self.amp_dtype = torch.bfloat16
        self.channels_last = True

    monkeypatch.setattr(trainer.Runtime, '__init__', cuda_like)
    run_dir = os.path.join(work_dir, 'run')
    result = train('fcn16s', '-d', photo_folder, '-o', run_dir, '--max-iter', 3)
    model = result.bare_model
    train_losses, valid_losses = read_losses(run_dir)
    assert len(train_losses) == 3 and all(math.isfinite(x) for x in train_losses + valid_losses)
    conv = model.conv1_2.weight
    assert conv.dtype == torch.float32  # autocast never changes the stored weights
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    ckpt = trainer.load_checkpoint(os.path.join(run_dir, trainer.MODEL_BEST))
    assert all(v.dtype in (torch.float32, torch.int64) for v in ckpt['model_state_dict'].values())
