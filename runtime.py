"""Process plumbing of a training run: device, precision and process group, memory, the
resumable sampler, random-number states and atomic saves.

Nothing here knows about colour or networks; ``trainer.py`` uses it so that the
loop reads as the loop.  Under ``torchrun`` :class:`Runtime` reads the
environment torchrun sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``).
"""
import ctypes
import ctypes.util
import datetime
import glob
import logging
import os
import random

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger('colorizer')

CLOSE_WAIT_S = 30   # how long a process waits for the others when a distributed run ends

# --------------------------------------------------------------------------
# devices and processes
# --------------------------------------------------------------------------

class Runtime:
    """Device, precision and process group of this process, decided once.

    torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``) makes a distributed run: ``nccl`` on CUDA
    (one GPU per process, ``LOCAL_RANK``), ``gloo`` on CPU.
    """

    def __init__(self, gpu, cfg):
        self.world_size = int(os.environ.get('WORLD_SIZE', 1))
        self.rank = int(os.environ.get('RANK', 0))
        self.local_rank = int(os.environ.get('LOCAL_RANK', 0))
        self.distributed = self.world_size > 1
        if torch.cuda.is_available():
            index = self.local_rank if self.distributed else (gpu or 0)
            self.device = torch.device('cuda', index)
            torch.cuda.set_device(self.device)
        elif gpu is not None:
            raise RuntimeError('-g %d given but CUDA is not available' % gpu)
        else:
            self.device = torch.device('cpu')
        if self.distributed and cfg['sync_bn'] and not self.cuda:
            raise ValueError('sync_bn: torch.nn.SyncBatchNorm runs on CUDA only, this is a CPU (gloo) '
                             'job; set sync_bn=false (or bn_dropout_eval=true)')
        if self.distributed and not dist.is_initialized():
            dist.init_process_group('nccl' if self.cuda else 'gloo')
        use_amp = self.cuda and cfg['amp']
        self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) \
            if use_amp else None
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.amp_dtype == torch.float16)
        self.channels_last = self.cuda and cfg['channels_last']
        self.pin_memory = self.cuda and cfg['pin_memory']
        if self.cuda:
            torch.backends.cudnn.benchmark = cfg['cudnn_benchmark']
        self.keeps_freed_memory = cfg['keep_freed_memory'] and keep_freed_memory()

    @property
    def cuda(self):
        return self.device.type == 'cuda'

    @property
    def is_main(self):
        return self.rank == 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    @property
    def target_dtype(self):
        """Soft targets are stored in the autocast dtype (half the memory of float32)."""
        return self.amp_dtype or torch.float32

    def wrap(self, model, sync_bn):
        """The model on this device, as DistributedDataParallel under torchrun."""
        if self.distributed and sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.distributed:  # broadcasts rank 0's parameters and buffers
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.cuda else None)
        return model

    def broadcast(self, obj):
        """Rank 0's Python object, on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, make):
        """``make()`` run by rank 0 alone, its result on every rank.

        An exception on rank 0 is raised on every rank, so no process waits
        for a broadcast that never comes.
        """
        result, error = None, None
        if self.is_main:
            try:
                result = make()
            except Exception as err:  # re-raised below, on every rank
                error = err
        result, error = self.broadcast((result, error))
        if error is not None:
            raise error
        return result

    def all_true(self, flag):
        """Whether ``flag`` holds on every rank (one tiny all-reduce under DDP)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def all_reduce_sum(self, tensor):
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather(self, obj):
        """``[rank 0's obj, rank 1's obj, ...]`` on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self):
        """Leave the process group together: a gloo rank tearing its connections down while its peer
        still uses them aborts the peer (std::terminate); a rank that does not come within
        CLOSE_WAIT_S (one that failed alone) is not waited for longer."""
        if not (self.distributed and dist.is_initialized()):
            return
        if not self.cuda:
            try:
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=CLOSE_WAIT_S))
            except RuntimeError:
                pass
        dist.destroy_process_group()


# --------------------------------------------------------------------------
# memory and workers
# --------------------------------------------------------------------------

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc mallopt parameters (malloc.h)
MALLOC_KEEP_BYTES = 1 << 30
GLIBC_DEFAULT_THRESHOLD = 128 * 1024


def keep_freed_memory():
    """Let glibc keep freed memory for reuse instead of unmapping it; False where not glibc.

    By default every allocation over 32 MiB (a K = 128 target batch, the
    activations) is a fresh mmap whose pages fault in one by one on first
    touch, each step again: several times slower than reusing the heap.
    Forked DataLoader workers inherit the setting.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MALLOC_KEEP_BYTES) and mallopt(M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES))


