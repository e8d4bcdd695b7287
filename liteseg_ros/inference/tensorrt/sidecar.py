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
Engine descriptions: the sidecar, shapes, output variants, and whether an engine fits here.

An engine only runs with the TensorRT version and the GPU (compute capability) it was built
for. ``build_engine`` writes ``<engine>.json`` beside it ({'config', 'io', 'tensorrt_version',
'gpu_name', 'compute_capability', 'precision', 'onnx_sha256', 'input_shape', ...}); loading
compares that with the running platform (``check_platform``) before deserialising. Here: the
sidecar's fields and reader, the engine shapes and output variants, the platform checks and
the messages telling the user how to rebuild. All but ``platform_info`` are pure functions
of their arguments and run without TensorRT or a GPU.
"""

import hashlib
import json
from pathlib import Path

from liteseg_ros.inference.model_files import engine_sidecar, ModelFileError
from liteseg_ros.inference.tensorrt import cuda_memory
from liteseg_ros.inference.tensorrt.runtime import import_tensorrt

PRECISIONS = ('fp32', 'fp16', 'int8')
ENGINE_FORMAT = 'liteseg-engine/1'
# Bump when the graph handed to TensorRT (build.tensorrt_onnx) or the build changes, so
# cached engines are made again (2: strongly typed networks).
RECIPE_VERSION = 2
DEFAULT_MAX_BATCH = 4
PLATFORM_FIELDS = (('tensorrt_version', 'TensorRT version'), ('gpu_name', 'GPU'),
                   ('compute_capability', 'compute capability'))
SIDECAR_KEYS = ('config', 'io', 'tensorrt_version', 'gpu_name', 'compute_capability',
                'precision', 'onnx_sha256', 'input_shape')
CONFIG_KEYS = ('variant', 'num_classes', 'class_names', 'palette', 'mean', 'std', 'input_size')


def file_sha256(path):
    """Return the hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def variant_name(output='labels', confidence=False):
    """Return the engine variant label: 'labels', 'labels+confidence', 'logits', ..."""
    if output not in ('labels', 'logits'):
        raise ValueError(f"output must be 'labels' or 'logits', got {output!r}")
    return output + ('+confidence' if confidence else '')


def engine_shapes(io, batch=None):
    """
    Return the engine input profile {'input', 'min', 'opt', 'max'} (NHWC shapes).

    A fixed-batch export gives a fixed shape (``batch`` must be None or equal to it); a
    dynamic-batch export gives 1..``batch`` (default 1..DEFAULT_MAX_BATCH, tuned for 1).
    """
    height, width = int(io['height']), int(io['width'])
    exported = io.get('batch', 1)
    name = io.get('input')
    if exported == 'dynamic':
        top = int(batch or DEFAULT_MAX_BATCH)
        opt = int(batch or 1)
        if top < 1:
            raise ValueError(f'batch must be >= 1, got {batch}')
        return {'input': name, 'min': [1, height, width, 3], 'opt': [opt, height, width, 3],
                'max': [top, height, width, 3]}
    exported = int(exported)
    if batch is not None and int(batch) != exported:
        raise ValueError(f'the ONNX model was exported with a fixed batch of {exported}; for '
                         f'batch {batch} export again with --batch {batch} or --dynamic-batch')
    shape = [exported, height, width, 3]
    return {'input': name, 'min': shape, 'opt': list(shape), 'max': list(shape)}


def rebuild_command(engine_path, info=None):
    """Return the command that rebuilds ``engine_path`` (from its sidecar ``info`` if known)."""
    info = info or {}
    onnx = info.get('onnx_file') or str(Path(engine_path).with_suffix('.onnx'))
    precision = info.get('precision', 'fp32')
    extra = ' --calibration SRC --int8-scheme trt' if precision == 'int8' else ''
    return (f'python -m training.export CHECKPOINT.pt --onnx {onnx} --engine {engine_path} '
            f'--precision {precision}{extra}')


