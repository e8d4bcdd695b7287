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
TensorRT engines: build (fp32 / fp16 / int8), cache per platform, describe in a sidecar.

What TensorRT is given is the exported ONNX model fused with its pre- and post-processing
(``wrap_pre_post``): the engine takes the resized frames as they are (uint8 NHWC RGB) and
returns uint8 class ids (optionally float32 confidence, or float32 logits for the bilinear
mode). What this relies on in TensorRT >= 10: UINT8 is allowed only as a network input or
output type, and UINT8 conversions (ICastLayer, ONNX Cast) only exist to and from FLOAT/HALF.
The input ``Cast(uint8 -> float)`` is such a conversion; the label ``Cast(int64 -> uint8)``
after the ArgMax is not, so ``tensorrt_onnx`` routes it through float (exact: ids < 256).

An engine only runs with the TensorRT version and the GPU (compute capability) it was built
for. ``build_engine`` writes ``<engine>.json`` beside it ({'config', 'io', 'tensorrt_version',
'gpu_name', 'compute_capability', 'precision', 'onnx_sha256', 'input_shape', ...}); loading
compares that with the running platform (``check_platform``) before deserialising.
``cached_engine`` names engines by ``cache_key`` (ONNX content, TensorRT version, GPU, compute
capability, precision, shapes, outputs), so a new TensorRT or GPU builds a new engine.

TensorRT and CUDA are imported only inside the functions that need them. The key, sidecar
and platform checks are pure functions of their arguments and run anywhere.
CUDA memory: PyTorch CUDA tensors when torch has CUDA, else cuda-python (``cuda.bindings``);
pycuda is not needed. INT8 uses the (TensorRT 10.1-deprecated, still supported) implicit
quantization with ``IInt8EntropyCalibrator2``; FP16 stays enabled for layers without INT8.
"""

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
import sys
import time

from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.inference.model_files import (engine_sidecar, IO_METADATA_KEY, load_onnx,
                                               ModelFileError, onnx_metadata)
from liteseg_ros.inference.onnx_graph import set_metadata, wrap_pre_post
import numpy as np

LOG = logging.getLogger(__name__)

PRECISIONS = ('fp32', 'fp16', 'int8')
ENGINE_FORMAT = 'liteseg-engine/1'
# Bump when the graph handed to TensorRT changes, so cached engines are rebuilt.
RECIPE_VERSION = 1
MIN_TENSORRT_MAJOR = 10
DEFAULT_MAX_BATCH = 4
DEFAULT_CALIBRATION_IMAGES = 500
PLATFORM_FIELDS = (('tensorrt_version', 'TensorRT version'), ('gpu_name', 'GPU'),
                   ('compute_capability', 'compute capability'))
SIDECAR_KEYS = ('config', 'io', 'tensorrt_version', 'gpu_name', 'compute_capability',
                'precision', 'onnx_sha256', 'input_shape')
CONFIG_KEYS = ('variant', 'num_classes', 'class_names', 'palette', 'mean', 'std', 'input_size')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')
CALIBRATION_HEADER = b'# liteseg-calibration '


class TensorRTNotAvailable(ImportError, ModelFileError):
    """TensorRT (or CUDA for it) is missing; the message says what to install or use instead."""


# ---------------------------------------------------------------------------------------------
# Pure functions: keys, sidecars, platform checks, messages (no TensorRT, no GPU).


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


def cache_key(onnx_sha256, precision, shapes, tensorrt_version, gpu_name, compute_capability,
              variant='labels', calibration=None):
    """
    Return the hex sha256 naming an engine built from these inputs on this platform.

    ``shapes`` is any JSON-able description of the input shapes (``engine_shapes``);
    ``calibration`` identifies the int8 calibration images (``calibration_digest``).
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    payload = {'recipe': RECIPE_VERSION, 'onnx_sha256': str(onnx_sha256),
               'tensorrt_version': str(tensorrt_version), 'gpu_name': str(gpu_name),
               'compute_capability': str(compute_capability), 'precision': precision,
               'shapes': shapes, 'variant': variant, 'calibration': calibration}
    text = json.dumps(payload, sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(text.encode()).hexdigest()


def engine_cache_key(onnx_path, precision, shapes, tensorrt_version=None, gpu_name=None,
                     compute_capability=None, variant='labels', calibration=None, device=0):
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
                     compute_capability, variant, calibration)


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
    precision = info.get('precision', 'fp16')
    return (f'python -m training.export CHECKPOINT.pt --onnx {onnx} --engine {engine_path} '
            f'--precision {precision}')


