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
``liteseg dataset-to-bag``: a segmentation dataset written as a rosbag2 drive.

Reads a Cityscapes split (``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png``, or ``*_labelIds.png`` mapped to the 19
train ids with the official table), a CamVid split (PaddleSeg list file of ``image label``
lines relative to the root) or a folder of images with a folder of label PNGs (matched by
relative path without extension) and writes, in file order, with stamps ``start + i / rate``:

- the image topic (default ``/camera/image_raw``): ``sensor_msgs/Image`` in ``rgb8`` or
  ``bgr8``, or with ``--encoding jpeg`` a ``sensor_msgs/CompressedImage`` on
  ``<topic>/compressed`` (format ``rgb8; jpeg compressed bgr8``, as image_transport names it;
  a ``.jpg`` source file is copied as is, others are encoded at ``--jpeg-quality``);
- the label topic (default ``/camera/labels``): ``mono8`` class ids (255 = ignore) with the
  same header, so ``liteseg bag-eval`` pairs it with the camera by namespace and stamp;
- with ``--camera-info FILE`` (a camera_calibration_parsers YAML), ``<namespace>/camera_info``
  (``sensor_msgs/CameraInfo``) with each frame's header.

Every message's log time equals its header stamp. MCAP by default, ``--storage sqlite3``
otherwise. Files are read as ``training.datasets`` reads them (images with OpenCV, labels with
PIL so that palette PNGs give their indices); this module needs neither torch nor ``training``.
"""

import json
from pathlib import Path
import shutil
import time

import cv2
from liteseg_ros.bags.ground_grid import (camera_info_message, camera_info_topic,
                                          load_calibration)
from liteseg_ros.bags.rosbag import (BagError, BagWriter, compressed_message, header,
                                     image_message, STORAGES)
from liteseg_ros.dataset_files import (camvid_files, cityscapes_files, cityscapes_label_lut,
                                       DatasetError, folder_files, read_label)
from liteseg_ros.inference.outputs import image_namespace
import numpy as np

ENCODINGS = ('rgb8', 'bgr8', 'jpeg')
DATASETS = ('cityscapes', 'camvid', 'folder')
JPEG_FORMAT = 'rgb8; jpeg compressed bgr8'


def cityscapes_samples(root, split):
    """Return [(image, label or None, lut or None)] of a Cityscapes split, sorted."""
    return [(image, label, None if label is None else cityscapes_label_lut(label))
            for image, label in cityscapes_files(root, split, require_labels=False)]


def camvid_samples(root, list_file):
    """Return [(image, label or None, None)] from a PaddleSeg CamVid list file."""
    return [(image, label, None)
            for image, label in camvid_files(root, list_file, require_labels=False)]


def folder_samples(images_dir, labels_dir=None):
    """Return [(image, label or None, None)]: ``images/a/b.jpg`` pairs ``labels/a/b.png``."""
    return [(image, label, None)
            for image, label in folder_files(images_dir, labels_dir, require_labels=False)]


def _check_files(samples):
    missing = [str(p) for image, label, _ in samples for p in (image, label)
               if p is not None and not Path(p).is_file()]
    if missing:
        more = f' and {len(missing) - 5} more' if len(missing) > 5 else ''
        raise DatasetError(f'{len(missing)} listed file(s) missing: '
                           f'{", ".join(missing[:5])}{more}')


def read_mono8_label(path, lut=None):
    """Return the HxW uint8 class ids of a label PNG, mapped through ``lut`` when given."""
    label = read_label(path)
    if label.dtype != np.uint8:
        if label.size and int(label.max()) > 255:
            raise DatasetError(f'{path}: label values up to {int(label.max())} do not fit '
                               'mono8 (0..255)')
        label = label.astype(np.uint8)
    return lut[label] if lut is not None else label


def dataset_to_bag(samples, out, rate=10.0, encoding='rgb8', storage='mcap',
                   image_topic='/camera/image_raw', label_topic='/camera/labels',
                   frame_id='camera', start_time=None, jpeg_quality=95, progress=True,
                   log=print, calibration=None):
    """
    Write ``samples`` [(image path, label path or None, label LUT or None)] as a bag at ``out``.

    Returns a dict: bag, storage, frames, labels, image_topic, label_topic, rate, start_time,
    camera_info_topic. ``calibration`` (bags.ground_grid.load_calibration) adds a CameraInfo
    per frame; an image of another size than it is an error.
    A file that cannot be read stops the conversion with an error naming it, and the partial
    bag is removed.
    """
    from tqdm import tqdm

    if encoding not in ENCODINGS:
        raise ValueError(f'--encoding must be one of {ENCODINGS}, got {encoding!r}')
    if not rate > 0:
        raise ValueError(f'--rate must be > 0 (frames per second), got {rate}')
    if not samples:
        raise DatasetError('no samples to write')
    _check_files(samples)
    out = Path(out)
    if out.exists():
        raise BagError(f'{out} exists already; remove it or choose another output path')
    if start_time is None:
        start_time = float(int(time.time()))
    start_ns = int(round(start_time * 1e9))
    topic = image_topic + '/compressed' if encoding == 'jpeg' else image_topic
    labels = 0
    info_topic = camera_info_topic(image_namespace(image_topic)) if calibration else None
    writer = BagWriter(out, storage)
    try:
        for index, (image_path, label_path, lut) in enumerate(
                tqdm(samples, unit='frame', desc='dataset-to-bag',
                     disable=None if progress else True)):
            stamp = start_ns + int(round(index * 1e9 / rate))
            msg_header = header(stamp // 10**9, stamp % 10**9, frame_id)
            if encoding == 'jpeg' and Path(image_path).suffix.lower() in ('.jpg', '.jpeg'):
                data = np.fromfile(str(image_path), np.uint8)
                size = _jpeg_size_of(image_path, data)
                msg = compressed_message(data, JPEG_FORMAT, msg_header)
            else:
                bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise DatasetError(f'{image_path}: cannot read image')
                size = bgr.shape[:2]
                if encoding == 'jpeg':
                    ok, data = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY,
                                                          int(jpeg_quality)])
                    if not ok:
                        raise DatasetError(f'{image_path}: OpenCV could not encode it as JPEG')
                    msg = compressed_message(data, JPEG_FORMAT, msg_header)
                elif encoding == 'bgr8':
                    msg = image_message(bgr, 'bgr8', msg_header)
                else:
                    msg = image_message(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 'rgb8', msg_header)
            writer.write(topic, stamp, msg)
            if calibration is not None:
                _write_camera_info(writer, info_topic, stamp, calibration, msg_header, size,
                                   image_path)
            if label_path is not None:
                label = read_mono8_label(label_path, lut)
                if label.shape != tuple(size):
                    raise DatasetError(f'{label_path}: label size {label.shape[1]}x'
                                       f'{label.shape[0]} differs from its image {image_path} '
                                       f'({size[1]}x{size[0]})')
                writer.write(label_topic, stamp, image_message(label, 'mono8', msg_header))
                labels += 1
    except BaseException:
        writer.close()
        shutil.rmtree(out, ignore_errors=True)
        raise
    writer.close()
    return {'bag': str(out), 'storage': storage, 'frames': len(samples), 'labels': labels,
            'image_topic': topic, 'label_topic': label_topic if labels else None,
            'encoding': encoding, 'rate': rate, 'start_time': start_ns / 1e9,
            'camera_info_topic': info_topic}


def _write_camera_info(writer, topic, stamp, calibration, msg_header, size, image_path):
    expected = (int(calibration['image_height']), int(calibration['image_width']))
    if tuple(size) != expected:
        raise DatasetError(f'{image_path}: {size[1]}x{size[0]}, but the --camera-info '
                           f'calibration is for {expected[1]}x{expected[0]} images')
    writer.write(topic, stamp, camera_info_message(calibration, msg_header))


def _jpeg_size_of(path, data):
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f'{path}: cannot read image (not a valid JPEG)')
    return image.shape[:2]


def samples_from_args(args):
    """Return the samples the command-line arguments select."""
    if args.dataset == 'cityscapes':
        if args.root is None:
            raise ValueError('--dataset cityscapes needs --root (the folder holding '
                             'leftImg8bit/ and gtFine/)')
        samples = cityscapes_samples(args.root, args.split)
    elif args.dataset == 'camvid':
        if args.root is None:
            raise ValueError('--dataset camvid needs --root (the folder the list file paths '
                             'are relative to)')
        samples = camvid_samples(args.root, args.list_file or f'{args.split}.txt')
    else:
        if args.images is None:
            raise ValueError('--dataset folder needs --images DIR (and --labels DIR for labels)')
        samples = folder_samples(args.images, args.labels)
    if args.name_prefix:
        selected = [s for s in samples if Path(s[0]).name.startswith(args.name_prefix)]
        if not selected:
            raise ValueError(f'--name-prefix {args.name_prefix!r}: none of the '
                             f'{len(samples)} images has a file name starting with it')
        samples = selected
    if args.limit is not None:
        samples = samples[:max(0, args.limit)]
    return samples


def add_arguments(parser):
    """Add ``liteseg dataset-to-bag`` arguments to ``parser``."""
    parser.add_argument('output', type=Path, help='bag directory to create')
    parser.add_argument('--dataset', choices=DATASETS, required=True,
                        help='cityscapes (--root, --split), camvid (--root, --split or '
                             '--list-file) or folder (--images, --labels)')
    parser.add_argument('--root', type=Path, default=None, help='dataset root')
    parser.add_argument('--split', default='val', help='split name (default: val)')
    parser.add_argument('--list-file', default=None,
                        help='camvid: list file, relative to --root (default: SPLIT.txt)')
    parser.add_argument('--images', type=Path, default=None, help='folder: image folder')
    parser.add_argument('--labels', type=Path, default=None,
                        help='folder: label PNG folder (class ids, 255 = ignore)')
    parser.add_argument('--rate', type=float, default=10.0,
                        help='frames per second: stamps step by 1/rate (default 10)')
    parser.add_argument('--encoding', choices=ENCODINGS, default='rgb8',
                        help='image messages: rgb8, bgr8 (Image) or jpeg (CompressedImage on '
                             'TOPIC/compressed) (default rgb8)')
    parser.add_argument('--jpeg-quality', type=int, default=95, help='JPEG quality (default 95)')
    parser.add_argument('--storage', choices=STORAGES, default='mcap',
                        help='rosbag2 storage (default mcap)')
    parser.add_argument('--image-topic', default='/camera/image_raw',
                        help='image topic (default /camera/image_raw)')
    parser.add_argument('--label-topic', default='/camera/labels',
                        help='label topic (default /camera/labels)')
    parser.add_argument('--frame-id', default='camera', help='header frame_id (default camera)')
    parser.add_argument('--start-time', type=float, default=None, metavar='SECONDS',
                        help='stamp of the first frame in seconds since the epoch (default: '
                             'now, whole seconds)')
    parser.add_argument('--name-prefix', default=None, metavar='PREFIX',
                        help='only images whose file name starts with PREFIX, e.g. one CamVid '
                             'sequence (0001TP, 0006R0, 0016E5, Seq05VD)')
    parser.add_argument('--limit', type=int, default=None, help='write only the first N frames')
    parser.add_argument('--camera-info', type=Path, default=None, metavar='YAML',
                        help='camera calibration (camera_calibration_parsers YAML): write '
                             'NAMESPACE/camera_info beside the images')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run(args):
    """Run ``liteseg dataset-to-bag``; return the exit code."""
    samples = samples_from_args(args)
    calibration = load_calibration(args.camera_info) if args.camera_info else None
    result = dataset_to_bag(samples, args.output, args.rate, args.encoding, args.storage,
                            args.image_topic, args.label_topic, args.frame_id,
                            args.start_time, args.jpeg_quality, not args.no_progress,
                            calibration=calibration)
    print(f"wrote {result['frames']} frames ({result['labels']} with labels) at "
          f"{result['rate']:g} Hz to {result['bag']} ({result['storage']}): "
          f"{result['image_topic']} ({result['encoding']})"
          + (f", {result['label_topic']} (mono8 class ids)" if result['label_topic'] else ''))
    print(json.dumps(result))
    return 0
