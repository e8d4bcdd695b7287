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
ONNX Runtime speed of our export vs PaddleSeg's own (paddle2onnx), side by side in one run.

Same weights (PaddleSeg's PP-LiteSeg filled from the parity test's seeded RNG, converted with
``training.convert_paddle``), same input size, same ONNX Runtime session options; runs are
interleaved so machine load hits both alike. Also times our end-to-end path: one 2048x1024
rgb8 frame in, 2048x1024 uint8 mask out, against our model-only time.

    .venv/bin/python benchmarks/ort_vs_paddle_onnx.py [--variant t] [--threads 2]

Builds the PaddleSeg reference venv on first use (see test/paddle_reference/env.py) and adds
paddle2onnx to it.
"""

import argparse
import json
from pathlib import Path
import subprocess
import sys
import time

from liteseg_ros.inference import Segmenter
from liteseg_ros.sample_images import make_street_scene
import numpy as np
from training.convert_paddle import convert_model
from training.export import export_onnx

REPO = Path(__file__).resolve().parents[1]

# PaddleSeg's venv needs numpy<2; ml-dtypes >= 0.5 (via onnx) would pull numpy 2 back in.
PADDLE2ONNX = ('paddle2onnx==2.1.0', 'numpy<2', 'ml-dtypes<0.5')


def paddle_onnx(work, variant, num_classes, height, width):
    """Export PaddleSeg's model with paddle2onnx in the reference venv; return its paths."""
    sys.path.insert(0, str(REPO / 'test' / 'paddle_reference'))
    from env import ensure_paddle_venv

    python = ensure_paddle_venv()
    probe = subprocess.run([str(python), '-c', 'import paddle2onnx'], capture_output=True)
    if probe.returncode:
        subprocess.run([str(python), '-m', 'pip', 'install', '-q', *PADDLE2ONNX], check=True)
    subprocess.run([str(python), str(REPO / 'benchmarks' / 'paddle_export.py'), '--variant',
                    variant, '--num-classes', str(num_classes), '--height', str(height),
                    '--width', str(width), '--out-dir', str(work)], check=True)
    return work / 'model.pdparams', work / 'paddle.onnx'


def session(path, threads):
    """Return an ONNX Runtime CPU session with the options both models share."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def interleaved(runs, iterations, warmup):
    """Time each callable ``iterations`` times, alternating between them; return ms lists."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runs}
    for _ in range(iterations):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main():
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[1])
    parser.add_argument('--variant', choices=['t', 'b'], default='t')
    parser.add_argument('--height', type=int, default=512)
    parser.add_argument('--width', type=int, default=1024)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--iterations', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--work-dir', default=str(REPO / '.cache' / 'bench_paddle_onnx'))
    parser.add_argument('--json', help='write the figures here')
    args = parser.parse_args()
    work = Path(args.work_dir)
    pdparams, theirs = paddle_onnx(work, args.variant, 19, args.height, args.width)
    checkpoint = work / 'ours.pt'
    convert_model(pdparams, checkpoint, args.variant, 19, 'cityscapes')
    ours = work / 'ours.onnx'
    export_onnx(checkpoint, ours, args.height, args.width)

    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, args.height, args.width))
    x = x.astype(np.float32)
    sessions = {'ours': session(ours, args.threads),
                'paddle2onnx': session(theirs, args.threads)}
    feeds = {name: {s.get_inputs()[0].name: x} for name, s in sessions.items()}
    outputs = {name: s.run(None, feeds[name])[0] for name, s in sessions.items()}
    agreement = float(np.abs(outputs['ours'] - outputs['paddle2onnx']).max())

    frame = make_street_scene(1024, 2048, seed=0)
    segmenter = Segmenter.from_file(ours, threads=args.threads)
    runs = {name: (lambda s=s, f=feeds[name]: s.run(None, f)) for name, s in sessions.items()}
    runs['end_to_end'] = lambda: segmenter([frame])
    times = interleaved(runs, args.iterations, args.warmup)
    median = {name: float(np.median(t)) for name, t in times.items()}
    result = {
        'variant': args.variant, 'input': f'{args.width}x{args.height}', 'threads': args.threads,
        'median_ms': median, 'max_abs_logit_difference': agreement,
        'ours_over_paddle2onnx': median['ours'] / median['paddle2onnx'],
        'end_to_end_over_model_only': median['end_to_end'] / median['ours'],
    }
    print(f'PP-LiteSeg-{args.variant.upper()} {args.width}x{args.height}, ONNX Runtime CPU, '
          f'{args.threads} threads, {args.iterations} interleaved runs (median ms)')
    print(f"  ours (training.export)        {median['ours']:8.1f}")
    print(f"  PaddleSeg (paddle2onnx)       {median['paddle2onnx']:8.1f}")
    print(f"  ours / PaddleSeg              {result['ours_over_paddle2onnx']:8.3f}")
    print(f"  end to end 2048x1024 frame    {median['end_to_end']:8.1f}")
    print(f"  end to end / model only       {result['end_to_end_over_model_only']:8.3f}")
    print(f'  max |logit difference|        {agreement:8.1e}')
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
