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
CPU backends side by side: ONNX Runtime fp32/int8, OpenVINO f32/bf16/int8, PyTorch fp32.

A trained checkpoint (default: the CamVid PP-LiteSeg-T of ``.cache/camvid_repro``, seed 1, the
one ``benchmarks/camvid_deploy.py`` deploys) is exported
by ``training.export`` at 512x1024 in fp32 and int8 (``cpu-avx2``, calibrated on the training
split of the checkpoint's own config) and cached under ``.cache/cpu_backends/``. Each path is
timed model only (the network on a normalised tensor) and frame to mask (a 2048x1024 frame
through the ``Segmenter``: resize, normalise, network, ArgMax, resize back), in interleaved
rounds so that load from other processes hits every path alike (with a pause between paths, so
that one runtime's spinning worker threads have parked before the next runs, and the order
rotated by one path each round), and its masks
are compared with ONNX Runtime fp32's. ``--camvid DIR`` adds the mIoU of every path on the
CamVid test images at the checkpoint's own size (models exported at that size too). The ONNX
paths find labels with ``upsampled_argmax`` on the logits before the final upsampling, as the
backends do; ``--in-graph-argmax`` adds each of them again with the model's own Resize and
ArgMax in the graph, timed in the same rounds.

One table per CPU kind: this CPU as it is, and with ``--avx2-only`` again in a child process that
sees an AVX2-only CPU (AVX2 + FMA, no AVX-512, AVX-VNNI or AMX, like an AMD Zen 3):
``benchmarks/cpu_kinds/avx2_only.c``, preloaded, masks those CPUID feature bits with Linux's CPUID
faulting, so ONNX Runtime (MLAS), oneDNN (OpenVINO, PyTorch), PyTorch and numpy pick their AVX2
kernels and run them natively. The child checks that they did. It is this CPU's cores running
AVX2 code, not another CPU: the table says so.

Usage::

    python benchmarks/cpu_backends.py [--checkpoint CKPT] [--threads 2] [--rounds 6]
        [--camvid /work/data/camvid] [--avx2-only] [--in-graph-argmax] [--json out.json]
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

CACHE = REPO / '.cache' / 'cpu_backends'
CHECKPOINT = REPO / '.cache' / 'camvid_repro' / 'ours_seed1' / 'best.pt'
AVX2_ONLY_SOURCE = REPO / 'benchmarks' / 'cpu_kinds' / 'avx2_only.c'
#: CPUID features the AVX2-only child hides (the /proc/cpuinfo names).
HIDDEN_BY_AVX2_ONLY = ('avx512', 'avx_vnni', 'amx')
#: Seconds between paths: the runtimes' worker threads spin a while after a run.
PAUSE = 0.2
SIZE = (512, 1024)
FRAME = (1024, 2048)
#: name, backend, model file kind, options; in table order.
PATHS = (
    ('ONNX Runtime fp32', 'onnxruntime', 'fp32', {}),
    ('ONNX Runtime int8', 'onnxruntime', 'int8', {}),
    ('OpenVINO f32', 'openvino', 'fp32', {'precision': 'f32'}),
    ('OpenVINO bf16', 'openvino', 'fp32', {'precision': 'bf16'}),
    ('OpenVINO int8', 'openvino', 'int8', {'precision': 'auto'}),
    ('PyTorch fp32', 'torch', 'checkpoint', {}),
)
REFERENCE = 'ONNX Runtime fp32'
IN_GRAPH = ', in-graph ArgMax'


def export_models(checkpoint, size, out, min_agreement):
    """Export fp32 and int8 ONNX of ``checkpoint`` at ``size`` (cached); return {kind: path}."""
    from training.export import main as export_main

    out.mkdir(parents=True, exist_ok=True)
    calibration = f'{Path(checkpoint).parent / "config.yaml"}:train'
    models = {}
    for kind, extra in (('fp32', []), ('int8', ['--precision', 'int8', '--int8-scheme',
                                                'cpu-avx2', '--calibration', calibration,
                                                '--calibration-frames', '32',
                                                '--min-agreement', str(min_agreement)])):
        path = out / f'{Path(checkpoint).stem}_{size[1]}x{size[0]}_{kind}.onnx'
        if not path.is_file():
            code = export_main([str(checkpoint), '--onnx', str(path), '--height', str(size[0]),
                                '--width', str(size[1]), '--no-check'] + extra)
            if code:
                raise SystemExit(f'export of {path} failed')
        models[kind] = path
    return models


def load_paths(models, checkpoint, size, threads, skip=(), in_graph_argmax=False):
    """
    Return {name: Segmenter} for every path of PATHS not in ``skip``.

    ``in_graph_argmax`` adds each ONNX path again with the model's own Resize and ArgMax in the
    graph (``upsample_on_host = False``), named '<path>, in-graph ArgMax'.
    """
    from liteseg_ros.inference import Segmenter

    segmenters = {}
    for name, backend, kind, options in PATHS:
        if name in skip:
            continue
        path = checkpoint if kind == 'checkpoint' else models[kind]
        if backend == 'torch':
            options = dict(options, input_size=size)
        segmenters[name] = Segmenter.from_file(path, backend, device='cpu', threads=threads,
                                               **options)
        if in_graph_argmax and backend != 'torch':
            in_graph = Segmenter.from_file(path, backend, device='cpu', threads=threads,
                                           **options)
            in_graph.backend.upsample_on_host = False
            segmenters[f'{name}{IN_GRAPH}'] = in_graph
    return segmenters


def model_only(segmenter):
    """Return a callable running only the network on a normalised tensor."""
    from liteseg_ros.inference.bench import model_only_runner

    return model_only_runner(segmenter.backend)


def time_paths(segmenters, frame, rounds, runs):
    """Time every path in interleaved rounds; return {name: (model ms, frame-to-mask ms)}."""
    runners = {name: model_only(s) for name, s in segmenters.items()}
    for name, segmenter in segmenters.items():  # compile, allocate, warm up
        for _ in range(2):
            segmenter([frame])
            runners[name]()
    samples = {name: ([], []) for name in segmenters}
    names = list(segmenters)
    for round_ in range(rounds):
        # Each round starts one path later: no path always runs right after the same one
        # (PyTorch's OpenMP threads, for one, spin on for a while after a run).
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            segmenter = segmenters[name]
            time.sleep(PAUSE)
            for _ in range(runs):
                start = time.perf_counter()
                runners[name]()
                samples[name][0].append((time.perf_counter() - start) * 1e3)
            for _ in range(runs):
                start = time.perf_counter()
                segmenter([frame])
                samples[name][1].append((time.perf_counter() - start) * 1e3)
    return {name: (float(np.median(m)), float(np.median(f))) for name, (m, f) in samples.items()}


def agreement(segmenters, frames):
    """Return {name: share of pixels whose class equals ONNX Runtime fp32's} on ``frames``."""
    reference = [r.mask for r in segmenters[REFERENCE](frames)]
    return {name: float(np.mean([(r.mask == m).mean() for r, m in zip(s(frames), reference)]))
            for name, s in segmenters.items()}


def camvid_frames(root, split, count=None):
    """Return [(RGB frame, label)] of a CamVid list (PaddleSeg layout)."""
    from liteseg_ros.dataset_files import camvid_files, read_image, read_label

    files = camvid_files(root, f'{split}.txt')
    if count:
        files = files[::max(1, len(files) // count)][:count]
    return [(read_image(image), read_label(label)) for image, label in files]


def camvid_accuracy(segmenters, samples, num_classes):
    """Return ({name: (mIoU %, agreement with ONNX Runtime fp32)}, bf16 vs f32 agreement)."""
    from liteseg_ros.inference.metrics import ConfusionMatrix

    masks = {name: [s.segment(frame).mask for frame, _ in samples]
             for name, s in segmenters.items()}
    result = {}
    for name, predicted in masks.items():
        matrix = ConfusionMatrix(num_classes)
        for mask, (_, label) in zip(predicted, samples):
            matrix.update(mask, label)
        same = np.mean([(m == r).mean() for m, r in zip(predicted, masks[REFERENCE])])
        result[name] = (100 * float(matrix.miou()), float(same))
    bf16 = None
    if 'OpenVINO bf16' in masks:
        pairs = zip(masks['OpenVINO bf16'], masks['OpenVINO f32'])
        bf16 = float(np.mean([(a == b).mean() for a, b in pairs]))
    return result, bf16


def load_average():
    return ' / '.join(f'{v:.2f}' for v in os.getloadavg())


def versions():
    import onnxruntime
    import openvino
    import torch

    openvino_version = openvino.get_version().split('-')[0]
    return (f'ONNX Runtime {onnxruntime.__version__}, OpenVINO {openvino_version}, '
            f'PyTorch {torch.__version__}')


def format_table(result):
    """Return the markdown table of one run."""
    lines = [f"CPU: {result['cpu']} x{result['cores']}, flags {' '.join(result['flags'])}; "
             f"{result['isa']}; {result['threads']} threads; {result['versions']}",
             f"load average (1/5/15 min) before {result['load_before']}, after "
             f"{result['load_after']}; {result['rounds']} interleaved rounds x "
             f"{result['runs']} runs, medians",
             '',
             '| path | model only 512x1024 | x ORT fp32 | frame to mask 2048x1024 | x ORT fp32 '
             '| masks = ORT fp32 | CamVid test mIoU | vs fp32 |',
             '|---|---|---|---|---|---|---|---|']
    ref_model, ref_frame = result['times'][REFERENCE]
    ref_miou = result.get('camvid', {}).get(REFERENCE, (None,))[0]
    names = [name for base, _, _, _ in PATHS for name in (base, base + IN_GRAPH)
             if name == base or name in result['times']]
    for name in names:
        if name not in result['times']:
            lines.append(f"| {name} | {result['skipped'].get(name, 'not run')} | | | | | | |")
            continue
        model, frame = result['times'][name]
        miou = result.get('camvid', {}).get(name)
        miou_text = f'{miou[0]:.2f}' if miou else '-'
        delta = f'{miou[0] - ref_miou:+.2f}' if miou and ref_miou is not None else '-'
        label = (f"{name} (float parts {result['openvino_int8_precision']})"
                 if name == 'OpenVINO int8' else name)
        same = 100 * result['agreement'][name]
        lines.append(f'| {label} | {model:.1f} ms | {model / ref_model:.2f} | {frame:.1f} ms | '
                     f'{frame / ref_frame:.2f} | {same:.2f} % | {miou_text} | {delta} |')
    if 'camvid' in result:
        bf16 = result.get('bf16_vs_f32_camvid')
        if bf16 is not None:
            lines.append('')
            lines.append(f'OpenVINO bf16 masks = OpenVINO f32 masks on the CamVid test images: '
                         f'{100 * bf16:.2f} %')
    return '\n'.join(lines)


def build_avx2_only(cache):
    """Compile the AVX2-only preload library into ``cache``; return its path."""
    with open('/proc/cpuinfo') as f:
        if 'cpuid_fault' not in f.read().split():
            raise SystemExit('--avx2-only needs CPUID faulting (the cpuid_fault flag of '
                             '/proc/cpuinfo), which this CPU or hypervisor lacks')
    cache.mkdir(parents=True, exist_ok=True)
    library = cache / 'avx2_only.so'
    subprocess.run(['cc', '-O2', '-shared', '-fPIC', '-o', str(library), str(AVX2_ONLY_SOURCE)],
                   check=True)
    return library


def check_avx2_only(capabilities):
    """Raise SystemExit unless every runtime here sees an AVX2-only CPU."""
    from numpy._core._multiarray_umath import __cpu_features__ as numpy_features
    import torch

    seen = {'PyTorch': torch.backends.cpu.get_cpu_capability(),
            'numpy AVX512F': numpy_features.get('AVX512F'), 'OpenVINO': sorted(capabilities)}
    if seen['PyTorch'] != 'AVX2' or seen['numpy AVX512F'] or 'BF16' in seen['OpenVINO']:
        raise SystemExit(f'the AVX2-only preload did not take: the runtimes see {seen}')
    return seen


def run(args):
    """Measure on this process's CPU kind; return the result."""
    import openvino

    name, cores, flags = cpu_info()
    skip = {}
    capabilities = openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    if args.child_kind == 'avx2-only':
        seen = check_avx2_only(capabilities)
        flags = [f for f in flags if not f.startswith(HIDDEN_BY_AVX2_ONLY)]
        isa = ('AVX2-only: AVX-512, AVX-VNNI and AMX hidden from CPUID '
               f'(benchmarks/cpu_kinds/avx2_only.c), PyTorch sees {seen["PyTorch"]}')
    else:
        isa = 'native ISA'
    if 'BF16' not in capabilities:
        skip['OpenVINO bf16'] = 'no native bf16'
    models = export_models(args.checkpoint, SIZE, args.cache, args.min_agreement)
    segmenters = load_paths(models, args.checkpoint, SIZE, args.threads, skip,
                            args.in_graph_argmax)
    if args.camvid:
        frames = [frame for frame, _ in camvid_frames(args.camvid, 'test', 4)]
        import cv2

        frames = [cv2.resize(f, FRAME[::-1], interpolation=cv2.INTER_LINEAR) for f in frames]
    else:
        from liteseg_ros.sample_images import make_street_scene

        frames = [make_street_scene(*FRAME, seed=i) for i in range(4)]
    load_before = load_average()
    times = time_paths(segmenters, frames[0], args.rounds, args.runs)
    load_after = load_average()
    result = {'cpu': name, 'cores': cores, 'flags': flags, 'threads': args.threads,
              'isa': isa, 'versions': versions(), 'load_before': load_before,
              'load_after': load_after, 'rounds': args.rounds, 'runs': args.runs,
              'times': times, 'agreement': agreement(segmenters, frames), 'skipped': skip,
              'openvino_int8_precision': segmenters['OpenVINO int8'].backend.precision}
    if args.camvid and not args.child_kind:
        from liteseg_ros.model.checkpoint import load_checkpoint

        config = load_checkpoint(args.checkpoint)['config']
        size = tuple(config['input_size'])
        native = export_models(args.checkpoint, size, args.cache, args.min_agreement)
        at_size = load_paths(native, args.checkpoint, size, args.threads, skip)
        print(format_table(result), flush=True)  # the timings, before the slower accuracy pass
        samples = camvid_frames(args.camvid, 'test', args.camvid_frames)
        result['camvid'], result['bf16_vs_f32_camvid'] = camvid_accuracy(
            at_size, samples, config['num_classes'])
        result['camvid_frames'] = len(samples)
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', type=Path, default=CHECKPOINT)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=6)
    parser.add_argument('--runs', type=int, default=2, help='runs per path and round')
    parser.add_argument('--camvid', type=Path, help='CamVid root (images/, labels/, test.txt)')
    parser.add_argument('--camvid-frames', type=int, default=0,
                        help='CamVid test images for the mIoU, spread over the list (0: all)')
    parser.add_argument('--avx2-only', action='store_true',
                        help='also measure in a child that sees an AVX2-only CPU (CPUID masked)')
    parser.add_argument('--in-graph-argmax', action='store_true',
                        help="also time each ONNX path with the model's Resize and ArgMax "
                             'in the graph (before upsampled_argmax)')
    parser.add_argument('--min-agreement', type=float, default=0.99,
                        help="the int8 export's accuracy gate (training.export)")
    parser.add_argument('--cache', type=Path, default=CACHE, help='exported models (cached)')
    parser.add_argument('--json', type=Path, help='also write the results here')
    parser.add_argument('--child-json', type=Path, help=argparse.SUPPRESS)
    parser.add_argument('--child-kind', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.checkpoint.is_file():
        raise SystemExit(f'{args.checkpoint}: no such checkpoint (train one, e.g. '
                         'training/configs/pp_liteseg_t_camvid_cpu_480x360.yaml)')
    results = [run(args)]
    if args.child_json:
        args.child_json.write_text(json.dumps(results[0]))
        return 0
    print(format_table(results[0]), flush=True)
    if args.avx2_only:
        library = build_avx2_only(args.cache)
        child = args.cache / 'avx2_child.json'
        command = [sys.executable, __file__, '--checkpoint', str(args.checkpoint), '--threads',
                   str(args.threads), '--rounds', str(args.rounds), '--runs', str(args.runs),
                   '--min-agreement', str(args.min_agreement), '--cache', str(args.cache),
                   '--child-json', str(child), '--child-kind', 'avx2-only'] + (
                       ['--camvid', str(args.camvid)] if args.camvid else []) + (
                       ['--in-graph-argmax'] if args.in_graph_argmax else [])
        subprocess.run(command, check=True, env=dict(os.environ, LD_PRELOAD=str(library)))
        results.append(json.loads(child.read_text()))
        print('\n' + format_table(results[1]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
