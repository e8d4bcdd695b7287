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
What the node benchmarks (node_throughput.py, node_soak.py) share.

The model they default to, the DDS settings of both processes, starting ``segment_node`` as a
subprocess with a params file, this process's ROS node, and waiting for the node to be active.
rclpy is imported only when a ROS node is made.
"""

import contextlib
import os
from pathlib import Path
import random
import subprocess
import time

from bench_models import default_model  # noqa: F401 (the node benchmarks import it here)
from liteseg_ros.inference.bench import cpu_info, widest_avx
from liteseg_ros.ros.node_demo import node_command
import yaml

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 300


def machine():
    """Return the CPU model, its widest AVX flag and the load averages, for every figure."""
    model, _, flags = cpu_info()
    load = ' '.join('%.2f' % v for v in os.getloadavg())
    return '%s (%s, %d CPUs); load average %s' % (model, widest_avx(flags), os.cpu_count(), load)


def prepare_dds():
    """
    Set up this process (and the node it starts, which inherits the environment) for DDS.

    The node's allocator settings (see segment_node), Fast DDS's LARGE_DATA transports (on
    Fast DDS 2, Jazzy, the shipped ``config/fastdds_large_frames.xml`` instead, unless a
    profiles file is set: its LARGE_DATA shared-memory segment is too small for a 6 MB frame,
    which then goes over TCP/UDP and is mostly lost with best effort, 3-73 of 240 frames at
    30 Hz in 8 s, against 240 of 240 with the profile), and a random ``ROS_DOMAIN_ID`` that
    keeps other nodes out (unless one is set).
    """
    from liteseg_ros.ros.dds import (large_frames_by_default, large_frames_profile,
                                     PROFILES_ENVS, profiles_env)
    from liteseg_ros.ros.segment_node import keep_large_buffers_in_heap

    keep_large_buffers_in_heap()
    os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
    if large_frames_by_default() and not any(os.environ.get(n) for n in PROFILES_ENVS):
        os.environ[profiles_env()] = str(large_frames_profile())
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(120, 200)))


def write_params(path, **parameters):
    """Write a segment_node params file setting ``parameters``; return its path."""
    path = Path(path)
    path.write_text(yaml.safe_dump({'/**/segment_node': {'ros__parameters': parameters}},
                                   sort_keys=False))
    return path


def start_node(params, log_path, env=None):
    """Start ``segment_node`` with the params file ``params``, output to ``log_path``."""
    with open(log_path, 'w') as log:
        return subprocess.Popen(node_command() + ['--ros-args', '--params-file', str(params)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)


@contextlib.contextmanager
def ros_node(name):
    """Yield (node, executor) of a ROS node ``name`` in a context of its own; shut it down."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def listen_diagnostics(node):
    """Return a dict that /diagnostics keeps up to date: {status name: (message, values)}."""
    from diagnostic_msgs.msg import DiagnosticArray

    diagnostics = {}

    def on_diagnostics(msg):
        for status in msg.status:
            diagnostics[status.name] = (status.message,
                                        {kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    return diagnostics


def wait_until_active(executor, process, diagnostics, connected, log_path):
    """
    Spin until the node reports 'active' and ``connected()`` is true.

    :raises RuntimeError: the node exited or took over START_TIMEOUT_S; with its log's end.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (diagnostics.get('segment_node: node', ('',))[0] == 'active' and connected()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError('the node did not start; log:\n'
                               + Path(log_path).read_text()[-3000:])
        executor.spin_once(timeout_sec=0.1)
