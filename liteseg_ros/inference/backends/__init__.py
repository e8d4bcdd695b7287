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
Backends behind one protocol, and the one factory that loads them.

:func:`load_backend` decides the model file's kind once, picks the backend ('auto': by file
kind) and translates the user's ``device`` and ``threads`` into each backend's own terms:
torch devices, ONNX Runtime execution providers, a TensorRT device index, an OpenVINO device
('gpu', 'gpu:N' and 'npu' name Intel devices, which only OpenVINO drives). Every front door
(the node, ``liteseg bench``, ``liteseg bag-eval``, the demos, export checks) passes the
user's words here unchanged, so they all accept and refuse the same things.
"""

import re

from liteseg_ros.inference.backends.base import Backend
from liteseg_ros.inference.model_files import model_format

BACKENDS = ('auto', 'onnxruntime', 'torch', 'tensorrt', 'openvino')
DEVICES = ('auto', 'cpu', 'cuda', 'cuda:N', 'gpu', 'gpu:N', 'npu')
#: The backend 'auto' picks for each model file kind.
DEFAULT_BACKEND = {'checkpoint': 'torch', 'onnx': 'onnxruntime', 'engine': 'tensorrt'}
#: The model file kinds each backend runs.
BACKEND_FILES = {'torch': ('checkpoint',), 'onnxruntime': ('onnx',),
                 'tensorrt': ('engine', 'onnx'), 'openvino': ('onnx',)}
_DEVICE = re.compile(r'auto|cpu|cuda(:\d+)?|gpu(:\d+)?|npu')
_CUDA_DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


class DeviceUnavailable(ValueError):
    """The device asked for is not usable here; the message names what is missing."""


class BackendUnavailable(ValueError):
    """The backend's framework is not installed; the message names how to install it."""


def import_openvino():
    """Return the openvino module, or raise BackendUnavailable naming how to install it."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailable('the openvino backend needs OpenVINO, which is not installed: '
                                 'pip install -r requirements-openvino.txt') from None
    return openvino


def check_device(device):
    """Return ``device`` if it is one of ``DEVICES`` (N a number); raise ValueError if not."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError("device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'gpu', 'gpu:N' or "
                         f"'npu', got {device!r}")
    return device


def _refuse_intel_device(device, backend):
    """Refuse the OpenVINO-only devices ('gpu', 'gpu:N', 'npu') for a CUDA-side backend."""
    if device == 'npu' or device.startswith('gpu'):
        raise ValueError(f'device {device!r} is an Intel GPU/NPU, which only the openvino '
                         f'backend drives; the {backend} backend runs on {_CUDA_DEVICES}')


def resolve_backend(path, backend='auto'):
    """Return the backend that runs ``path``; raise ValueError if ``backend`` cannot."""
    kind = model_format(path)
    if backend == 'auto':
        return DEFAULT_BACKEND[kind]
    if backend not in BACKEND_FILES:
        raise ValueError(f'unknown backend {backend!r}: expected one of {BACKENDS}')
    if kind not in BACKEND_FILES[backend]:
        raise ValueError(f'{path}: the {backend} backend cannot run a {kind} file; it runs '
                         f'{" or ".join(BACKEND_FILES[backend])} files')
    return backend


def torch_device(device):
    """Return the torch device for ``device`` ('auto': cuda when torch sees one, else cpu)."""
    import torch

    check_device(device)
    _refuse_intel_device(device, 'torch')
    if device == 'cpu':
        return device
    available = torch.cuda.is_available()
    if device == 'auto':
        return 'cuda' if available else 'cpu'
    count = torch.cuda.device_count() if available else 0
    index = int(device[5:]) if ':' in device else 0
    if index >= count:
        seen = f'{count} CUDA device(s)' if count else 'no CUDA device'
        raise DeviceUnavailable(
            f'device {device!r} needs a CUDA GPU that torch can use, but this torch '
            f'({torch.__version__}) sees {seen} (install a CUDA build of torch, or use '
            'device cpu)')
    return device


