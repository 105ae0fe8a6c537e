"""The speed paths without a GPU: autocast (bf16), channels_last and low-precision targets
run through the same trainer code on the CPU; a CPU run stays plain float32; the glibc
allocator setting keeps freed memory."""
import concurrent.futures
import csv
import math
import os
import subprocess
import sys

import pytest
import torch

import config
import runtime
import trainer
from conftest import NARROW, REPO_DIR


def read_losses(run_dir):
    with open(os.path.join(run_dir, 'log.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    return [float(r['train/loss']) for r in rows if r['train/loss']], [float(r['valid/loss']) for r in rows if r['valid/loss']]


def test_cpu_runtime_is_plain_float32():
    cfg = dict(config.DEFAULTS)
    rt = runtime.Runtime(None, cfg)
    assert rt.device.type == 'cpu' and rt.amp_dtype is None and rt.target_dtype == torch.float32
    assert not rt.channels_last and not rt.pin_memory and not rt.scaler.is_enabled()


def test_autocast_and_channels_last_paths_train_on_cpu(photo_folder, work_dir, train, monkeypatch):
    original_init = runtime.Runtime.__init__

    def cuda_like(self, gpu, cfg):
        """The settings a CUDA device gets (bf16 autocast, NHWC), on the CPU."""
        original_init(self, gpu, cfg)
        self.amp_dtype = torch.bfloat16
        self.channels_last = True

    monkeypatch.setattr(runtime.Runtime, '__init__', cuda_like)
    run_dir = os.path.join(work_dir, 'run')
    result = train('fcn16s', '-d', photo_folder, '-o', run_dir, '--max-iter', 3, *NARROW)
    model = result.bare_model
    train_losses, valid_losses = read_losses(run_dir)
    assert len(train_losses) == 3 and all(math.isfinite(x) for x in train_losses + valid_losses)
    conv = model.conv1_2.weight
    assert conv.dtype == torch.float32  # autocast never changes the stored weights
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    ckpt = trainer.load_checkpoint(os.path.join(run_dir, trainer.MODEL_BEST))
    assert all(v.dtype in (torch.float32, torch.int64) for v in ckpt['model_state_dict'].values())


MALLINFO_PROBE = r'''
import ctypes, ctypes.util, sys
sys.path.insert(0, %(repo)r)
import torch, runtime

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks',
                 'keepcost')]

libc = ctypes.CDLL(ctypes.util.find_library('c'))
libc.mallinfo2.restype = MallInfo2
kept = runtime.keep_freed_memory() if %(mode)r != 'default' else False
if %(mode)r == 'given back':   # what a DataLoader worker does first (worker_init_fn)
    runtime.give_back_freed_memory(0)
big = torch.empty(64 << 20, dtype=torch.uint8).fill_(1)   # 64 MiB, over glibc's largest default mmap threshold
mapped = libc.mallinfo2().hblkhd
del big
print(kept, mapped, libc.mallinfo2().fordblks)
'''


def glibc_mallinfo2():
    import ctypes.util
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library('c')), 'mallinfo2')
    except OSError:
        return False


@pytest.mark.skipif(not glibc_mallinfo2(), reason='glibc >= 2.33 (mallinfo2) only')
def test_keep_freed_memory_makes_glibc_keep_a_freed_64mib_block_for_reuse_and_workers_give_it_back():
    def probe(mode):
        out = subprocess.run([sys.executable, '-c', MALLINFO_PROBE % dict(repo=REPO_DIR, mode=mode)],
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0] == 'True', int(out[1]), int(out[2])
    with concurrent.futures.ThreadPoolExecutor(3) as pool:   # three processes of their own, side by side
        keep, default, given_back = pool.map(probe, ('keep', 'default', 'given back'))
    kept, mapped, free_after = keep
    assert kept and mapped < (64 << 20) and free_after >= (64 << 20)   # from the heap, and kept there
    kept, mapped, free_after = default
    assert not kept and mapped >= (64 << 20) and free_after < (64 << 20)   # default: its own mmap, unmapped
    kept, mapped, free_after = given_back
    assert kept and mapped >= (64 << 20) and free_after < (64 << 20)   # a worker: back to the default
