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
segment_node parameters at runtime, on the node as a real process over real DDS.

Every parameter has a descriptor (ranges, read-only flags); invalid values are refused at once
with a reason naming the parameter and the allowed values, and the node keeps the old value;
live parameters change the very next frame's outputs; read-only ones say how to set them.
"""

from liteseg_ros.inference.visualize import colorize
from liteseg_ros.ros.messages import encoded_image_message
from liteseg_ros.sample_images import make_street_scene
import numpy as np
import pytest
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import DescribeParameters, GetParameters
import test_segment_node as base
from test_segment_node import (header, image_array, same_header, set_parameter, stamp_now,
                               wait_matched)

pytestmark = pytest.mark.ros
# The node fixtures of test_segment_node: its model, a test client, nodes as processes.
ros_context, model, client, run_node = base.ros_context, base.model, base.client, base.run_node

OUTPUTS = ('mask', 'color', 'overlay', 'drivable_area')


def describe(client, names):
    request = DescribeParameters.Request(names=list(names))
    response = client.call(DescribeParameters, '/segment_node/describe_parameters', request)
    return dict(zip(names, response.descriptors))


def get_values(client, names):
    request = GetParameters.Request(names=list(names))
    response = client.call(GetParameters, '/segment_node/get_parameters', request)
    return dict(zip(names, response.values))


def segment_one(client, publisher, frame):
    """Publish ``frame``; return its outputs {output: HxW(x3) array} from the node."""
    sent = header('cam0', stamp_now())
    publisher.publish(encoded_image_message(frame, 'rgb8', sent))

    def arrived():
        return all(any(same_header(m, sent) for m in client.received[('cam0', o)])
                   for o in OUTPUTS)
    client.spin_until(arrived, 60, 'the outputs of a frame')
    return {o: image_array([m for m in client.received[('cam0', o)] if same_header(m, sent)][0])
            for o in OUTPUTS}


def blend(frame, color, alpha):
    """Return the overlay written out here: (1 - alpha) * image + alpha * colour, rounded."""
    return np.rint((1.0 - alpha) * frame.astype(np.float64)
                   + alpha * color.astype(np.float64)).astype(np.uint8)


def assert_close(actual, expected, what):
    difference = np.abs(actual.astype(int) - expected.astype(int)).max()
    assert difference <= 1, '%s differs by up to %d' % (what, difference)


@pytest.fixture
def active_node(model, client, run_node):
    """Start a node on camera cam0 (alpha 0.25, drivable 'road'); subscribe the client."""
    node = run_node(model_path=str(model['onnx']), cameras=['cam0'], threads=1,
                    max_frame_age_ms=0, qos_reliability='reliable', qos_depth=2,
                    overlay_alpha=0.25, drivable_classes=['road'], diagnostics_period_s=0.2)
    client.subscribe('cam0', OUTPUTS)
    publisher = client.publisher('/cam0/image_raw')
    wait_matched(client, [publisher])
    client.wait_diagnostics('node', lambda level, message, v: message == 'active', 60,
                            'the node to become active')
    return node, publisher


def test_descriptors_give_types_ranges_and_read_only(client, active_node):
    """describe_parameters: ranges for numbers, read-only where a restart is needed."""
    d = describe(client, ['overlay_alpha', 'qos_depth', 'cameras', 'model_path',
                          'drivable_mode', 'batch_timeout_ms'])
    alpha = d['overlay_alpha']
    assert alpha.type == ParameterType.PARAMETER_DOUBLE and not alpha.read_only
    assert [(r.from_value, r.to_value) for r in alpha.floating_point_range] == [(0.0, 1.0)]
    assert 'live' in alpha.description
    depth = d['qos_depth']
    assert depth.read_only and depth.type == ParameterType.PARAMETER_INTEGER
    assert [(r.from_value, r.to_value) for r in depth.integer_range] == [(1, 10000)]
    assert d['cameras'].read_only and 'read-only' in d['cameras'].description
    assert not d['model_path'].read_only and 'next configure' in d['model_path'].description
    assert d['drivable_mode'].additional_constraints == 'one of %r, %r' % ('classes',
                                                                           'connected')
    assert d['batch_timeout_ms'].floating_point_range[0].to_value > 0


def test_invalid_values_are_refused_and_change_nothing(model, client, active_node):
    """Out-of-range and wrong-type values: refused with the reason; outputs unchanged."""
    _, publisher = active_node
    refused = [
        ('overlay_alpha', 7.0, 'overlay_alpha'),  # rclpy's range check
        ('overlay_alpha', 7, "parameter 'overlay_alpha': expected a number >= 0 and <= 1"),
        ('overlay_alpha', 'high', "parameter 'overlay_alpha': expected a number"),
        ('backend', 'nonsense', "parameter 'backend': expected one of 'auto', 'onnxruntime'"),
        ('drivable_mode', 'all', "expected one of 'classes', 'connected', got 'all'"),
        ('drivable_classes', ['tarmac'], "parameter 'drivable_classes': 'tarmac' is not a "
                                         'class of this model; allowed values'),
        ('max_frame_age_ms', -5.0, 'max_frame_age_ms'),
        ('batch_timeout_ms', True, "parameter 'batch_timeout_ms': expected a number"),
        ('threads', 2.5, "parameter 'threads': expected an integer >= 0 and <= 1024"),
    ]
    for name, value, reason in refused:
        got = set_parameter(client, name, value, successful=False)
        assert reason in got, (name, value, got)
    values = get_values(client, ['overlay_alpha', 'backend', 'drivable_classes'])
    assert values['overlay_alpha'].double_value == 0.25
    assert values['backend'].string_value == 'auto'
    assert list(values['drivable_classes'].string_array_value) == ['road']

    frame = make_street_scene(120, 200, seed=21)
    out = segment_one(client, publisher, frame)
    assert_close(out['overlay'], blend(frame, out['color'], 0.25), 'overlay at alpha 0.25')


def test_live_changes_apply_to_the_next_frame(model, client, active_node):
    """overlay_alpha and drivable_classes change the next frame's outputs, no reconfigure."""
    node, publisher = active_node
    class_names = model['plain'].config['class_names']
    palette = model['plain'].palette
    frame = make_street_scene(120, 200, seed=22)
    before = segment_one(client, publisher, frame)
    np.testing.assert_array_equal(before['color'], colorize(before['mask'], palette))
    assert_close(before['overlay'], blend(frame, before['color'], 0.25), 'overlay at 0.25')
    road = class_names.index('road')
    np.testing.assert_array_equal(before['drivable_area'], (before['mask'] == road) * 255)

    # The classes that cover the frame least and most, in another case than the model's.
    counts = np.bincount(before['mask'].ravel(), minlength=len(class_names))
    present = [i for i in np.argsort(counts) if counts[i]]
    chosen = sorted({int(present[0]), int(present[-1])} - {road}) or [int(present[0])]
    set_parameter(client, 'overlay_alpha', 0.8)
    set_parameter(client, 'drivable_classes', [class_names[i].upper() for i in chosen])
    after = segment_one(client, publisher, frame)
    np.testing.assert_array_equal(after['mask'], before['mask'])
    assert_close(after['overlay'], blend(frame, after['color'], 0.8), 'overlay at 0.8')
    assert np.abs(after['overlay'].astype(int) - before['overlay']).max() > 10
    np.testing.assert_array_equal(after['drivable_area'],
                                  np.isin(after['mask'], chosen).astype(np.uint8) * 255)
    assert not np.array_equal(after['drivable_area'], before['drivable_area'])
    assert 'configured' not in node.log().split('active: segmenting')[-1]  # no reconfigure


def test_read_only_parameters_say_how_to_set_them(client, active_node):
    """cameras, transport, qos_depth: refused at runtime, naming the params file / launch."""
    for name, value in (('cameras', ['cam9']), ('qos_depth', -3), ('transport', 'compressed')):
        reason = set_parameter(client, name, value, successful=False)
        assert reason.startswith("parameter '%s' is read-only" % name), reason
        assert 'params file' in reason and 'launch argument' in reason and 'restart' in reason
    values = get_values(client, ['cameras', 'qos_depth'])
    assert list(values['cameras'].string_array_value) == ['cam0']
    assert values['qos_depth'].integer_value == 2
