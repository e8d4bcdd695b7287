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
Parameters at runtime: their descriptors, the check of every change, and live changes.

Which parameters are live, read-only or applied at the next configure is decided in
parameters.py (``LIVE``, ``READ_ONLY``, ``NEXT_CONFIGURE``); docs/node.md, "Parameters".
"""

from liteseg_ros.inference.drivable import drivable_lut
from liteseg_ros.ros.node.parameters import (check_parameter, CHOICES, how_it_applies, LIVE,
                                             ParameterError, PARAMETERS, RANGES, READ_ONLY)
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)

RENDERER = ('overlay_alpha', 'drivable_classes', 'drivable_mode')  # OutputRenderer attributes


def _type(default, description):
    """Return the ParameterType of a parameter, from its default or its description."""
    if isinstance(default, bool):
        return ParameterType.PARAMETER_BOOL
    if isinstance(default, int):
        return ParameterType.PARAMETER_INTEGER
    if isinstance(default, float):
        return ParameterType.PARAMETER_DOUBLE
    if isinstance(default, (list, tuple)):  # an empty default: the description says
        if description.startswith('double['):
            return ParameterType.PARAMETER_DOUBLE_ARRAY
        if description.startswith('int['):
            return ParameterType.PARAMETER_INTEGER_ARRAY
        return ParameterType.PARAMETER_STRING_ARRAY
    return ParameterType.PARAMETER_STRING


def parameter_descriptor(name):
    """
    Return the ParameterDescriptor of parameter ``name``.

    Typing stays dynamic so that an integer in a params file works for a double parameter
    (the node checks types itself); ``type`` still says what the parameter holds.
    """
    default, description = PARAMETERS[name]
    descriptor = ParameterDescriptor(
        name=name, type=_type(default, description),
        description=f'{description} ({how_it_applies(name)})', read_only=name in READ_ONLY,
        dynamic_typing=True)
    if name in CHOICES:
        descriptor.additional_constraints = 'one of ' + ', '.join(
            repr(c) for c in CHOICES[name])
    if name in RANGES:
        low, high = RANGES[name]
        if isinstance(low, int):
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    return descriptor


def read_only_reason(name):
    """Return why a runtime change of read-only ``name`` is refused and how to apply it."""
    return f"parameter '{name}' is {how_it_applies(name)}"


def check_changes(parameters, class_names=None):
    """
    Check a set of parameter changes; return ({name: value as Settings holds it}, reason).

    ``parameters`` are rclpy Parameters (``name``, ``value``). The reason is '' when every
    value is valid; otherwise it names the parameter and the allowed values. With
    ``class_names`` (a model is loaded) drivable classes must be classes of that model.
    """
    values = {}
    for parameter in parameters:
        name = parameter.name
        if name not in PARAMETERS:
            continue
        if name in READ_ONLY:
            return {}, read_only_reason(name)
        try:
            values[name] = check_parameter(name, parameter.value)
            if name == 'drivable_classes' and class_names is not None:
                drivable_lut(class_names, values[name])
        except ParameterError as exc:
            return {}, str(exc)
        except ValueError as exc:
            return {}, f"parameter '{name}': {exc}"
    return values, ''


def apply_live(values, settings, renderer):
    """Apply the live ``values`` to ``settings`` and ``renderer`` (either may be None)."""
    for name, value in values.items():
        if name not in LIVE:
            continue
        if settings is not None:
            setattr(settings, name, value)
        if renderer is not None and name in RENDERER:
            setattr(renderer, name, value)
