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
The drivable grid in bags: ``dataset-to-bag --camera-info`` and ``bag-eval ... drivable_grid``.

A stand-in segmenter (white pixels are road) makes the drivable areas known; the grids in the
output bag are checked against ``cv2.projectPoints`` of the drivable areas in the same bag.
"""

import math
from pathlib import Path

import cv2
from liteseg_ros.bags.evaluation import evaluate_bag
from liteseg_ros.bags.ground_grid import load_grid_config
from liteseg_ros.bags.rosbag import BagError, BagReader, deserialize
from liteseg_ros.cli import main as liteseg_main
from liteseg_ros.inference.segmenter import Segmentation
import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.lite

WIDTH, HEIGHT = 320, 240
K = [200.0, 0.0, 159.5, 0.0, 200.0, 119.5, 0.0, 0.0, 1.0]
# namespace -> (x, y, z, roll, pitch, yaw) of the camera body in base_link
POSES = {'/front': [1.5, 0.0, 1.4, 0.0, 0.2, 0.0], '/rear': [-0.5, 0.0, 1.2, 0.0, 0.25, math.pi]}
CALIBRATION = {'image_width': WIDTH, 'image_height': HEIGHT, 'camera_name': 'cam',
               'camera_matrix': {'rows': 3, 'cols': 3, 'data': K},
               'distortion_model': 'plumb_bob',
               'distortion_coefficients': {'rows': 1, 'cols': 5,
                                           'data': [-0.05, 0.01, 0.0, 0.0, 0.0]},
               'rectification_matrix': {'rows': 3, 'cols': 3, 'data': np.eye(3).ravel().tolist()},
               'projection_matrix': {'rows': 3, 'cols': 4,
                                     'data': [200.0, 0, 159.5, 0, 0, 200.0, 119.5, 0, 0, 0, 1, 0]}}


class RoadSegmenter:
    """A Segmenter stand-in: class 0 ('road') where the red channel is bright, else 1."""

    class_names = ['road', 'other']
    palette = [[128, 64, 128], [0, 0, 0]]
    upsample = 'nearest'
    backend = None

    def __init__(self):
        """Start without timings."""
        self.timings = {}

    def __call__(self, frames):
        """Return one Segmentation per frame."""
        return [Segmentation(np.where(f[:, :, 0] > 127, 0, 1).astype(np.uint8), None)
                for f in frames]


def road_image(seed):
    """White blobs (road) on black: a drivable area with edges in every direction."""
    rng = np.random.default_rng(seed)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[HEIGHT // 2:] = 255
    for _ in range(5):
        center = (int(rng.integers(0, WIDTH)), int(rng.integers(HEIGHT // 2, HEIGHT)))
        cv2.circle(image, center, int(rng.integers(5, 25)), (0, 0, 0), -1)
    return image


def reference_grid(drivable, pose, distortion, grid_range=(0.0, 40.0, -20.0, 20.0),
                   resolution=0.1):
    """Project each cell centre with OpenCV into a camera at ``pose`` (roll 0)."""
    x, y, z, _, pitch, yaw = pose
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch),
                        -math.sin(pitch)])
    left = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    rotation = np.stack([-left, -np.cross(forward, left), forward])
    x_min, x_max, y_min, y_max = grid_range
    xs = x_min + (np.arange(round((x_max - x_min) / resolution)) + 0.5) * resolution
    ys = y_min + (np.arange(round((y_max - y_min) / resolution)) + 0.5) * resolution
    gx, gy = np.meshgrid(xs, ys)
    centres = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    depth = (centres - [x, y, z]) @ forward
    rvec, _ = cv2.Rodrigues(rotation)
    pixels, _ = cv2.projectPoints(centres, rvec, -rotation @ np.array([x, y, z]),
                                  np.array(K).reshape(3, 3), np.array(distortion))
    col = np.floor(pixels[:, 0, 0] + 0.5).astype(int)
    row = np.floor(pixels[:, 0, 1] + 0.5).astype(int)
    seen = (depth > 0) & (col >= 0) & (col < WIDTH) & (row >= 0) & (row < HEIGHT)
    expected = np.full(len(centres), -1, np.int8)
    expected[seen] = np.where(drivable[row[seen], col[seen]] > 0, 0, 100)
    return expected.reshape(gy.shape)


def read_topics(path):
    """Return {topic: [(log time, message)]} of a bag."""
    out = {}
    with BagReader(path) as reader:
        for message in reader.messages(list(reader.topics)):
            out.setdefault(message.topic, []).append((message.timestamp, deserialize(message)))
    return out


def make_images(folder, count, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        cv2.imwrite(str(folder / f'{index:03d}.png'), road_image(seed + index)[:, :, ::-1])
    return folder


def dataset_bag(tmp_path, name, namespace, count=3, seed=0, calibration=CALIBRATION):
    """Write a bag of road images with CameraInfo through ``liteseg dataset-to-bag``."""
    images = make_images(tmp_path / f'{name}_images', count, seed)
    calibration_path = tmp_path / f'{name}_calibration.yaml'
    calibration_path.write_text(yaml.safe_dump(calibration))
    out = tmp_path / name
    code = liteseg_main(['dataset-to-bag', str(out), '--dataset', 'folder', '--images',
                         str(images), '--image-topic', f'{namespace}/image_raw',
                         '--frame-id', f'{namespace[1:]}_optical', '--camera-info',
                         str(calibration_path), '--start-time', '100', '--no-progress'])
    assert code == 0
    return out


def merge_bags(out, *bags):
    """Write every message of ``bags`` into a new bag ``out``."""
    from liteseg_ros.bags.rosbag import BagWriter

    with BagWriter(out) as writer:
        for bag in bags:
            with BagReader(bag) as reader:
                for message in reader.messages(list(reader.topics)):
                    writer.write_raw(message.topic, message.timestamp, message.raw,
                                     message.msgtype)
    return out


def test_dataset_to_bag_writes_camera_info_beside_each_frame(tmp_path):
    bag = dataset_bag(tmp_path, 'front', '/front')
    topics = read_topics(bag)
    infos, images = topics['/front/camera_info'], topics['/front/image_raw']
    assert len(infos) == len(images) == 3
    for (t_info, info), (t_image, image) in zip(infos, images):
        assert t_info == t_image and info.header.stamp == image.header.stamp
        assert info.header.frame_id == image.header.frame_id == 'front_optical'
        assert (info.width, info.height) == (WIDTH, HEIGHT)
        np.testing.assert_array_equal(info.k, K)
        assert info.distortion_model == 'plumb_bob' and list(info.d)[:2] == [-0.05, 0.01]
        assert len(info.p) == 12 and info.p[0] == 200.0


def test_dataset_to_bag_refuses_a_calibration_of_another_size(tmp_path, capsys):
    images = make_images(tmp_path / 'images', 2)
    for name, calibration, message in (
            ('wide', dict(CALIBRATION, image_width=640),
             '320x240, but the --camera-info calibration is for 640x240 images'),
            ('singular', dict(CALIBRATION, camera_matrix={'data': [0.0] * 9}),
             'not a usable camera calibration: K: is singular')):
        path = tmp_path / f'{name}.yaml'
        path.write_text(yaml.safe_dump(calibration))
        code = liteseg_main(['dataset-to-bag', str(tmp_path / name), '--dataset', 'folder',
                             '--images', str(images), '--camera-info', str(path),
                             '--no-progress'])
        assert code == 1 and message in capsys.readouterr().err
        assert not (tmp_path / name).exists()


def test_bag_eval_writes_the_grid_of_both_cameras(tmp_path):
    """Front and rear: one grid per pair of frames, equal to OpenCV's projection."""
    bag = merge_bags(tmp_path / 'both', dataset_bag(tmp_path, 'front', '/front', seed=0),
                     dataset_bag(tmp_path, 'rear', '/rear', seed=10))
    poses_file = tmp_path / 'poses.yaml'
    poses_file.write_text(yaml.safe_dump({'poses': POSES, 'resolution': 0.1,
                                          'range': [-20.0, 20.0, -20.0, 20.0]}))
    config = load_grid_config(poses_file)
    summary = evaluate_bag(bag, ['/front/image_raw', '/rear/image_raw'], RoadSegmenter(),
                           output_dir=tmp_path / 'out', outputs=('drivable_area', 'drivable_grid'),
                           camera_poses=config, contact_frames=0, progress=False,
                           log=lambda *a: None)
    assert summary['frames'] == 6
    assert summary['errors']['frames_without_camera_info'] == 0, summary['error_examples']
    topics = read_topics(tmp_path / 'out' / 'bag')
    grids = topics['/segmentation/drivable_grid']
    assert len(grids) == 3
    areas = {ns: {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: image(m)
                  for _, m in topics[f'{ns}/segmentation/drivable_area']} for ns in POSES}
    for _, grid in grids:
        assert grid.header.frame_id == 'base_footprint'  # REP 105: z = 0 is the ground
        assert (grid.info.width, grid.info.height) == (400, 400)
        assert grid.info.resolution == pytest.approx(0.1)
        assert (grid.info.origin.position.x, grid.info.origin.position.y) == (-20.0, -20.0)
        stamp = grid.header.stamp.sec * 10**9 + grid.header.stamp.nanosec
        cells = np.asarray(grid.data, np.int8).reshape(400, 400)
        xs = -20 + (np.arange(400) + 0.5) * 0.1
        for ns, half in (('/front', xs > 1.5), ('/rear', xs < -0.5)):
            expected = reference_grid(areas[ns][stamp], POSES[ns], [-0.05, 0.01, 0, 0, 0],
                                      (-20.0, 20.0, -20.0, 20.0))
            agree = (cells[:, half] == expected[:, half]).mean()
            assert agree >= 0.98, (ns, agree)
            assert ((cells[:, half] == 0).sum() > 500) and ((cells[:, half] == 100).sum() > 500)


