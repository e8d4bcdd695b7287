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
        [--override|--set train.iters=1000 ...] [--output-dir DIR] [--device auto|cpu|cuda]
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

This module reads top to bottom: the building blocks (model, loss, step, data, evaluation),
then :func:`train` and the functions of its loop (setup, one iteration's bookkeeping,
evaluation, checkpoint, finish), then the command line. Defaults come from the resolved config
(:mod:`training.config`); the process group and SyncBN are in :mod:`training.distributed`,
sampling and RNG state in :mod:`training.sampling`, checkpoints and weight loading in
:mod:`training.checkpoints`, the CSV log, curves and TensorBoard in :mod:`training.logs`.
"""

import argparse
import dataclasses
import math
from pathlib import Path
import sys
import time
from typing import Any, Callable, Optional

from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.model import build_model, CheckpointError, init_like_paddleseg, save_checkpoint
import torch
from torch import nn
from tqdm import tqdm
from training.checkpoints import (BEST, LAST, load_initial_weights, load_pretrained_backbone,
                                  load_training_checkpoint, plain, remove_unfinished_writes,
                                  save_training_checkpoint)
from training.config import add_override_arguments, AMP_MODES, load_config, resolve_config
from training.distributed import convert_batchnorm, Dist
from training.errors import TrainError
from training.logs import CSV_NAME, CsvLog, redraw_curves, TensorBoard
from training.sampling import (IterationSampler, seed_all, set_deterministic, set_rng_state,
                               worker_init)
from training.schedule import build_optimizer, build_scheduler
import yaml


# --------------------------------------------------------------------------------------------
# Building blocks


def make_model(config, train_dataset):
    """Build the model of ``config['model']`` (a resolved config) with the dataset's classes."""
    model_cfg, data_cfg = config['model'], config['dataset']
    num_classes = int(model_cfg['num_classes'])
    kwargs = {}
    for key in ('class_names', 'palette'):
        value = data_cfg.get(key) or getattr(train_dataset, key, None)
        if value is not None:
            kwargs[key] = list(value)
    kwargs['input_size'] = [int(v) for v in model_cfg['input_size']]
    dataset_name = str(data_cfg['type'])
    if dataset_name not in ('cityscapes', 'camvid'):
        dataset_name = data_cfg.get('name') or dataset_name
    try:
        model = build_model(str(model_cfg['variant']), num_classes, dataset=dataset_name,
                            **kwargs)
    except ValueError as exc:
        raise TrainError(f'model: {exc}') from exc
    if model_cfg['init'] == 'paddleseg':
        init_like_paddleseg(model)
    if model_cfg['pretrained_backbone']:
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
    eval_cfg = config['eval']
    size = eval_cfg['size']
    was_training = model.training
    try:
        return evaluate(model, val_set, int(config['model']['num_classes']),
                        eval_size=tuple(size) if size else None,
                        scales=tuple(eval_cfg['scales']), flip=bool(eval_cfg['flip']),
                        device=device, progress=progress)
    finally:
        model.train(was_training)


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
    config = resolve_config(config)
    ctx = Dist(device)
    try:
        run = setup(config, ctx, output_dir, resume, deterministic, progress, stop_at,
                    init_from)
        fit(run)
        return finish(run)
    finally:
        ctx.close()


@dataclasses.dataclass
class Run:
    """What the functions of one :func:`train` call share: settings, model, state, logs."""

    config: dict
    ctx: Dist
    out: Path
    log: Callable[[str], None]
    progress: bool
    train_set: Any
    val_set: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    amp_dtype: Optional[torch.dtype]
    end: int
    ddp_model: Optional[nn.Module] = None
    loader: Any = None
    start: int = 0
    iteration: int = 0
    best_miou: Optional[float] = None
    best_iteration: Optional[int] = None
    last_loss: Optional[float] = None
    csv_log: Optional[CsvLog] = None
    board: Optional[TensorBoard] = None

    def sampler_state(self):
        """Return what determines the data order from ``self.iteration`` on."""
        train_cfg = self.config['train']
        return {'type': 'iteration', 'seed': int(train_cfg['seed']),
                'global_batch': int(train_cfg['batch_size']),
                'dataset_size': len(self.train_set), 'next_iteration': int(self.iteration)}


