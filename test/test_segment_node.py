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
segment_node end to end: the node as a real process, frames over real DDS, outputs checked.

The node runs as its installed executable (``segment_node`` on PATH or next to the Python
interpreter; ``python -m liteseg_ros.ros.segment_node`` otherwise) with a YAML params file
and a small seeded model (PP-LiteSeg-T at 128x256, ONNX with a dynamic batch). This process
publishes frames and checks every output against ``Segmenter`` run here on the same frames,
the headers, the drivable area against a flood fill written here, batching across cameras,
bad input, model failures with lifecycle retries, and a clean exit on SIGINT.
"""

from collections import deque
import functools
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time

from builtin_interfaces.msg import Time
import cv2
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from liteseg_ros.inference import Segmenter
from liteseg_ros.inference.visualize import colorize, overlay
from liteseg_ros.ros.messages import encoded_image_message
from liteseg_ros.sample_images import make_street_scene
from malformed_images import malformed_compressed_messages, malformed_image_messages
from model_fixtures import make_checkpoint
import numpy as np
from onnx_models import onnx_model
import pytest
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ('mask', 'mask/compressed', 'color', 'overlay', 'confidence', 'drivable_area')
ALPHA = 0.4
SIZES = {'cam0': (240, 320), 'cam1': (180, 360)}  # (height, width) per camera


def node_command():
    """Return the command that starts the installed node."""
    for candidate in (shutil.which('segment_node'),
                      os.path.join(os.path.dirname(sys.executable), 'segment_node')):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    return [sys.executable, '-m', 'liteseg_ros.ros.segment_node']


def write_params(path, **params):
    """Write a ROS 2 params file for segment_node (any namespace)."""
    def value(v):
        if isinstance(v, bool):
            return 'true' if v else 'false'
        if isinstance(v, (list, tuple)):
            return '[' + ', '.join(value(x) for x in v) + ']'
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        return repr(v)

    lines = ['/**/segment_node:', '  ros__parameters:']
    lines += ['    %s: %s' % (k, value(v)) for k, v in params.items()]
    Path(path).write_text('\n'.join(lines) + '\n')
    return path


class NodeProcess:
    """The node as a subprocess; stop() sends SIGINT and returns the exit code."""

    def __init__(self, params_file, log_path, extra_args=()):
        """Start the node with ``--ros-args --params-file params_file``."""
        self.log_path = Path(log_path)
        self._log = open(self.log_path, 'w')
        env = dict(os.environ)
        env.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
        env['PYTHONUNBUFFERED'] = '1'
        env['RCUTILS_LOGGING_BUFFERED_STREAM'] = '0'
        self.process = subprocess.Popen(
            node_command() + ['--ros-args', '--params-file', str(params_file)] + list(extra_args),
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))

    def alive(self):
        """Return True while the process runs."""
        return self.process.poll() is None

    def log(self):
        """Return everything the node printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors='replace')

    def stop(self, timeout=30):
        """Send SIGINT, wait, return the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


class Client:
    """A test node: publishers to the cameras, subscribers to every output and diagnostics."""

    def __init__(self, context, name):
        """Create the node and the diagnostics subscription."""
        self.context = context
        self.node = rclpy.create_node(name, context=context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.received = {}
        self.subscriptions = {}
        self.diagnostics = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            level = status.level
            level = level[0] if isinstance(level, bytes) else int(level)
            self.diagnostics[status.name] = (level, status.message,
                                             {kv.key: kv.value for kv in status.values})

    def subscribe(self, camera, outputs=OUTPUTS):
        """Subscribe to the camera's outputs (reliable, deep queue)."""
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for output in outputs:
            key = (camera, output)
            self.received[key] = deque()
            msg_type = CompressedImage if output == 'mask/compressed' else Image
            self.subscriptions[key] = self.node.create_subscription(
                msg_type, '/%s/segmentation/%s' % (camera, output),
                lambda msg, key=key: self.received[key].append(msg), qos)

    def unsubscribe(self, camera):
        """Destroy the camera's output subscriptions."""
        for key in [k for k in self.subscriptions if k[0] == camera]:
            self.node.destroy_subscription(self.subscriptions.pop(key))

    def publisher(self, topic, msg_type=Image, depth=10):
        """Return a reliable publisher on topic."""
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        return self.node.create_publisher(msg_type, topic, qos)

    def spin_until(self, predicate, timeout, what):
        """Spin until predicate() is true; fail naming what after timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            self.executor.spin_once(timeout_sec=0.05)
        if predicate():
            return
        pytest.fail('timed out after %.0f s waiting for %s' % (timeout, what))

    def wait_diagnostics(self, name, predicate, timeout, what):
        """Wait until the latest status ``name`` satisfies predicate(level, message, values)."""
        def check():
            status = self.diagnostics.get('segment_node: ' + name)
            return status is not None and predicate(*status)
        try:
            self.spin_until(check, timeout, what)
        except pytest.fail.Exception:
            pytest.fail('%s; last diagnostics: %r' % (what, self.diagnostics.get(
                'segment_node: ' + name)))
        return self.diagnostics['segment_node: ' + name]

    def call(self, srv_type, name, request, timeout=30.0):
        """Call a service and return the response."""
        client = self.node.create_client(srv_type, name)
        try:
            self.spin_until(lambda: client.service_is_ready(), timeout, 'service ' + name)
            future = client.call_async(request)
            self.spin_until(future.done, timeout, 'response of ' + name)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def destroy(self):
        """Destroy the node."""
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture(scope='module')
def ros_context():
    """Yield an rclpy context of its own, with the LARGE_DATA Fast DDS transports."""
    old = os.environ.get('FASTDDS_BUILTIN_TRANSPORTS')
    os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    yield context
    rclpy.try_shutdown(context=context)
    if old is None:
        os.environ.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
    else:
        os.environ['FASTDDS_BUILTIN_TRANSPORTS'] = old


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """Return a seeded PP-LiteSeg-T at 128x256 (dynamic-batch ONNX), Segmenters, a bad file."""
    path = onnx_model('t_128x256', tmp_path_factory)
    corrupt = tmp_path_factory.mktemp('node_model') / 'corrupt.onnx'
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    return {
        'onnx': path, 'corrupt': corrupt,
        'plain': Segmenter.from_file(path, threads=1),
        'confidence': Segmenter.from_file(path, threads=1, confidence=True),
    }


@pytest.fixture
def client(ros_context, request):
    c = Client(ros_context, 'segment_node_test_%d' % (os.getpid() % 1000))
    yield c
    c.destroy()


@pytest.fixture
def run_node(tmp_path):
    """Start nodes; at teardown check each exits with code 0 on SIGINT."""
    nodes = []

    def start(**params):
        index = len(nodes)
        path = write_params(tmp_path / ('params%d.yaml' % index), **params)
        node = NodeProcess(path, tmp_path / ('node%d.log' % index))
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        was_alive = node.alive()
        code = node.stop()
        log = node.log_path.read_text(errors='replace')
        assert was_alive, 'the node died during the test:\n' + log[-4000:]
        assert code == 0, 'exit code %s on SIGINT:\n%s' % (code, log[-4000:])
        assert 'Traceback' not in log, log[-4000:]


def stamp_now(offset_s=0.0):
    """Return a builtin_interfaces/Time of the wall clock plus offset."""
    ns = time.time_ns() + int(offset_s * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(frame_id, stamp):
    h = Header()
    h.frame_id = frame_id
    h.stamp = stamp
    return h


def image_array(msg):
    """Read an Image output as numpy, independently of image_codecs."""
    channels = {'mono8': 1, 'rgb8': 3}[msg.encoding]
    assert msg.step == msg.width * channels
    arr = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, channels)
    return arr[:, :, 0] if channels == 1 else arr


def connected_reference(mask, drivable_ids):
    """Drivable region at the bottom centre: seed rule of the node, breadth-first fill."""
    drivable = np.isin(mask, drivable_ids)
    height, width = drivable.shape
    region = np.zeros_like(drivable)
    bottom = np.flatnonzero(drivable[-1])
    if not bottom.size:
        return region.astype(np.uint8) * 255
    centre = width // 2
    column = centre if drivable[-1, centre] else int(bottom[np.argmin(np.abs(bottom - centre))])
    queue = deque([(height - 1, column)])
    region[height - 1, column] = True
    while queue:
        y, x = queue.popleft()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < height and 0 <= nx < width and drivable[ny, nx] and not region[ny, nx]:
                region[ny, nx] = True
                queue.append((ny, nx))
    return region.astype(np.uint8) * 255


def same_header(msg, expected):
    return (msg.header.frame_id == expected.frame_id
            and msg.header.stamp.sec == expected.stamp.sec
            and msg.header.stamp.nanosec == expected.stamp.nanosec)


def check_outputs(client, camera, sent_header, frame, result, segmenter, drivable_ids,
                  drivable_mode, outputs=OUTPUTS):
    """Pop this frame's outputs and compare each with the offline result."""
    got = {}
    for output in outputs:
        queue = client.received[(camera, output)]
        matches = [m for m in queue if same_header(m, sent_header)]
        assert len(matches) == 1, '%s %s: %d messages with the sent header' % (
            camera, output, len(matches))
        got[output] = matches[0]
        queue.remove(matches[0])
    height, width = frame.shape[:2]
    mask = image_array(got['mask'])
    assert got['mask'].encoding == 'mono8' and mask.shape == (height, width)
    np.testing.assert_array_equal(mask, result.mask, err_msg='%s mask' % camera)
    png = cv2.imdecode(np.frombuffer(got['mask/compressed'].data, np.uint8),
                       cv2.IMREAD_UNCHANGED)
    assert 'png' in got['mask/compressed'].format
    np.testing.assert_array_equal(png, result.mask)
    color = image_array(got['color'])
    assert got['color'].encoding == 'rgb8'
    np.testing.assert_array_equal(color, colorize(result.mask, segmenter.palette))
    blend = image_array(got['overlay'])
    expected_blend = overlay(frame, colorize(result.mask, segmenter.palette), ALPHA)
    assert np.abs(blend.astype(int) - expected_blend).max() <= 1  # cv2 vs numpy rounding
    confidence = image_array(got['confidence'])
    expected_confidence = np.clip(np.rint(result.confidence * 255.0), 0, 255)
    # One grey level: the float32 confidence rounds to either side of a .5 step.
    assert np.abs(confidence.astype(int) - expected_confidence).max() <= 1
    drivable = image_array(got['drivable_area'])
    if drivable_mode == 'connected':
        expected = connected_reference(result.mask, drivable_ids)
    else:
        expected = np.isin(result.mask, drivable_ids).astype(np.uint8) * 255
    np.testing.assert_array_equal(drivable, expected, err_msg='%s drivable_area' % camera)
    return got


