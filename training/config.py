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
Training configs: YAML files with inheritance (``_base_``), command-line overrides and checks.

A config is one YAML mapping. ``_base_: other.yaml`` (a path relative to the file) names a
config it extends: the two are deep-merged, the child wins, and lists are replaced, not merged.
``load_config(path, overrides)`` applies ``'a.b.c=value'`` overrides (values parsed as YAML),
fills the optional keys with the defaults below and validates; any problem raises
``ValueError`` naming the file and the key. ``DEFAULTS`` here is the only home of training
defaults: ``training.train`` reads the resolved config (``resolve_config``) without fallbacks.

Schema (``*`` = required; PaddleSeg's name in brackets where it differs)::

    model:
      variant*: t | b                      # PP-LiteSeg-T (STDC1) or -B (STDC2)
      num_classes*: int
      pretrained_backbone: path | null     # converted ImageNet STDC weights (convert_paddle
                                           #   --backbone-only); null trains from scratch
      init: paddleseg | torch              # initial weights: PaddleSeg's (backbone convs
                                           #   N(0, 0.001), the rest Kaiming normal, zero
                                           #   biases) or PyTorch's layer defaults
      input_size: [H, W]                   # export / inference size stored in checkpoints
                                           #   (default: eval.size, else [512, 1024])
    dataset:
      type*: cityscapes | camvid | folder
      root*: path                          # '~' and $VARS are expanded
      train_split*, val_split*: name       # cityscapes: leftImg8bit/<split>; folder:
      test_split: name                     #   <root>/<images_dir>/<split>; camvid: a label
      train_list, val_list, test_list      # camvid only: PaddleSeg list files, relative to root
      images_dir: images, labels_dir: labels   # folder only
      class_names: [...]                   # folder only (cityscapes/camvid: liteseg_ros.model)
      palette: [[r, g, b], ...]            # optional
      ignore_index: 255
    train:
      iters*: int
      batch_size*: int                     # GLOBAL over all processes (PaddleSeg: 4 GPUs x 4)
      num_workers: 4                       # data loader workers per process
      crop_size*: [W, H]                   # RandomPaddingCrop, PaddleSeg order
      scale*: {min, max, step}             # ResizeStepScaling
      flip_prob: 0.5                       # RandomHorizontalFlip
      distort: {brightness: 0.5, contrast: 0.5, saturation: 0.5, hue: 18, prob: 0.5}
                                           # RandomDistort (null: off)
      seed: 0
      amp: null | bf16 | fp16
      channels_last: false
      log_every: 10, eval_every: 1000, save_every: 1000
      sync_bn: true                        # BatchNorm -> SyncBatchNorm under DDP
    optimizer: {type*: sgd, lr*, momentum: 0.9, weight_decay*}
    schedule: {type: poly, power: 0.9, end_lr: 0, warmup_iters*, warmup_start_lr: 1.0e-5}
    loss: {type: ohem_ce, thresh: 0.7, min_kept*, coefs: [1, 1, 1], ignore_index: 255}
                                           # min_kept is PER PROCESS (per GPU), as PaddleSeg
    eval: {size: [W, H] | null, flip: false, scales: [1.0]}
                                           # size: the normalised full image is resized to it
                                           #   (PaddleSeg test_config scales, e.g. 1024x512 is
                                           #   Cityscapes at 0.5); scales multiply it
    output_dir*: path
"""

import copy
import os
from pathlib import Path

from liteseg_ros.classes import DATASETS
import yaml

DATASET_TYPES = ('cityscapes', 'camvid', 'folder')
# train.amp -> the torch dtype (by name: this module does not import torch) of autocast
AMP_MODES = {None: None, 'bf16': 'bfloat16', 'fp16': 'float16'}
NUM_HEADS = 3

DEFAULTS = {
    'model': {'pretrained_backbone': None, 'input_size': None, 'init': 'paddleseg'},
    'dataset': {'test_split': None, 'ignore_index': 255, 'palette': None, 'class_names': None,
                'images_dir': 'images', 'labels_dir': 'labels'},
    'train': {'num_workers': 4, 'flip_prob': 0.5,
              'distort': {'brightness': 0.5, 'contrast': 0.5, 'saturation': 0.5, 'hue': 18,
                          'prob': 0.5},
              'seed': 0, 'amp': None, 'channels_last': False, 'log_every': 10,
              'eval_every': 1000, 'save_every': 1000, 'sync_bn': True},
    'optimizer': {'momentum': 0.9},
    'schedule': {'type': 'poly', 'power': 0.9, 'end_lr': 0.0, 'warmup_start_lr': 1.0e-5},
    'loss': {'type': 'ohem_ce', 'thresh': 0.7, 'coefs': [1.0, 1.0, 1.0], 'ignore_index': 255},
    'eval': {'size': None, 'flip': False, 'scales': [1.0]},
}

INIT_SCHEMES = ('paddleseg', 'torch')

REQUIRED = {
    'model': ('variant', 'num_classes'),
    'dataset': ('type', 'root', 'train_split', 'val_split'),
    'train': ('iters', 'batch_size', 'crop_size', 'scale'),
    'optimizer': ('type', 'lr', 'weight_decay'),
    'schedule': ('warmup_iters',),
    'loss': ('min_kept',),
}


def _looks_like_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ('nan', 'inf', '-inf', '+inf', 'infinity')


def deep_merge(base, child):
    """Return ``base`` updated by ``child``: mappings merge recursively, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path, chain):
    path = Path(path)
    resolved = path.resolve()
    if resolved in chain:
        cycle = ' -> '.join(str(p) for p in chain + [resolved])
        raise ValueError(f'{path}: _base_ inheritance loops: {cycle}')
    if not path.is_file():
        origin = f' (the _base_ of {chain[-1]})' if chain else ''
        raise ValueError(f'{path}: no such config file{origin}')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f'{path}: not valid YAML: {exc}') from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: a config must be a YAML mapping, found {type(data).__name__}')
    base = data.pop('_base_', None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f'{path}: _base_ must be one file name, found {base!r}')
    parent = _read_yaml(path.parent / base, chain + [resolved])
    return deep_merge(parent, data)


