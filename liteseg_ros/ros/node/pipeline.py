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
The node's model: loading it at configure, segmenting batches, rendering the outputs.

No rclpy here: a :class:`Pipeline` holds the Segmenters of one backend and the
``OutputRenderer`` of its classes; the worker feeds it frames and publishes what it renders.
"""

import time
from typing import NamedTuple

from liteseg_ros.inference.backends import DeviceUnavailable, load_backend, resolve_backend
from liteseg_ros.inference.outputs import OutputRenderer
from liteseg_ros.inference.segmenter import Segmenter
from liteseg_ros.inference.weights import resolve_model
from liteseg_ros.ros.node.parameters import ParameterError
import numpy as np

#: Seconds without confidence after a failure to compute it: the first, doubling with each
#: failure in a row up to the longest (a transient CUDA out-of-memory clears in seconds).
CONFIDENCE_RETRY_S = 1.0
CONFIDENCE_RETRY_MAX_S = 60.0


class ConfidenceFailure(NamedTuple):
    """Confidence failed ``failures`` times in a row, the last with ``error``."""

    failures: int
    error: str
    retry_at: float  # on the Pipeline's clock


def share_the_cpu(backend):
    """
    Keep ONNX Runtime's idle intra-op threads from spinning (they would busy-wait on cores).

    Between and after its parallel sections ONNX Runtime spins its worker threads by default:
    right for a benchmark that does nothing else, wrong in a node whose callbacks, DDS threads
    and publishing need the same cores while the model runs (measured: see docs/benchmarks.md).
    Applies to the sessions the backend creates from now on.
    """
    options = getattr(backend, 'options', None)
    if backend.name == 'onnxruntime' and hasattr(options, 'add_session_config_entry'):
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.add_session_config_entry('session.inter_op.allow_spinning', '0')


def _load_backend(settings, node_name, log):
    path = settings.model_path
    try:
        # A zoo name: its cached ONNX export (torch: checkpoint), downloaded on first use.
        path = resolve_model(path, settings.backend, say=log.info)
        backend_name = resolve_backend(path, settings.backend)
        log.info(f'loading {path} with the {backend_name} backend')
        return backend_name, load_backend(path, backend_name, device=settings.device,
                                          threads=settings.threads)
    except DeviceUnavailable as exc:
        raise ParameterError(f"parameter 'device': {exc}") from None
    except Exception as exc:
        raise RuntimeError(
            f"cannot load the model of parameter 'model_path' ({path}): {exc}. Fix the file or "
            f'point model_path at another one (ros2 param set {node_name} model_path FILE) and '
            'configure again') from exc


class Pipeline:
    """A loaded model: Segmenters (with and without confidence) and the output renderer."""

    def __init__(self, backend_name, segmenter, segmenter_confidence, renderer, description,
                 log, clock=time.monotonic):
        """
        Hold the parts made by :meth:`load`.

        ``log`` reports confidence failures and recoveries; ``clock`` (seconds) times the
        retries.
        """
        self.backend_name = backend_name
        self.segmenter = segmenter
        self.segmenter_confidence = segmenter_confidence
        self.renderer = renderer
        self.description = description
        # None while confidence works; replaced whole, so other threads read it consistently.
        self.confidence_failure = None
        self._log = log
        self._clock = clock

    @classmethod
    def load(cls, settings, node_name, log):
        """
        Load the model of ``settings``, run it once, and prepare the renderer.

        :raises ParameterError: an unusable device or drivable class.
        :raises RuntimeError: the model does not load or does not run; the message says what
            to do (``node_name`` is the node the user sets the parameter on).
        """
        backend_name, backend = _load_backend(settings, node_name, log)
        share_the_cpu(backend)
        segmenter = Segmenter(backend, settings.upsample, confidence=False)
        height, width = backend.input_size
        try:  # a first run catches models that load but cannot run, and warms the backend up
            segmenter([np.zeros((height, width, 3), np.uint8)])
        except Exception as exc:
            raise RuntimeError(f"the model of parameter 'model_path' ({settings.model_path}) "
                               f'loads but fails to run: {exc}') from exc
        try:
            renderer = OutputRenderer(segmenter.class_names, segmenter.palette,
                                      settings.overlay_alpha, settings.drivable_classes,
                                      settings.drivable_mode)
        except ValueError as exc:
            raise ParameterError(f"parameter 'drivable_classes': {exc}") from None
        return cls(backend_name, segmenter,
                   Segmenter(backend, settings.upsample, confidence=True), renderer,
                   f'{backend.describe()} ({settings.model_path})', log)

    def drivable_names(self):
        """Return the names of the drivable classes, as the model spells them."""
        return [self.renderer.class_names[i] for i in self.renderer.drivable_ids]

    def segment(self, frames, confidence):
        """
        Segment a batch; return (Segmentations, backend time in ms).

        With ``confidence``, the confidence is computed too. When that fails, the batch is
        segmented without it and confidence pauses: it is tried again after
        ``CONFIDENCE_RETRY_S``, doubling with each failure in a row up to
        ``CONFIDENCE_RETRY_MAX_S``; :meth:`confidence_status` reports it meanwhile.
        """
        now = self._clock()
        failure = self.confidence_failure
        confidence = confidence and (failure is None or now >= failure.retry_at)
        segmenter = self.segmenter_confidence if confidence else self.segmenter
        try:
            results = segmenter(frames)
        except Exception as exc:
            if not confidence:
                raise
            failures = 1 if failure is None else failure.failures + 1
            delay = min(CONFIDENCE_RETRY_S * 2 ** (failures - 1), CONFIDENCE_RETRY_MAX_S)
            self.confidence_failure = ConfidenceFailure(failures, str(exc), now + delay)
            self._log.error(f'computing confidence failed ({failures} in a row): {exc}; the '
                            f'confidence output pauses, next try in {delay:g} s')
            segmenter = self.segmenter
            results = segmenter(frames)
        else:
            if confidence and failure is not None:
                self.confidence_failure = None
                self._log.info(f'confidence works again after {failure.failures} failures')
        return results, segmenter.timings.get('total', 0.0)

    def confidence_status(self):
        """Return (failures in a row, last error, seconds to the next try), or None when ok."""
        failure = self.confidence_failure
        if failure is None:
            return None
        return failure.failures, failure.error, max(0.0, failure.retry_at - self._clock())

    def render(self, wanted, image, result):
        """Return {output: array or PNG bytes} of one frame's Segmentation."""
        return self.renderer.render(wanted, image, result.mask, result.confidence)
