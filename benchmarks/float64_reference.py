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
float32 logits against the same network in float64, on this CPU.

Prints max|f32 - f64| / max|f64| for PyTorch (oneDNN on and off), our ONNX export in ONNX
Runtime and, with ``--paddle``, PaddleSeg (its parity-test cases, float32 and float64), with
the CPU model and its vector ISA flags.  The tests bound these ratios (test/tolerances.py).
To see the AVX2 kernels on an AVX-512 machine::

    export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
    .venv/bin/python benchmarks/float64_reference.py [--paddle]
"""

import argparse
import copy
import os
from pathlib import Path
import subprocess
import sys
import tempfile

from liteseg_ros.inference.bench import cpu_info
from liteseg_ros.model import build_model, load_model, save_checkpoint
import numpy as np
import torch
from training.export import export_onnx

# The tests' seeded weights and float64 comparison, so the figures are the ones they bound.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'test'))
from model_fixtures import seed_weights  # noqa: E402,I100
from tolerances import relative_error  # noqa: E402,I100

REPO = Path(__file__).resolve().parents[1]
OURS = [('t', 19, 512, 1024), ('b', 11, 720, 960)]
ISA_VARIABLES = ('ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA', 'ATEN_CPU_CAPABILITY')


def torch_logits(model, x, dtype=torch.float32, mkldnn=True):
    """Run ``model`` (a copy, in ``dtype``) on ``x``; return numpy logits."""
    model = copy.deepcopy(model).to(dtype).eval()
    before, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, mkldnn
    try:
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(dtype)).numpy()
    finally:
        torch.backends.mkldnn.enabled = before


def onnxruntime_logits(checkpoint, x, work):
    """Export ``checkpoint`` at the size of ``x`` and run it in ONNX Runtime (CPU)."""
    import onnxruntime as ort

    path = Path(work) / (Path(checkpoint).stem + '.onnx')
    export_onnx(checkpoint, path, x.shape[2], x.shape[3])
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def row(label, exact, figures):
    """Print one table row: the logit scale, then each ratio or n/a."""
    cells = [f'{v:.1e}' if v is not None else 'n/a' for v in figures]
    print(f'| {label} | {np.abs(exact).max():.1f} | ' + ' | '.join(cells) + ' |', flush=True)


def ours(work):
    """Rows for our seeded models on a unit-normal input."""
    for variant, classes, height, width in OURS:
        model = seed_weights(build_model(variant, classes))
        checkpoint = Path(work) / f'{variant}{classes}.pt'
        save_checkpoint(checkpoint, model)
        x = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
        exact = torch_logits(model, x, torch.float64)
        row(f'ours {variant.upper()}, {classes} classes, {height}x{width}', exact, [
            relative_error(torch_logits(model, x), exact),
            relative_error(torch_logits(model, x, mkldnn=False), exact),
            relative_error(onnxruntime_logits(checkpoint, x, work), exact), None, None])


def paddle(work):
    """Rows for the PaddleSeg parity cases: its weights, its input, both its precisions."""
    sys.path.insert(0, str(REPO / 'test'))
    from paddle_reference import env

    cases = [('t', 19, 512, 1024), ('b', 19, 512, 1024), ('t', 11, 720, 960),
             ('b', 11, 720, 960)]
    for case, case_dir in zip(cases, env.make_reference(cases=cases, seed=0)):
        checkpoint = Path(work) / f'{case_dir.name}.pt'
        subprocess.run([sys.executable, '-m', 'training.convert_paddle',
                        str(case_dir / 'model.pdparams'), str(checkpoint), '--variant', case[0],
                        '--num-classes', str(case[1])], cwd=REPO, check=True,
                       capture_output=True)
        model = load_model(checkpoint)
        x = np.load(case_dir / 'input.npy')
        exact = torch_logits(model, x, torch.float64)
        row(f'PaddleSeg weights {case[0].upper()}, {case[1]} classes, {case[2]}x{case[3]}',
            exact, [relative_error(torch_logits(model, x), exact),
                    relative_error(torch_logits(model, x, mkldnn=False), exact),
                    relative_error(onnxruntime_logits(checkpoint, x, work), exact),
                    relative_error(np.load(case_dir / 'logits.npy'), exact),
                    relative_error(np.load(case_dir / 'logits64.npy'), exact)])


def main(argv=None):
    """Print the CPU and the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--paddle', action='store_true',
                        help='also PaddleSeg (builds its reference venv on first use)')
    args = parser.parse_args(argv)
    import onnxruntime

    name, _, flags = cpu_info()
    print(f'CPU: {name}; ISA flags: {" ".join(flags)}; torch {torch.__version__} '
          f'(ATen {torch.backends.cpu.get_cpu_capability()}), onnxruntime '
          f'{onnxruntime.__version__}, {torch.get_num_threads()} threads')
    limits = [f'{v}={os.environ[v]}' for v in ISA_VARIABLES if v in os.environ]
    print(f'ISA limits: {" ".join(limits) or "none"}')
    print('\nmax|f32 - f64| / max|f64|, f64 = our model in float64\n')
    print('| weights, input | max abs f64 logit | PyTorch | PyTorch, oneDNN off | '
          'ONNX Runtime | PaddleSeg f32 | PaddleSeg f64 |')
    print('|---|---|---|---|---|---|---|')
    with tempfile.TemporaryDirectory() as work:
        ours(work)
        if args.paddle:
            paddle(work)
    return 0


if __name__ == '__main__':
    sys.exit(main())
