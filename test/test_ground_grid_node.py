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

import importlib.util
import math
import threading
import time
from types import SimpleNamespace

from builtin_interfaces.msg import Time
import cv2
from lifecycle_msgs.msg import State, Transition
from liteseg_ros.inference import Segmenter
from liteseg_ros.ros.messages import encoded_image_message
from liteseg_ros.sample_images import make_street_scene
from nav_msgs.msg import OccupancyGrid
import numpy as np
from onnx_models import onnx_model
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from test_segment_node import (change_state, client, get_state, header, image_array,  # noqa: F401
                               ros_context, run_node, same_header, set_parameter, stamp_now)
import tf2_stand_in

pytestmark = pytest.mark.ros

K640 = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
D_FRONT = [-0.05, 0.01, 0.0005, -0.0005, 0.0]
PITCH = math.radians(10)


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """Return a seeded PP-LiteSeg-T at 128x256 (dynamic batch ONNX) and its Segmenter."""
    path = onnx_model('t_128x256', tmp_path_factory)
    return {'onnx': path, 'segmenter': Segmenter.from_file(path, threads=1)}


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

    def __init__(self, peer, cameras, grid=True):
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.got = {'grid': []}
        node = peer.node
        self.subscriptions = [node.create_subscription(
            OccupancyGrid, '/segmentation/drivable_grid', self.got['grid'].append, qos)
            ] if grid else []
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
    listener = Listener(peer, cameras, params['ground_grid.enabled'])
    publishers = {c: (peer.publisher(f'/{c}/image_raw'),
                      peer.publisher(f'/{c}/camera_info', CameraInfo)) for c in cameras}
    return node, listener, publishers


def stamp_at(base, seconds):
    """Return the builtin_interfaces/Time ``seconds`` after ``base``."""
    ns = base.sec * 1_000_000_000 + base.nanosec + round(seconds * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def expected_cells(grid, listener, sent, poses, k, d):
    """
    Fuse the cameras' published drivable areas here: nearest camera, ties to the first.

    ``sent`` {camera: header of its frame}, in the order of ``cameras``.
    """
    projections = [project(grid, image_array(listener.one((c, 'drivable_area'), h)), poses[c],
                           k, d) for c, h in sent.items()]
    values = np.stack([p[0] for p in projections])
    owner = np.argmin(np.stack([p[1] for p in projections]), axis=0)  # first of equals
    return values[owner, np.arange(values.shape[1])]


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
        assert grid.header.frame_id == 'base_footprint'  # REP 105: z = 0 is the ground
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
    """Wrong pose count fails configure; missing or bad CameraInfo skips a camera."""
    frames = {'front': make_street_scene(480, 640, seed=1),
              'rear': make_street_scene(480, 640, seed=2)}
    names = drivable_names(model['segmenter'], list(frames.values()))
    pose = [0.0, 0.0, 1.5, 0.0, PITCH, 0.0]
    node, listener, publishers = start(client, run_node, model, ['front', 'rear'], pose, names)
    assert get_state(client) == State.PRIMARY_STATE_UNCONFIGURED
    assert "parameter 'ground_grid.camera_poses': expected 12 numbers" in node.log()
    set_parameter(client, 'ground_grid.camera_poses', pose + [0.0, 0.0, 1.5, 0.0, PITCH,
                                                              math.pi])
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
    # A singular K and a size that is not the image's: rejected, logged naming the field,
    # once, and in diagnostics; the CameraInfo is still republished beside the mask.
    stamp = stamp_now()
    sent = send(camera_info('rear_optical', stamp, k=[0.0] * 9))
    client.wait_diagnostics('ground_grid', lambda level, m, v: 'K: is singular' in m, 30,
                            'the singular K in diagnostics')
    client.spin_until(lambda: arrived(listener, {'rear': sent['rear']}, ('camera_info',)), 30,
                      "rear's camera_info beside its mask")
    assert not any(listener.one(('rear', 'camera_info'), sent['rear']).k)
    for _ in range(2):  # more than a second apart: a throttled log would repeat
        send(camera_info('rear_optical', stamp_now(), width=320, height=240))
        settle(client, 1.2)
    client.wait_diagnostics('ground_grid', lambda level, m, v: 'width: the CameraInfo says '
                            '320x240, the image is 640x480' in m, 30, 'the size mismatch')
    log = node.log()
    assert ("camera 'rear': rejected the CameraInfo on rear/camera_info for the ground grid: "
            'K: is singular') in log
    assert log.count('rejected the CameraInfo on rear/camera_info: width:') == 1, log
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
    ('ground_grid.max_age_ms', -1.0, "'ground_grid.max_age_ms': expected a number >= 0"),
    ('ground_grid.tf_timeout_ms', 'soon', "'ground_grid.tf_timeout_ms': expected a number"),
    ('ground_grid.rectified', 'yes', "'ground_grid.rectified': expected true or false"),
])
def test_grid_parameter_errors_name_the_parameter(name, value, message):
    from liteseg_ros.ros.node.parameters import (PARAMETERS, ParameterError,
                                                 validate_parameters)

    values = {k: default for k, (default, _) in PARAMETERS.items()}
    values['model_path'] = 'model.onnx'
    values['ground_grid.camera_poses'] = None  # `camera_poses: []` in a params file
    defaults = validate_parameters(values).ground_grid
    assert defaults.enabled is False
    assert defaults.frame_id == 'base_footprint'  # REP 105: its z = 0 is the ground
    values[name] = value
    with pytest.raises(ParameterError) as error:
        validate_parameters(values)
    assert message in str(error.value)


