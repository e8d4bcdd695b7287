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
Building engines: the ONNX graph TensorRT parses, and the build (fp32 / fp16 / int8).

What TensorRT is given is the exported ONNX model fused with its pre- and post-processing
(``wrap_pre_post``): the engine takes the resized frames as they are (uint8 NHWC RGB) and
returns uint8 class ids (optionally float32 confidence, or float32 logits for the bilinear
mode). What this relies on in TensorRT >= 10: UINT8 is allowed only as a network input or
output type, and UINT8 conversions (ICastLayer, ONNX Cast) only exist to and from FLOAT/HALF.
The input ``Cast(uint8 -> float)`` is such a conversion; the label ``Cast(int64 -> uint8)``
after the ArgMax is not, so ``tensorrt_onnx`` routes it through float (exact: ids < 256).

The engine and its sidecar are written atomically; FP16 stays enabled for layers without
INT8.
"""

import hashlib
import json
import logging
from pathlib import Path
import sys
import time

from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.inference.model_files import (check_fused_outputs, engine_sidecar, load_onnx,
                                               ModelFileError, onnx_io, onnx_metadata,
                                               write_onnx_metadata)
from liteseg_ros.inference.onnx_graph import wrap_pre_post
from liteseg_ros.inference.tensorrt import cuda_memory
from liteseg_ros.inference.tensorrt.calibration import (calibration_digest, calibration_files,
                                                        calibration_tag,
                                                        DEFAULT_CALIBRATION_IMAGES,
                                                        make_calibrator)
from liteseg_ros.inference.tensorrt.runtime import import_tensorrt, trt_logger
from liteseg_ros.inference.tensorrt.sidecar import (ENGINE_FORMAT, engine_shapes, file_sha256,
                                                    platform_info, PRECISIONS, variant_name)

LOG = logging.getLogger(__name__)


def _cast_uint8_through_float(model):
    """Give every Cast-to-uint8 a float input (TensorRT converts uint8 only from float/half)."""
    from onnx import helper, TensorProto

    nodes = []
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == 'to'), None)
        if node.op_type == 'Cast' and to == TensorProto.UINT8:
            as_float = f'{node.input[0]}_as_float'
            nodes.append(helper.make_node('Cast', [node.input[0]], [as_float],
                                          to=TensorProto.FLOAT, name=f'{as_float}_cast'))
            node.input[0] = as_float
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def tensorrt_onnx(onnx_path, output=None, confidence=None):
    """
    Return (model, config, io): the ONNX model exactly as TensorRT will parse it.

    A plain logits export is fused with ``wrap_pre_post`` (``output`` default 'labels',
    ``confidence`` default False); a fused export is used as exported and must already
    provide what is asked. ``io`` gets 'height', 'width' and 'batch' (int or 'dynamic').
    """
    import onnx

    model = load_onnx(onnx_path)
    config, io = onnx_metadata(model, onnx_path)
    if io.get('layout') == 'nhwc_uint8':
        check_fused_outputs(onnx_path, io, output or io.get('output', 'labels'),
                            bool(confidence), backend='tensorrt')
    else:
        model = wrap_pre_post(model, config['mean'], config['std'], output or 'labels',
                              bool(confidence))
        io = onnx_io(model)
    (graph_input,) = model.graph.input
    dims = [d.dim_value if d.dim_value else (d.dim_param or 'dynamic')
            for d in graph_input.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[3] != 3:
        raise ModelFileError(f'{onnx_path}: expected an NHWC input with 3 channels, got {dims}')
    io.update(input=graph_input.name, height=int(dims[1]), width=int(dims[2]),
              batch=dims[0] if isinstance(dims[0], int) else 'dynamic')
    model = _cast_uint8_through_float(model)
    write_onnx_metadata(model, io=io)
    onnx.checker.check_model(model)
    return model, config, io


def _make_progress_monitor(trt, progress):
    """Return an IProgressMonitor logging the build phases (tqdm bars if ``progress``)."""
    if not hasattr(trt, 'IProgressMonitor'):
        return None

    class Monitor(trt.IProgressMonitor):
        """Logs each top-level build phase and its duration."""

        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.phases = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                if parent_phase is None:
                    LOG.info('TensorRT build: %s (%d steps)', phase_name, num_steps)
                    bar = None
                    if progress and num_steps > 1:
                        from tqdm import tqdm
                        bar = tqdm(total=num_steps, desc=phase_name, unit='step', leave=False)
                    self.phases[phase_name] = (time.monotonic(), bar)
            except Exception:  # noqa: B902 - never raise into TensorRT
                LOG.debug('progress monitor', exc_info=True)

        def step_complete(self, phase_name, step):
            entry = self.phases.get(phase_name)
            if entry is not None and entry[1] is not None:
                entry[1].n = step + 1
                entry[1].refresh()
            return True

        def phase_finish(self, phase_name):
            entry = self.phases.pop(phase_name, None)
            if entry is not None:
                if entry[1] is not None:
                    entry[1].close()
                LOG.info('TensorRT build: %s done in %.1f s', phase_name,
                         time.monotonic() - entry[0])

    return Monitor()


def _timing_cache(trt, builder_config, path):
    data = b''
    if path and Path(path).is_file():
        data = Path(path).read_bytes()
    cache = None
    try:
        cache = builder_config.create_timing_cache(data)
    except Exception:  # noqa: B902 - TensorRT raises its own types for a bad cache
        cache = None
    if cache is None or not builder_config.set_timing_cache(cache, False):
        if data:
            LOG.warning('%s: timing cache unreadable or from another TensorRT/GPU; starting a '
                        'new one (only build time changes)', path)
        cache = builder_config.create_timing_cache(b'')
        builder_config.set_timing_cache(cache, False)
    return cache


def build_engine(onnx_path, engine_path, precision='fp16', calibration_images=None,
                 workspace_gb=4, timing_cache=None, batch=None, output=None, confidence=None,
                 device=0, max_calibration_images=DEFAULT_CALIBRATION_IMAGES, progress=None):
    """
    Build a TensorRT engine from ``onnx_path``; write it and its sidecar atomically.

    ``precision``: 'fp32', 'fp16' or 'int8' (needs ``calibration_images``, a folder; the
    calibration table is kept in ``<engine>.calib``). ``timing_cache``: a file loaded when
    present and saved after the build. ``batch``: see ``engine_shapes``. ``output`` /
    ``confidence``: the engine outputs (default: labels; a fused export keeps its own).
    ``progress``: tqdm bars for the build phases (default: when stderr is a terminal).
    Returns the engine path.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if precision == 'int8' and not calibration_images:
        raise ValueError('int8 needs calibration images: --calibration-images DIR, a folder of '
                         'a few hundred frames like the ones the model will see')
    engine_path = Path(engine_path)
    trt = import_tensorrt(engine_path)
    model, config, io = tensorrt_onnx(onnx_path, output, confidence)
    shapes = engine_shapes(io, batch)
    files = calibration_files(calibration_images, max_calibration_images) if (
        precision == 'int8') else None
    onnx_sha256 = file_sha256(onnx_path)
    cuda = cuda_memory.CudaMemory(device)
    running = platform_info(cuda=cuda)
    if progress is None:
        progress = hasattr(sys.stderr, 'isatty') and sys.stderr.isatty()
    LOG.info('building a %s TensorRT %s engine for %s on %s (%s): this takes minutes',
             precision, running['tensorrt_version'], onnx_path, running['gpu_name'],
             variant_name(io['output'], io['confidence']))
    started = time.monotonic()
    calibration = None
    if files:
        tag = calibration_tag(onnx_sha256, calibration_digest(files, Path(calibration_images)),
                              shapes['opt'])
        calibration = (files, Path(str(engine_path) + '.calib'), tag)
    data, cache = _serialize(trt, cuda, model, (onnx_path, engine_path), precision, shapes,
                             workspace_gb, timing_cache, calibration, progress,
                             running['gpu_name'])
    write_bytes_atomic(engine_path, data)
    if timing_cache:
        write_bytes_atomic(timing_cache, bytes(cache.serialize()))
    info = {
        'format': ENGINE_FORMAT, 'config': config, 'io': io,
        'tensorrt_version': running['tensorrt_version'], 'gpu_name': running['gpu_name'],
        'compute_capability': running['compute_capability'], 'precision': precision,
        'onnx_sha256': onnx_sha256, 'onnx_file': str(onnx_path),
        'input_shape': [-1 if shapes['min'] != shapes['max'] else shapes['min'][0]]
        + shapes['min'][1:],
        'profile': shapes, 'engine_sha256': hashlib.sha256(data).hexdigest(),
        'calibration_images': str(calibration_images) if files else None,
    }
    write_bytes_atomic(engine_sidecar(engine_path), json.dumps(info, indent=2).encode())
    LOG.info('wrote %s (%.1f MB, %s) in %.0f s', engine_path, len(data) / 1e6, precision,
             time.monotonic() - started)
    return engine_path