def apply_override(config, override, source='overrides'):
    """Set ``a.b.c=value`` (value parsed as YAML) in ``config`` in place."""
    if '=' not in override:
        raise ValueError(f'{source}: override {override!r} is not of the form a.b.c=value')
    dotted, text = override.split('=', 1)
    keys = dotted.strip().split('.')
    if not all(keys):
        raise ValueError(f'{source}: override {override!r} has an empty key')
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f'{source}: override {override!r}: value is not valid YAML: {exc}')
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)  # YAML 1.1 reads '1e-3' as text; on a command line it is a number
    node = config
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            prefix = '.'.join(keys[:depth + 1])
            raise ValueError(f'{source}: override {override!r}: {prefix} is not a mapping')
        node = child
    node[keys[-1]] = value


def load_config(path, overrides=None):
    """
    Load, merge, override, complete and validate the config at ``path``.

    :param path: YAML file; ``_base_`` files are resolved relative to the file that names them.
    :param overrides: list of ``'a.b.c=value'`` strings applied after inheritance.
    :returns: the config as a plain dict (see the module docstring for the schema).
    :raises ValueError: naming the file and the key when the config is unusable.
    """
    config = _read_yaml(path, [])
    for override in overrides or ():
        apply_override(config, override, f'{path} (override)')
    return resolve_config(config, str(path))


def add_override_arguments(parser):
    """
    Add the config-override option to an argparse ``parser``: ``--override`` or ``--set``.

    Both names mean the same (training.train took one, training.evaluate the other): one or
    more ``a.b.c=value`` each time, repeatable; they end up in ``args.overrides`` in order.
    """
    parser.add_argument('--override', '--set', dest='overrides', nargs='+', action='extend',
                        default=[], metavar='KEY=VALUE',
                        help='override config values (values parsed as YAML), e.g. '
                             'train.iters=1000 dataset.root=/data/cityscapes; --set is the '
                             'same option')