def give_back_freed_memory(worker_id=None):
    """DataLoader ``worker_init_fn``: workers return freed memory to the system again (glibc's
    thresholds, 128 KiB), so one huge photo decoded once is not held for the whole run."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)


def default_workers():
    """One worker per core of this process, at most 8: workers sleep once their prefetch
    is full, and on a 2-core CPU two decode faster than one (bench/bench_targets.py)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(1, int(os.environ.get('LOCAL_WORLD_SIZE', 1)))))


def fresh_process_context():
    """multiprocessing's forkserver context whose server imported torch, ``torch._dynamo`` (every
    optimizer's first use imports it) and the trainer once: a process forked from it is as fresh as
    a new interpreter (none of the caller's state or threads, CUDA not initialised) but starts
    without their 4-5 s of imports.  experiments/quality.py trains its runs in such processes."""
    import multiprocessing
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload(['torch', 'torch._dynamo', 'trainer'])
    return context


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------
# the sampler: where an epoch stands, under any number of processes
# --------------------------------------------------------------------------

class ResumableSampler(torch.utils.data.Sampler):
    """This process's share of an epoch's order, from a global position on.

    Epoch ``e``'s order is a permutation drawn from ``seed + e`` (or
    ``0..n-1`` unshuffled).  Its positions from ``start`` on are dealt
    round-robin to the ``world_size`` ranks, padded by repeating the first
    ones so that every rank gets as many (as DistributedSampler).  One step of
    all ranks consumes ``batch_size * world_size`` positions, so a checkpoint's
    position means the same under any number of processes.  With
    ``numbered_by_epoch`` it yields ``epoch * n + i`` for item ``i``, so that a
    dataset (in any worker process) knows the epoch of each sample.
    """

    def __init__(self, n, shuffle, seed, rank=0, world_size=1, pad=True, numbered_by_epoch=False):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.numbered_by_epoch = numbered_by_epoch
        self.epoch, self.start = 0, 0

    def set_position(self, epoch, start=0):
        self.epoch, self.start = epoch, start

    def indices(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
            order = order.tolist()
        else:
            order = list(range(self.n))
        order = order[self.start:]
        if self.numbered_by_epoch:
            order = [self.epoch * self.n + i for i in order]
        if self.pad and order:
            order += [order[i % len(order)] for i in range(-len(order) % self.world_size)]
        return order[self.rank::self.world_size]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self):
        return len(self.indices())


# --------------------------------------------------------------------------
# saving without ever leaving half a file
# --------------------------------------------------------------------------

def temporary_path(path):
    return os.path.join(os.path.dirname(os.path.abspath(path)),
                        '.%s.tmp%d' % (os.path.basename(path), os.getpid()))


def atomic_torch_save(obj, path):
    """torch.save to a temporary file in the same folder, fsync, rename: never half a file."""
    tmp = temporary_path(path)
    with open(tmp, 'wb') as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(run_dir, names):
    """Delete the temporary files that a kill left from saves of ``names`` in ``run_dir``."""
    for name in names:
        for tmp in glob.glob(os.path.join(run_dir, '.%s.tmp*' % name)):
            os.remove(tmp)
            log.info('removed %s, left by an interrupted save', tmp)


# --------------------------------------------------------------------------
# random number generators
# --------------------------------------------------------------------------

def rng_state():
    """torch / CUDA / numpy / python RNG states as plain tensors and builtins."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        'numpy': {'keys': torch.from_numpy(np_state[1].astype(np.int64)), 'pos': int(np_state[2]),
                  'has_gauss': int(np_state[3]), 'cached_gaussian': float(np_state[4])},
        'python': {'version': py_state[0], 'state': list(py_state[1]), 'gauss': py_state[2]},
    }


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    n = state['numpy']
    np.random.set_state(('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(p['state']), p['gauss']))
