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

"""Backends behind one protocol, chosen from the model file or by name."""

from liteseg_ros.inference.backends.base import Backend
from liteseg_ros.inference.model_files import model_format

BACKENDS = ('auto', 'onnxruntime', 'torch', 'tensorrt')


def load_backend(path, backend='auto', **options):
    """
    Load ``path`` with ``backend``; 'auto' picks by file type.

    A checkpoint runs on torch, an ONNX model on ONNX Runtime, an engine on TensorRT.
    ``options`` go to the backend (threads, device, fp16, ...).
    """
    kind = model_format(path)
    if backend == 'auto':
        backend = {'checkpoint': 'torch', 'onnx': 'onnxruntime', 'engine': 'tensorrt'}[kind]
    allowed = {'torch': ('checkpoint',), 'onnxruntime': ('onnx',),
               'tensorrt': ('engine', 'onnx')}
    if backend not in allowed:
        raise ValueError(f'unknown backend {backend!r}: expected one of {BACKENDS}')
    if kind not in allowed[backend]:
        raise ValueError(f'{path}: the {backend} backend cannot run a {kind} file; it runs '
                         f'{" or ".join(allowed[backend])} files')
    if backend == 'torch':
        from liteseg_ros.inference.backends.torch_backend import TorchBackend
        return TorchBackend(path, **options)
    if backend == 'onnxruntime':
        from liteseg_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(path, **options)
    from liteseg_ros.inference.backends.tensorrt_backend import TensorRTBackend
    return TensorRTBackend(path, **options)


__all__ = ['Backend', 'BACKENDS', 'load_backend']
