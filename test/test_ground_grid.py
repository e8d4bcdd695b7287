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
The ground grid's geometry (inference/ground_projection.py) against OpenCV's own projection.

The reference here builds each camera's world-to-optical rotation from its axes by hand and
projects every cell centre with ``cv2.projectPoints`` / ``cv2.fisheye.projectPoints``.
"""

import math
from types import SimpleNamespace

import cv2
from liteseg_ros.inference.ground_projection import (body_pose, body_poses,
                                                     CameraInfoError, CameraModel, GroundGrid,
                                                     render_grid, scaled_intrinsics,
                                                     transform_pose)
import numpy as np
import pytest

pytestmark = pytest.mark.lite

K640 = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]


def info(width=640, height=480, k=K640, d=(), model='plumb_bob', binning=0, roi=(0, 0, 0, 0),
         r=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), p=None):
    """Return an object with the fields of a sensor_msgs/CameraInfo (P defaults to [K | 0])."""
    if p is None:
        p = np.hstack([np.reshape(k, (3, 3)), np.zeros((3, 1))]).ravel() if len(k) == 9 else ()
    return SimpleNamespace(width=width, height=height, k=list(k), d=list(d),
                           distortion_model=model, binning_x=binning, binning_y=binning,
                           r=list(r), p=list(p),
                           roi=SimpleNamespace(x_offset=roi[0], y_offset=roi[1], width=roi[2],
                                               height=roi[3]))


def world_to_optical(x, y, z, pitch, yaw):
    """Return (rvec, tvec) of a camera body at (x, y, z), pitched down by pitch, yawed (roll 0)."""
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch),
                        -math.sin(pitch)])
    left = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    up = np.cross(forward, left)
    rotation = np.stack([-left, -up, forward])  # rows: optical x, y, z in the world
    rvec, _ = cv2.Rodrigues(rotation)
    return rvec, -rotation @ np.array([x, y, z])


def reference_grid(grid, model, drivable, x, y, z, pitch, yaw):
    """Project every cell centre with OpenCV; return the expected int8 grid."""
    rvec, tvec = world_to_optical(x, y, z, pitch, yaw)
    centres = grid.centres
    depth = (centres - [x, y, z]) @ cv2.Rodrigues(rvec)[0][2]
    if model.distortion_model == 'equidistant':
        pixels, _ = cv2.fisheye.projectPoints(centres.reshape(-1, 1, 3), rvec, tvec, model.k,
                                              model.d[:4])
    else:
        pixels, _ = cv2.projectPoints(centres, rvec, tvec, model.k, model.d[:5])
    u, v = pixels[:, 0, 0], pixels[:, 0, 1]
    col, row = np.floor(u + 0.5).astype(int), np.floor(v + 0.5).astype(int)
    seen = (depth > 0) & (col >= 0) & (col < model.width) & (row >= 0) & (row < model.height)
    expected = np.full(len(centres), -1, np.int8)
    expected[seen] = np.where(drivable[row[seen], col[seen]] > 0, 0, 100)
    return expected.reshape(grid.height, grid.width)


def road_mask(height=480, width=640, seed=0):
    """Return a drivable trapezoid with a few obstacles: edges in many directions."""
    mask = np.zeros((height, width), np.uint8)
    corners = np.array([[0, height], [width * 0.4, height * 0.55], [width * 0.6, height * 0.55],
                        [width, height]], np.int32)
    cv2.fillPoly(mask, [corners], 255)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        cv2.circle(mask, (int(rng.integers(0, width)), int(rng.integers(height // 2, height))),
                   int(rng.integers(5, 30)), 0, -1)
    return mask


@pytest.mark.parametrize('model, d', [
    ('plumb_bob', (-0.12, 0.03, 0.001, -0.0015, 0.002)),
    ('rational_polynomial', (0.2, -0.05, 0.001, 0.001, 0.01, 0.5, -0.02, 0.02)),
    ('equidistant', (0.05, -0.01, 0.002, -0.0005)),
])
def test_projection_agrees_with_opencv(model, d):
    camera = CameraModel.from_camera_info(info(d=d, model=model))
    points = np.random.default_rng(1).uniform([-3, -2, 1], [3, 2, 6], (2000, 3))
    u, v, seen = camera.project(points)
    if model == 'equidistant':
        ref, _ = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), np.zeros(3), np.zeros(3),
                                           camera.k, np.array(d))
    else:
        ref, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), camera.k, np.array(d))
    np.testing.assert_allclose(u, ref[:, 0, 0], atol=1e-6)
    np.testing.assert_allclose(v, ref[:, 0, 1], atol=1e-6)
    inside = (ref[:, 0, 0] >= -0.5) & (ref[:, 0, 0] < 639.5) & (ref[:, 0, 1] >= -0.5) & (
        ref[:, 0, 1] < 479.5)
    np.testing.assert_array_equal(seen, inside)


@pytest.mark.parametrize('model, d', [
    ('plumb_bob', (-0.05, 0.01, 0.0005, 0.0005, 0.0)),
    ('equidistant', (0.02, -0.005, 0.0, 0.0)),
])
def test_grid_equals_an_independent_projection(model, d):
    """One camera 1.5 m high pitched 10 degrees down; >= 98 % of cells as OpenCV says."""
    camera = CameraModel.from_camera_info(info(d=d, model=model))
    grid = GroundGrid([0, 40, -20, 20], 0.1)
    pitch = math.radians(10)
    grid.set_camera('front', camera, body_pose(0.5, 0.2, 1.5, 0, pitch, 0))
    drivable = road_mask()
    fused = grid.fuse({'front': drivable})
    expected = reference_grid(grid, camera, drivable, 0.5, 0.2, 1.5, pitch, 0)
    assert fused.shape == (400, 400) and fused.dtype == np.int8
    agree = (fused == expected).mean()
    assert agree >= 0.98, agree
    # No cell is known that the camera cannot see; cells differ only on a pixel border.
    assert not ((expected == -1) & (fused != -1)).any()
    assert (fused == 0).sum() > 1000 and (fused == 100).sum() > 1000
    # The optical axis meets the ground 1.5 / tan(10 deg) ahead of the camera, at the centre.
    pixels, _ = grid.lookup(camera, body_pose(0.5, 0.2, 1.5, 0, pitch, 0))
    ahead = 0.5 + 1.5 / math.tan(pitch)
    cell = int((0.2 + 20) / 0.1) * grid.width + int(ahead / 0.1)
    row, col = divmod(int(pixels[cell]), 640)
    assert abs(row - 239.5) < 3 and abs(col - 319.5) < 3, (row, col)


def test_cells_are_laid_out_as_an_occupancy_grid():
    """data[i + j * width] is cell (i along x, j along y), centred half a cell in."""
    grid = GroundGrid([-1.0, 3.0, -2.0, 0.0], 0.5)
    assert (grid.width, grid.height) == (8, 4)
    i, j = 5, 2
    expected = [-1 + 5.5 * 0.5, -2 + 2.5 * 0.5, 0]
    np.testing.assert_allclose(grid.centres[i + j * grid.width], expected)
    assert GroundGrid([0, 1.05, 0, 1], 0.1).width == 11  # a partial cell counts


def test_front_and_rear_fuse_by_the_nearest_camera():
    camera = CameraModel.from_camera_info(info(k=[150.0, 0, 319.5, 0, 150.0, 239.5, 0, 0, 1]))
    grid = GroundGrid([-20, 20, -10, 10], 0.2)
    pitch = math.radians(20)
    # Mounted 2 m apart, each looking away from the other: their views overlap beside the car.
    front, rear = body_pose(-1.0, 0, 1.6, 0, pitch, 0), body_pose(1.0, 0, 1.6, 0, pitch, math.pi)
    assert grid.set_camera('front', camera, front) and grid.set_camera('rear', camera, rear)
    ones = np.full((480, 640), 255, np.uint8)
    zeros = np.zeros((480, 640), np.uint8)
    fused = grid.fuse({'front': ones, 'rear': zeros})
    xs = grid.centres[:, 0].reshape(grid.height, grid.width)
    assert (fused[xs > 2] != 100).all() and (fused[xs > 4] == 0).mean() > 0.5
    assert (fused[xs < -2] != 0).all() and (fused[xs < -4] == 100).mean() > 0.5
    # On the overlap each cell comes from the nearer camera.
    p_front, d_front = grid.lookup(camera, front)
    p_rear, d_rear = grid.lookup(camera, rear)
    both = (p_front >= 0) & (p_rear >= 0)
    assert both.sum() > 50, both.sum()
    flat = fused.ravel()
    np.testing.assert_array_equal(flat[both], np.where(d_front[both] <= d_rear[both], 0, 100))
    # One camera missing from the batch: the other fills what it sees.
    only_rear = grid.fuse({'rear': zeros}).ravel()
    np.testing.assert_array_equal(only_rear[p_rear >= 0], 100)
    assert (only_rear[(p_rear < 0)] == -1).all()


@pytest.mark.parametrize('added', [('a', 'b'), ('b', 'a')])
def test_a_tie_goes_to_the_first_of_cameras_whatever_came_first(added):
    """The order of `cameras`, not the order the lookup tables were made (message order)."""
    camera = CameraModel.from_camera_info(info())
    grid = GroundGrid([0, 20, -5, 5], 0.25, cameras=['a', 'b'])
    pose = body_pose(0, 0, 1.5, 0, 0.2, 0)
    for name in added:
        grid.set_camera(name, camera, pose)
    drivable = np.full((480, 640), 255, np.uint8)
    fused = grid.fuse({'b': np.zeros((480, 640), np.uint8), 'a': drivable})
    assert (fused[fused != -1] == 0).all() and (fused == 0).any()
    # Cameras outside the list come after it, in the order they were added.
    grid.set_camera('c', camera, pose)
    fused = grid.fuse({'c': np.zeros((480, 640), np.uint8), 'b': drivable})
    assert (fused[fused != -1] == 0).all() and (fused == 0).any()


def test_the_lookup_is_recomputed_only_when_something_changed():
    camera = CameraModel.from_camera_info(info())
    grid = GroundGrid([0, 10, -5, 5], 0.5)
    pose = body_pose(0, 0, 1.5, 0, 0.2, 0)
    assert grid.set_camera('a', camera, pose)
    assert not grid.set_camera('a', CameraModel.from_camera_info(info()),
                               body_pose(0, 0, 1.5, 0, 0.2, 0))
    assert grid.set_camera('a', camera, body_pose(0, 0, 1.6, 0, 0.2, 0))
    assert grid.set_camera('a', CameraModel.from_camera_info(info(d=[0.1, 0, 0, 0, 0])),
                           body_pose(0, 0, 1.6, 0, 0.2, 0))
    grid.remove_camera('a')
    assert (grid.fuse({'a': np.zeros((480, 640), np.uint8)}) == -1).all()


def test_a_camera_never_sees_the_sky_or_behind_it():
    """Looking up or level: the sky half and everything behind stay unknown."""
    camera = CameraModel.from_camera_info(info())
    grid = GroundGrid([-20, 20, -20, 20], 0.5)
    grid.set_camera('a', camera, body_pose(0, 0, 1.5, 0, -0.3, 0))  # looking up
    fused = grid.fuse({'a': np.full((480, 640), 255, np.uint8)})
    xs = grid.centres[:, 0].reshape(grid.height, grid.width)
    assert (fused[xs < 0] == -1).all()
    pixels, _ = grid.lookup(camera, body_pose(0, 0, 1.5, 0, -0.3, 0))
    rows = pixels[pixels >= 0] // 640
    assert rows.min() > 240  # the ground is below the image centre


def test_strong_distortion_does_not_fold_back_into_the_image():
    """Past the radius where plumb_bob bends back, points are not seen."""
    camera = CameraModel.from_camera_info(info(d=(-0.4, 0.05, 0, 0, 0)))
    # r (1 - 0.4 r^2 + 0.05 r^4) falls beyond r = 1.04: r = 1.5 (56 degrees off axis) lands
    # at r = 0.53, inside the image.
    points = np.array([[0.0, 0.0, 1.0], [0.5, 0.0, 1.0], [1.5, 0.0, 1.0]])
    _, _, seen = camera.project(points)
    ref, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), camera.k, camera.d[:5])
    assert 0 <= ref[2, 0, 0] < 640  # OpenCV folds the far point into the image
    assert seen[0] and seen[1] and not seen[2]


@pytest.mark.parametrize('change, field', [
    ({'k': [0.0] * 9}, 'K'),
    ({'k': [500, 0, 320, 0, 0, 240, 0, 0, 1]}, 'K'),
    ({'k': [500, 0, 320, 0, 500]}, 'K'),
    ({'width': 0}, 'width'),
    ({'d': [0.1, 0.2, 0.3]}, 'D'),
    ({'model': 'kannala', 'd': [0.1, 0, 0, 0]}, 'distortion_model'),
])
def test_bad_camera_info_names_the_field(change, field):
    values = {'width': 640, 'height': 480, 'k': K640, 'd': (), 'model': 'plumb_bob'}
    values.update(change)
    with pytest.raises(CameraInfoError) as error:
        CameraModel.from_camera_info(info(**values))
    assert error.value.field == field and str(error.value).startswith(field + ':')


def rectified_pair():
    """Return a distorted raw camera with its rectified image (own P, R a rotation), and R."""
    rotation, _ = cv2.Rodrigues(np.array([0.02, -0.03, 0.01]))
    p = [420.0, 0.0, 330.0, 0.0, 0.0, 420.0, 245.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info(k=K640, d=(-0.2, 0.05, 0.001, -0.001, 0.0), r=rotation.ravel(), p=p), rotation


def test_rectified_images_are_described_by_p_and_r():
    """A point's rectified pixel is where OpenCV rectifies its raw (distorted) pixel."""
    camera_info, _ = rectified_pair()
    raw = CameraModel.from_camera_info(camera_info)
    rectified = CameraModel.from_camera_info(camera_info, rectified=True)
    rng = np.random.default_rng(3)
    points = np.column_stack([rng.uniform(-0.4, 0.4, 200), rng.uniform(-0.3, 0.3, 200),
                              np.ones(200)]) * rng.uniform(2, 20, (200, 1))
    u, v, seen = raw.project(points)
    assert seen.all()
    expected = cv2.undistortPoints(
        np.column_stack([u, v]).reshape(-1, 1, 2), raw.k, raw.d[:5],
        R=np.reshape(camera_info.r, (3, 3)), P=np.reshape(camera_info.p, (3, 4))[:, :3],
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12))[:, 0]
    u_rect, v_rect, seen_rect = rectified.project(points)
    assert seen_rect.all()
    np.testing.assert_allclose(np.column_stack([u_rect, v_rect]), expected, atol=1e-3)
    # K and D would put them elsewhere: P and R are what describe the rectified image.
    assert np.abs(np.column_stack([u, v]) - expected).max() > 20


