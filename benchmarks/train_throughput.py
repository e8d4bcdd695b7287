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
Training throughput of PP-LiteSeg: it/s, data-loading time per batch and step time.

Uses the real training pipeline (``training.train``: dataset, PaddleSeg augmentation, 3-head
OHEM loss, SGD + poly schedule) of the Cityscapes 0.5 config on a synthetic Cityscapes-layout
dataset of full-size 2048x1024 frames written to a temporary folder. Prints:

- data: time to produce one batch by the data loader alone (read PNGs, ResizeStepScaling,
  padding crop, flip, distort, normalise; with ``--workers 0`` the whole cost on the main
  process);
- step: forward + backward + optimizer step on a batch already on the device;
- end-to-end it/s with loading and stepping together, and the projected wall-clock for
  ``--total-iters`` (160k, the paper's schedule) at that rate.

CPU (the figures in docs/training.md)::

    .venv/bin/python benchmarks/train_throughput.py            # T, 1024x512 crop, batch 2

GPU::

    python benchmarks/train_throughput.py --device cuda --batch 16 --amp bf16 --variant t
    python benchmarks/train_throughput.py --device cuda --batch 16 --amp bf16 --variant b
"""

import argparse
import os
from pathlib import Path
import platform
import statistics
import sys
import tempfile
import time

import torch
from training.config import load_config
from training.sampling import IterationSampler, seed_all
from training.schedule import build_optimizer, build_scheduler
from training.train import make_criterion, make_datasets, make_model, train_step

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'training' / 'configs'


def parse_size(text):
    """Parse ``WxH`` into [W, H]."""
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WxH, e.g. 1024x512, got {text!r}')
    return [width, height]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--variant', default='t', choices=('t', 'b'))
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--batch', type=int, default=2, help='batch size (one process)')
    parser.add_argument('--amp', default='none', choices=('none', 'bf16', 'fp16'))
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--crop', type=parse_size, default=[1024, 512], help='WxH')
    parser.add_argument('--image-size', type=parse_size, default=[2048, 1024],
                        help='WxH of the synthetic frames (Cityscapes: 2048x1024)')
    parser.add_argument('--images', type=int, default=0,
                        help='synthetic training images (default: 2 batches)')
    parser.add_argument('--workers', type=int, default=0, help='data loader workers')
    parser.add_argument('--warmup', type=int, default=1, help='untimed iterations first')
    parser.add_argument('--iters', type=int, default=3, help='timed iterations')
    parser.add_argument('--total-iters', type=int, default=160000,
                        help='iterations of the schedule to project the wall-clock for')
    parser.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: default)')
    return parser.parse_args(argv)


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hours(seconds):
    return f'{seconds / 3600:.1f} h ({seconds / 86400:.2f} days)'


def main(argv=None):
    args = parse_args(argv)
    from training.synthetic_data import make_cityscapes_like
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('error: --device cuda but torch.cuda.is_available() is False', file=sys.stderr)
        return 2
    steps = args.warmup + args.iters
    images = args.images or 2 * args.batch
    with tempfile.TemporaryDirectory(prefix='liteseg_bench_') as tmp:
        root = Path(tmp) / 'cityscapes'
        t0 = time.perf_counter()
        make_cityscapes_like(root, images, 1, size=(args.image_size[1], args.image_size[0]))
        print(f'synthetic dataset: {images} train frames {args.image_size[0]}x'
              f'{args.image_size[1]} in {time.perf_counter() - t0:.1f} s')
        width, height = args.crop
        overrides = [f'dataset.root={root}', f'train.batch_size={args.batch}',
                     f'train.crop_size=[{width}, {height}]', f'train.iters={steps}',
                     f'train.num_workers={args.workers}', 'model.pretrained_backbone=null',
                     f'train.amp={"null" if args.amp == "none" else args.amp}',
                     f'output_dir={tmp}/out']
        config = load_config(CONFIGS / f'pp_liteseg_{args.variant}_cityscapes_0.5.yaml',
                             overrides)
        train_set, _ = make_datasets(config, with_val=False)
        seed_all(0)
        model = make_model(config, train_set).to(device).train()
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, config)
        scheduler = build_scheduler(optimizer, config)
        criterion = make_criterion(config)
        amp_dtype = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[args.amp]
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)

        def loader(start, stop):
            sampler = IterationSampler(len(train_set), args.batch, 0, start, stop)
            return torch.utils.data.DataLoader(train_set, batch_sampler=sampler,
                                               num_workers=args.workers,
                                               pin_memory=device.type == 'cuda')

        def step(images, labels):
            return train_step(model, criterion, optimizer, scheduler, scaler, images, labels,
                              amp_dtype)

        def to_device(images, labels):
            images = images.to(device, non_blocking=True)
            if args.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            return images, labels.to(device, non_blocking=True).long()

        # 1. data loading alone
        data_times = []
        t_last = time.perf_counter()
        for k, batch in enumerate(loader(0, steps)):
            now = time.perf_counter()
            if k >= args.warmup:
                data_times.append(now - t_last)
            t_last = time.perf_counter()
        fixed = to_device(*batch)

        # 2. step alone, on a batch already on the device
        step_times = []
        for k in range(steps):
            synchronize(device)
            t0 = time.perf_counter()
            step(*fixed)
            synchronize(device)
            if k >= args.warmup:
                step_times.append(time.perf_counter() - t0)

        # 3. end to end
        t_start = None
        for k, batch in enumerate(loader(steps, 2 * steps)):
            if k == args.warmup:
                synchronize(device)
                t_start = time.perf_counter()
            loss = float(step(*to_device(*batch)).detach())
        synchronize(device)
        e2e = args.iters / (time.perf_counter() - t_start)

    data = statistics.median(data_times)
    step_s = statistics.median(step_times)
    name = (torch.cuda.get_device_name(device) if device.type == 'cuda'
            else f'{cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads')
    print(f'PP-LiteSeg-{args.variant.upper()} training, crop {width}x{height}, batch '
          f'{args.batch}, amp {args.amp}, channels_last {args.channels_last}, device '
          f'{device} ({name}), torch {torch.__version__}, {args.workers} loader workers')
    print(f'  data loading: {data:.3f} s/batch ({data / args.batch * 1000:.0f} ms/image)')
    print(f'  step (fwd+bwd+SGD): {step_s:.3f} s/it = {1 / step_s:.3f} it/s '
          f'({args.batch / step_s:.2f} images/s)')
    print(f'  end to end: {e2e:.3f} it/s ({e2e * args.batch:.2f} images/s); data/step ratio '
          f'{data / step_s:.2f}; last loss {loss:.3f}')
    print(f'  projected {args.total_iters} iterations at {e2e:.3f} it/s: '
          f'{hours(args.total_iters / e2e)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
