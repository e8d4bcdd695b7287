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
A stand-in for tf2_ros (not installable from PyPI) that follows its documented lookup rules.

What the node relies on, as tf2_ros / tf2_py define it:

- ``Buffer.set_transform(transform, authority)`` and ``set_transform_static``: a
  ``TransformStamped`` gives the pose of ``child_frame_id`` in ``header.frame_id``; what a
  ``TransformListener`` does with each message of /tf and /tf_static.
- ``Buffer.lookup_transform(target_frame, source_frame, time, timeout=Duration())``: the pose
  of ``source_frame`` in ``target_frame`` at ``time`` through the tree; ``Time()`` (zero) is
  the latest time all links of the chain have. Dynamic links interpolate (linear translation,
  slerp) between the two stamps around ``time``; static links hold at every time. With a
  timeout it first waits, polling every 20 ms, until ``can_transform`` (as tf2_ros's Python
  Buffer does), then looks up and raises what the lookup raises.
- Errors, all ``TransformException``: ``LookupException`` (a frame nobody published),
  ``ConnectivityException`` (two trees), ``ExtrapolationException`` (a time before the
  oldest or after the newest data of a link), ``InvalidArgumentException`` (an empty frame).

:func:`install` puts it into ``sys.modules`` as ``tf2_ros``, ``tf2_ros.buffer`` and
``tf2_ros.transform_listener`` (with pytest's monkeypatch, undone after the test).
"""

import bisect
import math
import sys
import threading
import time
import types

from geometry_msgs.msg import TransformStamped
import numpy as np
from rclpy.duration import Duration


class TransformException(Exception):
    """Base of tf2's errors."""


class LookupException(TransformException):
    """A frame that does not exist."""


class ConnectivityException(TransformException):
    """Frames in two unconnected trees."""


class ExtrapolationException(TransformException):
    """A time outside the data of a link."""


class InvalidArgumentException(TransformException):
    """An empty frame id."""


class TimeoutException(TransformException):
    """Raised by tf2 only from the C++ API; here for completeness of the hierarchy."""


def quaternion(matrix):
    """Return (x, y, z, w) of a rotation matrix (Shepperd's method, any rotation)."""
    m = matrix
    candidates = [1 + m[0, 0] + m[1, 1] + m[2, 2], 1 + m[0, 0] - m[1, 1] - m[2, 2],
                  1 - m[0, 0] + m[1, 1] - m[2, 2], 1 - m[0, 0] - m[1, 1] + m[2, 2]]
    best = int(np.argmax(candidates))
    s = 2 * math.sqrt(candidates[best])
    if best == 0:
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4)
    elif best == 1:
        q = (s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif best == 2:
        q = ((m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s)
    return [float(v) for v in q]


def _matrix(q):
    x, y, z, w = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _slerp(q0, q1, s):
    q0, q1 = np.asarray(q0, float), np.asarray(q1, float)
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + s * (q1 - q0)
    else:
        angle = math.acos(dot)
        q = (math.sin((1 - s) * angle) * q0 + math.sin(s * angle) * q1) / math.sin(angle)
    return q / np.linalg.norm(q)


def _ns(stamp):
    if hasattr(stamp, 'nanoseconds'):  # rclpy.time.Time
        return stamp.nanoseconds
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class _Link:
    """The stamped poses of one child frame in its parent."""

    def __init__(self, parent, static):
        self.parent, self.static = parent, static
        self.stamps, self.poses = [], []  # sorted stamps; (translation, quaternion)

    def add(self, stamp, pose):
        if self.static:
            self.stamps, self.poses = [0], [pose]
            return
        index = bisect.bisect_left(self.stamps, stamp)
        if index < len(self.stamps) and self.stamps[index] == stamp:
            self.poses[index] = pose
        else:
            self.stamps.insert(index, stamp)
            self.poses.insert(index, pose)

    def at(self, stamp, child):
        """Return the 4x4 pose of the child in the parent at ``stamp`` (0: the latest)."""
        if self.static:
            translation, rotation = self.poses[0]
        elif stamp == 0 or stamp == self.stamps[-1]:
            translation, rotation = self.poses[-1]
        elif stamp > self.stamps[-1] or stamp < self.stamps[0]:
            where = 'future' if stamp > self.stamps[-1] else 'past'
            raise ExtrapolationException(
                f'Lookup would require extrapolation into the {where}.  Requested time '
                f'{stamp / 1e9:.6f} but the {"latest" if where == "future" else "earliest"} '
                f'data is at time '
                f'{(self.stamps[-1] if where == "future" else self.stamps[0]) / 1e9:.6f}, '
                f'when looking up transform from frame [{child}] to frame [{self.parent}]')
        else:
            after = bisect.bisect_left(self.stamps, stamp)
            if self.stamps[after] == stamp:
                translation, rotation = self.poses[after]
            else:
                t0, t1 = self.stamps[after - 1], self.stamps[after]
                s = (stamp - t0) / (t1 - t0)
                (p0, q0), (p1, q1) = self.poses[after - 1], self.poses[after]
                translation = (1 - s) * np.asarray(p0) + s * np.asarray(p1)
                rotation = _slerp(q0, q1, s)
        pose = np.eye(4)
        pose[:3, :3] = _matrix(rotation)
        pose[:3, 3] = translation
        return pose


class Buffer:
    """tf2_ros.buffer.Buffer: a tree of frames filled by set_transform, read by lookups."""

    def __init__(self, cache_time=None, node=None):
        """Start empty (``cache_time`` and ``node`` as tf2_ros accepts them; unused here)."""
        self._links = {}  # child -> _Link
        self._lock = threading.Lock()
        self.lookups = []  # (target, source, time ns, timeout ns), for tests

    def set_transform(self, transform, authority):
        """Add a dynamic transform (from /tf)."""
        self._set(transform, False)

    def set_transform_static(self, transform, authority):
        """Add a static transform (from /tf_static): valid at every time."""
        self._set(transform, True)

    def _set(self, transform, static):
        t, q = transform.transform.translation, transform.transform.rotation
        with self._lock:
            link = self._links.get(transform.child_frame_id)
            if link is None or link.parent != transform.header.frame_id or link.static != static:
                link = self._links[transform.child_frame_id] = _Link(
                    transform.header.frame_id, static)
            link.add(_ns(transform.header.stamp), ((t.x, t.y, t.z), (q.x, q.y, q.z, q.w)))

    def _frames(self):
        return set(self._links) | {link.parent for link in self._links.values()}

    def _chain(self, frame):
        chain = [frame]
        while chain[-1] in self._links:
            chain.append(self._links[chain[-1]].parent)
        return chain

    def lookup_transform_core(self, target_frame, source_frame, time):
        """Return the TransformStamped of source_frame in target_frame at ``time``, or raise."""
        for name, frame in (('target_frame', target_frame), ('source_frame', source_frame)):
            if not frame:
                raise InvalidArgumentException(
                    f'Invalid argument passed to lookupTransform argument {name} in tf2 '
                    'frame_ids cannot be empty')
        with self._lock:
            for name, frame in (('target_frame', target_frame), ('source_frame', source_frame)):
                if frame not in self._frames():
                    raise LookupException(f'"{frame}" passed to lookupTransform argument '
                                          f'{name} does not exist. ')
            up_source, up_target = self._chain(source_frame), self._chain(target_frame)
            common = next((f for f in up_source if f in up_target), None)
            if common is None:
                raise ConnectivityException(
                    f"Could not find a connection between '{target_frame}' and "
                    f"'{source_frame}' because they are not part of the same tree.Tf has two "
                    'or more unconnected trees.')
            links = [(f, self._links[f]) for chain in (up_source, up_target)
                     for f in chain[:chain.index(common)]]
            stamp = _ns(time)
            if stamp == 0:  # the latest time every dynamic link of the chain has
                dynamic = [link.stamps[-1] for _, link in links if not link.static]
                stamp = min(dynamic) if dynamic else 0
            poses = {f: link.at(stamp, f) for f, link in links}

        def in_common(chain):
            pose = np.eye(4)
            for frame in chain[:chain.index(common)]:
                pose = poses[frame] @ pose
            return pose

        pose = np.linalg.inv(in_common(up_target)) @ in_common(up_source)
        out = TransformStamped()
        out.header.frame_id, out.child_frame_id = target_frame, source_frame
        out.header.stamp.sec, out.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        t, r = out.transform.translation, out.transform.rotation
        t.x, t.y, t.z = (float(v) for v in pose[:3, 3])
        r.x, r.y, r.z, r.w = quaternion(pose[:3, :3])
        return out

    def can_transform_core(self, target_frame, source_frame, time):
        """Return (True, '') when the lookup would succeed, else (False, why)."""
        try:
            self.lookup_transform_core(target_frame, source_frame, time)
        except TransformException as exc:
            return False, str(exc)
        return True, ''

    def can_transform(self, target_frame, source_frame, time, timeout=Duration(),
                      return_debug_tuple=False):
        """Wait up to ``timeout`` (polling every 20 ms) until the lookup would succeed."""
        deadline = time_now() + timeout.nanoseconds / 1e9
        while (timeout.nanoseconds and time_now() < deadline
               and not self.can_transform_core(target_frame, source_frame, time)[0]):
            _sleep(0.02)
        result = self.can_transform_core(target_frame, source_frame, time)
        return result if return_debug_tuple else result[0]

    def lookup_transform(self, target_frame, source_frame, time, timeout=Duration()):
        """Wait as can_transform does, then look up (raising what the lookup raises)."""
        self.lookups.append((target_frame, source_frame, _ns(time), timeout.nanoseconds))
        self.can_transform(target_frame, source_frame, time, timeout)
        return self.lookup_transform_core(target_frame, source_frame, time)


def time_now():
    """Return the wall clock in seconds (tf2_ros's Python Buffer times out on it too)."""
    return time.monotonic()


_sleep = time.sleep


class TransformListener:
    """tf2_ros.transform_listener.TransformListener: feeds a Buffer from /tf and /tf_static."""

    instances = []

    def __init__(self, buffer, node, *, spin_thread=False, qos=None, static_qos=None):
        """Keep the buffer and node (the real one subscribes on ``node``: tf2_msgs is absent)."""
        self.buffer, self.node, self.spin_thread = buffer, node, spin_thread
        self.registered = True
        TransformListener.instances.append(self)

    def unregister(self):
        """Stop listening (the real one destroys its two subscriptions)."""
        self.registered = False


def install(monkeypatch):
    """Make ``import tf2_ros`` and its submodules give this stand-in."""
    package = types.ModuleType('tf2_ros')
    for error in (TransformException, LookupException, ConnectivityException,
                  ExtrapolationException, InvalidArgumentException, TimeoutException):
        setattr(package, error.__name__, error)
    buffer_module = types.ModuleType('tf2_ros.buffer')
    buffer_module.Buffer = Buffer
    listener_module = types.ModuleType('tf2_ros.transform_listener')
    listener_module.TransformListener = TransformListener
    package.Buffer, package.TransformListener = Buffer, TransformListener
    package.buffer, package.transform_listener = buffer_module, listener_module
    monkeypatch.setitem(sys.modules, 'tf2_ros', package)
    monkeypatch.setitem(sys.modules, 'tf2_ros.buffer', buffer_module)
    monkeypatch.setitem(sys.modules, 'tf2_ros.transform_listener', listener_module)
    TransformListener.instances = []