def transform_message(parent, child, stamp, pose):
    """Return a TransformStamped placing Pose ``pose`` (child's optical axes) in ``parent``."""
    from geometry_msgs.msg import TransformStamped

    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp = stamp
    t, r = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in pose.position)
    r.x, r.y, r.z, r.w = tf2_stand_in.quaternion(pose.rotation)
    return msg


def test_tf2_stand_in_follows_the_lookup_rules(monkeypatch):
    """The stand-in answers as tf2_ros documents: latest, interpolation, the four errors."""
    from liteseg_ros.inference.ground_projection import body_pose
    from rclpy.duration import Duration
    from rclpy.time import Time as RosTime

    tf2_stand_in.install(monkeypatch)
    import tf2_ros
    from tf2_ros.buffer import Buffer

    buffer = Buffer()
    base = stamp_now()
    mount = body_pose(0.0, 0.0, 0.3, 0.0, 0.0, 0.0)
    mount = type(mount)(np.eye(3), mount.position)  # base_link 0.3 m above base_footprint
    buffer.set_transform_static(transform_message('base_footprint', 'base_link', Time(),
                                                  mount), 'test')
    for seconds, x in ((0.0, 1.0), (1.0, 1.2)):
        buffer.set_transform(transform_message('base_link', 'cam', stamp_at(base, seconds),
                                               body_pose(x, 0.0, 1.2, 0.0, PITCH, 0.0)), 'test')

    def position(when):
        t = buffer.lookup_transform('base_footprint', 'cam', when).transform.translation
        return t.x, t.y, t.z

    np.testing.assert_allclose(position(RosTime()), (1.2, 0.0, 1.5))  # latest
    np.testing.assert_allclose(position(RosTime.from_msg(stamp_at(base, 0.5))), (1.1, 0, 1.5))
    errors = [('base_footprint', 'nowhere', RosTime(), tf2_ros.LookupException),
              ('base_footprint', 'cam', RosTime.from_msg(stamp_at(base, 1.5)),
               tf2_ros.ExtrapolationException),
              ('base_footprint', 'cam', RosTime.from_msg(stamp_at(base, -0.5)),
               tf2_ros.ExtrapolationException),
              ('base_footprint', '', RosTime(), tf2_ros.InvalidArgumentException)]
    buffer.set_transform_static(transform_message('map', 'island', Time(), mount), 'test')
    errors.append(('base_footprint', 'island', RosTime(), tf2_ros.ConnectivityException))
    for target, source, when, error in errors:
        with pytest.raises(error):
            buffer.lookup_transform(target, source, when)
        assert issubclass(error, tf2_ros.TransformException)
    began = time.monotonic()
    with pytest.raises(tf2_ros.ExtrapolationException):  # waits the timeout, then raises
        buffer.lookup_transform('base_footprint', 'cam', RosTime.from_msg(stamp_at(base, 2)),
                                timeout=Duration(seconds=0.3))
    assert 0.3 <= time.monotonic() - began < 3


