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
The engine cache: engines built on first run, named by what they were built from.

``cached_engine`` names engines by ``cache_key`` (ONNX content, TensorRT version, GPU,
compute capability, precision and int8 scheme, shapes, outputs), so a new TensorRT or GPU
builds a new engine; a file lock keeps two nodes from building the same one.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

from liteseg_ros.atomic_file import file_lock
from liteseg_ros.inference.model_files import ModelFileError
from liteseg_ros.inference.tensorrt.build import build_engine, onnx_precision, tensorrt_onnx
from liteseg_ros.inference.tensorrt.sidecar import (engine_shapes, file_sha256, platform_info,
                                                    PRECISIONS, read_sidecar, RECIPE_VERSION,
                                                    variant_name)

LOG = logging.getLogger(__name__)


def cache_key(onnx_sha256, precision, shapes, tensorrt_version, gpu_name, compute_capability,
              variant='labels', scheme=None):
    """
    Return the hex sha256 naming an engine built from these inputs on this platform.

    ``shapes`` is any JSON-able description of the input shapes (``engine_shapes``);
    ``scheme`` is the int8 scheme of the ONNX model (None for fp32 / fp16).
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    payload = {'recipe': RECIPE_VERSION, 'onnx_sha256': str(onnx_sha256),
               'tensorrt_version': str(tensorrt_version), 'gpu_name': str(gpu_name),
               'compute_capability': str(compute_capability), 'precision': precision,
               'shapes': shapes, 'variant': variant, 'int8_scheme': scheme}
    text = json.dumps(payload, sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(text.encode()).hexdigest()


def engine_cache_key(onnx_path, precision, shapes, tensorrt_version=None, gpu_name=None,
                     compute_capability=None, variant='labels', scheme=None, device=0):
    """
    Return ``cache_key`` for the ONNX file at ``onnx_path``.

    Platform fields left None are read from the running TensorRT and GPU ``device``.
    """
    if None in (tensorrt_version, gpu_name, compute_capability):
        running = platform_info(device)
        tensorrt_version = tensorrt_version or running['tensorrt_version']
        gpu_name = gpu_name or running['gpu_name']
        compute_capability = compute_capability or running['compute_capability']
    return cache_key(file_sha256(onnx_path), precision, shapes, tensorrt_version, gpu_name,
                     compute_capability, variant, scheme)


def default_cache_dir():
    """
    Return where engines built on first run are kept.

    ``$LITESEG_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/liteseg_ros/engines`` (~/.cache/...).
    """
    if os.environ.get('LITESEG_ENGINE_CACHE'):
        return Path(os.environ['LITESEG_ENGINE_CACHE'])
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'liteseg_ros' / 'engines'


def cached_engine(onnx_path, cache_dir=None, precision=None, batch=None, output='labels',
                  confidence=False, device=0, workspace_gb=4, running=None):
    """
    Return the engine for ``onnx_path`` in ``cache_dir``, building it on first use.

    The file name carries ``cache_key``: the ONNX content, TensorRT version, GPU, compute
    capability, precision and int8 scheme (the ONNX model's; ``precision``, when given, must
    be it), shapes and outputs. ``cache_dir`` defaults to ``default_cache_dir()``; a shared
    timing cache there speeds up later builds.
    """
    onnx_path = Path(onnx_path)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    _, _, io = tensorrt_onnx(onnx_path, output, confidence)  # refuses impossible outputs
    precision, scheme = onnx_precision(io, onnx_path, precision)
    variant = variant_name(io['output'], bool(io['confidence']))
    shapes = engine_shapes(io, batch)
    running = running or platform_info(device)
    key = cache_key(file_sha256(onnx_path), precision, shapes, running['tensorrt_version'],
                    running['gpu_name'], running['compute_capability'], variant, scheme)
    engine = cache_dir / f'{onnx_path.stem}-{precision}-{variant}-{key[:16]}.engine'
    with file_lock(cache_dir / f'.{engine.name}.lock'):
        if engine.is_file():
            try:
                read_sidecar(engine)
                LOG.info('using cached TensorRT engine %s', engine)
                return engine
            except ModelFileError as exc:
                LOG.warning('rebuilding cached engine: %s', exc)
        LOG.warning('no cached TensorRT engine for %s on %s with TensorRT %s: building %s '
                    '(first run only; this takes minutes)', onnx_path, running['gpu_name'],
                    running['tensorrt_version'], engine)
        capability = running['compute_capability'].replace('.', '')
        timing = cache_dir / f"timing-trt{running['tensorrt_version']}-sm{capability}.cache"
        build_engine(onnx_path, engine, precision, workspace_gb, timing, batch, output,
                     confidence, device)
    return engine