def rebuild_advice(engine_path, info=None):
    """Return the sentence telling the user how to get a usable engine back."""
    sidecar = engine_sidecar(engine_path)
    return (f'rebuild it on this machine: {rebuild_command(engine_path, info)} ; or, for an '
            f'engine from the cache, delete {engine_path} and {sidecar} and it is rebuilt from '
            'the ONNX model on the next start (this takes minutes)')


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


def default_cache_dir():
    """
    Return where engines built on first run are kept.

    ``$LITESEG_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/liteseg_ros/engines`` (~/.cache/...).
    """
    if os.environ.get('LITESEG_ENGINE_CACHE'):
        return Path(os.environ['LITESEG_ENGINE_CACHE'])
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'liteseg_ros' / 'engines'


# ---------------------------------------------------------------------------------------------
# The graph TensorRT gets (ONNX only; checked with ONNX Runtime in the tests).


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
        have = variant_name(io.get('output', 'labels'), bool(io.get('confidence')))
        if (output not in (None, io.get('output', 'labels'))
                or (confidence and not io.get('confidence'))):
            raise ModelFileError(
                f'{onnx_path}: this ONNX model was exported with --fuse and outputs {have}; '
                f'{variant_name(output or "labels", bool(confidence))} needs an export without '
                '--fuse (the tensorrt backend then fuses what it needs)')
    else:
        model = wrap_pre_post(model, config['mean'], config['std'], output or 'labels',
                              bool(confidence))
        io = {**io, **json.loads({p.key: p.value for p in model.metadata_props}[IO_METADATA_KEY])}
    (graph_input,) = model.graph.input
    dims = [d.dim_value if d.dim_value else (d.dim_param or 'dynamic')
            for d in graph_input.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[3] != 3:
        raise ModelFileError(f'{onnx_path}: expected an NHWC input with 3 channels, got {dims}')
    io.update(input=graph_input.name, height=int(dims[1]), width=int(dims[2]),
              batch=dims[0] if isinstance(dims[0], int) else 'dynamic')
    model = _cast_uint8_through_float(model)
    set_metadata(model, {IO_METADATA_KEY: json.dumps(io)})
    onnx.checker.check_model(model)
    return model, config, io


# ---------------------------------------------------------------------------------------------
# INT8 calibration images.


def calibration_files(folder, limit=DEFAULT_CALIBRATION_IMAGES):
    """Return up to ``limit`` image files under ``folder``, spread evenly over its sorted list."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f'{folder}: calibration image folder does not exist')
    files = sorted(p for p in folder.rglob('*')
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f'{folder}: no images ({" ".join(IMAGE_SUFFIXES)}) for int8 '
                         'calibration; give a folder of frames like the ones the model will see')
    if limit and len(files) > limit:
        files = [files[i * len(files) // limit] for i in range(limit)]
    return files


def calibration_digest(files, folder):
    """Return a sha256 identifying the calibration set (relative names and sizes)."""
    entries = [[str(Path(f).relative_to(folder)), Path(f).stat().st_size] for f in files]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def load_calibration_image(path, height, width):
    """Read an image as RGB uint8 resized to the model input (as the Segmenter resizes)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'{path}: not a readable image (int8 calibration)')
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image


def _calibration_tag(onnx_sha256, digest, shape):
    return json.dumps({'onnx_sha256': onnx_sha256, 'images': digest, 'shape': list(shape),
                       'recipe': RECIPE_VERSION}, sort_keys=True).encode()