def setup(config, ctx, output_dir, resume, deterministic, progress, stop_at, init_from):
    """Prepare output directory, data, model, optimizer, loader and logs; restore on resume."""
    train_cfg = config['train']
    out = Path(output_dir or config['output_dir'])
    out.mkdir(parents=True, exist_ok=True)
    log = _main_process_log(ctx)
    iters, global_batch = int(train_cfg['iters']), int(train_cfg['batch_size'])
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
    amp_name = AMP_MODES[train_cfg['amp']]
    amp_dtype = getattr(torch, amp_name) if amp_name else None

    train_set, val_set = make_datasets(config)
    seed_all(int(train_cfg['seed']))  # the same initial weights on every process and world size
    model = make_training_model(config, ctx, train_set, None if resume else init_from, log)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=amp_dtype is torch.float16)
    run = Run(config, ctx, out, log, progress and ctx.is_main, train_set, val_set, model,
              optimizer, scheduler, scaler, make_criterion(config), amp_dtype,
              end=iters if stop_at is None else min(iters, int(stop_at)))
    if resume:
        restore(run, last_path)
    elif last_path.is_file():
        log(f'note: {last_path} exists and will be overwritten by this new run (use --resume '
            'to continue it instead)')

    run.ddp_model = model
    if ctx.world_size > 1:
        run.ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if ctx.device.type == 'cuda' else None)
    sampler = IterationSampler(len(train_set), global_batch, train_cfg['seed'], run.start,
                               max(run.end, run.start), ctx.rank, ctx.world_size)
    run.loader = torch.utils.data.DataLoader(
        train_set, batch_sampler=sampler, num_workers=int(train_cfg['num_workers']),
        pin_memory=ctx.device.type == 'cuda', worker_init_fn=worker_init,
        persistent_workers=False)
    open_outputs(run)
    log(f'training PP-LiteSeg-{model.config["variant"].upper()} on {len(train_set)} images, '
        f'{iters} iterations, global batch {global_batch} = {ctx.world_size} process(es) x '
        f'{global_batch // ctx.world_size}, device {ctx.device}, amp '
        f'{train_cfg["amp"] or "off"}, output {out}')
    return run


def _main_process_log(ctx):
    def log(message):
        if ctx.is_main:
            tqdm.write(message, file=sys.stderr)
    return log


def make_training_model(config, ctx, train_set, init_from, log):
    """Return the model on the device in train mode, with SyncBN under DDP when asked."""
    train_cfg = config['train']
    model = make_model(config, train_set)
    if init_from:
        load_initial_weights(model, init_from, log)
    model_config = dict(model.config)
    if ctx.world_size > 1 and train_cfg['sync_bn']:
        model = convert_batchnorm(model, sync=True)
    model.to(ctx.device)
    if train_cfg['channels_last']:
        model.to(memory_format=torch.channels_last)
    model.config = model_config
    model.train()
    return model


def restore(run, last_path):
    """Continue the run of ``last_path``: weights, optimizer, schedule, RNGs, best mIoU."""
    state = load_training_checkpoint(last_path, run.model.config)
    run.model.load_state_dict(state['model'])
    run.optimizer.load_state_dict(state['optimizer'])
    run.scheduler.load_state_dict(state['scheduler'])
    if state.get('scaler'):
        run.scaler.load_state_dict(state['scaler'])
    set_rng_state(state['rng'])
    run.start = run.iteration = int(state['iteration'])
    run.best_miou, run.best_iteration = state.get('best_miou'), state.get('best_iteration')
    previous, current = state.get('sampler') or {}, run.sampler_state()
    changed = [k for k in ('seed', 'global_batch', 'dataset_size')
               if k in previous and previous[k] != current[k]]
    if changed:
        run.log(f'note: {changed} changed since {last_path} was written: the data order after '
                'resuming differs from the interrupted run')
    run.log(f"resumed from {last_path} at iteration {run.start}/{run.config['train']['iters']}")


def open_outputs(run):
    """On the main process: clean up, write config.yaml, open the CSV log and TensorBoard."""
    if not run.ctx.is_main:
        return
    removed = remove_unfinished_writes(run.out)  # left by a run killed while writing
    if removed:
        run.log(f'removed {removed} unfinished checkpoint file(s) of an interrupted write')
    write_bytes_atomic(run.out / 'config.yaml',
                       yaml.safe_dump(plain(run.config), sort_keys=False).encode())
    run.csv_log = CsvLog(run.out / CSV_NAME, run.start)
    run.board = TensorBoard(run.out / 'tensorboard', run.start, run.log)


class Window:
    """Loss and timing accumulated since the last logged iteration."""

    def __init__(self):
        """Start an empty window now."""
        self.loss, self.count, self.data_s = 0.0, 0, 0.0
        self.t0 = time.perf_counter()


def fit(run):
    """Train from ``run.iteration`` to ``run.end``, logging, evaluating and checkpointing."""
    ctx, channels_last = run.ctx, run.config['train']['channels_last']
    bar = tqdm(total=run.config['train']['iters'], initial=run.start, disable=not run.progress,
               dynamic_ncols=True, desc='train', unit='it', file=sys.stderr)
    window = Window()
    loader_iter = iter(run.loader)
    t_fetch = time.perf_counter()
    while run.iteration < run.end:
        try:
            images, labels = next(loader_iter)
        except StopIteration:
            break
        window.data_s += time.perf_counter() - t_fetch
        images = images.to(ctx.device, non_blocking=True)
        labels = labels.to(ctx.device, non_blocking=True).long()
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        lr = run.optimizer.param_groups[0]['lr']
        loss = train_step(run.ddp_model, run.criterion, run.optimizer, run.scheduler,
                          run.scaler, images, labels, run.amp_dtype)
        run.iteration += 1
        window.loss += loss.detach()
        window.count += 1
        bar.update(1)
        if after_iteration(run, window, lr, bar):
            window = Window()
        t_fetch = time.perf_counter()
    bar.close()
    del loader_iter  # ends the loader's worker processes before the final plots


