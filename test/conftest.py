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
Test session setup: hermetic ROS 2 environment, markers and automatic skips.

Environment (set before any test runs, inherited by subprocesses):

- ``ROS_HOME`` and ``ROS_LOG_DIR`` point into a temporary directory removed at the end.
- ``ROS_DOMAIN_ID`` is a per-session value and discovery is limited to this host, so
  concurrent test runs on one machine do not see each other's nodes and no DDS traffic
  leaves the machine.
- With the pip ROS 2 wheels (no ROS install sourced), ``AMENT_PREFIX_PATH`` gets the venv
  prefix so ``ament_index_python`` finds the installed message packages.

Markers: ``linter``/``flake8``/``pep257``/``copyright`` (style checks), ``ros`` (needs rclpy),
``gpu`` (needs CUDA: skipped without it), ``tensorrt`` (needs TensorRT: skipped without it),
``paddle`` (builds and uses the PaddleSeg reference venv under ``.cache/``), ``slow``.
"""

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile

import pytest

MARKERS = {
    'linter': 'style checks of the source tree (flake8, pep257, copyright)',
    'flake8': 'flake8 compliance (ament_flake8)',
    'pep257': 'PEP 257 docstring compliance (ament_pep257)',
    'copyright': 'every Python file carries the project copyright header',
    'ros': 'needs rclpy and ROS 2 message packages',
    'gpu': 'needs a CUDA GPU; skipped when torch.cuda is not available',
    'tensorrt': 'needs TensorRT; skipped when it is not importable',
    'paddle': 'compares against PaddleSeg in its own reference venv under .cache/',
    'slow': 'takes more than a few seconds on a 2-core CPU',
    'lite': 'runs without torch and ROS 2 (Python 3.10/3.12 CI: ONNX Runtime, codecs, bags)',
}

_TMP_ROOT = None


def _pip_ros_wheels():
    """Return True when rclpy comes from the PyPI ROS 2 wheels rather than a ROS install."""
    if os.environ.get('ROS_DISTRO'):
        return False
    try:
        importlib.metadata.version('ros-rclpy')
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _setup_ros_environment():
    global _TMP_ROOT
    _TMP_ROOT = tempfile.mkdtemp(prefix='liteseg_ros_test_')
    os.environ['ROS_HOME'] = os.path.join(_TMP_ROOT, 'ros_home')
    os.environ['ROS_LOG_DIR'] = os.path.join(_TMP_ROOT, 'ros_log')
    os.makedirs(os.environ['ROS_LOG_DIR'], exist_ok=True)
    # Keep DDS discovery on this host and away from other test sessions.
    os.environ['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 100)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    if os.environ.get('ROS_DISTRO') == 'humble':
        os.environ['ROS_LOCALHOST_ONLY'] = '1'
    if _pip_ros_wheels():
        prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
        if sys.prefix not in prefixes:
            os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join([sys.prefix] + prefixes)


def pytest_configure(config):
    """Register markers and prepare the hermetic ROS 2 environment."""
    for name, description in MARKERS.items():
        config.addinivalue_line('markers', '%s: %s' % (name, description))
    if _TMP_ROOT is None:
        _setup_ros_environment()


def pytest_unconfigure(config):
    """Remove the temporary ROS_HOME / ROS_LOG_DIR."""
    if _TMP_ROOT is not None:
        shutil.rmtree(_TMP_ROOT, ignore_errors=True)


def _restore_signal_handling(config):
    """
    Undo what ``ray.init`` leaves in the pytest process after ``ray.shutdown``.

    ``fleet_ray.restore_signal_handling`` (its docstring says what Ray leaves), with pytest's
    own faulthandler file. Without it a later signal on Ray's freed stack (the SIGCHLD of a
    DataLoader worker or of a killed subprocess) killed the process with SIGSEGV (SI_KERNEL):
    the "segfault" of test_train.py after the rest of the suite.
    """
    from liteseg_ros.bags.fleet_ray import restore_signal_handling

    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key
    except ImportError:  # another pytest: its own faulthandler plugin as it is
        fd = None
    else:
        fd = config.stash.get(fault_handler_stderr_fd_key, None)
    restore_signal_handling(fd)


@pytest.fixture(autouse=True)
def _signal_handling_restored(request):
    """After every test (the main thread's): a valid signal stack and faulthandler's handler."""
    yield
    _restore_signal_handling(request.config)  # a no-op off Linux


def _cuda_available():
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _tensorrt_usable():
    """Return True for a real TensorRT: with only tensorrt-stubs, ``import tensorrt`` is empty."""
    try:
        import tensorrt
    except (ImportError, OSError):
        return False
    return hasattr(tensorrt, 'Builder')


def pytest_collection_modifyitems(config, items):
    """Skip gpu/tensorrt tests cleanly on machines without CUDA or TensorRT."""
    needs_gpu = any(item.get_closest_marker('gpu') for item in items)
    needs_trt = any(item.get_closest_marker('tensorrt') for item in items)
    if needs_gpu and not _cuda_available():
        skip = pytest.mark.skip(reason='needs a CUDA GPU (torch.cuda.is_available() is False)')
        for item in items:
            if item.get_closest_marker('gpu'):
                item.add_marker(skip)
    if needs_trt and not _tensorrt_usable():
        skip = pytest.mark.skip(reason='needs TensorRT (no usable tensorrt module: not installed, '
                                'or only its type stubs)')
        for item in items:
            if item.get_closest_marker('tensorrt'):
                item.add_marker(skip)
