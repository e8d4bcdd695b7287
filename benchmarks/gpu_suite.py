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
One step of benchmarks/gpu_suite.sh: measure, or skip saying why; write one JSON object.

Steps: ``torch`` (PyTorch CUDA fp32/fp16, model only and frame to mask, T and B at 512x1024
and 768x1536, batch 1 and 8), ``onnxruntime`` (CUDA execution provider, T at 512x1024, fp32
and fp16 ONNX), ``train`` (T training it/s, batch 16, bf16 autocast), ``nccl`` (a torchrun
all-reduce over every visible GPU). Random weights: speed does not depend on them. Needs only
what the machine has (python3, torch with CUDA; onnxruntime-gpu optional), no network.

Usage::

    python3 benchmarks/gpu_suite.py STEP --out STEP.json [--dry-run]
"""

import argparse
import json
from pathlib import Path
import subprocess
import sys
import tempfile
import time

REPO = Path(__file__).resolve().parents[1]
STEPS = ('torch', 'onnxruntime', 'train', 'nccl')
SIZES = ((512, 1024), (768, 1536))
FRAME = (1024, 2048)  # camera frames for frame -> mask (Cityscapes size)


class Skip(Exception):
    """The step cannot run here; the message says why."""


DRY_RUN = False


def ready():
    """End a dry run once the step's prerequisites are checked."""
    if DRY_RUN:
        raise Skip('dry run: the prerequisites are here, nothing measured')


def need_cuda_torch():
    try:
        import torch
    except ImportError as exc:
        raise Skip(f'PyTorch is not importable ({exc})') from None
    if not torch.cuda.is_available():
        raise Skip(f'torch {torch.__version__} sees no CUDA GPU')
    return torch


def timed(run, sync, iterations=10, warmup=3):
    """Return the median milliseconds of ``run``."""
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def checkpoint_for(variant, tmp):
    """Write a random-weight liteseg checkpoint of ``variant``; return its path."""
    from liteseg_ros.model import build_model, save_checkpoint

    path = Path(tmp) / f'{variant}.pt'
    save_checkpoint(path, build_model(variant, 19, dataset='cityscapes',
                                      input_size=[512, 1024]))
    return path


