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
Drivable area on the ground: a vehicle-frame grid fused from several cameras (numpy only).

Inverse perspective mapping under a flat-ground assumption (docs/node.md, "Ground grid"):

- :class:`CameraModel`: a camera's intrinsics from a ``sensor_msgs/CameraInfo``-like object
  (rclpy or rosbags message, or a calibration YAML dict): a raw image by K and D (OpenCV's
  ``plumb_bob``, ``rational_polynomial`` and ``equidistant`` distortion), a rectified one by
  P and R; checked against the image size.
- :func:`body_pose` / :func:`transform_pose`: where the optical frame (z forward, x right,
  y down) is in the grid frame, from x, y, z, roll, pitch, yaw of the camera body (REP 103:
  x forward, y left, z up; pitch > 0 looks down) or from a tf transform of the optical frame.
- :class:`GroundGrid`: the cells of ``range`` at ``resolution``; per camera a lookup table
  (cell -> pixel index or -1, and the distance to the camera) computed once, so that
  :meth:`GroundGrid.fuse` costs a gather per frame. Fusion rule: each cell takes the value of
  the nearest camera (optical centre to cell centre) that sees its centre; on a tie, the
  camera listed first in the grid's ``cameras``.

Cells: 0 drivable, 100 not drivable, -1 unknown. The grid array is (rows along y, columns
along x), so its row-major bytes are ``nav_msgs/OccupancyGrid`` data ``[i + j * width]``.
"""

from dataclasses import dataclass
import math

import numpy as np

#: Distortion models :class:`CameraModel` projects with (CameraInfo names).
DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', 'equidistant')
FREE, OCCUPIED, UNKNOWN = 0, 100, -1
MAX_CELLS = 16_000_000  # 4000 x 4000; more is a typo in range or resolution
_TIE_M = 1e-6  # distances closer than this are a tie (first camera wins)
_ROTATION_TOLERANCE = 1e-4  # calibration files print R to about 8 digits


class CameraInfoError(ValueError):
    """A CameraInfo that cannot be used; ``field`` names the offending field."""

    def __init__(self, field, message):
        """Name the field and what is wrong with it."""
        super().__init__(f'{field}: {message}')
        self.field = field


def _field(info, *names):
    """Read the first present field of a message, a namespace or a dict."""
    for name in names:
        if isinstance(info, dict):
            if name in info:
                return info[name]
        elif hasattr(info, name):
            return getattr(info, name)
    return None


def _matrix(value, rows, cols, name):
    if isinstance(value, dict):  # calibration YAML: {rows, cols, data}
        value = value.get('data')
    try:
        array = np.asarray(value, np.float64).reshape(rows, cols)
    except (TypeError, ValueError):
        raise CameraInfoError(name, f'expected {rows * cols} numbers, got {value!r}') from None
    if not np.isfinite(array).all():
        raise CameraInfoError(name, 'holds a NaN or infinite value')
    return array


def _distortion(model, coefficients):
    count = coefficients.size
    if not count or not np.any(coefficients):
        return np.zeros(8)  # no distortion whatever the model says
    allowed = {'plumb_bob': (4, 5, 8), 'rational_polynomial': (8,),
               'equidistant': (4,)}.get(model)
    if allowed is None:
        raise CameraInfoError('distortion_model', f'{model!r} is not supported; use one of '
                              f'{", ".join(DISTORTION_MODELS)}')
    if count not in allowed:
        raise CameraInfoError('D', f'{model} needs {" or ".join(map(str, allowed))} '
                              f'coefficients, got {count}')
    return np.pad(coefficients, (0, 8 - count))


def _intrinsics(matrix, name):
    """Check a 3x3 camera matrix (K, or P's left 3x3) and scale it to matrix[2, 2] = 1."""
    if (abs(np.linalg.det(matrix)) < 1e-12 or matrix[2, 2] == 0 or matrix[0, 0] <= 0
            or matrix[1, 1] <= 0):
        raise CameraInfoError(name, f'is singular or has a focal length <= 0: {matrix.ravel()}')
    return matrix / matrix[2, 2]


def _rectification(info):
    """Return R (raw optical frame -> rectified), identity when it is unset or all zero."""
    value = _field(info, 'r', 'R', 'rectification_matrix')
    if isinstance(value, dict):
        value = value.get('data')
    if value is None or not len(value):
        return np.eye(3)
    r = _matrix(value, 3, 3, 'R')
    if not r.any():  # uncalibrated drivers publish zeros
        return np.eye(3)
    if (np.abs(r @ r.T - np.eye(3)).max() > _ROTATION_TOLERANCE
            or np.linalg.det(r) < 0):
        raise CameraInfoError('R', f'is not a rotation matrix: {r.ravel()}')
    return r


def _projection(info):
    """Return (3x3 intrinsics, (Tx, Ty)) of a rectified image's P."""
    p = _matrix(_field(info, 'p', 'P', 'projection_matrix'), 3, 4, 'P')
    if p[2, 0] or p[2, 1] or p[2, 3]:
        raise CameraInfoError('P', f'expected the last row [0, 0, fz, 0], got {p[2].tolist()}')
    k = _intrinsics(p[:, :3].copy(), 'P')
    return k, p[:2, 3] / p[2, 2]


@dataclass(frozen=True, eq=False)
class CameraModel:
    """
    A camera's intrinsics at the resolution of its images.

    ``k`` is the 3x3 camera matrix, ``d`` 8 distortion coefficients (OpenCV order: k1, k2, p1,
    p2, k3, k4, k5, k6 for plumb_bob and rational_polynomial; k1..k4 for equidistant). A
    rectified image has no distortion, ``k`` from P, ``rotation`` R (a point X of the camera's
    optical frame is R X in the rectified one) and ``offset`` P's (Tx, Ty), as CameraInfo
    defines them: [u v w] = P [R X; 1].
    """

    width: int
    height: int
    k: np.ndarray
    d: np.ndarray
    distortion_model: str
    rotation: np.ndarray = None  # R; None: the identity
    offset: tuple = (0.0, 0.0)  # P's Tx, Ty (pixels times metres)

    @classmethod
    def from_camera_info(cls, info, rectified=False):
        """
        Read a ``sensor_msgs/CameraInfo`` (rclpy, rosbags, dict) or calibration YAML dict.

        ``rectified``: the images are rectified (``image_rect``), so they are described by P
        and R, not K and D. Binning and a region of interest are applied as image_geometry
        does, so the model describes the published image (a region of interest only to raw
        images). Raises :class:`CameraInfoError` naming the field: a zero size, a singular K
        or P, unknown distortion, a wrong coefficient count, an R that is not a rotation.
        """
        width = _field(info, 'width', 'image_width')
        height = _field(info, 'height', 'image_height')
        if not isinstance(width, (int, np.integer)) or not isinstance(height, (int, np.integer)):
            raise CameraInfoError('width', f'expected integer width and height, got '
                                  f'{width!r} x {height!r}')
        width, height = int(width), int(height)
        roi = _field(info, 'roi')
        cropped = (roi is not None and getattr(roi, 'width', 0) and getattr(roi, 'height', 0)
                   and (roi.x_offset, roi.y_offset, roi.width, roi.height)
                   != (0, 0, width, height))
        rotation, offset = None, np.zeros(2)
        if rectified:
            if cropped:
                raise CameraInfoError('roi', 'a region of interest of a rectified image is '
                                      'not supported; publish the full rectified image')
            k, offset = _projection(info)
            rotation, model, d = _rectification(info), 'plumb_bob', np.zeros(8)
        else:
            k = _intrinsics(_matrix(_field(info, 'k', 'K', 'camera_matrix'), 3, 3, 'K'), 'K')
            model = str(_field(info, 'distortion_model') or 'plumb_bob')
            d = _field(info, 'd', 'D', 'distortion_coefficients')
            if isinstance(d, dict):
                d = d.get('data')
            d = _distortion(model, np.zeros(0) if d is None or not len(d)
                            else _matrix(d, 1, -1, 'D').ravel())
        binning = [int(_field(info, 'binning_x') or 0), int(_field(info, 'binning_y') or 0)]
        if cropped:
            k[0, 2] -= roi.x_offset
            k[1, 2] -= roi.y_offset
            width, height = int(roi.width), int(roi.height)
        for axis, factor in enumerate(binning):
            if factor > 1:
                k[axis] /= factor
                offset[axis] /= factor
                if axis == 0:
                    width //= factor
                else:
                    height //= factor
        if width <= 0 or height <= 0:
            raise CameraInfoError('width' if width <= 0 else 'height',
                                  f'the image size is {width}x{height}')
        return cls(width, height, k, d, 'equidistant' if model == 'equidistant' else model,
                   rotation, (float(offset[0]), float(offset[1])))

    def check_size(self, width, height):
        """Raise :class:`CameraInfoError` naming width or height when the image differs."""
        for name, mine, theirs in (('width', self.width, width), ('height', self.height, height)):
            if mine != theirs:
                raise CameraInfoError(name, f'the CameraInfo says {self.width}x{self.height}, '
                                      f'the image is {width}x{height}')

    def same_as(self, other):
        """Return True when ``other`` projects exactly as this model."""
        return (other is not None and self.width == other.width
                and self.height == other.height
                and self.distortion_model == other.distortion_model
                and np.array_equal(self.k, other.k) and np.array_equal(self.d, other.d)
                and np.array_equal(self._rotation(), other._rotation())
                and tuple(self.offset) == tuple(other.offset))

    def _rotation(self):
        return np.eye(3) if self.rotation is None else self.rotation

    def _distort(self, x, y):
        """Return distorted normalised coordinates and the radius up to which they are valid."""
        d = self.d
        r2 = x * x + y * y
        if self.distortion_model == 'equidistant':
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
            scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
            return x * scale, y * scale, np.tan(self._monotonic_limit())
        radial = ((1 + r2 * (d[0] + r2 * (d[1] + r2 * d[4])))
                  / (1 + r2 * (d[5] + r2 * (d[6] + r2 * d[7]))))
        xd = x * radial + 2 * d[2] * x * y + d[3] * (r2 + 2 * x * x)
        yd = y * radial + d[2] * (r2 + 2 * y * y) + 2 * d[3] * x * y
        return xd, yd, self._monotonic_limit()

    def _monotonic_limit(self):
        """
        Return the radius (theta for equidistant) up to which the distortion is monotonic.

        Beyond it a polynomial folds back, and points far outside the view would land inside
        the image; they are not seen.
        """
        d = self.d
        if self.distortion_model == 'equidistant':
            t = np.linspace(0, math.pi / 2, 20001)[1:]
            t2 = t * t
            g = t * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
        else:
            t = np.linspace(0, 20, 200001)[1:]  # radius in normalised units (87 degrees)
            r2 = t * t
            g = t * ((1 + r2 * (d[0] + r2 * (d[1] + r2 * d[4])))
                     / (1 + r2 * (d[5] + r2 * (d[6] + r2 * d[7]))))
        falling = np.flatnonzero((np.diff(g) <= 0) | ~np.isfinite(g[1:]))
        return float(t[falling[0]]) if falling.size else float(t[-1])

    def project(self, points):
        """
        Project Nx3 points of the optical frame; return (u, v, seen).

        ``seen``: in front of the camera, inside the monotonic part of the distortion and on
        the image (pixel centres at integer coordinates, as in OpenCV and ROS).
        """
        points = np.asarray(points, np.float64)
        if self.rotation is not None:  # into the rectified frame
            points = points @ self.rotation.T
        z = points[:, 2]
        front = z > 1e-9
        safe = np.where(front, z, 1.0)
        x, y = points[:, 0] / safe, points[:, 1] / safe
        xd, yd, limit = self._distort(x, y)
        k = self.k
        u = k[0, 0] * xd + k[0, 1] * yd + k[0, 2] + self.offset[0] / safe
        v = k[1, 1] * yd + k[1, 2] + self.offset[1] / safe
        seen = front & (np.hypot(x, y) < limit)
        seen &= (u >= -0.5) & (u < self.width - 0.5) & (v >= -0.5) & (v < self.height - 0.5)
        return u, v, seen


def scaled_intrinsics(k, p, roi, from_size, to_size):
    """
    Return (K, P, roi (x_offset, y_offset, width, height)) for images scaled to ``to_size``.

    Sizes are (width, height). For an output at another resolution than its input, so that
    its camera_info describes it (pixel centres stay at integer coordinates).
    """
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    k = np.array(k, np.float64).reshape(3, 3)
    p = np.array(p, np.float64).reshape(3, 4)
    for matrix in (k, p):
        matrix[0, :] *= sx
        matrix[1, :] *= sy
        matrix[0, 2] += (sx - 1) / 2 * (matrix[2, 2] if matrix is k else 1)
        matrix[1, 2] += (sy - 1) / 2 * (matrix[2, 2] if matrix is k else 1)
    x, y, w, h = roi
    roi = (round(x * sx), round(y * sy), round(w * sx), round(h * sy))
    return k, p, roi


def rotation_rpy(roll, pitch, yaw):
    """Return the rotation matrix of fixed-axis roll, pitch, yaw (REP 103: Rz Ry Rx)."""
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


#: Columns: the optical frame's x (right), y (down), z (forward) in the body frame.
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True, eq=False)
class Pose:
    """The optical frame in the grid frame: ``rotation`` (optical -> grid) and ``position``."""

    rotation: np.ndarray
    position: np.ndarray

    def close_to(self, other, tolerance=1e-6):
        """Return True when ``other`` differs by less than ``tolerance`` (m, rad-ish)."""
        return (other is not None
                and np.abs(self.rotation - other.rotation).max() < tolerance
                and np.abs(self.position - other.position).max() < tolerance)


