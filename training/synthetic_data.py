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
A small, learnable street-scene dataset written in the exact Cityscapes layout.

Scenes are a sky band with a colour gradient, buildings and trees on the horizon, a road and a
sidewalk below, cars, people and poles, and an ego-vehicle strip at the bottom (label id 1,
ignored in training). Each class has its own colour (jittered, with noise and a global
brightness change), so a model learns it in a few dozen iterations; the geometry varies per
image. Labels are Cityscapes label ids (``*_gtFine_labelIds.png``), mapped to train ids by
``training.datasets.CityscapesDataset`` like the real dataset's.

Usage::

    python -m training.synthetic_data OUT_DIR [--train 20 --val 5 --height 256 --width 512]
"""

import argparse
from pathlib import Path

import cv2
from liteseg_ros.classes import CITYSCAPES_ID_LUT
import numpy as np

# Cityscapes label ids used by the scenes.
SKY, BUILDING, VEGETATION, ROAD, SIDEWALK, CAR, PERSON, POLE, EGO = 23, 11, 21, 7, 8, 26, 24, 17, 1
COLOURS = {
    SKY: (70, 130, 180), BUILDING: (90, 80, 70), VEGETATION: (107, 142, 35), ROAD: (128, 64, 128),
    SIDEWALK: (244, 35, 232), CAR: (0, 0, 142), PERSON: (220, 20, 60), POLE: (200, 200, 110),
    EGO: (20, 20, 20),
}
TRAIN_CITIES = ('aachen', 'bremen')
VAL_CITIES = ('frankfurt',)


def _fill(image, label, rng, class_id, y0, y1, x0, x1, jitter=20):
    y0, y1 = max(int(y0), 0), min(int(y1), image.shape[0])
    x0, x1 = max(int(x0), 0), min(int(x1), image.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    colour = np.clip(np.array(COLOURS[class_id]) + rng.integers(-jitter, jitter + 1, 3), 0, 255)
    image[y0:y1, x0:x1] = colour
    label[y0:y1, x0:x1] = class_id


def make_scene(rng, size=(256, 512)):
    """Return (HxWx3 uint8 RGB image, HxW uint8 label-id map) of one random street scene."""
    h, w = size
    image = np.zeros((h, w, 3), dtype=np.float64)
    label = np.zeros((h, w), dtype=np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.5))
    # Sky: vertical gradient from deep to pale blue.
    top, bottom = np.array(COLOURS[SKY]), np.array((170, 200, 235))
    t = np.linspace(0, 1, horizon)[:, None, None]
    image[:horizon] = top * (1 - t) + bottom * t
    label[:horizon] = SKY
    _fill(image, label, rng, ROAD, horizon, h, 0, w)
    # Buildings and trees standing on the horizon.
    x = 0
    while x < w:
        width = int(rng.uniform(0.08, 0.25) * w)
        kind = BUILDING if rng.random() < 0.65 else VEGETATION
        height = rng.uniform(0.15, 0.8) * horizon
        _fill(image, label, rng, kind, horizon - height, horizon, x, x + width)
        x += width + int(rng.uniform(0, 0.08) * w)
    # Sidewalk on one side.
    side = int(rng.uniform(0.15, 0.3) * w)
    left = rng.random() < 0.5
    x0, x1 = (0, side) if left else (w - side, w)
    _fill(image, label, rng, SIDEWALK, horizon, h, x0, x1)
    # People on the sidewalk, poles at its edge, cars on the road.
    for _ in range(rng.integers(1, 4)):
        px = rng.uniform(x0, x1 - 0.03 * w)
        py = rng.uniform(horizon, h * 0.8)
        _fill(image, label, rng, PERSON, py - 0.18 * h, py, px, px + 0.03 * w)
    pole_x = x1 - 0.015 * w if left else x0
    _fill(image, label, rng, POLE, horizon - 0.3 * h, h * 0.85, pole_x, pole_x + 0.012 * w)
    for _ in range(rng.integers(1, 4)):
        cw = rng.uniform(0.1, 0.2) * w
        cx = rng.uniform(0, w - cw)
        cy = rng.uniform(horizon + 0.1 * h, h * 0.85)
        _fill(image, label, rng, CAR, cy - 0.4 * cw, cy, cx, cx + cw)
    _fill(image, label, rng, EGO, h - int(0.06 * h), h, 0, w, jitter=5)
    image = image * rng.uniform(0.8, 1.2) + rng.normal(0, 8, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array):
        raise OSError(f'{path}: could not write PNG')


def make_cityscapes_like(root, n_train, n_val, size=(256, 512), seed=0, train_ids=False):
    """
    Write ``n_train`` + ``n_val`` scenes under ``root`` in the Cityscapes layout.

    :param root: dataset root; gets ``leftImg8bit/{train,val}/<city>/`` and ``gtFine/...``.
    :param size: (height, width) of every image.
    :param seed: the scenes are a function of the seed.
    :param train_ids: also write ``*_gtFine_labelTrainIds.png`` (as Cityscapes' own
        ``createTrainIdLabelImgs.py`` does).
    :returns: {'train': [image paths], 'val': [image paths]}.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    written = {}
    for split, count, cities in (('train', n_train, TRAIN_CITIES), ('val', n_val, VAL_CITIES)):
        written[split] = []
        for index in range(count):
            city = cities[index % len(cities)]
            stem = f'{city}_{index:06d}_000019'
            image, label = make_scene(rng, size)
            image_path = root / 'leftImg8bit' / split / city / f'{stem}_leftImg8bit.png'
            label_dir = root / 'gtFine' / split / city
            _write_png(image_path, image)
            _write_png(label_dir / f'{stem}_gtFine_labelIds.png', label)
            if train_ids:
                _write_png(label_dir / f'{stem}_gtFine_labelTrainIds.png',
                           CITYSCAPES_ID_LUT[label])
            written[split].append(image_path)
    return written


def main(argv=None):
    """Write a synthetic Cityscapes-layout dataset."""
    parser = argparse.ArgumentParser(prog='python -m training.synthetic_data',
                                     description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('root', help='output dataset root')
    parser.add_argument('--train', type=int, default=20, help='training images (default 20)')
    parser.add_argument('--val', type=int, default=5, help='validation images (default 5)')
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=512)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train-ids', action='store_true', help='also write labelTrainIds')
    args = parser.parse_args(argv)
    written = make_cityscapes_like(args.root, args.train, args.val, (args.height, args.width),
                                   args.seed, args.train_ids)
    print(f"wrote {len(written['train'])} train and {len(written['val'])} val images under "
          f'{args.root}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