def _serialize(trt, cuda, model, paths, precision, shapes, workspace_gb, timing_cache,
               calibration, progress, gpu_name):
    """
    Parse and build ``model`` on ``cuda``'s device; return (engine bytes, timing cache).

    ``paths``: (ONNX file, engine file), for messages. ``calibration``: None, or (image files,
    calibration table file, tag) for int8.
    """
    onnx_path, engine_path = paths
    logger = trt_logger(trt)
    with cuda.activate():
        builder = trt.Builder(logger)
        # The parser owns the network's weights: keep it alive until the build is done.
        network, parser = _parse(trt, builder, logger, model, onnx_path)
        builder_config = _builder_config(trt, builder, precision, shapes, workspace_gb,
                                         gpu_name)
        calibrator = None
        if precision == 'int8':
            calibrator = _add_calibrator(trt, cuda, builder, builder_config, shapes,
                                         calibration)
        cache = _timing_cache(trt, builder_config, timing_cache)
        monitor = _make_progress_monitor(trt, progress)
        if monitor is not None:
            builder_config.progress_monitor = monitor
        logger.take_errors()
        serialized = builder.build_serialized_network(network, builder_config)
        if serialized is None:
            raise RuntimeError(f'TensorRT {trt.__version__} failed to build {engine_path} from '
                               f'{onnx_path} ({precision}): {logger.take_errors()}')
        data = bytes(serialized)
        del calibrator
    return data, cache


