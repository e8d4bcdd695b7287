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
Weights in and out of training: ``last.pt`` / ``best.pt``, ImageNet backbones, fine-tuning.

``last.pt`` is a liteseg/1 checkpoint plus the optimizer, scheduler, GradScaler, RNG and sampler
state needed to resume (docs/training.md, "Data order, seeds and resuming"); ``best.pt`` is a
plain liteseg/1 checkpoint. Backbones come from ``convert_paddle --backbone-only``.
"""

from pathlib import Path

from liteseg_ros.inference.weights import checkpoint_file, WeightsError
from liteseg_ros.model import CheckpointError, load_checkpoint, save_checkpoint
from liteseg_ros.model.paddle_weights import BACKBONE_FORMAT
import numpy as np
import torch
from training.errors import TrainError
from training.sampling import rng_state

LAST = 'last.pt'
BEST = 'best.pt'
RESUME_KEYS = ('optimizer', 'scheduler', 'iteration', 'rng')


def plain(value):
    """Return ``value`` as YAML/``weights_only``-safe plain types (paths become strings)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


def save_training_checkpoint(path, model, optimizer, scheduler, scaler, iteration, config,
                             **extra):
    """
    Write ``last.pt`` atomically: a liteseg/1 checkpoint plus everything needed to resume.

    The file is written to a temporary file beside ``path``, fsynced and renamed over it, so a
    kill at any moment leaves either the previous checkpoint or the new one.
    """
    save_checkpoint(path, model, iteration=int(iteration),
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    scaler=scaler.state_dict(), rng=rng_state(), train_config=plain(config),
                    **extra)


def load_training_checkpoint(path, model_config):
    """Return the state of ``last.pt`` at ``path`` for a model of ``model_config`` (--resume)."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from exc
    for key in RESUME_KEYS:
        if key not in state:
            raise TrainError(f'--resume: {path} has no {key!r} entry: it is not a '
                             'training checkpoint written by training.train')
    saved = state['config']
    for key in ('variant', 'num_classes'):
        if saved[key] != model_config[key]:
            raise TrainError(f'--resume: {path} holds a model with {key} '
                             f'{saved[key]!r}, the config asks for {model_config[key]!r}')
    return state


def remove_unfinished_writes(out):
    """Delete the temporary files of checkpoint writes a killed run left in ``out``."""
    stale = [p for name in (LAST, BEST) for p in out.glob(f'.{name}.*.tmp')]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def load_pretrained_backbone(model, path):
    """
    Load a ``liteseg-backbone/1`` file (``convert_paddle --backbone-only``) into the model.

    ``path`` may be a zoo name (``stdc1_imagenet``, ``stdc2_imagenet``), fetched when missing.
    """
    try:
        path = Path(checkpoint_file(path))
    except WeightsError as exc:
        raise TrainError(f'model.pretrained_backbone: {exc}') from exc
    if not path.is_file():
        raise TrainError(f'model.pretrained_backbone: {path} does not exist (convert ImageNet '
                         'weights with python -m training.convert_paddle SRC OUT.pt --variant '
                         't|b --backbone-only)')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainError(f'model.pretrained_backbone: {path} is not a {BACKBONE_FORMAT} file '
                         f'(torch.load: {reason}); make one with python -m training.'
                         'convert_paddle SRC OUT.pt --variant t|b --backbone-only') from exc
    if not isinstance(data, dict) or data.get('format') != BACKBONE_FORMAT:
        found = data.get('format') if isinstance(data, dict) else type(data).__name__
        raise TrainError(f'model.pretrained_backbone: {path} is not a {BACKBONE_FORMAT} file '
                         f'(found {found!r}); make one with python -m training.convert_paddle '
                         'SRC OUT.pt --variant t|b --backbone-only')
    variant = model.config['variant']
    if data.get('variant') != variant:
        found = data.get('variant')
        raise TrainError(f'model.pretrained_backbone: {path} is for variant {found!r}, the '
                         f'model is {variant!r}')
    try:
        model.backbone.load_state_dict(data['backbone'])
    except RuntimeError as exc:
        raise TrainError(f'model.pretrained_backbone: {path} does not fit the STDC backbone of '
                         f'PP-LiteSeg-{variant.upper()}: {exc}') from exc


def load_initial_weights(model, path, log=print):
    """
    Initialise ``model`` from a liteseg/1 checkpoint (fine-tuning); return (loaded, skipped).

    Tensors whose name or shape differ (the classifiers when the class count changes) keep
    their fresh initialisation; the count of both is logged. ``path`` may be a zoo name
    (``liteseg weights list``), fetched when missing.
    """
    try:
        path = checkpoint_file(path)
        state = load_checkpoint(path)['model']
    except (CheckpointError, WeightsError) as exc:
        raise TrainError(f'--init-from: {exc}') from exc
    own = model.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(loaded))
    if not loaded:
        raise TrainError(f'--init-from: {path} shares no weights with PP-LiteSeg-'
                         f"{model.config['variant'].upper()}")
    model.load_state_dict(loaded, strict=False)
    log(f'initialised {len(loaded)} of {len(own)} tensors from {path}'
        + (f'; {len(skipped)} keep their initialisation (first: {skipped[:3]})'
           if skipped else ''))
    return len(loaded), len(skipped)
