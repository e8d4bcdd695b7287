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
The venv holds exactly the versions of its lock file (``make venv`` installs from ``locks/``).

``make test`` passes the lock it installed from in ``LITESEG_LOCK_FILE`` (and the exact pins it
installed without dependencies in ``LITESEG_NODEPS_FILE``); an unlocked venv
(``LOCK=0``), a sourced ROS 2 install or a plain ``pytest`` run has none and this skips.
"""

import importlib.metadata
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.lite

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r'^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)')


def _canonical(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def read_pins(lines):
    """Return {canonical name: version} of the ``name==version`` lines (comments skipped)."""
    pins = {}
    for line in lines:
        match = PIN.match(line.strip())
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


def nested_distributions():
    """
    Return the canonical names of distributions whose metadata another one installed.

    The PyPI ROS 2 wheels carry the metadata of the colcon-built package inside them
    (``ros-rclpy`` installs ``rclpy-9.1.2.dist-info``): pip freeze lists both, the lock
    only the wheel.
    """
    distributions = list(importlib.metadata.distributions())
    owned = set()
    for dist in distributions:
        for file in dist.files or ():
            parts = file.parts
            if parts and parts[0].endswith(('.dist-info', '.egg-info')):
                if parts[0] != Path(str(dist._path)).name:
                    owned.add(parts[0])
    return {_canonical(dist.metadata['Name']) for dist in distributions
            if Path(str(dist._path)).name in owned}


def installed_pins():
    """Return {canonical name: version} of ``pip freeze --all`` of this interpreter."""
    out = subprocess.run([sys.executable, '-m', 'pip', 'freeze', '--all'], check=True,
                         capture_output=True, text=True).stdout
    pins = read_pins(out.splitlines())
    pins.pop('liteseg-ros', None)  # the project itself, installed editable
    for name in nested_distributions():
        pins.pop(name, None)
    return pins


def lock_differences(locked, installed):
    """Return readable lines for packages missing, extra or at another version than locked."""
    lines = []
    for name in sorted(set(locked) | set(installed)):
        want, have = locked.get(name), installed.get(name)
        if want == have:
            continue
        if have is None:
            lines.append(f'{name}: locked {want}, not installed')
        elif want is None:
            lines.append(f'{name}: {have} installed, not in the lock')
        else:
            lines.append(f'{name}: locked {want}, installed {have}')
    return lines


def test_lock_differences_name_every_mismatch():
    locked = read_pins(['numpy==2.4.6', '    # via x', 'torch==2.13.0+cpu ; python_version >= "3"',
                        'Foo_Bar==1.0'])
    assert locked == {'numpy': '2.4.6', 'torch': '2.13.0+cpu', 'foo-bar': '1.0'}
    installed = {'numpy': '2.5.0', 'torch': '2.13.0+cpu', 'extra': '3'}
    assert lock_differences(locked, installed) == [
        'extra: 3 installed, not in the lock',
        'foo-bar: locked 1.0, not installed',
        'numpy: locked 2.4.6, installed 2.5.0',
    ]


def test_venv_equals_its_lock():
    lock = os.environ.get('LITESEG_LOCK_FILE')
    if not lock:
        pytest.skip('no lock for this run (LOCK=0, a sourced ROS 2 or plain pytest): '
                    'run it through make test')
    locked = read_pins((ROOT / lock).read_text().splitlines())
    # Exact pins installed without their dependencies (requirements-nodeps.txt).
    nodeps = os.environ.get('LITESEG_NODEPS_FILE')
    if nodeps:
        locked.update(read_pins((ROOT / nodeps).read_text().splitlines()))
    differences = lock_differences(locked, installed_pins())
    assert not differences, (f'{sys.prefix} differs from {lock} (run make venv to sync, or '
                             'make lock after changing a requirements file):\n'
                             + '\n'.join(differences))
