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
TensorRT backend: runs an engine, or builds and caches one from an ONNX model.

Given ``model.engine`` it loads the engine described by ``model.engine.json`` after checking
that the engine was built for this TensorRT version and GPU. Given ``model.onnx`` it uses
``cached_engine``: the first run on a machine builds the engine (minutes), later runs load it.

Outputs: an engine has the outputs it was built with (labels, optionally confidence, or
logits). From an ONNX model a request for another output (``output='logits'`` for the
bilinear upsampling mode, or confidence) builds and caches that engine variant on first use,
as the ONNX Runtime backend builds a second session. An engine file given directly cannot
grow outputs: such a request raises ModelFileError saying what the engine has.

One CUDA stream, device buffers preallocated for the engine's largest batch, pinned host
memory for uploads and downloads. Not thread-safe: one backend per thread.
"""

import logging
from pathlib import Path

from liteseg_ros.inference.backends.base import Backend, check_batch, check_classes
from liteseg_ros.inference.model_files import model_format, ModelFileError
from liteseg_ros.inference.onnx_graph import CONFIDENCE_OUTPUT, LABELS_OUTPUT, LOGITS_OUTPUT
from liteseg_ros.inference.tensorrt import cuda_memory
from liteseg_ros.inference.tensorrt.cache import cached_engine
from liteseg_ros.inference.tensorrt.runtime import import_tensorrt, trt_logger
from liteseg_ros.inference.tensorrt.sidecar import (check_engine_bytes, check_platform,
                                                    platform_info, read_sidecar,
                                                    rebuild_advice, variant_name)
import numpy as np

LOG = logging.getLogger(__name__)


class EngineRunner:
    """One deserialised engine: execution context, device buffers, pinned host buffers."""

    def __init__(self, cuda, path, info):
        """Deserialise the engine at ``path`` (sidecar ``info`` already checked)."""
        trt = import_tensorrt(path)
        self.path = Path(path)
        self.info = info
        self._cuda = cuda
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ModelFileError(f'{path}: cannot read the engine ({exc})') from exc
        check_engine_bytes(path, data, info)
        logger = trt_logger()
        logger.take_errors()
        with cuda.activate():
            self._runtime = trt.Runtime(logger)
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise ModelFileError(
                    f'{path}: TensorRT {trt.__version__} cannot deserialise this engine '
                    f'({logger.take_errors()}): the file is corrupt or truncated, or was not '
                    f'built by this TensorRT; {rebuild_advice(path, info)}')
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise RuntimeError(f'{path}: TensorRT cannot create an execution context '
                                   f'(out of GPU memory?): {logger.take_errors()}')
        self._logger = logger
        self._bind()

    def _bind(self):
        trt = import_tensorrt(self.path)
        engine, io, path = self.engine, self.info['io'], self.path
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        height, width = int(io['height']), int(io['width'])
        shape = [int(d) for d in engine.get_tensor_shape(inputs[0])] if inputs else []
        if (inputs != [io['input']] or engine.get_tensor_dtype(inputs[0]) != trt.DataType.UINT8
                or shape[1:] != [height, width, 3]):
            raise ModelFileError(
                f"{path}: expected one uint8 input {io['input']!r} of shape (N, {height}, "
                f'{width}, 3) as its description says; the engine has inputs {inputs} '
                f'{shape}; {rebuild_advice(path, self.info)}')
        known = {LABELS_OUTPUT, LOGITS_OUTPUT, CONFIDENCE_OUTPUT}
        if not outputs or set(outputs) - known or (LABELS_OUTPUT in outputs) == (
                LOGITS_OUTPUT in outputs):
            raise ModelFileError(f'{path}: unexpected outputs {outputs}: a liteseg engine '
                                 f'outputs labels or logits (+ confidence); '
                                 f'{rebuild_advice(path, self.info)}')
        self.output = LABELS_OUTPUT if LABELS_OUTPUT in outputs else 'logits'
        self.confidence = CONFIDENCE_OUTPUT in outputs
        self.variant = variant_name(self.output, self.confidence)
        self.input_name = inputs[0]
        self.frame_shape = (height, width, 3)
        if shape[0] < 0:
            self.fixed_batch = None
            self.max_batch = int(engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        else:
            self.fixed_batch = self.max_batch = shape[0]
        frame_bytes = height * width * 3
        self._input = self._cuda.buffer(self.max_batch * frame_bytes)
        self.context.set_tensor_address(self.input_name, self._input.device_ptr)
        self._outputs = {}
        for name in outputs:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            frame = tuple(int(d) for d in engine.get_tensor_shape(name))[1:]
            if min(frame, default=1) < 1:
                raise ModelFileError(f'{path}: output {name} has a dynamic shape {frame}')
            nbytes = int(np.prod(frame)) * dtype.itemsize
            buffer = self._cuda.buffer(self.max_batch * nbytes)
            self.context.set_tensor_address(name, buffer.device_ptr)
            self._outputs[name] = (buffer, dtype, frame, nbytes)
        if LOGITS_OUTPUT in self._outputs:
            check_classes(path, self._outputs[LOGITS_OUTPUT][2][0], self.info['config'])
        self._batch_shape = None

    def run(self, images):
        """Return {output name: array} for uint8 NHWC ``images``, in engine-sized chunks."""
        parts = [self._execute(images[i:i + self.max_batch])
                 for i in range(0, len(images), self.max_batch)]
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in self._outputs}

    def _execute(self, chunk):
        count = len(chunk)
        batch = self.fixed_batch or count
        frame_bytes = int(np.prod(self.frame_shape))
        host = self._input.host[:batch * frame_bytes].reshape((batch,) + self.frame_shape)
        host[:count] = chunk
        if count < batch:  # a fixed-batch engine gets zero frames in the unused slots
            host[count:] = 0
        if self.fixed_batch is None and self._batch_shape != batch:
            if not self.context.set_input_shape(self.input_name, (batch,) + self.frame_shape):
                raise RuntimeError(f'{self.path}: TensorRT refused batch {batch} '
                                   f'(profile up to {self.max_batch}): '
                                   f'{self._logger.take_errors()}')
            self._batch_shape = batch
        cuda = self._cuda
        with cuda.activate():
            cuda.upload(self._input, batch * frame_bytes)
            if not self.context.execute_async_v3(cuda.stream_handle):
                raise RuntimeError(f'{self.path}: TensorRT execution failed: '
                                   f'{self._logger.take_errors()}')
            for buffer, _, _, nbytes in self._outputs.values():
                cuda.download(buffer, count * nbytes)
            cuda.synchronize()
        return {name: buffer.host[:count * nbytes].view(dtype).reshape((count,) + frame).copy()
                for name, (buffer, dtype, frame, nbytes) in self._outputs.items()}


class TensorRTBackend(Backend):
    """
    Runs a TensorRT engine (``.engine/.plan/.trt`` + sidecar) or an ONNX model via the cache.

    ``device``: CUDA device index or 'cuda:N'. For an ONNX model: ``precision`` (None: the
    ONNX model's; 'fp32', 'fp16' or 'int8' must be it), ``cache_dir`` (default
    ``tensorrt.cache.default_cache_dir()``), ``batch`` (dynamic-batch exports: largest
    batch), ``output`` / ``confidence`` (the engine built at start; others on first use).
    A fixed-batch engine runs other batch sizes in engine-sized chunks (frame by frame for
    batch 1), as the ONNX Runtime backend does.
    """

    name = 'tensorrt'

    def __init__(self, path, device=0, precision=None, cache_dir=None, batch=None,
                 output='labels', confidence=False, workspace_gb=4):
        """Load (or build and cache) the engine for ``path`` on ``device``."""
        self.path = str(path)
        import_tensorrt(path)  # first: without TensorRT nothing else matters
        kind = model_format(path)
        if kind not in ('engine', 'onnx'):
            raise ModelFileError(f'{path}: the tensorrt backend runs engines or ONNX models, '
                                 f'not a {kind}; export one with python -m training.export')
        self._cuda = cuda_memory.CudaMemory(device)
        self._running = platform_info(cuda=self._cuda)
        self._onnx = Path(path) if kind == 'onnx' else None
        self._build = {'precision': precision, 'cache_dir': cache_dir, 'batch': batch,
                       'workspace_gb': workspace_gb, 'device': self._cuda.index}
        engine_path = self._cached(output, confidence) if self._onnx else Path(path)
        runner = self._load(engine_path)
        self._runners = [runner]
        self.engine_path = engine_path
        self.config = runner.info['config']
        self.io = runner.info['io']
        self.precision = runner.info['precision']
        self.input_size = (int(self.io['height']), int(self.io['width']))
        self.batch_size = runner.fixed_batch
        self.device = f'cuda:{self._cuda.index}'
        LOG.info('%s', self.describe())

    def _cached(self, output, confidence):
        return cached_engine(self._onnx, output=output, confidence=confidence,
                             running=self._running, **self._build)

    def _load(self, engine_path):
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise ModelFileError(f'{engine_path}: no such TensorRT engine file')
        info = read_sidecar(engine_path)
        check_platform(engine_path, info, self._running)
        return EngineRunner(self._cuda, engine_path, info)

    def _runner(self, output, confidence):
        for runner in self._runners:
            if runner.output == output and (runner.confidence or not confidence):
                return runner
        wanted = variant_name(output, confidence)
        if self._onnx is None:
            have = ', '.join(r.variant for r in self._runners)
            raise ModelFileError(
                f'{self.path}: this engine outputs {have}; {wanted} needs an engine built for '
                'it: give the tensorrt backend the ONNX model instead (it builds and caches '
                f'the engine with output={output!r}, confidence={bool(confidence)}), or ask for '
                "what the engine has (upsample 'nearest' for labels, no confidence)")
        LOG.warning('%s: %s asked for; loading (or building, on first use) that engine',
                    self.path, wanted)
        runner = self._load(self._cached(output, confidence))
        self._runners.append(runner)
        return runner

    def run(self, images, output='labels', confidence=False):
        """Segment uint8 NHWC ``images`` at the model size; see ``Backend``."""
        check_batch(self, images)
        if output not in ('labels', 'logits'):
            raise ValueError(f"output must be 'labels' or 'logits', got {output!r}")
        values = self._runner(output, confidence).run(images)
        result = {output: values[LABELS_OUTPUT if output == 'labels' else LOGITS_OUTPUT]}
        if confidence:
            result['confidence'] = values[CONFIDENCE_OUTPUT]
        return result

    def describe(self):
        """Return a one-line description for logs and diagnostics."""
        running = self._running
        return (f'{super().describe()} ({self.precision}, TensorRT '
                f"{running['tensorrt_version']}, {running['gpu_name']}, {self.engine_path})")

    def close(self):
        """Release the engines and CUDA buffers."""
        self._runners = []
        self._cuda.close()