def test_tf_lookups_at_frame_stamps_within_a_timeout(ros_context, monkeypatch):  # noqa: F811
    """With the tf2_ros stand-in: the node looks up each frame's own stamp, within a timeout."""
    from liteseg_ros.inference.ground_projection import body_pose, CameraModel, GroundGrid
    from liteseg_ros.inference.outputs import OutputRenderer
    from liteseg_ros.ros.node.grid import GroundGridOutput
    from liteseg_ros.ros.node.parameters import PARAMETERS, validate_parameters
    from rclpy.lifecycle import LifecycleNode

    tf2_stand_in.install(monkeypatch)
    values = {k: default for k, (default, _) in PARAMETERS.items()}
    values.update({'model_path': 'model.onnx', 'cameras': ['front'],
                   'ground_grid.enabled': True, 'ground_grid.extrinsics': 'tf',
                   'ground_grid.tf_timeout_ms': 400.0})
    settings = validate_parameters(values)
    node = LifecycleNode('grid_tf_test', context=ros_context)
    renderer = OutputRenderer(['road', 'other'], [[0, 0, 0], [1, 1, 1]])
    output = GroundGridOutput(node, settings, renderer, node.get_logger())
    (listener,) = tf2_stand_in.TransformListener.instances
    buffer = output.tf_buffer
    try:
        assert listener.node is node and listener.buffer is buffer and listener.registered
        published = []
        publisher, output.grid_publisher = output.grid_publisher, SimpleNamespace(
            publish=published.append, get_subscription_count=lambda: 1)
        base = stamp_now()
        info = camera_info('front_optical', base)
        output._on_camera_info(output.cameras['front'], info)
        mask = np.zeros((480, 640), np.uint8)
        mask[300:] = 1
        drivable = np.where(mask == 0, 255, 0).astype(np.uint8)  # class 0 'road' drivable

        def frame(seconds):
            return [('front', header('front_optical', stamp_at(base, seconds)), mask, {})]

        def expected(pose):
            grid = GroundGrid(settings.ground_grid.grid_range, 0.1)
            grid.set_camera('front', CameraModel.from_camera_info(info), pose)
            return grid.fuse({'front': drivable}).ravel()

        # No transform: the frame waits the timeout, is left out, and the status says why.
        began = time.monotonic()
        output.after_batch(frame(0.5))
        assert time.monotonic() - began >= 0.4
        assert not published
        status = output.status()
        assert status.level == 1
        assert ("no transform from 'front_optical' to 'base_footprint'" in status.message
                and 'LookupException' in status.message), status.message
        assert buffer.lookups[-1] == ('base_footprint', 'front_optical',
                                      base.sec * 10**9 + base.nanosec + 500_000_000,
                                      400_000_000)
        # Moving camera: the pose at the frame's stamp, between two transforms.
        for seconds, x in ((0.0, 1.0), (1.0, 1.4)):
            buffer.set_transform(transform_message(
                'base_footprint', 'front_optical', stamp_at(base, seconds),
                body_pose(x, 0.2, 1.5, 0.0, PITCH, 0.05)), 'test')
        output.after_batch(frame(0.5))
        (grid,) = published
        cells = np.asarray(grid.data, np.int8)
        np.testing.assert_array_equal(cells, expected(body_pose(1.2, 0.2, 1.5, 0.0, PITCH,
                                                                0.05)))
        assert (cells != expected(body_pose(1.4, 0.2, 1.5, 0.0, PITCH, 0.05))).any()
        assert output.status().level == 0
        # After the newest transform: extrapolation, unless it arrives within the timeout.
        output.after_batch(frame(1.5))
        assert len(published) == 1 and 'ExtrapolationException' in output.status().message
        later = threading.Timer(0.1, buffer.set_transform, (transform_message(
            'base_footprint', 'front_optical', stamp_at(base, 2.0),
            body_pose(1.6, 0.2, 1.5, 0.0, PITCH, 0.05)), 'test'))
        later.start()
        output.after_batch(frame(1.8))
        later.join()
        assert len(published) == 2 and output.status().level == 0
        np.testing.assert_array_equal(np.asarray(published[-1].data, np.int8), expected(
            body_pose(1.56, 0.2, 1.5, 0.0, PITCH, 0.05)))
        # A zero stamp asks for the latest transform (Time()).
        output.after_batch([('front', header('front_optical', Time()), mask, {})])
        assert buffer.lookups[-1][2] == 0
        np.testing.assert_array_equal(np.asarray(published[-1].data, np.int8), expected(
            body_pose(1.6, 0.2, 1.5, 0.0, PITCH, 0.05)))
    finally:
        output.grid_publisher = publisher
        output.release(node)
        node.destroy_node()
    assert not listener.registered


