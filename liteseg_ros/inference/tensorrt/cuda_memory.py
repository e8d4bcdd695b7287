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
CUDA memory for TensorRT: one device and stream, pinned host / device buffer pairs.

PyTorch CUDA tensors when torch has CUDA, else cuda-python (``cuda.bindings``); pycuda is
not needed. Both are imported only when a CudaMemory is created.
"""

import contextlib
from typing import Any

from liteseg_ros.inference.tensorrt.runtime import TensorRTNotAvailable
import numpy as np


def _device_index(device):
    if isinstance(device, int):
        return device
    text = str(device).lower()
    if text in ('cuda', 'gpu'):
        return 0
    for prefix in ('cuda:', 'gpu:'):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if not text.isdigit():
        raise ValueError(f"device must be a CUDA device index or 'cuda:N', got {device!r}")
    return int(text)


class HostDeviceBuffer:
    """A pinned host array (``host``, uint8) and a device allocation (``device_ptr``)."""

    def __init__(self, host, device_ptr, nbytes, owners=()):
        """Wrap allocations made by CudaMemory (``owners`` keeps them alive)."""
        self.host = host
        self.device_ptr = int(device_ptr)
        self.nbytes = int(nbytes)
        self._owners = owners


class CudaMemory:
    """
    One CUDA device and stream with pinned host / device buffer pairs.

    Uses PyTorch CUDA tensors when torch has CUDA, else cuda-python's runtime bindings.
    """

    def __init__(self, device=0):
        """Open ``device`` (index or 'cuda:N') and create one stream on it."""
        self.index = _device_index(device)
        # Either framework, chosen at run time: typed Any, not checked against TensorRT.
        self._torch: Any = None
        self._rt: Any = None
        self._allocations = []
        self._stream: Any = None
        try:
            import torch
            if torch.cuda.is_available():
                self._torch = torch
        except ImportError:
            pass
        if self._torch is not None:
            count = self._torch.cuda.device_count()
        else:
            self._rt = _cuda_runtime()
            count = self._call('cudaGetDeviceCount', self._rt.cudaGetDeviceCount())
        if self.index >= count:
            raise RuntimeError(f'CUDA device {self.index} asked for, but this machine has '
                               f'{count} CUDA device(s)')
        with self.activate():
            if self._torch is not None:
                self._stream = self._torch.cuda.Stream(device=self.index)
                self.stream_handle = int(self._stream.cuda_stream)
            else:
                self._stream = self._call('cudaStreamCreate', self._rt.cudaStreamCreate())
                self.stream_handle = int(self._stream)
        self.api = 'torch' if self._torch is not None else 'cuda-python'

    def _call(self, what, result) -> Any:
        err, values = result[0], result[1:]
        if int(err) != 0:
            name = self._rt.cudaGetErrorName(err)[1]
            name = name.decode() if isinstance(name, bytes) else name
            raise RuntimeError(f'CUDA {what} failed: {name} (is an NVIDIA driver and GPU '
                               'present?)')
        return values[0] if len(values) == 1 else (values or None)

    @contextlib.contextmanager
    def activate(self):
        """Make this device current (TensorRT works on the current device)."""
        if self._torch is not None:
            with self._torch.cuda.device(self.index):
                yield
        else:
            self._call('cudaSetDevice', self._rt.cudaSetDevice(self.index))
            yield

    def properties(self):
        """Return (GPU name, compute capability 'major.minor')."""
        if self._torch is not None:
            major, minor = self._torch.cuda.get_device_capability(self.index)
            return self._torch.cuda.get_device_name(self.index), f'{major}.{minor}'
        prop = self._call('cudaGetDeviceProperties', self._rt.cudaGetDeviceProperties(self.index))
        name = prop.name.split(b'\0', 1)[0].decode() if isinstance(prop.name, bytes) else prop.name
        return str(name).strip(), f'{prop.major}.{prop.minor}'

    def buffer(self, nbytes):
        """Allocate ``nbytes`` of pinned host memory and of device memory."""
        nbytes = int(nbytes)
        if self._torch is not None:
            torch = self._torch
            host_t = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
            device_t = torch.empty(nbytes, dtype=torch.uint8, device=f'cuda:{self.index}')
            return HostDeviceBuffer(host_t.numpy(), device_t.data_ptr(), nbytes,
                                    (host_t, device_t))
        import ctypes

        with self.activate():
            host_ptr = self._call('cudaMallocHost', self._rt.cudaMallocHost(nbytes))
            self._allocations.append(('host', host_ptr))
            device_ptr = self._call('cudaMalloc', self._rt.cudaMalloc(nbytes))
            self._allocations.append(('device', device_ptr))
        host = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(int(host_ptr)))
        return HostDeviceBuffer(host, device_ptr, nbytes)

    def upload(self, buffer, nbytes=None):
        """Queue a copy of the first ``nbytes`` of ``buffer.host`` to the device."""
        self._copy(buffer, nbytes, to_device=True)

    def download(self, buffer, nbytes=None):
        """Queue a copy of the first ``nbytes`` on the device back to ``buffer.host``."""
        self._copy(buffer, nbytes, to_device=False)

    def _copy(self, buffer, nbytes, to_device):
        nbytes = buffer.nbytes if nbytes is None else int(nbytes)
        if self._torch is not None:
            host_t, device_t = buffer._owners
            source, target = (host_t, device_t) if to_device else (device_t, host_t)
            with self._torch.cuda.stream(self._stream):
                target[:nbytes].copy_(source[:nbytes], non_blocking=True)
            return
        host, device = buffer.host.ctypes.data, buffer.device_ptr
        kinds = self._rt.cudaMemcpyKind
        destination, source, kind = ((device, host, kinds.cudaMemcpyHostToDevice) if to_device
                                     else (host, device, kinds.cudaMemcpyDeviceToHost))
        self._call('cudaMemcpyAsync', self._rt.cudaMemcpyAsync(destination, source, nbytes, kind,
                                                               self._stream))

    def synchronize(self):
        """Wait for everything queued on the stream."""
        if self._torch is not None:
            self._stream.synchronize()
        else:
            self._call('cudaStreamSynchronize', self._rt.cudaStreamSynchronize(self._stream))

    def close(self):
        """Free cuda-python allocations and the stream (torch frees its own)."""
        if self._rt is not None:
            for kind, ptr in reversed(self._allocations):
                (self._rt.cudaFreeHost if kind == 'host' else self._rt.cudaFree)(ptr)
            self._allocations = []
            if getattr(self, '_stream', None) is not None:
                self._rt.cudaStreamDestroy(self._stream)
                self._stream = None


def _cuda_runtime():
    try:
        # cuda-python is optional (torch with CUDA serves instead) and not installed where
        # the type check runs: its imports are unresolved there.
        from cuda.bindings import runtime  # pyright: ignore[reportMissingImports]
    except ImportError:
        try:
            from cuda import cudart as runtime  # pyright: ignore[reportMissingImports]
        except ImportError as exc:
            raise TensorRTNotAvailable(
                'TensorRT needs CUDA memory from PyTorch with CUDA or from cuda-python: neither '
                'is available (torch.cuda.is_available() is False and cuda-python is not '
                'installed); pip install cuda-python, or install a CUDA build of PyTorch',
                name='cuda') from exc
    return runtime
