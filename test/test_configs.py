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
The training configs equal training/configs/README.md's table of PaddleSeg's PP-LiteSeg configs.

The table is copied below as data; every config file is loaded through ``load_config`` (so
``_base_`` inheritance is part of what is checked) and compared value by value. Also: merge
and override rules, and errors that name the file and the key.
"""

from pathlib import Path

import pytest
from training.config import deep_merge, load_config

# The config loader is torch-free: Python 3.10/3.12 too (the model check below needs torch).
pytestmark = pytest.mark.lite

CONFIGS = Path(__file__).resolve().parents[1] / 'training' / 'configs'

# training/configs/README.md: config | backbone | arm_out_chs / head mid | scale min/max/step |
# crop | eval size | iters | batch | lr | wd | warmup | min_kept/GPU | val mIoU (PaddleSeg README)
TABLE = [
    ('T city 0.5', 'STDC1', [32, 64, 128], [32, 64, 64], (0.125, 1.5, 0.125), (1024, 512),
     (1024, 512), 160000, 16, 0.005, 5e-4, 1000, 130000, 73.10),
    ('T city 0.75', 'STDC1', [32, 64, 128], [32, 64, 64], (0.125, 1.5, 0.125), (1024, 512),
     (1536, 768), 160000, 16, 0.005, 5e-4, 1000, 130000, 76.03),
    ('T city 1.0', 'STDC1', [32, 64, 128], [32, 64, 64], (0.5, 2.0, 0.25), (1024, 512),
     (2048, 1024), 160000, 16, 0.005, 5e-4, 1000, 130000, 77.04),
    ('B city 0.5', 'STDC2', [64, 96, 128], [64, 64, 64], (0.125, 1.5, 0.125), (1024, 512),
     (1024, 512), 160000, 16, 0.005, 5e-4, 1000, 130000, 75.25),
    ('B city 0.75', 'STDC2', [64, 96, 128], [64, 64, 64], (0.125, 1.5, 0.125), (1024, 512),
     (1536, 768), 160000, 16, 0.005, 5e-4, 1000, 130000, 78.75),
    ('B city 1.0', 'STDC2', [64, 96, 128], [64, 64, 64], (0.5, 2.0, 0.25), (1024, 512),
     (2048, 1024), 160000, 16, 0.005, 5e-4, 1000, 130000, 79.04),
    ('T camvid', 'STDC1', [32, 64, 128], [32, 64, 64], (0.5, 2.5, 0.25), (960, 720),
     (960, 720), 10000, 24, 0.01, 5e-4, 200, 250000, 73.30),
    ('B camvid', 'STDC2', [64, 96, 128], [64, 64, 64], (0.5, 2.5, 0.25), (960, 720),
     (960, 720), 10000, 24, 0.01, 5e-4, 200, 250000, 75.10),
]
FILES = {
    'T city 0.5': 'pp_liteseg_t_cityscapes_0.5.yaml',
    'T city 0.75': 'pp_liteseg_t_cityscapes_0.75.yaml',
    'T city 1.0': 'pp_liteseg_t_cityscapes_1.0.yaml',
    'B city 0.5': 'pp_liteseg_b_cityscapes_0.5.yaml',
    'B city 0.75': 'pp_liteseg_b_cityscapes_0.75.yaml',
    'B city 1.0': 'pp_liteseg_b_cityscapes_1.0.yaml',
    'T camvid': 'pp_liteseg_t_camvid.yaml',
    'B camvid': 'pp_liteseg_b_camvid.yaml',
}
# Shared by every row (training/configs/README.md, the text under the table).
COMMON = {
    ('optimizer', 'type'): 'sgd', ('optimizer', 'momentum'): 0.9,
    ('schedule', 'type'): 'poly', ('schedule', 'power'): 0.9, ('schedule', 'end_lr'): 0.0,
    ('schedule', 'warmup_start_lr'): 1e-5,
    ('loss', 'type'): 'ohem_ce', ('loss', 'thresh'): 0.7, ('loss', 'coefs'): [1, 1, 1],
    ('loss', 'ignore_index'): 255, ('dataset', 'ignore_index'): 255,
    ('train', 'flip_prob'): 0.5, ('train', 'sync_bn'): True,
    ('train', 'distort'): {'brightness': 0.5, 'contrast': 0.5, 'saturation': 0.5, 'hue': 18,
                           'prob': 0.5},
    ('eval', 'flip'): False, ('eval', 'scales'): [1.0],
}


@pytest.mark.parametrize('row', TABLE, ids=[r[0] for r in TABLE])
def test_config_equals_design_table(row):
    (name, backbone, arm, head, scale, crop, eval_size, iters, batch, lr, wd, warmup,
     min_kept, _) = row
    config = load_config(CONFIGS / FILES[name])
    camvid = 'camvid' in name
    assert config['model']['variant'] == {'STDC1': 't', 'STDC2': 'b'}[backbone]
    assert config['model']['num_classes'] == (11 if camvid else 19)
    assert config['dataset']['type'] == ('camvid' if camvid else 'cityscapes')
    assert (config['train']['scale']['min'], config['train']['scale']['max'],
            config['train']['scale']['step']) == scale
    assert tuple(config['train']['crop_size']) == crop
    assert tuple(config['eval']['size']) == eval_size
    assert config['model']['input_size'] == [eval_size[1], eval_size[0]]
    assert config['train']['iters'] == iters
    assert config['train']['batch_size'] == batch
    assert config['optimizer']['lr'] == lr
    assert config['optimizer']['weight_decay'] == wd
    assert config['schedule']['warmup_iters'] == warmup
    assert config['loss']['min_kept'] == min_kept
    for (section, key), value in COMMON.items():
        assert config[section][key] == value, f'{section}.{key}'
    assert config['model']['pretrained_backbone'] == (
        f'pretrained/stdc{backbone[-1]}_imagenet.pt')


@pytest.mark.parametrize('row', TABLE, ids=[r[0] for r in TABLE])
def test_config_builds_the_table_channels(row):
    build_model = pytest.importorskip('liteseg_ros.model').build_model
    name, _, arm, head = row[:4]
    config = load_config(CONFIGS / FILES[name])
    model = build_model(config['model']['variant'], config['model']['num_classes'])
    assert [f.conv_out.conv.out_channels for f in model.decoder.fusions] == arm
    assert [h.conv.conv.out_channels for h in model.seg_heads] == head


def test_paper_camvid_variant_changes_only_iters_and_weight_decay():
    paper = load_config(CONFIGS / 'pp_liteseg_t_camvid_paper_1k.yaml')
    base = load_config(CONFIGS / 'pp_liteseg_t_camvid.yaml')
    assert paper['train']['iters'] == 1000 and paper['optimizer']['weight_decay'] == 1e-4
    changed = {('train', 'iters'), ('optimizer', 'weight_decay'), ('train', 'eval_every'),
               ('train', 'save_every')}
    for section, values in base.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if (section, key) not in changed:
                assert paper[section][key] == value, f'{section}.{key}'
    assert paper['output_dir'] != base['output_dir']


def test_custom_finetune_example_inherits_and_sets_own_classes():
    config = load_config(CONFIGS / 'custom_finetune_example.yaml')
    assert config['dataset']['type'] == 'folder'
    assert config['model']['num_classes'] == len(config['dataset']['class_names']) == 4
    assert config['loss']['thresh'] == 0.7 and config['optimizer']['momentum'] == 0.9
    assert config['train']['distort']['hue'] == 18  # inherited from _base_cityscapes.yaml


def test_readme_lists_every_config():
    readme = (CONFIGS / 'README.md').read_text()
    for path in CONFIGS.glob('*.yaml'):
        assert path.name in readme, path.name


def _write(path, text):
    path.write_text(text)
    return path


MINIMAL = """
model: {variant: t, num_classes: 3}
dataset: {type: folder, root: data, train_split: train, val_split: val,
          class_names: [a, b, c]}
