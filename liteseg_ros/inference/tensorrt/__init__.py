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
TensorRT engines: build (strongly typed, fp32 / fp16 / int8 from the ONNX), cache, describe.

The engine is the exported ONNX model fused with its pre- and post-processing: uint8 NHWC
frames in, uint8 class ids out (optionally confidence, or logits). Its precision is the ONNX
model's (float16 types, or int8 Q/DQ nodes; docs/inference.md, "Precision"). An engine only
runs with the TensorRT version and GPU it was built for, so each has a sidecar
``<engine>.json`` checked before loading, and engines built on first run are cached under a
key of the ONNX content, TensorRT version, GPU, precision and int8 scheme, shapes and outputs.

Modules, by job:

- ``runtime``: ``import_tensorrt`` (a clear TensorRTNotAvailable when missing), the logger;
- ``cuda_memory``: ``CudaMemory`` (device, stream, pinned host / device buffers);
- ``sidecar``: the engine description, shapes, platform checks, rebuild advice;
- ``build``: the ONNX graph TensorRT parses, the precision checks and ``build_engine``;
- ``cache``: ``cache_key`` and ``cached_engine``.

TensorRT and CUDA are imported only inside the functions that need them, so this package
imports on machines without them.
"""

from liteseg_ros.inference.tensorrt.build import (build_engine, check_can_build, onnx_precision,
                                                  tensorrt_onnx)
from liteseg_ros.inference.tensorrt.cache import (cache_key, cached_engine, default_cache_dir,
                                                  engine_cache_key)
from liteseg_ros.inference.tensorrt.cuda_memory import CudaMemory, HostDeviceBuffer
from liteseg_ros.inference.tensorrt.runtime import (import_tensorrt, MIN_TENSORRT_MAJOR,
                                                    tensorrt_missing_message,
                                                    TensorRTNotAvailable, trt_logger)
from liteseg_ros.inference.tensorrt.sidecar import (check_engine_bytes, check_platform,
                                                    DEFAULT_MAX_BATCH, ENGINE_FORMAT,
                                                    engine_shapes, file_sha256,
                                                    platform_differences, PLATFORM_FIELDS,
                                                    platform_info, PRECISIONS, read_sidecar,
                                                    rebuild_advice, rebuild_command,
                                                    RECIPE_VERSION, variant_name)

__all__ = ['build_engine', 'cache_key', 'cached_engine', 'check_can_build',
           'check_engine_bytes', 'check_platform', 'CudaMemory', 'default_cache_dir',
           'DEFAULT_MAX_BATCH', 'engine_cache_key', 'ENGINE_FORMAT', 'engine_shapes',
           'file_sha256', 'HostDeviceBuffer', 'import_tensorrt', 'MIN_TENSORRT_MAJOR',
           'onnx_precision', 'PLATFORM_FIELDS', 'platform_differences', 'platform_info',
           'PRECISIONS', 'read_sidecar', 'rebuild_advice', 'rebuild_command', 'RECIPE_VERSION',
           'tensorrt_missing_message', 'tensorrt_onnx', 'TensorRTNotAvailable', 'trt_logger',
           'variant_name']
