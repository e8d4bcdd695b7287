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
ROS side of ``liteseg node-demo``: the real node, fed generated frames over real DDS.

Starts ``segment_node`` as a subprocess with a YAML params file, publishes a generated street
scene sequence (``liteseg_ros.sample_images``) at a fixed rate from this process, receives the
mask, colour and overlay outputs, prints rates and latencies, and writes the first few frames
it received (input, colour mask, overlay) as PNGs. ``liteseg_ros.cli`` prepares the model and
calls :func:`run`; rclpy is imported only when the demo runs.
"""

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time

from liteseg_ros.dataset_files import image_files, read_image
from liteseg_ros.inference.outputs import output_topic, write_png
from liteseg_ros.ros.messages import rgb8_message
from liteseg_ros.sample_images import make_street_scene
import numpy as np

CAMERA = 'liteseg_demo/camera'
OUTPUTS = ('mask', 'color', 'overlay')
DEFAULT_FRAMES = 30


def node_command():
    """Return the command of the installed segment_node (or ``python -m`` as a fallback)."""
    for candidate in (os.path.join(os.path.dirname(sys.executable), 'segment_node'),
                      shutil.which('segment_node')):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    return [sys.executable, '-m', 'liteseg_ros.ros.segment_node']


def stop_node(process, timeout):
    """
    Stop a node subprocess: SIGINT, wait up to ``timeout`` s, then kill it.

    Return its exit code; None when it had to be killed.
    """
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def write_params(path, model_path, backend, threads):
    """Write the node's params file for the demo; return its path."""
    path = Path(path)
    path.write_text('\n'.join([
        '/**/segment_node:', '  ros__parameters:',
        "    model_path: '%s'" % str(model_path).replace("'", "''"),
        "    backend: '%s'" % backend,
        '    threads: %d' % threads,
        "    cameras: ['%s']" % CAMERA,
        # Reliable input: with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST Fast DDS sends over
        # UDP loopback and loses most best-effort frames of this size.
        "    qos_reliability: 'reliable'",
        '    diagnostics_period_s: 1.0',
    ]) + '\n')
    return path


def _percentiles(values):
    if not values:
        return 'n/a'
    return 'p50 %.0f ms, p95 %.0f ms' % (np.percentile(values, 50), np.percentile(values, 95))


class _Demo:
    """The demo's ROS side: a publisher, output subscribers and a diagnostics listener."""

    def __init__(self, context, keep):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        import rclpy.node
        from sensor_msgs.msg import Image

        self.node = rclpy.node.Node('liteseg_node_demo', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(Image, '/%s/image_raw' % CAMERA, qos)
        self.arrivals = {output: {} for output in OUTPUTS}
        self.kept = {}
        self.keep = keep
        self.subscriptions = [
            self.node.create_subscription(
                Image, output_topic('/' + CAMERA, output),
                lambda msg, output=output: self._on_output(output, msg), qos)
            for output in OUTPUTS]
        self.diagnostics = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)

    def _on_output(self, output, msg):
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.arrivals[output][key] = time.monotonic()
        if output in ('color', 'overlay') and (key in self.kept or len(self.kept) < self.keep):
            rgb = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3).copy()
            self.kept.setdefault(key, {})[output] = rgb

    def _on_diagnostics(self, msg):
        for status in msg.status:
            self.diagnostics[status.name] = (status.message,
                                             {kv.key: kv.value for kv in status.values})

    def spin_for(self, seconds):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.05))

    def connected(self):
        return (self.publisher.get_subscription_count() > 0
                and all(s.get_publisher_count() > 0 for s in self.subscriptions))

    def status(self, name):
        return self.diagnostics.get('segment_node: ' + name, ('', {}))


def _wait_ready(demo, process, log_path, timeout):
    """Wait for the node to be active and connected; return an error text or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return 'the node exited with code %s during startup' % process.returncode
        message, _ = demo.status('node')
        if message.startswith('configure failed'):
            return 'the node could not start: ' + message
        if message == 'active' and demo.connected():
            return None
        demo.spin_for(0.2)
    return 'the node was not ready after %.0f s' % timeout


def _tail(path, lines=30):
    try:
        return '\n'.join(Path(path).read_text(errors='replace').splitlines()[-lines:])
    except OSError:
        return ''


def run(model_path, args, random_weights=False):
    """Run the node demo with ``model_path``; return the process exit code."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    # Large frames need Fast DDS's LARGE_DATA transports (for this process and the node).
    os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
    params = write_params(out / 'segment_node.params.yaml', model_path, args.backend,
                          args.threads)
    log_path = out / 'node.log'
    command = node_command() + ['--ros-args', '--params-file', str(params)]
    print('Starting the node: %s (log: %s)' % (' '.join(command), log_path), flush=True)
    with open(log_path, 'w') as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED='1'))
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    demo = None
    try:
        demo = _Demo(context, keep=args.keep)
        code = _publish_and_report(demo, process, log_path, args, out, random_weights)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        code = 130
    finally:
        if demo is not None:
            demo.executor.shutdown()
            demo.node.destroy_node()
        rclpy.try_shutdown(context=context)
        stop_node(process, 30)
    print('Node stopped (exit code %s).' % process.returncode, flush=True)
    if code == 0 and process.returncode != 0:
        print('node-demo: error: the node exited with code %s; log: %s'
              % (process.returncode, log_path), file=sys.stderr)
        code = 1
    return code