def read_calibration_cache(path, tag):
    """Return the TensorRT calibration table in ``path`` if it was made for ``tag``, else None."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    first, _, payload = data.partition(b'\n')
    if first != CALIBRATION_HEADER + tag or not payload:
        LOG.info('%s was made for another model or image set; calibrating again', path)
        return None
    return payload


def write_calibration_cache(path, tag, payload):
    """Store a TensorRT calibration table with the tag of the model and images it belongs to."""
    write_bytes_atomic(path, CALIBRATION_HEADER + tag + b'\n' + bytes(payload))


# ---------------------------------------------------------------------------------------------
# TensorRT and CUDA (lazy imports).


def import_tensorrt(path=None):
    """Import TensorRT >= 10 or raise TensorRTNotAvailable saying what to do."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: bindings present, libnvinfer missing
        raise TensorRTNotAvailable(tensorrt_missing_message(path, f'import tensorrt: {exc}'),
                                   name='tensorrt') from exc
    version = getattr(trt, '__version__', '0')
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


def trt_logger(trt):
    """
    Return the process-wide TensorRT logger (TensorRT wants one); it feeds ``logging``.

    ``errors`` holds the latest error messages, for the exceptions raised here.
    """
    global _LOGGER
    if _LOGGER is None:
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
        self._torch = None
        self._rt = None
        self._allocations = []
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

    def _call(self, what, result):
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
        nbytes = buffer.nbytes if nbytes is None else int(nbytes)
        if self._torch is not None:
            host_t, device_t = buffer._owners
            with self._torch.cuda.stream(self._stream):
                device_t[:nbytes].copy_(host_t[:nbytes], non_blocking=True)
            return
        self._call('cudaMemcpyAsync', self._rt.cudaMemcpyAsync(
            buffer.device_ptr, buffer.host.ctypes.data, nbytes,
            self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))

    def download(self, buffer, nbytes=None):
        """Queue a copy of the first ``nbytes`` on the device back to ``buffer.host``."""
        nbytes = buffer.nbytes if nbytes is None else int(nbytes)
        if self._torch is not None:
            host_t, device_t = buffer._owners
            with self._torch.cuda.stream(self._stream):
                host_t[:nbytes].copy_(device_t[:nbytes], non_blocking=True)
            return
        self._call('cudaMemcpyAsync', self._rt.cudaMemcpyAsync(
            buffer.host.ctypes.data, buffer.device_ptr, nbytes,
            self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))

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
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as exc:
            raise TensorRTNotAvailable(
                'TensorRT needs CUDA memory from PyTorch with CUDA or from cuda-python: neither '
                'is available (torch.cuda.is_available() is False and cuda-python is not '
                'installed); pip install cuda-python, or install a CUDA build of PyTorch',
                name='cuda') from exc
    return runtime


def platform_info(device=0, cuda=None):
    """Return {'tensorrt_version', 'gpu_name', 'compute_capability'} of this machine."""
    trt = import_tensorrt()
    name, capability = (cuda or CudaMemory(device)).properties()
    return {'tensorrt_version': trt.__version__, 'gpu_name': name,
            'compute_capability': capability}


