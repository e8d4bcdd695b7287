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


"""The layering of docs/architecture.md holds: import-linter's contracts in setup.cfg."""

from pathlib import Path
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.linter

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ('liteseg_ros', 'training')


def lint_imports(root):
    """Run lint-imports over the packages under ``root`` with the project's contracts."""
    command = [str(Path(sys.executable).with_name('lint-imports')),
               '--config', str(ROOT / 'setup.cfg'), '--no-cache']
    return subprocess.run(command, cwd=root, capture_output=True, text=True,
                          env={'PYTHONPATH': str(root), 'PATH': '/usr/bin:/bin'})


def copy_packages(destination):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, destination / package,
                        ignore=shutil.ignore_patterns('__pycache__'))


def test_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Contracts: 3 kept, 0 broken.' in result.stdout


def test_node_parameter_modules_import_one_way():
    """parameters.py imports grid_parameters.py; no import (lazy ones too) leads back."""
    import grimp

    graph = grimp.build_graph('liteseg_ros')
    node = 'liteseg_ros.ros.node.'
    assert graph.direct_import_exists(importer=node + 'parameters',
                                      imported=node + 'grid_parameters')
    assert not graph.chain_exists(importer=node + 'grid_parameters',
                                  imported=node + 'parameters')


@pytest.mark.parametrize('module, line, broken', [
    ('liteseg_ros/model/uses_inference.py', 'import liteseg_ros.inference.segmenter',
     'ros over bags over inference over model'),
    ('liteseg_ros/bags/uses_node.py', 'from liteseg_ros.ros import segment_node',
     'ros over bags over inference over model'),
    ('training/uses_ros.py', 'import liteseg_ros.ros.messages',
     'training never uses ros'),
    ('liteseg_ros/inference/uses_rclpy.py', 'import rclpy',
     'only liteseg_ros.ros speaks ROS 2'),
])
def test_a_violation_breaks_its_contract(tmp_path, module, line, broken):
    copy_packages(tmp_path)
    (tmp_path / module).write_text(f'"""A deliberate layering violation."""\n\n{line}\n')
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert 'Contracts: 2 kept, 1 broken.' in result.stdout
    assert f'{broken}' in result.stdout.split('Broken contracts')[1]
