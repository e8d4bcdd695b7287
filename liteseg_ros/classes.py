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
Class names, colour palettes and label-id tables of the supported datasets, in one place.

Pure data and numpy: every layer (model, inference, ROS tools, training) reads it.
"""

import numpy as np

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle')

# Official cityscapesscripts colours of the 19 train ids.
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))

CAMVID_CLASSES = (
    'Sky', 'Building', 'Pole', 'Road', 'Sidewalk', 'Tree', 'SignSymbol', 'Fence', 'Car',
    'Pedestrian', 'Bicyclist')

# The 11-class CamVid colours of SegNet's release.
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))

# Cityscapes label id -> train id, copied from cityscapesscripts/helpers/labels.py (the
# official Cityscapes scripts, ``labels`` table, columns id and trainId). Ids mapped to 255
# (and every id not listed, e.g. license plate -1 stored as 255) are ignored.
CITYSCAPES_ID_TO_TRAINID = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255,
    11: 2, 12: 3, 13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8,
    22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16,
    32: 17, 33: 18,
}
# Train id -> label id, for the Cityscapes test server (predictions must use label ids).
CITYSCAPES_TRAINID_TO_ID = {t: i for i, t in CITYSCAPES_ID_TO_TRAINID.items() if t != 255}


def lookup_table(mapping, default=255):
    """Return a 256-entry uint8 table applying ``mapping`` ({value: value}) to uint8 images."""
    lut = np.full(256, default, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


CITYSCAPES_ID_LUT = lookup_table(CITYSCAPES_ID_TO_TRAINID)
CITYSCAPES_TRAINID_LUT = lookup_table(CITYSCAPES_TRAINID_TO_ID, default=0)

DATASETS = {
    'cityscapes': (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE),
    'camvid': (CAMVID_CLASSES, CAMVID_PALETTE),
}


def generic_palette(num_classes):
    """Return ``num_classes`` distinct colours (PASCAL VOC's bit-interleaving scheme)."""
    palette = []
    for label in range(num_classes):
        r = g = b = 0
        value = label
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.append((r, g, b))
    return tuple(palette)


def class_info(dataset, num_classes):
    """
    Return (class names, palette) for ``dataset`` with ``num_classes`` classes.

    A known dataset must have its own class count; any other name gets numbered classes and a
    generated palette.
    """
    if dataset in DATASETS:
        names, palette = DATASETS[dataset]
        if num_classes != len(names):
            raise ValueError(f'dataset {dataset!r} has {len(names)} classes, got '
                             f'num_classes={num_classes}')
        return list(names), [list(c) for c in palette]
    return ([f'class_{i}' for i in range(num_classes)],
            [list(c) for c in generic_palette(num_classes)])