def body_pose(x, y, z, roll, pitch, yaw):
    """Return the optical frame's Pose for a camera body at x, y, z, roll, pitch, yaw."""
    return Pose(rotation_rpy(roll, pitch, yaw) @ BODY_FROM_OPTICAL,
                np.array([x, y, z], np.float64))


def transform_pose(translation, quaternion):
    """Return the Pose of a transform (x, y, z; quaternion x, y, z, w) of the optical frame."""
    qx, qy, qz, qw = (float(q) for q in quaternion)
    norm = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if not norm:
        raise ValueError('the transform has a zero quaternion')
    qx, qy, qz, qw = qx / norm, qy / norm, qz / norm, qw / norm
    rotation = np.array([
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
        [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
        [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)]])
    return Pose(rotation, np.array([float(t) for t in translation]))


def body_poses(values, cameras, name='camera_poses'):
    """
    Return {camera: Pose} from a flat list of 6 numbers per camera, in ``cameras`` order.

    :raises ValueError: naming ``name``, the expected length and the cameras.
    """
    values = list(values if values is not None else [])
    expected = 6 * len(cameras)
    if len(values) != expected or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values):
        raise ValueError(f"'{name}': expected {expected} numbers (x, y, z, roll, pitch, yaw "
                         f'in m and rad for each of {len(cameras)} cameras: '
                         f'{", ".join(cameras)}), got {len(values)}: {values!r}')
    return {camera: body_pose(*values[6 * i:6 * i + 6]) for i, camera in enumerate(cameras)}


