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

"""ONNX Runtime backend: CPU by default, CUDA / TensorRT execution providers when present."""

import logging

from liteseg_ros.inference.backends.onnx_file import OnnxFileBackend

LOG = logging.getLogger(__name__)
GPU_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider')


class OnnxRuntimeBackend(OnnxFileBackend):
    """Runs an exported liteseg ONNX model in an ONNX Runtime session per requested output."""

    name = 'onnxruntime'

    def __init__(self, path, threads=None, providers=None):
        """
        Load ``path`` (or an ``onnx.ModelProto``); ``threads``: intra-op threads (None: default).

        ``providers`` None: the GPU execution providers this onnxruntime has, then CPU.
        ``load_backend`` maps a device name onto providers.
        """
        import onnxruntime as ort

        self._ort = ort
        self._load(path)
        available = ort.get_available_providers()
        self.providers = list(providers) if providers else (
            [p for p in GPU_PROVIDERS if p in available] + ['CPUExecutionProvider'])
        self.options = ort.SessionOptions()
        self.options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            self.options.intra_op_num_threads = int(threads)
        self.device = self.providers[0].replace('ExecutionProvider', '')

    def _compile(self, model, batch):
        return self._ort.InferenceSession(model.SerializeToString(), self.options,
                                          providers=self.providers)

    def _infer(self, session, names, images):
        return session.run(names, {session.get_inputs()[0].name: images})
