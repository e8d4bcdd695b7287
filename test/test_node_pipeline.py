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
The node's Pipeline without ROS: a real model, and confidence that fails for a while.

A failure to compute confidence (a transient CUDA out-of-memory, say) must not end confidence
until the next configure: the batch goes out without it, diagnostics report it, and it is
tried again after a back-off that doubles with each failure in a row.
"""

from fleet_bags import CallHook
from liteseg_ros.ros.node.diagnostics import BatchCounters, node_status, OK, WARN
from liteseg_ros.ros.node.parameters import PARAMETERS, validate_parameters
from liteseg_ros.ros.node.pipeline import CONFIDENCE_RETRY_MAX_S, CONFIDENCE_RETRY_S, Pipeline
from model_fixtures import street_image
import numpy as np
from onnx_models import onnx_model
import pytest


class Log:
    """Collects what the pipeline logs."""

    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(('info', text))

    def error(self, text):
        self.lines.append(('error', text))


class Clock:
    """A clock the test moves."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return onnx_model('t_128x256', tmp_path_factory)


def test_confidence_failures_are_reported_and_retried_after_a_back_off(model):
    values = {name: default for name, (default, _) in PARAMETERS.items()}
    values.update(model_path=str(model), threads=1)
    log, clock = Log(), Clock()
    pipeline = Pipeline.load(validate_parameters(values), '/segment', log)
    pipeline._clock = clock
    failing = {'calls': 0, 'until': 4}  # the first 4 confidence runs fail

    def before(call):
        failing['calls'] = call
        if call <= failing['until']:
            raise RuntimeError('CUDA out of memory')

    pipeline.segmenter_confidence = CallHook(pipeline.segmenter_confidence, before)
    frames = [street_image(128, 256, seed=3)]
    expected = pipeline.segmenter(frames)[0].mask

    def segment():
        results, _ = pipeline.segment(frames, confidence=True)
        np.testing.assert_array_equal(results[0].mask, expected)  # the batch always goes out
        return results[0].confidence

    delays = []
    for failures in range(1, 5):
        assert segment() is None and failing['calls'] == failures
        count, error, retry_s = pipeline.confidence_status()
        assert (count, error) == (failures, 'CUDA out of memory')
        delays.append(retry_s)
        status = node_status('active', 'm', BatchCounters(), confidence=(count, error, retry_s))
        assert status.level == WARN and 'CUDA out of memory' in status.message
        # Until the back-off ends, confidence is not asked of the model.
        clock.now += retry_s - 0.01
        assert segment() is None and failing['calls'] == failures
        clock.now += 0.01
    assert delays == [min(CONFIDENCE_RETRY_S * 2 ** i, CONFIDENCE_RETRY_MAX_S) for i in range(4)]
    assert [level for level, _ in log.lines].count('error') == 4
    # The fifth try works: confidence is back, and diagnostics are OK again.
    confidence = segment()
    assert confidence is not None and confidence.shape == expected.shape
    assert pipeline.confidence_status() is None
    assert log.lines[-1] == ('info', 'confidence works again after 4 failures')
    assert node_status('active', 'm', BatchCounters(), confidence=None).level == OK
    # A later failure starts the back-off from the first delay again.
    failing['until'] = 6
    assert segment() is None and failing['calls'] == 6
    assert pipeline.confidence_status() == (1, 'CUDA out of memory', CONFIDENCE_RETRY_S)