class GroundGrid:
    """
    Cells of the ground plane z = 0 in one frame, filled from the cameras' drivable areas.

    ``grid_range`` is (x_min, x_max, y_min, y_max) in m; there are ``width`` = ceil((x_max -
    x_min) / resolution) columns along x and ``height`` rows along y, cell (i, j) centred at
    (x_min + (i + 0.5) * resolution, y_min + (j + 0.5) * resolution). ``cameras`` orders the
    cameras for ties (the first wins); cameras not listed come after them, in the order they
    got their lookup tables.
    """

    def __init__(self, grid_range, resolution, cameras=()):
        """Lay out the cells; raise ValueError for an empty or huge grid."""
        x_min, x_max, y_min, y_max = (float(v) for v in grid_range)
        resolution = float(resolution)
        if not (resolution > 0 and math.isfinite(resolution)):
            raise ValueError(f"'resolution': expected a number > 0, got {resolution!r}")
        if not (x_min < x_max and y_min < y_max):
            raise ValueError(f"'range': expected x_min < x_max and y_min < y_max, got "
                             f'{list(grid_range)}')
        self.range = (x_min, x_max, y_min, y_max)
        self.resolution = resolution
        self.width = math.ceil((x_max - x_min) / resolution - 1e-9)
        self.height = math.ceil((y_max - y_min) / resolution - 1e-9)
        if self.width * self.height > MAX_CELLS:
            raise ValueError(f"'range' / 'resolution': {self.width} x {self.height} cells, more "
                             f'than {MAX_CELLS}')
        xs = x_min + (np.arange(self.width) + 0.5) * resolution
        ys = y_min + (np.arange(self.height) + 0.5) * resolution
        grid_x, grid_y = np.meshgrid(xs, ys)  # rows along y: row-major is data[i + j * width]
        self.centres = np.stack([grid_x.ravel(), grid_y.ravel(), np.zeros(grid_x.size)], 1)
        self._rank = {name: index for index, name in enumerate(cameras)}
        self._cameras = {}  # name -> (model, pose, pixel index or -1, distance)
        self._plans = {}  # frozenset of names -> [(name, cells, pixels)]
        self._lut = np.full(256, OCCUPIED, np.int8)
        self._lut[1:] = FREE  # drivable_area: 0 not drivable, 255 drivable

    @property
    def cameras(self):
        """Return the names of the cameras with a lookup table, in the order they came."""
        return list(self._cameras)

    def set_camera(self, name, model, pose):
        """
        Give camera ``name`` its CameraModel and Pose; return True when the lookup changed.

        The cell -> pixel lookup is recomputed only when the model or the pose differ from
        the ones it was made with.
        """
        old = self._cameras.get(name)
        if old is not None and old[0].same_as(model) and old[1].close_to(pose):
            return False
        pixels, distance = self.lookup(model, pose)
        self._cameras[name] = (model, pose, pixels, distance)
        self._plans.clear()
        return True

    def remove_camera(self, name):
        """Forget camera ``name`` (its cells become unknown unless another camera sees them)."""
        if self._cameras.pop(name, None) is not None:
            self._plans.clear()

    def lookup(self, model, pose):
        """
        Return (pixel index per cell or -1, distance per cell in m) of one camera.

        The pixel index is row * model.width + column of the pixel at the cell centre.
        """
        offset = self.centres - pose.position
        optical = offset @ pose.rotation  # grid -> optical: R^T (p - t), row-wise
        with np.errstate(over='ignore', invalid='ignore'):  # far outside the view
            u, v, seen = model.project(optical)
        columns = np.floor(np.where(seen, u, 0) + 0.5).astype(np.int64)
        rows = np.floor(np.where(seen, v, 0) + 0.5).astype(np.int64)
        pixels = np.where(seen, rows * model.width + columns, -1).astype(np.int32)
        distance = np.where(seen, np.linalg.norm(offset, axis=1), np.inf).astype(np.float32)
        return pixels, distance

    def _plan(self, names):
        """Return [(name, cell indices, pixel indices)] of the nearest-camera rule."""
        key = frozenset(names)
        plan = self._plans.get(key)
        if plan is None:
            ordered = sorted((n for n in self._cameras if n in key),
                             key=lambda n: self._rank.get(n, len(self._rank)))  # stable
            distances = np.stack([self._cameras[n][3] for n in ordered])
            # Earlier cameras win ties: they get the distance a little shorter.
            distances = distances - _TIE_M * np.arange(len(ordered), 0, -1)[:, None]
            owner = np.argmin(distances, axis=0)
            seen = np.isfinite(distances.min(axis=0))
            plan = []
            for index, name in enumerate(ordered):
                cells = np.flatnonzero(seen & (owner == index)).astype(np.int32)
                plan.append((name, cells, self._cameras[name][2][cells]))
            self._plans[key] = plan
        return plan

    def fuse(self, drivable_by_camera):
        """
        Return the int8 (height, width) grid from {camera: HxW uint8 drivable area}.

        0 / 255 drivable area in; cells 0 (drivable), 100 (not) or -1 (no given camera sees
        them). Cameras without a lookup table are ignored; an image of another size than its
        camera's model raises ValueError.
        """
        names = [n for n in drivable_by_camera if n in self._cameras]
        grid = np.full(self.width * self.height, UNKNOWN, np.int8)
        if names:
            for name, cells, pixels in self._plan(names):
                image = drivable_by_camera[name]
                model = self._cameras[name][0]
                if image.shape[:2] != (model.height, model.width):
                    raise ValueError(f'camera {name!r}: drivable area {image.shape[1]}x'
                                     f'{image.shape[0]}, its CameraInfo says '
                                     f'{model.width}x{model.height}')
                values = np.ascontiguousarray(image).reshape(-1).take(pixels)
                grid[cells] = self._lut.take(values)
        return grid.reshape(self.height, self.width)


def render_grid(grid):
    """Return an RGB picture of a grid: x forward up, y left to the left (as seen from above)."""
    colours = np.array([[128, 128, 128], [40, 170, 60], [200, 50, 40]], np.uint8)
    index = np.where(grid < 0, 0, np.where(grid == FREE, 1, 2))
    return np.ascontiguousarray(colours[index][::-1, ::-1].transpose(1, 0, 2)[:, :])


__all__ = ['BODY_FROM_OPTICAL', 'CameraInfoError', 'CameraModel', 'DISTORTION_MODELS', 'FREE',
           'GroundGrid', 'OCCUPIED', 'Pose', 'UNKNOWN', 'body_pose', 'body_poses',
           'render_grid', 'rotation_rpy', 'scaled_intrinsics', 'transform_pose']
