# Copyright 2026 The liteseg_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Train PP-LiteSeg as PaddleSeg does, in one process or under ``torchrun`` (DDP).

Usage::

    python -m training.train --config training/configs/X.yaml [--resume]
        [--override train.iters=1000 ...] [--output-dir DIR] [--device auto|cpu|cuda]
        [--deterministic] [--stop-at N] [--init-from CKPT.pt] [--no-progress]
    torchrun --nproc-per-node 4 -m training.train --config training/configs/X.yaml

``train.batch_size`` is the GLOBAL batch: each of N processes takes ``batch_size / N`` samples
(PaddleSeg's 4 GPUs x 4 = 16); ``loss.min_kept`` applies per process, as in PaddleSeg.

Data order and augmentation are functions of ``(train.seed, iteration)``: each iteration's
global batch is a slice of a seeded per-epoch permutation, split across processes, and every
sample's augmentation RNGs are seeded from ``(seed, iteration, position in the global batch)``.
A resumed run therefore sees exactly the data the uninterrupted run would have seen, whatever the
number of data-loader workers, and N processes see the same global batches as one process.

Outputs in the output directory: ``last.pt`` (everything needed to resume, written atomically),
``best.pt`` (plain liteseg/1 checkpoint of the best evaluation), ``train_log.csv``,
``training_curves.png``, ``tensorboard/`` (when the tensorboard package is installed) and the
resolved ``config.yaml``.
"""

import argparse
import csv
import datetime
import math
import os
from pathlib import Path
import random
import sys
import time

from liteseg_ros.atomic_file import atomic_write, write_bytes_atomic
from liteseg_ros.model import build_model, CheckpointError, load_checkpoint, save_checkpoint
import numpy as np
import torch
from torch import nn
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm
from training.schedule import build_optimizer, build_scheduler
import yaml

LAST = 'last.pt'
BEST = 'best.pt'
CSV_NAME = 'train_log.csv'
CURVES_NAME = 'training_curves.png'
CSV_FIELDS = ('iteration', 'loss', 'lr', 'it_s', 'data_s', 'miou')
BACKBONE_FORMAT = 'liteseg-backbone/1'
AMP_DTYPES = {None: None, 'none': None, 'fp32': None, 'bf16': torch.bfloat16,
              'fp16': torch.float16}

try:  # torch's CUDA SyncBatchNorm autograd function (private; an all-reduce path replaces it)
    from torch.nn.modules._functions import SyncBatchNorm as _TORCH_SYNC_BN
except ImportError:  # pragma: no cover
    _TORCH_SYNC_BN = None


class TrainError(Exception):
    """A problem the user can fix (file, setting); main() prints it as one line."""


# --------------------------------------------------------------------------------------------
# Distributed helpers


class Dist:
    """Rank, world size and device of this process; single-process values without torchrun."""

    def __init__(self, device='auto'):
        """Join the torchrun process group when WORLD_SIZE > 1 and pick the device."""
        self.world_size = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        use_cuda = device == 'cuda' or (device == 'auto' and torch.cuda.is_available())
        if use_cuda and not torch.cuda.is_available():
            raise TrainError('--device cuda: torch.cuda.is_available() is False on this machine')
        if use_cuda:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device('cuda', self.local_rank)
        else:
            self.device = torch.device('cpu')
        self.initialized_here = False
        if self.world_size > 1 and not dist.is_initialized():
            backend = 'nccl' if use_cuda else 'gloo'
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=60))
            self.initialized_here = True

    @property
    def is_main(self):
        return self.rank == 0

    def barrier(self):
        if self.world_size > 1:
            dist.barrier()

    def mean(self, value):
        """Return the mean of a float over all processes."""
        if self.world_size == 1:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64,
                              device=self.device if self.device.type == 'cuda' else 'cpu')
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def close(self):
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over the process group; the gradient is summed over the group too."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class TrainBatchNorm2d(nn.BatchNorm2d):
    """
    BatchNorm for training: Paddle's running variance, optionally synchronised across processes.

    - ``running_var`` tracks the biased batch variance, as Paddle's BatchNorm/SyncBatchNorm and
      this project's ``BatchNorm2d`` do (without sync, or outside a process group, the two
      layers compute the same).
    - ``sync=True`` under an initialised process group of more than one process normalises with
      the statistics of the global batch (SyncBN). torch 2.13's ``nn.SyncBatchNorm`` refuses CPU
      tensors (and DDP refuses it in CPU modules): on CPU (gloo) the statistics are reduced here
      with autograd-aware all-reduces (sum and count, then the centred sum of squares); on CUDA
      torch's own sync_batch_norm autograd function runs.

    Parameter and buffer names equal BatchNorm2d's, so state dicts are interchangeable.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None, sync=False):
        """Build the layer; ``sync`` chooses global (DDP) or per-process batch statistics."""
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group
        self.sync = sync

    def _group(self):
        return self.process_group or dist.group.WORLD

    def _syncing(self):
        return (self.sync and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self._group()) > 1)

    def forward(self, x):
        """Normalise ``x`` with the batch statistics (of all processes when syncing)."""
        if not (self.training and self.track_running_stats):
            return super().forward(x)
        if not self._syncing():
            return self._local_forward(x)
        if x.device.type == 'cpu' or _TORCH_SYNC_BN is None:
            return self._allreduce_sync_forward(x)
        # torch's sync_batch_norm does not save running_var for backward: correct it in place.
        world = dist.get_world_size(self._group())
        self.num_batches_tracked.add_(1)
        previous = self.running_var.clone()
        out = _TORCH_SYNC_BN.apply(x, self.weight, self.bias, self.running_mean,
                                   self.running_var, self.eps, self._factor(), self._group(),
                                   world)
        self._debias(previous, self.running_var.clone(), x.numel() // x.shape[1] * world)
        return out

    def _factor(self):
        return (self.momentum if self.momentum is not None
                else 1.0 / float(self.num_batches_tracked))

    def _debias(self, previous, updated, count):
        # ``updated`` = (1 - f) previous + f unbiased_var; store the biased variance instead.
        factor = self._factor()
        with torch.no_grad():
            unbiased = (updated - (1 - factor) * previous) / factor
            biased = unbiased * ((count - 1) / max(count, 1))
            self.running_var.copy_((1 - factor) * previous + factor * biased)

    def _local_forward(self, x):
        self.num_batches_tracked.add_(1)
        updated = self.running_var.clone()
        out = F.batch_norm(x, self.running_mean, updated, self.weight, self.bias, True,
                           self._factor(), self.eps)
        self._debias(self.running_var.clone(), updated, x.numel() // x.shape[1])
        return out

    def _allreduce_sync_forward(self, x):
        group = self._group()
        channels = x.shape[1]
        dims = (0,) + tuple(range(2, x.dim()))
        shape = (1, channels) + (1,) * (x.dim() - 2)
        xf = x.float()
        local = torch.cat([xf.sum(dims), xf.new_tensor([xf.numel() // channels])])
        stats = _AllReduceSum.apply(local, group)
        total = stats[channels]
        mean = stats[:channels] / total
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), group) / total
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = self._factor()
            self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            self.running_var.mul_(1 - factor).add_(var.detach(), alpha=factor)
        return out.to(x.dtype)


def convert_batchnorm(module, sync=False, process_group=None):
    """Return ``module`` with every BatchNorm replaced by TrainBatchNorm2d sharing its tensors."""
    result = module
    if isinstance(module, nn.BatchNorm2d):
        result = TrainBatchNorm2d(module.num_features, module.eps, module.momentum,
                                  module.affine, module.track_running_stats, process_group, sync)
        if module.affine:
            result.weight = module.weight
            result.bias = module.bias
        result.running_mean = module.running_mean
        result.running_var = module.running_var
        result.num_batches_tracked = module.num_batches_tracked
        result.train(module.training)
    for name, child in module.named_children():
        result.add_module(name, convert_batchnorm(child, sync, process_group))
    return result


# --------------------------------------------------------------------------------------------
# Data: iteration-indexed sampling and per-sample seeding


class IterationSampler(torch.utils.data.Sampler):
    """
    Distributed batch sampler whose batches are a function of (seed, iteration).

    Epoch ``e`` is a permutation of the dataset seeded by ``(seed, e)``; iteration ``i`` of an
    epoch of ``len(dataset) // global_batch`` iterations takes the i-th slice of
    ``global_batch`` indices (the tail that does not fill a batch is dropped, as PaddleSeg's
    ``drop_last``), and process ``rank`` takes its ``global_batch / world_size`` share of that
    slice. Items are ``(index, epoch)`` pairs: the project's datasets augment item ``i`` of
    epoch ``e`` with ``numpy.random.default_rng([seed, e, i])``, so augmentation too is fixed
    by the iteration, whatever the worker or process that loads the item.
    """

    def __init__(self, dataset_size, global_batch, seed, start_iteration, iterations, rank=0,
                 world_size=1):
        """Yield the batches of iterations ``start_iteration`` to ``iterations - 1``."""
        if global_batch % world_size:
            raise TrainError(f'train.batch_size {global_batch} is not divisible by the '
                             f'{world_size} processes')
        if dataset_size < global_batch:
            raise TrainError(f'the training set has {dataset_size} samples, fewer than '
                             f'train.batch_size {global_batch}')
        self.dataset_size = dataset_size
        self.global_batch = global_batch
        self.batch = global_batch // world_size
        self.seed = int(seed)
        self.start = int(start_iteration)
        self.iterations = int(iterations)
        self.rank = rank
        self.iters_per_epoch = dataset_size // global_batch
        self._epoch = None
        self._permutation = None

    def __len__(self):
        return max(self.iterations - self.start, 0)

    def permutation(self, epoch):
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, 0, epoch])
            self._permutation = rng.permutation(self.dataset_size)
            self._epoch = epoch
        return self._permutation

    def batch_for(self, iteration):
        """Return this process's ``(index, epoch)`` pairs for ``iteration``."""
        epoch, step = divmod(iteration, self.iters_per_epoch)
        first = step * self.global_batch + self.rank * self.batch
        return [(int(index), epoch)
                for index in self.permutation(epoch)[first:first + self.batch]]

    def __iter__(self):
        for iteration in range(self.start, self.iterations):
            yield self.batch_for(iteration)


def seed_all(seed):
    """Seed python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _worker_init(worker_id):
    # Augmentation uses per-item generators (see IterationSampler); this gives any other use
    # of the global RNGs in a worker a reproducible, worker-distinct state.
    info = torch.utils.data.get_worker_info()
    seed_all(info.seed % 2 ** 32 if info is not None else worker_id)


# --------------------------------------------------------------------------------------------
# State: RNGs, checkpoints, logs, curves


def rng_state():
    """Return python, numpy, torch (and CUDA) RNG states as plain types."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {'python': random.getstate(),
             'numpy': {'name': name, 'keys': torch.from_numpy(keys.astype(np.int64)),
                       'pos': int(pos), 'has_gauss': int(has_gauss), 'cached': float(cached)},
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore the RNG states of :func:`rng_state`."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    numpy = state['numpy']
    np.random.set_state((numpy['name'], numpy['keys'].numpy().astype(np.uint32), numpy['pos'],
                         numpy['has_gauss'], numpy['cached']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def plain(value):
    """Return ``value`` as YAML/``weights_only``-safe plain types (paths become strings)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


def save_training_checkpoint(path, model, optimizer, scheduler, scaler, iteration, config,
                             **extra):
    """
    Write ``last.pt`` atomically: a liteseg/1 checkpoint plus everything needed to resume.

    The file is written to a temporary file beside ``path``, fsynced and renamed over it, so a
    kill at any moment leaves either the previous checkpoint or the new one.
    """
    save_checkpoint(path, model, iteration=int(iteration),
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    scaler=scaler.state_dict(), rng=rng_state(), train_config=plain(config),
                    **extra)


class CsvLog:
    """``train_log.csv``: one row per logged iteration (``miou`` filled at evaluations)."""

    def __init__(self, path, start_iteration):
        """Open ``path``, dropping rows past ``start_iteration`` (written after last.pt)."""
        self.path = Path(path)
        rows = read_csv(self.path) if start_iteration > 0 else []
        rows = [r for r in rows if int(float(r['iteration'])) <= start_iteration]
        with atomic_write(self.path) as f:
            f.write(self._format(rows))

    @staticmethod
    def _format(rows):
        import io
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, lineterminator='\n')
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, '') for k in CSV_FIELDS})
        return text.getvalue().encode()

    def append(self, **row):
        with open(self.path, 'a', newline='') as f:
            csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator='\n').writerow(
                {k: _csv_value(row.get(k)) for k in CSV_FIELDS})


def _csv_value(value):
    if value is None:
        return ''
    if isinstance(value, float):
        return f'{value:.8g}'
    return value


def read_csv(path):
    """Return the rows of a training CSV log as dicts of strings ([] when absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def plot_curves(csv_path, png_path):
    """Draw loss, learning rate and mIoU against iteration from the CSV log into a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = read_csv(csv_path)

    def series(key):
        pairs = [(float(r['iteration']), float(r[key])) for r in rows if r.get(key)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for ax, key, label in zip(axes, ('loss', 'lr', 'miou'),
                              ('training loss', 'learning rate', 'val mIoU')):
        x, y = series(key)
        ax.plot(x, y, marker='o' if key == 'miou' else None, markersize=4)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if key == 'miou' and y:
            best = max(range(len(y)), key=y.__getitem__)
            ax.annotate(f'best {y[best]:.4f} @ {int(x[best])}', (x[best], y[best]),
                        textcoords='offset points', xytext=(-6, -14), ha='right', fontsize=8)
    axes[-1].set_xlabel('iteration')
    axes[0].set_title(f'training curves ({Path(csv_path).parent.name})')
    fig.tight_layout()
    import io
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=100)
    plt.close(fig)
    write_bytes_atomic(png_path, buffer.getvalue())


class TensorBoard:
    """SummaryWriter when the tensorboard package is importable, otherwise a no-op."""

    def __init__(self, log_dir, purge_step, log):
        """Open ``log_dir``; say once when TensorBoard logging is skipped."""
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            log(f'TensorBoard logging skipped: {exc} (pip install tensorboard)')
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step or None)

    def scalar(self, tag, value, step):
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def close(self):
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------------------------
# Building blocks


def load_pretrained_backbone(model, path):
    """Load a ``liteseg-backbone/1`` file (``convert_paddle --backbone-only``) into the model."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f'model.pretrained_backbone: {path} does not exist (convert ImageNet '
                         'weights with python -m training.convert_paddle SRC OUT.pt --variant '
                         't|b --backbone-only)')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainError(f'model.pretrained_backbone: {path} is not a {BACKBONE_FORMAT} file '
                         f'(torch.load: {reason}); make one with python -m training.'
                         'convert_paddle SRC OUT.pt --variant t|b --backbone-only') from exc
    if not isinstance(data, dict) or data.get('format') != BACKBONE_FORMAT:
        found = data.get('format') if isinstance(data, dict) else type(data).__name__
        raise TrainError(f'model.pretrained_backbone: {path} is not a {BACKBONE_FORMAT} file '
                         f'(found {found!r}); make one with python -m training.convert_paddle '
                         'SRC OUT.pt --variant t|b --backbone-only')
    variant = model.config['variant']
    if data.get('variant') != variant:
        found = data.get('variant')
        raise TrainError(f'model.pretrained_backbone: {path} is for variant {found!r}, the '
                         f'model is {variant!r}')
    try:
        model.backbone.load_state_dict(data['backbone'])
    except RuntimeError as exc:
        raise TrainError(f'model.pretrained_backbone: {path} does not fit the STDC backbone of '
                         f'PP-LiteSeg-{variant.upper()}: {exc}') from exc


def load_initial_weights(model, path, log=print):
    """
    Initialise ``model`` from a liteseg/1 checkpoint (fine-tuning); return (loaded, skipped).

    Tensors whose name or shape differ (the classifiers when the class count changes) keep
    their fresh initialisation; the count of both is logged.
    """
    try:
        state = load_checkpoint(path)['model']
    except CheckpointError as exc:
        raise TrainError(f'--init-from: {exc}') from exc
    own = model.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(loaded))
    if not loaded:
        raise TrainError(f'--init-from: {path} shares no weights with PP-LiteSeg-'
                         f"{model.config['variant'].upper()}")
    model.load_state_dict(loaded, strict=False)
    log(f'initialised {len(loaded)} of {len(own)} tensors from {path}'
        + (f'; {len(skipped)} keep their initialisation (first: {skipped[:3]})'
           if skipped else ''))
    return len(loaded), len(skipped)


def make_model(config, train_dataset):
    """Build the model of ``config['model']`` with the classes of the dataset."""
    model_cfg, data_cfg = config['model'], config['dataset']
    num_classes = int(model_cfg['num_classes'])
    kwargs = {}
    for key in ('class_names', 'palette'):
        value = data_cfg.get(key) or getattr(train_dataset, key, None)
        if value is not None:
            kwargs[key] = list(value)
    eval_size = (config.get('eval') or {}).get('size')
    input_size = model_cfg.get('input_size')
    if input_size is None and eval_size:
        input_size = [int(eval_size[1]), int(eval_size[0])]  # eval.size is [W, H]
    if input_size is not None:
        kwargs['input_size'] = [int(v) for v in input_size]
    dataset_name = str(data_cfg.get('type', 'custom'))
    if dataset_name not in ('cityscapes', 'camvid'):
        dataset_name = data_cfg.get('name') or dataset_name
    try:
        model = build_model(str(model_cfg['variant']), num_classes, dataset=dataset_name,
                            **kwargs)
    except ValueError as exc:
        raise TrainError(f'model: {exc}') from exc
    if model_cfg.get('pretrained_backbone'):
        load_pretrained_backbone(model, model_cfg['pretrained_backbone'])
    return model


def make_criterion(config):
    """Return the 3-head OHEM loss of ``config['loss']`` (min_kept per process)."""
    from training.losses import build_loss
    return build_loss(config)


def train_step(model, criterion, optimizer, scheduler, scaler, images, labels, amp_dtype):
    """
    Run one optimisation step on a batch already on the device; return the loss tensor.

    The forward runs under autocast when ``amp_dtype`` is set; the loss is computed in fp32.
    """
    with torch.autocast(images.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        logits = model(images)
    loss = criterion([x.float() for x in logits], labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss


def make_datasets(config, with_val=True):
    """Return (train, val or None) datasets of the config."""
    from training.datasets import build_dataset
    from training.transforms import build_eval_transforms, build_train_transforms
    data_cfg = config['dataset']
    train_set = build_dataset(config, 'train', build_train_transforms(config))
    val_set = None
    if with_val and data_cfg.get('val_split' if data_cfg.get('type') != 'camvid'
                                 else 'val_list'):
        val_set = build_dataset(config, 'val', build_eval_transforms(config))
    return train_set, val_set


def run_evaluation(model, val_set, config, device, progress):
    """Return the metrics dict of :func:`training.evaluate.evaluate` on ``val_set``."""
    from training.evaluate import evaluate
    eval_cfg = config.get('eval') or {}
    size = eval_cfg.get('size')
    was_training = model.training
    try:
        return evaluate(model, val_set, int(config['model']['num_classes']),
                        eval_size=tuple(size) if size else None,
                        scales=tuple(eval_cfg.get('scales') or (1.0,)),
                        flip=bool(eval_cfg.get('flip', False)), device=device,
                        progress=progress)
    finally:
        model.train(was_training)


def set_deterministic(device):
    """Make torch choose deterministic kernels (strict on CPU; warn-only on CUDA)."""
    if device.type == 'cuda':
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # Some CUDA backward kernels (adaptive pooling, bilinear upsampling) have no
        # deterministic version: warn about them instead of stopping the run.
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)


# --------------------------------------------------------------------------------------------
# Training


def train(config, output_dir=None, resume=False, deterministic=False, device='auto',
          progress=True, stop_at=None, init_from=None):
    """
    Train the model of ``config`` (a dict of :func:`training.config.load_config`).

    ``stop_at`` ends the run after that iteration (writing last.pt) so that a later
    ``resume=True`` call continues it; the schedule still spans ``train.iters``.
    ``init_from`` (a liteseg/1 checkpoint) initialises a new run's weights for fine-tuning.
    Return a summary dict (iteration, loss, best_miou, output_dir, ...).
    """
    ctx = Dist(device)
    try:
        return _train(config, ctx, output_dir, resume, deterministic, progress, stop_at,
                      init_from)
    finally:
        ctx.close()


def _train(config, ctx, output_dir, resume, deterministic, progress, stop_at, init_from):
    train_cfg = config['train']
    out = Path(output_dir or config.get('output_dir') or 'output')
    out.mkdir(parents=True, exist_ok=True)
    progress = progress and ctx.is_main

    def log(message):
        if ctx.is_main:
            tqdm.write(message, file=sys.stderr)

    iters = int(train_cfg['iters'])
    seed = int(train_cfg.get('seed', 0) or 0)
    global_batch = int(train_cfg['batch_size'])
    if global_batch % ctx.world_size:
        raise TrainError(f'train.batch_size {global_batch} (global) is not divisible by the '
                         f'{ctx.world_size} processes')
    if deterministic:
        set_deterministic(ctx.device)
    elif ctx.device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    last_path = out / LAST
    if resume and not last_path.is_file():
        raise TrainError(f'--resume: {last_path} does not exist (nothing to resume in {out})')
    amp_name = train_cfg.get('amp')
    amp_name = str(amp_name).lower() if amp_name not in (None, False) else None
    if amp_name not in AMP_DTYPES:
        raise TrainError(f"train.amp {train_cfg.get('amp')!r}: expected null, bf16 or fp16")
    amp_dtype = AMP_DTYPES[amp_name]
    channels_last = bool(train_cfg.get('channels_last', False))

    train_set, val_set = make_datasets(config)
    seed_all(seed)  # the same initial weights on every process and for every world size
    model = make_model(config, train_set)
    if init_from and not resume:
        load_initial_weights(model, init_from, log)
    model_config = dict(model.config)
    if ctx.world_size > 1 and train_cfg.get('sync_bn', True):
        model = convert_batchnorm(model, sync=True)
    model.to(ctx.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.config = model_config
    model.train()
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=amp_dtype is torch.float16)
    criterion = make_criterion(config)

    start, best_miou, best_iteration = 0, None, None
    if resume:
        try:
            state = load_checkpoint(last_path)
        except CheckpointError as exc:
            raise TrainError(str(exc)) from exc
        for key in ('optimizer', 'scheduler', 'iteration', 'rng'):
            if key not in state:
                raise TrainError(f'--resume: {last_path} has no {key!r} entry: it is not a '
                                 'training checkpoint written by training.train')
        saved = state['config']
        for key in ('variant', 'num_classes'):
            if saved[key] != model_config[key]:
                raise TrainError(f'--resume: {last_path} holds a model with {key} '
                                 f'{saved[key]!r}, the config asks for {model_config[key]!r}')
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        if state.get('scaler'):
            scaler.load_state_dict(state['scaler'])
        set_rng_state(state['rng'])
        start = int(state['iteration'])
        best_miou, best_iteration = state.get('best_miou'), state.get('best_iteration')
        previous = state.get('sampler') or {}
        changed = [k for k, v in (('seed', seed), ('global_batch', global_batch),
                                  ('dataset_size', len(train_set)))
                   if k in previous and previous[k] != v]
        if changed:
            log(f'note: {changed} changed since {last_path} was written: the data order after '
                'resuming differs from the interrupted run')
        log(f'resumed from {last_path} at iteration {start}/{iters}')
    elif last_path.is_file():
        log(f'note: {last_path} exists and will be overwritten by this new run (use --resume '
            'to continue it instead)')

    ddp_model = model
    if ctx.world_size > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if ctx.device.type == 'cuda' else None)

    num_workers = int(train_cfg.get('num_workers', 0) or 0)
    end = iters if stop_at is None else min(iters, int(stop_at))
    sampler = IterationSampler(len(train_set), global_batch, seed, start, max(end, start),
                               ctx.rank, ctx.world_size)
    loader = torch.utils.data.DataLoader(
        train_set, batch_sampler=sampler, num_workers=num_workers,
        pin_memory=ctx.device.type == 'cuda', worker_init_fn=_worker_init,
        persistent_workers=False)

    if ctx.is_main:
        stale = [p for name in (LAST, BEST) for p in out.glob(f'.{name}.*.tmp')]
        for path in stale:  # left by a run killed while writing a checkpoint
            path.unlink(missing_ok=True)
        if stale:
            log(f'removed {len(stale)} unfinished checkpoint file(s) of an interrupted write')
        write_bytes_atomic(out / 'config.yaml',
                           yaml.safe_dump(plain(config), sort_keys=False).encode())
        csv_log = CsvLog(out / CSV_NAME, start)
        board = TensorBoard(out / 'tensorboard', start, log)
    log(f'training PP-LiteSeg-{model_config["variant"].upper()} on {len(train_set)} images, '
        f'{iters} iterations, global batch {global_batch} = {ctx.world_size} process(es) x '
        f'{global_batch // ctx.world_size}, device {ctx.device}, amp {amp_name or "off"}, '
        f'output {out}')

    log_every = max(int(train_cfg.get('log_every', 10) or 10), 1)
    eval_every = int(train_cfg.get('eval_every', 0) or 0)
    save_every = int(train_cfg.get('save_every', 0) or 0)
    bar = tqdm(total=iters, initial=start, disable=not progress, dynamic_ncols=True,
               desc='train', unit='it', file=sys.stderr)
    window = {'loss': 0.0, 'n': 0, 'data': 0.0, 't0': time.perf_counter()}
    last_loss = None
    iteration = start

    def checkpoint(iteration):
        if ctx.is_main:
            save_training_checkpoint(
                last_path, model, optimizer, scheduler, scaler, iteration, config,
                best_miou=best_miou, best_iteration=best_iteration,
                sampler={'type': 'iteration', 'seed': seed, 'global_batch': global_batch,
                         'dataset_size': len(train_set), 'next_iteration': int(iteration)},
                world_size=ctx.world_size)
        ctx.barrier()

    loader_iter = iter(loader)
    t_fetch = time.perf_counter()
    while iteration < end:
        try:
            images, labels = next(loader_iter)
        except StopIteration:
            break
        window['data'] += time.perf_counter() - t_fetch
        images = images.to(ctx.device, non_blocking=True)
        labels = labels.to(ctx.device, non_blocking=True).long()
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        lr = optimizer.param_groups[0]['lr']
        loss = train_step(ddp_model, criterion, optimizer, scheduler, scaler, images, labels,
                          amp_dtype)
        iteration += 1
        window['loss'] += loss.detach()
        window['n'] += 1
        bar.update(1)

        evaluate_now = val_set is not None and (
            (eval_every and iteration % eval_every == 0) or iteration == iters)
        if iteration % log_every == 0 or evaluate_now or iteration == end:
            elapsed = time.perf_counter() - window['t0']
            last_loss = ctx.mean(float(window['loss']) / window['n'])
            if not math.isfinite(last_loss):
                raise TrainError(f'the loss is {last_loss} at iteration {iteration}: lower '
                                 'optimizer.lr or disable train.amp fp16')
            it_s = window['n'] / max(elapsed, 1e-9)
            data_s = window['data'] / window['n']
            bar.set_postfix(loss=f'{last_loss:.4f}', lr=f'{lr:.2e}', refresh=False)
            row = {'iteration': iteration, 'loss': last_loss, 'lr': lr, 'it_s': it_s,
                   'data_s': data_s}
            if ctx.is_main:
                board.scalar('train/loss', last_loss, iteration)
                board.scalar('train/lr', lr, iteration)
                board.scalar('train/it_s', it_s, iteration)
            if evaluate_now:
                # Every process evaluates a share of the validation set (training.evaluate
                # sums the confusion matrices); the main process keeps the best model.
                bar.clear()
                metrics = run_evaluation(model, val_set, config, ctx.device, progress)
                miou = float(metrics['miou'])
                row['miou'] = miou
                improved = best_miou is None or miou > best_miou
                if improved:
                    best_miou, best_iteration = miou, iteration
                if ctx.is_main:
                    board.scalar('eval/miou', miou, iteration)
                    board.scalar('eval/pixel_accuracy', float(metrics['pixel_accuracy']),
                                 iteration)
                    if improved:
                        save_checkpoint(out / BEST, model, iteration=iteration, miou=miou)
                    log(f'iteration {iteration}: val mIoU {miou:.4f} (best {best_miou:.4f} at '
                        f'{best_iteration}){" -> " + str(out / BEST) if improved else ""}')
                ctx.barrier()
            if ctx.is_main:
                csv_log.append(**row)
                if evaluate_now:
                    _plot(out, log)
            window = {'loss': 0.0, 'n': 0, 'data': 0.0, 't0': time.perf_counter()}
        if (save_every and iteration % save_every == 0) or iteration == end:
            checkpoint(iteration)
        t_fetch = time.perf_counter()
    bar.close()
    del loader_iter
    if ctx.is_main:
        _plot(out, log)
        board.close()
    summary = {'iteration': iteration, 'iters': iters, 'loss': last_loss,
               'best_miou': best_miou, 'best_iteration': best_iteration,
               'output_dir': str(out), 'world_size': ctx.world_size}
    best_text = (f', best val mIoU {best_miou:.4f} at iteration {best_iteration}'
                 if best_miou is not None else '')
    loss_text = f', last loss {last_loss:.4f}' if last_loss is not None else ''
    state_text = 'finished' if iteration >= iters else 'stopped'
    log(f'{state_text} at iteration {iteration}/{iters}{loss_text}{best_text}; '
        f'checkpoints and logs in {out}')
    return summary


def _plot(out, log):
    try:
        plot_curves(out / CSV_NAME, out / CURVES_NAME)
    except ImportError as exc:
        if not getattr(_plot, 'warned', False):
            log(f'training curves skipped: {exc} (pip install matplotlib)')
            _plot.warned = True


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m training.train',
        description='Train PP-LiteSeg (single process, or DDP under torchrun).')
    parser.add_argument('--config', required=True, help='YAML config (training/configs/*.yaml)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from OUTPUT_DIR/last.pt')
    parser.add_argument('--override', nargs='+', action='extend', default=[], metavar='KEY=VAL',
                        help='override config values, e.g. train.iters=1000 optimizer.lr=0.01')
    parser.add_argument('--output-dir', help='output directory (default: output_dir of config)')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'),
                        help='auto: CUDA when available')
    parser.add_argument('--deterministic', action='store_true',
                        help='torch.use_deterministic_algorithms (bit-identical CPU reruns)')
    parser.add_argument('--init-from', metavar='CKPT',
                        help='fine-tune: initialise from a liteseg/1 checkpoint (tensors of '
                             'other shapes, e.g. the classifiers, keep their initialisation)')
    parser.add_argument('--stop-at', type=int, metavar='N',
                        help='stop after iteration N (writing last.pt); continue with --resume')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    """Run the command line; user errors end in one line naming the problem (exit code 2)."""
    args = parse_args(argv)
    try:
        from training.config import load_config
        config = load_config(args.config, args.override or None)
        train(config, output_dir=args.output_dir, resume=args.resume,
              deterministic=args.deterministic, device=args.device,
              progress=not args.no_progress, stop_at=args.stop_at, init_from=args.init_from)
    except (TrainError, CheckpointError, FileNotFoundError, NotADirectoryError,
            PermissionError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, KeyError):
            message = f'config: missing setting {message!r}'
        print(f'training.train: error: {message}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('training.train: interrupted; continue with --resume from the last checkpoint',
              file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
