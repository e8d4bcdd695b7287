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
(docs/node.md, "Ground grid"). The geometry is ``liteseg_ros.inference.ground_projection``.
This module keeps each camera's newest CameraInfo (republished with every mask, whatever the
grid thinks of it), checks it against the images when the grid is on, finds the camera poses
(parameters or tf2), keeps each camera's newest drivable area, and fuses every camera recent
enough into a ``nav_msgs/OccupancyGrid``. The worker calls :meth:`GroundGridOutput.after_batch`
with each batch it published.
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
from liteseg_ros.ros.node.worker import stamp_ns
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import CameraInfo

GRID_TOPIC = 'segmentation/drivable_grid'  # in the node's namespace


def camera_info_topic(camera):
    """Return the CameraInfo input topic of camera namespace ``camera``."""
    return f'{camera}/camera_info'


def _info_key(msg):
    roi = msg.roi
    return (msg.width, msg.height, tuple(msg.k), tuple(msg.d), tuple(msg.r), tuple(msg.p),
            msg.distortion_model, msg.binning_x, msg.binning_y, roi.x_offset, roi.y_offset,
            roi.width, roi.height)


def segmentation_camera_info(msg, header):
    """Return a copy of CameraInfo ``msg`` carrying ``header`` (the mask's)."""
    out = CameraInfo()
    out.header = header
    for name in ('height', 'width', 'distortion_model', 'd', 'k', 'r', 'p', 'binning_x',
                 'binning_y', 'roi'):
        setattr(out, name, getattr(msg, name))
    return out