def step_torch():
    torch = need_cuda_torch()
    ready()
    import numpy as np

    from liteseg_ros.inference.backends.torch_backend import TorchBackend
    from liteseg_ros.inference.segmenter import Segmenter
    from liteseg_ros.sample_images import make_street_scene

    torch.backends.cudnn.benchmark = True
    frame = make_street_scene(*FRAME, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ('t', 'b'):
            path = checkpoint_for(variant, tmp)
            for height, width in SIZES:
                for fp16 in (False, True):
                    backend = TorchBackend(path, 'cuda', fp16=fp16, input_size=(height, width))
                    segmenter = Segmenter(backend)
                    for batch in (1, 8):
                        images = np.zeros((batch, height, width, 3), np.uint8)
                        x = backend.normalise(images)
                        model_ms = timed(lambda: backend.forward(x), torch.cuda.synchronize)
                        frames = [frame] * batch
                        frame_ms = timed(lambda: segmenter(frames), torch.cuda.synchronize)
                        rows.append({'variant': variant, 'size': f'{width}x{height}',
                                     'precision': 'fp16' if fp16 else 'fp32', 'batch': batch,
                                     'model_only_fps': 1e3 * batch / model_ms,
                                     'frame_to_mask_fps': 1e3 * batch / frame_ms})
                        print(json.dumps(rows[-1]), flush=True)
    return {'gpu': torch.cuda.get_device_name(0), 'torch': torch.__version__, 'rows': rows}


def step_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise Skip(f'onnxruntime is not importable ({exc})') from None
    providers = ort.get_available_providers()
    if 'CUDAExecutionProvider' not in providers:
        raise Skip(f'onnxruntime {ort.__version__} has no CUDAExecutionProvider ({providers}); '
                   'onnxruntime-gpu is not installed')
    need_cuda_torch()
    ready()
    import numpy as np

    from liteseg_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    from liteseg_ros.inference.segmenter import Segmenter
    from liteseg_ros.sample_images import make_street_scene
    from training.export import export_onnx

    frame = make_street_scene(*FRAME, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint_for('t', tmp)
        for precision in ('fp32', 'fp16'):
            onnx_path = Path(tmp) / f't_{precision}.onnx'
            # Speed only: random weights, so no accuracy gate.
            export_onnx(path, onnx_path, precision=precision, min_agreement=0.0)
            backend = OnnxRuntimeBackend(onnx_path, providers=['CUDAExecutionProvider',
                                                               'CPUExecutionProvider'])
            x = np.zeros((1, 3, 512, 1024), np.float32)
            model_ms = timed(lambda: backend.run_model_only(x), lambda: None)
            segmenter = Segmenter(backend)
            frame_ms = timed(lambda: segmenter([frame]), lambda: None)
            rows.append({'variant': 't', 'size': '1024x512', 'precision': precision,
                         'batch': 1, 'model_only_fps': 1e3 / model_ms,
                         'frame_to_mask_fps': 1e3 / frame_ms})
            print(json.dumps(rows[-1]), flush=True)
    return {'onnxruntime': ort.__version__, 'rows': rows}


def step_train():
    need_cuda_torch()
    ready()
    command = [sys.executable, str(REPO / 'benchmarks' / 'train_throughput.py'), '--variant',
               't', '--device', 'cuda', '--batch', '16', '--amp', 'bf16', '--warmup', '3',
               '--iters', '10', '--workers', '4']
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=150)
    print(result.stdout, result.stderr[-2000:], flush=True)
    if result.returncode != 0:
        raise RuntimeError(f'train_throughput.py exited {result.returncode}')
    step = [line for line in result.stdout.splitlines() if 'it/s' in line]
    return {'command': ' '.join(command[1:]), 'lines': step}


NCCL_SCRIPT = """
import os, torch, torch.distributed as dist
dist.init_process_group('nccl')
rank = dist.get_rank()
torch.cuda.set_device(int(os.environ['LOCAL_RANK']))
x = torch.full((1 << 20,), float(rank + 1), device='cuda')
dist.all_reduce(x)
n = dist.get_world_size()
assert torch.allclose(x, torch.full_like(x, n * (n + 1) / 2)), x[:4]
if rank == 0:
    print('all_reduce ok over', n, 'GPUs')
dist.destroy_process_group()
"""


def step_nccl():
    torch = need_cuda_torch()
    count = torch.cuda.device_count()
    if count < 2:
        raise Skip(f'{count} GPU visible: the NCCL smoke test needs at least 2')
    ready()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / 'nccl_smoke.py'
        script.write_text(NCCL_SCRIPT)
        result = subprocess.run([sys.executable, '-m', 'torch.distributed.run',
                                 f'--nproc_per_node={count}', str(script)],
                                capture_output=True, text=True, timeout=120)
    print(result.stdout, result.stderr[-2000:], flush=True)
    if result.returncode != 0:
        raise RuntimeError(f'torchrun exited {result.returncode}')
    return {'gpus': count, 'output': result.stdout.strip()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('step', choices=STEPS)
    parser.add_argument('--out', required=True)
    parser.add_argument('--dry-run', action='store_true',
                        help="check the step's prerequisites, then skip it")
    args = parser.parse_args(argv)
    global DRY_RUN
    DRY_RUN = args.dry_run
    started = time.perf_counter()
    try:
        result = {'status': 'ok', **globals()[f'step_{args.step}']()}
    except Skip as exc:
        result = {'status': 'skipped', 'reason': str(exc)}
    except Exception as exc:  # noqa: B902 - one failed step must not end the suite
        result = {'status': 'failed', 'reason': f'{type(exc).__name__}: {exc}'}
    result['seconds'] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"step {args.step}: {result['status']}"
          + (f" ({result['reason']})" if 'reason' in result else ''), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