def test_rectified_projection_applies_p_fully():
    """[u v w] = P [R X; 1]: P's Tx, Ty (second camera of a stereo pair) and binning."""
    camera_info, rotation = rectified_pair()
    p = np.reshape(camera_info.p, (3, 4)).copy()
    p[0, 3], p[1, 3] = -420.0 * 0.12, 3.0
    camera_info.p = list(p.ravel())
    points = np.array([[0.5, 0.3, 4.0], [-1.0, 0.2, 9.0], [0.0, 0.0, 2.0]])
    uvw = (p @ np.vstack([rotation @ points.T, np.ones(len(points))])).T
    u, v, _ = CameraModel.from_camera_info(camera_info, rectified=True).project(points)
    np.testing.assert_allclose(np.column_stack([u, v]), uvw[:, :2] / uvw[:, 2:], atol=1e-9)
    camera_info.binning_x = camera_info.binning_y = 2
    binned = CameraModel.from_camera_info(camera_info, rectified=True)
    assert (binned.width, binned.height) == (320, 240)
    u2, v2, _ = binned.project(points)
    np.testing.assert_allclose(np.column_stack([u2, v2]), uvw[:, :2] / uvw[:, 2:] / 2,
                               atol=1e-9)


@pytest.mark.parametrize('change, field', [
    ({'p': [0.0] * 12}, 'P'),
    ({'p': [420.0, 0, 330, 0, 0, 420, 245, 0, 0, 0, 1, 5]}, 'P'),
    ({'r': [1.0, 0, 0, 0, 2.0, 0, 0, 0, 1.0]}, 'R'),
    ({'roi': (10, 10, 320, 240)}, 'roi'),
])
def test_bad_rectified_camera_info_names_the_field(change, field):
    values = {'p': [420.0, 0, 330, 0, 0, 420, 245, 0, 0, 0, 1, 0]}
    values.update(change)
    with pytest.raises(CameraInfoError) as error:
        CameraModel.from_camera_info(info(**values), rectified=True)
    assert error.value.field == field and str(error.value).startswith(field + ':')


