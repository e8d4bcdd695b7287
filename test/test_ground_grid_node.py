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
segment_node's camera geometry end to end: camera_info through, and the drivable grid.

The node runs as a real process (test_segment_node.py's NodeProcess). This process publishes
CameraInfo and images and checks ``C/segmentation/camera_info`` against each mask, and the
``segmentation/drivable_grid`` OccupancyGrid against the published ``drivable_area`` images
projected here, cell by cell, with ``cv2.projectPoints``.
"""

import math
import time
from types import SimpleNamespace

import cv2
from lifecycle_msgs.msg import State, Transition
from liteseg_ros.inference import Segmenter
from liteseg_ros.ros.messages import encoded_image_message
from liteseg_ros.sample_images import make_street_scene
from model_fixtures import make_checkpoint
from nav_msgs.msg import OccupancyGrid
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from test_segment_node import (change_state, client, get_state, header, image_array,  # noqa: F401
                               ros_context, run_node, same_header, set_parameter, stamp_now)

pytestmark = pytest.mark.ros

K640 = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
D_FRONT = [-0.05, 0.01, 0.0005, -0.0005, 0.0]
PITCH = math.radians(10)


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """Export a seeded PP-LiteSeg-T at 128x256 (dynamic batch ONNX); load its Segmenter."""
    from training.export import export_onnx

    root = tmp_path_factory.mktemp('grid_model')
    checkpoint = make_checkpoint(root / 't.pt', input_size=[128, 256])
    export_onnx(checkpoint, root / 't.onnx', dynamic_batch=True)
    return {'onnx': root / 't.onnx', 'segmenter': Segmenter.from_file(root / 't.onnx',
                                                                      threads=1)}


def drivable_names(segmenter, frames):
    """Class names making 20-80 % of the frames drivable, so the grid has both values."""
    masks = [r.mask for r in segmenter(frames)]
    counts = sum(np.bincount(m.ravel(), minlength=256) for m in masks).astype(float)
    order = np.argsort(-counts)
    chosen, share = [], 0.0
    for class_id in order:
        if share >= 0.2:
            break
        chosen.append(int(class_id))
        share += counts[class_id] / counts.sum()
    assert share <= 0.8, share
    return [segmenter.class_names[i] for i in chosen]


def camera_info(frame_id, stamp, width=640, height=480, k=K640, d=D_FRONT):
    msg = CameraInfo()
    msg.header = header(frame_id, stamp)
    msg.width, msg.height = width, height
    msg.distortion_model = 'plumb_bob'
    msg.d = list(map(float, d))
    msg.k = list(map(float, k))
    msg.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    msg.p = [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def optical_rotation(pitch, yaw):
    """Rows: the optical x, y, z axes in base_link of a camera body pitched and yawed (roll 0)."""
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch),
                        -math.sin(pitch)])
    left = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    return np.stack([-left, -np.cross(forward, left), forward])


def cell_centres(grid):
    info = grid.info
    xs = info.origin.position.x + (np.arange(info.width) + 0.5) * info.resolution
    ys = info.origin.position.y + (np.arange(info.height) + 0.5) * info.resolution
    gx, gy = np.meshgrid(xs, ys)  # data[i + j * width]: rows along y
    return np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)


def project(grid, drivable, pose, k=K640, d=D_FRONT):
    """Return (expected cell values or -1, distance to the camera) of one camera."""
    x, y, z, _, pitch, yaw = pose
    rotation = optical_rotation(pitch, yaw)
    centres = cell_centres(grid)
    position = np.array([x, y, z])
    depth = (centres - position) @ rotation[2]
    rvec, _ = cv2.Rodrigues(rotation)
    pixels, _ = cv2.projectPoints(centres, rvec, -rotation @ position,
                                  np.array(k).reshape(3, 3), np.array(d))
    col = np.floor(pixels[:, 0, 0] + 0.5).astype(int)
    row = np.floor(pixels[:, 0, 1] + 0.5).astype(int)
    height, width = drivable.shape
    seen = (depth > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    expected = np.full(len(centres), -1, np.int8)
    expected[seen] = np.where(drivable[row[seen], col[seen]] > 0, 0, 100)
    return expected, np.where(seen, np.linalg.norm(centres - position, axis=1), np.inf)


class Listener:
    """Subscriptions to the grid, and to each camera's drivable_area and camera_info."""

    def __init__(self, peer, cameras):
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.got = {'grid': []}
        node = peer.node
        self.subscriptions = [node.create_subscription(
            OccupancyGrid, '/segmentation/drivable_grid', self.got['grid'].append, qos)]
        for camera in cameras:
            for output, msg_type in (('drivable_area', Image), ('camera_info', CameraInfo)):
                queue = self.got.setdefault((camera, output), [])
                self.subscriptions.append(node.create_subscription(
                    msg_type, f'/{camera}/segmentation/{output}', queue.append, qos))

    def matched(self):
        return all(s.get_publisher_count() > 0 for s in self.subscriptions)

    def one(self, key, sent):
        matches = [m for m in self.got[key] if same_header(m, sent)]
        assert len(matches) == 1, (key, len(matches))
        return matches[0]


def arrived(listener, sent, outputs):
    """Return True when each camera's ``outputs`` with its ``sent`` header arrived."""
    return all(any(same_header(m, h) for m in listener.got[(camera, output)])
               for camera, h in sent.items() for output in outputs)


def grid_with_stamp(listener, stamp):
    return [g for g in listener.got['grid'] if (g.header.stamp.sec, g.header.stamp.nanosec)
            == (stamp.sec, stamp.nanosec)]


def start(peer, start_node, model, cameras, poses, names, **extra):
    params = {'model_path': str(model['onnx']), 'cameras': cameras, 'threads': 1,
              'batch_timeout_ms': 3000.0, 'max_frame_age_ms': 0.0,
              'qos_reliability': 'reliable', 'qos_depth': 5, 'drivable_classes': names,
              'diagnostics_period_s': 0.2, 'ground_grid.enabled': True,
              'ground_grid.camera_poses': poses, **extra}
    node = start_node(**params)
    listener = Listener(peer, cameras)
    publishers = {c: (peer.publisher(f'/{c}/image_raw'),
                      peer.publisher(f'/{c}/camera_info', CameraInfo)) for c in cameras}
    return node, listener, publishers


def settle(peer, seconds=0.3):
    """Spin a moment: a CameraInfo travels on its own topic, before the image it describes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peer.executor.spin_once(timeout_sec=0.02)


def wait_ready(peer, listener, publishers):
    peer.spin_until(lambda: listener.matched() and all(
        p.get_subscription_count() > 0 for pair in publishers.values() for p in pair), 60,
        'the node to match the test topics')


def test_one_camera_grid_matches_an_independent_projection(model, client, run_node):  # noqa: F811
    """640x480, 1.5 m high, pitched 10 degrees down: the drivable area on the ground."""
    frames = [make_street_scene(480, 640, seed=s) for s in range(3)]
    names = drivable_names(model['segmenter'], frames)
    pose = [0.0, 0.0, 1.5, 0.0, PITCH, 0.0]
    node, listener, publishers = start(client, run_node, model, ['front'], pose, names)
    wait_ready(client, listener, publishers)
    image_pub, info_pub = publishers['front']
    for frame in frames:
        sent = header('front_optical', stamp_now())
        info_pub.publish(camera_info('front_optical', sent.stamp))
        settle(client)
        image_pub.publish(encoded_image_message(frame, 'rgb8', sent))
        client.spin_until(lambda: grid_with_stamp(listener, sent.stamp) and arrived(
            listener, {'front': sent}, ('camera_info', 'drivable_area')), 60,
            'the grid, camera_info and drivable_area of a frame')
        # camera_info beside the mask: same stamp and frame_id, the input's intrinsics.
        info = listener.one(('front', 'camera_info'), sent)
        assert (info.width, info.height) == (640, 480)
        np.testing.assert_allclose(info.k, K640)
        np.testing.assert_allclose(info.d, D_FRONT)
        drivable = image_array(listener.one(('front', 'drivable_area'), sent))
        (grid,) = grid_with_stamp(listener, sent.stamp)
        assert grid.header.frame_id == 'base_link'
        assert (grid.info.width, grid.info.height) == (400, 400)
        assert grid.info.resolution == pytest.approx(0.1)
        assert (grid.info.origin.position.x, grid.info.origin.position.y) == (0.0, -20.0)
        cells = np.asarray(grid.data, np.int8)
        expected, _ = project(grid, drivable, pose)
        agree = (cells == expected).mean()
        assert agree >= 0.98, agree
        assert not ((expected == -1) & (cells != -1)).any()  # nothing known it cannot see
        assert (cells == 0).sum() > 1000 and (cells == 100).sum() > 1000
        # The rest lie on the drivable area's edges: a pixel away is the other value.
        differ = np.flatnonzero(cells != expected)
        edges = cv2.morphologyEx(drivable, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        edge_cells, _ = project(grid, edges, pose)
        assert not differ.size or (edge_cells[differ] == 0).mean() > 0.9
    _, _, values = client.wait_diagnostics(
        'ground_grid', lambda level, message, v: int(v['grids_published']) >= 3, 30,
        'the grid status')
    assert values['lookup_tables_made'] == '1', values  # one lookup for the unchanged camera
    assert node.alive()


def test_front_and_rear_cameras_fill_both_halves(model, client, run_node):  # noqa: F811
    """Rear looking back; the overlap beside the car comes from the nearer camera."""
    k_wide = [120.0, 0.0, 159.5, 0.0, 120.0, 119.5, 0.0, 0.0, 1.0]
    frames = {'front': make_street_scene(240, 320, seed=4),
              'rear': make_street_scene(240, 320, seed=5)}
    names = drivable_names(model['segmenter'], list(frames.values()))
    # 6 m apart, each looking away from the other: their views overlap beside the car.
    poses = {'front': [-3.0, 0.0, 1.6, 0.0, math.radians(20), 0.0],
             'rear': [3.0, 0.0, 1.6, 0.0, math.radians(20), math.pi]}
    node, listener, publishers = start(
        client, run_node, model, ['front', 'rear'], poses['front'] + poses['rear'], names,
        **{'ground_grid.range': [-20.0, 20.0, -10.0, 10.0], 'ground_grid.resolution': 0.2})
    wait_ready(client, listener, publishers)
    sent = {}
    for offset, camera in enumerate(('front', 'rear')):
        sent[camera] = header(f'{camera}_optical', stamp_now(-0.05 * (1 - offset)))
        publishers[camera][1].publish(camera_info(f'{camera}_optical', sent[camera].stamp, 320,
                                                  240, k_wide, [0.0] * 5))
    settle(client)
    for camera, (image_pub, _) in publishers.items():
        image_pub.publish(encoded_image_message(frames[camera], 'rgb8', sent[camera]))
    newest = sent['rear'].stamp
    client.spin_until(lambda: grid_with_stamp(listener, newest) and arrived(
        listener, sent, ('drivable_area',)), 60, 'the grid and drivable areas of both')
    (grid,) = grid_with_stamp(listener, newest)  # stamped with the newer frame
    cells = np.asarray(grid.data, np.int8)
    projections = {c: project(grid, image_array(listener.one((c, 'drivable_area'), sent[c])),
                              poses[c], k_wide, [0.0] * 5) for c in poses}
    (front, d_front), (rear, d_rear) = projections['front'], projections['rear']
    xs = cell_centres(grid)[:, 0]
    assert (cells[xs > 6] != -1).mean() > 0.5 and (cells[xs < -6] != -1).mean() > 0.5
    # Nearest camera wins; a tie goes to the first camera of `cameras`.
    expected = np.where(d_front <= d_rear, front, rear)
    both = np.isfinite(d_front) & np.isfinite(d_rear)
    assert both.sum() > 50, both.sum()
    assert (cells[both] == expected[both]).mean() >= 0.98
    assert (cells == expected).mean() >= 0.98
    assert node.alive()


def test_bad_camera_input_and_poses(model, client, run_node):  # noqa: F811
    """Wrong pose count and tf fail configure; missing or bad CameraInfo skips a camera."""
    frames = {'front': make_street_scene(480, 640, seed=1),
              'rear': make_street_scene(480, 640, seed=2)}
    names = drivable_names(model['segmenter'], list(frames.values()))
    pose = [0.0, 0.0, 1.5, 0.0, PITCH, 0.0]
    node, listener, publishers = start(client, run_node, model, ['front', 'rear'], pose, names)
    assert get_state(client) == State.PRIMARY_STATE_UNCONFIGURED
    assert "parameter 'ground_grid.camera_poses': expected 12 numbers" in node.log()
    set_parameter(client, 'ground_grid.camera_poses', pose + [0.0, 0.0, 1.5, 0.0, PITCH,
                                                              math.pi])
    set_parameter(client, 'ground_grid.extrinsics', 'tf')
    assert not change_state(client, Transition.TRANSITION_CONFIGURE)
    assert "'tf' needs tf2_ros" in node.log()
    set_parameter(client, 'ground_grid.extrinsics', 'parameters')
    assert change_state(client, Transition.TRANSITION_CONFIGURE)
    assert change_state(client, Transition.TRANSITION_ACTIVATE)
    wait_ready(client, listener, publishers)

    def send(rear_info=None):
        sent = {c: header(f'{c}_optical', stamp_now()) for c in frames}
        publishers['front'][1].publish(camera_info('front_optical', sent['front'].stamp))
        if rear_info is not None:
            publishers['rear'][1].publish(rear_info)
        settle(client)
        for camera, (image_pub, _) in publishers.items():
            image_pub.publish(encoded_image_message(frames[camera], 'rgb8', sent[camera]))
        client.spin_until(lambda: grid_with_stamp(listener, sent['rear'].stamp)
                          or grid_with_stamp(listener, sent['front'].stamp), 60, 'a grid')
        return sent

    # No CameraInfo from rear: the grid has the front camera only; diagnostics name rear.
    sent = send()
    assert not listener.got[('rear', 'camera_info')]
    level, message, values = client.wait_diagnostics(
        'ground_grid', lambda level, m, v: 'rear' in m and v['grids_published'] != '0', 30,
        'a WARN naming rear')
    assert level == 1 and 'no camera_info from rear' in message, message
    assert values['last_grid_cameras'] == 'front'
    (grid,) = grid_with_stamp(listener, sent['front'].stamp)
    xs = cell_centres(grid)[:, 0]
    assert (np.asarray(grid.data)[xs < -2] == -1).all()
    # A singular K and a size that is not the image's: rejected, logged naming the field.
    stamp = stamp_now()
    send(camera_info('rear_optical', stamp, k=[0.0] * 9))
    client.wait_diagnostics('ground_grid', lambda level, m, v: 'K: is singular' in m, 30,
                            'the singular K in diagnostics')
    send(camera_info('rear_optical', stamp_now(), width=320, height=240))
    client.wait_diagnostics('ground_grid', lambda level, m, v: 'width: the CameraInfo says '
                            '320x240, the image is 640x480' in m, 30, 'the size mismatch')
    log = node.log()
    assert "camera 'rear': rejected the CameraInfo on rear/camera_info: K: is singular" in log
    assert 'rejected the CameraInfo on rear/camera_info: width:' in log
    # A good one: both cameras in the grid, the status is OK.
    send(camera_info('rear_optical', stamp_now()))
    level, message, values = client.wait_diagnostics(
        'ground_grid', lambda level, m, v: v['last_grid_cameras'] == 'front, rear', 30,
        'both cameras in the grid')
    assert level == 0, message


@pytest.mark.parametrize('name, value, message', [
    ('ground_grid.camera_poses', [0.0] * 7, "'ground_grid.camera_poses': expected 6 numbers "
                                            'per camera'),
    ('ground_grid.range', [10.0, 0.0, -1.0, 1.0], "'ground_grid.range': expected [x_min, "
                                                  'x_max, y_min, y_max] with x_min < x_max'),
    ('ground_grid.resolution', 0.0, "'ground_grid.resolution': expected a number > 0"),
    ('ground_grid.frame_id', '/base_link', "'ground_grid.frame_id': expected a tf frame name "
                                           "without a leading '/'"),
    ('ground_grid.extrinsics', 'tf2', "'ground_grid.extrinsics': expected one of "
                                      "'parameters', 'tf'"),
    ('ground_grid.enabled', 1, "'ground_grid.enabled': expected true or false"),
    ('ground_grid.resolution', 0.001, 'more than 16000000; use a coarser resolution'),
])
def test_grid_parameter_errors_name_the_parameter(name, value, message):
    from liteseg_ros.ros.node.parameters import (PARAMETERS, ParameterError,
                                                 validate_parameters)

    values = {k: default for k, (default, _) in PARAMETERS.items()}
    values['model_path'] = 'model.onnx'
    values['ground_grid.camera_poses'] = None  # `camera_poses: []` in a params file
    assert validate_parameters(values).ground_grid.enabled is False
    values[name] = value
    with pytest.raises(ParameterError) as error:
        validate_parameters(values)
    assert message in str(error.value)


class FakeBuffer:
    """tf2_ros.buffer.Buffer stand-in: one transform per source frame, or an error."""

    transforms = {}

    def lookup_transform(self, target, source, time):
        if source not in self.transforms:
            raise LookupError(f'"{source}" passed to lookupTransform does not exist')
        return self.transforms[source]


class FakeListener:
    """tf2_ros.transform_listener.TransformListener stand-in."""

    def __init__(self, buffer, node):
        self.buffer, self.node = buffer, node

    def unregister(self):
        pass


def fake_tf2(monkeypatch):
    import sys
    import types

    buffer_module = types.ModuleType('tf2_ros.buffer')
    buffer_module.Buffer = FakeBuffer
    listener_module = types.ModuleType('tf2_ros.transform_listener')
    listener_module.TransformListener = FakeListener
    monkeypatch.setitem(sys.modules, 'tf2_ros', types.ModuleType('tf2_ros'))
    monkeypatch.setitem(sys.modules, 'tf2_ros.buffer', buffer_module)
    monkeypatch.setitem(sys.modules, 'tf2_ros.transform_listener', listener_module)


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


def test_tf_extrinsics_use_the_optical_frame_transform(ros_context, monkeypatch):  # noqa: F811
    """With a stand-in tf2_ros: the transform of the CameraInfo frame places the camera."""
    from geometry_msgs.msg import TransformStamped
    from liteseg_ros.inference.ground_projection import body_pose, CameraModel, GroundGrid
    from liteseg_ros.inference.outputs import OutputRenderer
    from liteseg_ros.ros.node.grid import GroundGridOutput
    from liteseg_ros.ros.node.parameters import PARAMETERS, validate_parameters
    from rclpy.lifecycle import LifecycleNode

    fake_tf2(monkeypatch)
    values = {k: default for k, (default, _) in PARAMETERS.items()}
    values.update({'model_path': 'model.onnx', 'cameras': ['front'],
                   'ground_grid.enabled': True, 'ground_grid.extrinsics': 'tf'})
    settings = validate_parameters(values)
    node = LifecycleNode('grid_tf_test', context=ros_context)
    renderer = OutputRenderer(['road', 'other'], [[0, 0, 0], [1, 1, 1]])
    output = GroundGridOutput(node, settings, renderer, node.get_logger())
    try:
        assert isinstance(output.tf_listener, FakeListener)
        published = []
        publisher, output.grid_publisher = output.grid_publisher, SimpleNamespace(
            publish=published.append, get_subscription_count=lambda: 1)
        info = camera_info('front_optical', stamp_now())
        output._on_camera_info(output.cameras['front'], info)
        mask = np.zeros((480, 640), np.uint8)
        mask[300:] = 1
        frame_header = header('front_optical', info.header.stamp)
        output.after_batch([('front', frame_header, mask, {})])
        assert not published  # no transform yet: left out, and the status says why
        status = output.status()
        assert status.level == 1
        assert "no transform from 'front_optical' to 'base_link'" in status.message
        pose = body_pose(1.0, 0.2, 1.5, 0.0, PITCH, 0.05)
        transform = TransformStamped()
        transform.transform.translation.x, transform.transform.translation.y, \
            transform.transform.translation.z = pose.position
        r = transform.transform.rotation
        r.x, r.y, r.z, r.w = quaternion(pose.rotation)
        FakeBuffer.transforms = {'front_optical': transform}
        output.after_batch([('front', frame_header, mask, {})])
        (grid,) = published
        expected = GroundGrid(settings.ground_grid.grid_range, 0.1)
        expected.set_camera('front', CameraModel.from_camera_info(info), pose)
        drivable = np.where(mask == 0, 255, 0).astype(np.uint8)  # class 0 'road' drivable
        np.testing.assert_array_equal(np.asarray(grid.data, np.int8),
                                      expected.fuse({'front': drivable}).ravel())
        assert output.status().level == 0
    finally:
        output.grid_publisher = publisher
        output.release(node)
        node.destroy_node()
