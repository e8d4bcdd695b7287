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
Calibration frames for int8 export: an image folder, a rosbag2 topic, or a config's split.

Frames are resized exactly as ``Segmenter.preprocess`` resizes them (uint8, INTER_LINEAR) and
normalised exactly as the fused graph of ``onnx_graph.wrap_pre_post`` does, so the int8
ranges are measured on what the network sees at run time (docs/inference.md, "Stages").
"""

from pathlib import Path

from liteseg_ros.dataset_files import image_files
from liteseg_ros.inference.segmenter import Segmenter
import numpy as np

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')
DEFAULT_FRAMES = 64


class CalibrationError(ValueError):
    """Calibration frames cannot be read; the message names the source."""


class _Resizer:
    """The Segmenter's own preprocessing, without loading a model."""

    preprocess = Segmenter.preprocess

    def __init__(self, height, width):
        self.backend = type('InputSize', (), {'input_size': (int(height), int(width))})()


def spread(items, limit):
    """Return up to ``limit`` items spread evenly over ``items`` (all when limit is 0)."""
    items = list(items)
    if limit and len(items) > limit:
        return [items[i * len(items) // limit] for i in range(limit)]
    return items


def _read_rgb(path):
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CalibrationError(f'{path}: not a readable image (int8 calibration)')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def folder_frames(folder, limit):
    """Yield RGB frames of up to ``limit`` images under ``folder`` (spread over its list)."""
    try:
        files = image_files(folder, IMAGE_SUFFIXES, '; int8 calibration needs frames like the '
                            'ones the model will see')
    except ValueError as exc:
        raise CalibrationError(str(exc)) from None
    for path in spread(files, limit):
        yield _read_rgb(path)


def bag_frames(bag, topic, limit):
    """Yield RGB frames of ``topic`` (Image or CompressedImage) of a rosbag2 ``bag``."""
    from liteseg_ros.bags.rosbag import BagReader
    from liteseg_ros.image_codecs import decode_compressed, decode_image

    if not topic:
        raise CalibrationError(f'{bag}: a bag needs --calibration-topic (an image topic)')
    with BagReader(bag) as reader:
        reader.check_topics([topic], 'calibration topic')
        count = reader.count([topic])
        wanted = {i * count // limit for i in range(limit)} if limit and count > limit else None
        for index, message in enumerate(reader.messages([topic])):
            if wanted is not None and index not in wanted:
                continue
            msg = reader.deserialize(message)
            compressed = message.msgtype.endswith('CompressedImage')
            yield (decode_compressed if compressed else decode_image)(msg)


def config_frames(config_path, split, limit):
    """Yield RGB frames of ``split`` of a training config's dataset."""
    from training.config import load_config
    from training.datasets import build_dataset, read_image

    config = load_config(config_path)
    dataset = build_dataset(config, split, None, require_labels=False)
    for image, _ in spread(dataset.samples, limit):
        yield read_image(image)


def parse_source(source):
    """Return (kind, path, split) of a --calibration value: folder, bag or CONFIG[:SPLIT]."""
    text = str(source)
    config, _, split = text.partition(':') if text.endswith(
        tuple(f'.yaml:{s}' for s in ('train', 'val', 'test'))) else (text, '', '')
    path = Path(config)
    if path.suffix in ('.yaml', '.yml'):
        return 'config', path, split or 'train'
    if path.is_dir() and not (path / 'metadata.yaml').is_file() and not any(
            path.glob('*.mcap')) and not any(path.glob('*.db3')):
        return 'folder', path, None
    if path.exists():
        return 'bag', path, None
    raise CalibrationError(f'{source}: no such calibration source (a folder of images, a '
                           'rosbag2, or a training config[:split])')


def load_calibration_frames(source, height, width, limit=DEFAULT_FRAMES, topic=None):
    """
    Return (uint8 NHWC frames at the model size, a summary dict) from ``source``.

    ``source``: an image folder, a rosbag2 (``topic`` names the image topic) or a training
    config (``config.yaml`` or ``config.yaml:val``; default split train).
    """
    kind, path, split = parse_source(source)
    if kind == 'folder':
        frames = folder_frames(path, limit)
    elif kind == 'bag':
        frames = bag_frames(path, topic, limit)
    else:
        frames = config_frames(path, split, limit)
    resizer = _Resizer(height, width)
    batch = [resizer.preprocess([frame])[0] for frame in frames]
    if not batch:
        raise CalibrationError(f'{source}: no calibration frames found')
    summary = {'source': str(source), 'kind': kind, 'frames': len(batch)}
    if topic and kind == 'bag':
        summary['topic'] = topic
    if split:
        summary['split'] = split
    return np.stack(batch), summary


def normalise(frames, mean, std):
    """Return float32 NCHW input of uint8 NHWC ``frames``, as the fused graph computes it."""
    mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    scale = np.float32(1.0) / (np.float32(255.0) * std)
    return frames.astype(np.float32).transpose(0, 3, 1, 2) * scale + (-mean / std)