def _parse(trt, builder, logger, model, onnx_path):
    """Return (network, parser) for ``model``; parse errors raise ModelFileError."""
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(f'{onnx_path}: TensorRT {trt.__version__} cannot parse this '
                             f'model: {errors}')
    return network, parser


def _builder_config(trt, builder, precision, shapes, workspace_gb, gpu_name):
    """Return the builder config: workspace, FP16 for fp16 and int8, the shape profile."""
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                         int(workspace_gb * (1 << 30)))
    if precision in ('fp16', 'int8'):
        if not getattr(builder, 'platform_has_fast_fp16', True):
            LOG.warning('%s has no fast FP16; the engine may be slow', gpu_name)
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if shapes['min'] != shapes['max']:
        profile = builder.create_optimization_profile()
        profile.set_shape(shapes['input'], shapes['min'], shapes['opt'], shapes['max'])
        builder_config.add_optimization_profile(profile)
    return builder_config


def _add_calibrator(trt, cuda, builder, builder_config, shapes, calibration):
    """Enable INT8 with an entropy calibrator on the optimum shape; return the calibrator."""
    files, cache_path, tag = calibration
    builder_config.set_flag(trt.BuilderFlag.INT8)
    shape = shapes['opt']
    if shapes['min'] != shapes['max']:
        calibration_profile = builder.create_optimization_profile()
        calibration_profile.set_shape(shapes['input'], shape, shape, shape)
        builder_config.set_calibration_profile(calibration_profile)
    calibrator = make_calibrator(trt, cuda, files, shape, cache_path, tag)
    builder_config.int8_calibrator = calibrator
    return calibrator