def frames_for(seed):
    return {cam: make_street_scene(h, w, seed=seed + 7 * i)
            for i, (cam, (h, w)) in enumerate(SIZES.items())}


def wait_for_outputs(client, cameras, sent, timeout=60.0):
    def arrived():
        return all(any(same_header(m, sent[cam]) for m in client.received[(cam, out)])
                   for cam in cameras for out in OUTPUTS if (cam, out) in client.received)
    client.spin_until(arrived, timeout, 'the outputs of %s' % ', '.join(cameras))


def wait_matched(client, publishers, timeout=30.0):
    client.spin_until(lambda: all(p.get_subscription_count() > 0 for p in publishers)
                      and all(s.get_publisher_count() > 0 for s in client.subscriptions.values()),
                      timeout, 'the node to match the test topics')


def test_outputs_match_offline_and_cameras_batch(model, client, run_node):
    """Two cameras (rgb8, bgr8): every output equals the offline result; frames batch."""
    seg = model['confidence']
    config = seg.config
    sequences = [frames_for(seed) for seed in range(4)]
    # Drivable classes: the class under the bottom centre of the first cam0 frame (the seed
    # pixel is drivable) and cam1's most common bottom-row class (other frames fall back).
    first = seg([sequences[0]['cam0'], sequences[0]['cam1']])
    h0, w0 = first[0].mask.shape
    drivable_ids = sorted({int(first[0].mask[h0 - 1, w0 // 2]),
                           int(np.bincount(first[1].mask[-1]).argmax())})
    names = [config['class_names'][i].upper() for i in drivable_ids]  # names match any case

    node = run_node(model_path=str(model['onnx']), cameras=['cam0', 'cam1'], threads=1,
                    batch_timeout_ms=3000.0, max_frame_age_ms=20000.0,
                    qos_reliability='reliable', qos_depth=5,
                    overlay_alpha=ALPHA, drivable_classes=names, drivable_mode='connected',
                    diagnostics_period_s=0.2)
    for camera in SIZES:
        client.subscribe(camera)
    publishers = {'cam0': client.publisher('/cam0/image_raw'),
                  'cam1': client.publisher('/cam1/image_raw')}
    wait_matched(client, publishers.values())
    client.wait_diagnostics('node', lambda level, message, v: message == 'active', 60,
                            'the node to become active')

    fallbacks = pruned = 0
    for index, frames in enumerate(sequences):
        sent = {cam: header('%s_optical_frame' % cam, stamp_now()) for cam in SIZES}
        publishers['cam0'].publish(encoded_image_message(frames['cam0'], 'rgb8', sent['cam0']))
        publishers['cam1'].publish(encoded_image_message(frames['cam1'], 'bgr8', sent['cam1']))
        wait_for_outputs(client, SIZES, sent)
        # The node ran both frames as one batch (checked below): so does the reference.
        results = seg([frames['cam0'], frames['cam1']])
        for (camera, frame), result in zip(frames.items(), results):
            check_outputs(client, camera, sent[camera], frame, result, seg, drivable_ids,
                          'connected')
            height, width = result.mask.shape
            fallbacks += result.mask[height - 1, width // 2] not in drivable_ids
            pruned += (connected_reference(result.mask, drivable_ids).sum() // 255
                       < np.isin(result.mask, drivable_ids).sum())
    # The frames exercise both seed rules and the pruning of unconnected drivable pixels.
    assert 0 < fallbacks < 2 * len(sequences) and pruned > 0, (fallbacks, pruned)

    # Every frame went through a batch of two, and the node reports it.
    for camera in SIZES:
        _, _, values = client.wait_diagnostics(
            camera, lambda level, m, v: int(v['frames_published']) >= len(sequences), 10,
            '%s frames_published' % camera)
        assert values['multi_camera_batched'] == str(len(sequences)), values
        assert values['last_batch_size'] == '2' and values['decode_errors'] == '0', values
    _, _, values = client.diagnostics['segment_node: node']
    assert values['batch_sizes'] == '2:%d' % len(sequences), values

    # A frame older than max_frame_age_ms is dropped and counted. (The limit is generous here:
    # a sample that DDS has to resend can take a heartbeat period, seconds, to arrive.)
    old = {cam: header('%s_optical_frame' % cam, stamp_now(-120.0)) for cam in SIZES}
    for cam, pub in publishers.items():
        pub.publish(encoded_image_message(sequences[0][cam], 'rgb8', old[cam]))
    client.wait_diagnostics('cam0', lambda level, m, v: v['dropped_stale'] == '1', 30,
                            'the stale frame to be dropped')
    assert not any(same_header(m, old['cam0']) for m in client.received[('cam0', 'mask')])
    assert 'older than max_frame_age_ms' in node.log()

    # Nobody listens to cam1 any more: its frames are not segmented, cam0's still are.
    client.unsubscribe('cam1')
    client.spin_until(lambda: node_sees_no_subscriber(client, 'cam1'), 30,
                      'the node to see cam1 unsubscribed')
    sent = {cam: header('%s_optical_frame' % cam, stamp_now()) for cam in SIZES}
    for cam, pub in publishers.items():
        pub.publish(encoded_image_message(sequences[1][cam], 'rgb8', sent[cam]))
    wait_for_outputs(client, ['cam0'], sent)
    client.wait_diagnostics('cam1', lambda level, m, v: v['skipped_no_subscribers'] == '1', 30,
                            'cam1 to be skipped')


def node_sees_no_subscriber(client, camera):
    names = [t for t, _ in client.node.get_topic_names_and_types()
             if t.startswith('/%s/segmentation/' % camera)]
    return all(client.node.count_subscribers(t) == 0 for t in names)


def test_malformed_images_are_rejected_and_counted(model, client, run_node):
    """1000 malformed raw images: each rejected, counted, logged throttled; node carries on."""
    count = 1000
    node = run_node(model_path=str(model['onnx']), cameras=['cam0'], threads=1,
                    qos_reliability='reliable', qos_depth=count + 10, max_frame_age_ms=0,
                    drivable_classes=['road', 'sidewalk'], overlay_alpha=ALPHA,
                    diagnostics_period_s=0.2)
    client.subscribe('cam0')
    publisher = client.publisher('/cam0/image_raw', depth=count + 10)
    wait_matched(client, [publisher])
    client.wait_diagnostics('node', lambda level, message, v: message == 'active', 60,
                            'the node to become active')
    kinds = set()
    for description, msg in malformed_image_messages(count, seed=4):
        kinds.add(description.split(' (')[0].split(" '")[0])
        publisher.publish(msg)
    assert len(kinds) >= 10, kinds
    _, _, values = client.wait_diagnostics(
        'cam0', lambda level, m, v: v['decode_errors'] == str(count), 120,
        '%d decode errors in diagnostics' % count)
    assert values['frames_published'] == '0', values
    assert node.alive()
    log = node.log()
    rejections = [line for line in log.splitlines() if 'rejected an image' in line]
    assert rejections and len(rejections) < count / 10, len(rejections)  # throttled
    assert all("camera 'cam0'" in line and 'encoding' in line for line in rejections)

    # The next good frame is segmented correctly (drivable_mode classes here).
    frame = make_street_scene(240, 320, seed=11)
    sent = header('cam0_optical_frame', stamp_now())
    publisher.publish(encoded_image_message(frame, 'rgb8', sent))
    wait_for_outputs(client, ['cam0'], {'cam0': sent})
    result = model['confidence']([frame])[0]
    check_outputs(client, 'cam0', sent, frame, result, model['confidence'], [0, 1], 'classes')


def test_malformed_compressed_images_are_rejected(model, client, run_node):
    """Corrupt JPEG/PNG messages are rejected and counted; good PNG/JPEG frames still work."""
    count = 300
    node = run_node(model_path=str(model['onnx']), cameras=['cam0'], transport='compressed',
                    threads=1, qos_reliability='reliable', qos_depth=count + 10,
                    max_frame_age_ms=0, diagnostics_period_s=0.2)
    client.subscribe('cam0', ['mask'])
    publisher = client.publisher('/cam0/image_raw/compressed', CompressedImage, count + 10)
    wait_matched(client, [publisher])
    client.wait_diagnostics('node', lambda level, message, v: message == 'active', 60,
                            'the node to become active')
    for _, msg in malformed_compressed_messages(count, seed=5):
        publisher.publish(msg)
    client.wait_diagnostics('cam0', lambda level, m, v: v['decode_errors'] == str(count), 120,
                            '%d decode errors in diagnostics' % count)
    assert node.alive()
    assert "camera 'cam0': rejected an image on cam0/image_raw/compressed (format" in node.log()

    frame = make_street_scene(240, 320, seed=12)
    for ext, fmt in (('.png', 'rgb8; png compressed bgr8'), ('.jpg', 'jpeg')):
        ok, data = cv2.imencode(ext, frame[:, :, ::-1])
        assert ok
        msg = CompressedImage(format=fmt, data=data.tobytes())
        msg.header = header('cam0_optical_frame', stamp_now())
        publisher.publish(msg)
        client.spin_until(lambda: any(same_header(m, msg.header)
                                      for m in client.received[('cam0', 'mask')]),
                          60, 'the mask of the %s frame' % ext)
        got = [m for m in client.received[('cam0', 'mask')] if same_header(m, msg.header)][0]
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
        if ext == '.png':
            np.testing.assert_array_equal(decoded, frame)
        expected = model['plain']([np.ascontiguousarray(decoded)])[0].mask
        np.testing.assert_array_equal(image_array(got), expected)


def change_state(client, transition):
    request = ChangeState.Request()
    request.transition.id = transition
    return client.call(ChangeState, '/segment_node/change_state', request).success


def get_state(client):
    return client.call(GetState, '/segment_node/get_state', GetState.Request()).current_state.id


def set_parameter(client, name, value, successful=True):
    """Set one parameter of the node; check it succeeds (or not); return the reason."""
    request = SetParameters.Request()
    request.parameters = [Parameter(name, value=value).to_parameter_msg()]
    result = client.call(SetParameters, '/segment_node/set_parameters', request)
    assert result.results[0].successful == successful, result.results[0].reason
    return result.results[0].reason


def test_bad_model_fails_configure_and_node_survives_for_a_retry(model, client, run_node,
                                                                 tmp_path):
    """Missing and corrupt models and bad parameters fail configure; a fixed one works."""
    missing = tmp_path / 'missing.onnx'
    node = run_node(model_path=str(missing), cameras=['cam0'], threads=1, max_frame_age_ms=0,
                    qos_reliability='reliable', diagnostics_period_s=0.2)
    assert get_state(client) == State.PRIMARY_STATE_UNCONFIGURED
    log = node.log()
    assert 'configure failed' in log and str(missing) in log and 'model_path' in log, log
    level, message, _ = client.wait_diagnostics(
        'node', lambda level, m, v: m.startswith('configure failed'), 30,
        'an ERROR status for the failed configure')
    assert level == 2  # ERROR

    set_parameter(client, 'model_path', str(model['corrupt']))
    assert not change_state(client, Transition.TRANSITION_CONFIGURE)
    assert get_state(client) == State.PRIMARY_STATE_UNCONFIGURED
    assert 'not a valid ONNX model' in node.log()

    set_parameter(client, 'model_path', str(model['onnx']))
    # An invalid value is refused at once; unconfigured, class names cannot be checked yet.
    reason = set_parameter(client, 'backend', 'tflite', successful=False)
    assert reason.startswith("parameter 'backend': expected one of 'auto', "), reason
    set_parameter(client, 'drivable_classes', ['tarmac'])
    assert not change_state(client, Transition.TRANSITION_CONFIGURE)
    assert "parameter 'drivable_classes': 'tarmac' is not a class of this model; allowed " \
        "values (any case): 'road', 'sidewalk'" in node.log()
    set_parameter(client, 'drivable_classes', ['road'])

    assert change_state(client, Transition.TRANSITION_CONFIGURE)
    assert change_state(client, Transition.TRANSITION_ACTIVATE)
    assert get_state(client) == State.PRIMARY_STATE_ACTIVE
    client.subscribe('cam0', ['mask'])
    publisher = client.publisher('/cam0/image_raw')
    wait_matched(client, [publisher])
    frame = make_street_scene(200, 300, seed=3)
    sent = header('cam0', stamp_now())
    publisher.publish(encoded_image_message(frame, 'rgb8', sent))
    client.spin_until(lambda: any(same_header(m, sent) for m in client.received[('cam0', 'mask')]),
                      60, 'the mask after the retry')
    got = [m for m in client.received[('cam0', 'mask')] if same_header(m, sent)][0]
    np.testing.assert_array_equal(image_array(got), model['plain']([frame])[0].mask)

    # Deactivate and activate again: the worker restarts.
    assert change_state(client, Transition.TRANSITION_DEACTIVATE)
    assert change_state(client, Transition.TRANSITION_ACTIVATE)
    sent = header('cam0', stamp_now())
    publisher.publish(encoded_image_message(frame, 'rgb8', sent))
    client.spin_until(lambda: any(same_header(m, sent) for m in client.received[('cam0', 'mask')]),
                      60, 'the mask after re-activation')


def test_openvino_backend_in_the_node_and_its_device_error(model, client, run_node):
    """backend: openvino: an absent Intel NPU fails configure; on the CPU outputs match offline."""
    openvino = pytest.importorskip('openvino')
    if 'NPU' in openvino.Core().available_devices:
        pytest.skip('this machine has an Intel NPU: the refusal cannot be shown here')
    node = run_node(model_path=str(model['onnx']), backend='openvino', device='npu',
                    cameras=['cam0'], threads=1, max_frame_age_ms=20000.0,
                    qos_reliability='reliable', qos_depth=5, overlay_alpha=ALPHA,
                    diagnostics_period_s=0.2)
    client.wait_diagnostics('node', lambda level, m, v: m.startswith('configure failed'), 60,
                            'an ERROR status for the missing NPU')
    assert "parameter 'device': device 'npu' needs an Intel NPU" in node.log()
    set_parameter(client, 'device', 'cpu')
    assert change_state(client, Transition.TRANSITION_CONFIGURE)
    assert change_state(client, Transition.TRANSITION_ACTIVATE)
    assert 'with the openvino backend' in node.log()
    # The same backend, precision (auto) and thread count here: the same masks.
    segmenter = Segmenter.from_file(model['onnx'], 'openvino', device='cpu', threads=1,
                                    confidence=True)
    client.subscribe('cam0')
    publisher = client.publisher('/cam0/image_raw')
    wait_matched(client, [publisher])
    frame = frames_for(11)['cam0']
    sent = {'cam0': header('cam0_optical_frame', stamp_now())}
    publisher.publish(encoded_image_message(frame, 'rgb8', sent['cam0']))
    wait_for_outputs(client, ['cam0'], sent)
    road = [segmenter.class_names.index('road')]
    check_outputs(client, 'cam0', sent['cam0'], frame, segmenter.segment(frame), segmenter,
                  road, 'classes')


def test_config_file_documents_every_parameter_with_its_default():
    """config/segment.yaml: every declared parameter, with the node's default, commented."""
    import yaml

    from liteseg_ros.ros import segment_node

    text = (ROOT / 'config' / 'segment.yaml').read_text()
    params = flatten(yaml.safe_load(text)['/**/segment_node']['ros__parameters'])
    assert set(params) == set(segment_node.PARAMETERS)
    for name, (default, _) in segment_node.PARAMETERS.items():
        assert params[name] == default, name
        comment = text[:parameter_line(text, name)].rstrip().splitlines()[-1]
        assert comment.lstrip().startswith('#'), name
    block = text.split('ros__parameters:')[1]
    for name in segment_node.PARAMETERS:  # each parameter's comment states type and default
        before = block[:parameter_line(block, name)].split('\n\n')[-1]
        assert 'default' in before, name


def flatten(params, prefix=''):
    """Return {'group.name': value} of nested parameter groups (ground_grid: {...})."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f'{prefix}{key}.'))
        else:
            flat[prefix + key] = value
    return flat


def parameter_line(text, name):
    """Return where parameter ``name`` is set in a params file (a nested one in its group)."""
    start, indent = 0, '    '
    for group in name.split('.')[:-1]:
        start = text.index(f'{indent}{group}:', start)
        indent += '  '
    return text.index(f"{indent}{name.split('.')[-1]}:", start)


@pytest.mark.parametrize('name, value, message', [
    ('transport', 'jpeg', "parameter 'transport': expected one of 'raw', 'compressed', "
                          "got 'jpeg'"),
    ('backend', 'tflite', "parameter 'backend': expected one of 'auto', 'onnxruntime', "
                          "'torch', 'tensorrt', 'openvino', got 'tflite'"),
    ('upsample', 'cubic', "parameter 'upsample': expected one of 'nearest', 'bilinear'"),
    ('qos_reliability', 'maybe', "parameter 'qos_reliability': expected one of "
                                 "'best_effort', 'reliable'"),
    ('qos_depth', 0, "parameter 'qos_depth': expected an integer >= 1 and <= 10000, got 0"),
    ('threads', 1.5, "parameter 'threads': expected an integer >= 0 and <= 1024, got 1.5"),
    ('overlay_alpha', 2.0, "parameter 'overlay_alpha': expected a number >= 0 and <= 1"),
    ('max_frame_age_ms', -1, "parameter 'max_frame_age_ms': expected a number >= 0"),
    ('diagnostics_period_s', 0, "parameter 'diagnostics_period_s': expected a number >= 0.01"),
    ('drivable_mode', 'all', "parameter 'drivable_mode': expected one of 'classes', "
                             "'connected'"),
    ('cameras', ['front', 'front'], "parameter 'cameras': each camera may appear once"),
    ('cameras', [''], "parameter 'cameras': expected a non-empty list of non-empty strings"),
    ('model_path', '', "parameter 'model_path' is empty"),
    ('device', 'tpu', "parameter 'device': expected 'auto', 'cpu', 'cuda', 'cuda:N', 'gpu', "
                      "'gpu:N' or 'npu', got 'tpu'"),
])
def test_parameter_errors_name_the_parameter_and_allowed_values(name, value, message):
    from liteseg_ros.ros.node.parameters import PARAMETERS, ParameterError, validate_parameters

    values = {k: default for k, (default, _) in PARAMETERS.items()}
    values['model_path'] = 'model.onnx'
    validate_parameters(values)  # the defaults are valid
    values[name] = value
    with pytest.raises(ParameterError) as error:
        validate_parameters(values)
    assert message in str(error.value)


def test_node_demo_cli(tmp_path):
    """Run liteseg node-demo with a checkpoint: the colour masks and overlays it writes."""
    import subprocess as sp

    from liteseg_ros.model import load_model

    checkpoint = make_checkpoint(tmp_path / 'small.pt', input_size=[128, 256])
    out = tmp_path / 'demo'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    result = sp.run([sys.executable, '-m', 'liteseg_ros.cli', 'node-demo', '--checkpoint',
                     str(checkpoint), '--frames', '6', '--rate', '4', '--size', '320x160',
                     '--keep', '2', '--threads', '1', '--output', str(out)],
                    cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert 'RANDOM' not in output and 'Node stopped (exit code 0)' in output, output
    assert 'Published 6 frames 320x160' in output and 'End-to-end latency' in output, output
    colors = sorted(out.glob('frame_*_color.png'))
    assert len(colors) == 2, output
    palette = load_model(checkpoint).config['palette']
    segmenter = Segmenter.from_file(checkpoint, backend='torch')
    for color_path in colors:
        index = int(color_path.name.split('_')[1])
        frame = make_street_scene(160, 320, seed=index % 6)
        image = cv2.imread(str(out / ('frame_%03d_input.png' % index)))[:, :, ::-1]
        np.testing.assert_array_equal(image, frame)
        color = cv2.imread(str(color_path))[:, :, ::-1]
        expected = colorize(segmenter.segment(frame).mask, palette)
        # The node's ONNX Runtime vs PyTorch here: both float32, so near-ties may flip.
        assert (color == expected).all(-1).mean() > 0.99
        blend = cv2.imread(str(out / ('frame_%03d_overlay.png' % index)))[:, :, ::-1]
        assert np.abs(blend.astype(int) - overlay(frame, color, 0.5)).max() <= 1  # rounding


def test_node_demo_images_are_sent_in_name_order(tmp_path):
    """``node-demo --images DIR``: the folder's images, name order, each once by default."""
    import argparse

    from liteseg_ros.ros.node_demo import demo_frames

    frames = {name: make_street_scene(40, 60, seed=i)
              for i, name in enumerate(['b.png', 'a.png', 'c.jpg'])}
    for name, rgb in frames.items():
        cv2.imwrite(str(tmp_path / name), rgb[:, :, ::-1])
    args = argparse.Namespace(images=tmp_path, frames=None, size=(64, 32))
    count, images = demo_frames(args)
    assert count == 3
    for got, name in zip(images, ['a.png', 'b.png']):
        np.testing.assert_array_equal(got, frames[name])  # PNG: lossless
    # JPEG: PIL's decoder as the independent reference (RGB order), decoders round apart by 1
    from PIL import Image as PILImage

    jpeg = np.asarray(PILImage.open(tmp_path / 'c.jpg').convert('RGB')).astype(int)
    assert np.abs(images[2] - jpeg).max() <= 1
    args.frames = 2
    assert len(demo_frames(args)[1]) == 2
    args.images = tmp_path / 'missing'
    with pytest.raises(ValueError, match='missing: image folder does not exist'):
        demo_frames(args)


def _interrupt_inside(handler, modules):
    """
    Call ``handler`` as SIGINT would, in the innermost of nested calls through ``modules``.

    Return whether it raised KeyboardInterrupt (caught here: it would stop the test session).
    """
    def step_of(module, source):
        namespace = {'__name__': module, 'signal': signal, 'sys': sys}
        exec(source, namespace)
        return namespace['step']

    call = functools.partial(
        step_of(modules[-1], 'def step(handler):\n    handler(signal.SIGINT, sys._getframe())\n'),
        handler)
    for module in reversed(modules[:-1]):
        call = functools.partial(step_of(module, 'def step(inner):\n    inner()\n'), call)
    try:
        call()
    except KeyboardInterrupt:
        return True
    return False


@pytest.mark.parametrize('modules, interrupts', [
    (['liteseg_ros.ros.segment_node', 'rclpy.executors', 'rclpy.task'], False),
    (['rclpy.executors', 'threading'], False),
    (['rclpy.executors', 'liteseg_ros.ros.node.pipeline', 'urllib.request'], True),
    (['liteseg_ros.ros.segment_node', 'onnxruntime.capi.onnxruntime_inference_collection'],
     True),
    (['__main__'], True),
])
def test_sigint_interrupts_our_code_and_leaves_rclpys_to_its_shutdown(modules, interrupts):
    """Interrupt where our code (or what it called) runs; in rclpy's, only note the stop."""
    from liteseg_ros.ros.segment_node import InterruptOutsideRclpy

    handler = InterruptOutsideRclpy()
    assert _interrupt_inside(handler, modules) == interrupts
    assert handler.requested
    handler.stopping = True  # a second SIGINT while stopping: noted, never raised
    assert not _interrupt_inside(handler, modules)