def image(msg):
    return np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width)


def test_bag_eval_grid_needs_poses_and_camera_info(tmp_path):
    bag = dataset_bag(tmp_path, 'front', '/front')
    config = {'frame_id': 'base_link', 'resolution': 0.2, 'range': [0, 10, -5, 5],
              'poses': {'/front': POSES['/front']}}
    options = {'outputs': ('drivable_grid',), 'contact_frames': 0, 'progress': False,
               'log': lambda *a: None}
    with pytest.raises(ValueError, match='needs --camera-poses'):
        evaluate_bag(bag, ['/front/image_raw'], RoadSegmenter(), output_dir=tmp_path / 'a',
                     **options)
    with pytest.raises(BagError, match=r'no pose for /front \(it has /rear\)'):
        evaluate_bag(bag, ['/front/image_raw'], RoadSegmenter(), output_dir=tmp_path / 'a',
                     camera_poses={**config, 'poses': {'/rear': POSES['/rear']}}, **options)
    plain = tmp_path / 'plain'
    liteseg_main(['dataset-to-bag', str(plain), '--dataset', 'folder', '--images',
                  str(make_images(tmp_path / 'plain_images', 2)), '--image-topic',
                  '/front/image_raw', '--no-progress'])
    with pytest.raises(BagError, match='CameraInfo topics /front/camera_info'):
        evaluate_bag(plain, ['/front/image_raw'], RoadSegmenter(), output_dir=tmp_path / 'b',
                     camera_poses=config, **options)


