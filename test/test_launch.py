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
The launch files, run by ``launch.LaunchService`` in a subprocess; the node must show up.

Needs the ROS 2 ``launch`` and ``launch_ros`` Python packages, which are not on PyPI: with a
sourced ROS 2 install they are there; otherwise these tests skip and say why. ``ros2 launch``
exits 0 even when its node crashed, so the tests look for the node itself: its name in the
ROS graph, its diagnostics (state active, the camera topics), a mask for a published frame,
and a clean exit on SIGINT. ``large_frames`` is checked on the node process itself (Linux
``/proc``): its environment, and the 64 MiB shared-memory segment of the shipped Fast DDS
profile in its address space.

The package must be findable by ``ament_index`` with the executable in
``<prefix>/lib/liteseg_ros/`` (colcon install, or ``make venv``). Where it is not, the test
builds a throwaway prefix in a temporary folder that points at this source tree.
"""

from importlib import metadata
import importlib.util
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import textwrap
import time

from liteseg_ros.sample_images import make_street_scene
import numpy as np
from onnx_models import onnx_model
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _launch_missing():
    for name in ('launch', 'launch_ros', 'rclpy', 'lifecycle_msgs', 'ament_index_python'):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin is None:  # None: absent, or a bare folder (namespace)
            return name
    try:
        import launch
        import launch_ros.actions  # noqa: F401
    except Exception as exc:  # an unrelated PyPI 'launch', or a broken install
        return 'launch_ros (%s)' % exc
    if not hasattr(launch, 'LaunchService'):
        return 'launch (the ROS 2 one; %s is something else)' % launch.__file__
    return None


MISSING = _launch_missing()
pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(
        MISSING is not None,
        reason='needs the ROS 2 launch and launch_ros Python packages (not on PyPI); %s is '
               'not importable: source a ROS 2 install, or put the ros2/launch and '
               'ros2/launch_ros sources on PYTHONPATH' % MISSING),
]

LAUNCHER = textwrap.dedent("""
    import sys
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    path, arguments = sys.argv[1], [a.split(':=', 1) for a in sys.argv[2:]]
    service = LaunchService()
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(path), launch_arguments=arguments)]))
    sys.exit(service.run())
""")


def package_prefix(tmp_path):
    """Return an ament prefix where liteseg_ros and its executable are found."""
    from ament_index_python.packages import get_package_prefix, PackageNotFoundError

    try:
        prefix = Path(get_package_prefix('liteseg_ros'))
        if os.access(prefix / 'lib' / 'liteseg_ros' / 'segment_node', os.X_OK) and (
                prefix / 'share' / 'liteseg_ros' / 'launch' / 'segment.launch.py').is_file():
            return None, prefix
    except PackageNotFoundError:
        pass
    prefix = tmp_path / 'prefix'
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'liteseg_ros').write_text('')
    share = prefix / 'share' / 'liteseg_ros'
    share.mkdir()
    for name in ('launch', 'config', 'package.xml'):
        (share / name).symlink_to(ROOT / name)
    lib = prefix / 'lib' / 'liteseg_ros'
    lib.mkdir(parents=True)
    executable = lib / 'segment_node'
    executable.write_text('#!/bin/sh\nexec "%s" -m liteseg_ros.ros.segment_node "$@"\n'
                          % sys.executable)
    executable.chmod(0o755)
    return prefix, prefix


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return onnx_model('t_128x256', tmp_path_factory)


@pytest.fixture
def client():
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('launch_test_client_%d' % (os.getpid() % 1000), context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def spin_until(executor, predicate, timeout, what, launch):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if launch.poll() is not None:
            break
        executor.spin_once(timeout_sec=0.1)
    if not predicate():
        pytest.fail('waiting for %s: %s' % (
            what, 'the launch exited' if launch.poll() is not None else 'timed out'))


def run_launch(tmp_path, launch_file, arguments):
    """Start the launch file under LaunchService in a subprocess; return (process, log)."""
    extra_prefix, prefix = package_prefix(tmp_path)
    # No Fast DDS profile inherited from the caller: large_frames alone decides.
    env = {k: v for k, v in os.environ.items()
           if k not in ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')}
    if extra_prefix is not None:
        env['AMENT_PREFIX_PATH'] = os.pathsep.join(
            [str(extra_prefix)] + [p for p in env.get('AMENT_PREFIX_PATH', '').split(
                os.pathsep) if p])
    env['PYTHONUNBUFFERED'] = '1'
    path = prefix / 'share' / 'liteseg_ros' / 'launch' / launch_file
    log = tmp_path / 'launch.log'
    process = subprocess.Popen(
        [sys.executable, '-c', LAUNCHER, str(path)] + ['%s:=%s' % kv for kv in arguments],
        stdout=open(log, 'w'), stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path),
        start_new_session=True)  # its own process group, as in a terminal
    return process, log


def stop_launch(process, log):
    """Ctrl-C the launch (SIGINT to its process group); return its exit code and output."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode, Path(log).read_text(errors='replace')


