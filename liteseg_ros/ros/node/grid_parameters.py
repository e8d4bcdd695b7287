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
The ``ground_grid.*`` parameters of the node: their table and their checks (no rclpy).

parameters.py adds :data:`GRID_PARAMETERS` to the node's table and calls
:func:`check_grid_parameter` for a single value and :func:`grid_settings` at configure, where
``camera_poses`` is checked against ``cameras`` (docs/node.md, "Ground grid").
"""

import array
from dataclasses import dataclass, field
import math

from liteseg_ros.inference.ground_projection import body_poses, MAX_CELLS
from liteseg_ros.ros.node.errors import ParameterError

EXTRINSICS = ('parameters', 'tf')
PREFIX = 'ground_grid.'

GRID_PARAMETERS = {
    'ground_grid.enabled': (False, 'bool: publish segmentation/drivable_grid '
                                   '(nav_msgs/OccupancyGrid) fused from all cameras'),
    'ground_grid.frame_id': ('base_footprint', 'string: frame of the grid; its z = 0 is the '
                                               'ground (REP 105: base_footprint)'),
    'ground_grid.resolution': (0.1, 'double, m: cell size (> 0)'),
    'ground_grid.range': ([0.0, 40.0, -20.0, 20.0],
                          'double[4], m: x_min, x_max, y_min, y_max of the grid in frame_id'),
    'ground_grid.extrinsics': ('parameters', "string: camera poses from 'parameters' "
                                             "(camera_poses) or 'tf' (needs tf2_ros)"),
    'ground_grid.camera_poses': ([], 'double[]: 6 per camera, in cameras order: x, y, z (m), '
                                     'roll, pitch, yaw (rad) of the camera body in frame_id'),
    'ground_grid.max_age_ms': (1000.0, 'double, ms: fuse each camera whose newest frame is at '
                                       "most this much older than the grid's stamp"),
    'ground_grid.rectified': (False, 'bool: the images are rectified (image_rect): project '
                                     'with CameraInfo P and R instead of K and D'),
    'ground_grid.tf_timeout_ms': (50.0, 'double, ms: with tf, wait this long for the '
                                        "transform at a frame's stamp"),
}

# Bounds (inclusive) of the numbers, also the descriptors' ranges.
GRID_RANGES = {
    'ground_grid.max_age_ms': (0.0, 3600000.0),
    'ground_grid.tf_timeout_ms': (0.0, 10000.0),
}


@dataclass
class GridSettings:
    """The checked ``ground_grid.*`` values; ``poses`` {camera: Pose} with 'parameters'."""

    enabled: bool = False
    frame_id: str = 'base_footprint'
    resolution: float = 0.1
    grid_range: tuple = (0.0, 40.0, -20.0, 20.0)  # ground_grid.range
    extrinsics: str = 'parameters'
    camera_poses: list = field(default_factory=list)
    max_age_ms: float = 1000.0
    rectified: bool = False
    tf_timeout_ms: float = 50.0
    poses: dict = field(default_factory=dict)


def _error(message):
    return ParameterError(message)


def _numbers(name, value):
    # rclpy gives double arrays set at runtime as array.array('d')
    values = list(value) if isinstance(value, (list, tuple, array.array)) else None
    if values is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 and math.isfinite(v) for v in values):
        raise _error(f"parameter '{name}': expected a list of numbers (write 1.0, not 1, when "
                     f'the list mixes both), got {value!r}')
    return [float(v) for v in values]


def _range(value):
    values = _numbers('ground_grid.range', value)
    if len(values) != 4 or not (values[0] < values[1] and values[2] < values[3]):
        raise _error("parameter 'ground_grid.range': expected [x_min, x_max, y_min, y_max] "
                     f'with x_min < x_max and y_min < y_max (m), got {value!r}')
    return tuple(values)


def _resolution(value):
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value) or value <= 0):
        raise _error(f"parameter 'ground_grid.resolution': expected a number > 0 (m), got "
                     f'{value!r}')
    return float(value)


def _frame_id(value):
    if not isinstance(value, str) or not value.strip() or value.strip().startswith('/'):
        raise _error("parameter 'ground_grid.frame_id': expected a tf frame name without a "
                     f"leading '/', e.g. 'base_footprint', got {value!r}")
    return value.strip()


def _bool(name, value):
    if not isinstance(value, bool):
        raise _error(f"parameter '{name}': expected true or false, got {value!r}")
    return value


def _milliseconds(name, value):
    low, high = GRID_RANGES[name]
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value) or not low <= value <= high):
        raise _error(f"parameter '{name}': expected a number >= {low:g} and <= {high:g} (ms), "
                     f'got {value!r}')
    return float(value)


def _extrinsics(value):
    if value not in EXTRINSICS:
        raise _error("parameter 'ground_grid.extrinsics': expected one of "
                     f"{', '.join(repr(e) for e in EXTRINSICS)}, got {value!r}")
    return value


def _poses(value):
    # `camera_poses: []` in a params file reaches the node as an unset value (None)
    values = _numbers('ground_grid.camera_poses', [] if value is None else value)
    if len(values) % 6:
        raise _error("parameter 'ground_grid.camera_poses': expected 6 numbers per camera "
                     f'(x, y, z, roll, pitch, yaw), got {len(values)}')
    return values


_CHECKS = {
    'ground_grid.enabled': lambda value: _bool('ground_grid.enabled', value),
    'ground_grid.frame_id': _frame_id,
    'ground_grid.resolution': _resolution,
    'ground_grid.range': _range,
    'ground_grid.extrinsics': _extrinsics,
    'ground_grid.camera_poses': _poses,
    'ground_grid.max_age_ms': lambda value: _milliseconds('ground_grid.max_age_ms', value),
    'ground_grid.rectified': lambda value: _bool('ground_grid.rectified', value),
    'ground_grid.tf_timeout_ms': lambda value: _milliseconds('ground_grid.tf_timeout_ms',
                                                             value),
}


def check_grid_parameter(name, value):
    """Return one ``ground_grid.*`` value as GridSettings holds it; raise ParameterError."""
    return _CHECKS[name](value)


def grid_settings(values, cameras):
    """
    Return GridSettings from the raw values (all names of GRID_PARAMETERS) for ``cameras``.

    Enabled with 'parameters' extrinsics, ``camera_poses`` must hold 6 numbers per camera;
    the error names the expected length.
    """
    checked = {name[len(PREFIX):].replace('range', 'grid_range'): check_grid_parameter(
        name, values[name]) for name in GRID_PARAMETERS}
    settings = GridSettings(**checked)
    x_min, x_max, y_min, y_max = settings.grid_range
    cells = math.ceil((x_max - x_min) / settings.resolution) * math.ceil(
        (y_max - y_min) / settings.resolution)
    if cells > MAX_CELLS:
        raise _error(f"parameters 'ground_grid.range' and 'ground_grid.resolution': {cells} "
                     f'cells, more than {MAX_CELLS}; use a coarser resolution or a smaller '
                     'range')
    if settings.enabled and settings.extrinsics == 'parameters':
        try:
            settings.poses = body_poses(settings.camera_poses, cameras,
                                        'ground_grid.camera_poses')
        except ValueError as exc:
            raise _error(f'parameter {exc}') from None
    return settings
