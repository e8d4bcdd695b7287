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
Building engines: the ONNX graph TensorRT parses, and the strongly typed build.

What TensorRT is given is the exported ONNX model fused with its pre- and post-processing
(``wrap_pre_post``): the engine takes the resized frames as they are (uint8 NHWC RGB) and
returns uint8 class ids (optionally float32 confidence, or float32 logits for the bilinear
mode). What this relies on in TensorRT >= 10: UINT8 is allowed only as a network input or
output type, and UINT8 conversions (ICastLayer, ONNX Cast) only exist to and from FLOAT/HALF.
The input ``Cast(uint8 -> float)`` is such a conversion; the label ``Cast(int64 -> uint8)``
after the ArgMax is not, so ``tensorrt_onnx`` routes it through float (exact: ids < 256).

Precision is the ONNX model's (docs/inference.md, "Precision"): the network is created
STRONGLY_TYPED, so fp16 comes from the float16 types of an fp16 export and int8 from the Q/DQ
nodes of an int8 export (scheme trt: zero points 0). No builder precision flag and no
calibrator is used: TensorRT 11 removed them, and the same code builds on TensorRT 10.x
(Jetson) and 11.x. The engine and its sidecar are written atomically.
"""

import hashlib
import json
import logging
from pathlib import Path
import sys
import time
from typing import TYPE_CHECKING

from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.inference.model_files import (check_fused_outputs, engine_sidecar, load_onnx,
                                               ModelFileError, onnx_io, onnx_metadata,
                                               write_onnx_metadata)
from liteseg_ros.inference.onnx_graph import wrap_pre_post
from liteseg_ros.inference.tensorrt import cuda_memory
from liteseg_ros.inference.tensorrt.runtime import import_tensorrt, trt_logger
from liteseg_ros.inference.tensorrt.sidecar import (ENGINE_FORMAT, engine_shapes, file_sha256,
                                                    platform_info, PRECISIONS, variant_name)

if TYPE_CHECKING:  # the published API (tensorrt-stubs) for the type check, pyrightconfig.json
    import tensorrt

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


def onnx_precision(io, onnx_path, wanted=None):
    """
    Return (precision, int8 scheme) of an exported model's ``io``; check ``wanted`` against it.

    TensorRT builds what the ONNX model holds; an int8 model must have TensorRT's symmetric
    Q/DQ (scheme trt). Anything else raises ModelFileError saying which export to make.
    """
    precision = io.get('precision', 'fp32')
    scheme = io.get('int8_scheme')
    target = wanted or precision
    export = (f'python -m training.export CHECKPOINT.pt --onnx {onnx_path} --precision '
              f'{target}' + (' --calibration SRC --int8-scheme trt' if target == 'int8' else ''))
    if wanted is not None and wanted not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {wanted!r}')
    if wanted is not None and wanted != precision:
        raise ModelFileError(f'{onnx_path} is a {precision} ONNX model and TensorRT builds the '
                             f'precision of the ONNX model (strongly typed); for {wanted} export '
                             f'one: {export}')
    if precision == 'int8' and scheme != 'trt':
        raise ModelFileError(f'{onnx_path}: int8 scheme {scheme!r} has zero points TensorRT '
                             f'does not take (it needs symmetric Q/DQ); export: {export}')
    return precision, scheme


# Oldest compute capability with fast kernels for each precision (CUDA programming guide:
# half arithmetic from 5.3, dp4a int8 from 6.1).
MIN_CAPABILITY = {'fp32': (0, 0), 'fp16': (5, 3), 'int8': (6, 1)}


def check_can_build(trt, precision, running):
    """Raise RuntimeError when this TensorRT or GPU cannot build a ``precision`` engine."""
    flags = getattr(trt, 'NetworkDefinitionCreationFlag', None)
    if flags is None or not hasattr(flags, 'STRONGLY_TYPED'):
        raise RuntimeError(f"TensorRT {running['tensorrt_version']} has no strongly typed "
                           'networks; liteseg_ros builds with TensorRT >= 10')
    major, minor = (int(v) for v in str(running['compute_capability']).split('.')[:2])
    if (major, minor) < MIN_CAPABILITY[precision]:
        low = '.'.join(map(str, MIN_CAPABILITY[precision]))
        raise RuntimeError(f"{running['gpu_name']} (compute capability {major}.{minor}) cannot "
                           f'run {precision} engines (needs {low} or newer); export an fp32 '
                           'model for it (--precision fp32)')


def _make_progress_monitor(progress):
    """Return an IProgressMonitor logging the build phases (tqdm bars if ``progress``)."""
    trt = import_tensorrt()

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


def _timing_cache(builder_config: 'tensorrt.IBuilderConfig', path):
    """Return the timing cache set on ``builder_config``, loaded from ``path`` if usable."""
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


def build_engine(onnx_path, engine_path, precision=None, workspace_gb=4, timing_cache=None,
                 batch=None, output=None, confidence=None, device=0, progress=None):
    """
    Build a strongly typed TensorRT engine from ``onnx_path``; write it and its sidecar.

    The engine has the ONNX model's precision (fp32, fp16 types or int8 Q/DQ); ``precision``,
    when given, must be it. ``timing_cache``: a file loaded when present and saved after the
    build. ``batch``: see ``engine_shapes``. ``output`` / ``confidence``: the engine outputs
    (default: labels; a fused export keeps its own). ``progress``: tqdm bars for the build
    phases (default: when stderr is a terminal). Returns the engine path.
    """
    engine_path = Path(engine_path)
    trt = import_tensorrt(engine_path)
    model, config, io = tensorrt_onnx(onnx_path, output, confidence)
    precision, scheme = onnx_precision(io, onnx_path, precision)
    shapes = engine_shapes(io, batch)
    onnx_sha256 = file_sha256(onnx_path)
    cuda = cuda_memory.CudaMemory(device)
    running = platform_info(cuda=cuda)
    check_can_build(trt, precision, running)
    if progress is None:
        progress = hasattr(sys.stderr, 'isatty') and sys.stderr.isatty()
    LOG.info('building a %s TensorRT %s engine for %s on %s (%s): this takes minutes',
             precision, running['tensorrt_version'], onnx_path, running['gpu_name'],
             variant_name(io['output'], io['confidence']))
    started = time.monotonic()
    data, cache = _serialize(cuda, model, (onnx_path, engine_path), precision, shapes,
                             workspace_gb, timing_cache, progress, running)
    write_bytes_atomic(engine_path, data)
    if timing_cache and cache is not None:
        write_bytes_atomic(timing_cache, bytes(cache.serialize()))
    info = {
        'format': ENGINE_FORMAT, 'config': config, 'io': io,
        'tensorrt_version': running['tensorrt_version'], 'gpu_name': running['gpu_name'],
        'compute_capability': running['compute_capability'], 'precision': precision,
        'int8_scheme': scheme, 'onnx_sha256': onnx_sha256, 'onnx_file': str(onnx_path),
        'input_shape': [-1 if io['batch'] == 'dynamic' else shapes['min'][0]]
        + shapes['min'][1:],
        'profile': shapes, 'engine_sha256': hashlib.sha256(data).hexdigest(),
    }
    write_bytes_atomic(engine_sidecar(engine_path), json.dumps(info, indent=2).encode())
    LOG.info('wrote %s (%.1f MB, %s) in %.0f s', engine_path, len(data) / 1e6, precision,
             time.monotonic() - started)
    return engine_path


def _serialize(cuda, model, paths, precision, shapes, workspace_gb, timing_cache, progress,
               running):
    """
    Parse and build ``model`` on ``cuda``'s device; return (engine bytes, timing cache).

    ``paths``: (ONNX file, engine file), for messages; ``running``: ``platform_info``.
    """
    onnx_path, engine_path = paths
    trt = import_tensorrt()
    logger = trt_logger()
    with cuda.activate():
        builder = trt.Builder(logger)
        # The parser owns the network's weights: keep it alive until the build is done.
        network, parser = _parse(builder, logger, model, onnx_path)
        builder_config = _builder_config(builder, shapes, workspace_gb)
        cache = _timing_cache(builder_config, timing_cache)
        builder_config.progress_monitor = _make_progress_monitor(progress)
        logger.take_errors()
        serialized = builder.build_serialized_network(network, builder_config)
        if serialized is None:
            raise RuntimeError(
                f'TensorRT {trt.__version__} failed to build {engine_path} from {onnx_path} '
                f"({precision} on {running['gpu_name']}, compute capability "
                f"{running['compute_capability']}): {logger.take_errors()}")
        data = bytes(serialized)
        del parser
    return data, cache


def _parse(builder: 'tensorrt.Builder', logger: 'tensorrt.ILogger', model, onnx_path):
    """Return (network, parser) for ``model``, strongly typed; parse errors: ModelFileError."""
    trt = import_tensorrt()
    # Strongly typed: layer types follow the ONNX tensors (float16, Q/DQ); the only mode in
    # TensorRT 11, available since 9.x (docs/inference.md, "Precision").
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(f'{onnx_path}: TensorRT {trt.__version__} cannot parse this '
                             f'model: {errors}')
    return network, parser


def _builder_config(builder: 'tensorrt.Builder', shapes, workspace_gb):
    """Return the builder config: workspace and the input's shape profile (no precision flags)."""
    trt = import_tensorrt()
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                         int(workspace_gb * (1 << 30)))
    # TensorRT refuses a dynamic input without a profile, even one of min == max (a dynamic
    # export built for batch 1), and takes one equal to a fixed input's shape: always add it.
    profile = builder.create_optimization_profile()
    profile.set_shape(shapes['input'], shapes['min'], shapes['opt'], shapes['max'])
    if builder_config.add_optimization_profile(profile) < 0:
        raise RuntimeError(f'TensorRT {trt.__version__} refused the optimisation profile '
                           f'{shapes}: min <= opt <= max must hold in every dimension')
    return builder_config
