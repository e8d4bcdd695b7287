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
Where the files of a segmentation dataset are: Cityscapes, CamVid (PaddleSeg lists), folders.

No torch: training's datasets, ``liteseg dataset-to-bag`` and ``liteseg node-demo --images``
list their (image, label) pairs and read their images and label PNGs here.
"""

from pathlib import Path

from liteseg_ros.classes import CITYSCAPES_ID_LUT

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file or folder."""


def cityscapes_files(root, split, require_labels=True):
    """
    Return sorted [(image, label)] of a Cityscapes split (leftImg8bit + gtFine).

    The label is ``*_gtFine_labelTrainIds.png`` when present, else ``*_gtFine_labelIds.png``
    (see ``cityscapes_label_lut``); with ``require_labels=False`` an image without either gets
    None.
    """
    root = Path(root)
    image_dir = root / 'leftImg8bit' / split
    images = sorted(image_dir.glob('*/*_leftImg8bit.png'))
    if not images:
        raise DatasetError(f'{image_dir}: no */*_leftImg8bit.png images (Cityscapes layout '
                           f'expected under dataset root {root})')
    files = []
    for image in images:
        stem = image.name[:-len('_leftImg8bit.png')]
        label_dir = root / 'gtFine' / split / image.parent.name
        train_ids = label_dir / f'{stem}_gtFine_labelTrainIds.png'
        label_ids = label_dir / f'{stem}_gtFine_labelIds.png'
        if train_ids.is_file():
            files.append((image, train_ids))
        elif label_ids.is_file() or require_labels:
            files.append((image, label_ids))
        else:
            files.append((image, None))
    return files


def cityscapes_label_lut(label_path):
    """Return the label-id -> train-id table for a labelIds PNG, None for a labelTrainIds one."""
    return None if str(label_path).endswith('_labelTrainIds.png') else CITYSCAPES_ID_LUT


def camvid_files(root, list_file, require_labels=True):
    """Return [(image, label)] of a PaddleSeg list file (``image_rel label_rel`` per line)."""
    root = Path(root)
    list_path = Path(list_file)
    if not list_path.is_absolute():
        list_path = root / list_path
    if not list_path.is_file():
        raise DatasetError(f'{list_path}: no such CamVid list file (lines "image_rel '
                           f'label_rel" relative to {root})')
    files = []
    for number, line in enumerate(list_path.read_text().splitlines(), 1):
        items = line.split()
        if not items:
            continue
        if len(items) > 2 or (len(items) == 1 and require_labels):
            raise DatasetError(f'{list_path}:{number}: expected "image_path label_path", '
                               f'found {line!r}')
        files.append((root / items[0], root / items[1] if len(items) == 2 else None))
    if not files:
        raise DatasetError(f'{list_path}: the list file is empty')
    return files


def image_files(folder, suffixes=IMAGE_SUFFIXES, purpose=''):
    """
    Return the sorted files under ``folder`` (sub-folders too) whose suffix is in ``suffixes``.

    :raises DatasetError: the folder does not exist or has no such file; ``purpose`` (text)
        ends the message.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f'{folder}: image folder does not exist{purpose}')
    files = sorted(p for p in folder.rglob('*') if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        raise DatasetError(f'{folder}: no images ({", ".join(suffixes)}){purpose}')
    return files


def folder_files(images_dir, labels_dir=None, require_labels=True):
    """
    Return [(image, label)]: ``images_dir/a/b.jpg`` pairs with ``labels_dir/a/b.png``.

    Sub-folders are searched; labels are matched by name without extension, so two images that
    differ only in extension are refused. Without ``labels_dir`` every label is None.
    """
    images_dir = Path(images_dir)
    images = image_files(images_dir)
    seen = {}
    files = []
    for image in images:
        key = image.relative_to(images_dir).with_suffix('')
        if key in seen:
            raise DatasetError(f'{image} and {seen[key]} have the same name; labels are '
                               'matched by file name without extension')
        seen[key] = image
        label = None
        if labels_dir is not None:
            label = Path(labels_dir) / key.with_suffix('.png')
            if not label.is_file() and not require_labels:
                label = None
        files.append((image, label))
    return files


def read_image(path):
    """Return the HxWx3 uint8 RGB image at ``path`` as PaddleSeg reads it (OpenCV, BGR -> RGB)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = 'no such file' if not Path(path).is_file() else 'not a readable image'
        raise DatasetError(f'{path}: cannot read image ({reason})')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path):
    """
    Return the HxW label array at ``path`` as PIL decodes it; raise naming the file.

    PIL (not OpenCV) so that palette PNGs give their indices, not colours.
    """
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            label = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DatasetError(f'{path}: cannot read label ({exc})') from exc
    if label.ndim != 2:
        raise DatasetError(f'{path}: a label must be a single-channel image of class ids, '
                           f'found shape {label.shape} (a colour-coded label must be converted '
                           'to ids first)')
    return label