def test_rectified_needs_neither_k_nor_a_known_distortion_model():
    """Uncalibrated K or an unknown model do not matter to a rectified image; zero R is I."""
    camera = CameraModel.from_camera_info(
        info(k=[0.0] * 9, d=(0.1, 0, 0, 0), model='kannala', r=[0.0] * 9,
             p=[420.0, 0, 330, 0, 0, 420, 245, 0, 0, 0, 1, 0]), rectified=True)
    u, v, seen = camera.project(np.array([[0.0, 0.0, 1.0]]))
    assert seen[0] and (u[0], v[0]) == (330.0, 245.0)


def test_size_check_names_the_field():
    camera = CameraModel.from_camera_info(info())
    camera.check_size(640, 480)
    with pytest.raises(CameraInfoError, match='height: the CameraInfo says 640x480, the image '
                                              'is 640x360'):
        camera.check_size(640, 360)


def test_calibration_yaml_binning_and_roi():
    yaml_dict = {'image_width': 640, 'image_height': 480, 'camera_name': 'front',
                 'camera_matrix': {'rows': 3, 'cols': 3, 'data': K640},
                 'distortion_model': 'plumb_bob',
                 'distortion_coefficients': {'rows': 1, 'cols': 5, 'data': [0.1, 0, 0, 0, 0]}}
    camera = CameraModel.from_camera_info(yaml_dict)
    assert (camera.width, camera.height) == (640, 480) and camera.d[0] == 0.1
    binned = CameraModel.from_camera_info(info(binning=2))
    assert (binned.width, binned.height) == (320, 240) and binned.k[0, 0] == 250
    cropped = CameraModel.from_camera_info(info(roi=(100, 50, 200, 100)))
    assert (cropped.width, cropped.height) == (200, 100) and cropped.k[0, 2] == 219.5


