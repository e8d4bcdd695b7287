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


def onnx_metadata(model, path):
    """Return (config, io) stored in an ONNX model's metadata_props."""
    props = {p.key: p.value for p in model.metadata_props}
    if CONFIG_METADATA_KEY not in props:
        raise ModelFileError(f'{path}: ONNX model has no {CONFIG_METADATA_KEY!r} metadata; '
                             'export it with python -m training.export')
    io = json.loads(props.get(IO_METADATA_KEY, '{}'))
    return json.loads(props[CONFIG_METADATA_KEY]), io


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
