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
The node's input: per-camera state, subscriptions, and decoding the newest images.

Subscriptions are ``raw`` and belong to an :class:`InputGate`, a callback group the executor
runs only while the worker waits for frames: their callbacks queue the serialised message
(keep last ``qos_depth``) and wake the worker, which deserialises and decodes what it takes.
While the worker is busy the gate is closed, so DDS keeps only the newest ``qos_depth``
messages and a replaced frame is neither copied nor deserialised. Frames lost before the
node received them are counted from gaps in the publishers' sequence numbers, or, where rclpy
gives no message info, in the header stamps (docs/node.md, "Design").
"""

from collections import deque
from dataclasses import dataclass
import math
import statistics
import struct
import time

from liteseg_ros.image_codecs import decode_compressed, decode_image
from liteseg_ros.inference.outputs import output_topic, OUTPUTS
from liteseg_ros.ros.node.diagnostics import CameraCounters, CameraTimes, TRANSPORT_LOSS_HINT
from liteseg_ros.ros.node.parameters import ParameterError
from liteseg_ros.ros.node.publishing import create_publishers, destroy_publishers, qos_profile
from liteseg_ros.ros.node.take import take_serialized
import numpy as np
from rclpy.callback_groups import CallbackGroup
from rclpy.expand_topic_name import expand_topic_name
from rclpy.serialization import deserialize_message
from rclpy.subscription import Subscription
from rclpy.validate_full_topic_name import validate_full_topic_name
from sensor_msgs.msg import CompressedImage, Image

# rclpy passes the message info to two-argument callbacks from Jazzy on; older: stamps only.
MESSAGE_INFO = hasattr(Subscription, 'CallbackType')
CDR_STAMP = struct.Struct('<iI')  # header.stamp, the first field, after the CDR header
LOSS_LOG_PERIOD_S = 10.0
# A gap seen by a callback running this late (DDS reception to callback) is the node's own
# executor falling behind, not transport loss: counted as replaced, as are the gaps of the
# first message after the gate opened (DDS replaced frames while the worker was busy).
LATE_S = 0.05
PAUSE_NS = 1_000_000_000


@dataclass
class Frame:
    """A decoded image waiting for the worker."""

    rgb: np.ndarray
    header: object
    received: float  # time.monotonic() when DDS received the message (as far as known)
    taken: float  # time.monotonic() when the worker took it from the subscription
    ready: float  # time.monotonic() when it was decoded


class Camera:
    """One camera: its input topic, subscription, queue, publishers, counters and times."""

    def __init__(self, name, topic, msg_type, publishers):
        """Set up camera ``name`` reading ``msg_type`` from ``topic``."""
        self.name = name
        self.topic = topic
        self.msg_type = msg_type
        self.publishers = publishers
        self.subscription = None
        self.inbox = deque()  # (serialised message, received, arrived) for the worker
        self.depth = 1  # qos_depth: older queued messages are replaced
        self.sequences = {}  # publisher gid -> last publication sequence number
        self.stamps = StampGaps()
        self.closed_ns = 0  # the gate was closed this long since the last message
        self.last_source = None  # (sequence number, source timestamp) of the last message
        self.counters = CameraCounters()
        self.times = CameraTimes()
        self.reported = (CameraCounters(), time.monotonic())  # at the last diagnostics


class InputGate(CallbackGroup):
    """
    The callback group of the image subscriptions: executable only while the worker waits.

    The executor leaves a closed group's subscriptions out of its wait set; :meth:`start_taking`
    wakes it through a guard condition so that it takes the waiting messages.
    """

    def __init__(self, node, cameras):
        """Create the gate, closed, for ``cameras`` of ``node``."""
        super().__init__()
        self.is_open = False
        self.closed_at = 0  # time.monotonic_ns() when it closed
        self.cameras = cameras
        self.guard = node.create_guard_condition(lambda: None)

    def can_execute(self, entity):
        return self.is_open

    def beginning_execution(self, entity):
        return self.is_open

    def ending_execution(self, entity):
        pass

    def count_closed(self):
        """Add the time closed so far to each camera (frames DDS may have replaced)."""
        if not self.is_open and self.closed_at:
            now = time.monotonic_ns()
            for camera in self.cameras:
                camera.closed_ns += now - self.closed_at
            self.closed_at = now

    def start_taking(self):
        """Let the executor take messages (worker thread); count how long it was closed."""
        if not self.is_open:
            self.count_closed()
            self.is_open = True
            self.guard.trigger()

    def stop_taking(self):
        """Leave messages in DDS, newest ``qos_depth`` kept, while the worker is busy."""
        if self.is_open:
            self.closed_at = time.monotonic_ns()
        self.is_open = False


class StampGaps:
    """
    Frames missing between header stamps, against the median of the recent periods.

    A gap longer than PAUSE_NS is taken for a camera that paused, not for lost frames.
    """

    def __init__(self):
        """Start with no stamp seen."""
        self.last = 0
        self.periods = deque(maxlen=15)

    def gap(self, stamp_ns):
        """Return how many frames are missing before the one stamped ``stamp_ns`` (ns)."""
        last, self.last = self.last, stamp_ns
        if not stamp_ns or not last or stamp_ns <= last:
            return 0
        delta = stamp_ns - last
        period = statistics.median(self.periods) if len(self.periods) >= 4 else 0
        self.periods.append(delta)
        if not period or delta < 1.5 * period or delta > PAUSE_NS:
            return 0
        return int(round(delta / period)) - 1


def _check_topic(node, name, topic):
    try:
        validate_full_topic_name(expand_topic_name(topic, node.get_name(),
                                                   node.get_namespace()))
    except Exception as exc:
        raise ParameterError(f"parameter 'cameras': {name!r} does not make a valid topic name "
                             f'({topic}): {exc}') from exc


def create_cameras(node, settings):
    """Return a Camera with its output publishers for each camera of ``settings``."""
    compressed = settings.transport == 'compressed'
    suffix = '/image_raw/compressed' if compressed else '/image_raw'
    qos = qos_profile(settings.output_qos_reliability, settings.output_qos_depth)
    cameras = []
    try:
        for name in settings.cameras:
            for topic in [name + suffix] + [output_topic(name, o) for o in OUTPUTS]:
                _check_topic(node, name, topic)
            cameras.append(Camera(name, name + suffix, CompressedImage if compressed else Image,
                                  create_publishers(node, name, qos)))
    except Exception:
        release_cameras(node, cameras)
        raise
    return cameras


def subscribe_cameras(node, cameras, settings, wake, logger):
    """
    Subscribe to each camera's input topic; return the InputGate of the subscriptions.

    The callbacks queue messages for the worker; ``wake`` is the worker's
    threading.Condition (on the node's lock, which guards the queues and counters).
    """
    qos = qos_profile(settings.qos_reliability, settings.qos_depth)
    gate = InputGate(node, cameras)
    for camera in cameras:
        camera.depth = settings.qos_depth
        camera.inbox.clear()
        camera.sequences.clear()
        camera.stamps = StampGaps()

        # rclpy passes the message info only to callbacks that require two arguments.
        def with_info(data, info, camera=camera):
            _queue(camera, data, info, wake, logger)

        def without_info(data, camera=camera):
            _queue(camera, data, None, wake, logger)

        callback = with_info if MESSAGE_INFO else without_info
        camera.subscription = node.create_subscription(camera.msg_type, camera.topic,
                                                       callback, qos, raw=True,
                                                       callback_group=gate)
    return gate


def take_waiting(camera, wake, logger):
    """Queue the messages waiting in DDS for ``camera`` (worker thread, gate closed)."""
    for _ in range(camera.depth):
        taken = take_serialized(camera.subscription)
        if taken is None:
            return
        _queue(camera, taken[0], taken[1], wake, logger)


def _queue(camera, data, info, wake, logger):
    """Queue a serialised message for the worker (executor thread); count lost frames."""
    arrived = time.monotonic()
    info = info if isinstance(info, dict) else {}
    received = _received_time(arrived, info)
    with wake:
        if info.get('publication_sequence_number'):
            lost = sequence_gap(camera.sequences, info)
        else:
            lost = camera.stamps.gap(header_stamp_ns(data))
        counters = camera.counters
        replaced, lost = _split_gap(camera, lost, info, arrived - received)
        counters.dropped_replaced += replaced
        counters.dropped_in_queue += lost
        while len(camera.inbox) >= camera.depth:
            camera.inbox.popleft()
            counters.dropped_replaced += 1
        camera.inbox.append((data, received, arrived))
        wake.notify_all()
    if lost:
        logger.warning(f"camera '{camera.name}': {lost} frames on {camera.topic} were lost "
                       f'before the node received them. {TRANSPORT_LOSS_HINT}',
                       throttle_duration_sec=LOSS_LOG_PERIOD_S)


def _split_gap(camera, gap, info, delay):
    """
    Split a gap into (frames DDS replaced while the node was busy, frames lost in transport).

    At most as many frames as arrived while the gate was closed can have been replaced: the
    publisher's period comes from the source timestamps and sequence numbers. A callback
    running ``delay`` > LATE_S after DDS received the message means a busy executor.
    """
    closed_ns, camera.closed_ns = camera.closed_ns, 0
    sequence, source = info.get('publication_sequence_number'), info.get('source_timestamp')
    last, camera.last_source = camera.last_source, (sequence, source)
    if not gap:
        return 0, 0
    if info.get('received_timestamp') and delay > LATE_S:
        return gap, 0
    if not closed_ns:
        return 0, gap
    if last and last[0] and last[1] and sequence and source and sequence > last[0] \
            and source > last[1]:
        period = (source - last[1]) / (sequence - last[0])
        replaced = min(gap, math.ceil(closed_ns / period))
        return replaced, gap - replaced
    return gap, 0  # no way to tell: the node was busy meanwhile


def header_stamp_ns(data):
    """Return the header stamp (ns) of a serialised Image or CompressedImage, 0 if unknown."""
    if len(data) < 4 + CDR_STAMP.size or data[1] != 1:  # little-endian CDR only
        return 0
    sec, nanosec = CDR_STAMP.unpack_from(data, 4)
    return max(sec, 0) * 1_000_000_000 + nanosec


def unsubscribe_cameras(node, cameras, gate=None):
    """Destroy the cameras' subscriptions (and the guard condition of their ``gate``)."""
    if gate is not None:
        gate.stop_taking()
        node.destroy_guard_condition(gate.guard)
    for camera in cameras:
        if camera.subscription is not None:
            node.destroy_subscription(camera.subscription)
            camera.subscription = None


def release_cameras(node, cameras):
    """Destroy the cameras' subscriptions and publishers."""
    unsubscribe_cameras(node, cameras)
    for camera in cameras:
        destroy_publishers(node, camera.publishers)


def sequence_gap(sequences, info):
    """
    Return how many messages a publisher sent that never arrived (0 when unknown).

    ``sequences`` maps a publisher gid to the last sequence number seen and is updated from
    ``info``, the message info of a received message (sequence numbers: Jazzy and later; the
    gid: Kilted and later).
    """
    sequence = info.get('publication_sequence_number')
    if not sequence:
        return 0
    gid = info.get('publisher_gid')
    key = bytes(gid.get('data', b'')) if isinstance(gid, dict) else b''
    last = sequences.get(key)
    sequences[key] = sequence
    return max(sequence - last - 1, 0) if last is not None and sequence > last else 0


def _received_time(now, info):
    """Return time.monotonic() when DDS received the message (``now`` when unknown)."""
    stamp = info.get('received_timestamp')  # ns, system clock
    if stamp:
        return now - min(max(time.time_ns() - stamp, 0) / 1e9, 10.0)
    return now


def take_newest(camera, lock, logger):
    """
    Take every message queued for ``camera``; return the newest decoded Frame or None.

    Each is deserialised and decoded (bad ones are rejected, counted and logged, never
    raised); an older good frame taken in the same call counts as replaced. ``lock`` guards
    the queue and the counters.
    """
    with lock:
        queued = list(camera.inbox)
        camera.inbox.clear()
    newest = None
    for data, received, _ in queued:
        now = time.monotonic()
        msg = None
        try:
            msg = deserialize_message(data, camera.msg_type)
            rgb = (decode_compressed(msg) if camera.msg_type is CompressedImage
                   else decode_image(msg))
        except Exception as exc:  # ImageDecodeError, or anything a broken message does
            _reject(msg, len(data), camera, exc, lock, logger)
            continue
        ready = time.monotonic()
        with lock:
            counters = camera.counters
            counters.received += 1
            camera.times.decode.append((ready - now) * 1e3)
            if newest is not None:
                counters.dropped_replaced += 1
        newest = Frame(rgb, msg.header, received, now, ready)
    return newest


def _describe(msg, size):
    if msg is None:
        return f'{size} bytes that do not deserialise'
    try:
        if isinstance(msg, CompressedImage):
            return f"format '{msg.format}', {len(msg.data)} bytes"
        return (f"encoding '{msg.encoding}', {msg.width}x{msg.height}, step {msg.step}, "
                f'{len(msg.data)} bytes')
    except Exception:  # pragma: no cover - a message without the usual fields
        return type(msg).__name__


def _reject(msg, size, camera, exc, lock, logger):
    what = _describe(msg, size)
    with lock:
        counters = camera.counters
        counters.received += 1
        counters.decode_errors += 1
        count = counters.decode_errors
        counters.last_error = f'rejected image ({what}): {exc}'
    logger.error(f"camera '{camera.name}': rejected an image on {camera.topic} ({what}): {exc} "
                 f'[{count} rejected so far]', throttle_duration_sec=1.0)