K_WIDE = [120.0, 0.0, 159.5, 0.0, 120.0, 119.5, 0.0, 0.0, 1.0]
BACK_TO_BACK = {'front': [-3.0, 0.0, 1.6, 0.0, math.radians(20), 0.0],
                'rear': [3.0, 0.0, 1.6, 0.0, math.radians(20), math.pi]}
WIDE_GRID = {'ground_grid.range': [-20.0, 20.0, -10.0, 10.0], 'ground_grid.resolution': 0.2}


def test_unsynchronised_cameras_both_stay_in_every_grid(model, client, run_node):  # noqa: F811
    """
    Front and rear never share a batch: each grid holds both, each camera's newest frame.

    Frames alternate 0.7 s apart (header stamps) and each is processed alone. Once the rear
    camera's newest frame is more than ground_grid.max_age_ms older than the grid, its cells
    turn unknown and the ground_grid diagnostics say it is stale.
    """
    cameras = ['front', 'rear']
    scenes = {c: [make_street_scene(240, 320, seed=10 * i + s) for s in range(3)]
              for i, c in enumerate(cameras)}
    names = drivable_names(model['segmenter'], scenes['front'] + scenes['rear'])
    node, listener, publishers = start(
        client, run_node, model, cameras, BACK_TO_BACK['front'] + BACK_TO_BACK['rear'], names,
        **WIDE_GRID, **{'batch_timeout_ms': 0.0, 'ground_grid.max_age_ms': 1500.0})
    wait_ready(client, listener, publishers)
    base = stamp_now()
    for camera in cameras:
        publishers[camera][1].publish(camera_info(f'{camera}_optical', base, 320, 240, K_WIDE,
                                                  [0.0] * 5))
    settle(client)
    newest = {}

    def send(camera, seconds, frame):
        sent = header(f'{camera}_optical', stamp_at(base, seconds))
        publishers[camera][0].publish(encoded_image_message(frame, 'rgb8', sent))
        client.spin_until(lambda: grid_with_stamp(listener, sent.stamp) and arrived(
            listener, {camera: sent}, ('drivable_area',)), 60, f'the grid of a {camera} frame')
        newest[camera] = sent
        (grid,) = grid_with_stamp(listener, sent.stamp)
        return grid, np.asarray(grid.data, np.int8)

    for step in range(5):  # front, rear, front, rear, front
        camera = cameras[step % 2]
        grid, cells = send(camera, 0.7 * step, scenes[camera][step // 2])
        xs = cell_centres(grid)[:, 0]
        if step:  # both seen: both halves known, each from its camera's newest frame
            assert (cells[xs > 6] != -1).mean() > 0.5 and (cells[xs < -6] != -1).mean() > 0.5
            expected = expected_cells(grid, listener, {c: newest[c] for c in cameras},
                                      BACK_TO_BACK, K_WIDE, [0.0] * 5)
            assert (cells == expected).mean() >= 0.98
    level, message, values = client.wait_diagnostics(
        'ground_grid', lambda level, m, v: v['grids_published'] == '5', 30, 'five grids')
    assert level == 0 and values['last_grid_cameras'] == 'front, rear', (message, values)
    assert values['frame_age_ms rear'] == '700', values
    # Rear falls silent: 1.6 s after its newest frame (max_age_ms 1.5 s) it is left out.
    grid, cells = send('front', 0.7 * 3 + 1.6, scenes['front'][2])
    expected = expected_cells(grid, listener, {'front': newest['front']}, BACK_TO_BACK, K_WIDE,
                              [0.0] * 5)
    np.testing.assert_array_equal(cells, expected)
    assert (cells[cell_centres(grid)[:, 0] < -6] == -1).all()
    level, message, values = client.wait_diagnostics(
        'ground_grid', lambda level, m, v: v['grids_published'] == '6', 30, 'six grids')
    assert level == 1 and 'rear: stale: its newest frame is 1.60 s older than the grid' in (
        message), message
    assert values['last_grid_cameras'] == 'front', values
    assert node.alive()


def test_overlap_ties_follow_the_order_of_cameras(model, client, run_node):  # noqa: F811
    """Two cameras at one pose tie on every cell: the first of `cameras` wins, not the first."""
    cameras = ['a', 'b']
    frames = {'a': make_street_scene(240, 320, seed=21), 'b': make_street_scene(240, 320, seed=22)}
    names = drivable_names(model['segmenter'], list(frames.values()))
    pose = BACK_TO_BACK['front']
    node, listener, publishers = start(client, run_node, model, cameras, pose + pose, names,
                                       **WIDE_GRID)
    wait_ready(client, listener, publishers)
    for camera in cameras:
        publishers[camera][1].publish(camera_info(f'{camera}_optical', stamp_now(), 320, 240,
                                                  K_WIDE, [0.0] * 5))
    settle(client)
    # b alone first, so its lookup table is made first; then both in one batch.
    first = header('b_optical', stamp_now())
    publishers['b'][0].publish(encoded_image_message(frames['b'], 'rgb8', first))
    client.spin_until(lambda: grid_with_stamp(listener, first.stamp), 60, "b's grid")
    base = stamp_now()
    sent = {'a': header('a_optical', stamp_at(base, 0.01)), 'b': header('b_optical', base)}
    for camera in ('b', 'a'):
        publishers[camera][0].publish(encoded_image_message(frames[camera], 'rgb8',
                                                            sent[camera]))
    client.spin_until(lambda: grid_with_stamp(listener, sent['a'].stamp) and arrived(
        listener, sent, ('drivable_area',)), 60, 'the grid of both')
    (grid,) = grid_with_stamp(listener, sent['a'].stamp)
    cells = np.asarray(grid.data, np.int8)
    a = image_array(listener.one(('a', 'drivable_area'), sent['a']))
    b = image_array(listener.one(('b', 'drivable_area'), sent['b']))
    from_a, _ = project(grid, a, pose, K_WIDE, [0.0] * 5)
    from_b, _ = project(grid, b, pose, K_WIDE, [0.0] * 5)
    differ = from_a != from_b
    assert differ.sum() > 100, differ.sum()  # the images disagree on many cells
    assert (cells[differ] == from_a[differ]).mean() >= 0.98
    assert (cells == from_a).mean() >= 0.98
    assert node.alive()


def republished_beside_a_frame(peer, listener, image_pub, frame, info, tries=5):
    """
    Publish ``frame`` until ``info`` goes out beside its outputs; fail after ``tries`` frames.

    A CameraInfo reaches the node through its executor, an image through the worker, which
    takes it from DDS itself: on a loaded machine a frame can be segmented before the
    CameraInfo sent ahead of it is in, and goes out beside the one before (or none).
    """
    def content(msg):
        return msg.width, msg.height, msg.distortion_model, list(msg.k), list(msg.d)

    seen = []
    for _ in range(tries):
        sent = header('front_optical', stamp_now())
        image_pub.publish(encoded_image_message(frame, 'rgb8', sent))
        peer.spin_until(lambda: arrived(listener, {'front': sent}, ('drivable_area',)), 60,
                        'the drivable area')
        settle(peer)  # the camera_info is published right after the outputs
        beside = [content(m) for m in listener.got[('front', 'camera_info')]
                  if same_header(m, sent)]
        seen.append(beside)
        if beside and beside[0] == content(info):
            return
    pytest.fail(f'{tries} frames went out without the CameraInfo sent before them beside '
                f'their outputs: {seen}')


@pytest.mark.parametrize('grid_enabled', [False, True])
def test_camera_info_is_republished_whatever_the_grid_checks_say(
        model, client, run_node, grid_enabled):  # noqa: F811
    """K all zero, an unknown distortion model, another size: each goes out beside the mask."""
    frame = make_street_scene(480, 640, seed=7)
    names = drivable_names(model['segmenter'], [frame])
    node, listener, publishers = start(
        client, run_node, model, ['front'], [0.0, 0.0, 1.5, 0.0, PITCH, 0.0], names,
        **{'ground_grid.enabled': grid_enabled})
    wait_ready(client, listener, publishers)
    image_pub, info_pub = publishers['front']
    infos = [camera_info('front_optical', stamp_now(), k=[0.0] * 9),
             camera_info('front_optical', stamp_now(), d=[0.1, 0.0, 0.0, 0.0]),
             camera_info('front_optical', stamp_now(), width=320, height=240)]
    infos[1].distortion_model = 'kannala_brandt'
    for info in infos:
        info_pub.publish(info)
        settle(client)
        republished_beside_a_frame(client, listener, image_pub, frame, info)
    log = node.log()
    if not grid_enabled:  # nothing to complain about: only the grid needs a usable one
        assert 'rejected' not in log and 'CameraInfo' not in log, log
        assert not any(key.endswith('ground_grid') for key in client.diagnostics)
    else:
        assert log.count('rejected the CameraInfo') == 3, log  # once each, for the grid
    assert node.alive()


@pytest.mark.skipif(importlib.util.find_spec('tf2_ros') is not None,
                    reason='tf2_ros is importable here, so tf extrinsics configure')
def test_tf_extrinsics_without_tf2_ros_fail_configure(model, client, run_node):  # noqa: F811
    """Without tf2_ros (the pip wheels), 'tf' fails configure with a clear reason; fixable."""
    node, listener, publishers = start(client, run_node, model, ['front'], [], ['road'],
                                       **{'ground_grid.extrinsics': 'tf'})
    client.spin_until(lambda: "'tf' needs tf2_ros" in node.log(), 60, 'the configure error')
    assert get_state(client) == State.PRIMARY_STATE_UNCONFIGURED
    set_parameter(client, 'ground_grid.extrinsics', 'parameters')
    set_parameter(client, 'ground_grid.camera_poses', [0.0, 0.0, 1.5, 0.0, PITCH, 0.0])
    assert change_state(client, Transition.TRANSITION_CONFIGURE)
    assert node.alive()