def diagnostics_of(node, executor, launch, names, timeout=60):
    """Return {status name: (message, values)} once every name in names was seen."""
    from diagnostic_msgs.msg import DiagnosticArray

    seen = {}

    def record(msg):
        for status in msg.status:
            seen[status.name] = (status.message, {kv.key: kv.value for kv in status.values})

    subscription = node.create_subscription(DiagnosticArray, '/diagnostics', record, 20)
    try:
        spin_until(executor, lambda: all(n in seen and seen[n][0] != 'unconfigured, not '
                                         'segmenting' for n in names), timeout,
                   'diagnostics %s' % names, launch)
    finally:
        node.destroy_subscription(subscription)
    return seen


def test_segment_launch_starts_the_node(tmp_path, model, client):
    """segment.launch.py with the installed config: node up in its namespace, masks out."""
    from liteseg_ros.ros.messages import rgb8_message
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    node, executor = client
    launch, log = run_launch(tmp_path, 'segment.launch.py', [
        ('model_path', model), ('cameras', 'front'), ('namespace', 'car'),
        ('log_level', 'debug'), ('use_sim_time', 'false')])
    try:
        spin_until(executor, lambda: ('segment_node', '/car') in
                   node.get_node_names_and_namespaces(), 60, 'node /car/segment_node', launch)
        seen = diagnostics_of(node, executor, launch, ['segment_node: node',
                                                       'segment_node: front'])
        message, values = seen['segment_node: node']
        assert message == 'active', seen
        assert str(model) in values['model']
        assert seen['segment_node: front'][1]['topic'] == 'front/image_raw'

        masks = []
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, '/car/front/segmentation/mask', masks.append, qos)
        publisher = node.create_publisher(Image, '/car/front/image_raw', qos)
        spin_until(executor, lambda: publisher.get_subscription_count() > 0, 30,
                   'the node to subscribe to /car/front/image_raw', launch)
        frame = make_street_scene(96, 160, seed=1)
        deadline = time.monotonic() + 60
        while not masks and time.monotonic() < deadline and launch.poll() is None:
            msg = rgb8_message(frame)
            msg.header.frame_id = 'front'
            msg.header.stamp = node.get_clock().now().to_msg()
            publisher.publish(msg)
            executor.spin_once(timeout_sec=0.5)
        assert masks, 'no mask on /car/front/segmentation/mask'
        mask = np.frombuffer(masks[0].data, np.uint8).reshape(96, 160)
        from liteseg_ros.inference import Segmenter
        np.testing.assert_array_equal(mask, Segmenter.from_file(model).segment(frame).mask)
    finally:
        code, output = stop_launch(launch, log)
    assert code == 0, output[-4000:]
    # The node stopped on SIGINT by itself (launch escalates to SIGTERM after 5 s otherwise).
    assert 'process has finished cleanly' in output, output[-4000:]
    assert 'escalating' not in output, output[-4000:]
    assert '[DEBUG]' in output  # log_level:=debug reached the node
    assert 'Traceback' not in output, output[-4000:]


def test_multi_camera_launch_serves_two_cameras(tmp_path, model, client):
    """multi_camera.launch.py: one node, statuses for /front and /rear."""
    node, executor = client
    launch, log = run_launch(tmp_path, 'multi_camera.launch.py', [('model_path', model)])
    try:
        seen = diagnostics_of(node, executor, launch, [
            'segment_node: node', 'segment_node: /front', 'segment_node: /rear'])
        assert seen['segment_node: node'][0] == 'active', seen
        assert seen['segment_node: /rear'][1]['topic'] == '/rear/image_raw'
        topics = dict(node.get_topic_names_and_types())
        assert '/front/segmentation/drivable_area' in topics, sorted(topics)
    finally:
        code, output = stop_launch(launch, log)
    assert code == 0, output[-4000:]
    # The node stopped on SIGINT by itself (launch escalates to SIGTERM after 5 s otherwise).
    assert 'process has finished cleanly' in output, output[-4000:]
    assert 'escalating' not in output, output[-4000:]


