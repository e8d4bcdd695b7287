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
``liteseg bag-eval --ray``: a local Ray instance, a worker killed mid-bag, a running cluster.

Not in the torch-free (lite) set: Ray is an optional extra (requirements-fleet.txt). Ray
runs with 1-2 CPUs and no dashboard, and every test shuts down what it started.
"""

import ctypes
import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import threading
import time

from fleet_bags import CallHook, IMAGE_TOPIC, LABEL_TOPIC
from liteseg_ros.bags import fleet, fleet_bag
from liteseg_ros.cli import main as liteseg_main
import pytest
from test_fleet import (bincount_matrix, check_fleet_summary, drives, FRAMES,  # noqa: F401
                        interrupted_run, topic_args)

ray = pytest.importorskip('ray')

RAY_BIN = Path(sys.executable).with_name('ray')
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def own_ray(request):
    """Start a local Ray instance for one test (2 CPUs, no dashboard); shut it down after."""
    # The workers unpickle KillOnce from this module: let them import it.
    path = os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={'env_vars': {'PYTHONPATH': path}})
    request.addfinalizer(ray.shutdown)
    return ray


def test_ray_local_three_bags_one_truncated(drives, tmp_path):  # noqa: F811
    out = tmp_path / 'out'
    # `--ray` before the bags: its optional address must not swallow the first bag.
    code = liteseg_main(['bag-eval', '--ray'] + [str(b) for b in drives['bags']] + [
        '--workers', '2', '--output', str(out)] + topic_args(drives['model']))
    assert code == 1  # the truncated bag failed
    summary = check_fleet_summary(out, drives)
    assert summary['run']['mode'] == 'ray' and summary['run']['workers'] == 2
    assert not ray.is_initialized()  # --ray local shut down the instance it started
    # ... and gave the main thread a signal stack of its own again, not Ray's freed one
    # (the conftest restores after every test, so this is run_on_ray's doing).
    from liteseg_ros.bags.fleet_ray import signal_stack, SIGNAL_STACK
    assert signal_stack() == ctypes.addressof(SIGNAL_STACK)


def test_three_workers_on_two_gpus_all_start(tmp_path):
    from liteseg_ros.bags import fleet_ray

    # Ray's GPUs are a resource count: a CPU machine can declare two.
    ray.init(num_cpus=3, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        request = fleet_bag.FleetRequest([IMAGE_TOPIC], model='m.onnx')
        workers, _, options = fleet_ray.worker_shape(ray, request, 3)

        @ray.remote
        class Placed:
            """An actor shaped like a fleet worker; answers once Ray has placed it."""

            def gpus(self):
                return ray.get_gpu_ids()

        actors = [Placed.options(**options).remote() for _ in range(workers)]
        ready, _ = ray.wait([a.gpus.remote() for a in actors], num_returns=workers,
                            timeout=60)
        assert len(ready) == workers == 3
        assigned = sorted(str(gpu) for gpus in ray.get(ready) for gpu in gpus)
        assert len(assigned) == 3 and len(set(assigned)) == 2  # two share one GPU
    finally:
        ray.shutdown()


class KillOnce:
    """
    Load the model; the first worker to reach its ``at``-th call waits there to be killed.

    It writes its pid to ``pid_file`` and sleeps; the test SIGKILLs it. After Ray restarts
    the actor, the file exists and no call waits again.
    """

    def __init__(self, pid_file, at):
        self.pid_file, self.at = str(pid_file), at

    def __call__(self, request):
        pid_file, at = self.pid_file, self.at

        def before(call):
            if call == at and not os.path.exists(pid_file):
                Path(pid_file).write_text(str(os.getpid()))
                time.sleep(120)

        return CallHook(request.load_segmenter(), before)


def test_worker_killed_mid_bag_is_retried_and_counted_once(
        drives, tmp_path, own_ray):  # noqa: F811
    out, pid_file = tmp_path / 'out', tmp_path / 'worker.pid'
    killed = {}

    def killer():
        deadline = time.monotonic() + 120
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        pid = int(pid_file.read_text())
        # Mid-bag: the first bag has written output but has no result yet.
        killed['partial'] = ((out / 'drive0' / 'bag').exists()
                             and not (out / 'drive0' / fleet_bag.RESULT_FILE).exists())
        os.kill(pid, signal.SIGKILL)
        killed['pid'] = pid

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    request = fleet_bag.FleetRequest([IMAGE_TOPIC], [LABEL_TOPIC],
                                     model=str(drives['model']), threads=1)
    summary = fleet.run_fleet(drives['bags'][:2], out, request, ray_address='local',
                              workers=1, progress=False, log=lambda text: None,
                              make_segmenter=KillOnce(pid_file, 3))
    thread.join(5)
    assert killed.get('pid') and killed['partial']
    assert fleet.exit_code(summary) == 0
    assert summary['bags']['ok'] == 2 and summary['frames'] == 2 * FRAMES
    record = json.loads((out / 'drive0' / fleet_bag.RESULT_FILE).read_text())
    assert record['frames'] == record['labelled_frames'] == FRAMES  # not doubled
    assert json.loads((out / 'drive0' / 'summary.json').read_text())['frames'] == FRAMES
    assert summary['confusion_matrix'] == bincount_matrix(
        drives['frames'][0] + drives['frames'][1]).tolist()
    assert ray.is_initialized()  # the caller's Ray instance is left running


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path):
    """Start a one-node Ray cluster with ``ray start --head`` (1 CPU); stop it after."""
    port = free_port()
    # Token authentication, as `ray start` sets it up by default; the driver needs the mode.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED='0', RAY_AUTH_MODE='token')
    subprocess.run([str(RAY_BIN), 'start', '--head', f'--port={port}', '--num-cpus=1',
                    '--include-dashboard=false', '--disable-usage-stats'], check=True,
                   env=env, capture_output=True, timeout=120)
    try:
        yield f'127.0.0.1:{port}', env
    finally:
        subprocess.run([str(RAY_BIN), 'stop', '--force'], env=env, capture_output=True,
                       timeout=120)


def test_resume_on_a_running_cluster(drives, tmp_path, ray_cluster):  # noqa: F811
    out = tmp_path / 'out'
    interrupted_run(drives, out)
    first = (out / 'drive0' / fleet_bag.RESULT_FILE).stat().st_mtime_ns
    address, env = ray_cluster
    # The command in its own process, as a user runs it against a cluster.
    done = subprocess.run(
        [sys.executable, '-m', 'liteseg_ros.cli', 'bag-eval'] + [str(b) for b in drives['bags']]
        + ['--ray', address, '--resume', '--output', str(out)] + topic_args(drives['model']),
        env=dict(env, PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert '1 of 3 bags have complete results; evaluating 2' in done.stdout
    assert (out / 'drive0' / fleet_bag.RESULT_FILE).stat().st_mtime_ns == first
    summary = check_fleet_summary(out, drives, resumed=1)
    assert summary['run']['mode'] == 'ray' and summary['run']['cluster']['CPU'] == 1
