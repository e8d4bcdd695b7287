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
Reproducibility: iteration-indexed sampling, seeding, RNG state and deterministic kernels.

Data order and augmentation are functions of ``(train.seed, iteration)`` (docs/training.md,
"Data order, seeds and resuming"), so a resumed run, or one with another number of loader
workers or processes, sees the batches of the uninterrupted run.
"""

import os
import random

import numpy as np
import torch
from training.errors import TrainError


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


def worker_init(worker_id):
    """Seed the global RNGs of a data-loader worker from its torch seed."""
    # Augmentation uses per-item generators (see IterationSampler); this gives any other use
    # of the global RNGs in a worker a reproducible, worker-distinct state.
    info = torch.utils.data.get_worker_info()
    seed_all(info.seed % 2 ** 32 if info is not None else worker_id)


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
