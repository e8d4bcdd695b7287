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
Export a liteseg checkpoint to ONNX (and optionally a TensorRT engine).

The ONNX model carries the checkpoint's config in ``metadata_props``, so a node given only the
ONNX file knows its classes. Exact at any input size (960x720 included): adaptive pooling is
exported as exact per-bin means. Precision is a property of the ONNX file, shared by every
backend: fp16 types or int8 Q/DQ nodes (``training.quantize``), checked by an accuracy gate
against fp32 before anything is written (docs/inference.md, "Precision").

Usage::

    python -m training.export model.pt --onnx model.onnx [--height 512 --width 1024]
        [--batch N | --dynamic-batch] [--fuse [--confidence]]
        [--precision fp32|fp16|int8 [--calibration SRC [--calibration-topic T]]
         [--calibration-frames N] [--int8-scheme auto|trt|cpu-avx2|cpu-vnni]
         [--min-agreement 0.99]] [--engine model.engine]
"""

import argparse
import logging
from pathlib import Path
import sys
import tempfile
import warnings

from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.inference.backends import load_backend
from liteseg_ros.inference.model_files import write_onnx_metadata
from liteseg_ros.inference.onnx_graph import IMAGE_INPUT, LOGITS_OUTPUT, wrap_pre_post
from liteseg_ros.inference.weights import checkpoint_file
from liteseg_ros.model import load_checkpoint, load_model
import numpy as np
import onnx
import torch
from training.calibration_data import DEFAULT_FRAMES, load_calibration_frames
from training.quantize import DEFAULT_MIN_AGREEMENT, PRECISIONS, reduce_precision, SCHEMES

OPSET = 17


def export_onnx(checkpoint, onnx_path, height=None, width=None, batch=1, dynamic_batch=False,
                fuse=False, confidence=False, precision='fp32', frames=None, scheme='auto',
                engine=False, min_agreement=DEFAULT_MIN_AGREEMENT, calibration=None,
                log=print, gate=None):
    """
    Export ``checkpoint`` to ``onnx_path`` (written atomically); return the ONNX model.

    ``precision`` fp16 / int8 is made from the fp32 graph before fusing (``fuse``), gated for
    accuracy on ``frames`` (uint8 NHWC at the model size; int8 calibrates on them) and
    recorded in the io metadata; a model missing the gate raises PrecisionError and nothing
    is written. ``gate``: frames of their own for the gate (then int8 calibrates on all of
    ``frames``).
    """
    model = load_model(checkpoint)
    config = model.config
    height = height or config['input_size'][0]
    width = width or config['input_size'][1]
    dummy = torch.zeros(batch, 3, height, width)
    dynamic_axes = ({IMAGE_INPUT: {0: 'batch'}, LOGITS_OUTPUT: {0: 'batch'}}
                    if dynamic_batch else None)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # Pooling edges become constants on purpose: the input size is fixed per export.
        warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
        warnings.simplefilter('ignore', category=DeprecationWarning)
        raw = Path(tmp) / 'raw.onnx'
        torch.onnx.export(model, (dummy,), str(raw), input_names=[IMAGE_INPUT],
                          output_names=[LOGITS_OUTPUT], opset_version=OPSET,
                          dynamic_axes=dynamic_axes, dynamo=False)
        onnx_model = onnx.load(str(raw))
    io = {'input': IMAGE_INPUT, 'layout': 'nchw_float', 'output': 'logits',
          'confidence': False, 'height': height, 'width': width,
          'batch': 'dynamic' if dynamic_batch else batch, 'precision': 'fp32'}
    write_onnx_metadata(onnx_model, config, io)
    onnx_model.producer_name = 'liteseg_ros'
    # Quantize the logits graph, then fuse: the fused pre/post-processing stays float and
    # every backend fuses a plain int8/fp16 export as it fuses fp32 (docs/inference.md).
    onnx_model = reduce_precision(onnx_model, precision, frames, scheme, engine, min_agreement,
                                  calibration, log, gate)
    if fuse:  # wrap_pre_post updates the io metadata (layout, input, outputs)
        onnx_model = wrap_pre_post(onnx_model, config['mean'], config['std'], 'labels',
                                   confidence)
    write_bytes_atomic(onnx_path, onnx_model.SerializeToString())
    return onnx_model


def check_against_torch(checkpoint, onnx_path, seed=0, device='cpu'):
    """Return max |ONNX Runtime logits - PyTorch logits| on a random input (unfused models)."""
    model = load_model(checkpoint)
    backend = load_backend(onnx_path, 'onnxruntime', device)
    height, width = backend.input_size
    shape = (backend.batch_size or 1, 3, height, width)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    onnx_logits = backend.run_model_only(x)
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(x)).numpy()
    return float(np.abs(onnx_logits - torch_logits).max())


def parse_args(argv=None):
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(prog='python -m training.export',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='liteseg checkpoint (.pt), or a zoo name of '
                                           '`liteseg weights list`')
    parser.add_argument('--onnx', required=True, help='output ONNX file')
    parser.add_argument('--height', type=int, help='input height (default: checkpoint config)')
    parser.add_argument('--width', type=int, help='input width (default: checkpoint config)')
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument('--batch', type=int, default=1, help='fixed batch size (default 1)')
    batch.add_argument('--dynamic-batch', action='store_true', help='batch size chosen at run')
    parser.add_argument('--fuse', action='store_true',
                        help='uint8 NHWC input with in-graph normalisation; uint8 class ids out')
    parser.add_argument('--confidence', action='store_true',
                        help='with --fuse: also output the per-pixel softmax confidence')
    parser.add_argument('--no-check', action='store_true',
                        help='skip comparing ONNX Runtime with PyTorch after export')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='fp16 types or int8 Q/DQ nodes in the ONNX model (default fp32)')
    parser.add_argument('--calibration', metavar='SRC',
                        help='int8 calibration (and fp16 check) frames: an image folder, a '
                        'rosbag2 (with --calibration-topic) or a training config[:split]')
    parser.add_argument('--calibration-topic', help='image topic of a --calibration bag')
    parser.add_argument('--gate', metavar='SRC',
                        help='accuracy-gate frames of their own, as --calibration takes them '
                        '(e.g. a training config:val); then every --calibration frame '
                        'calibrates (default: every 4th calibration frame is held out)')
    parser.add_argument('--calibration-frames', type=int, default=DEFAULT_FRAMES,
                        help=f'frames read from SRC, spread over it (default {DEFAULT_FRAMES}; '
                        'every 4th is held out for the accuracy gate)')
    parser.add_argument('--int8-scheme', choices=SCHEMES, default='auto',
                        help='auto: trt with --engine, else cpu-avx2 on every CPU (U8S8, '
                        'the fastest int8 measured with and without VNNI)')
    parser.add_argument('--min-agreement', type=float, default=DEFAULT_MIN_AGREEMENT,
                        help='accuracy gate: argmax agreement with fp32 on held-out frames '
                        '(default 0.99)')
    parser.add_argument('--engine', help='also build a TensorRT engine here')
    args = parser.parse_args(argv)
    if args.confidence and not args.fuse:
        parser.error('--confidence needs --fuse (an unfused model outputs logits)')
    if args.precision == 'int8' and not args.calibration:
        parser.error('--precision int8 needs --calibration SRC (frames like the ones the '
                     'model will see)')
    if args.precision != 'int8' and args.int8_scheme != 'auto':
        parser.error('--int8-scheme needs --precision int8')
    if args.gate and args.precision == 'fp32':
        parser.error('--gate needs --precision fp16 or int8')
    if args.gate and args.calibration_topic:
        parser.error('--gate takes an image folder or a training config[:split], not a bag '
                     'topic')
    if not 0 < args.min_agreement <= 1:
        parser.error('--min-agreement is a fraction in (0, 1]')
    return args


def _calibration_frames(args):
    """Return (frames, summary, gate frames) at the export size; None where not asked."""
    if not args.calibration and not args.gate:
        return None, None, None
    config = load_checkpoint(args.checkpoint)['config']
    height = args.height or config['input_size'][0]
    width = args.width or config['input_size'][1]
    frames, summary = (load_calibration_frames(args.calibration, height, width,
                                               args.calibration_frames, args.calibration_topic)
                       if args.calibration else (None, None))
    gate = None
    if args.gate:
        gate, gate_summary = load_calibration_frames(args.gate, height, width,
                                                     args.calibration_frames)
        summary = dict(summary or {}, gate_source=gate_summary)
    return frames, summary, gate


def main(argv=None):
    """Command-line entry point."""
    args = parse_args(argv)
    try:
        args.checkpoint = checkpoint_file(args.checkpoint)  # a zoo name: its cached checkpoint
        frames, summary, gate = _calibration_frames(args)
        export_onnx(args.checkpoint, args.onnx, args.height, args.width, args.batch,
                    args.dynamic_batch, args.fuse, args.confidence, args.precision, frames,
                    args.int8_scheme, bool(args.engine), args.min_agreement, summary,
                    gate=gate)
    except (ValueError, OSError) as exc:  # PrecisionError, CalibrationError, bag errors
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'wrote {args.onnx} (opset {OPSET}, {args.precision})')
    if not args.no_check and not args.fuse and args.precision == 'fp32':
        print(f'max |ONNX Runtime - PyTorch| logit difference: '
              f'{check_against_torch(args.checkpoint, args.onnx):.2e}')
    if args.engine:
        from liteseg_ros.inference.tensorrt.build import build_engine

        logging.basicConfig(level=logging.INFO, format='[%(levelname)s] %(message)s')
        try:
            build_engine(args.onnx, args.engine)
        except (ImportError, ValueError, OSError, RuntimeError) as exc:
            # Missing TensorRT, a precision this TensorRT/GPU cannot build: one clear line.
            print(f'error: {args.engine}: {exc}', file=sys.stderr)
            return 1
        print(f'wrote {args.engine} ({args.precision})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
