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
The node's parameters: their table (name, default, description), how each may change, and checks.

Pure Python (no rclpy): the node declares them with descriptors built from these tables
(ros/node/live.py), checks every change with :func:`check_parameter`, and turns the values into
:class:`Settings` with :func:`validate_parameters` at configure. Errors name the parameter and
the allowed values (docs/node.md; every parameter is documented in config/segment.yaml).
"""

from dataclasses import dataclass
import math

from liteseg_ros.inference import BACKENDS, UPSAMPLE_MODES
from liteseg_ros.inference.backends import check_device
from liteseg_ros.inference.drivable import DRIVABLE_MODES
from liteseg_ros.ros.node.errors import ParameterError
from liteseg_ros.ros.node.grid_parameters import (check_grid_parameter, GRID_PARAMETERS,
                                                  GRID_RANGES, grid_settings)

TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')

# name: (default, description). Types are checked by the node, not by rclpy, so an integer in a
# YAML file for a double parameter works, and a wrong type is an error naming the parameter.
PARAMETERS = {
    'autostart': (True, 'bool: configure and activate at startup'),
    'cameras': (['camera'], 'string[]: camera namespaces; C/image_raw in, C/segmentation/* out'),
    'transport': ('raw', "string: 'raw' (C/image_raw) or 'compressed' (C/image_raw/compressed)"),
    'model_path': ('', 'string: checkpoint (.pt), ONNX (.onnx), TensorRT engine (.engine) or '
                       'zoo name (liteseg weights list)'),
    'backend': ('auto', "string: 'auto', 'onnxruntime', 'torch', 'tensorrt' or 'openvino'"),
    'device': ('auto', "string: 'auto', 'cpu', 'cuda', 'cuda:N'; openvino: 'gpu', 'gpu:N', "
                       "'npu'"),
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
    'diagnostics_period_s': (1.0, 'double, s: /diagnostics period'),
    'min_rate_hz': (0.0, 'double, Hz: WARN when a camera is segmented slower (0: off)'),
    **GRID_PARAMETERS,
}

# How a change at runtime applies (docs/node.md, "Parameters"). Live: from the next frame.
LIVE = ('overlay_alpha', 'drivable_classes', 'drivable_mode', 'min_rate_hz',
        'max_frame_age_ms', 'batch_timeout_ms', 'diagnostics_period_s')
# A new model: checked at once, loaded at the next configure (so a failed configure can be
# fixed with `ros2 param set` and retried).
NEXT_CONFIGURE = ('model_path', 'backend', 'device', 'threads', 'upsample') + tuple(
    GRID_PARAMETERS)
# New subscriptions and publishers, or startup only: params file or launch argument.
READ_ONLY = ('autostart', 'cameras', 'transport', 'qos_reliability', 'qos_depth',
             'output_qos_reliability', 'output_qos_depth')

# Numeric bounds (inclusive), also published as the descriptors' ranges.
RANGES = {
    'threads': (0, 1024),
    'qos_depth': (1, 10000),
    'output_qos_depth': (1, 10000),
    'max_frame_age_ms': (0.0, 3600000.0),
    'batch_timeout_ms': (0.0, 10000.0),
    'overlay_alpha': (0.0, 1.0),
    'diagnostics_period_s': (0.01, 3600.0),
    'min_rate_hz': (0.0, 1000.0),
    **GRID_RANGES,
}

# The allowed strings of the choice parameters.
CHOICES = {
    'transport': TRANSPORTS,
    'backend': BACKENDS,
    'upsample': UPSAMPLE_MODES,
    'qos_reliability': RELIABILITIES,
    'output_qos_reliability': RELIABILITIES,
    'drivable_mode': DRIVABLE_MODES,
}


def how_it_applies(name):
    """Return how a runtime change of ``name`` applies, as the descriptor and docs say it."""
    if name in LIVE:
        return 'live: applies from the next frame'
    if name in NEXT_CONFIGURE:
        return 'applies at the next configure (deactivate, cleanup, configure, activate)'
    return ('read-only: set it in the params file or as a launch argument and restart the '
            'node')


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
    ground_grid: object = None  # GridSettings (ros/node/grid_parameters.py)


def _choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ParameterError(f"parameter '{name}': expected one of "
                             f"{', '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


def _bound(value):
    return str(int(value)) if float(value).is_integer() else str(value)


def _number(name, value, low=None, high=None, integer=False):
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        what = 'an integer' if integer else 'a number'
        bounds = []
        if low is not None:
            bounds.append('>= ' + _bound(low))
        if high is not None:
            bounds.append('<= ' + _bound(high))
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
    try:
        return check_device(value)
    except ValueError:
        raise ParameterError("parameter 'device': expected 'auto', 'cpu', 'cuda', 'cuda:N', "
                             f"'gpu', 'gpu:N' or 'npu', got {value!r}") from None


def _bool(name, value):
    if not isinstance(value, bool):
        raise ParameterError(f"parameter '{name}': expected true or false, got {value!r}")
    return value


def _ranged(name, value):
    low, high = RANGES[name]
    return _number(name, value, low=low, high=high, integer=isinstance(low, int))


def _checker(name):
    if name in GRID_PARAMETERS:
        return lambda value: check_grid_parameter(name, value)
    if name in CHOICES:
        return lambda value: _choice(name, value, CHOICES[name])
    if name in RANGES:
        return lambda value: _ranged(name, value)
    return {
        'autostart': lambda value: _bool('autostart', value),
        'cameras': _cameras,
        'model_path': _model_path,
        'device': _device,
        'drivable_classes': lambda value: _string_list('drivable_classes', value, "['road']"),
    }[name]


def check_parameter(name, value):
    """Return ``value`` of parameter ``name`` as Settings holds it; raise ParameterError."""
    return _checker(name)(value)


def validate_parameters(values):
    """Return Settings from a dict of raw parameter values; raise ParameterError."""
    fields = {name: check_parameter(name, values[name]) for name in PARAMETERS
              if name not in ('autostart', 'model_path') and name not in GRID_PARAMETERS}
    return Settings(model_path=_model_path(values['model_path']),
                    ground_grid=grid_settings(values, fields['cameras']), **fields)