train: {iters: 10, batch_size: 2, crop_size: [64, 32], scale: {min: 0.5, max: 2.0, step: 0.25}}
optimizer: {type: sgd, lr: 0.01, weight_decay: 5.0e-4}
schedule: {warmup_iters: 0}
loss: {min_kept: 100}
output_dir: out
"""


def test_inheritance_merges_mappings_and_replaces_lists(tmp_path):
    _write(tmp_path / 'base.yaml', MINIMAL)
    (tmp_path / 'sub').mkdir()
    child = _write(tmp_path / 'sub' / 'child.yaml',
                   '_base_: ../base.yaml\ntrain: {crop_size: [32, 16], scale: {max: 1.5}}\n'
                   'dataset: {class_names: [x, y, z]}\n')
    config = load_config(child)
    assert config['train']['crop_size'] == [32, 16]
    assert config['train']['scale'] == {'min': 0.5, 'max': 1.5, 'step': 0.25}
    assert config['train']['iters'] == 10
    assert config['dataset']['class_names'] == ['x', 'y', 'z']
    assert config['eval'] == {'size': None, 'flip': False, 'scales': [1.0]}  # defaults
    assert config['model']['input_size'] == [512, 1024]
    merged = deep_merge({'a': {'b': 1, 'c': [1, 2]}}, {'a': {'c': [3]}})
    assert merged == {'a': {'b': 1, 'c': [3]}}


def test_overrides_are_yaml_values(tmp_path):
    path = _write(tmp_path / 'c.yaml', MINIMAL)
    config = load_config(path, ['optimizer.lr=1e-3', 'train.crop_size=[128, 64]',
                                'train.amp=bf16', 'eval.flip=true', 'eval.size=[64, 32]',
                                'model.pretrained_backbone=null', 'train.extra.deep=5'])
    assert config['optimizer']['lr'] == 1e-3
    assert config['train']['crop_size'] == [128, 64]
    assert config['train']['amp'] == 'bf16' and config['eval']['flip'] is True
    assert config['model']['input_size'] == [32, 64]
    assert config['train']['extra'] == {'deep': 5}
    with pytest.raises(ValueError, match="c.yaml \\(override\\): override 'lr0.1' is not of"):
        load_config(path, ['lr0.1'])
    with pytest.raises(ValueError, match='train.iters is not a mapping'):
        load_config(path, ['train.iters.x=1'])


@pytest.mark.parametrize('command', ['train', 'evaluate'])
def test_train_and_evaluate_take_overrides_as_override_and_set(tmp_path, capsys, command):
    pytest.importorskip('torch')
    import importlib

    main = importlib.import_module(f'training.{command}').main
    path = _write(tmp_path / 'c.yaml', MINIMAL)
    extra = ['--checkpoint', str(tmp_path / 'absent.pt')] if command == 'evaluate' else []
    for first, second in (('--override', '--set'), ('--set', '--override')):
        # One list, in order: the second option mends the first's eval.scales and breaks
        # model.variant, so only the variant is reported.
        argv = ['--config', str(path), *extra, first, 'eval.scales=[]', 'train.iters=5',
                second, 'eval.scales=[1.0]', 'model.variant=x']
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "model.variant: expected 't' or 'b'" in err and 'eval.scales' not in err, err


@pytest.mark.parametrize('override, key, message', [
    ('model.variant=x', 'model.variant', "expected 't' or 'b'"),
    ('model.variant=null', 'model.variant', 'missing required key'),
    ('train.crop_size=[64]', 'train.crop_size', 'two positive integers'),
    ('train.amp=fp8', 'train.amp', 'expected one of'),
    ('dataset.class_names=[a, b]', 'dataset.class_names', 'needs a list of 3 names'),
    ('dataset.type=cityscapes', 'model.num_classes', 'has 19 classes'),
    ('dataset.type=imagenet', 'dataset.type', 'expected one of'),
    ('loss.coefs=[1, 1]', 'loss.coefs', 'one per head'),
    ('eval.scales=[]', 'eval.scales', 'non-empty list'),
    ('train.scale={min: 2, max: 1, step: 0.25}', 'train.scale', 'min <= max'),
])
def test_invalid_values_name_file_and_key(tmp_path, override, key, message):
    path = _write(tmp_path / 'bad.yaml', MINIMAL)
    with pytest.raises(ValueError) as info:
        load_config(path, [override])
    text = str(info.value)
    assert text.startswith(f'{path}: {key}: '), text
    assert message in text


def test_camvid_needs_list_files(tmp_path):
    path = _write(tmp_path / 'c.yaml', MINIMAL.replace('type: folder', 'type: camvid')
                  .replace('class_names: [a, b, c]', 'ignore_index: 255'))
    with pytest.raises(ValueError, match='dataset.train_list: missing required key'):
        load_config(path, ['model.num_classes=11'])


def test_file_errors_are_named(tmp_path):
    child = _write(tmp_path / 'child.yaml', '_base_: nowhere.yaml\n')
    with pytest.raises(ValueError, match='nowhere.yaml: no such config file .the _base_ of'):
        load_config(child)
    _write(tmp_path / 'a.yaml', '_base_: b.yaml\n')
    _write(tmp_path / 'b.yaml', '_base_: a.yaml\n')
    with pytest.raises(ValueError, match='_base_ inheritance loops'):
        load_config(tmp_path / 'a.yaml')
    broken = _write(tmp_path / 'broken.yaml', 'model: [unclosed\n')
    with pytest.raises(ValueError, match='broken.yaml: not valid YAML'):
        load_config(broken)
    listed = _write(tmp_path / 'list.yaml', '- 1\n- 2\n')
    with pytest.raises(ValueError, match='list.yaml: a config must be a YAML mapping'):
        load_config(listed)
    no_model = _write(tmp_path / 'nomodel.yaml', MINIMAL.replace(
        'model: {variant: t, num_classes: 3}', ''))
    with pytest.raises(ValueError, match='nomodel.yaml: model.variant: missing required key'):
        load_config(no_model)
    text = _write(tmp_path / 'text.yaml', MINIMAL.replace('lr: 0.01', 'lr: 1e-5'))
    with pytest.raises(ValueError, match=r'text.yaml: optimizer.lr: .* write 1.0e-5'):
        load_config(text)