def test_bad_camera_info_leaves_frames_out_and_is_counted(tmp_path):
    small = dict(CALIBRATION, image_width=160, image_height=120)
    small['camera_matrix'] = {'rows': 3, 'cols': 3, 'data': [100.0, 0, 79.5, 0, 100.0, 59.5,
                                                             0, 0, 1]}
    images = make_images(tmp_path / 'images', 2)
    calibration = tmp_path / 'small.yaml'
    calibration.write_text(yaml.safe_dump(small))
    # dataset-to-bag refuses the mismatch, so write the bag with a resized image set.
    for path in images.iterdir():
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (160, 120)))
    bag = tmp_path / 'bag'
    liteseg_main(['dataset-to-bag', str(bag), '--dataset', 'folder', '--images', str(images),
                  '--image-topic', '/front/image_raw', '--camera-info', str(calibration),
                  '--no-progress'])
    # Evaluate it with frames of another size: merge in full-size images with the same topic.
    full = dataset_bag(tmp_path, 'full', '/front', count=2)
    mixed = tmp_path / 'mixed'
    from liteseg_ros.bags.rosbag import BagWriter

    with BagWriter(mixed) as writer:
        for source, keep in ((bag, '/front/camera_info'), (full, '/front/image_raw')):
            with BagReader(source) as reader:
                for message in reader.messages([keep]):
                    writer.write_raw(message.topic, message.timestamp, message.raw,
                                     message.msgtype)
    config = {'frame_id': 'base_link', 'resolution': 0.2, 'range': [0, 10, -5, 5],
              'poses': {'/front': POSES['/front']}}
    summary = evaluate_bag(mixed, ['/front/image_raw'], RoadSegmenter(),
                           output_dir=tmp_path / 'out', outputs=('drivable_grid',),
                           camera_poses=config, contact_frames=0, progress=False,
                           log=lambda *a: None)
    assert summary['frames'] == 2
    assert summary['errors']['frames_without_camera_info'] == 2
    assert any('width: the CameraInfo says 160x120, the image is 320x240' in e
               for e in summary['error_examples']), summary['error_examples']
    assert '/segmentation/drivable_grid' not in read_topics(tmp_path / 'out' / 'bag')


