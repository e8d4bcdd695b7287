#!/usr/bin/env bash
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
#
# GPU figures for docs/benchmarks.md ("GPU suite") in at most 8 minutes, on a machine with the
# repository copied over and no venv: the machine's python3 with whatever it has (PyTorch with
# CUDA; onnxruntime-gpu and several GPUs optional). No network. Each step runs under its own
# time limit and records ok, skipped (with the reason) or failed in one JSON file.
#
# Usage: benchmarks/gpu_suite.sh [--dry-run] [--out gpu_suite.json]
#   --dry-run  start every step and skip it (checks the script anywhere, GPU or not)

set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
OUT="gpu_suite.json"
DRY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=(--dry-run) ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '16,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# step:seconds; the limits add up to 7.5 minutes.
STEPS="torch:210 onnxruntime:90 train:90 nccl:60"
for entry in $STEPS; do
  step="${entry%%:*}"; limit="${entry##*:}"
  echo "=== $step (limit ${limit} s)"
  timeout --kill-after=10 "$limit" "$PYTHON" "$REPO/benchmarks/gpu_suite.py" "$step" \
    --out "$WORK/$step.json" "${DRY[@]}"
  code=$?
  if [ ! -s "$WORK/$step.json" ]; then
    reason="exit code $code"
    [ "$code" -eq 124 ] || [ "$code" -eq 137 ] && reason="over its ${limit} s limit"
    printf '{"status": "failed", "reason": "%s"}\n' "$reason" > "$WORK/$step.json"
    echo "step $step: failed ($reason)"
  fi
done

"$PYTHON" - "$WORK" "$OUT" "${DRY[@]}" <<'PY'
import json, platform, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
report = {'dry_run': '--dry-run' in sys.argv, 'python': platform.python_version(),
          'steps': {p.stem: json.loads(p.read_text()) for p in sorted(work.glob('*.json'))}}
out.write_text(json.dumps(report, indent=2))
print(json.dumps({k: v['status'] + (f" ({v['reason']})" if 'reason' in v else '')
                  for k, v in report['steps'].items()}, indent=2))
print(f'wrote {out}')
PY
