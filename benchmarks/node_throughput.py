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
Throughput of segment_node against the standalone Segmenter, at 2048x1024 rgb8 and 30 Hz.

1. ``standalone``: ``Segmenter`` on the same frames in this process, back to back (the most
   a node could reach). Standalone and node phases alternate (S N S N S N S, the node idle
   during S phases), so that a change in background load affects both alike.
2. ``node``: ``segment_node`` started as a subprocess with the same model, backend and threads
   (its default QoS: sensor data, best effort, keep last 1). This process publishes 2048x1024
   rgb8 frames at ``--rate`` Hz (faster than the node on a CPU: it always has a new frame) and
   counts the masks that come back; the node's own per-frame timings come from /diagnostics.

Printed: standalone FPS, node FPS, their ratio (acceptance: >= 0.9) and the node's
per-frame overhead: receive-to-publish minus backend (``Segmenter``) time (acceptance: <= 10
ms), split into decoding, waiting for the busy worker (a frame arrives while the previous one
is being segmented; with a camera faster than the model it waits half a camera period on
average: inherent to taking the newest frame, not work the node does) and processing (the
node's own work after taking a frame: output images, messages, publishing). "Receive" is when
DDS received the frame (``received_timestamp`` of the message info), so time spent in the DDS
queue counts. The ratio is printed overall and per round (each node phase against the
standalone phases around it); the median per-round ratio is the one judged, since on a shared
machine a burst of other work can hit a single round.

Frames are published pre-serialised (only the stamp is patched), so the publisher costs this
process little CPU; the node deserialises each one for real. Fast DDS uses the LARGE_DATA
transports (on Fast DDS 2, Jazzy, a profiles file with a 64 MiB shared-memory segment, without
which best effort loses most frames: config/fastdds_large_frames.xml; a profiles file set in the
environment is kept); ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` is removed from the
environment of both processes, because with it Fast DDS sends over UDP loopback and loses
most best-effort frames of this size (measured here). A random ``ROS_DOMAIN_ID`` keeps other
nodes out.

The model defaults to PP-LiteSeg-T with random weights (speed does not depend on the weights)
at its default input size, 512x1024, exported to ONNX for ONNX Runtime; pass ``--model``.

Usage::

    python benchmarks/node_throughput.py [--duration 30] [--rounds 5] [--rate 30] [--threads 2]
        [--width 2048 --height 1024] [--outputs mask] [--reliable] [--model MODEL] [--json OUT]
"""

import argparse
import json
import os
from pathlib import Path
import struct
import sys
import tempfile
import threading
import time

from liteseg_ros.ros.node_demo import stop_node
from node_bench import (default_model, listen_diagnostics, machine, prepare_dds, ros_node,
                        start_node, wait_until_active, write_params)
import numpy as np

CAMERA = 'bench_camera'
DIAGNOSTIC_KEYS = ('latency_p50_ms', 'latency_p95_ms', 'overhead_p50_ms', 'overhead_p95_ms',
                   'decode_p50_ms', 'queue_wait_p50_ms', 'queue_wait_p95_ms',
                   'processing_overhead_p50_ms', 'processing_overhead_p95_ms')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', type=Path, help='model file (default: random T, ONNX)')
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--threads', type=int, default=2, help='inference threads (both)')
    parser.add_argument('--width', type=int, default=2048)
    parser.add_argument('--height', type=int, default=1024)
    parser.add_argument('--rate', type=float, default=30.0, help='publishing rate, Hz')
    parser.add_argument('--duration', type=float, default=30.0,
                        help='measured seconds of node runs in all (split over the rounds)')
    parser.add_argument('--rounds', type=int, default=5,
                        help='node phases; standalone phases come before, between, after')
    parser.add_argument('--warmup', type=float, default=3.0,
                        help='seconds of each node phase not measured')
    parser.add_argument('--standalone-seconds', type=float, default=5.0,
                        help='seconds of each standalone phase')
    parser.add_argument('--reliable', action='store_true',
                        help='reliable input QoS on both sides (default: best effort)')
    parser.add_argument('--outputs', default='mask',
                        help='comma-separated outputs to subscribe to (default: mask)')
    parser.add_argument('--json', type=Path, help='also write the figures here')
    return parser.parse_args(argv)


def standalone(segmenter, frames, seconds):
    """Run the Segmenter back to back for about ``seconds``; return (frames, seconds)."""
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or count < 2:
        segmenter([frames[count % len(frames)]])
        count += 1
    return count, time.perf_counter() - start


def serialized_frames(frames):
    """Return CDR bytes of rgb8 Image messages of frames (stamp at bytes 4..12)."""
    from liteseg_ros.ros.messages import rgb8_message
    from rclpy.serialization import serialize_message

    out = []
    for frame in frames:
        msg = rgb8_message(frame)
        msg.header.frame_id = CAMERA
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1234567, 89
        data = bytearray(serialize_message(msg))
        assert struct.unpack_from('<iI', data, 4) == (1234567, 89), 'unexpected CDR layout'
        out.append(data)
    return out


class Publisher(threading.Thread):
    """Publish pre-serialised frames at a fixed rate with the current stamp."""

    def __init__(self, node, publisher, frames, rate):
        super().__init__(daemon=True)
        self.node, self.publisher, self.frames, self.rate = node, publisher, frames, rate
        self.count = 0
        self.stop = threading.Event()

    def run(self):
        start = time.monotonic()
        while not self.stop.is_set():
            wait = start + self.count / self.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            now = self.node.get_clock().now().nanoseconds
            data = self.frames[self.count % len(self.frames)]
            struct.pack_into('<iI', data, 4, now // 1_000_000_000, now % 1_000_000_000)
            self.publisher.publish(bytes(data))
            self.count += 1


class Bench:
    """This process's side of the node phases: the frame publisher and the outputs' arrivals."""

    def __init__(self, args, node, executor, frames):
        """Subscribe to ``args.outputs`` and /diagnostics; prepare the publisher."""
        from liteseg_ros.inference.outputs import output_topic
        from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.args, self.node, self.executor = args, node, executor
        self.diagnostics = listen_diagnostics(node)
        self.arrivals = []
        for output in args.outputs.split(','):
            node.create_subscription(
                Image, output_topic('/' + CAMERA, output),
                (lambda msg: self.arrivals.append(time.monotonic())) if output == 'mask'
                else (lambda msg: None),
                QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
        self.publisher = node.create_publisher(
            Image, '/%s/image_raw' % CAMERA,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE) if args.reliable
            else qos_profile_sensor_data)
        self.serialized = serialized_frames(frames)

    def node_phase(self):
        """Publish for warm-up plus measured seconds; return (masks, seconds, frames sent)."""
        args = self.args
        sender = Publisher(self.node, self.publisher, self.serialized, args.rate)
        sender.start()
        spin(self.executor, args.warmup)
        first_sent, first_count = sender.count, len(self.arrivals)
        start = time.monotonic()
        spin(self.executor, args.duration / args.rounds)
        elapsed = time.monotonic() - start
        received = len(self.arrivals) - first_count
        sent = sender.count - first_sent
        sender.stop.set()
        sender.join()
        spin(self.executor, 1.0)  # let the last frame through
        return received, elapsed, sent


def alternate(args, bench, frames, segmenter):
    """Run standalone and node phases in turn (S N S ... S); return a dict of figures."""
    figures = {'standalone_frames': 0, 'standalone_seconds': 0.0, 'node_frames': 0,
               'node_seconds': 0.0, 'sent': 0, 'rounds': []}
    for index in range(args.rounds + 1):
        # Standalone phase (the node is idle: nothing is published).
        frames_done, seconds = standalone(segmenter, frames, args.standalone_seconds)
        figures['standalone_frames'] += frames_done
        figures['standalone_seconds'] += seconds
        round_figures = {'standalone_fps': frames_done / seconds}
        if index < args.rounds:
            received, elapsed, sent = bench.node_phase()
            figures['node_frames'] += received
            figures['node_seconds'] += elapsed
            figures['sent'] += sent
            round_figures['node_fps'] = received / elapsed
        figures['rounds'].append(round_figures)
        print('round %d: %s' % (index + 1, ', '.join(
            '%s %.2f' % kv for kv in round_figures.items())), flush=True)
    return figures


def run_rounds(args, model, frames, env, segmenter):
    """Start the node; alternate standalone and node phases; return a dict of figures."""
    scratch = Path(tempfile.mkdtemp(prefix='node_throughput_'))
    params = write_params(scratch / 'params.yaml', model_path=str(model), backend=args.backend,
                          threads=args.threads, cameras=[CAMERA], diagnostics_period_s=1.0,
                          qos_reliability='reliable' if args.reliable else 'best_effort')
    log_path = scratch / 'node.log'
    process = start_node(params, log_path, env)
    try:
        with ros_node('node_throughput') as (node, executor):
            bench = Bench(args, node, executor, frames)
            wait_until_active(executor, process, bench.diagnostics,
                              lambda: bench.publisher.get_subscription_count() > 0, log_path)
            figures = alternate(args, bench, frames, segmenter)
            spin(executor, 1.5)  # diagnostics covering the end of the run
            figures['camera'] = bench.diagnostics.get('segment_node: ' + CAMERA, ('', {}))[1]
            figures['node'] = bench.diagnostics.get('segment_node: node', ('', {}))[1]
            figures['log'] = str(log_path)
            return figures
    finally:
        stop_node(process, 60)


def spin(executor, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)


def summarise(result):
    """Return the figures of a run: FPS, ratios (overall, per round) and node diagnostics."""
    standalone_fps = result['standalone_frames'] / result['standalone_seconds']
    node_fps = result['node_frames'] / result['node_seconds']
    cam, node = result['camera'], result['node']
    rounds = result['rounds']
    # Each node phase against the standalone phases just before and after it: robust to a
    # burst of load from other jobs on a shared machine, which hits one round.
    round_ratios = [rounds[i]['node_fps'] * 2 / (rounds[i]['standalone_fps']
                                                 + rounds[i + 1]['standalone_fps'])
                    for i in range(len(rounds) - 1)]
    figures = {
        'standalone_fps': standalone_fps, 'node_fps': node_fps,
        'ratio': node_fps / standalone_fps, 'round_ratios': round_ratios,
        'median_round_ratio': float(np.median(round_ratios)),
        'published_hz': result['sent'] / result['node_seconds'],
        'node_frames': result['node_frames'], 'node_seconds': result['node_seconds'],
        'rounds': result['rounds'],
        'backend_ms_p50': float(node.get('backend_ms_p50', 'nan')),
    }
    for key in DIAGNOSTIC_KEYS:
        figures[key] = float(cam.get(key, 'nan'))
    figures['frames_received_by_node'] = int(cam.get('frames_received', 0))
    figures['dropped_by_node'] = int(cam.get('dropped', 0))
    return figures


def print_rates(figures, result):
    """Print node and standalone FPS and their ratio."""
    median_ratio = figures['median_round_ratio']
    print()
    print('node: %.2f FPS over %.0f s (%d masks; published %.1f Hz; in all the node decoded %d '
          'frames, %d were replaced by a newer one, stale or lost)' % (
              figures['node_fps'], figures['node_seconds'], figures['node_frames'],
              figures['published_hz'], figures['frames_received_by_node'],
              figures['dropped_by_node']))
    print('standalone: %.2f FPS (%d frames in %.0f s, in phases around the node phases)'
          % (figures['standalone_fps'], result['standalone_frames'],
             result['standalone_seconds']))
    print('ratio node/standalone: %.3f overall; per round %s, median %.3f  (acceptance >= '
          '0.9: %s by the median)' % (figures['ratio'],
                                      ', '.join('%.3f' % r for r in figures['round_ratios']),
                                      median_ratio, 'PASS' if median_ratio >= 0.9 else 'FAIL'))


def print_per_frame(figures):
    """Print the node's per-frame latency and overhead, from its diagnostics."""
    print('per frame, node diagnostics (last %s frames):' % min(200, figures['node_frames']))
    print('  receive->publish latency  p50 %.1f ms, p95 %.1f ms' % (
        figures['latency_p50_ms'], figures['latency_p95_ms']))
    print('  backend (Segmenter)       p50 %.1f ms' % figures['backend_ms_p50'])
    print('  overhead = latency - backend: p50 %.1f ms, p95 %.1f ms, of which' % (
        figures['overhead_p50_ms'], figures['overhead_p95_ms']))
    print('    decode (worker)         p50 %.2f ms' % figures['decode_p50_ms'])
    print('    wait for the busy worker p50 %.1f ms, p95 %.1f ms (newest-frame policy, '
          'camera faster than model)' % (figures['queue_wait_p50_ms'],
                                         figures['queue_wait_p95_ms']))
    print('    processing (outputs, publish) p50 %.1f ms, p95 %.1f ms' % (
        figures['processing_overhead_p50_ms'], figures['processing_overhead_p95_ms']))
    work = figures['decode_p50_ms'] + figures['processing_overhead_p50_ms']
    print('node work per frame (decode + processing) p50 %.1f ms  (acceptance <= 10 ms: %s); '
          'including the wait: %.1f ms (%s)' % (
              work, 'PASS' if work <= 10 else 'FAIL', figures['overhead_p50_ms'],
              'PASS' if figures['overhead_p50_ms'] <= 10 else 'FAIL'))


def prepare_environment():
    """Set up DDS for both processes; return the node's environment."""
    if os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') == 'LOCALHOST':
        print('note: ignoring ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (UDP loopback loses '
              'best-effort frames of this size)')
        os.environ.pop('ROS_AUTOMATIC_DISCOVERY_RANGE')
    # The publisher side gets the node's allocator settings too (see segment_node).
    prepare_dds()
    return dict(os.environ)


def main(argv=None):
    args = parse_args(argv)
    env = prepare_environment()

    from liteseg_ros.inference import Segmenter
    from liteseg_ros.sample_images import make_street_scene

    with tempfile.TemporaryDirectory(prefix='node_throughput_model_') as scratch:
        model = args.model or default_model(scratch)
        frames = [make_street_scene(args.height, args.width, seed=s) for s in range(4)]
        print(machine(), flush=True)
        print('model %s, backend %s, threads %d, frames %dx%d rgb8 published at %.0f Hz; '
              '%d rounds' % (model, args.backend, args.threads, args.width, args.height,
                             args.rate, args.rounds), flush=True)
        segmenter = Segmenter.from_file(model, backend=args.backend,
                                        threads=args.threads or None)
        segmenter([frames[0]])  # warm-up
        result = run_rounds(args, model, frames, env, segmenter)

    figures = summarise(result)
    print_rates(figures, result)
    print_per_frame(figures)
    print('python %s; %s' % (sys.version.split()[0], machine()))
    print('node log: %s' % result['log'])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + '\n')
        print('wrote %s' % args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