def _make_calibrator(trt, cuda, files, shape, cache_path, tag):
    """Return an IInt8EntropyCalibrator2 feeding uint8 NHWC frames from ``files``."""
    batch, height, width, _ = shape
    nbytes = int(np.prod(shape))

    class Calibrator(trt.IInt8EntropyCalibrator2):
        """Entropy calibration over the image files, one engine-sized batch at a time."""

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.buffer = cuda.buffer(nbytes)
            self.position = 0
            self.next_log = 0
            self.started = time.monotonic()

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            if self.position >= len(files):
                LOG.info('int8 calibration: %d images in %.0f s', len(files),
                         time.monotonic() - self.started)
                return None
            frames = self.buffer.host[:nbytes].reshape(shape)
            for i in range(batch):  # a short last batch repeats its first images
                index = self.position + i
                path = files[index if index < len(files) else self.position]
                frames[i] = load_calibration_image(path, height, width)
            self.position += batch
            cuda.upload(self.buffer, nbytes)
            cuda.synchronize()
            if self.position >= self.next_log:
                self.next_log = self.position + max(1, len(files) // 10)
                LOG.info('int8 calibration: %d / %d images', min(self.position, len(files)),
                         len(files))
            return [self.buffer.device_ptr]

        def read_calibration_cache(self):
            payload = read_calibration_cache(cache_path, tag)
            if payload is not None:
                LOG.info('int8 calibration: using %s', cache_path)
            return payload

        def write_calibration_cache(self, cache):
            write_calibration_cache(cache_path, tag, cache)
            LOG.info('int8 calibration: wrote %s', cache_path)

    return Calibrator()


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
    cuda = CudaMemory(device)
    running = platform_info(cuda=cuda)
    logger = trt_logger(trt)
    if progress is None:
        progress = hasattr(sys.stderr, 'isatty') and sys.stderr.isatty()
    LOG.info('building a %s TensorRT %s engine for %s on %s (%s): this takes minutes',
             precision, running['tensorrt_version'], onnx_path, running['gpu_name'],
             variant_name(io['output'], io['confidence']))
    started = time.monotonic()
    with cuda.activate():
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(model.SerializeToString()):
            errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelFileError(f'{onnx_path}: TensorRT {trt.__version__} cannot parse this '
                                 f'model: {errors}')
        builder_config = builder.create_builder_config()
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                             int(workspace_gb * (1 << 30)))
        if precision in ('fp16', 'int8'):
            if not getattr(builder, 'platform_has_fast_fp16', True):
                LOG.warning('%s has no fast FP16; the engine may be slow', running['gpu_name'])
            builder_config.set_flag(trt.BuilderFlag.FP16)
        if shapes['min'] != shapes['max']:
            profile = builder.create_optimization_profile()
            profile.set_shape(shapes['input'], shapes['min'], shapes['opt'], shapes['max'])
            builder_config.add_optimization_profile(profile)
        calibrator = None
        if precision == 'int8':
            builder_config.set_flag(trt.BuilderFlag.INT8)
            shape = shapes['opt']
            if shapes['min'] != shapes['max']:
                calibration_profile = builder.create_optimization_profile()
                calibration_profile.set_shape(shapes['input'], shape, shape, shape)
                builder_config.set_calibration_profile(calibration_profile)
            tag = _calibration_tag(onnx_sha256,
                                   calibration_digest(files, Path(calibration_images)), shape)
            calibrator = _make_calibrator(trt, cuda, files, shape,
                                          Path(str(engine_path) + '.calib'), tag)
            builder_config.int8_calibrator = calibrator
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


@contextlib.contextmanager
def _file_lock(path):
    """Hold an exclusive lock on ``path`` (so two nodes do not build the same engine)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic writes still keep the cache consistent
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_engine(onnx_path, cache_dir=None, precision='fp16', batch=None, output='labels',
                  confidence=False, calibration_images=None, device=0, workspace_gb=4,
                  max_calibration_images=DEFAULT_CALIBRATION_IMAGES, running=None):
    """
    Return the engine for ``onnx_path`` in ``cache_dir``, building it on first use.

    The file name carries ``cache_key``: the ONNX content, TensorRT version, GPU, compute
    capability, precision, shapes and outputs. ``cache_dir`` defaults to
    ``default_cache_dir()``; a shared timing cache there speeds up later builds.
    """
    onnx_path = Path(onnx_path)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    _, _, io = tensorrt_onnx(onnx_path, output, confidence)  # refuses impossible outputs
    variant = variant_name(io['output'], bool(io['confidence']))
    shapes = engine_shapes(io, batch)
    running = running or platform_info(device)
    calibration = None
    if precision == 'int8':
        if not calibration_images:
            raise ValueError('int8 needs calibration images (a folder of frames)')
        files = calibration_files(calibration_images, max_calibration_images)
        calibration = calibration_digest(files, Path(calibration_images))
    key = cache_key(file_sha256(onnx_path), precision, shapes, running['tensorrt_version'],
                    running['gpu_name'], running['compute_capability'],
                    variant, calibration)
    engine = cache_dir / f'{onnx_path.stem}-{precision}-{variant}-{key[:16]}.engine'
    with _file_lock(cache_dir / f'.{engine.name}.lock'):
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
        build_engine(onnx_path, engine, precision, calibration_images, workspace_gb, timing,
                     batch, output, confidence, device, max_calibration_images)
    return engine
