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
int8 and fp16 ONNX models on a CPU: latency, argmax agreement and mIoU against fp32.

Trains PP-LiteSeg-T on the synthetic street scenes (``training.synthetic_data``) once and keeps
the checkpoint under ``.cache/int8_cpu/`` (no weights are committed), exports fp32, fp16 and
int8 (every scheme asked for) with ``training.export`` and its accuracy gate, then times the
models in ONNX Runtime with interleaved rounds, so that load from other processes hits every
model alike, and measures agreement and mIoU on held-out synthetic frames.

Usage::

    python benchmarks/int8_cpu.py [--iters 300] [--threads 2] [--rounds 8]
        [--schemes cpu-vnni cpu-avx2 trt] [--json out.json]
"""

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import time

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from liteseg_ros.inference.bench import cpu_info  # noqa: E402
import numpy as np  # noqa: E402

CACHE = REPO / '.cache' / 'int8_cpu'
CONFIG = REPO / 'training' / 'configs' / 'pp_liteseg_t_cityscapes_0.5.yaml'
SCENE = (512, 1024)


def train_model(iters, out=CACHE):
    """Return a checkpoint trained ``iters`` iterations on synthetic scenes (cached)."""
    from training.config import load_config
    from training.synthetic_data import make_cityscapes_like
    from training.train import train

    run = out / f'train_{iters}_crop256'
    checkpoint = run / 'last.pt'
    if checkpoint.is_file():
        return checkpoint
    root = out / 'synthetic'
    if not (root / 'leftImg8bit').is_dir():
        make_cityscapes_like(root, 48, 16, size=(256, 512), seed=0)
    overrides = [f'dataset.root={root}', 'model.pretrained_backbone=null',
                 f'train.iters={iters}', 'train.batch_size=4', 'train.num_workers=0',
                 'train.crop_size=[256, 128]', 'train.scale={min: 1.0, max: 2.0, step: 0.25}',
                 f'train.eval_every={iters}', f'train.save_every={iters}', 'train.log_every=25',
                 'optimizer.lr=0.05', 'schedule.warmup_iters=20', 'loss.min_kept=20000',
                 'eval.size=[1024, 512]', f'output_dir={run}']
    train(load_config(CONFIG, overrides), progress=False)
    return checkpoint


def export_all(checkpoint, config, schemes, out, frames, min_agreement):
    """Export fp32, fp16 and int8 (each scheme) models; return {name: path or None}."""
    from training.export import main as export_main

    models = {}
    for name, extra in [('fp32', []), ('fp16', ['--precision', 'fp16', '--calibration',
                                                f'{config}:val'])] + [
            (f'int8-{s}', ['--precision', 'int8', '--int8-scheme', s, '--calibration',
                           f'{config}:train', '--calibration-frames', str(frames),
                           '--min-agreement', str(min_agreement)])
            for s in schemes]:
        path = out / f'{name}.onnx'
        if not path.is_file():
            print(f'--- export {name}', flush=True)
            if export_main([str(checkpoint), '--onnx', str(path), '--no-check', *extra]) != 0:
                models[name] = None
                continue
        models[name] = path
    return models


def held_out_scenes(config_path):
    """Return (frames, train-id labels) of the synthetic val split (never calibrated on)."""
    from liteseg_ros.dataset_files import cityscapes_label_lut, read_label
    from training.config import load_config
    from training.datasets import build_dataset, read_image

    config = load_config(config_path)
    dataset = build_dataset(config, 'val', None)
    frames, labels = [], []
    for image, label in dataset.samples:
        frames.append(read_image(image))
        raw = read_label(label)
        lut = cityscapes_label_lut(label)
        labels.append(lut[raw] if lut is not None else raw)
    return frames, labels


def accuracy(segmenters, frames, labels):
    """Return {name: {'miou', 'agreement'}}: vs ground truth, and vs fp32 masks."""
    from liteseg_ros.inference.metrics import ConfusionMatrix

    masks = {name: [s.mask for s in seg(list(frames))] for name, seg in segmenters.items()}
    result = {}
    for name, got in masks.items():
        matrix = ConfusionMatrix(len(segmenters[name].class_names))
        agree = total = 0
        for mask, label, reference in zip(got, labels, masks['fp32']):
            matrix.update(mask, label)
            agree += int((mask == reference).sum())
            total += mask.size
        result[name] = {'miou': float(matrix.miou(skip_empty=True)), 'agreement': agree / total}
    return result


def interleaved_latency(segmenters, rounds, per_round, size, frame=None):
    """
    Return {name: {'model_ms', 'frame_ms'}} medians, the models alternating every round.

    ``frame``: the RGB frame to segment (default: a generated 2048x1024 street scene).
    """
    from liteseg_ros.inference.bench import model_only_runner
    from liteseg_ros.sample_images import make_street_scene

    if frame is None:
        frame = make_street_scene(1024, 2048, seed=3)
    runners = {name: model_only_runner(seg.backend) for name, seg in segmenters.items()}
    times = {name: {'model': [], 'frame': []} for name in segmenters}
    for name in segmenters:  # warm-up
        runners[name]()
        segmenters[name]([frame])
    for _ in range(rounds):
        for name, seg in segmenters.items():
            for _ in range(per_round):
                start = time.perf_counter()
                runners[name]()
                times[name]['model'].append((time.perf_counter() - start) * 1e3)
                start = time.perf_counter()
                seg([frame])
                times[name]['frame'].append((time.perf_counter() - start) * 1e3)
    return {name: {'model_ms': float(np.median(t['model'])),
                   'frame_ms': float(np.median(t['frame']))} for name, t in times.items()}


def liteseg_bench(models, threads):
    """Return {name: end-to-end mean ms} of ``liteseg bench`` (fp32 and int8, alternating)."""
    result = {}
    for name, path in models.items():
        json_path = path.with_suffix('.bench.json')
        subprocess.run([sys.executable, '-m', 'liteseg_ros.cli', 'bench', str(path),
                        '--backend', 'onnxruntime', '--device', 'cpu', '--threads',
                        str(threads), '--iterations', '10', '--warmup', '2', '--json',
                        str(json_path)], check=True, cwd=REPO, capture_output=True)
        report = json.loads(json_path.read_text())
        result[name] = {'end_to_end_ms': report['end_to_end']['total']['mean_ms'],
                        'model_only_ms': report.get('model_only', {}).get('mean_ms')}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iters', type=int, default=300, help='training iterations')
    parser.add_argument('--train-only', action='store_true', help='train (or find) and stop')
    parser.add_argument('--threads', type=int, default=2, help='ONNX Runtime threads')
    parser.add_argument('--rounds', type=int, default=6, help='interleaved timing rounds')
    parser.add_argument('--per-round', type=int, default=3, help='runs per model per round')
    parser.add_argument('--calibration-frames', type=int, default=48)
    parser.add_argument('--schemes', nargs='+', default=['cpu-vnni', 'cpu-avx2', 'trt'])
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--min-agreement', type=float, default=0.99, help='export gate')
    parser.add_argument('--checkpoint', type=Path,
                        help='measure this checkpoint instead of training one (pipeline check)')
    args = parser.parse_args(argv)
    started = time.perf_counter()
    checkpoint = args.checkpoint or train_model(args.iters)
    print(f'checkpoint {checkpoint} ({time.perf_counter() - started:.0f} s)', flush=True)
    if args.train_only:
        return 0
    from liteseg_ros.inference import Segmenter

    config = CACHE / f'train_{args.iters}_crop256' / 'config.yaml'
    out = CACHE / (f'models_{args.iters}' if not args.checkpoint else f'models_{checkpoint.stem}')
    out.mkdir(parents=True, exist_ok=True)
    models = {k: v for k, v in export_all(checkpoint, config, args.schemes, out,
                                          args.calibration_frames,
                                          args.min_agreement).items() if v}
    segmenters = {name: Segmenter.from_file(path, 'onnxruntime', device='cpu',
                                            threads=args.threads)
                  for name, path in models.items()}
    frames, labels = held_out_scenes(config)
    quality = accuracy(segmenters, frames, labels)
    latency = interleaved_latency(segmenters, args.rounds, args.per_round, SCENE)
    int8 = [n for n in models if n.startswith('int8')]
    cli = liteseg_bench({n: models[n] for n in ['fp32'] + int8}, args.threads)
    name, _, flags = cpu_info()
    load = os.getloadavg()
    report = {'cpu': name, 'flags': flags, 'load_average': load, 'threads': args.threads,
              'iterations_trained': args.iters, 'held_out_frames':
              len(frames), 'input': list(segmenters['fp32'].backend.input_size),
              'models': {n: dict(quality[n], **latency[n]) for n in models},
              'liteseg_bench': cli}
    fp32 = latency['fp32']
    print(f'\n{name}; flags {" ".join(flags)}; load average {load[0]:.2f} {load[1]:.2f} '
          f'{load[2]:.2f}; ONNX Runtime, {args.threads} threads, T at '
          f'{report["input"][1]}x{report["input"][0]}')
    print(f"{'model':<14}{'model ms':>10}{'x fp32':>8}{'frame ms':>10}{'x fp32':>8}"
          f"{'agree %':>9}{'mIoU':>7}")
    for n in models:
        row = report['models'][n]
        print(f"{n:<14}{row['model_ms']:>10.1f}{row['model_ms'] / fp32['model_ms']:>8.2f}"
              f"{row['frame_ms']:>10.1f}{row['frame_ms'] / fp32['frame_ms']:>8.2f}"
              f"{100 * row['agreement']:>9.2f}{100 * row['miou']:>7.2f}")
    for n, row in cli.items():
        print(f"liteseg bench {n}: end to end {row['end_to_end_ms']:.1f} ms, model only "
              f"{row['model_only_ms'] or float('nan'):.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
