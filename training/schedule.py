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
Optimizer and learning-rate schedule as PaddleSeg builds them for PP-LiteSeg.

PaddleSeg 2.8 (``cvlibs/builder.py``) wraps ``paddle.optimizer.lr.PolynomialDecay`` in
``LinearWarmup``; the scheduler is stepped once per iteration, after ``optimizer.step()``. The
learning rate used by the optimizer step of iteration ``i`` (0-based) is therefore:

- ``i < warmup_iters``: ``warmup_start_lr + (lr - warmup_start_lr) * i / warmup_iters``;
- otherwise the poly decay counted from the END of warm-up, over ``iters - warmup_iters`` steps:
  ``(lr - end_lr) * (1 - min(i - warmup_iters, D) / D) ** power + end_lr`` with
  ``D = max(iters - warmup_iters, 1)``.

The optimizer is ``paddle.optimizer.Momentum`` with a float ``weight_decay``, i.e. L2Decay on
every parameter: ``coeff * param`` is added to the gradient before the momentum update, which is
exactly ``torch.optim.SGD(momentum=m, weight_decay=coeff)`` (dampening 0, no Nesterov).
"""

import torch


def poly_warmup_lr(iteration, base_lr, iters, power=0.9, end_lr=0.0, warmup_iters=0,
                   warmup_start_lr=1e-5):
    """Return the learning rate PaddleSeg uses for the optimizer step of 0-based ``iteration``."""
    if warmup_iters > 0 and iteration < warmup_iters:
        return warmup_start_lr + (base_lr - warmup_start_lr) * iteration / warmup_iters
    decay_steps = max(iters - warmup_iters, 1)
    step = min(iteration - warmup_iters, decay_steps)
    return (base_lr - end_lr) * (1.0 - step / decay_steps) ** power + end_lr


class PolyWarmupLR(torch.optim.lr_scheduler.LRScheduler):
    """
    Per-iteration linear warm-up then polynomial decay, as PaddleSeg's LinearWarmup(Poly).

    Call ``step()`` once per iteration after ``optimizer.step()``; ``last_epoch`` is the number
    of iterations done, and each group's lr is ``poly_warmup_lr(last_epoch, initial_lr, ...)``.
    """

    def __init__(self, optimizer, iters, power=0.9, end_lr=0.0, warmup_iters=0,
                 warmup_start_lr=1e-5, last_epoch=-1):
        """Attach the schedule to ``optimizer``; each group's ``lr`` is its peak rate."""
        if iters <= 0:
            raise ValueError(f'schedule: iters must be positive, got {iters}')
        if warmup_iters < 0:
            raise ValueError(f'schedule: warmup_iters must be >= 0, got {warmup_iters}')
        if power <= 0:
            raise ValueError(f'schedule: power must be > 0, got {power}')
        self.iters = int(iters)
        self.power = float(power)
        self.end_lr = float(end_lr)
        self.warmup_iters = int(warmup_iters)
        self.warmup_start_lr = float(warmup_start_lr)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, iteration, base_lr):
        """Return the rate of the step of ``iteration`` for a group whose peak is ``base_lr``."""
        return poly_warmup_lr(iteration, base_lr, self.iters, self.power, self.end_lr,
                              self.warmup_iters, self.warmup_start_lr)

    def get_lr(self):
        """Return the closed-form rate of every parameter group for ``last_epoch``."""
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]

    _get_closed_form_lr = get_lr


def build_optimizer(model, config):
    """
    Return SGD with momentum and weight decay on every trainable parameter of ``model``.

    Parameters with ``requires_grad=False`` (UAFM's frozen scale) are left out, as Paddle skips
    ``stop_gradient`` parameters.
    """
    opt = config['optimizer']
    kind = str(opt.get('type', 'sgd')).lower()
    if kind not in ('sgd', 'momentum'):
        raise ValueError(f"optimizer.type {opt.get('type')!r} is not supported: use 'sgd' "
                         '(SGD with momentum, as PaddleSeg)')
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=float(opt['lr']), momentum=float(opt.get('momentum', 0.9)),
                           weight_decay=float(opt.get('weight_decay', 0.0)), dampening=0.0,
                           nesterov=False)


def build_scheduler(optimizer, config):
    """Return the PolyWarmupLR of ``config['schedule']`` over ``config['train']['iters']``."""
    schedule = config['schedule']
    kind = str(schedule.get('type', 'poly')).lower()
    if kind != 'poly':
        raise ValueError(f"schedule.type {schedule.get('type')!r} is not supported: use 'poly'")
    return PolyWarmupLR(optimizer, iters=int(config['train']['iters']),
                        power=float(schedule.get('power', 0.9)),
                        end_lr=float(schedule.get('end_lr', 0.0)),
                        warmup_iters=int(schedule.get('warmup_iters', 0)),
                        warmup_start_lr=float(schedule.get('warmup_start_lr', 1e-5)))
