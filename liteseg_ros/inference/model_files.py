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
What a model file says about itself: its config, whichever format it is in.

A checkpoint carries its config; an ONNX model carries it as JSON in ``metadata_props``; a
TensorRT engine in a sidecar ``<engine>.json``. Frameworks are imported only for their format.
"""

import json
from pathlib import Path

CONFIG_METADATA_KEY = 'liteseg_config'
IO_METADATA_KEY = 'liteseg_io'
CHECKPOINT_SUFFIXES = ('.pt', '.pth')
ONNX_SUFFIXES = ('.onnx',)
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


def model_format(path):
    """Return 'checkpoint', 'onnx' or 'engine' from the file name."""
    suffix = Path(path).suffix.lower()
    for name, suffixes in (('checkpoint', CHECKPOINT_SUFFIXES), ('onnx', ONNX_SUFFIXES),
                           ('engine', ENGINE_SUFFIXES)):
        if suffix in suffixes:
            return name
    raise ModelFileError(f'{path}: unknown model type {suffix!r}; expected a checkpoint '
                         f'{CHECKPOINT_SUFFIXES}, ONNX {ONNX_SUFFIXES} or engine '
                         f'{ENGINE_SUFFIXES}')


def engine_sidecar(path):
    """Return the JSON file that describes a TensorRT engine."""
    return Path(str(path) + '.json')


def load_onnx(path):
    """Load and check an ONNX model; a corrupt or truncated file raises ModelFileError."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f'{path}: no such ONNX file')
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        raise ModelFileError(f'{path}: not a valid ONNX model ({exc})') from exc
    return model


def _metadata_props(model):
    return {p.key: p.value for p in model.metadata_props}


def onnx_metadata(model, path):
    """Return (config, io) stored in an ONNX model's metadata_props; no config is an error."""
    props = _metadata_props(model)
    if CONFIG_METADATA_KEY not in props:
        raise ModelFileError(f'{path}: ONNX model has no {CONFIG_METADATA_KEY!r} metadata; '
                             'export it with python -m training.export')
    return json.loads(props[CONFIG_METADATA_KEY]), onnx_io(model)


def onnx_io(model):
    """Return the input/output description stored in an ONNX model ({} when there is none)."""
    return json.loads(_metadata_props(model).get(IO_METADATA_KEY, '{}'))


def set_metadata(model, values):
    """Set string ``values`` ({key: str}) in an ONNX model's metadata_props, as they are."""
    for key, value in values.items():
        for prop in model.metadata_props:
            if prop.key == key:
                prop.value = value
                break
        else:
            model.metadata_props.add(key=key, value=value)


def write_onnx_metadata(model, config=None, io=None):
    """
    Store a liteseg ``config`` and ``io`` description in an ONNX model's metadata_props.

    ``config`` replaces the stored one; ``io`` is merged into the stored description (its
    keys win). None leaves that entry as it is. Returns ``model``.
    """
    if config is not None:
        set_metadata(model, {CONFIG_METADATA_KEY: json.dumps(config)})
    if io is not None:
        set_metadata(model, {IO_METADATA_KEY: json.dumps({**onnx_io(model), **io})})
    return model


def _outputs_name(output, confidence):
    return output + ('+confidence' if confidence else '')


def check_fused_outputs(path, io, output='labels', confidence=False, backend='onnxruntime'):
    """
    Refuse asking a fused export (``--fuse``) for outputs it was not exported with.

    A fused model has its pre- and post-processing in the graph: it gives exactly the output
    (and confidence, or not) it was exported with. A plain logits export can give anything,
    the ``backend`` fuses what it needs. ``io`` is the model's :func:`onnx_io`.

    :raises ModelFileError: naming the file, what it outputs and the export to use instead.
    """
    if io.get('layout') != 'nhwc_uint8':
        return
    have_output = io.get('output', 'labels')
    have_confidence = bool(io.get('confidence'))
    if output == have_output and (have_confidence or not confidence):
        return
    raise ModelFileError(
        f'{path}: this ONNX model was exported with --fuse and outputs '
        f'{_outputs_name(have_output, have_confidence)}; {_outputs_name(output, confidence)} '
        f'needs an export without --fuse (the {backend} backend then fuses what it needs)'
        + (', or with --fuse --confidence' if output == have_output else ''))


def read_model_config(path):
    """Return the liteseg config (classes, palette, normalisation, input size) of a model file."""
    kind = model_format(path)
    if kind == 'checkpoint':
        from liteseg_ros.model import load_checkpoint

        return load_checkpoint(path)['config']
    if kind == 'onnx':
        return onnx_metadata(load_onnx(path), path)[0]
    sidecar = engine_sidecar(path)
    try:
        return json.loads(sidecar.read_text())['config']
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f'{path}: engine description {sidecar} is missing or unreadable '
                             f'({exc}); rebuild the engine with python -m training.export')