def test_scaled_intrinsics_keep_points_on_the_same_image_spot():
    k = np.array(K640).reshape(3, 3)
    p = np.hstack([k, np.zeros((3, 1))])
    k2, p2, roi = scaled_intrinsics(k, p, (0, 0, 640, 480), (640, 480), (320, 240))
    point = np.array([0.3, -0.2, 2.0])
    u, v = (k @ point)[:2] / point[2]
    u2, v2 = (k2 @ point)[:2] / point[2]
    assert abs((u + 0.5) / 2 - 0.5 - u2) < 1e-9 and abs((v + 0.5) / 2 - 0.5 - v2) < 1e-9
    np.testing.assert_allclose(p2[:, :3], k2)
    assert roi == (0, 0, 320, 240)


def test_transform_pose_equals_body_pose():
    """A tf transform of the optical frame gives the same Pose as the body angles."""
    pose = body_pose(1.0, -0.5, 1.4, 0.02, 0.17, 0.3)
    w = math.sqrt(max(0.0, 1 + np.trace(pose.rotation))) / 2
    r = pose.rotation
    quaternion = [(r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w),
                  (r[1, 0] - r[0, 1]) / (4 * w), w]
    other = transform_pose([1.0, -0.5, 1.4], quaternion)
    assert pose.close_to(other, 1e-9)


def test_camera_poses_need_six_numbers_per_camera():
    poses = body_poses([0, 0, 1.5, 0, 0.1, 0] * 2, ['front', 'rear'])
    assert set(poses) == {'front', 'rear'}
    with pytest.raises(ValueError, match=r"'ground_grid.camera_poses': expected 12 numbers"):
        body_poses([0, 0, 1.5, 0, 0.1, 0], ['front', 'rear'], 'ground_grid.camera_poses')


def test_grid_parameters_are_checked():
    with pytest.raises(ValueError, match="'range'"):
        GroundGrid([0, 0, -1, 1], 0.1)
    with pytest.raises(ValueError, match="'resolution'"):
        GroundGrid([0, 1, -1, 1], 0)
    with pytest.raises(ValueError, match='cells'):
        GroundGrid([0, 1000, -1000, 1000], 0.01)


def test_render_grid_is_seen_from_above():
    grid = np.full((4, 6), -1, np.int8)  # 4 rows along y, 6 columns along x
    grid[0, 5] = 0  # far ahead (x max), far right (y min)
    picture = render_grid(grid)
    assert picture.shape == (6, 4, 3)
    assert tuple(picture[0, 3]) == (40, 170, 60)  # top right
