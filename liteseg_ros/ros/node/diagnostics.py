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
The node's diagnostics: counters in, statuses out.

:func:`node_status` and :func:`camera_status` are pure functions of counter snapshots (no
rclpy, no clock): the node copies its counters under its lock and publishes what they return
on ``/diagnostics`` through :func:`diagnostic_array`. docs/node.md lists the values and levels.
"""

from collections import deque
from dataclasses import dataclass, field, fields
import math
from typing import NamedTuple

import numpy as np

OK, WARN, ERROR = 0, 1, 2  # the levels of diagnostic_msgs/DiagnosticStatus
WINDOW = 200  # frames kept for latency percentiles
# Why frames go missing before the node receives them, and the fixes (docs/troubleshooting.md).
TRANSPORT_LOSS_HINT = (
    'Likely cause: large best-effort frames over UDP (Fast DDS uses UDP loopback with '
    'ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST or without shared memory) overflowing the socket '
    'buffers. Fixes: shared memory (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA in both processes), '
    'reliable QoS (qos_reliability: reliable, and a reliable publisher), or larger socket '
    'buffers (sysctl net.core.rmem_max); see docs/troubleshooting.md')


class Status(NamedTuple):
    """One diagnostic status: name, level (OK, WARN or ERROR), message and key/values."""

    name: str
    level: int
    message: str
    values: dict


@dataclass
class CameraCounters:
    """A camera's frame counters since configure (the node increments them)."""

    received: int = 0
    published: int = 0
    dropped_replaced: int = 0
    dropped_in_queue: int = 0  # lost before the node received them (transport)
    dropped_stale: int = 0
    decode_errors: int = 0
    inference_errors: int = 0
    skipped_no_subscribers: int = 0
    multi_camera_batched: int = 0
    last_batch_size: int = 0
    last_error: str = ''

    def dropped(self):
        """Return the frames dropped: lost in transport, replaced by a newer one, or stale."""
        return self.dropped_replaced + self.dropped_in_queue + self.dropped_stale

    def copy(self):
        """Return a snapshot, to report or to compare with later."""
        return CameraCounters(**{f.name: getattr(self, f.name) for f in fields(self)})


def _window():
    return deque(maxlen=WINDOW)


@dataclass
class CameraTimes:
    """A camera's recent per-frame times in ms (the last WINDOW frames)."""

    latency: deque = field(default_factory=_window)  # received to published
    overhead: deque = field(default_factory=_window)  # latency minus backend time
    processing: deque = field(default_factory=_window)  # outputs and publishing
    queue_wait: deque = field(default_factory=_window)  # waiting for the busy worker
    decode: deque = field(default_factory=_window)

    def copy(self):
        """Return a snapshot holding tuples."""
        return CameraTimes(**{f.name: tuple(getattr(self, f.name)) for f in fields(self)})


@dataclass
class BatchCounters:
    """The node's batches since it was created: count, sizes and backend times (ms)."""

    batches: int = 0
    sizes: dict = field(default_factory=dict)  # batch size -> count
    backend_ms: deque = field(default_factory=_window)

    def add(self, size, backend_ms):
        """Count one batch of ``size`` frames that took ``backend_ms`` in the backend."""
        self.batches += 1
        self.sizes[size] = self.sizes.get(size, 0) + 1
        self.backend_ms.append(backend_ms)

    def copy(self):
        """Return a snapshot."""
        return BatchCounters(self.batches, dict(self.sizes), tuple(self.backend_ms))


def percentile(values, q):
    """Return the q-th percentile of values, NaN when there are none."""
    return float(np.percentile(np.fromiter(values, float), q)) if len(values) else math.nan


def node_status(state, model, batches, configure_error='', confidence=None):
    """
    Return the node's Status.

    ``state`` is the lifecycle state label, ``model`` a description or '', ``batches`` a
    BatchCounters snapshot, ``confidence`` None or (failures in a row, last error, seconds to
    the next try) while computing confidence fails (``Pipeline.confidence_status``). ERROR
    when configure failed, WARN when not active or while confidence fails, OK otherwise.
    """
    values = {
        'state': state, 'model': model or '-',
        'batches': str(batches.batches),
        'batch_sizes': ' '.join(f'{k}:{v}' for k, v in sorted(batches.sizes.items())) or '-',
        'backend_ms_p50': f'{percentile(batches.backend_ms, 50):.1f}',
        'confidence': 'ok' if confidence is None else 'paused',
        'confidence_failures': str(confidence[0] if confidence else 0),
        'confidence_error': confidence[1] if confidence else '-',
    }
    if configure_error:
        return Status('node', ERROR, f'configure failed: {configure_error}', values)
    if state != 'active':
        return Status('node', WARN, f'{state}, not segmenting', values)
    if confidence is not None:
        failures, error, retry_s = confidence
        return Status('node', WARN, f'confidence failed {failures} times in a row, the '
                      f'confidence output pauses (next try in {retry_s:.1f} s): {error}', values)
    return Status('node', OK, 'active', values)