def test_poses_from_the_node_params_file(tmp_path):
    params = tmp_path / 'segment.yaml'
    params.write_text(yaml.safe_dump({'/**/segment_node': {'ros__parameters': {
        'cameras': ['front', 'rear'],
        'ground_grid': {'enabled': True, 'frame_id': 'base_footprint', 'resolution': 0.2,
                        'range': [-10.0, 30.0, -10.0, 10.0],
                        'camera_poses': POSES['/front'] + POSES['/rear']}}}}))
    config = load_grid_config(params)
    assert config['frame_id'] == 'base_footprint' and config['resolution'] == 0.2
    assert config['poses'] == POSES
    params.write_text(yaml.safe_dump({'/**/segment_node': {'ros__parameters': {
        'cameras': ['front', 'rear'], 'ground_grid.camera_poses': POSES['/front']}}}))
    with pytest.raises(BagError, match='expected 12 numbers'):
        load_grid_config(params)


def test_bag_eval_command_line_takes_camera_poses(tmp_path, monkeypatch):
    """``liteseg bag-eval --outputs drivable_grid --camera-poses`` reaches the evaluation."""
    from liteseg_ros.bags import cli

    seen = {}

    def fake_evaluate(bag, image_topics, segmenter, labels, output, **options):
        seen.update(options)
        return {'interrupted': False, 'frames': 1, 'read_error': None}

    bag = dataset_bag(tmp_path, 'front', '/front', count=1)
    poses = tmp_path / 'poses.yaml'
    poses.write_text(yaml.safe_dump({'poses': {'front': POSES['/front']}}))
    monkeypatch.setattr(cli, 'evaluate_bag', fake_evaluate)
    import liteseg_ros.inference as inference

    monkeypatch.setattr(inference.Segmenter, 'from_file', lambda *a, **k: RoadSegmenter())
    code = liteseg_main(['bag-eval', str(bag), '--image-topic', '/front/image_raw', '--model',
                         str(Path(tmp_path) / 'model.onnx'), '--outputs',
                         'drivable_area,drivable_grid', '--camera-poses', str(poses),
                         '--output', str(tmp_path / 'out'), '--no-progress'])
    assert code == 0
    assert seen['outputs'] == ('drivable_area', 'drivable_grid')
    assert seen['camera_poses']['poses'] == {'/front': POSES['/front']}
