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
The TensorRT code against TensorRT's published Python API, without TensorRT.

- a type check (basedpyright, ``pyrightconfig.json``) of liteseg_ros/inference/tensorrt/ and
  the TensorRT backend against ``tensorrt-stubs`` 10.13 (the TensorRT 10 API);
- a scan for the APIs TensorRT 11 removed (NVIDIA's 10.x to 11.x migration guide), which a
  type check against 10.x stubs cannot see;
- the stand-in ``tensorrt`` of test_tensorrt.py uses only names the stubs have.

Each check is shown to fail on a planted misuse in a temporary copy of a module.
"""

import ast
import importlib.util
import json
from pathlib import Path
import re
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
TENSORRT_CODE = sorted((REPO / 'liteseg_ros' / 'inference' / 'tensorrt').glob('*.py')) + [
    REPO / 'liteseg_ros' / 'inference' / 'backends' / 'tensorrt_backend.py']

# Removed in TensorRT 11.x, from "Removed Python APIs and Replacements", Migrating from
# TensorRT 10.x to 11.x, TensorRT 11.4.0 documentation:
# https://docs.nvidia.com/deeplearning/tensorrt/11.4.0/api/migration/tensorrt-10x-to-11x-python-api-reference.html
# (weak typing, implicit quantization and the algorithm selector are gone; the C++ page lists
# IBuilder::platformHasFastFp16/Int8, whose Python properties are below).
REMOVED_BUILDER_FLAGS = ('FP16', 'INT8', 'FP8', 'BF16', 'INT4', 'FP4',
                         'OBEY_PRECISION_CONSTRAINTS', 'PREFER_PRECISION_CONSTRAINTS',
                         'DIRECT_IO')
REMOVED_NAMES = (
    # IBuilderConfig: calibration and quantization flags.
    'int8_calibrator', 'set_calibration_profile', 'get_calibration_profile',
    'set_quantization_flag', 'get_quantization_flag', 'clear_quantization_flag',
    'quantization_flags', 'QuantizationFlag',
    # Builder: platform queries; ICudaEngine: device_memory_size (use device_memory_size_v2).
    'platform_has_fast_fp16', 'platform_has_fast_int8', 'device_memory_size',
    # Implicit quantization: the calibrators.
    'IInt8Calibrator', 'IInt8LegacyCalibrator', 'IInt8EntropyCalibrator',
    'IInt8EntropyCalibrator2', 'IInt8MinMaxCalibrator', 'CalibrationAlgoType',
    # The algorithm selector (replaced by an editable ITimingCache).
    'IAlgorithmSelector', 'IAlgorithm', 'IAlgorithmContext', 'IAlgorithmIOInfo',
    'IAlgorithmVariant', 'algorithm_selector',
)


def removed_api_uses(path):
    """Return 'file:line name' for each use of an API TensorRT 11 removed in ``path``."""
    tree = ast.parse(Path(path).read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute):
            owner = node.value
            owner_name = getattr(owner, 'attr', None) or getattr(owner, 'id', None)
            if node.attr in REMOVED_NAMES:
                name = node.attr
            elif owner_name == 'BuilderFlag' and node.attr in REMOVED_BUILDER_FLAGS:
                name = f'BuilderFlag.{node.attr}'
        elif isinstance(node, ast.Constant) and node.value in REMOVED_NAMES:
            name = node.value  # getattr(builder, 'platform_has_fast_fp16', ...)
        if name:
            found.append(f'{Path(path).name}:{node.lineno} {name}')
    return found


def plant(tmp_path, source, old, new):
    """Copy ``source`` to ``tmp_path`` with ``old`` replaced by ``new``; return the copy."""
    text = source.read_text()
    assert old in text, f'{old!r} not in {source}'
    copy = tmp_path / source.name
    copy.write_text(text.replace(old, new, 1))
    return copy


BUILD = REPO / 'liteseg_ros' / 'inference' / 'tensorrt' / 'build.py'
BACKEND = REPO / 'liteseg_ros' / 'inference' / 'backends' / 'tensorrt_backend.py'


@pytest.mark.linter
def test_no_api_removed_in_tensorrt_11_is_used(tmp_path):
    assert [use for path in TENSORRT_CODE for use in removed_api_uses(path)] == []
    planted = plant(tmp_path, BUILD, '    builder_config = builder.create_builder_config()\n',
                    '    builder_config = builder.create_builder_config()\n'
                    '    builder_config.set_flag(trt.BuilderFlag.FP16)\n'
                    "    if getattr(builder, 'platform_has_fast_int8', False):\n"
                    '        builder_config.int8_calibrator = None\n')
    assert [u.split(' ', 1)[1] for u in removed_api_uses(planted)] == [
        'BuilderFlag.FP16', 'platform_has_fast_int8', 'int8_calibrator']
    engine = plant(tmp_path, BACKEND, '        self._bind()\n',
                   '        self._bind()\n        print(self.engine.device_memory_size)\n')
    assert [u.split(' ', 1)[1] for u in removed_api_uses(engine)] == ['device_memory_size']


def basedpyright():
    for candidate in (Path(sys.executable).parent / 'basedpyright', shutil.which('basedpyright')):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.skip('basedpyright is not installed (requirements-dev.txt)')


def stubs_root():
    spec = importlib.util.find_spec('tensorrt')
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / '__init__.pyi').is_file():
            return Path(location).parent
    pytest.skip('tensorrt-stubs is not installed (requirements-nodeps.txt)')


@pytest.mark.linter
def test_tensorrt_code_type_checks_against_the_published_api_and_a_misuse_fails(tmp_path):
    tool = basedpyright()
    stubs_root()
    planted = plant(tmp_path, BUILD, 'network = builder.create_network(flags)',
                    'network = builder.create_network_v2(flags)')
    # One run over the real modules (as configured in pyrightconfig.json) and the copy.
    result = subprocess.run([tool, '--outputjson', '--pythonpath', sys.executable,
                             *map(str, TENSORRT_CODE), str(planted)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    errors = [d for d in report['generalDiagnostics'] if d['severity'] == 'error']
    ours = [f"{d['file']}:{d['range']['start']['line'] + 1} {d['message']}" for d in errors
            if Path(d['file']) != planted]
    assert ours == [], '\n'.join(ours)
    found = [d['message'] for d in errors if Path(d['file']) == planted]
    assert any('create_network_v2' in m and 'Builder' in m for m in found), found
    assert report['summary']['filesAnalyzed'] == len(TENSORRT_CODE) + 1


def stub_names():
    """
    Return ({module-level name}, {class name: {member names}}) of the stubs.

    Read line by line: the generated .pyi is not all valid Python (a default argument before
    a plain one in tensorrt.pyi), so ``ast`` cannot parse it.
    """
    root = stubs_root()
    classes, module, members = {}, set(), None
    for path in (root / 'tensorrt' / '__init__.pyi', root / 'tensorrt_bindings' / '__init__.pyi',
                 root / 'tensorrt_bindings' / 'tensorrt.pyi'):
        for line in path.read_text().splitlines():
            top = re.match(r'(?:class|def) (\w+)|(\w+)\s*:|from \S+ import (\w+)(?: as (\w+))?',
                           line)
            if top:
                name = top.group(4) or top.group(3) or top.group(2) or top.group(1)
                module.add(name)
                members = (classes.setdefault(name, set()) if line.startswith('class ')
                           else None)
                continue
            inner = re.match(r'    (?:def (\w+)|(\w+)\s*:)', line)
            if inner and members is not None:
                members.add(inner.group(1) or inner.group(2))
    return module, classes


@pytest.mark.linter
def test_the_stand_in_uses_only_names_of_the_published_api():
    from test_tensorrt import make_fake_tensorrt

    module, classes = stub_names()
    fake = make_fake_tensorrt()
    test_only = {'builds', 'stand_ins'}
    names = {n for n in vars(fake) if not n.startswith('_')} - test_only
    assert names - module == set()
    for enum in ('DataType', 'TensorIOMode', 'NetworkDefinitionCreationFlag',
                 'MemoryPoolType'):
        members = set(vars(getattr(fake, enum)))
        assert members - classes[enum] == set(), enum
    for published, stand_in in fake.stand_ins.items():
        members = {n for n, v in vars(stand_in).items() if not n.startswith('_')
                   and (callable(v) or isinstance(v, property))}
        assert members - classes[published] == set(), published
    # A weakly typed build is impossible with the stand-in, as with TensorRT 11.
    assert not hasattr(fake, 'BuilderFlag') and not hasattr(fake, 'IInt8EntropyCalibrator2')