def node_pid(launch, log, timeout=60):
    """Return the pid of the node process (launch logs 'process started with pid [N]')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launch.poll() is None:
        found = re.search(r'segment_node-\d+\]: process started with pid \[(\d+)\]',
                          Path(log).read_text(errors='replace'))
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    pytest.fail('no node process started: %s' % (
        'the launch exited' if launch.poll() is not None else 'timed out'))


def process_environment(pid):
    """Return the environment a process was started with."""
    entries = Path('/proc/%d/environ' % pid).read_bytes().split(b'\0')
    return dict(e.decode(errors='replace').split('=', 1) for e in entries if b'=' in e)


def shared_memory_segments(pid):
    """Return {path: mapped bytes} of the Fast DDS shared-memory segments of a process."""
    segments = {}
    for line in Path('/proc/%d/maps' % pid).read_text().splitlines():
        fields = line.split()
        if len(fields) == 6 and re.match(r'/dev/shm/fast(rtps|dds)_[0-9a-f]+$', fields[5]):
            start, end = (int(address, 16) for address in fields[0].split('-'))
            segments[fields[5]] = segments.get(fields[5], 0) + end - start
    return segments


def expected_large_frames_default():
    """Return the default of large_frames: on with Fast DDS 2 (Jazzy), off with 3 (Kilted)."""
    from liteseg_ros.ros.dds import fast_dds_major, large_frames_by_default

    major = fast_dds_major()
    assert major in (2, 3), 'Fast DDS major version unknown: %s' % major
    try:  # rclpy 7 is Jazzy (Fast DDS 2.14), 9 Kilted (Fast DDS 3); older ones had Fast DDS 2
        rclpy_major = int(metadata.version('rclpy').split('.')[0])
    except (metadata.PackageNotFoundError, ValueError):
        rclpy_major = None
    if rclpy_major is not None:
        assert major == (2 if rclpy_major <= 7 else 3), (major, rclpy_major)
    assert large_frames_by_default() == (major == 2)
    return major == 2


def declared_arguments(launch_file):
    """Return {name: default} of the arguments ``launch_file`` declares (ros2 launch -s)."""
    from launch import LaunchContext
    from launch.utilities import perform_substitutions

    spec = importlib.util.spec_from_file_location(launch_file, ROOT / 'launch' / launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {a.name: perform_substitutions(LaunchContext(), a.default_value)
            for a in module.generate_launch_description().get_launch_arguments()}


def test_multi_camera_declares_what_it_forwards_with_segments_defaults():
    segment = declared_arguments('segment.launch.py')
    multi = declared_arguments('multi_camera.launch.py')
    assert multi['large_frames'] == segment['large_frames'] == (
        'true' if expected_large_frames_default() else 'false')
    for name in ('model_path', 'namespace', 'use_sim_time', 'log_level'):
        assert multi[name] == segment[name], name
    assert multi['cameras'] == '/front,/rear'


@pytest.mark.skipif(not Path('/proc/self/maps').is_file(), reason='reads /proc (Linux)')
@pytest.mark.parametrize('launch_file, large_frames', [
    ('segment.launch.py', 'true'), ('segment.launch.py', 'false'), ('segment.launch.py', None),
    ('multi_camera.launch.py', 'true'), ('multi_camera.launch.py', 'false')])
def test_large_frames_profile(tmp_path, model, client, launch_file, large_frames):
    """large_frames: the node gets the installed profile (and maps its 64 MiB) or does not."""
    from liteseg_ros.ros.dds import fast_dds_major, PROFILE_NAME, PROFILES_ENVS

    node, executor = client
    arguments = [('model_path', model)]
    if large_frames is not None:
        arguments.append(('large_frames', large_frames))
    wanted = (large_frames == 'true' if large_frames is not None
              else expected_large_frames_default())
    launch, log = run_launch(tmp_path, launch_file, arguments)
    try:
        pid = node_pid(launch, log)
        environment = process_environment(pid)
        # Active (and so its participant and shared-memory segment exist); a SIGINT while it
        # is still starting would test something else.
        seen = diagnostics_of(node, executor, launch, ['segment_node: node'])
        assert seen['segment_node: node'][0] == 'active', seen
        segments = shared_memory_segments(pid)
    finally:
        code, output = stop_launch(launch, log)
    assert code == 0, output[-4000:]
    assert 'Traceback' not in output, output[-4000:]
    assert segments, 'no Fast DDS shared-memory segment in the node process'
    if wanted:
        # The name this Fast DDS reads without a deprecation warning, and only that one.
        name = PROFILES_ENVS[0] if fast_dds_major() >= 3 else PROFILES_ENVS[1]
        assert [n for n in PROFILES_ENVS if n in environment] == [name], sorted(environment)
        profile = environment[name]
        # rmw_fastrtps warns when a Fast DDS 3 participant reads the old variable.
        assert 'but it is deprecated' not in output, output[-4000:]
        # The installed copy (share/liteseg_ros/config), which is the shipped file.
        assert Path(profile).parts[-4:] == ('share', 'liteseg_ros', 'config', PROFILE_NAME)
        assert Path(profile).samefile(ROOT / 'config' / PROFILE_NAME)
        assert max(segments.values()) >= 64 << 20, segments  # the profile's segment_size
    else:
        assert not [n for n in PROFILES_ENVS if n in environment]
        assert max(segments.values()) < 64 << 20, segments  # Fast DDS's default (512 KiB)
