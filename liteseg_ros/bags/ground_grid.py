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
Camera geometry in bags: CameraInfo from calibration files, and the drivable grid offline.

- :func:`load_calibration` / :func:`camera_info_message`: a camera_calibration_parsers YAML
  (``image_width``, ``camera_matrix``, ``distortion_model``, ...) as a rosbags
  ``sensor_msgs/CameraInfo`` (``liteseg dataset-to-bag --camera-info``);
- :func:`load_grid_config`: ``bag-eval --camera-poses FILE``, a YAML of camera poses (or the
  node's params file);
- :class:`BagGrid`: ``bag-eval --outputs ...,drivable_grid``. It keeps each camera's newest
  CameraInfo, groups frames as the node batches them (the newest frame of each camera until
  a camera repeats or all have one) and makes one ``nav_msgs/OccupancyGrid`` per group with
  ``liteseg_ros.inference.ground_projection`` (docs/bag_eval.md).
"""

from pathlib import Path

from liteseg_ros.bags.rosbag import BagError, deserialize, header, typestore
from liteseg_ros.inference.ground_projection import (body_poses, CameraInfoError,
                                                     CameraModel, GroundGrid)
import numpy as np

CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
GRID_TYPE = 'nav_msgs/msg/OccupancyGrid'
GRID_TOPIC = '/segmentation/drivable_grid'  # where a node in the root namespace puts it
GRID_DEFAULTS = {'frame_id': 'base_footprint', 'resolution': 0.1,
                 'range': [0.0, 40.0, -20.0, 20.0], 'rectified': False}


def camera_info_topic(namespace):
    """Return the CameraInfo topic beside the images of ``namespace`` (e.g. /front)."""
    return f'{namespace}/camera_info'


def _yaml(path):
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BagError(f'{path}: cannot read it as YAML ({exc})') from None
    if not isinstance(data, dict):
        raise BagError(f'{path}: expected a YAML mapping, got {type(data).__name__}')
    return data


def load_calibration(path):
    """Return the calibration dict of a camera_calibration_parsers YAML, checked."""
    data = _yaml(path)
    try:
        CameraModel.from_camera_info(data)
    except CameraInfoError as exc:
        raise BagError(f'{path}: not a usable camera calibration: {exc}') from None
    return data


def _matrix(data, key, size, default):
    value = data.get(key)
    if isinstance(value, dict):
        value = value.get('data')
    values = np.asarray(value if value is not None else default, np.float64).ravel()
    if values.size != size:
        raise BagError(f'calibration: {key} needs {size} numbers, got {values.size}')
    return values


def camera_info_message(calibration, msg_header):
    """Return a rosbags ``sensor_msgs/CameraInfo`` of a calibration dict (load_calibration)."""
    types = typestore().types
    k = _matrix(calibration, 'camera_matrix', 9, None)
    distortion = calibration.get('distortion_coefficients') or {}
    d = np.asarray(distortion.get('data', []) if isinstance(distortion, dict) else distortion,
                   np.float64).ravel()
    p = _matrix(calibration, 'projection_matrix', 12,
                np.hstack([k.reshape(3, 3), np.zeros((3, 1))]))
    roi = types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    return types[CAMERA_INFO_TYPE](
        header=msg_header, height=int(calibration['image_height']),
        width=int(calibration['image_width']),
        distortion_model=str(calibration.get('distortion_model') or 'plumb_bob'), d=d, k=k,
        r=_matrix(calibration, 'rectification_matrix', 9, np.eye(3)), p=p, binning_x=0,
        binning_y=0, roi=roi)


def _node_params(data):
    """Return (grid values, cameras) of a node params file, or None when it is not one."""
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get('ros__parameters'), dict):
            params = value['ros__parameters']
            grid = dict(params.get('ground_grid') or {})
            grid.update({k.split('.', 1)[1]: v for k, v in params.items()
                         if k.startswith('ground_grid.')})
            return grid, [str(c).rstrip('/') for c in params.get('cameras', [])]
    return None


def load_grid_config(path):
    """
    Return {frame_id, resolution, range, rectified, poses {namespace: 6 numbers}} of a YAML.

    The file holds ``poses: {/front: [x, y, z, roll, pitch, yaw], ...}`` (m, rad, camera body
    in frame_id, as the node's ground_grid.camera_poses) and optionally ``frame_id``,
    ``resolution``, ``range``, ``rectified``; or it is the node's params file (``cameras``
    and ``ground_grid.*``).
    """
    data = _yaml(path)
    node = _node_params(data)
    if node is not None:
        grid, cameras = node
        flat = grid.get('camera_poses') or []
        try:
            body_poses(flat, cameras, 'ground_grid.camera_poses')
        except ValueError as exc:
            raise BagError(f'{path}: {exc}') from None
        poses = {'/' + c.lstrip('/'): list(flat[6 * i:6 * i + 6]) for i, c in enumerate(cameras)}
    else:
        grid = data
        poses = {'/' + str(k).strip('/') if str(k).strip('/') else '': v
                 for k, v in (data.get('poses') or {}).items()}
    config = {key: grid.get(key, default) for key, default in GRID_DEFAULTS.items()}
    config['poses'] = poses
    if not isinstance(config['rectified'], bool):
        raise BagError(f"{path}: 'rectified': expected true or false, got "
                       f"{config['rectified']!r}")
    try:
        GroundGrid(config['range'], config['resolution'])
        for namespace, pose in poses.items():
            body_poses(pose, [namespace or '/'], f'poses {namespace or "/"}')
    except (TypeError, ValueError) as exc:
        raise BagError(f'{path}: {exc}') from None
    return config


class BagGrid:
    """The drivable grid of a bag-eval run: CameraInfo in, OccupancyGrid messages out."""

    def __init__(self, config, namespaces):
        """Prepare the grid of ``config`` (load_grid_config) for cameras ``namespaces``."""
        missing = [ns or '/' for ns in namespaces if ns not in config['poses']]
        if missing:
            raise BagError(f'--camera-poses has no pose for {", ".join(missing)} (it has '
                           f'{", ".join(config["poses"]) or "none"})')
        self.frame_id = str(config['frame_id'])
        self.rectified = bool(config.get('rectified', False))
        self.grid = GroundGrid(config['range'], config['resolution'], list(namespaces))
        self.poses = body_poses([v for ns in namespaces for v in config['poses'][ns]],
                                list(namespaces))
        self.namespaces = list(namespaces)
        self.models = {}  # namespace -> CameraModel of the newest CameraInfo
        self.pending = {}  # namespace -> (log time, header, drivable area)
        self.grids = 0
        self.info_cameras = {}  # CameraInfo topic -> bag-eval camera (for_evaluation)

    @classmethod
    def for_evaluation(cls, config, cameras, topic_types):
        """
        Return the BagGrid of a bag-eval run; ``cameras`` {image topic: camera}.

        :raises ValueError: no ``config`` (--camera-poses).
        :raises BagError: a camera without a pose or without a CameraInfo topic in the bag.
        """
        if config is None:
            raise ValueError('--outputs drivable_grid needs --camera-poses FILE (camera poses '
                             'in the grid frame; docs/bag_eval.md)')
        grid = cls(config, [c.namespace for c in cameras.values()])
        grid.info_cameras = {camera_info_topic(c.namespace): c for c in cameras.values()}
        missing = [t for t in grid.info_cameras if t not in topic_types]
        if missing:
            raise BagError(f'drivable_grid needs the CameraInfo topics {", ".join(missing)}, '
                           'which the bag does not have')
        return grid

    def first_camera_infos(self, reader):
        """Read each camera's first CameraInfo, so that frames logged before it are used."""
        wanted = set(self.info_cameras)
        messages = reader.messages(list(wanted))
        try:
            for message in messages:
                if message.topic in wanted:
                    wanted.discard(message.topic)
                    self.on_camera_info(message, lambda *args: None)  # counted when read again
                if not wanted:
                    break
        finally:
            messages.close()

    def on_camera_info(self, message, error):
        """Take a bag message of a CameraInfo topic; ``error(kind, camera, text)`` counts."""
        camera = self.info_cameras[message.topic]
        try:
            problem = self.camera_info(camera.namespace, deserialize(message))
        except BagError as exc:
            problem = str(exc)
        if problem:
            error('invalid_camera_info', camera, f'{message.topic} at '
                  f'{message.timestamp / 1e9:.9f} s: {problem}')

    def add_frame(self, writer, frame, drivable, error):
        """Add a bag-eval frame's drivable area; write the grids it completes."""
        grids, problem = self.add(frame.camera.namespace, frame.timestamp, frame.header,
                                  drivable)
        if problem:
            error('frames_without_camera_info', frame.camera, f'{frame.camera.topic} at '
                  f'{frame.timestamp / 1e9:.9f} s left out of the grid: {problem}')
        self.write(writer, grids)

    @staticmethod
    def write(writer, grids):
        """Write [(log time, grid message)] to ``writer`` on GRID_TOPIC."""
        for timestamp, msg in grids:
            writer.write(GRID_TOPIC, timestamp, msg)

    def topics(self):
        """Return {CameraInfo topic: namespace}."""
        return {camera_info_topic(ns): ns for ns in self.namespaces}

    def camera_info(self, namespace, msg):
        """Take a CameraInfo message; return an error text when it is rejected, else None."""
        try:
            self.models[namespace] = CameraModel.from_camera_info(msg, self.rectified)
        except CameraInfoError as exc:
            self.models.pop(namespace, None)
            return str(exc)
        return None

    def add(self, namespace, timestamp, msg_header, drivable):
        """
        Add a frame's drivable area; return ([(log time, grid message)], error text or None).

        A grid is made when a camera repeats (from the frames before) or when every camera
        has a frame. A frame without a usable CameraInfo is left out (the error says why).
        """
        model = self.models.get(namespace)
        error = None
        if model is None:
            error = f'no usable CameraInfo on {camera_info_topic(namespace)} yet'
        else:
            try:
                model.check_size(drivable.shape[1], drivable.shape[0])
            except CameraInfoError as exc:
                error = f'{camera_info_topic(namespace)} rejected: {exc}'
        out = []
        if error is None:
            if namespace in self.pending:
                out = self.flush()
            self.grid.set_camera(namespace, model, self.poses[namespace])
            self.pending[namespace] = (timestamp, msg_header, drivable)
            if len(self.pending) == len(self.namespaces):
                out += self.flush()
        return out, error

    def flush(self):
        """Return [(log time, grid message)] of the pending frames (none when there are none)."""
        if not self.pending:
            return []
        pending, self.pending = self.pending, {}
        cells = self.grid.fuse({ns: frame[2] for ns, frame in pending.items()})
        newest = max(pending.values(), key=lambda f: (f[1].stamp.sec, f[1].stamp.nanosec))
        timestamp = max(frame[0] for frame in pending.values())
        self.grids += 1
        return [(timestamp, self.message(cells, newest[1].stamp))]

    def message(self, cells, stamp):
        """Return a rosbags ``nav_msgs/OccupancyGrid`` of an int8 grid, stamped ``stamp``."""
        types = typestore().types
        x_min, _, y_min, _ = self.grid.range
        origin = types['geometry_msgs/msg/Pose'](
            position=types['geometry_msgs/msg/Point'](x=x_min, y=y_min, z=0.0),
            orientation=types['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0))
        info = types['nav_msgs/msg/MapMetaData'](
            map_load_time=stamp, resolution=float(self.grid.resolution),
            width=self.grid.width, height=self.grid.height, origin=origin)
        return types[GRID_TYPE](header=header(stamp.sec, stamp.nanosec, self.frame_id),
                                info=info, data=cells.reshape(-1))