def onnxruntime_providers(device):
    """Return the ONNX Runtime execution providers for ``device`` (None: the backend's default)."""
    check_device(device)
    _refuse_intel_device(device, 'onnxruntime')
    if device == 'auto':
        return None  # GPU providers when this onnxruntime has them, then CPU
    if device == 'cpu':
        return ['CPUExecutionProvider']
    if device not in ('cuda', 'cuda:0'):
        raise ValueError(f"the onnxruntime backend runs on 'auto', 'cpu', 'cuda' or 'cuda:0', "
                         f'got device {device!r}')
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if 'CUDAExecutionProvider' not in available:
        raise DeviceUnavailable(
            f"device {device!r} needs onnxruntime's CUDAExecutionProvider, but this onnxruntime "
            f'has {available} (install onnxruntime-gpu, or use device cpu)')
    return ['CUDAExecutionProvider', 'CPUExecutionProvider']


def tensorrt_device(device):
    """Return the CUDA device index TensorRT runs on for ``device``; 'cpu' is refused."""
    check_device(device)
    _refuse_intel_device(device, 'tensorrt')
    if device == 'cpu':
        raise DeviceUnavailable("the tensorrt backend needs a GPU, not device 'cpu'; use "
                                "'auto', 'cuda' or 'cuda:N' (or the onnxruntime backend on "
                                'the CPU)')
    return int(device[5:]) if device.startswith('cuda:') else 0


def openvino_device(device):
    """
    Return the OpenVINO device for ``device``: 'cpu' CPU, 'gpu' GPU, 'gpu:N' GPU.N, 'npu' NPU.

    'auto' is the Intel GPU when OpenVINO sees one, else the CPU; 'cuda' is refused. A device
    OpenVINO does not see raises DeviceUnavailable.
    """
    check_device(device)
    if device.startswith('cuda'):
        raise ValueError("the openvino backend runs on 'auto', 'cpu', 'gpu', 'gpu:N' or 'npu' "
                         f'(Intel devices), got device {device!r}; use the onnxruntime, torch '
                         'or tensorrt backend for CUDA')
    openvino = import_openvino()
    available = openvino.Core().available_devices
    if device == 'auto':
        return 'GPU' if any(d.split('.')[0] == 'GPU' for d in available) else 'CPU'
    name = device.upper().replace(':', '.')
    if name not in available and not (name == 'GPU' and 'GPU.0' in available):
        needs = {'C': 'a CPU plugin', 'G': 'an Intel GPU and its compute runtime (OpenCL/Level '
                 'Zero driver)', 'N': 'an Intel NPU and its driver'}[name[0]]
        version = openvino.get_version().split('-')[0]
        raise DeviceUnavailable(
            f'device {device!r} needs {needs}, but OpenVINO {version} sees {available} '
            '(install the driver, or use device cpu)')
    return name


def load_backend(path, backend='auto', device='auto', threads=0, **options):
    """
    Load ``path`` with ``backend`` on ``device``; 'auto' picks the backend by file kind.

    A checkpoint runs on torch, an ONNX model on ONNX Runtime, an engine on TensorRT.
    ``device``: one of ``DEVICES`` (an int N means 'cuda:N'); ``threads``: CPU inference
    threads (0 or None: the backend's default; TensorRT has none). Other ``options`` go to
    the backend as they are (fp16, channels_last, precision, ...); an explicit ONNX Runtime
    ``providers`` list is used as given instead of the device's.

    :raises DeviceUnavailable: the device is not usable here (no CUDA for torch, no CUDA
        execution provider in onnxruntime, 'cpu' for TensorRT, an Intel GPU/NPU or a
        precision that OpenVINO does not see).
    :raises ValueError: an unknown backend or device, or a file the backend cannot run.
    """
    backend = resolve_backend(path, backend)
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        device = f'cuda:{device}'
    check_device(device)
    if backend == 'torch':
        from liteseg_ros.inference.backends.torch_backend import TorchBackend

        return TorchBackend(path, device=torch_device(device), threads=threads or None,
                            **options)
    if backend == 'onnxruntime':
        from liteseg_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend

        if 'providers' not in options:
            options['providers'] = onnxruntime_providers(device)
        return OnnxRuntimeBackend(path, threads=threads or None, **options)
    if backend == 'openvino':
        from liteseg_ros.inference.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(path, device=openvino_device(device), threads=threads or None,
                               **options)
    from liteseg_ros.inference.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, device=tensorrt_device(device), **options)


__all__ = ['Backend', 'BACKENDS', 'BackendUnavailable', 'DEVICES', 'DeviceUnavailable',
           'check_device', 'import_openvino', 'load_backend', 'onnxruntime_providers',
           'openvino_device', 'resolve_backend', 'tensorrt_device', 'torch_device']
