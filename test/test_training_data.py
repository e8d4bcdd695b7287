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
Training data: transforms equal PaddleSeg's, dataset layouts, label mapping, error messages.

The PaddleSeg comparison runs PaddleSeg 2.8's own transforms in the reference venv
(``test/paddle_reference/transforms_reference.py``) on the same image files, records every
random draw PaddleSeg makes, replays those draws into our transforms (``ReplayRNG``, which
also checks that we ask for the same kind of draw with the same arguments, in the same order)
and compares the outputs.
"""

from pathlib import Path
import sys

import cv2
from liteseg_ros.classes import CITYSCAPES_ID_TO_TRAINID
import numpy as np
from PIL import Image
import pytest
import torch
from training import transforms as T
from training.config import load_config
from training.datasets import (build_dataset, CamVidDataset, CityscapesDataset,
                               DatasetError, FolderDataset, read_image, read_label)
from training.synthetic_data import make_cityscapes_like, make_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paddle_reference import env as paddle_env  # noqa: E402,I100
from paddle_reference.transforms_reference import run_reference  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CITY_CONFIG = REPO / 'training' / 'configs' / 'pp_liteseg_t_cityscapes_0.5.yaml'


class ReplayRNG:
    """A ``numpy.random.Generator`` stand-in that returns PaddleSeg's recorded draws."""

    CALLS = {'shuffle': ('random.shuffle', 'np.random.shuffle'),
             'uniform': ('np.random.uniform',), 'integers': ('np.random.randint',),
             'random': ('random.random',)}

    def __init__(self, draws):
        self.draws = list(draws)
        self.position = 0

    def _next(self, method, args):
        assert self.position < len(self.draws), (
            f'we draw {method}{args} after PaddleSeg made its {len(self.draws)} draws')
        draw = self.draws[self.position]
        self.position += 1
        assert draw['call'] in self.CALLS[method], (
            f"draw {self.position}: we call {method}{args}, PaddleSeg called {draw['call']}"
            f"{tuple(draw['args'])}")
        if args:
            assert list(args) == draw['args'], (
                f'draw {self.position}: we call {method}{args}, PaddleSeg called '
                f"{draw['call']}{tuple(draw['args'])}")
        return draw['result']

    def shuffle(self, items):
        result = self._next('shuffle', ())
        assert sorted(map(str, items)) == sorted(map(str, result)), (items, result)
        items[:] = result

    def uniform(self, low, high):
        return self._next('uniform', (low, high))

    def integers(self, low, high):
        return self._next('integers', (low, high))

    def random(self):
        return self._next('random', ())

    def exhausted(self):
        return self.position == len(self.draws)


