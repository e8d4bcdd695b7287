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
segment_node input and parameter checks without DDS: queues, gaps, stamps, descriptors.

The callbacks' queue keeps the newest ``qos_depth`` serialised messages and the worker
deserialises only what it takes; lost frames come from sequence numbers or header stamps.
"""

import threading
import time

from builtin_interfaces.msg import Time
from liteseg_ros.ros.node import cameras
from liteseg_ros.ros.node.cameras import (Camera, header_stamp_ns, sequence_gap, StampGaps,
                                          take_newest)
from liteseg_ros.ros.node.live import apply_live, check_changes, parameter_descriptor
from liteseg_ros.ros.node.parameters import (check_parameter, LIVE, NEXT_CONFIGURE,
                                             ParameterError, PARAMETERS, READ_ONLY)
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image


class Log:
    """A logger that keeps its messages."""

    def __init__(self):
        self.lines = []

    def warning(self, message, **kwargs):
        self.lines.append(message)

    error = warning


def image(stamp_ns, value=0, size=(4, 6)):
    msg = Image(height=size[0], width=size[1], encoding='mono8', step=size[1])
    msg.header.stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    msg.data = bytes([value]) * (size[0] * size[1])
    return serialize_message(msg)


def camera(depth):
    cam = Camera('cam', 'cam/image_raw', Image, {})
    cam.depth = depth
    return cam


def test_raw_subscription_callbacks_get_the_message_info():
    """Jazzy and Kilted: sequence numbers and receive times come with the public callback."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from types import SimpleNamespace

    assert cameras.MESSAGE_INFO
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('input_info_test', context=context)
        cam, wake, log = camera(1), threading.Condition(), Log()
        cam.topic = '/input_info_test/image_raw'
        settings = SimpleNamespace(qos_reliability='reliable', qos_depth=1)
        gate = cameras.subscribe_cameras(node, [cam], settings, wake, log)
        gate.start_taking()  # as the waiting worker does
        publisher = node.create_publisher(Image, cam.topic, QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 20
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        msg = Image(height=2, width=2, encoding='mono8', step=2, data=bytes(4))
        for _ in range(3):
            publisher.publish(msg)
        while 3 not in cam.sequences.values() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert list(cam.sequences.values()) == [3], cam.sequences  # publication sequence
        assert cam.counters.dropped_in_queue == 0 and len(cam.inbox) == 1  # newest kept
        (data, received, arrived), = cam.inbox
        assert 0 <= arrived - received < 5.0  # from the info's received_timestamp
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_header_stamp_is_read_from_the_serialised_message():
    for msg_type in (Image, CompressedImage):
        msg = msg_type()
        msg.header.stamp = Time(sec=1_700_000_123, nanosec=456_789)
        msg.header.frame_id = 'x'
        assert header_stamp_ns(serialize_message(msg)) == 1_700_000_123_000_456_789
    assert header_stamp_ns(b'\x00\x01') == 0  # too short
    assert header_stamp_ns(b'\x00\x00' + bytes(20)) == 0  # big-endian CDR: not read


def test_stamp_gaps_against_the_usual_period():
    gaps = StampGaps()
    period = 33_000_000
    stamps = [1_000_000_000 + i * period for i in range(6)]  # learns the period
    assert [gaps.gap(s) for s in stamps] == [0] * 6
    assert gaps.gap(stamps[-1] + 4 * period) == 3  # three frames missing
    assert gaps.gap(stamps[-1] + 5 * period) == 0
    assert gaps.gap(stamps[-1] + 5 * period + period // 3) == 0  # jitter, not loss
    assert gaps.gap(0) == 0 and gaps.gap(stamps[0]) == 0  # no stamp; time went back
    assert gaps.gap(stamps[-1] + 5 * period + 2 * 10**9) == 0  # a pause of the camera


def test_sequence_gaps_per_publisher():
    sequences = {}

    def info(gid, number):
        return {'publication_sequence_number': number, 'publisher_gid': {'data': [gid] * 16}}
    assert [sequence_gap(sequences, info(1, n)) for n in (1, 2, 5)] == [0, 0, 2]
    assert sequence_gap(sequences, info(2, 7)) == 0  # another publisher starts
    assert sequence_gap(sequences, info(1, 6)) == 0
    assert sequence_gap(sequences, {}) == 0


def test_queue_keeps_the_newest_and_never_deserialises_replaced_ones():
    """Depth 1: ten queued, nine replaced undeserialised (they are not even valid CDR)."""
    cam, wake, log = camera(1), threading.Condition(), Log()
    for index in range(9):
        cameras._queue(cam, b'\x00\x01garbage%d' % index, {}, wake, log)
    cameras._queue(cam, image(5_000_000_000, 7), {}, wake, log)
    assert cam.counters.dropped_replaced == 9 and len(cam.inbox) == 1
    frame = take_newest(cam, wake, log)
    assert frame is not None and cam.counters.decode_errors == 0
    assert frame.rgb.shape == (4, 6, 3) and (frame.rgb == 7).all()
    assert take_newest(cam, wake, log) is None


def test_deeper_queue_decodes_every_message_and_rejects_bad_ones():
    cam, wake, log = camera(5), threading.Condition(), Log()
    for index, data in enumerate([image(1, 1), b'\x00\x01\x00\x00broken', image(3, 3)]):
        cameras._queue(cam, data, {'publication_sequence_number': index + 1}, wake, log)
    frame = take_newest(cam, wake, log)
    assert (frame.rgb == 3).all()
    counters = cam.counters
    assert (counters.received, counters.decode_errors, counters.dropped_replaced) == (3, 1, 1)
    assert 'do not deserialise' in counters.last_error


def test_lost_frames_are_counted_and_logged_when_they_arrive():
    cam, wake, log = camera(1), threading.Condition(), Log()
    for number in (1, 2, 6):
        cameras._queue(cam, image(number), {'publication_sequence_number': number,
                                            'received_timestamp': time.time_ns()}, wake, log)
    assert cam.counters.dropped_in_queue == 3
    assert len(log.lines) == 1 and 'FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA' in log.lines[0]
    # A gap seen by a callback that ran late: DDS replaced them while the executor was busy.
    late = time.time_ns() - int(cameras.LATE_S * 2e9)
    cameras._queue(cam, image(9), {'publication_sequence_number': 9,
                                   'received_timestamp': late}, wake, log)
    # replaced: 2 in the queue before, 7 and 8 in DDS, and 6 in the queue now
    assert cam.counters.dropped_in_queue == 3 and cam.counters.dropped_replaced == 2 + 2 + 1
    assert len(log.lines) == 1
    # Without message info: header stamps at a steady 100 ms, then a jump of four periods.
    cam = camera(1)
    for index in list(range(6)) + [9]:
        cameras._queue(cam, image(10**9 + index * 10**8), None, wake, log)
    assert cam.counters.dropped_in_queue == 3


def test_every_parameter_has_one_way_to_change():
    assert sorted(LIVE + NEXT_CONFIGURE + READ_ONLY) == sorted(PARAMETERS)
    for name in PARAMETERS:
        descriptor = parameter_descriptor(name)
        assert descriptor.description and descriptor.read_only == (name in READ_ONLY)
    with pytest.raises(ParameterError, match="parameter 'autostart': expected true or false"):
        check_parameter('autostart', 'yes')


def test_check_changes_names_the_parameter_and_applies_live_values():
    values, reason = check_changes([Parameter('overlay_alpha', value=1),
                                    Parameter('drivable_classes', value=['ROAD'])],
                                   class_names=['road', 'sidewalk'])
    assert reason == '' and values == {'overlay_alpha': 1.0, 'drivable_classes': ['ROAD']}
    _, reason = check_changes([Parameter('overlay_alpha', value=0.5),
                               Parameter('drivable_classes', value=['tarmac'])],
                              class_names=['road', 'sidewalk'])
    assert reason.startswith("parameter 'drivable_classes': 'tarmac' is not a class")
    _, reason = check_changes([Parameter('cameras', value=['a'])])
    assert reason.startswith("parameter 'cameras' is read-only")

    class Holder:
        overlay_alpha = 0.5
        drivable_classes = ['road']
        max_frame_age_ms = 1000.0
    settings, renderer = Holder(), Holder()
    apply_live({'overlay_alpha': 0.9, 'max_frame_age_ms': 5.0, 'model_path': 'x'}, settings,
               renderer)
    assert (settings.overlay_alpha, settings.max_frame_age_ms) == (0.9, 5.0)
    assert renderer.overlay_alpha == 0.9 and renderer.max_frame_age_ms == 1000.0
    assert not hasattr(settings, 'model_path')
    assert np.isfinite(parameter_descriptor('max_frame_age_ms').floating_point_range[0]
                       .to_value)


def test_take_serialized_pins_the_non_public_take():
    """take.py's Subscription.handle.take_message: (CDR bytes, info with sequence) or None."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message

    from liteseg_ros.ros.node.take import take_serialized

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('take_pin_test', context=context)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        subscription = node.create_subscription(Image, '/take_pin_test/image_raw',
                                                lambda data, info: None, qos, raw=True)
        publisher = node.create_publisher(Image, '/take_pin_test/image_raw', qos)
        assert take_serialized(subscription) is None
        msg = Image(height=2, width=3, encoding='mono8', step=3, data=bytes(range(6)))
        publisher.publish(msg)
        publisher.publish(msg)
        deadline = time.monotonic() + 10
        taken = None
        while taken is None and time.monotonic() < deadline:
            taken = take_serialized(subscription)
            time.sleep(0.01)
        data, info = taken
        assert isinstance(data, bytes) and deserialize_message(data, Image) == msg
        assert info['publication_sequence_number'] == 1 and info['received_timestamp'] > 0
        while (taken := take_serialized(subscription)) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert taken[1]['publication_sequence_number'] == 2
        assert take_serialized(subscription) is None
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
