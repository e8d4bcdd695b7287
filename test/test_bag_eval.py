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
``liteseg bag-eval`` and ``liteseg dataset-to-bag`` on real rosbag2 files (MCAP and sqlite3).

Input bags are written here with ``rosbags`` directly (not with ``liteseg_ros.bags.rosbag``):
bgr8, rgb8 and mono8 Image topics and a jpeg CompressedImage topic, each with a label topic
(labels: the seeded model's own masks, perturbed, so mIoU is neither 0 nor 1). Expected
results are computed here independently: frames decoded with numpy/OpenCV, masks from
``Segmenter`` on those frames, the confusion matrix with ``numpy.bincount``; the output bag
is read back with ``rosbags``. ``--live`` runs against the real node in another process.
"""

import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time

import cv2
from fleet_bags import CallHook, perturb
from liteseg_ros.bags import evaluation as bag_eval
from liteseg_ros.bags.rosbag import (BagReader, BagWriter, header, image_message, stamp_of,
                                     with_stamp)
from liteseg_ros.cli import main as liteseg_main
from liteseg_ros.inference import Segmenter
from liteseg_ros.ros import live_replay
from liteseg_ros.sample_images import make_street_scene
import numpy as np
from onnx_models import onnx_model
import pytest

# Torch-free (ONNX model, rosbags): runs on Python 3.10/3.12 too; the live tests need ROS.
pytestmark = pytest.mark.lite

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 19
ROAD = 0  # Cityscapes train id of 'road'
FRAMES = 5
# camera -> (topic, encoding, (height, width), label written before the frame?)
CAMERAS = {
    'cam_bgr': ('/cam_bgr/image_raw', 'bgr8', (120, 160), False),
    'cam_rgb': ('/cam_rgb/image_raw', 'rgb8', (128, 256), True),
    'cam_mono': ('/cam_mono/image_raw', 'mono8', (96, 128), False),
    'cam_jpeg': ('/cam_jpeg/image_raw/compressed', 'jpeg', (120, 160), True),
}
IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'


# ---------------------------------------------------------------------------------------------
# Helpers written independently of the code under test.

def typestore():
    from rosbags.typesys import get_typestore, Stores

    return get_typestore(Stores.LATEST)


def ros_header(ts, stamp_ns, frame_id):
    types = ts.types
    time_type = types['builtin_interfaces/msg/Time']
    stamp = time_type(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def raw_image(ts, array, encoding, stamp_ns, frame_id, data=None):
    """Return an Image holding array's bytes as is (HxW: 1 channel, HxWx3: 3 channels)."""
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else 3
    payload = np.ascontiguousarray(array).reshape(-1) if data is None else data
    return ts.types[IMAGE](header=ros_header(ts, stamp_ns, frame_id), height=height,
                           width=width, encoding=encoding, is_bigendian=0,
                           step=width * channels, data=payload)


def jpeg_message(ts, jpeg_bytes, stamp_ns, frame_id):
    return ts.types[COMPRESSED](header=ros_header(ts, stamp_ns, frame_id), format='jpeg',
                                data=np.frombuffer(jpeg_bytes, np.uint8))


def write_bag(path, storage, records):
    """Write [(topic, msgtype, log time ns, rosbags message)] with rosbags' Writer."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    connections = {}
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        for topic, msgtype, timestamp, msg in sorted(records, key=lambda r: r[2]):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(connections[topic], timestamp, ts.serialize_cdr(msg, msgtype))
    return path


def read_bag(path):
    """Return {topic: [(log time, rosbags message)]} of every message of a bag."""
    from rosbags.rosbag2 import Reader

    ts = typestore()
    out = {}
    with Reader(path) as reader:
        for connection, timestamp, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, connection.msgtype)
            out.setdefault(connection.topic, []).append((timestamp, msg))
    return out


def image_array(msg):
    channels = {'mono8': 1, 'rgb8': 3}[msg.encoding]
    assert msg.step == msg.width * channels
    arr = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, channels)
    return arr[:, :, 0] if channels == 1 else arr


def confusion(pairs, c=NUM_CLASSES):
    """Return (mIoU over all classes, pixel accuracy, per-class IoU) with numpy.bincount."""
    m = np.zeros((c, c), np.int64)
    for pred, label in pairs:
        keep = label != 255
        m += np.bincount(label[keep].astype(np.int64) * c + pred[keep].astype(np.int64),
                         minlength=c * c).reshape(c, c)
    inter = np.diag(m).astype(np.float64)
    union = m.sum(0) + m.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return float(iou.mean()), float(inter.sum() / m.sum()), iou


def stamp_ns(camera_index, i):
    return 100 * 10**9 + i * 100_000_000 + camera_index * 1_000_000


# ---------------------------------------------------------------------------------------------
# Fixtures.

@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """Return a seeded PP-LiteSeg-T at 128x256 as dynamic-batch ONNX, and its Segmenter."""
    path = onnx_model('t_128x256', tmp_path_factory)
    segmenter = Segmenter.from_file(path, threads=1)
    return {'onnx': path, 'segmenter': segmenter}


@pytest.fixture(scope='module')
def scenario(model):
    """Frames, their independently decoded RGB, expected masks and labels per camera."""
    segmenter = model['segmenter']
    rng = np.random.default_rng(0)
    cameras = {}
    for index, (name, (topic, encoding, (h, w), label_first)) in enumerate(CAMERAS.items()):
        frames = []
        for i in range(FRAMES):
            rgb = make_street_scene(h, w, seed=10 * index + i)
            if encoding == 'bgr8':
                payload, decoded = np.ascontiguousarray(rgb[:, :, ::-1]), rgb
            elif encoding == 'rgb8':
                payload, decoded = rgb, rgb
            elif encoding == 'mono8':
                payload = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
                decoded = np.repeat(payload[:, :, None], 3, axis=2)
            else:
                ok, jpeg = cv2.imencode('.jpg', np.ascontiguousarray(rgb[:, :, ::-1]),
                                        [cv2.IMWRITE_JPEG_QUALITY, 90])
                payload = jpeg.tobytes()
                decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1]
            mask = segmenter.segment(np.ascontiguousarray(decoded)).mask
            frames.append({'stamp': stamp_ns(index, i), 'payload': payload,
                           'decoded': decoded, 'mask': mask, 'label': perturb(mask, rng)})
        cameras[name] = {'topic': topic, 'encoding': encoding, 'frames': frames,
                         'label_topic': f'/{name}/labels', 'label_first': label_first,
                         'frame_id': f'{name}_optical'}
    return cameras


def scenario_records(scenario, corrupt=True, extra_label=True, chatter=False):
    """Return the messages of the test bag and the counts of what was planted in it."""
    ts = typestore()
    records = []
    for name, cam in scenario.items():
        for i, frame in enumerate(cam['frames']):
            stamp = frame['stamp']
            log = stamp + 5_000_000
            if cam['encoding'] == 'jpeg':
                msg = jpeg_message(ts, frame['payload'], stamp, cam['frame_id'])
                records.append((cam['topic'], COMPRESSED, log, msg))
            else:
                msg = raw_image(ts, frame['payload'], cam['encoding'], stamp, cam['frame_id'])
                records.append((cam['topic'], IMAGE, log, msg))
            label = raw_image(ts, frame['label'], 'mono8', stamp, cam['frame_id'])
            records.append((cam['label_topic'], IMAGE,
                            log - 1000 if cam['label_first'] else log + 1000, label))
    planted = {'unreadable': 0, 'unmatched': 0, 'chatter': 0}
    if corrupt:
        # An Image whose data is 10 bytes short, and a truncated JPEG: no labels for them.
        cam = scenario['cam_bgr']
        good = cam['frames'][0]['payload']
        bad = raw_image(ts, good, 'bgr8', 777 * 10**9, 'x',
                        data=np.ascontiguousarray(good).reshape(-1)[:-10])
        records.append((cam['topic'], IMAGE, stamp_ns(0, 2) + 50_000_000, bad))
        cam = scenario['cam_jpeg']
        truncated = cam['frames'][1]['payload'][:200]
        records.append((cam['topic'], COMPRESSED, stamp_ns(3, 3) + 50_000_000,
                        jpeg_message(ts, truncated, 778 * 10**9, 'x')))
        planted['unreadable'] = 2
    if extra_label:
        cam = scenario['cam_rgb']
        label = raw_image(ts, cam['frames'][0]['label'], 'mono8', 999 * 10**9, 'x')
        records.append((cam['label_topic'], IMAGE, stamp_ns(1, 4) + 60_000_000, label))
        planted['unmatched'] = 1
    if chatter:
        for i in range(3):
            msg = ts.types['std_msgs/msg/String'](data=f'hello {i}')
            records.append(('/chatter', 'std_msgs/msg/String', stamp_ns(0, i) + 7, msg))
        planted['chatter'] = 3
    return records, planted


def all_topic_args(scenario):
    args = []
    for cam in scenario.values():
        args += ['--image-topic', cam['topic']]
    for cam in scenario.values():
        args += ['--label-topic', cam['label_topic']]
    return args


# ---------------------------------------------------------------------------------------------
# Offline evaluation.

@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_eval_metrics_and_output_bag(tmp_path, model, scenario, storage):
    records, planted = scenario_records(scenario)
    bag = write_bag(tmp_path / 'in', storage, records)
    out = tmp_path / 'out'
    code = liteseg_main(['bag-eval', str(bag), '--model', str(model['onnx']), '--threads', '1',
                         '--output', str(out), '--no-progress'] + all_topic_args(scenario))
    assert code == 0
    summary = json.loads((out / 'summary.json').read_text())

    total = FRAMES * len(CAMERAS)
    assert summary['frames'] == total
    assert summary['image_messages'] == total + planted['unreadable']
    assert summary['errors']['unreadable_frames'] == planted['unreadable']
    assert summary['errors']['unmatched_labels'] == planted['unmatched']
    assert summary['errors']['unsupported_messages'] == 0
    assert summary['errors']['frames_without_label'] == 0
    assert summary['labelled_frames'] == total
    assert summary['interrupted'] is False and summary['read_error'] is None
    for key in ('p50', 'p95', 'p99'):
        assert summary['latency_ms'][key] > 0
    assert summary['fps'] > 0
    assert summary['storage'] == storage

    # Accuracy: an independent bincount over the same masks and labels.
    pairs = [(f['mask'], f['label']) for cam in scenario.values() for f in cam['frames']]
    miou, accuracy, iou = confusion(pairs)
    assert 0.05 < miou < 0.95
    # Float64 ratios of the same integer counts here and there: round-off only.
    assert summary['miou'] == pytest.approx(miou, rel=1e-12)
    assert summary['pixel_accuracy'] == pytest.approx(accuracy, rel=1e-12)
    class_names = model['segmenter'].class_names
    assert list(summary['per_class_iou']) == class_names
    np.testing.assert_allclose([summary['per_class_iou'][n] for n in class_names], iou,
                               rtol=1e-12)
    for name, cam in scenario.items():
        cam_miou, _, _ = confusion([(f['mask'], f['label']) for f in cam['frames']])
        assert summary['topics'][cam['topic']]['miou'] == pytest.approx(cam_miou, rel=1e-12)
        assert summary['topics'][cam['topic']]['label_topic'] == cam['label_topic']

    # The output bag: same storage, masks equal Segmenter's, same stamps/log times/frame ids.
    assert (out / 'bag' / 'metadata.yaml').is_file()
    meta = (out / 'bag' / 'metadata.yaml').read_text()
    assert f'storage_identifier: {storage}' in meta
    got = read_bag(out / 'bag')
    palette = np.asarray(model['segmenter'].palette, np.uint8)
    for name, cam in scenario.items():
        masks = got[f'/{name}/segmentation/mask']
        colors = got[f'/{name}/segmentation/color']
        drivable = got[f'/{name}/segmentation/drivable_area']
        assert len(masks) == len(colors) == len(drivable) == FRAMES
        outputs = zip(cam['frames'], masks, colors, drivable)
        for frame, (t_mask, m), (t_color, c), (t_drive, d) in outputs:
            assert t_mask == t_color == t_drive == frame['stamp'] + 5_000_000
            for msg in (m, c, d):
                assert msg.header.frame_id == cam['frame_id']
                assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == frame['stamp']
            np.testing.assert_array_equal(image_array(m), frame['mask'])
            np.testing.assert_array_equal(image_array(c), palette[frame['mask']])
            np.testing.assert_array_equal(image_array(d), (frame['mask'] == ROAD) * 255)
    assert set(got) == {f'/{n}/segmentation/{o}' for n in CAMERAS
                        for o in ('mask', 'color', 'drivable_area')}

    sheet = cv2.imread(str(out / 'contact_sheet.png'))
    assert sheet is not None and sheet.shape[0] > 3 * 50
    assert cv2.imread(str(out / 'confusion_matrix.png')) is not None


def test_bag_eval_bare_mcap_file_batch_and_unsupported_type(tmp_path, model, scenario):
    """A bare .mcap path, --batch 3, a non-image topic counted, outputs mask/compressed."""
    records, planted = scenario_records(scenario, corrupt=False, extra_label=False,
                                        chatter=True)
    bag = write_bag(tmp_path / 'in', 'mcap', records)
    mcap_file = next(bag.glob('*.mcap'))
    out = tmp_path / 'out'
    code = liteseg_main(['bag-eval', str(mcap_file), '--model', str(model['onnx']),
                         '--image-topic', '/cam_rgb/image_raw', '--image-topic', '/chatter',
                         '--label-topic', '/cam_rgb/labels', '--batch', '3',
                         '--outputs', 'mask/compressed,overlay', '--output', str(out),
                         '--no-progress'])
    assert code == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames'] == FRAMES
    assert summary['batch'] == 3
    assert summary['errors']['unsupported_messages'] == planted['chatter']
    assert summary['topics']['/chatter']['errors'] == {'unsupported_messages': 3}
    got = read_bag(out / 'bag')
    assert (out / 'bag' / 'metadata.yaml').read_text().count('storage_identifier: mcap') == 1
    frames = scenario['cam_rgb']['frames']
    compressed = got['/cam_rgb/segmentation/mask/compressed']
    overlays = got['/cam_rgb/segmentation/overlay']
    palette = np.asarray(model['segmenter'].palette, np.float64)
    for frame, (_, png), (_, over) in zip(frames, compressed, overlays):
        mask = cv2.imdecode(np.asarray(png.data, np.uint8), cv2.IMREAD_UNCHANGED)
        # Batched inference may differ from single-frame inference in rare boundary pixels.
        assert np.mean(mask == frame['mask']) > 0.999
        expected = np.rint(0.5 * frame['decoded'] + 0.5 * palette[mask])
        # OpenCV's blend and numpy's rint round .5 differently: one grey level.
        assert np.abs(image_array(over).astype(np.float64) - expected).max() <= 1


def test_missing_topic_lists_the_bag_topics(tmp_path, model, scenario, capsys):
    records, _ = scenario_records(scenario, corrupt=False, extra_label=False)
    bag = write_bag(tmp_path / 'in', 'sqlite3', records)
    code = liteseg_main(['bag-eval', str(bag), '--model', str(model['onnx']),
                         '--image-topic', '/front/image_raw', '--output', str(tmp_path / 'o')])
    assert code == 1
    err = capsys.readouterr().err
    assert 'no image topic /front/image_raw' in err
    for cam in scenario.values():
        assert cam['topic'] in err and cam['label_topic'] in err
    assert 'sensor_msgs/msg/CompressedImage' in err
    assert not (tmp_path / 'o').exists()
    code = liteseg_main(['bag-eval', str(bag), '--image-topic', '/cam_rgb/image_raw'])
    assert code == 1
    assert '--model is required' in capsys.readouterr().err


def test_interrupt_writes_partial_results(tmp_path, model, scenario):
    records, _ = scenario_records(scenario, corrupt=False, extra_label=False)
    bag = write_bag(tmp_path / 'in', 'mcap', records)

    def ctrl_c_in_third_call(call):
        if call == 3:
            raise KeyboardInterrupt

    out = tmp_path / 'out'
    lines = []
    segmenter = CallHook(model['segmenter'], ctrl_c_in_third_call)
    summary = bag_eval.evaluate_bag(bag, ['/cam_rgb/image_raw'], segmenter, ['/cam_rgb/labels'],
                                    out, progress=False, log=lines.append)
    assert summary['interrupted'] is True
    assert summary['frames'] == 2
    assert any('interrupted' in line for line in lines)
    written = json.loads((out / 'summary.json').read_text())
    assert written['interrupted'] is True and written['frames'] == 2
    assert written['labelled_frames'] == 2
    got = read_bag(out / 'bag')
    assert len(got['/cam_rgb/segmentation/mask']) == 2
    for frame, (_, m) in zip(scenario['cam_rgb']['frames'], got['/cam_rgb/segmentation/mask']):
        np.testing.assert_array_equal(image_array(m), frame['mask'])


def test_damaged_bag_ends_the_read_with_partial_results(tmp_path, model, capsys):
    ts = typestore()
    frames = [make_street_scene(120, 160, seed=i) for i in range(20)]
    records = [('/cam/image_raw', IMAGE, 10**9 + i, raw_image(ts, rgb, 'rgb8', 10**9 + i, 'f'))
               for i, rgb in enumerate(frames)]
    bag = write_bag(tmp_path / 'in', 'sqlite3', records)
    db3 = next(bag.glob('*.db3'))
    data = bytearray(db3.read_bytes())
    data[len(data) // 2:len(data) // 2 + 5000] = b'\x13' * 5000  # overwrite pages mid-file
    db3.write_bytes(data)
    out = tmp_path / 'out'
    code = liteseg_main(['bag-eval', str(bag), '--model', str(model['onnx']), '--image-topic',
                         '/cam/image_raw', '--output', str(out), '--no-progress'])
    assert code == 1
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['read_error'] and 'malformed' in summary['read_error']
    assert 0 < summary['frames'] < 20
    assert 'cannot be read further' in capsys.readouterr().out
    got = read_bag(out / 'bag')
    assert len(got['/cam/segmentation/mask']) == summary['frames']
    for (_, msg), rgb in zip(got['/cam/segmentation/mask'], frames):
        np.testing.assert_array_equal(image_array(msg), model['segmenter'].segment(rgb).mask)


def test_label_pairing_and_namespaces():
    assert bag_eval.image_namespace('/cam0/image_raw') == '/cam0'
    assert bag_eval.image_namespace('/car/front/image_raw/compressed') == '/car/front'
    assert bag_eval.image_namespace('/image_raw') == ''
    pairs = bag_eval.pair_labels(['/a/image_raw', '/b/image_raw/compressed'],
                                 ['/b/labels', '/a/labels'])
    assert pairs == {'/a/image_raw': '/a/labels', '/b/image_raw/compressed': '/b/labels'}
    pairs = bag_eval.pair_labels(['/a/image_raw', '/b/image_raw'],
                                 ['/gt/front', '/gt/rear'])
    assert pairs == {'/a/image_raw': '/gt/front', '/b/image_raw': '/gt/rear'}
    assert bag_eval.pair_labels(['/a/image_raw', '/b/image'], ['/b/labels']) == {
        '/a/image_raw': None, '/b/image': '/b/labels'}
    with pytest.raises(ValueError, match='cannot pair'):
        bag_eval.pair_labels(['/a/image_raw', '/b/image_raw'], ['/gt/front'])
    with pytest.raises(ValueError, match='both as an image and as a label'):
        bag_eval.pair_labels(['/a/image_raw'], ['/a/image_raw'])


def test_stamp_helpers_round_trip():
    ts = typestore()
    msg = raw_image(ts, np.zeros((2, 3), np.uint8), 'mono8', 12 * 10**9 + 34, 'f')
    raw = bytes(ts.serialize_cdr(msg, IMAGE))
    assert stamp_of(raw) == (12, 34)
    back = ts.deserialize_cdr(with_stamp(raw, 56, 78), IMAGE)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (56, 78)
    assert back.header.frame_id == 'f' and back.width == 3


def test_bag_writer_output_reads_back(tmp_path):
    """liteseg_ros.bags.rosbag.BagWriter bags open with rosbags (both storages)."""
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for storage in ('mcap', 'sqlite3'):
        with BagWriter(tmp_path / storage, storage) as writer:
            writer.write('/x/mask', 5, image_message(mask, 'mono8', header(1, 2, 'fr')))
        got = read_bag(tmp_path / storage)
        (t, msg), = got['/x/mask']
        assert t == 5 and msg.header.frame_id == 'fr' and msg.encoding == 'mono8'
        np.testing.assert_array_equal(image_array(msg), mask)
        with BagReader(tmp_path / storage) as reader:
            assert reader.storage == storage
            assert reader.topics == {'/x/mask': ('sensor_msgs/msg/Image', 1)}
            (t, topic, msg), = reader.read(['/x/mask'])
            assert (t, topic, msg.header.stamp.sec, msg.header.stamp.nanosec) == (
                5, '/x/mask', 1, 2)


# ---------------------------------------------------------------------------------------------
# dataset-to-bag.

@pytest.mark.parametrize('storage,encoding', [('mcap', 'rgb8'), ('sqlite3', 'jpeg'),
                                              ('mcap', 'bgr8')])
def test_dataset_to_bag_cityscapes_round_trip(tmp_path, model, storage, encoding):
    synthetic = pytest.importorskip('training.synthetic_data')
    from liteseg_ros.classes import CITYSCAPES_ID_LUT

    root = tmp_path / 'cityscapes'
    written = synthetic.make_cityscapes_like(root, 0, 3, size=(64, 128), seed=1)
    bag = tmp_path / 'bag'
    code = liteseg_main(['dataset-to-bag', str(bag), '--dataset', 'cityscapes', '--root',
                         str(root), '--split', 'val', '--rate', '4', '--encoding', encoding,
                         '--storage', storage, '--start-time', '1000', '--no-progress'])
    assert code == 0
    got = read_bag(bag)
    image_topic = '/camera/image_raw' + ('/compressed' if encoding == 'jpeg' else '')
    assert set(got) == {image_topic, '/camera/labels'}
    images, labels = got[image_topic], got['/camera/labels']
    assert len(images) == len(labels) == 3
    for i, (path, (t_img, img), (t_lab, lab)) in enumerate(zip(sorted(written['val']), images,
                                                               labels)):
        stamp = 1000 * 10**9 + i * 250_000_000
        assert t_img == t_lab == stamp
        for msg in (img, lab):
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
            assert msg.header.frame_id == 'camera'
        rgb = cv2.imread(str(path))[:, :, ::-1]
        if encoding == 'jpeg':
            # The same OpenCV JPEG encoder at quality 95 gives the same bytes.
            ok, jpeg = cv2.imencode('.jpg', np.ascontiguousarray(rgb[:, :, ::-1]),
                                    [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert img.format == 'rgb8; jpeg compressed bgr8'
            np.testing.assert_array_equal(np.asarray(img.data, np.uint8), jpeg.reshape(-1))
        else:
            assert img.encoding == encoding
            arr = np.asarray(img.data, np.uint8).reshape(64, 128, 3)
            np.testing.assert_array_equal(arr if encoding == 'rgb8' else arr[:, :, ::-1], rgb)
        label_path = (root / 'gtFine' / 'val' / path.parent.name
                      / path.name.replace('_leftImg8bit.png', '_gtFine_labelIds.png'))
        expected = CITYSCAPES_ID_LUT[cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)]
        assert lab.encoding == 'mono8'
        np.testing.assert_array_equal(image_array(lab), expected)

    # The dataset bag evaluates like a drive: every frame matched with its label.
    out = tmp_path / 'eval'
    code = liteseg_main(['bag-eval', str(bag), '--model', str(model['onnx']), '--image-topic',
                         image_topic, '--label-topic', '/camera/labels', '--output', str(out),
                         '--no-progress'])
    assert code == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames'] == summary['labelled_frames'] == 3
    assert not any(summary['errors'].values())
    assert 0.0 <= summary['miou'] <= 1.0


def test_dataset_to_bag_folder_and_camvid(tmp_path):
    rng = np.random.default_rng(3)
    images, labels = tmp_path / 'images', tmp_path / 'labels'
    (images / 'seq').mkdir(parents=True)
    (labels / 'seq').mkdir(parents=True)
    expected = []
    for i in range(3):
        rgb = make_street_scene(48, 64, seed=i)
        label = rng.integers(0, 11, (48, 64)).astype(np.uint8)
        label[0] = 255
        cv2.imwrite(str(images / 'seq' / f'f{i}.png'), rgb[:, :, ::-1])
        if i != 1:  # one image without a label
            cv2.imwrite(str(labels / 'seq' / f'f{i}.png'), label)
        expected.append((rgb, label if i != 1 else None))
    bag = tmp_path / 'folder_bag'
    code = liteseg_main(['dataset-to-bag', str(bag), '--dataset', 'folder', '--images',
                         str(images), '--labels', str(labels), '--rate', '10',
                         '--image-topic', '/front/image_raw', '--label-topic', '/front/gt',
                         '--start-time', '5', '--no-progress'])
    assert code == 0
    got = read_bag(bag)
    assert [t for t, _ in got['/front/image_raw']] == [5 * 10**9 + i * 10**8 for i in range(3)]
    assert [t for t, _ in got['/front/gt']] == [5 * 10**9, 5 * 10**9 + 2 * 10**8]
    np.testing.assert_array_equal(image_array(got['/front/image_raw'][1][1]), expected[1][0])
    np.testing.assert_array_equal(image_array(got['/front/gt'][1][1]), expected[2][1])

    (tmp_path / 'val.txt').write_text('images/seq/f0.png labels/seq/f0.png\n'
                                      'images/seq/f2.png labels/seq/f2.png\n')
    bag = tmp_path / 'camvid_bag'
    code = liteseg_main(['dataset-to-bag', str(bag), '--dataset', 'camvid', '--root',
                         str(tmp_path), '--storage', 'sqlite3', '--no-progress'])
    assert code == 0
    got = read_bag(bag)
    assert len(got['/camera/image_raw']) == len(got['/camera/labels']) == 2
    np.testing.assert_array_equal(image_array(got['/camera/labels'][1][1]), expected[2][1])
    code = liteseg_main(['dataset-to-bag', str(tmp_path / 'x'), '--dataset', 'camvid',
                         '--root', str(tmp_path), '--list-file', 'missing.txt'])
    assert code == 1 and not (tmp_path / 'x').exists()


# ---------------------------------------------------------------------------------------------
# --live against the real node.

def node_command():
    for candidate in (shutil.which('segment_node'),
                      os.path.join(os.path.dirname(sys.executable), 'segment_node')):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    return [sys.executable, '-m', 'liteseg_ros.ros.segment_node']


@pytest.mark.ros
@pytest.mark.slow
def test_live_replay_against_the_node(tmp_path, model, monkeypatch):
    pytest.importorskip('rclpy')
    monkeypatch.setenv('FASTDDS_BUILTIN_TRANSPORTS',
                       os.environ.get('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA'))
    ts = typestore()
    frames, records = [], []
    for i in range(30):
        rgb = make_street_scene(120, 160, seed=100 + i)
        stamp = 50 * 10**9 + i * 100_000_000  # 10 Hz
        frames.append((stamp, rgb))
        records.append(('/cam_live/image_raw', IMAGE, stamp,
                        raw_image(ts, np.ascontiguousarray(rgb[:, :, ::-1]), 'bgr8', stamp,
                                  'live_optical')))
    bag = write_bag(tmp_path / 'live_in', 'mcap', records)

    params = tmp_path / 'params.yaml'
    params.write_text('/**/segment_node:\n  ros__parameters:\n'
                      "    cameras: ['cam_live']\n"
                      f"    model_path: '{model['onnx']}'\n"
                      "    backend: 'onnxruntime'\n    threads: 1\n")
    log_path = tmp_path / 'node.log'
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log_path, 'w') as log:
        node = subprocess.Popen(node_command() + ['--ros-args', '--params-file', str(params)],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        try:
            out = tmp_path / 'live_out'
            code = liteseg_main(['bag-eval', str(bag), '--live', '--image-topic',
                                 '/cam_live/image_raw', '--outputs', 'mask', '--output',
                                 str(out), '--timeout', '120', '--no-progress'])
            assert node.poll() is None, log_path.read_text()[-3000:]
        finally:
            if node.poll() is None:
                node.send_signal(signal.SIGINT)
                try:
                    node.wait(30)
                except subprocess.TimeoutExpired:
                    node.kill()
                    node.wait()
    node_log = log_path.read_text(errors='replace')
    assert code == 0, node_log[-3000:]
    assert node.returncode == 0, node_log[-3000:]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['mode'] == 'live' and summary['frames'] == 30
    assert summary['matched_fraction'] >= 0.95, summary
    assert summary['latency_ms']['p50'] > 0
    assert 5.0 < summary['input_rate_hz'] < 15.0
    assert summary['frames_without_output'] == 30 - summary['matched']

    # What the node published, recorded with the recorded stamps and log times put back.
    got = read_bag(out / 'bag')['/cam_live/segmentation/mask']
    assert len(got) == summary['matched']
    by_stamp = dict(frames)
    segmenter = model['segmenter']
    for timestamp, msg in got:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert timestamp == stamp and stamp in by_stamp
        assert msg.header.frame_id == 'live_optical'
        np.testing.assert_array_equal(image_array(msg),
                                      segmenter.segment(by_stamp[stamp]).mask)


def test_live_without_node_fails_clearly(tmp_path, model):
    pytest.importorskip('rclpy')
    ts = typestore()
    records = [('/nobody/image_raw', IMAGE, 10**9,
                raw_image(ts, np.zeros((8, 8, 3), np.uint8), 'rgb8', 10**9, 'f'))]
    bag = write_bag(tmp_path / 'in', 'mcap', records)
    start = time.monotonic()
    with pytest.raises(live_replay.LiveError, match='nobody subscribes to /nobody/image_raw'):
        live_replay.run_live(bag, ['/nobody/image_raw'], tmp_path / 'out', timeout=1.0,
                             progress=False, log=lambda *_: None)
    assert time.monotonic() - start < 30
    assert not (tmp_path / 'out' / 'bag').exists()
