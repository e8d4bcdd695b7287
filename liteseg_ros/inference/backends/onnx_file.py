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

"""What the backends that run exported ONNX files share: loading, fusing, batching."""

from liteseg_ros.inference.backends.base import Backend, check_batch, check_classes
from liteseg_ros.inference.model_files import (check_fused_outputs, load_onnx, ModelFileError,
                                               onnx_metadata)
from liteseg_ros.inference.onnx_graph import (CONFIDENCE_OUTPUT, LABELS_OUTPUT, LOGITS_OUTPUT,
                                              split_final_upsample, wrap_pre_post)
from liteseg_ros.inference.upsampled_argmax import upsampled_argmax
import numpy as np

#: The graph ``run`` uses for labels when the host finds them (``upsampled_argmax``).
LOW_RES_LOGITS = 'low_res_logits'
#: ``path`` of a backend made from an in-memory model.
IN_MEMORY = '<in-memory ONNX model>'


class OnnxFileBackend(Backend):
    """
    A backend running a liteseg ONNX export; plain logits models are fused in memory.

    A plain model gets uint8 NHWC input, in-graph normalisation and ArgMax (and confidence when
    asked) from ``wrap_pre_post`` (an int8 model: the uint8 frame as its quantized input); a
    fused export is checked for the outputs asked of it. Each (output, confidence, batch) is
    compiled once and cached. Subclasses implement
    ``_compile(model, batch)`` and ``_infer(compiled, names, images)``; with
    ``static_batches`` a dynamic-batch model is compiled once per batch size.

    Labels without confidence come from the graph cut before the model's final upsampling,
    with ``upsampled_argmax`` on the host: the same class ids, without upsampling and scanning
    every class plane at full resolution. ``upsample_on_host = False`` keeps the in-graph
    Resize and ArgMax (what a fused export has anyway); models whose final upsampling
    ``split_final_upsample`` does not take use the in-graph path too.
    """

    static_batches = False
    upsample_on_host = True

    def _load(self, source):
        """
        Read ``source`` and its liteseg metadata; refuse a class count its config disowns.

        ``source``: an ONNX file, or an in-memory ``onnx.ModelProto`` (the export's accuracy
        gate measures its candidates with the backend that will run them).
        """
        if hasattr(source, 'SerializeToString'):
            self.path, self._model = IN_MEMORY, source
        else:
            self.path, self._model = str(source), load_onnx(source)
        self.config, self.io = onnx_metadata(self._model, self.path)
        self.input_size = (int(self.io['height']), int(self.io['width']))
        batch = self.io.get('batch', 1)
        self.batch_size = None if batch == 'dynamic' else int(batch)
        self.fused = self.io.get('layout') == 'nhwc_uint8'
        self._compiled = {}
        self._split = None  # (cut model, scale) or False, on first use
        output = self._model.graph.output[0]
        if output.name == LOGITS_OUTPUT:  # a plain model: its class channels against its config
            check_classes(self.path, output.type.tensor_type.shape.dim[1].dim_value, self.config)

    def _compile(self, model, batch):
        raise NotImplementedError

    def _infer(self, compiled, names, images):
        raise NotImplementedError

    def compiled(self, output='labels', confidence=False, batch=None):
        """
        Return (cached) the compiled graph producing ``output`` (+ confidence).

        ``output``: 'labels', 'logits' or LOW_RES_LOGITS (the logits before the final
        upsampling; ``host_upsample`` says whether the model has such a cut).
        """
        key = (output, confidence, batch)
        if key not in self._compiled:
            if output == LOW_RES_LOGITS:
                model = wrap_pre_post(self.host_upsample()[0], self.config['mean'],
                                      self.config['std'], 'logits', uint8_into_int8=True)
            elif self.fused:
                check_fused_outputs(self.path, self.io, output, confidence, self.name)
                model = self._model
            else:
                model = wrap_pre_post(self._model, self.config['mean'], self.config['std'],
                                      output, confidence, uint8_into_int8=True)
            self._compiled[key] = self._compile(model, batch)
        return self._compiled[key]

    def host_upsample(self):
        """Return (cut model, scale) when labels can come from ``upsampled_argmax``, else None."""
        if self._split is None:
            self._split = (not self.fused and split_final_upsample(self._model)) or False
        return self._split or None

    def _batch_key(self, size):
        return size if self.static_batches and self.batch_size is None else None

    def run(self, images, output='labels', confidence=False):
        """Run on uint8 NHWC ``images`` at the model size; return a dict of numpy arrays."""
        check_batch(self, images)
        split = (output == 'labels' and not confidence and self.upsample_on_host
                 and self.host_upsample())
        if split:
            low = self._run_graph(LOW_RES_LOGITS, False, [LOGITS_OUTPUT], images)[0]
            return {'labels': upsampled_argmax(low, split[1])}
        names = [LABELS_OUTPUT if output == 'labels' else LOGITS_OUTPUT]
        if confidence:
            names.append(CONFIDENCE_OUTPUT)
        values = self._run_graph(output, confidence, names, images)
        return dict(zip(('labels' if output == 'labels' else 'logits', 'confidence'), values))

    def _run_graph(self, output, confidence, names, images):
        images = np.ascontiguousarray(images)
        size = self.batch_size
        if size not in (None, len(images)):
            # A fixed-batch model: model-sized chunks, the last one filled up with zero frames
            # whose outputs are dropped (as the TensorRT backend does).
            compiled = self.compiled(output, confidence)
            parts = []
            for start in range(0, len(images), size):
                chunk = images[start:start + size]
                count = len(chunk)
                if count < size:
                    chunk = np.concatenate([chunk, np.zeros((size - count,) + chunk.shape[1:],
                                                            chunk.dtype)])
                parts.append([value[:count] for value in self._infer(compiled, names, chunk)])
            return [np.concatenate(p) for p in zip(*parts)]
        compiled = self.compiled(output, confidence, self._batch_key(len(images)))
        return self._infer(compiled, names, images)

    def run_model_only(self, normalised):
        """Run the bare logits graph on float NCHW input (benchmarks)."""
        if self.fused:
            raise ModelFileError(f'{self.path}: a fused model has no float input')
        key = ('raw', self._batch_key(len(normalised)))
        if key not in self._compiled:
            self._compiled[key] = self._compile(self._model, key[1])
        return self._infer(self._compiled[key], [LOGITS_OUTPUT], normalised)[0]