def _write_rgb(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _write_gray(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


# PaddleSeg transform specs (PaddleSeg class names and keyword arguments).
CITY_05 = [
    {'type': 'ResizeStepScaling', 'min_scale_factor': 0.125, 'max_scale_factor': 1.5,
     'scale_step_size': 0.125},
    {'type': 'RandomPaddingCrop', 'crop_size': [128, 96]},
    {'type': 'RandomHorizontalFlip'},
    {'type': 'RandomDistort', 'brightness_range': 0.5, 'contrast_range': 0.5,
     'saturation_range': 0.5},
    {'type': 'Normalize'}]
CAMVID = [
    {'type': 'ResizeStepScaling', 'min_scale_factor': 0.5, 'max_scale_factor': 2.5,
     'scale_step_size': 0.25},
    {'type': 'RandomPaddingCrop', 'crop_size': [243, 181]}] + CITY_05[2:]
# No interpolation anywhere: every value must be bit-exact.
NO_RESIZE = [
    {'type': 'ResizeStepScaling', 'min_scale_factor': 1.0, 'max_scale_factor': 1.0,
     'scale_step_size': 0.25},
    {'type': 'RandomPaddingCrop', 'crop_size': [300, 200]},
    {'type': 'RandomHorizontalFlip'},
    {'type': 'RandomDistort', 'brightness_range': 0.5, 'contrast_range': 0.5,
     'saturation_range': 0.5, 'hue_prob': 1.0, 'sharpness_prob': 0.5},
    {'type': 'Normalize'}]
# Every op of RandomDistort always on, hue range wide enough to wrap around often.
DISTORT_ALL = [
    {'type': 'RandomDistort', 'brightness_prob': 1.0, 'contrast_prob': 1.0,
     'saturation_prob': 1.0, 'hue_range': 60, 'hue_prob': 1.0, 'sharpness_prob': 1.0},
    {'type': 'Normalize'}]
# Float output of the resize, no uint8 truncation after it.
UNIFORM_SCALE = [
    {'type': 'ResizeStepScaling', 'min_scale_factor': 0.5, 'max_scale_factor': 2.0,
     'scale_step_size': 0},
    {'type': 'RandomPaddingCrop', 'crop_size': [160, 120]},
    {'type': 'RandomHorizontalFlip', 'prob': 0.5},
    {'type': 'Normalize', 'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}]
FULL_CITY = [dict(CITY_05[0]), {'type': 'RandomPaddingCrop', 'crop_size': [1024, 512]}] + \
    CITY_05[2:]

PIPELINES = {  # name: (spec, image, seeds, exact)
    'city05': (CITY_05, 'small', range(25), False),
    'camvid': (CAMVID, 'small', range(15), False),
    'noresize': (NO_RESIZE, 'small', range(25), True),
    'distortall': (DISTORT_ALL, 'noise', range(15), True),
    'uniformscale': (UNIFORM_SCALE, 'small', range(10), False),
    'fullcity': (FULL_CITY, 'full', range(3), False),
}


def _ours(spec):
    ops = [getattr(T, s['type'])(**{k: v for k, v in s.items() if k != 'type'}) for s in spec]
    return T.Compose(ops, train=True)


@pytest.fixture(scope='module')
def reference_images(tmp_path_factory):
    root = tmp_path_factory.mktemp('transform_images')
    rng = np.random.default_rng(7)
    files = {}
    for name, size in (('small', (181, 243)), ('full', (1024, 2048))):
        image, label = make_scene(rng, size)
        # Add smooth shading so bilinear interpolation gives non-integer values everywhere.
        yy, xx = np.mgrid[:size[0], :size[1]]
        shade = 20 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
        image = np.clip(image + shade[..., None], 0, 255).astype(np.uint8)
        files[name] = (root / f'{name}.png', root / f'{name}_label.png')
        _write_rgb(files[name][0], image)
        _write_gray(files[name][1], label)
    noise = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    files['noise'] = (root / 'noise.png', root / 'noise_label.png')
    _write_rgb(files['noise'][0], noise)
    _write_gray(files['noise'][1], rng.integers(0, 19, (97, 131), dtype=np.uint8))
    return files


@pytest.fixture(scope='module')
def paddle_transforms(reference_images, tmp_path_factory):
    with paddle_env.required_in_ci():
        python = paddle_env.ensure_paddle_venv()
    cases = []
    for name, (spec, image, seeds, _) in PIPELINES.items():
        for seed in seeds:
            cases.append({'name': f'{name}_{seed}', 'image': str(reference_images[image][0]),
                          'label': str(reference_images[image][1]), 'mode': 'train',
                          'seed': seed, 'transforms': spec})
    cases.append({'name': 'val', 'image': str(reference_images['full'][0]),
                  'label': str(reference_images['full'][1]), 'mode': 'val', 'seed': 0,
                  'transforms': [{'type': 'Normalize'}]})
    out = tmp_path_factory.mktemp('paddle_transforms')
    return cases, run_reference({'transforms': cases}, out, python)


@pytest.mark.paddle
@pytest.mark.parametrize('pipeline', sorted(PIPELINES))
def test_train_transforms_match_paddleseg(paddle_transforms, pipeline):
    cases, reference = paddle_transforms
    spec, _, _, exact = PIPELINES[pipeline]
    differing = total = worst = 0
    for case in (c for c in cases if c['name'].startswith(pipeline + '_')):
        rng = ReplayRNG(reference['draws'][case['name']])
        image, label = _ours(spec)(read_image(case['image']), read_label(case['label']), rng)
        assert rng.exhausted(), f"{case['name']}: PaddleSeg drew more values than we did"
        ref_image = reference['transforms'][f"img/{case['name']}"]
        ref_label = reference['transforms'][f"label/{case['name']}"]
        assert image.dtype == np.float32 and image.shape == ref_image.shape, case['name']
        np.testing.assert_array_equal(label, ref_label, err_msg=case['name'])
        diff = np.abs(image.astype(np.float64) - ref_image)
        differing += int((diff > 0).sum())
        total += diff.size
        worst = max(worst, float(diff.max()))
        if exact:
            np.testing.assert_array_equal(image, ref_image, err_msg=case['name'])
    print(f'\n[paddle transforms] {pipeline}: {differing} of {total} values differ, max '
          f'|diff| {worst:.3g} (normalised units; PaddleSeg '
          f"{reference['info']['paddleseg']}, OpenCV {reference['info']['opencv']} vs "
          f'{cv2.__version__})')
    # OpenCV versions may differ by 1 float32 ulp in INTER_LINEAR on float images; after the
    # uint8 truncation of RandomDistort that is one grey level on a rare pixel.
    assert differing <= 1e-3 * total
    # One grey level (1/127.5 normalised) per truncating RandomDistort step, four steps.
    assert worst <= 4 / 127.5


@pytest.mark.paddle
def test_eval_transforms_match_paddleseg(paddle_transforms):
    cases, reference = paddle_transforms
    case = cases[-1]
    image_rgb, label_raw = read_image(case['image']), read_label(case['label'])
    image, label = T.build_eval_transforms(load_config(CITY_CONFIG))(image_rgb, label_raw)
    np.testing.assert_array_equal(image, reference['transforms']['img/val'])
    np.testing.assert_array_equal(label, reference['transforms']['label/val'])


def test_step_scaling_draws_every_factor_and_rounds_like_paddleseg():
    op = T.ResizeStepScaling(0.125, 1.5, 0.125)
    rng = np.random.default_rng(0)
    factors = {op.factor(rng) for _ in range(500)}
    assert factors == set(np.linspace(0.125, 1.5, 12).tolist())
    image = np.zeros((1024, 2048, 3), np.float32)
    label = np.zeros((1024, 2048), np.uint8)
    for factor in (0.125, 0.375, 1.375):
        op = T.ResizeStepScaling(factor, factor, 0.125)
        out, out_label = op(image, label, rng)
        assert out.shape[:2] == out_label.shape == (round(1024 * factor), round(2048 * factor))
    # Python's round halves to even, as PaddleSeg: 0.5 * 5 = 2.5 -> 2.
    out, _ = T.ResizeStepScaling(0.5, 0.5, 0)(np.zeros((5, 5, 3), np.float32), None, rng)
    assert out.shape[:2] == (2, 2)


def test_padding_crop_pads_bottom_right_with_paddleseg_values():
    image = np.full((4, 6, 3), 10.0, np.float32)
    label = np.full((4, 6), 3, np.uint8)
    out, out_label = T.RandomPaddingCrop([8, 5])(image, label, np.random.default_rng(0))
    assert out.shape == (5, 8, 3) and out_label.shape == (5, 8)
    np.testing.assert_array_equal(out[:4, :6], 10.0)
    np.testing.assert_array_equal(out[4:], 127.5)
    np.testing.assert_array_equal(out[:, 6:], 127.5)
    np.testing.assert_array_equal(out_label[4:], 255)
    np.testing.assert_array_equal(out_label[:, 6:], 255)

    class NoDraws:

        def __getattr__(self, name):
            raise AssertionError(f'unexpected draw {name}')

    same = np.zeros((5, 8, 3), np.float32)
    out, _ = T.RandomPaddingCrop([8, 5])(same, None, NoDraws())
    assert out is same


def test_flip_moves_image_and_label_together():
    image = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    label = np.arange(6, dtype=np.uint8).reshape(2, 3)

    class Always:

        def random(self):
            return 0.0

    out, out_label = T.RandomHorizontalFlip(0.5)(image, label, Always())
    np.testing.assert_array_equal(out, image[:, ::-1])
    np.testing.assert_array_equal(out_label, label[:, ::-1])


def test_hue_shift_wraps_like_numpy_uint8_cast():
    hsv = np.arange(256, dtype=np.uint8)
    for delta in (-17.6, -0.4, 0.4, 17.9):
        expected = [int(np.trunc(h + delta)) % 256 for h in range(256)]
        shifted = np.mod(np.trunc(hsv.astype(np.float64) + delta).astype(np.int64), 256)
        assert shifted.tolist() == expected


def test_normalize_and_compose_layout():
    image = np.array([[[0, 255, 51]]], np.uint8)
    out, label = T.Compose([T.Normalize()], train=False)(image, np.zeros((1, 1), np.uint8))
    assert out.shape == (3, 1, 1) and out.dtype == np.float32
    # float32 (x / 255 - 0.5) / 0.5 is within a few 1e-8 of the decimal values.
    np.testing.assert_allclose(out[:, 0, 0], [-1.0, 1.0, -0.6], atol=1e-6)
    assert label.shape == (1, 1)


def test_build_train_transforms_follow_the_config():
    config = load_config(CITY_CONFIG)
    compose = T.build_train_transforms(config)
    kinds = [type(t).__name__ for t in compose.transforms]
    assert kinds == ['ResizeStepScaling', 'RandomPaddingCrop', 'RandomHorizontalFlip',
                     'RandomDistort', 'Normalize']
    scaling, crop, flip, distort, _ = compose.transforms
    assert (scaling.min_scale_factor, scaling.max_scale_factor,
            scaling.scale_step_size) == (0.125, 1.5, 0.125)
    assert (crop.crop_w, crop.crop_h) == (1024, 512)
    assert crop.im_padding_value == 127.5 and crop.label_padding_value == 255
    assert flip.prob == 0.5
    assert distort.ranges['hue'] == (-18, 18) and distort.ranges['contrast'] == (0.5, 1.5)
    assert distort.probs == {'brightness': 0.5, 'contrast': 0.5, 'saturation': 0.5,
                             'sharpness': 0, 'hue': 0.5}
    config = load_config(CITY_CONFIG, ['train.distort=null'])
    assert 'RandomDistort' not in [type(t).__name__ for t in
                                   T.build_train_transforms(config).transforms]


# --- datasets -----------------------------------------------------------------------------

def _cityscapes_sample(root, split, city, index, image, label_ids=None, train_ids=None):
    stem = f'{city}_{index:06d}_000019'
    _write_rgb(root / 'leftImg8bit' / split / city / f'{stem}_leftImg8bit.png', image)
    label_dir = root / 'gtFine' / split / city
    if label_ids is not None:
        _write_gray(label_dir / f'{stem}_gtFine_labelIds.png', label_ids)
    if train_ids is not None:
        _write_gray(label_dir / f'{stem}_gtFine_labelTrainIds.png', train_ids)
    return stem


def _eval_transforms():
    return T.build_eval_transforms()


def test_cityscapes_label_ids_map_to_official_train_ids(tmp_path):
    labels = pytest.importorskip('cityscapesscripts.helpers.labels')
    official = {label.id: (255 if label.trainId in (-1, 255) else label.trainId)
                for label in labels.labels if label.id >= 0}
    assert CITYSCAPES_ID_TO_TRAINID == official
    ids = np.arange(0, 40, dtype=np.uint8).reshape(4, 10)
    ids[0, 0] = 255  # how a -1 (license plate) lands in an 8-bit PNG
    _cityscapes_sample(tmp_path, 'val', 'ulm', 0, np.zeros((4, 10, 3), np.uint8), ids)
    dataset = CityscapesDataset(tmp_path, 'val', _eval_transforms())
    _, label = dataset[0]
    expected = np.array([official.get(int(v), 255) for v in ids.ravel()]).reshape(ids.shape)
    np.testing.assert_array_equal(label.numpy(), expected)
    assert label.dtype == torch.int64
    assert dataset.num_classes == 19 and dataset.class_names[0] == 'road'


def test_cityscapes_prefers_label_train_ids(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    ids = np.full((4, 6), 7, np.uint8)  # road -> 0 if this file were used
    train_ids = np.full((4, 6), 13, np.uint8)
    _cityscapes_sample(tmp_path, 'train', 'ulm', 0, image, ids, train_ids)
    _cityscapes_sample(tmp_path, 'train', 'ulm', 1, image, ids)
    dataset = CityscapesDataset(tmp_path, 'train', _eval_transforms())
    assert str(dataset.label_path(0)).endswith('_gtFine_labelTrainIds.png')
    assert str(dataset.label_path(1)).endswith('_gtFine_labelIds.png')
    assert int(dataset[0][1].unique()) == 13
    assert int(dataset[1][1].unique()) == 0
    assert dataset.sample_id(1) == 'ulm_000001_000019'


def test_cityscapes_missing_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match='leftImg8bit'):
        CityscapesDataset(tmp_path, 'val', _eval_transforms())
    image = np.zeros((4, 6, 3), np.uint8)
    for i in range(7):
        _cityscapes_sample(tmp_path, 'val', 'ulm', i, image, None)
    with pytest.raises(DatasetError) as info:
        CityscapesDataset(tmp_path, 'val', _eval_transforms())
    message = str(info.value)
    assert '7 listed file(s) missing' in message
    assert 'ulm_000000_000019_gtFine_labelIds.png' in message and '... and 2 more' in message
    # The test split may have no labels.
    dataset = CityscapesDataset(tmp_path, 'val', _eval_transforms(), require_labels=False)
    assert not dataset.has_labels
    assert (dataset[0][1] == 255).all()


def test_unreadable_and_inconsistent_files_are_named(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    stem = _cityscapes_sample(tmp_path, 'val', 'ulm', 0, image, np.full((4, 6), 7, np.uint8))
    _cityscapes_sample(tmp_path, 'val', 'ulm', 1, image, np.full((5, 6), 7, np.uint8))
    _cityscapes_sample(tmp_path, 'val', 'ulm', 2, image, np.full((4, 6), 7, np.uint8))
    dataset = CityscapesDataset(tmp_path, 'val', _eval_transforms())
    (tmp_path / 'leftImg8bit' / 'val' / 'ulm' / f'{stem}_leftImg8bit.png').write_bytes(b'junk')
    with pytest.raises(DatasetError, match=f'{stem}_leftImg8bit.png: cannot read image'):
        dataset[0]
    with pytest.raises(DatasetError, match='ulm_000001_000019_gtFine_labelIds.png: label size '
                                           '6x5 differs'):
        dataset[1]
    label_file = dataset.label_path(2)
    label_file.write_bytes(b'not a png')
    with pytest.raises(DatasetError, match='cannot read label'):
        dataset[2]


def test_label_values_outside_the_classes_are_named(tmp_path):
    images, labels = tmp_path / 'images', tmp_path / 'labels'
    _write_rgb(images / 'a.png', np.zeros((3, 3, 3), np.uint8))
    _write_gray(labels / 'a.png', np.array([[0, 1, 2], [3, 255, 0], [0, 0, 11]], np.uint8))
    dataset = FolderDataset(images, labels, ['x', 'y', 'z'], _eval_transforms())
    with pytest.raises(DatasetError, match=r'a.png: label values \[3, 11\] are neither'):
        dataset[0]


def test_camvid_list_layout(tmp_path):
    palette_label = Image.fromarray(np.array([[0, 10, 255], [3, 4, 5]], np.uint8), mode='P')
    palette_label.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    (tmp_path / 'images').mkdir()
    (tmp_path / 'labels').mkdir()
    for name in ('0001TP_006690', '0001TP_006720'):
        _write_rgb(tmp_path / 'images' / f'{name}.png', np.full((2, 3, 3), 9, np.uint8))
        palette_label.save(tmp_path / 'labels' / f'{name}_L.png')
    (tmp_path / 'train.txt').write_text('images/0001TP_006690.png labels/0001TP_006690_L.png\n'
                                        '\n'
                                        'images/0001TP_006720.png labels/0001TP_006720_L.png\n')
    dataset = CamVidDataset(tmp_path, 'train.txt', _eval_transforms())
    assert len(dataset) == 2 and dataset.num_classes == 11
    assert dataset.class_names[0] == 'Sky' and dataset.class_names[-1] == 'Bicyclist'
    np.testing.assert_array_equal(dataset[1][1].numpy(), [[0, 10, 255], [3, 4, 5]])
    (tmp_path / 'val.txt').write_text('images/0001TP_006690.png labels/missing_L.png\n')
    with pytest.raises(DatasetError, match='missing_L.png'):
        CamVidDataset(tmp_path, 'val.txt', _eval_transforms())
    (tmp_path / 'bad.txt').write_text('images/0001TP_006690.png labels/a.png\nimages/x.png\n')
    with pytest.raises(DatasetError, match=r'bad.txt:2: expected'):
        CamVidDataset(tmp_path, 'bad.txt', _eval_transforms())
    with pytest.raises(DatasetError, match='nolist.txt: no such CamVid list file'):
        CamVidDataset(tmp_path, 'nolist.txt', _eval_transforms())


def test_folder_dataset_matches_labels_by_stem(tmp_path):
    images, labels = tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train'
    _write_rgb(images / 'a.jpg', np.full((4, 4, 3), 200, np.uint8))
    _write_rgb(images / 'sub' / 'b.png', np.full((4, 4, 3), 100, np.uint8))
    _write_gray(labels / 'a.png', np.full((4, 4), 1, np.uint8))
    _write_gray(labels / 'sub' / 'b.png', np.full((4, 4), 2, np.uint8))
    dataset = FolderDataset(images, labels, ['bg', 'one', 'two'], _eval_transforms())
    assert [Path(p).name for p, _ in dataset.samples] == ['a.jpg', 'b.png']
    assert int(dataset[0][1].unique()) == 1 and int(dataset[1][1].unique()) == 2
    assert dataset[1][0].shape == (3, 4, 4)
    _write_rgb(images / 'c.png', np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match='c.png'):
        FolderDataset(images, labels, ['bg', 'one', 'two'], _eval_transforms())
    _write_gray(labels / 'c.png', np.zeros((4, 4), np.uint8))
    _write_rgb(images / 'c.jpg', np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match='same name'):
        FolderDataset(images, labels, ['bg', 'one', 'two'], _eval_transforms())


def test_build_dataset_from_configs(tmp_path):
    make_cityscapes_like(tmp_path / 'city', n_train=3, n_val=2, size=(64, 128))
    config = load_config(CITY_CONFIG, [f'dataset.root={tmp_path / "city"}',
                                       'train.crop_size=[96, 48]'])
    train = build_dataset(config, 'train', T.build_train_transforms(config))
    val = build_dataset(config, 'val', T.build_eval_transforms(config))
    assert (len(train), len(val)) == (3, 2)
    image, label = train[0]
    assert image.shape == (3, 48, 96) and label.shape == (48, 96)
    image, label = val[0]
    assert image.shape == (3, 64, 128) and label.shape == (64, 128)
    folder = load_config(REPO / 'training' / 'configs' / 'custom_finetune_example.yaml',
                         [f'dataset.root={tmp_path / "mine"}'])
    _write_rgb(tmp_path / 'mine' / 'images' / 'val' / 'x.png', np.zeros((8, 8, 3), np.uint8))
    _write_gray(tmp_path / 'mine' / 'labels' / 'val' / 'x.png', np.full((8, 8), 3, np.uint8))
    dataset = build_dataset(folder, 'val', T.build_eval_transforms(folder))
    assert dataset.class_names == ['background', 'drivable', 'obstacle', 'person']
    assert dataset.palette[1] == [128, 64, 128]
    with pytest.raises(DatasetError, match='dataset.test_split is not set'):
        build_dataset(folder, 'test', T.build_eval_transforms(folder))


def test_augmentation_is_reproducible_per_seed_epoch_and_index(tmp_path):
    make_cityscapes_like(tmp_path, n_train=2, n_val=0, size=(64, 128))
    config = load_config(CITY_CONFIG, [f'dataset.root={tmp_path}', 'train.crop_size=[64, 32]'])
    first = build_dataset(config, 'train', T.build_train_transforms(config))
    second = build_dataset(config, 'train', T.build_train_transforms(config))
    draws = [first[0][0] for _ in range(2)] + [second[0][0]]
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
    epochs = [first[(0, e)][0] for e in range(4)]
    assert not all(torch.equal(epochs[0], e) for e in epochs[1:])
    second.set_epoch(3)
    assert torch.equal(second[0][0], epochs[3])


def test_synthetic_cityscapes_layout(tmp_path):
    written = make_cityscapes_like(tmp_path, n_train=4, n_val=2, size=(64, 128), seed=3,
                                   train_ids=True)
    assert len(written['train']) == 4 and len(written['val']) == 2
    names = sorted(p.name for p in (tmp_path / 'gtFine' / 'train').rglob('*.png'))
    assert names[0] == 'aachen_000000_000019_gtFine_labelIds.png'
    assert names[1] == 'aachen_000000_000019_gtFine_labelTrainIds.png'
    dataset = CityscapesDataset(tmp_path, 'train', _eval_transforms())
    label = dataset[0][1].numpy()
    assert {0, 10, 255} <= set(np.unique(label).tolist())  # road, sky, ego vehicle (ignored)
    assert (label[-1] == 255).all()
    again = make_cityscapes_like(tmp_path / 'again', 4, 2, (64, 128), seed=3)
    np.testing.assert_array_equal(read_image(written['val'][1]), read_image(again['val'][1]))
