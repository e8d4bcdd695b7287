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
Segmentation datasets: Cityscapes, CamVid (PaddleSeg list files) and a plain image folder.

Every dataset is a list of (image, label) file pairs checked for existence when it is built
(an error lists the first missing files). An item is ``(image, label)``: the image a float32
CHW tensor from the dataset's ``transforms`` (``training.transforms.Compose``), the label an
int64 HxW tensor with class ids and ``ignore_index`` (255). With training transforms the label
is augmented with the image; with evaluation transforms it is the original-size label.

Images are read as PaddleSeg reads them (``cv2.imread`` colour, BGR -> RGB), labels with PIL
(``np.asarray(Image.open(path))``, so palette PNGs give their indices). A file that cannot be
read, a label whose size differs from its image, or a label value that is neither a class id
nor ``ignore_index`` raises an error naming the file.

Augmentation is reproducible: item ``i`` of epoch ``e`` is augmented with
``numpy.random.default_rng([seed, e, i])``, whatever the worker or process that loads it.
Call ``set_epoch(e)`` before each epoch (with ``persistent_workers=True`` the workers keep the
epoch they were started with: index with ``(i, e)`` tuples instead, which ``__getitem__`` also
accepts).
"""

from pathlib import Path

from liteseg_ros.classes import (CAMVID_CLASSES, CAMVID_PALETTE, CITYSCAPES_CLASSES,
                                 CITYSCAPES_PALETTE, generic_palette)
from liteseg_ros.dataset_files import (camvid_files, cityscapes_files, cityscapes_label_lut,
                                       DatasetError, folder_files, read_image, read_label)
import numpy as np
import torch

MAX_LISTED = 5


def _check_exist(paths, what):
    missing = [str(p) for p in paths if p is not None and not Path(p).is_file()]
    if missing:
        shown = '\n  '.join(missing[:MAX_LISTED])
        more = f'\n  ... and {len(missing) - MAX_LISTED} more' if len(missing) > MAX_LISTED else ''
        raise DatasetError(f'{what}: {len(missing)} listed file(s) missing:\n  {shown}{more}')


class SegmentationDataset(torch.utils.data.Dataset):
    """
    Base class: ``samples`` is a list of (image path, label path or None).

    Subclasses set ``class_names``, ``palette`` and optionally ``label_lut`` (a 256-entry
    uint8 table applied to raw label values, e.g. Cityscapes label ids -> train ids).
    """

    def __init__(self, samples, transforms, class_names, palette=None, ignore_index=255,
                 seed=0, name='dataset'):
        """Check that every listed file exists; raise DatasetError listing missing ones."""
        self.samples = list(samples)
        self.transforms = transforms
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.palette = ([list(map(int, c)) for c in palette] if palette is not None
                        else [list(c) for c in generic_palette(self.num_classes)])
        self.ignore_index = int(ignore_index)
        if not 0 <= self.ignore_index <= 255 or self.num_classes > 255:
            raise DatasetError(f'{name}: labels are 8-bit: need ignore_index in 0..255 and at '
                               f'most 255 classes, found {self.ignore_index} and '
                               f'{self.num_classes}')
        self.seed = int(seed)
        self.epoch = 0
        self.name = name
        if not self.samples:
            raise DatasetError(f'{name}: no samples found')
        _check_exist([p for pair in self.samples for p in pair], name)
        self.has_labels = all(label is not None for _, label in self.samples)

    def set_epoch(self, epoch):
        """Select the augmentation draws of ``epoch`` (see the module docstring)."""
        self.epoch = int(epoch)

    def __len__(self):
        """Return the number of samples."""
        return len(self.samples)

    def image_path(self, index):
        """Return the image file of sample ``index``."""
        return self.samples[index][0]

    def label_path(self, index):
        """Return the label file of sample ``index`` (None for an unlabelled sample)."""
        return self.samples[index][1]

    def label_lut(self, label_path):
        """Return the table mapping raw values of ``label_path`` to class ids, or None."""
        return None

    def load(self, index):
        """Return the raw (HxWx3 uint8 RGB image, HxW uint8 label or None) of ``index``."""
        image_path, label_path = self.samples[index]
        image = read_image(image_path)
        if label_path is None:
            return image, None
        label = read_label(label_path)
        if label.shape != image.shape[:2]:
            raise DatasetError(f'{label_path}: label size {label.shape[1]}x{label.shape[0]} '
                               f'differs from its image {image_path} '
                               f'({image.shape[1]}x{image.shape[0]})')
        lut = self.label_lut(label_path)
        if lut is not None:
            if label.dtype != np.uint8:
                raise DatasetError(f'{label_path}: expected an 8-bit label, found {label.dtype}')
            label = lut[label]
        bad = (label >= self.num_classes) & (label != self.ignore_index)
        if bad.any():
            values = np.unique(label[bad])[:10].tolist()
            raise DatasetError(f'{label_path}: label values {values} are neither class ids '
                               f'0..{self.num_classes - 1} nor ignore_index '
                               f'{self.ignore_index}')
        return image, label.astype(np.uint8)

    def rng(self, index, epoch=None):
        """Return the augmentation generator of ``index`` in ``epoch`` (default: current)."""
        epoch = self.epoch if epoch is None else epoch
        return np.random.default_rng([self.seed, int(epoch), int(index)])

    def __getitem__(self, index):
        """Return (float32 CHW image tensor, int64 HxW label tensor) of ``index``."""
        epoch = None
        if isinstance(index, tuple):
            index, epoch = index
        image, label = self.load(index)
        image, label = self.transforms(image, label, self.rng(index, epoch))
        if label is None:
            label = np.full(image.shape[1:], self.ignore_index, dtype=np.uint8)
        return (torch.from_numpy(np.ascontiguousarray(image)),
                torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)))


class CityscapesDataset(SegmentationDataset):
    """
    Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and ``gtFine/<split>/<city>/``.

    Each image's label is ``*_gtFine_labelTrainIds.png`` when present (used as is), else
    ``*_gtFine_labelIds.png`` mapped to the 19 train ids with the official table above.
    ``require_labels=False`` (test split) allows images without labels.
    """

    def __init__(self, root, split, transforms, require_labels=True, seed=0):
        """Find the images of ``split`` and their labels."""
        self.root = Path(root)
        self.split = split
        samples = cityscapes_files(self.root, split, require_labels)
        super().__init__(samples, transforms, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE,
                         seed=seed, name=f'Cityscapes {split} ({self.root})')

    def label_lut(self, label_path):
        """Map label ids to train ids unless the file already holds train ids."""
        return cityscapes_label_lut(label_path)

    def sample_id(self, index):
        """Return ``<city>_<seq>_<frame>`` of sample ``index``."""
        return Path(self.samples[index][0]).name[:-len('_leftImg8bit.png')]


class CamVidDataset(SegmentationDataset):
    """
    CamVid in PaddleSeg's layout: a list file of ``image_rel label_rel`` lines under ``root``.

    Labels hold the 11 class ids and 255 (ignore). Relative list-file paths are resolved
    against ``root``. ``require_labels=False`` allows lines with only an image.
    """

    def __init__(self, root, list_file, transforms, require_labels=True, seed=0):
        """Read the list file; raise naming it and the line for malformed lines."""
        self.root = Path(root)
        samples = camvid_files(self.root, list_file, require_labels)
        list_path = Path(list_file) if Path(list_file).is_absolute() else self.root / list_file
        self.list_path = list_path
        super().__init__(samples, transforms, CAMVID_CLASSES, CAMVID_PALETTE, seed=seed,
                         name=f'CamVid {list_path}')


class FolderDataset(SegmentationDataset):
    """
    A folder of images and a folder of label PNGs (class ids, 255 = ignore) matched by stem.

    ``images_dir/a/b.jpg`` pairs with ``labels_dir/a/b.png``; sub-folders are searched.
    """

    def __init__(self, images_dir, labels_dir, class_names, transforms, palette=None,
                 ignore_index=255, require_labels=True, seed=0):
        """Pair every image with its label; raise listing images without one."""
        samples = folder_files(images_dir, labels_dir, require_labels)
        super().__init__(samples, transforms, class_names, palette, ignore_index, seed=seed,
                         name=f'image folder {images_dir} (labels {labels_dir})')


def build_dataset(config, split, transforms, require_labels=True):
    """
    Build the dataset of ``config`` for ``split`` ('train', 'val' or 'test').

    :param config: a config from ``training.config.load_config``.
    :param split: which split; its folder or list file comes from ``dataset.<split>_split``
        (cityscapes, folder) or ``dataset.<split>_list`` (camvid).
    :param transforms: a ``training.transforms.Compose``.
    :param require_labels: False accepts images without labels (their label is all ignore).
    """
    data = config['dataset']
    seed = config.get('train', {}).get('seed', 0)
    kind = data['type']
    key = f'{split}_list' if kind == 'camvid' else f'{split}_split'
    if not data.get(key):
        raise DatasetError(f'dataset.{key} is not set: no {split} split configured')
    if kind == 'cityscapes':
        return CityscapesDataset(data['root'], data[key], transforms, require_labels, seed)
    if kind == 'camvid':
        return CamVidDataset(data['root'], data[key], transforms, require_labels, seed)
    if kind == 'folder':
        root = Path(data['root'])
        return FolderDataset(root / data.get('images_dir', 'images') / data[key],
                             root / data.get('labels_dir', 'labels') / data[key],
                             data['class_names'], transforms, data.get('palette'),
                             data.get('ignore_index', 255), require_labels, seed)
    raise DatasetError(f'unknown dataset.type {kind!r}')
