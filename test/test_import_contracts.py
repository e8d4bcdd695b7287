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


"""The layering of docs/architecture.md holds, without import cycles: import-linter's contracts."""

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
    assert 'Contracts: 4 kept, 0 broken.' in result.stdout


def test_node_parameter_modules_import_one_way():
    """parameters.py imports grid_parameters.py; no import (lazy ones too) leads back."""
    import grimp

    graph = grimp.build_graph('liteseg_ros')
    node = 'liteseg_ros.ros.node.'
    assert graph.direct_import_exists(importer=node + 'parameters',
                                      imported=node + 'grid_parameters')
    assert not graph.chain_exists(importer=node + 'grid_parameters',
                                  imported=node + 'parameters')


LAYERS = 'ros over bags over inference over model'
ACYCLIC = 'no import cycles between the modules of a package'


@pytest.mark.parametrize('module, line, broken', [
    # An import up the layers also closes a cycle: the layer above imports this one.
    ('liteseg_ros/model/uses_inference.py', 'import liteseg_ros.inference.segmenter',
     (LAYERS, ACYCLIC)),
    ('liteseg_ros/bags/uses_node.py', 'from liteseg_ros.ros import segment_node',
     (LAYERS, ACYCLIC)),
    ('training/uses_ros.py', 'import liteseg_ros.ros.messages', ('training never uses ros',)),
    ('liteseg_ros/inference/uses_rclpy.py', 'import rclpy',
     ('only liteseg_ros.ros speaks ROS 2',)),
    # fleet_report imports fleet_bag: an import back closes a cycle, and breaks nothing else.
    ('liteseg_ros/bags/fleet_bag.py', 'from liteseg_ros.bags import fleet_report', (ACYCLIC,)),
])
def test_a_violation_breaks_its_contract(tmp_path, module, line, broken):
    copy_packages(tmp_path)
    planted = tmp_path / module
    if planted.exists():
        planted.write_text(f'{planted.read_text()}\n{line}\n')
    else:
        planted.write_text(f'"""A deliberate layering violation."""\n\n{line}\n')
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f'Contracts: {4 - len(broken)} kept, {len(broken)} broken.' in result.stdout
    report = result.stdout.split('Broken contracts')[1]
    assert all(name in report for name in broken), report
