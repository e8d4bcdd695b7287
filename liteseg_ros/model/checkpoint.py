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
Self-describing checkpoints: weights plus the classes, palette and normalisation they need.

Format ``liteseg/1`` (see docs/architecture.md, section 5): a ``torch.save`` of plain types
only, so it loads with ``torch.load(weights_only=True)``. Writes are atomic: a crash never
leaves a half-written file.
"""

from pathlib import Path

from liteseg_ros.atomic_file import atomic_write
from liteseg_ros.classes import class_info
from liteseg_ros.model.pp_liteseg import VARIANTS
import torch

FORMAT = 'liteseg/1'
CONFIG_KEYS = ('variant', 'num_classes', 'class_names', 'palette', 'mean', 'std', 'input_size',
               'dataset')
DEFAULT_INPUT_SIZES = {'cityscapes': [512, 1024], 'camvid': [720, 960]}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and the file named."""


def make_config(variant, num_classes, dataset=None, class_names=None, palette=None,
                mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=None):
    """Return a checkpoint config; names and palette default to the dataset's own."""
    if variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r}: expected one of {sorted(VARIANTS)}')
    default_names, default_palette = class_info(dataset, num_classes)
    config = {
        'variant': variant,
        'num_classes': int(num_classes),
        'class_names': list(class_names) if class_names is not None else default_names,
        'palette': ([list(map(int, c)) for c in palette] if palette is not None
                    else default_palette),
        'mean': [float(v) for v in mean],
        'std': [float(v) for v in std],
        'input_size': list(input_size or DEFAULT_INPUT_SIZES.get(dataset, [512, 1024])),
        'dataset': dataset or 'custom',
    }
    validate_config(config)
    return config


def validate_config(config, source='config'):
    """Raise CheckpointError naming ``source`` when ``config`` is incomplete or inconsistent."""
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise CheckpointError(f'{source}: config lacks {missing}')
    if config['variant'] not in VARIANTS:
        raise CheckpointError(f"{source}: unknown variant {config['variant']!r}, expected one of "
                              f'{sorted(VARIANTS)}')
    num_classes = config['num_classes']
    for key in ('class_names', 'palette'):
        if len(config[key]) != num_classes:
            raise CheckpointError(f'{source}: num_classes is {num_classes} but {key} has '
                                  f'{len(config[key])} entries')


def build_model(variant, num_classes, dataset=None, **config_kwargs):
    """Build a randomly initialised model carrying its config as ``model.config``."""
    config = make_config(variant, num_classes, dataset=dataset, **config_kwargs)
    return model_from_config(config)


def model_from_config(config):
    """Build an (untrained) model for ``config``."""
    model = VARIANTS[config['variant']](config['num_classes'])
    model.config = dict(config)
    return model


def atomic_save(obj, path):
    """``torch.save`` ``obj`` to ``path`` atomically (see ``liteseg_ros.atomic_file``)."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def save_checkpoint(path, model, config=None, **extra):
    """
    Write model weights and config (``model.config`` by default) as a liteseg/1 checkpoint.

    ``extra`` entries (optimizer state, iteration, ...) are stored beside them.
    """
    config = dict(config if config is not None else model.config)
    validate_config(config, str(path))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save({'format': FORMAT, 'model': state, 'config': config, **extra}, path)


def load_checkpoint(path):
    """Read and validate a liteseg/1 checkpoint; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f'{path}: not a readable liteseg checkpoint ({exc})') from exc
    if not isinstance(checkpoint, dict) or checkpoint.get('format') != FORMAT:
        found = checkpoint.get('format') if isinstance(checkpoint, dict) else type(checkpoint)
        raise CheckpointError(f'{path}: expected format {FORMAT!r}, found {found!r}; convert '
                              'PaddleSeg weights with python -m training.convert_paddle')
    for key in ('model', 'config'):
        if key not in checkpoint:
            raise CheckpointError(f'{path}: checkpoint has no {key!r} entry')
    validate_config(checkpoint['config'], str(path))
    return checkpoint


def load_model(path, variant=None, num_classes=None):
    """
    Load a checkpoint into a model in eval mode, with ``model.config`` set.

    ``variant``/``num_classes``, when given, are what the caller expects; a checkpoint that
    differs, or whose weights disagree with its own config, is refused naming both values.
    """
    checkpoint = load_checkpoint(path)
    config = checkpoint['config']
    for key, expected in (('variant', variant), ('num_classes', num_classes)):
        if expected is not None and config[key] != expected:
            raise CheckpointError(f'{path}: expected {key} {expected!r}, checkpoint has '
                                  f'{config[key]!r}')
    model = model_from_config(config)
    check_state_dict(model.state_dict(), checkpoint['model'], str(path), config)
    model.load_state_dict(checkpoint['model'])
    return model.eval()


def weight_problems(expected, found, limit=None, source_names=None):
    """
    Return texts naming what keeps the weights ``found`` from loading as ``expected``.

    Both are {key: array or tensor}; [] when every expected key is there with its shape and
    nothing else is. ``source_names`` ({key of found: its name in the file it was converted
    from}) names those weights as the file does. ``limit``: how many names a text lists
    (None: all).
    """
    names = source_names or {}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(names.get(k, k) for k in set(found) - set(expected))
    wrong = [f'{names[k]} {list(found[k].shape)} -> {k} {list(expected[k].shape)}' if k in names
             else f'{k}: expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)}'
             for k in expected
             if k in found and tuple(expected[k].shape) != tuple(found[k].shape)]
    problems = []
    for what, items, separator in (('missing', missing, ', '), ('unexpected', unexpected, ', '),
                                   ('mis-shaped', wrong, '; ')):
        if items:
            more = separator + '...' if limit and len(items) > limit else ''
            problems.append(f'{what} {len(items)} weights: '
                            f'{separator.join(items[:limit])}{more}')
    return problems


def check_state_dict(expected, found, source, config):
    """Raise CheckpointError listing missing, unexpected and mis-shaped weights."""
    problems = weight_problems(expected, found, limit=5)
    if not problems:
        return
    classifier = 'seg_heads.0.classifier.weight'
    if (classifier in found and classifier in expected
            and found[classifier].shape != expected[classifier].shape):
        problems.insert(0, f'weights are for {found[classifier].shape[0]} classes but the '
                           f"config says num_classes={config['num_classes']}")
    raise CheckpointError(f"{source}: weights do not fit a PP-LiteSeg-{config['variant'].upper()}"
                          f" with {config['num_classes']} classes: " + ' | '.join(problems))
