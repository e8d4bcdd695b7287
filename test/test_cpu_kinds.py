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

"""The AVX2-only CPU kind of benchmarks/cpu_backends.py: CPUID masked by a preload library."""

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.lite

SOURCE = Path(__file__).resolve().parents[1] / 'benchmarks' / 'cpu_kinds' / 'avx2_only.c'
# numpy computes its dispatch table from CPUID at import: what the masked process sees.
PROBE = ('import json; from numpy._core._multiarray_umath import __cpu_features__ as f; '
         "print(json.dumps({k: f.get(k, False) for k in ('AVX2', 'FMA3', 'AVX512F', "
         "'AVX512_SKX', 'AVX512_CLX', 'AVX512_CPX', 'AVX512_SPR')}))")


def cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            return next((set(line.split(':')[1].split()) for line in f
                         if line.startswith('flags')), set())
    except OSError:
        return set()


@pytest.fixture(scope='module')
def library(tmp_path_factory):
    """Build the preload library once for the module."""
    if shutil.which('cc') is None:
        pytest.skip('needs a C compiler')
    if 'cpuid_fault' not in cpu_flags():
        pytest.skip('needs CPUID faulting')
    path = tmp_path_factory.mktemp('preload') / 'avx2_only.so'
    subprocess.run(['cc', '-O2', '-shared', '-fPIC', '-o', str(path), str(SOURCE)], check=True)
    return path


def seen(env):
    out = subprocess.run([sys.executable, '-c', PROBE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_preload_shows_an_avx2_only_cpu_and_the_program_still_runs(library):
    native = seen(dict(os.environ))
    masked = seen(dict(os.environ, LD_PRELOAD=str(library)))
    assert masked == dict.fromkeys(masked, False) | {'AVX2': True, 'FMA3': True}
    if 'avx512f' in cpu_flags():  # on an AVX-512 CPU the check can tell
        assert native['AVX512F'] and native['AVX2']


def test_a_real_segfault_under_the_preload_still_kills_the_process(library):
    code = 'import ctypes; ctypes.string_at(0)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, timeout=60,
                         env=dict(os.environ, LD_PRELOAD=str(library)))
    assert out.returncode == -11  # SIGSEGV, not a hang in the handler