def demo_frames(args):
    """
    Return (frames to publish, the images they cycle through).

    ``--images DIR``: the folder's images in name order, each once unless ``--frames`` says
    otherwise; else up to 8 generated street scenes of ``--size``, ``--frames`` (30) in all.
    """
    if args.images is not None:
        paths = image_files(args.images, purpose=' (node-demo --images)')
        count = args.frames or len(paths)
        print('Reading %d images of %s in name order ...'
              % (min(count, len(paths)), args.images), flush=True)
        return count, [read_image(p) for p in paths[:count]]
    count = args.frames or DEFAULT_FRAMES
    width, height = args.size
    print('Generating %d scenes of %dx%d ...' % (min(count, 8), width, height), flush=True)
    return count, [make_street_scene(height, width, seed=i) for i in range(min(count, 8))]


def _publish_and_report(demo, process, log_path, args, out, random_weights):
    args.frames, scenes = demo_frames(args)
    error = _wait_ready(demo, process, log_path, args.timeout)
    if error:
        print('node-demo: error: %s. Node log (%s):\n%s' % (error, log_path, _tail(log_path)),
              file=sys.stderr)
        return 1
    print('Node active: %s' % demo.status('node')[1].get('model', '?'), flush=True)
    sent = {}
    start = time.monotonic()
    for i in range(args.frames):
        demo.spin_for(start + i / args.rate - time.monotonic())
        msg = rgb8_message(scenes[i % len(scenes)])
        msg.header.frame_id = 'liteseg_demo_camera'
        msg.header.stamp = demo.node.get_clock().now().to_msg()
        sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = (i, time.monotonic())
        demo.publisher.publish(msg)
    published_for = time.monotonic() - start
    # Let the last frames come back (the node may still be segmenting one).
    last_count, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < 3.0 and time.monotonic() - start < 600:
        demo.spin_for(0.2)
        received = sum(len(a) for a in demo.arrivals.values())
        if received != last_count:
            last_count, quiet_since = received, time.monotonic()
    demo.spin_for(1.2)  # one more diagnostics period
    _report(demo, sent, scenes, published_for, args, out, random_weights)
    return 0


def _report(demo, sent, scenes, published_for, args, out, random_weights):
    height, width = scenes[0].shape[:2]
    print('\nPublished %d frames %dx%d rgb8 at %.1f Hz on /%s/image_raw'
          % (len(sent), width, height, (len(sent) - 1) / max(published_for, 1e-9), CAMERA))
    masks = demo.arrivals['mask']
    got = [k for k in sent if k in masks]
    print('Received %s (the node segments the newest frame and drops older ones: %d dropped)'
          % (', '.join('%d %s' % (len(demo.arrivals[o]), o) for o in OUTPUTS),
             len(sent) - len(got)))
    if len(got) >= 2:
        times = sorted(masks[k] for k in got)
        print('Output rate: %.2f Hz' % ((len(times) - 1) / max(times[-1] - times[0], 1e-9)))
    latencies = [(masks[k] - sent[k][1]) * 1e3 for k in got]
    print('End-to-end latency (publish -> mask received): %s' % _percentiles(latencies))
    values = demo.status(CAMERA)[1]
    if values:
        print('Node diagnostics: %s frames taken, %s segmented, %s dropped (replaced by a '
              'newer one); receive->publish p50 %s ms, p95 %s ms; backend (Segmenter) p50 %s '
              'ms; the rest p50 %s ms = waiting for the busy worker %s ms + processing %s ms'
              % (values.get('frames_received'), values.get('frames_published'),
                 values.get('dropped'), values.get('latency_p50_ms'),
                 values.get('latency_p95_ms'), demo.status('node')[1].get('backend_ms_p50'),
                 values.get('overhead_p50_ms'), values.get('queue_wait_p50_ms'),
                 values.get('processing_overhead_p50_ms')))
        lost = len(sent) - int(values.get('frames_received', len(sent)))
        if lost > 0:
            print('%d frames were replaced in the input queue of the node (keep last 1) '
                  'while it was busy: it only takes the newest' % lost)
    written = []
    for key in sorted(demo.kept, key=lambda k: sent.get(k, (1e9,))[0])[:args.keep]:
        if key not in sent or len(demo.kept[key]) < 2:
            continue
        index = sent[key][0]
        for name, rgb in (('input', scenes[index % len(scenes)]),
                          ('color', demo.kept[key]['color']),
                          ('overlay', demo.kept[key]['overlay'])):
            path = out / ('frame_%03d_%s.png' % (index, name))
            write_png(path, rgb)
            written.append(path)
    print('Wrote %d images to %s/:' % (len(written), out.resolve()))
    for path in written:
        print('  %s' % path)
    if random_weights:
        print('(random weights: the masks are meaningless, see the warning above)')