def resolve_config(config, source='config'):
    """
    Return a copy of ``config`` with the defaults filled in, validated.

    The one place training settings get their default values: the training code reads the
    resolved config and has no fallbacks of its own. Resolving a resolved config changes nothing.
    """
    config = deep_merge(DEFAULTS, config)
    validate_config(config, source)
    return config


def _fail(source, key, message):
    raise ValueError(f'{source}: {key}: {message}')


def _number(config, section, key, source, kind=float, minimum=None, allow_none=False):
    value = config[section].get(key)
    name = f'{section}.{key}'
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = (' (YAML reads 1e-5 as text: write 1.0e-5)' if isinstance(value, str)
                and _looks_like_float(value) else '')
        _fail(source, name, f'expected a number, found {value!r}{hint}')
    if kind is int and int(value) != value:
        _fail(source, name, f'expected an integer, found {value!r}')
    if minimum is not None and value < minimum:
        _fail(source, name, f'must be >= {minimum}, found {value!r}')


def _size(value, source, name, allow_none=False):
    if value is None and allow_none:
        return
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                       for v in value)):
        _fail(source, name, f'expected two positive integers, found {value!r}')


def validate_config(config, source='config'):
    """Raise ValueError naming ``source`` and the key for a missing or invalid entry."""
    for section, keys in REQUIRED.items():
        if not isinstance(config.get(section), dict):
            _fail(source, section, 'missing section (a mapping is required)')
        for key in keys:
            if config[section].get(key) is None:
                _fail(source, f'{section}.{key}', 'missing required key')
    if not config.get('output_dir'):
        _fail(source, 'output_dir', 'missing required key')
    # In this order, so that the first problem of a config is the one reported.
    _check_model_and_dataset(config, source)
    _check_train(config, source)
    _check_optimization(config, source)
    _check_eval(config, source)
    for section, key in (('dataset', 'root'), (None, 'output_dir')):
        holder = config[section] if section else config
        holder[key] = os.path.expandvars(os.path.expanduser(str(holder[key])))
    model = config['model']
    if model.get('input_size') is None:
        size = config['eval'].get('size')
        model['input_size'] = [size[1], size[0]] if size else [512, 1024]
    return config


def _check_model_and_dataset(config, source):
    model, data = config['model'], config['dataset']
    if model['variant'] not in ('t', 'b'):
        _fail(source, 'model.variant', f"expected 't' or 'b', found {model['variant']!r}")
    if model['init'] not in INIT_SCHEMES:
        _fail(source, 'model.init', f"expected one of {INIT_SCHEMES}, found {model['init']!r}")
    _number(config, 'model', 'num_classes', source, int, 1)
    _size(model.get('input_size'), source, 'model.input_size', allow_none=True)
    if data['type'] not in DATASET_TYPES:
        _fail(source, 'dataset.type', f'expected one of {DATASET_TYPES}, found {data["type"]!r}')
    if data['type'] in DATASETS:
        expected = len(DATASETS[data['type']][0])
        if model['num_classes'] != expected:
            _fail(source, 'model.num_classes', f"dataset {data['type']} has {expected} "
                  f"classes, found {model['num_classes']}")
        if data.get('class_names') is not None:
            _fail(source, 'dataset.class_names', f"{data['type']} takes its class names from "
                  'liteseg_ros.classes; use type: folder for your own classes')
    else:
        names = data.get('class_names')
        if not isinstance(names, list) or len(names) != model['num_classes']:
            _fail(source, 'dataset.class_names', 'type folder needs a list of '
                  f"{model['num_classes']} names (model.num_classes), found {names!r}")
    if data['type'] == 'camvid':
        for split in ('train', 'val'):
            if not data.get(f'{split}_list'):
                _fail(source, f'dataset.{split}_list', 'missing required key (camvid list file)')
    palette = data.get('palette')
    if palette is not None and (not isinstance(palette, list)
                                or len(palette) != model['num_classes']
                                or not all(isinstance(c, list) and len(c) == 3
                                           for c in palette)):
        _fail(source, 'dataset.palette', f"expected {model['num_classes']} [r, g, b] colours")
    _number(config, 'dataset', 'ignore_index', source, int, 0)


