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

from liteseg_ros.inference.backends.base import Backend, check_batch, check_onnx_classes
from liteseg_ros.inference.model_files import (check_fused_outputs, load_onnx, ModelFileError,
                                               onnx_metadata)
from liteseg_ros.inference.onnx_graph import (CONFIDENCE_OUTPUT, LABELS_OUTPUT, LOGITS_OUTPUT,
                                              wrap_pre_post)
import numpy as np

LOG = logging.getLogger(__name__)
GPU_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider')


class OnnxRuntimeBackend(Backend):
    """
    Runs an exported liteseg ONNX model; plain logits models are fused in memory.

    A logits model gets uint8 input, in-graph normalisation and an in-graph ArgMax (and
    confidence when asked), built once per requested output and cached.
    """

    name = 'onnxruntime'

    def __init__(self, path, threads=None, providers=None):
        """
        Load ``path``; ``threads`` sets intra-op threads (None: ONNX Runtime's default).

        ``providers`` None: the GPU execution providers this onnxruntime has, then CPU.
        ``load_backend`` maps a device name onto providers.
        """
        import onnxruntime as ort

        self.path = str(path)
        self._ort = ort
        self._model = load_onnx(path)
        self.config, self.io = onnx_metadata(self._model, path)
        self.input_size = (int(self.io['height']), int(self.io['width']))
        batch = self.io.get('batch', 1)
        self.batch_size = None if batch == 'dynamic' else int(batch)
        self.fused = self.io.get('layout') == 'nhwc_uint8'
        available = ort.get_available_providers()
        self.providers = list(providers) if providers else (
            [p for p in GPU_PROVIDERS if p in available] + ['CPUExecutionProvider'])
        self.options = ort.SessionOptions()
        self.options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            self.options.intra_op_num_threads = int(threads)
        self._sessions = {}
        self.device = self.providers[0].replace('ExecutionProvider', '')
        check_onnx_classes(self.path, self._model, self.config)

    def session(self, output='labels', confidence=False):
        """Return (cached) the session producing ``output`` (+ confidence)."""
        key = (output, confidence)
        if key not in self._sessions:
            if self.fused:
                check_fused_outputs(self.path, self.io, output, confidence, self.name)
                model = self._model
            else:
                model = wrap_pre_post(self._model, self.config['mean'], self.config['std'],
                                      output, confidence)
            self._sessions[key] = self._ort.InferenceSession(
                model.SerializeToString(), self.options, providers=self.providers)
        return self._sessions[key]

    def run(self, images, output='labels', confidence=False):
        """Run on uint8 NHWC ``images`` at the model size; return a dict of numpy arrays."""
        check_batch(self, images)
        session = self.session(output, confidence)
        names = [LABELS_OUTPUT if output == 'labels' else LOGITS_OUTPUT]
        if confidence:
            names.append(CONFIDENCE_OUTPUT)
        input_name = session.get_inputs()[0].name
        if self.batch_size not in (None, len(images)):
            # A fixed-batch model: run frame by frame.
            parts = [session.run(names, {input_name: images[i:i + 1]})
                     for i in range(len(images))]
            values = [np.concatenate(p) for p in zip(*parts)]
        else:
            values = session.run(names, {input_name: images})
        return dict(zip(('labels' if output == 'labels' else 'logits', 'confidence'), values))

    def run_model_only(self, normalised):
        """Run the bare logits graph on float NCHW input (benchmarks)."""
        if self.fused:
            raise ModelFileError(f'{self.path}: a fused model has no float input')
        if 'raw' not in self._sessions:
            self._sessions['raw'] = self._ort.InferenceSession(
                self._model.SerializeToString(), self.options, providers=self.providers)
        return self._sessions['raw'].run(None, {'image': normalised})[0]