class _CameraGeometry:
    """One camera's newest CameraInfo, model, newest drivable area, problems and counters."""

    def __init__(self, name, publisher):
        self.name = name
        self.publisher = publisher
        self.subscription = None
        self.info = None  # the newest CameraInfo message
        self.key = None
        self.model = None
        self.info_error = ''  # why the newest CameraInfo cannot be used in the grid
        self.frame_error = ''  # why the newest frame could not be placed (size, pose)
        self.area = None  # (stamp ns, stamp, drivable area) of the newest placed frame
        self.age_ms = None  # its age in the newest grid
        self.stale = False  # older than max_age_ms in the newest grid: left out
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
        self.tf_errors = ()
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
                self.grid = GroundGrid(grid.grid_range, grid.resolution, settings.cameras)
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
            from tf2_ros import TransformException
            from tf2_ros.buffer import Buffer
            from tf2_ros.transform_listener import TransformListener
        except ImportError as exc:
            raise ParameterError(
                "parameter 'ground_grid.extrinsics': 'tf' needs tf2_ros, which is not "
                f'importable here ({exc}); it comes with a ROS 2 install (ros-<distro>-tf2-ros), '
                "not with the pip wheels. Use 'parameters' and ground_grid.camera_poses "
                'instead') from None
        self.tf_errors = (TransformException,)  # Lookup, Connectivity, Extrapolation, ...
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
            camera.info = msg  # republished as it is; only the grid needs a usable one
            if self.grid is None or key == camera.key:
                return
            camera.key = key
        try:
            model = CameraModel.from_camera_info(msg, self.grid_settings.rectified)
            error = None
        except CameraInfoError as exc:
            model, error = None, exc
        with self.lock:
            camera.model = model
            camera.info_error = f'rejected CameraInfo: {error}' if error else ''
            camera.rejected += error is not None
        if error is not None:  # once per distinct CameraInfo
            self.logger.error(f"camera '{camera.name}': rejected the CameraInfo on "
                              f'{camera_info_topic(camera.name)} for the ground grid: {error}')

    # -- output (worker thread) ----------------------------------------------------------

    def wants_frames(self):
        """Return True when someone subscribes to the grid: every camera must be segmented."""
        publisher = self.grid_publisher
        return publisher is not None and publisher.get_subscription_count() > 0

    def after_batch(self, frames):
        """
        Publish CameraInfo beside each frame's outputs, and the grid after a batch.

        ``frames``: [(camera name, header, HxW class-id mask, rendered outputs)] of one batch.
        Each placed frame replaces its camera's drivable area; the grid fuses every camera
        whose area is at most ``max_age_ms`` older than the newest one.
        """
        fuse = self.wants_frames()
        placed = False
        for name, header, mask, outputs in frames:
            camera = self.cameras.get(name)
            if camera is None:
                continue
            with self.lock:
                info = camera.info
            if info is None:
                continue
            camera.publisher.publish(segmentation_camera_info(info, header))
            if fuse:
                placed |= self._place(camera, info, header, mask, outputs)
        if placed:
            self._publish_grid()

    def _place(self, camera, info, header, mask, outputs):
        """Keep a frame's drivable area as its camera's newest; return False if unusable."""
        with self.lock:
            model = camera.model
        if model is None:  # the status says why (no or a rejected CameraInfo)
            return False
        try:
            model.check_size(mask.shape[1], mask.shape[0])
        except CameraInfoError as exc:
            self._frame_problem(camera, f'rejected CameraInfo: {exc}', 'rejected the '
                                f'CameraInfo on {camera_info_topic(camera.name)}: {exc}')
            return False
        frame_id = info.header.frame_id or header.frame_id
        pose, problem = self._pose(camera, frame_id, header.stamp)
        if pose is None:
            self._frame_problem(camera, problem, f'left out of the grid: {problem}')
            return False
        self.lookups += self.grid.set_camera(camera.name, model, pose)
        area = outputs.get('drivable_area')
        if area is None:
            area = drivable_area(mask, self.renderer.drivable_lut, self.renderer.drivable_mode)
        with self.lock:
            camera.area = (stamp_ns(header), header.stamp, area)
            camera.frame_error = ''
        return True

    def _frame_problem(self, camera, state, log):
        """Record why a frame was left out; log it once per new reason, not per frame."""
        with self.lock:
            new = camera.frame_error != state
            camera.frame_error = state
            camera.rejected += state.startswith('rejected')
        if new:
            self.logger.warning(f"camera '{camera.name}': {log} (shown in the ground_grid "
                                'diagnostics while it lasts)')

    def _pose(self, camera, frame_id, stamp):
        """Return (Pose of the optical frame, None) or (None, why there is none)."""
        if self.tf_buffer is None:
            return self.grid_settings.poses.get(camera.name), 'no pose in camera_poses'
        from rclpy.duration import Duration
        from rclpy.time import Time

        target = self.grid_settings.frame_id
        timeout = Duration(nanoseconds=int(self.grid_settings.tf_timeout_ms * 1e6))
        try:  # at the frame's stamp; a zero stamp is Time(): the latest transform
            transform = self.tf_buffer.lookup_transform(
                target, frame_id, Time.from_msg(stamp), timeout=timeout).transform
        except self.tf_errors as exc:
            return None, (f'no transform from {frame_id!r} to {target!r} at '
                          f'{stamp.sec + stamp.nanosec / 1e9:.3f} s within '
                          f'{self.grid_settings.tf_timeout_ms:g} ms: {type(exc).__name__}: '
                          f'{exc}')
        t, q = transform.translation, transform.rotation
        try:
            return transform_pose((t.x, t.y, t.z), (q.x, q.y, q.z, q.w)), None
        except ValueError as exc:
            return None, f'the transform from {frame_id!r} to {target!r}: {exc}'

    def _publish_grid(self):
        start = time.perf_counter()
        max_age = self.grid_settings.max_age_ms
        with self.lock:
            areas = {name: c.area for name, c in self.cameras.items() if c.area is not None}
            newest_ns, stamp, _ = max(areas.values(), key=lambda area: area[0])
            fused = {}
            for name, (ns, _, area) in areas.items():
                camera = self.cameras[name]
                camera.age_ms = (newest_ns - ns) / 1e6
                camera.stale = camera.age_ms > max_age
                if not camera.stale:
                    fused[name] = area
        cells = self.grid.fuse(fused)  # ties: the order of `cameras`
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
        with self.lock:
            self.grids += 1
            self.last_cameras = tuple(name for name in self.cameras if name in fused)

    # -- diagnostics ---------------------------------------------------------------------

    def _state(self, camera, grids):
        """Return 'ok' or why ``camera`` is not in the grid (caller holds the lock)."""
        if camera.info is None:
            return 'missing: no CameraInfo on ' + camera_info_topic(camera.name)
        problem = camera.info_error or camera.frame_error
        if problem:
            return problem
        if camera.stale:
            return (f'stale: its newest frame is {camera.age_ms / 1e3:.2f} s older than the '
                    f'grid (ground_grid.max_age_ms {self.grid_settings.max_age_ms:g}); its '
                    'cells are unknown')
        if camera.area is None and grids:
            return 'no frame in the grid yet'
        return 'ok'

    def status(self):
        """Return the 'ground_grid' Status (None when the grid is off)."""
        if self.grid is None:
            return None
        with self.lock:
            grids, last = self.grids, self.last_cameras
            states = {name: self._state(c, grids) for name, c in self.cameras.items()}
            ages = {name: '-' if c.age_ms is None else f'{c.age_ms:.0f}'
                    for name, c in self.cameras.items()}
        values = {'frame_id': self.grid_settings.frame_id,
                  'cells': f'{self.grid.width} x {self.grid.height} at {self.grid.resolution} m',
                  'extrinsics': self.grid_settings.extrinsics,
                  'max_age_ms': f'{self.grid_settings.max_age_ms:g}',
                  'grids_published': str(grids),
                  'lookup_tables_made': str(self.lookups),
                  'last_grid_cameras': ', '.join(last) or '-',
                  'grid_ms_p50': f'{percentile(tuple(self.fuse_ms), 50):.2f}'}
        values.update({f'camera_info {name}': state for name, state in states.items()})
        values.update({f'frame_age_ms {name}': age for name, age in ages.items()})
        bad = {name: state for name, state in states.items() if state != 'ok'}
        if not bad:
            return Status('ground_grid', OK, 'ok', values)
        missing = [name for name, state in bad.items() if state.startswith('missing')]
        other = [f'{name}: {state}' for name, state in bad.items() if name not in missing]
        parts = ([f"no camera_info from {', '.join(missing)}"] if missing else []) + other
        return Status('ground_grid', WARN, 'skipped in the grid: ' + '; '.join(parts), values)