def _camera_values(topic, now, times, rates, backend, model):
    return {
        'topic': topic,
        'rate_hz': f'{rates[0]:.2f}',
        'input_rate_hz': f'{rates[1]:.2f}',
        'latency_p50_ms': f'{percentile(times.latency, 50):.1f}',
        'latency_p95_ms': f'{percentile(times.latency, 95):.1f}',
        'overhead_p50_ms': f'{percentile(times.overhead, 50):.1f}',
        'overhead_p95_ms': f'{percentile(times.overhead, 95):.1f}',
        'queue_wait_p50_ms': f'{percentile(times.queue_wait, 50):.1f}',
        'queue_wait_p95_ms': f'{percentile(times.queue_wait, 95):.1f}',
        'decode_p50_ms': f'{percentile(times.decode, 50):.2f}',
        'processing_overhead_p50_ms': f'{percentile(times.processing, 50):.1f}',
        'processing_overhead_p95_ms': f'{percentile(times.processing, 95):.1f}',
        'frames_received': str(now.received),
        'frames_published': str(now.published),
        'dropped_replaced': str(now.dropped_replaced),
        'dropped_in_queue': str(now.dropped_in_queue),
        'dropped_stale': str(now.dropped_stale),
        'dropped': str(now.dropped()),
        'decode_errors': str(now.decode_errors),
        'inference_errors': str(now.inference_errors),
        'skipped_no_subscribers': str(now.skipped_no_subscribers),
        'last_batch_size': str(now.last_batch_size),
        'multi_camera_batched': str(now.multi_camera_batched),
        'last_error': now.last_error or '-',
        'backend': backend or '-',
        'model': model or '-',
    }


def camera_status(name, topic, now, before, elapsed_s, times, min_rate_hz=0.0, backend='',
                  model=''):
    """
    Return a camera's Status for the period between two CameraCounters snapshots.

    ``now`` and ``before`` are the counters at the end and at the start of the period,
    ``elapsed_s`` its length, ``times`` a CameraTimes snapshot. In this order of precedence:
    ERROR when inference failed or every message of the period was rejected; WARN when some
    were rejected, frames were lost before the node received them (the message names the
    likely cause and the fixes), frames were dropped, no image arrived, or (``min_rate_hz`` >
    0) the output rate is below ``min_rate_hz``; OK otherwise ('idle: no subscribers' when
    frames came but nobody listened).
    """
    received = now.received - before.received
    published = now.published - before.published
    dropped = now.dropped() - before.dropped()
    lost = now.dropped_in_queue - before.dropped_in_queue
    errors = now.decode_errors - before.decode_errors
    failures = now.inference_errors - before.inference_errors
    skipped = now.skipped_no_subscribers - before.skipped_no_subscribers
    elapsed_s = max(elapsed_s, 1e-6)
    rate = published / elapsed_s
    values = _camera_values(topic, now, times, (rate, received / elapsed_s), backend, model)
    if failures:
        level, message = ERROR, f'{failures} inference failures'
    elif errors and errors == received:
        level, message = ERROR, f'all {errors} images rejected'
    elif errors:
        level, message = WARN, f'{errors} images rejected'
    elif lost:
        level, message = WARN, (f'{lost} frames lost before the node received them. '
                                + TRANSPORT_LOSS_HINT)
    elif dropped:
        level, message = WARN, f'{dropped} frames dropped (behind or stale)'
    elif not received:
        level, message = WARN, f'no images on {topic}'
    elif skipped and not published:
        level, message = OK, 'idle: no subscribers'
    elif min_rate_hz and rate < min_rate_hz:
        level, message = WARN, f'rate {rate:.1f} Hz below min_rate_hz {min_rate_hz:g}'
    else:
        level, message = OK, 'ok'
    return Status(name, level, message, values)


def diagnostic_array(statuses, stamp, node_name, hardware_id):
    """Wrap Statuses into a ``diagnostic_msgs/DiagnosticArray`` ('<node_name>: <name>')."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    messages = []
    for status in statuses:
        message = DiagnosticStatus()
        message.level = bytes([status.level])
        message.name = f'{node_name}: {status.name}'
        message.message = status.message
        message.hardware_id = hardware_id
        message.values = [KeyValue(key=k, value=str(v)) for k, v in status.values.items()]
        messages.append(message)
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = messages
    return array
