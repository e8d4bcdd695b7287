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
The node's input: per-camera state, subscriptions, and taking and decoding images.

The image subscriptions are never run by the executor; the worker calls :func:`take_newest`
when it is ready for the next frame, so a frame that a newer one replaced in the DDS queue is
never deserialised (docs/node.md, "Design").
"""

from dataclasses import dataclass
import time

from liteseg_ros.image_codecs import decode_compressed, decode_image
from liteseg_ros.inference.outputs import output_topic, OUTPUTS
from liteseg_ros.ros.node.diagnostics import CameraCounters, CameraTimes
from liteseg_ros.ros.node.parameters import ParameterError
from liteseg_ros.ros.node.publishing import create_publishers, destroy_publishers, qos_profile
from liteseg_ros.ros.node.take import subscribe, take
import numpy as np
from rclpy.expand_topic_name import expand_topic_name
from rclpy.validate_full_topic_name import validate_full_topic_name
from sensor_msgs.msg import CompressedImage, Image

EXTRA_TAKES = 8  # more than the queue depth per call: messages keep arriving meanwhile


@dataclass
class Frame:
    """A decoded image waiting for the worker."""

    rgb: np.ndarray
    header: object
    received: float  # time.monotonic() when DDS received the message (as far as known)
    taken: float  # time.monotonic() when the worker took it from the subscription
    ready: float  # time.monotonic() when it was decoded


class Camera:
    """One camera: its input topic, subscription, publishers, counters and times."""

    def __init__(self, name, topic, msg_type, publishers):
        """Set up camera ``name`` reading ``msg_type`` from ``topic``."""
        self.name = name
        self.topic = topic
        self.msg_type = msg_type
        self.publishers = publishers
        self.subscription = None
        self.sequences = {}  # publisher gid -> last publication sequence number
        self.counters = CameraCounters()
        self.times = CameraTimes()
        self.reported = (CameraCounters(), time.monotonic())  # at the last diagnostics


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


def subscribe_cameras(node, cameras, settings):
    """Subscribe to each camera's input topic (messages are taken by the worker)."""
    qos = qos_profile(settings.qos_reliability, settings.qos_depth)
    for camera in cameras:
        camera.subscription = subscribe(node, camera.msg_type, camera.topic, qos)


def unsubscribe_cameras(node, cameras):
    """Destroy the cameras' subscriptions."""
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
    Return how many messages a publisher sent that were never taken (0 when unknown).

    ``sequences`` maps a publisher gid to the last sequence number seen and is updated from
    ``info``, the message info of a taken message (sequence numbers: Jazzy and later).
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


def take_newest(camera, limit, lock, logger):
    """
    Take every message waiting for ``camera``; return the newest decoded Frame or None.

    Takes at most ``limit`` messages. Each is decoded (bad ones are rejected, counted and
    logged, never raised); an older good frame taken in the same call counts as replaced.
    Gaps in a publisher's sequence numbers count frames that DDS replaced (keep last
    ``qos_depth``) or lost before the worker came to take them. ``lock`` guards the counters.
    """
    newest = None
    for _ in range(limit):
        taken = take(camera.subscription, camera.msg_type)
        if taken is None:
            break
        now = time.monotonic()
        msg, info = taken
        received = _received_time(now, info)
        lost = sequence_gap(camera.sequences, info)
        try:
            rgb = (decode_compressed(msg) if camera.msg_type is CompressedImage
                   else decode_image(msg))
        except Exception as exc:  # ImageDecodeError, or anything a broken message does
            _reject(msg, camera, exc, lost, lock, logger)
            continue
        ready = time.monotonic()
        with lock:
            counters = camera.counters
            counters.received += 1
            counters.dropped_in_queue += lost
            camera.times.decode.append((ready - now) * 1e3)
            if newest is not None:
                counters.dropped_replaced += 1
        newest = Frame(rgb, msg.header, received, now, ready)
    return newest


def _describe(msg):
    try:
        if isinstance(msg, CompressedImage):
            return f"format '{msg.format}', {len(msg.data)} bytes"
        return (f"encoding '{msg.encoding}', {msg.width}x{msg.height}, step {msg.step}, "
                f'{len(msg.data)} bytes')
    except Exception:  # pragma: no cover - a message without the usual fields
        return type(msg).__name__


def _reject(msg, camera, exc, lost, lock, logger):
    what = _describe(msg)
    with lock:
        counters = camera.counters
        counters.received += 1
        counters.dropped_in_queue += lost
        counters.decode_errors += 1
        count = counters.decode_errors
        counters.last_error = f'rejected image ({what}): {exc}'
    logger.error(f"camera '{camera.name}': rejected an image on {camera.topic} ({what}): {exc} "
                 f'[{count} rejected so far]', throttle_duration_sec=1.0)
