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
Benchmark a model through the Segmenter: per-stage timing and FPS, as the paper counts it.

End to end = resize in + inference + resize back to the frame size; model only = the network on
an already normalised tensor at the model's input size, for comparison with other runtimes.
"""

import json
import platform
import time

from liteseg_ros.inference.backends import BACKENDS
from liteseg_ros.inference.segmenter import Segmenter
import numpy as np

STAGES = ('preprocess', 'infer', 'postprocess', 'total')


def summarize(samples_ms):
    """Return mean, p50, p95 and FPS of a list of times in milliseconds."""
    values = np.asarray(samples_ms, float)
    mean = float(values.mean())
    return {'mean_ms': mean, 'p50_ms': float(np.percentile(values, 50)),
            'p95_ms': float(np.percentile(values, 95)), 'fps': 1000.0 / mean if mean else 0.0}


def model_only_runner(backend):
    """Return a zero-argument callable running just the network, or None if unsupported."""
    height, width = backend.input_size
    if backend.name in ('onnxruntime', 'openvino') and not backend.fused:
        x = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
        return lambda: backend.run_model_only(x)
    if backend.name == 'torch':
        images = np.zeros((1, height, width, 3), np.uint8)
        x = backend.normalise(images)

        def run():
            backend.forward(x)
            if backend.device.startswith('cuda'):
                backend._torch.cuda.synchronize()
        return run
    return None


def benchmark(segmenter, frame_size=(1024, 2048), batch=1, iterations=20, warmup=3,
              progress=None):
    """Time ``segmenter`` on generated frames of ``frame_size`` (H, W); return a report dict."""
    from liteseg_ros.sample_images import make_street_scene

    frames = [make_street_scene(*frame_size, seed=i) for i in range(batch)]
    for _ in range(warmup):
        segmenter(frames)
    stages = {stage: [] for stage in STAGES}
    steps = range(iterations) if progress is None else progress(range(iterations))
    for _ in steps:
        segmenter(frames)
        for stage in STAGES:
            stages[stage].append(segmenter.timings[stage])
    backend = segmenter.backend
    report = {
        'backend': backend.name, 'device': backend.device, 'model': backend.describe(),
        'variant': backend.config['variant'], 'input_size': list(backend.input_size),
        'frame_size': list(frame_size), 'batch': batch, 'upsample': segmenter.upsample,
        'iterations': iterations, 'machine': machine_description(),
        'end_to_end': {stage: summarize(stages[stage]) for stage in STAGES},
    }
    report['end_to_end']['total']['fps'] *= batch
    run_model = model_only_runner(backend)
    if run_model is not None:
        for _ in range(warmup):
            run_model()
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            run_model()
            times.append((time.perf_counter() - start) * 1e3)
        report['model_only'] = summarize(times)
        report['end_to_end_over_model_only'] = (
            report['end_to_end']['total']['mean_ms'] / batch / report['model_only']['mean_ms'])
    return report


#: The vector ISA flags worth naming beside a CPU figure (widest AVX first for ``widest_avx``).
ISA_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx_vnni', 'avx512_bf16',
             'amx_tile', 'amx_int8')


def cpu_info(cpuinfo='/proc/cpuinfo'):
    """Return (model name, core count, ISA flags of ``ISA_FLAGS`` it reports) of this CPU."""
    name, cores, flags = platform.processor() or platform.machine(), 0, set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    name, cores = (value.strip() if not cores else name), cores + 1
                elif key.strip() == 'flags' and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name, cores, [flag for flag in ISA_FLAGS if flag in flags]


def widest_avx(flags):
    """Return 'avx512f', 'avx2' or '-': the widest AVX level among ``flags``."""
    return next((flag for flag in ('avx512f', 'avx2') if flag in flags), '-')


def machine_description():
    """Return the CPU this runs on, e.g. 'AMD EPYC x2'."""
    name, cores, _ = cpu_info()
    return f'{name} x{cores}' if cores else name


def format_report(report):
    """Return the report as a fixed-width table."""
    lines = [f"{report['model']} | frames {report['frame_size'][1]}x{report['frame_size'][0]} "
             f"x{report['batch']} | upsample {report['upsample']} | {report['machine']}",
             f"{'stage':<14}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}{'FPS':>10}"]
    for stage in STAGES:
        row = report['end_to_end'][stage]
        fps = f"{row['fps']:>10.1f}" if stage == 'total' else f"{'':>10}"
        lines.append(f"{stage:<14}{row['mean_ms']:>10.2f}{row['p50_ms']:>10.2f}"
                     f"{row['p95_ms']:>10.2f}{fps}")
    if 'model_only' in report:
        row = report['model_only']
        lines.append(f"{'model only':<14}{row['mean_ms']:>10.2f}{row['p50_ms']:>10.2f}"
                     f"{row['p95_ms']:>10.2f}{row['fps']:>10.1f}")
        lines.append(f"end to end / model only: {report['end_to_end_over_model_only']:.3f}")
    return '\n'.join(lines)


def add_arguments(parser):
    """Add ``liteseg bench`` arguments to ``parser``."""
    parser.add_argument('model', help='checkpoint (.pt), ONNX model or TensorRT engine')
    parser.add_argument('--backend', default='auto', choices=BACKENDS)
    parser.add_argument('--frame-size', default='2048x1024', help='source frames, WxH')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--iterations', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=0,
                        help='CPU inference threads (default 0: the backend default)')
    parser.add_argument('--device', default='auto',
                        help="'auto' (default: the GPU when the backend has one), 'cpu', "
                             "'cuda' or 'cuda:N'; openvino: 'gpu', 'gpu:N', 'npu' (Intel)")
    parser.add_argument('--precision', choices=['auto', 'f32', 'bf16'],
                        help='openvino: inference precision (default auto: bf16 on a CPU with '
                             'native bf16, else f32)')
    parser.add_argument('--fp16', action='store_true', help='torch on CUDA: half precision')
    parser.add_argument('--channels-last', action='store_true', help='torch: NHWC memory')
    parser.add_argument('--upsample', choices=['nearest', 'bilinear'], default='nearest')
    parser.add_argument('--json', help='also write the report here')


def run(args):
    """Run ``liteseg bench``; return the exit code."""
    from tqdm import tqdm

    width, height = (int(v) for v in args.frame_size.lower().split('x'))
    options = {}
    if args.precision:
        if args.backend != 'openvino':
            raise ValueError('--precision is an openvino option (use --backend openvino); '
                             'other backends run the precision of the model file')
        options['precision'] = args.precision
    if args.fp16:
        options['fp16'] = True
    if args.channels_last:
        options['channels_last'] = True
    segmenter = Segmenter.from_file(args.model, args.backend, upsample=args.upsample,
                                    device=args.device, threads=args.threads, **options)
    report = benchmark(segmenter, (height, width), args.batch, args.iterations, args.warmup,
                       progress=lambda it: tqdm(it, desc='bench', unit='batch', leave=False))
    print(format_report(report))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'wrote {args.json}')
    return 0
