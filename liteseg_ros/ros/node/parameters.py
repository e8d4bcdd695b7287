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
The node's parameters: their table (name, default, description) and their validation.

Pure Python (no rclpy): the node reads the raw values at configure and turns them into
:class:`Settings` with :func:`validate_parameters`, whose errors name the parameter and the
allowed values (docs/node.md; every parameter is documented in config/segment.yaml).
"""

from dataclasses import dataclass
import math

from liteseg_ros.inference import BACKENDS, UPSAMPLE_MODES
from liteseg_ros.inference.drivable import DRIVABLE_MODES

TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')

# name: (default, description). Types are checked at configure, not at declaration, so a wrong
# type in a YAML file becomes a configure error naming the parameter instead of a crash.
PARAMETERS = {
    'autostart': (True, 'bool: configure and activate at startup'),
    'cameras': (['camera'], 'string[]: camera namespaces; C/image_raw in, C/segmentation/* out'),
    'transport': ('raw', "string: 'raw' (C/image_raw) or 'compressed' (C/image_raw/compressed)"),
    'model_path': ('', 'string: checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine)'),
    'backend': ('auto', "string: 'auto', 'onnxruntime', 'torch' or 'tensorrt'"),
    'device': ('auto', "string: 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    'threads': (0, 'int: CPU inference threads (0: the backend default)'),
    'upsample': ('nearest', "string: 'nearest' (fast) or 'bilinear' (exact) mask upsampling"),
    'qos_reliability': ('best_effort', "string: input QoS, 'best_effort' or 'reliable'"),
    'qos_depth': (1, 'int: input QoS keep-last depth (>= 1)'),
    'output_qos_reliability': ('reliable', "string: output QoS, 'best_effort' or 'reliable'"),
    'output_qos_depth': (1, 'int: output QoS keep-last depth (>= 1)'),
    'max_frame_age_ms': (1000.0, 'double, ms: drop older frames (stamp vs node clock; 0: off)'),
    'batch_timeout_ms': (10.0, 'double, ms: wait this long for other cameras to batch frames'),
    'overlay_alpha': (0.5, 'double in [0, 1]: weight of the colour mask in the overlay'),
    'drivable_classes': (['road'], 'string[]: class names that are drivable (any case)'),
    'drivable_mode': ('classes', "string: 'classes' or 'connected' (region at bottom centre)"),
    'diagnostics_period_s': (1.0, 'double, s: /diagnostics period (> 0)'),
    'min_rate_hz': (0.0, 'double, Hz: WARN when a camera is segmented slower (0: off)'),
}


class ParameterError(ValueError):
    """A parameter value that cannot be used; the message names it and the allowed values."""


@dataclass
class Settings:
    """Validated parameter values, read at configure."""

    cameras: list
    transport: str
    model_path: str
    backend: str
    device: str
    threads: int
    upsample: str
    qos_reliability: str
    qos_depth: int
    output_qos_reliability: str
    output_qos_depth: int
    max_frame_age_ms: float
    batch_timeout_ms: float
    overlay_alpha: float
    drivable_classes: list
    drivable_mode: str
    diagnostics_period_s: float
    min_rate_hz: float


def _choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ParameterError(f"parameter '{name}': expected one of "
                             f"{', '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


def _number(name, value, low=None, high=None, integer=False, low_open=False):
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        what = 'an integer' if integer else 'a number'
        bounds = []
        if low is not None:
            bounds.append(('> ' if low_open else '>= ') + str(low))
        if high is not None:
            bounds.append('<= ' + str(high))
        raise ParameterError(f"parameter '{name}': expected {what}"
                             f"{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}")
    return int(value) if integer else float(value)


def _string_list(name, value, example):
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise ParameterError(f"parameter '{name}': expected a non-empty list of non-empty "
                             f'strings, e.g. {example}, got {value!r}')
    return [v.strip() for v in value]


def _cameras(value):
    cameras = [c.rstrip('/') for c in _string_list('cameras', value, "['front', 'rear']")]
    if any(not c for c in cameras):
        raise ParameterError("parameter 'cameras': '/' is not a camera namespace; use e.g. "
                             "'front' or '/car/front'")
    if len(set(cameras)) != len(cameras):
        raise ParameterError(f"parameter 'cameras': each camera may appear once, got {cameras}")
    return cameras


def _model_path(value):
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(
            "parameter 'model_path' is empty: set it to a liteseg checkpoint (.pt), ONNX model "
            '(.onnx) or TensorRT engine (.engine), e.g. ros2 param set '
            '<node> model_path /path/model.onnx, then configure again')
    return value.strip()


def _device(value):
    if not isinstance(value, str) or not (
            value in ('auto', 'cpu', 'cuda') or (value.startswith('cuda:')
                                                 and value[5:].isdigit())):
        raise ParameterError(f"parameter 'device': expected 'auto', 'cpu', 'cuda' or 'cuda:N', "
                             f'got {value!r}')
    return value


def validate_parameters(values):
    """Return Settings from a dict of raw parameter values; raise ParameterError."""
    cameras = _cameras(values['cameras'])
    model_path = _model_path(values['model_path'])
    device = _device(values['device'])
    return Settings(
        cameras=cameras,
        transport=_choice('transport', values['transport'], TRANSPORTS),
        model_path=model_path,
        backend=_choice('backend', values['backend'], BACKENDS),
        device=device,
        threads=_number('threads', values['threads'], low=0, integer=True),
        upsample=_choice('upsample', values['upsample'], UPSAMPLE_MODES),
        qos_reliability=_choice('qos_reliability', values['qos_reliability'], RELIABILITIES),
        qos_depth=_number('qos_depth', values['qos_depth'], low=1, integer=True),
        output_qos_reliability=_choice('output_qos_reliability',
                                       values['output_qos_reliability'], RELIABILITIES),
        output_qos_depth=_number('output_qos_depth', values['output_qos_depth'], low=1,
                                 integer=True),
        max_frame_age_ms=_number('max_frame_age_ms', values['max_frame_age_ms'], low=0),
        batch_timeout_ms=_number('batch_timeout_ms', values['batch_timeout_ms'], low=0),
        overlay_alpha=_number('overlay_alpha', values['overlay_alpha'], low=0, high=1),
        drivable_classes=_string_list('drivable_classes', values['drivable_classes'],
                                      "['road']"),
        drivable_mode=_choice('drivable_mode', values['drivable_mode'], DRIVABLE_MODES),
        diagnostics_period_s=_number('diagnostics_period_s', values['diagnostics_period_s'],
                                     low=0, low_open=True),
        min_rate_hz=_number('min_rate_hz', values['min_rate_hz'], low=0),
    )
