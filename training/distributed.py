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
Multi-process training: the process group of ``torchrun`` and synchronised BatchNorm.

:class:`Dist` joins the process group (NCCL on CUDA, gloo on CPU) when ``WORLD_SIZE`` > 1;
:class:`TrainBatchNorm2d` replaces every BatchNorm while training, to keep Paddle's running
variance and, under DDP, the statistics of the global batch (docs/training.md, SyncBN).
"""

import datetime
import os

import torch
from torch import nn
import torch.distributed as dist
import torch.nn.functional as F
from training.errors import TrainError

try:  # torch's CUDA SyncBatchNorm autograd function (private; an all-reduce path replaces it)
    from torch.nn.modules._functions import SyncBatchNorm as _TORCH_SYNC_BN
except ImportError:  # pragma: no cover
    _TORCH_SYNC_BN = None


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
