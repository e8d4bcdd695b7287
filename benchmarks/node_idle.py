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
CPU that segment_node uses while it waits: two cameras configured, nothing published.

Starts the node as a subprocess (a small PP-LiteSeg-T exported to ONNX; the model does not
matter while no frame comes), waits until it reports 'active' on /diagnostics, then samples
utime + stime of its process from /proc/<pid>/stat over ``--seconds`` and prints the share of
one core (acceptance: <= 0.5 %), with the CPU model, its AVX flag and the load averages.

Usage::

    python benchmarks/node_idle.py [--seconds 60] [--cameras front rear] [--model MODEL]
"""

import argparse
import os
from pathlib import Path
import sys
import tempfile
import time

from liteseg_ros.ros.node_demo import stop_node
from node_bench import (default_model, listen_diagnostics, machine, prepare_dds, ros_node,
                        start_node, wait_until_active, write_params)


def cpu_seconds(pid):
    """Return utime + stime of process ``pid`` in seconds."""
    text = Path('/proc/%d/stat' % pid).read_text()
    fields = text[text.rindex(')') + 2:].split()  # after the command name, from field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--cameras', nargs='+', default=['front', 'rear'])
    parser.add_argument('--model', type=Path, help='model file (default: random T, ONNX)')
    args = parser.parse_args(argv)
    prepare_dds()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix='node_idle_') as scratch:
        model = args.model or default_model(scratch, input_size=[256, 512])
        params = write_params(Path(scratch) / 'params.yaml', model_path=str(model),
                              cameras=args.cameras, threads=1)
        log_path = Path(scratch) / 'node.log'
        process = start_node(params, log_path)
        try:
            with ros_node('node_idle') as (node, executor):
                diagnostics = listen_diagnostics(node)
                wait_until_active(executor, process, diagnostics, lambda: True, log_path)
            time.sleep(2.0)  # let start-up work (discovery, first diagnostics) settle
            start, began = cpu_seconds(process.pid), time.monotonic()
            time.sleep(args.seconds)
            used, elapsed = cpu_seconds(process.pid) - start, time.monotonic() - began
        finally:
            code = stop_node(process, 60)
    print('segment_node idle with cameras %s: %.2f s CPU in %.0f s = %.2f %% of a core '
          '(acceptance <= 0.5 %%: %s); exit code %s' % (
              ', '.join(args.cameras), used, elapsed, 100 * used / elapsed,
              'PASS' if 100 * used / elapsed <= 0.5 else 'FAIL', code))
    print('python %s; %s' % (sys.version.split()[0], machine()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