def _check_train(config, source):
    train = config['train']
    _number(config, 'train', 'iters', source, int, 1)
    _number(config, 'train', 'batch_size', source, int, 1)
    _number(config, 'train', 'num_workers', source, int, 0)
    _size(train['crop_size'], source, 'train.crop_size')
    scale = train['scale']
    if not isinstance(scale, dict) or any(not isinstance(scale.get(k), (int, float))
                                          for k in ('min', 'max', 'step')):
        _fail(source, 'train.scale', f'expected {{min, max, step}} numbers, found {scale!r}')
    if not 0 < scale['min'] <= scale['max'] or scale['step'] < 0:
        _fail(source, 'train.scale', f'need 0 < min <= max and step >= 0, found {scale!r}')
    _number(config, 'train', 'flip_prob', source, float, 0)
    distort = train.get('distort')
    if distort is not None:
        keys = ('brightness', 'contrast', 'saturation', 'hue', 'prob')
        if not isinstance(distort, dict) or any(not isinstance(distort.get(k), (int, float))
                                                for k in keys):
            _fail(source, 'train.distort', f'expected numbers {keys} (or null), found '
                  f'{distort!r}')
    if train['amp'] not in AMP_MODES:
        _fail(source, 'train.amp', f'expected one of {tuple(AMP_MODES)}, found '
              f'{train["amp"]!r}')
    for key in ('log_every', 'eval_every', 'save_every'):
        _number(config, 'train', key, source, int, 1)
    _number(config, 'train', 'seed', source, int, 0)


def _check_optimization(config, source):
    if config['optimizer']['type'] != 'sgd':
        _fail(source, 'optimizer.type', f"only 'sgd' is supported, found "
              f"{config['optimizer']['type']!r}")
    for key in ('lr', 'weight_decay', 'momentum'):
        _number(config, 'optimizer', key, source, float, 0)
    if config['schedule']['type'] != 'poly':
        _fail(source, 'schedule.type', f"only 'poly' is supported, found "
              f"{config['schedule']['type']!r}")
    for key in ('power', 'end_lr', 'warmup_start_lr'):
        _number(config, 'schedule', key, source, float, 0)
    _number(config, 'schedule', 'warmup_iters', source, int, 0)
    loss = config['loss']
    if loss['type'] != 'ohem_ce':
        _fail(source, 'loss.type', f"only 'ohem_ce' is supported, found {loss['type']!r}")
    _number(config, 'loss', 'thresh', source, float, 0)
    _number(config, 'loss', 'min_kept', source, int, 0)
    _number(config, 'loss', 'ignore_index', source, int, 0)
    coefs = loss['coefs']
    if not isinstance(coefs, list) or len(coefs) != NUM_HEADS:
        _fail(source, 'loss.coefs', f'expected {NUM_HEADS} numbers (one per head), found '
              f'{coefs!r}')


def _check_eval(config, source):
    evaluation = config['eval']
    _size(evaluation.get('size'), source, 'eval.size', allow_none=True)
    scales = evaluation.get('scales')
    if (not isinstance(scales, list) or not scales
            or not all(isinstance(s, (int, float)) and s > 0 for s in scales)):
        _fail(source, 'eval.scales', f'expected a non-empty list of positive numbers, found '
              f'{scales!r}')
    if not isinstance(evaluation.get('flip'), bool):
        _fail(source, 'eval.flip', f"expected true or false, found {evaluation.get('flip')!r}")