def after_iteration(run, window, lr, bar):
    """Log, evaluate and checkpoint as the settings ask; return whether the window was logged."""
    train_cfg, iteration = run.config['train'], run.iteration
    evaluate_now = run.val_set is not None and (
        iteration % train_cfg['eval_every'] == 0 or iteration == train_cfg['iters'])
    logged = iteration % train_cfg['log_every'] == 0 or evaluate_now or iteration == run.end
    if logged:
        row = log_window(run, window, lr, bar)
        if evaluate_now:
            bar.clear()
            row['miou'] = evaluate_and_keep_best(run)
        if run.ctx.is_main:
            run.csv_log.append(**row)
            if evaluate_now:
                redraw_curves(run.out, run.log)
    if iteration % train_cfg['save_every'] == 0 or iteration == run.end:
        save_last(run)
    return logged


def log_window(run, window, lr, bar):
    """Return the CSV row of the window (loss averaged over processes); fail on a NaN loss."""
    iteration = run.iteration
    elapsed = time.perf_counter() - window.t0
    run.last_loss = run.ctx.mean(float(window.loss) / window.count)
    if not math.isfinite(run.last_loss):
        raise TrainError(f'the loss is {run.last_loss} at iteration {iteration}: lower '
                         'optimizer.lr or disable train.amp fp16')
    it_s = window.count / max(elapsed, 1e-9)
    bar.set_postfix(loss=f'{run.last_loss:.4f}', lr=f'{lr:.2e}', refresh=False)
    if run.ctx.is_main:
        run.board.scalar('train/loss', run.last_loss, iteration)
        run.board.scalar('train/lr', lr, iteration)
        run.board.scalar('train/it_s', it_s, iteration)
    return {'iteration': iteration, 'loss': run.last_loss, 'lr': lr, 'it_s': it_s,
            'data_s': window.data_s / window.count}


def evaluate_and_keep_best(run):
    """Evaluate on the validation set, write best.pt when the mIoU improved; return the mIoU."""
    # Every process evaluates a share of the validation set (training.evaluate sums the
    # confusion matrices); the main process keeps the best model.
    iteration = run.iteration
    metrics = run_evaluation(run.model, run.val_set, run.config, run.ctx.device, run.progress)
    miou = float(metrics['miou'])
    improved = run.best_miou is None or miou > run.best_miou
    if improved:
        run.best_miou, run.best_iteration = miou, iteration
    if run.ctx.is_main:
        run.board.scalar('eval/miou', miou, iteration)
        run.board.scalar('eval/pixel_accuracy', float(metrics['pixel_accuracy']), iteration)
        if improved:
            save_checkpoint(run.out / BEST, run.model, iteration=iteration, miou=miou)
        run.log(f'iteration {iteration}: val mIoU {miou:.4f} (best {run.best_miou:.4f} at '
                f'{run.best_iteration}){" -> " + str(run.out / BEST) if improved else ""}')
    run.ctx.barrier()
    return miou


def save_last(run):
    """Write last.pt (main process) with everything needed to resume at ``run.iteration``."""
    if run.ctx.is_main:
        save_training_checkpoint(
            run.out / LAST, run.model, run.optimizer, run.scheduler, run.scaler, run.iteration,
            run.config, best_miou=run.best_miou, best_iteration=run.best_iteration,
            sampler=run.sampler_state(), world_size=run.ctx.world_size)
    run.ctx.barrier()


def finish(run):
    """Draw the final curves, close the logs and return the summary of the run."""
    if run.ctx.is_main:
        redraw_curves(run.out, run.log)
        run.board.close()
    iters, iteration = run.config['train']['iters'], run.iteration
    summary = {'iteration': iteration, 'iters': iters, 'loss': run.last_loss,
               'best_miou': run.best_miou, 'best_iteration': run.best_iteration,
               'output_dir': str(run.out), 'world_size': run.ctx.world_size}
    best_text = (f', best val mIoU {run.best_miou:.4f} at iteration {run.best_iteration}'
                 if run.best_miou is not None else '')
    loss_text = f', last loss {run.last_loss:.4f}' if run.last_loss is not None else ''
    state_text = 'finished' if iteration >= iters else 'stopped'
    run.log(f'{state_text} at iteration {iteration}/{iters}{loss_text}{best_text}; '
            f'checkpoints and logs in {run.out}')
    return summary


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m training.train',
        description='Train PP-LiteSeg (single process, or DDP under torchrun).')
    parser.add_argument('--config', required=True, help='YAML config (training/configs/*.yaml)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from OUTPUT_DIR/last.pt')
    add_override_arguments(parser)
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
        config = load_config(args.config, args.overrides)
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
