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
TensorRT itself: importing it (lazily, with a clear error when missing) and its logger.

Nothing here imports TensorRT at module level, so the package loads on machines without it.
"""

import logging

from liteseg_ros.inference.model_files import ModelFileError

LOG = logging.getLogger(__name__)

MIN_TENSORRT_MAJOR = 10


class TensorRTNotAvailable(ImportError, ModelFileError):
    """TensorRT (or CUDA for it) is missing; the message says what to install or use instead."""


def tensorrt_missing_message(path=None, reason=None, problem='TensorRT is not installed'):
    """Return the error text for a machine without (a usable) TensorRT."""
    what = f'{path} cannot run with the tensorrt backend' if path else 'TensorRT is needed'
    why = f' ({reason})' if reason else ''
    return (f'{problem}{why}: {what}. Install TensorRT >= '
            f'{MIN_TENSORRT_MAJOR} with its Python bindings on a machine with an NVIDIA GPU '
            "(pip install tensorrt, or JetPack's python3-libnvinfer), or use another backend: "
            "backend 'onnxruntime' with the ONNX model (.onnx, the engine's source), or "
            "backend 'torch' with the checkpoint (.pt), e.g. liteseg bench model.onnx "
            '--backend onnxruntime')


def import_tensorrt(path=None):
    """
    Import a usable TensorRT >= 10 or raise TensorRTNotAvailable saying what to do.

    Usable means ``trt.Builder`` and ``__version__`` exist: the import alone also succeeds
    for an empty namespace package (tensorrt-stubs without TensorRT, a bindings wheel whose
    libraries are missing).
    """
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: bindings present, libnvinfer missing
        raise TensorRTNotAvailable(tensorrt_missing_message(path, f'import tensorrt: {exc}'),
                                   name='tensorrt') from exc
    if not hasattr(trt, 'Builder') or not hasattr(trt, '__version__'):
        where = ', '.join(str(p) for p in getattr(trt, '__path__', [])) or 'no files'
        raise TensorRTNotAvailable(tensorrt_missing_message(
            path, f'the tensorrt package found ({where}) has no Builder: type stubs or '
            'bindings without their libraries'), name='tensorrt')
    version = str(trt.__version__)
    try:
        major = int(version.split('.')[0])
    except ValueError:
        major = 0
    if major < MIN_TENSORRT_MAJOR:
        raise TensorRTNotAvailable(tensorrt_missing_message(
            path, f'liteseg_ros needs TensorRT >= {MIN_TENSORRT_MAJOR}',
            f'TensorRT {version} is too old'), name='tensorrt')
    return trt


_LOGGER = None


def trt_logger():
    """
    Return the process-wide TensorRT logger (TensorRT wants one); it feeds ``logging``.

    ``errors`` holds the latest error messages, for the exceptions raised here.
    """
    global _LOGGER
    if _LOGGER is None:
        trt = import_tensorrt()

        class _Logger(trt.ILogger):
            """Forwards TensorRT messages to ``logging`` and keeps the latest errors."""

            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors = []

            def log(self, severity, msg):
                level = int(severity)  # 0 internal error, 1 error, 2 warning, 3 info, 4 verbose
                if level <= 1:
                    self.errors = (self.errors + [msg])[-10:]
                    LOG.error('TensorRT: %s', msg)
                elif level == 2:
                    LOG.warning('TensorRT: %s', msg)
                elif level == 3:
                    LOG.debug('TensorRT: %s', msg)

            def take_errors(self):
                errors, self.errors = self.errors, []
                return '; '.join(errors) or 'no error message from TensorRT'

        _LOGGER = _Logger()
    return _LOGGER