def rebuild_advice(engine_path, info=None):
    """Return the sentence telling the user how to get a usable engine back."""
    sidecar = engine_sidecar(engine_path)
    return (f'rebuild it on this machine: {rebuild_command(engine_path, info)} ; or, for an '
            f'engine from the cache, delete {engine_path} and {sidecar} and it is rebuilt from '
            'the ONNX model on the next start (this takes minutes)')


def read_sidecar(engine_path):
    """Return the validated sidecar dict of ``engine_path``; problems raise ModelFileError."""
    sidecar = engine_sidecar(engine_path)
    hint = f'rebuild the engine: {rebuild_command(engine_path)}'
    try:
        info = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise ModelFileError(f'{engine_path}: its description {sidecar} is missing (an engine '
                             f'needs it for its classes and build platform); {hint}') from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f'{engine_path}: its description {sidecar} is unreadable or not '
                             f'JSON ({exc}); {hint}') from exc
    if not isinstance(info, dict):
        raise ModelFileError(f'{engine_path}: its description {sidecar} is not a JSON object; '
                             f'{hint}')
    missing = [key for key in SIDECAR_KEYS if key not in info]
    if missing:
        raise ModelFileError(f'{engine_path}: its description {sidecar} lacks {missing}; {hint}')
    config, io = info['config'], info['io']
    config_missing = ([key for key in CONFIG_KEYS if key not in config]
                      if isinstance(config, dict) else list(CONFIG_KEYS))
    if config_missing:
        raise ModelFileError(f'{engine_path}: the config in {sidecar} lacks {config_missing}; '
                             f'{hint}')
    io_missing = ([key for key in ('input', 'output', 'height', 'width') if key not in io]
                  if isinstance(io, dict) else ['input', 'output', 'height', 'width'])
    if io_missing:
        raise ModelFileError(f"{engine_path}: the 'io' entry in {sidecar} is incomplete "
                             f'({io!r}); {hint}')
    if info['precision'] not in PRECISIONS:
        raise ModelFileError(f"{engine_path}: {sidecar} names precision {info['precision']!r}, "
                             f'expected one of {PRECISIONS}; {hint}')
    return info


def platform_differences(info, running):
    """Return [(label, built_for, running)] for each platform field that differs."""
    return [(label, str(info.get(key)), str(running.get(key)))
            for key, label in PLATFORM_FIELDS if str(info.get(key)) != str(running.get(key))]


def check_platform(engine_path, info, running):
    """
    Raise ModelFileError unless the engine was built for the ``running`` platform.

    ``info`` is the sidecar, ``running`` the dict of ``platform_info``.
    """
    differences = platform_differences(info, running)
    if differences:
        listed = '; '.join(f'{label}: engine built with {built!r}, this machine has {now!r}'
                           for label, built, now in differences)
        raise ModelFileError(f'{engine_path} does not fit this machine ({listed}). A TensorRT '
                             'engine only runs with the TensorRT version and GPU it was built '
                             f'for; {rebuild_advice(engine_path, info)}')


def check_engine_bytes(engine_path, data, info):
    """Raise ModelFileError when the engine bytes disagree with the sidecar's sha256."""
    expected = info.get('engine_sha256')
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise ModelFileError(f'{engine_path}: the file does not match its description '
                             f'{engine_sidecar(engine_path)} ({len(data)} bytes, sha256 '
                             'differs): it is corrupt, truncated, or was replaced without its '
                             f'.json; {rebuild_advice(engine_path, info)}')


def platform_info(device=0, cuda=None):
    """Return {'tensorrt_version', 'gpu_name', 'compute_capability'} of this machine."""
    trt = import_tensorrt()
    name, capability = (cuda or cuda_memory.CudaMemory(device)).properties()
    return {'tensorrt_version': trt.__version__, 'gpu_name': name,
            'compute_capability': capability}
