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
PaddleSeg weights as liteseg ones: PP-LiteSeg checkpoints and STDC ImageNet backbones.

Runs without Paddle: a ``.pdparams`` file is a pickle of numpy arrays, read here by an
unpickler that resolves only numpy's array-rebuilding globals, so a crafted file cannot run
code. Every key must map onto the model, with the right shape, or conversion fails naming it.
Used by ``python -m training.convert_paddle`` and ``liteseg weights get``.
"""

from pathlib import Path
import pickle
import re
import zipfile

from liteseg_ros.model.checkpoint import (atomic_save, build_model, load_model, save_checkpoint,
                                          weight_problems)
import numpy as np
import torch

PADDLE_METADATA_KEY = 'StructuredToParameterName@@'
BACKBONE_FORMAT = 'liteseg-backbone/1'
# ImageNet classifier layers of STDC checkpoints; segmentation does not use them.
CLASSIFIER_PREFIXES = ('conv_last.', 'fc.', 'bn.', 'linear.')

# PaddleSeg name -> our name, applied in order.
KEY_RULES = [
    (r'\._mean$', '.running_mean'),
    (r'\._variance$', '.running_var'),
    (r'\._conv\.', '.conv.'),
    (r'\._batch_norm\.', '.bn.'),
    (r'(backbone\.features\.\d+)\.conv_list\.', r'\1.branches.'),
    (r'\.avd_layer\.0\.', '.downsample.conv.'),
    (r'\.avd_layer\.1\.', '.downsample.bn.'),
    (r'^ppseg_head\.cm\.stages\.(\d+)\.1\.', r'decoder.sppm.stages.\1.'),
    (r'^ppseg_head\.cm\.conv_out\.', 'decoder.sppm.conv_out.'),
    (r'^ppseg_head\.arm_list\.(\d+)\._scale$', r'decoder.fusions.\1.scale'),
    (r'^ppseg_head\.arm_list\.(\d+)\.conv_xy_atten\.', r'decoder.fusions.\1.attention.'),
    (r'^ppseg_head\.arm_list\.', 'decoder.fusions.'),
    (r'^(seg_heads\.\d+)\.conv_out\.', r'\1.classifier.'),
]


class ConversionError(ValueError):
    """The source weights cannot be converted; the message names the file and the keys."""


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the numpy allow-list."""


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler resolving numpy's ``_reconstruct``, ``ndarray`` and ``dtype``, nothing else."""

    ALLOWED = {
        ('numpy.core.multiarray', '_reconstruct'): _numpy_reconstruct,
        ('numpy._core.multiarray', '_reconstruct'): _numpy_reconstruct,
        ('numpy', 'ndarray'): lambda: np.ndarray,
        ('numpy', 'dtype'): lambda: np.dtype,
    }

    def find_class(self, module, name):
        """Return an allowed numpy global; refuse every other one."""
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]()
        raise ForbiddenGlobal(
            f'refusing to load global {module}.{name}: a .pdparams file holds only numpy '
            'arrays, so this file is not PaddleSeg weights (or was tampered with)')


def read_pdparams(path):
    """Return the {name: float32 ndarray} of a Paddle ``.pdparams`` file, safely."""
    path = Path(path)
    try:
        with open(path, 'rb') as f:
            data = NumpyOnlyUnpickler(f).load()
    except FileNotFoundError:
        raise ConversionError(f'{path}: no such file') from None
    except ForbiddenGlobal as exc:
        raise ConversionError(f'{path}: {exc}') from exc
    except Exception as exc:  # truncated or not a pickle at all
        raise ConversionError(f'{path}: not a readable .pdparams pickle ({exc!r})') from exc
    if not isinstance(data, dict):
        raise ConversionError(f'{path}: expected a dict of arrays, found {type(data).__name__}')
    data.pop(PADDLE_METADATA_KEY, None)
    bad = [k for k, v in data.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ConversionError(f'{path}: entries that are not arrays: {bad[:5]}')
    return data


def read_torch_state_dict(path):
    """Return the state dict of a torch checkpoint (e.g. STDC-Seg's), loaded weights-only."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:
        raise ConversionError(f'{path}: not a readable torch checkpoint ({exc})') from exc
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConversionError(f'{path}: no state dict found')
    return {re.sub(r'^module\.', '', k): v.numpy() for k, v in state.items()
            if torch.is_tensor(v) and not k.endswith('num_batches_tracked')}


def read_weights(path):
    """Read a ``.pdparams`` pickle or a torch checkpoint into {name: ndarray}."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return read_torch_state_dict(path)
    return read_pdparams(path)


def paddle_to_liteseg_name(name):
    """Map a PaddleSeg PP-LiteSeg state-dict name onto ours."""
    for pattern, replacement in KEY_RULES:
        name = re.sub(pattern, replacement, name)
    return name


def map_state_dict(source, target, origin):
    """
    Rename ``source`` arrays onto ``target``'s keys; fail naming every mismatch.

    ``target`` is our model's state dict; BatchNorm's ``num_batches_tracked`` counters have no
    Paddle twin and keep their value.
    """
    renamed = {}
    for name, array in source.items():
        ours = paddle_to_liteseg_name(name)
        if ours in renamed:
            raise ConversionError(f'{origin}: {name} and another key both map to {ours}')
        renamed[ours] = (name, array)
    expected = {k: v for k, v in target.items() if not k.endswith('num_batches_tracked')}
    problems = weight_problems(expected, {k: array for k, (_, array) in renamed.items()},
                               source_names={k: name for k, (name, _) in renamed.items()})
    if problems:
        raise ConversionError(f'{origin}: weights do not fit the model: ' + ' | '.join(problems))
    state = dict(target)
    for key, (name, array) in renamed.items():
        state[key] = torch.from_numpy(np.array(array, dtype=np.float32))
    return state


def convert_model(src, dst, variant, num_classes, dataset=None, input_size=None):
    """
    Convert a PaddleSeg PP-LiteSeg ``.pdparams`` into a liteseg checkpoint at ``dst``.

    ``input_size`` ([H, W], default: the dataset's) is the size export and the node use.
    """
    model = build_model(variant, num_classes, dataset=dataset, input_size=input_size)
    state = map_state_dict(read_weights(src), model.state_dict(), str(src))
    model.load_state_dict(state)
    model.config['source'] = Path(src).name
    save_checkpoint(dst, model)
    return load_model(dst, variant=variant, num_classes=num_classes)


def convert_backbone(src, dst, variant):
    """Convert STDC ImageNet weights into a backbone state dict for training."""
    model = build_model(variant, 2)
    source = {k: v for k, v in read_weights(src).items()
              if not k.startswith(CLASSIFIER_PREFIXES)}
    source = {'backbone.' + re.sub(r'^backbone\.', '', k): v for k, v in source.items()}
    target = {k: v for k, v in model.state_dict().items() if k.startswith('backbone.')}
    state = map_state_dict(source, target, str(src))
    backbone = {k[len('backbone.'):]: v for k, v in state.items()}
    atomic_save({'format': BACKBONE_FORMAT, 'variant': variant, 'backbone': backbone,
                 'source': Path(src).name}, dst)
    return backbone
