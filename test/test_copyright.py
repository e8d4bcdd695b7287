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
Every Python file starts with the project's Apache-2.0 copyright header.

The whole header, not an SPDX line: ament_copyright (a test_depend of package.xml, run by
colcon test) matches a file's first comment block against its Apache-2.0 header template word
for word; it knows SPDX identifiers only as license names in package.xml. The module's
docstring, right below the header, says what the module is.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {'build', 'install', 'log', 'demo_output', '__pycache__'}

HEADER = """\
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


def header_error(path):
    """
    Return why `path` lacks the project header, or None if it starts with it.

    A shebang line (``#!...``) may precede the header. Empty files (e.g. an empty
    ``__init__.py``) need no header.
    """
    text = Path(path).read_text(encoding='utf-8')
    if not text.strip():
        return None
    if text.startswith('#!'):
        text = text.split('\n', 1)[1] if '\n' in text else ''
    if text.startswith(HEADER):
        return None
    first = text.split('\n', 1)[0]
    return '%s: does not start with the project copyright header (first line: %r)' % (
        path, first)


def python_files(root):
    """Yield every .py file of the project under `root` (no hidden or build folders)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(('.', '_')) and d not in SKIP_DIRS
            and not d.endswith('.egg-info'))
        for name in sorted(filenames):
            if name.endswith('.py'):
                yield Path(dirpath) / name


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright_header():
    files = list(python_files(ROOT))
    assert ROOT / 'setup.py' in files
    errors = [e for e in (header_error(f) for f in files) if e]
    assert not errors, (
        '%d file(s) without the header (copy it from test/test_copyright.py):\n%s'
        % (len(errors), '\n'.join(errors)))


@pytest.mark.copyright
@pytest.mark.linter
def test_ament_copyright():
    ament_copyright_main = pytest.importorskip('ament_copyright.main').main
    excludes = [str(ROOT / name) for name in sorted(SKIP_DIRS)]
    assert ament_copyright_main(argv=[str(ROOT), '--exclude'] + excludes) == 0, \
        'Found copyright errors'


def test_header_checker_detects_missing_header(tmp_path):
    good = tmp_path / 'good.py'
    good.write_text(HEADER + '\n"""Doc."""\n', encoding='utf-8')
    shebang = tmp_path / 'shebang.py'
    shebang.write_text('#!/usr/bin/env python3\n' + HEADER, encoding='utf-8')
    missing = tmp_path / 'missing.py'
    missing.write_text('"""No header."""\nimport os\n', encoding='utf-8')
    late = tmp_path / 'late.py'
    late.write_text('import os\n' + HEADER, encoding='utf-8')
    altered = tmp_path / 'altered.py'
    altered.write_text(HEADER.replace('2026', '2025'), encoding='utf-8')
    empty = tmp_path / 'empty.py'
    empty.write_text('', encoding='utf-8')
    only_shebang = tmp_path / 'only_shebang.py'
    only_shebang.write_text('#!/usr/bin/env python3\nimport os\n', encoding='utf-8')

    assert header_error(good) is None
    assert header_error(shebang) is None
    assert header_error(empty) is None
    for bad in (missing, late, altered, only_shebang):
        assert header_error(bad) is not None, bad
    assert 'missing.py' in header_error(missing)
    assert sorted(p.name for p in python_files(tmp_path)) == [
        'altered.py', 'empty.py', 'good.py', 'late.py', 'missing.py', 'only_shebang.py',
        'shebang.py']
