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

"""benchmarks/gpu_suite.sh --dry-run: every step starts and skips, saying why, anywhere."""

import json
import os
from pathlib import Path
import subprocess
import sys

REPO = Path(__file__).resolve().parents[1]
STEPS = {'torch', 'onnxruntime', 'train', 'nccl'}


def test_gpu_suite_dry_run_starts_and_skips_every_step_with_its_reason(tmp_path):
    out = tmp_path / 'suite.json'
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop('PYTHONPATH', None)  # the script sets it to the repository, as on a bare machine
    result = subprocess.run([str(REPO / 'benchmarks' / 'gpu_suite.sh'), '--dry-run', '--out',
                             str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report['dry_run'] and set(report['steps']) == STEPS
    for step, entry in report['steps'].items():
        assert entry['status'] == 'skipped', (step, entry)
        assert entry['reason'], step
        assert f"step {step}: skipped ({entry['reason']})" in result.stdout
