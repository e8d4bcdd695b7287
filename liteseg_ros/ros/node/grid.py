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
Camera geometry in the node: CameraInfo in and out, and the drivable occupancy grid.

``C/camera_info`` in, ``C/segmentation/camera_info`` and ``segmentation/drivable_grid`` out
(docs/node.md, "Ground grid"). The geometry is
``liteseg_ros.inference.ground_projection``; this
module keeps each camera's newest CameraInfo, checks it against the images, finds the camera
poses (parameters or tf2), and wraps the fused grid into a ``nav_msgs/OccupancyGrid``. The
worker calls :meth:`GroundGridOutput.after_batch` with each batch it published.
"""

import array
from collections import deque
import threading
import time

from liteseg_ros.inference.drivable import drivable_area
from liteseg_ros.inference.ground_projection import (CameraInfoError, CameraModel,
                                                     GroundGrid, transform_pose)
from liteseg_ros.inference.outputs import output_topic
from liteseg_ros.ros.node.diagnostics import OK, percentile, Status, WARN
from liteseg_ros.ros.node.parameters import ParameterError
from liteseg_ros.ros.node.publishing import qos_profile
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import CameraInfo

GRID_TOPIC = 'segmentation/drivable_grid'  # in the node's namespace


def camera_info_topic(camera):
    """Return the CameraInfo input topic of camera namespace ``camera``."""
    return f'{camera}/camera_info'


def _info_key(msg):
    roi = msg.roi
    return (msg.width, msg.height, tuple(msg.k), tuple(msg.d), msg.distortion_model,
            msg.binning_x, msg.binning_y, roi.x_offset, roi.y_offset, roi.width, roi.height)


def segmentation_camera_info(msg, header):
    """Return a copy of CameraInfo ``msg`` carrying ``header`` (the mask's)."""
    out = CameraInfo()
    out.header = header
    for name in ('height', 'width', 'distortion_model', 'd', 'k', 'r', 'p', 'binning_x',
                 'binning_y', 'roi'):
        setattr(out, name, getattr(msg, name))
    return out


class _CameraGeometry:
    """One camera's newest CameraInfo, its model or why it was rejected, and counters."""

    def __init__(self, name, publisher):
        self.name = name
        self.publisher = publisher
        self.subscription = None
        self.info = None  # the newest CameraInfo message
        self.key = None
        self.model = None
        self.error = ''  # why the newest CameraInfo (or pose) cannot be used
        self.received = 0
        self.rejected = 0


class GroundGridOutput:
    """CameraInfo per camera, republished with every mask, and the fused drivable grid."""

    def __init__(self, node, settings, renderer, logger):
        """
        Create the publishers and CameraInfo subscriptions of ``settings.cameras``.

        ``settings.ground_grid`` is a GridSettings; ``renderer`` the pipeline's OutputRenderer
        (its drivable classes and mode, when no subscriber asked for drivable_area). With
        ``extrinsics: tf`` a missing tf2_ros raises ParameterError.
        """
        self.grid_settings = settings.ground_grid
        self.renderer = renderer
        self.logger = logger
        self.lock = threading.Lock()
        self.cameras = {}
        self.grid = None
        self.grid_publisher = None
        self.tf_buffer = self.tf_listener = None
        self.grids = 0
        self.lookups = 0
        self.last_cameras = ()
        self.fuse_ms = deque(maxlen=200)
        output_qos = qos_profile(settings.output_qos_reliability, settings.output_qos_depth)
        input_qos = qos_profile(settings.qos_reliability, settings.qos_depth)
        try:
            if self.grid_settings.enabled:
                if self.grid_settings.extrinsics == 'tf':
                    self._start_tf(node)
                grid = self.grid_settings
                self.grid = GroundGrid(grid.grid_range, grid.resolution)
                self.grid_publisher = node.create_lifecycle_publisher(
                    OccupancyGrid, GRID_TOPIC, output_qos)
            for name in settings.cameras:
                camera = _CameraGeometry(name, node.create_lifecycle_publisher(
                    CameraInfo, output_topic(name, 'camera_info'), output_qos))
                self.cameras[name] = camera
                camera.subscription = node.create_subscription(
                    CameraInfo, camera_info_topic(name),
                    lambda msg, camera=camera: self._on_camera_info(camera, msg), input_qos)
        except Exception:
            self.release(node)
            raise

    def _start_tf(self, node):
        try:
            from tf2_ros.buffer import Buffer
            from tf2_ros.transform_listener import TransformListener
        except ImportError as exc:
            raise ParameterError(
                "parameter 'ground_grid.extrinsics': 'tf' needs tf2_ros, which is not "
                f'importable here ({exc}); it comes with a ROS 2 install (ros-<distro>-tf2-ros), '
                "not with the pip wheels. Use 'parameters' and ground_grid.camera_poses "
                'instead') from None
        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, node)

    def release(self, node):
        """Destroy the subscriptions, publishers and tf listener."""
        for camera in self.cameras.values():
            if camera.subscription is not None:
                node.destroy_subscription(camera.subscription)
            node.destroy_lifecycle_publisher(camera.publisher)
        self.cameras = {}
        if self.grid_publisher is not None:
            node.destroy_lifecycle_publisher(self.grid_publisher)
            self.grid_publisher = None
        if self.tf_listener is not None:
            self.tf_listener.unregister()
            self.tf_listener = None

    # -- input (executor thread) ---------------------------------------------------------

    def _on_camera_info(self, camera, msg):
        key = _info_key(msg)
        with self.lock:
            camera.received += 1
            camera.info = msg
            if key == camera.key:
                return
            camera.key = key
        try:
            model, error = CameraModel.from_camera_info(msg), None
        except CameraInfoError as exc:
            model, error = None, exc
        with self.lock:
            camera.model = model
            camera.error = f'rejected CameraInfo: {error}' if error else ''
            camera.rejected += error is not None
        if error is not None:  # throttled per call site: a bad size does not hide this
            self.logger.error(f"camera '{camera.name}': rejected the CameraInfo on "
                              f'{camera_info_topic(camera.name)}: {error}',
                              throttle_duration_sec=1.0)

    # -- output (worker thread) ----------------------------------------------------------

    def wants_frames(self):
        """Return True when someone subscribes to the grid: every camera must be segmented."""
        publisher = self.grid_publisher
        return publisher is not None and publisher.get_subscription_count() > 0

    def _usable_model(self, camera, mask):
        """Return the camera's CameraModel if it fits ``mask``, else None (and say why)."""
        with self.lock:
            info, model = camera.info, camera.model
        if info is None or model is None:
            return None, info
        try:
            model.check_size(mask.shape[1], mask.shape[0])
        except CameraInfoError as exc:
            with self.lock:
                camera.error = f'rejected CameraInfo: {exc}'
                camera.rejected += 1
            self.logger.error(f"camera '{camera.name}': rejected the CameraInfo on "
                              f'{camera_info_topic(camera.name)}: {exc}',
                              throttle_duration_sec=1.0)
            return None, info
        with self.lock:
            camera.error = ''
        return model, info

    def after_batch(self, frames):
        """
        Publish CameraInfo beside each frame's outputs and the grid of the batch.

        ``frames``: [(camera name, header, HxW class-id mask, rendered outputs)] of one batch.
        """
        fuse = self.wants_frames()
        drivable, stamps = {}, []
        for name, header, mask, outputs in frames:
            camera = self.cameras.get(name)
            if camera is None:
                continue
            model, info = self._usable_model(camera, mask)
            if model is None:
                continue
            camera.publisher.publish(segmentation_camera_info(info, header))
            if not fuse:
                continue
            pose = self._pose(camera, info.header.frame_id or header.frame_id)
            if pose is None:
                continue
            self.lookups += self.grid.set_camera(name, model, pose)
            area = outputs.get('drivable_area')
            drivable[name] = area if area is not None else drivable_area(
                mask, self.renderer.drivable_lut, self.renderer.drivable_mode)
            stamps.append(header.stamp)
        if drivable:
            self._publish_grid(drivable, stamps)

    def _pose(self, camera, frame_id):
        if self.tf_buffer is None:
            return self.grid_settings.poses.get(camera.name)
        try:
            from rclpy.time import Time

            transform = self.tf_buffer.lookup_transform(
                self.grid_settings.frame_id, frame_id, Time()).transform
        except Exception as exc:  # tf2 raises several types; all mean "not now"
            with self.lock:
                camera.error = (f'no transform from {frame_id!r} to '
                                f'{self.grid_settings.frame_id!r}: {exc}')
            return None
        t, q = transform.translation, transform.rotation
        return transform_pose((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))

    def _publish_grid(self, drivable, stamps):
        start = time.perf_counter()
        cells = self.grid.fuse(drivable)
        stamp = max(stamps, key=lambda s: (s.sec, s.nanosec))
        msg = OccupancyGrid()
        msg.header.stamp = stamp
        msg.header.frame_id = self.grid_settings.frame_id
        msg.info.map_load_time = stamp
        msg.info.resolution = float(self.grid.resolution)
        msg.info.width, msg.info.height = self.grid.width, self.grid.height
        msg.info.origin.position.x = self.grid.range[0]  # x_min, y_min: corner of cell (0, 0)
        msg.info.origin.position.y = self.grid.range[2]
        msg.info.origin.orientation.w = 1.0
        data = array.array('b')  # what rclpy stores; a list would be checked value by value
        data.frombytes(cells.tobytes())
        msg.data = data
        self.grid_publisher.publish(msg)
        self.fuse_ms.append((time.perf_counter() - start) * 1e3)
        self.grids += 1
        self.last_cameras = tuple(drivable)

    # -- diagnostics ---------------------------------------------------------------------

    def status(self):
        """Return the 'ground_grid' Status (None when the grid is off)."""
        if self.grid is None:
            return None
        with self.lock:
            states = {name: ('missing: no CameraInfo on ' + camera_info_topic(name)
                             if c.info is None else c.error or 'ok')
                      for name, c in self.cameras.items()}
        values = {'frame_id': self.grid_settings.frame_id,
                  'cells': f'{self.grid.width} x {self.grid.height} at {self.grid.resolution} m',
                  'extrinsics': self.grid_settings.extrinsics,
                  'grids_published': str(self.grids),
                  'lookup_tables_made': str(self.lookups),
                  'last_grid_cameras': ', '.join(self.last_cameras) or '-',
                  'grid_ms_p50': f'{percentile(tuple(self.fuse_ms), 50):.2f}'}
        values.update({f'camera_info {name}': state for name, state in states.items()})
        bad = {name: state for name, state in states.items() if state != 'ok'}
        if not bad:
            return Status('ground_grid', OK, 'ok', values)
        missing = [name for name, state in bad.items() if state.startswith('missing')]
        other = [f'{name}: {state}' for name, state in bad.items() if name not in missing]
        parts = ([f"no camera_info from {', '.join(missing)}"] if missing else []) + other
        return Status('ground_grid', WARN, 'skipped in the grid: ' + '; '.join(parts), values)
