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
Memory soak of segment_node: 2 cameras at 10 Hz for N minutes, the node's RSS every second.

Starts ``segment_node`` (installed executable) with two cameras, publishes generated frames
on both at ``--rate`` Hz from this process, subscribes to every output (so every output is
computed: mask, PNG mask, colour, overlay, confidence, connected drivable area), and samples
the node's resident set size (``VmRSS`` of ``/proc/<pid>/status``) once a second.

Reported: RSS after the first minute (the warm-up: allocator pools, ONNX Runtime arenas,
DDS buffers), at the end, the growth in percent (acceptance: within 5 % after 5
minutes), the maximum, and what the node did (frames segmented, dropped, errors, batches).
``--csv`` writes the samples.

The model defaults to PP-LiteSeg-T with random weights at 256x512, exported to ONNX with a
dynamic batch (the two cameras run as one batch), so that the node cycles quickly and
allocates often; pass ``--model`` for another. Frames are ``--width`` x ``--height`` rgb8.

Usage::

    python benchmarks/node_soak.py [--minutes 5] [--rate 10] [--width 1280 --height 720]
        [--threads 2] [--model MODEL] [--csv OUT.csv]
"""

import argparse
from pathlib import Path
import sys
import tempfile
import time

from liteseg_ros.ros.node_demo import stop_node
from node_bench import (default_model, listen_diagnostics, prepare_dds, ros_node, start_node,
                        wait_until_active, write_params)

CAMERAS = ('soak_front', 'soak_rear')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=5.0)
    parser.add_argument('--rate', type=float, default=10.0, help='Hz per camera')
    parser.add_argument('--width', type=int, default=1280)
    parser.add_argument('--height', type=int, default=720)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--model', type=Path, help='model file (default: random T 256x512)')
    parser.add_argument('--csv', type=Path, help='write the RSS samples here')
    return parser.parse_args(argv)


def rss_kib(pid):
    """Return VmRSS of pid in KiB (None when the process is gone)."""
    try:
        with open('/proc/%d/status' % pid) as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def soak_params(path, model, threads):
    """Write the node's params file: both cameras, every output computed."""
    return write_params(
        path, model_path=str(model), threads=threads, cameras=list(CAMERAS),
        # Reliable input: frames of this size survive ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
        qos_reliability='reliable', batch_timeout_ms=20.0,
        drivable_classes=['road', 'sidewalk'], drivable_mode='connected',
        diagnostics_period_s=5.0)


def subscribe_outputs(node):
    """Subscribe to every output of both cameras; return {camera: masks received}."""
    from liteseg_ros.inference.outputs import output_topic, OUTPUTS
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    counts = {c: 0 for c in CAMERAS}
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    for camera in CAMERAS:
        for output in OUTPUTS:
            msg_type = CompressedImage if output == 'mask/compressed' else Image

            def on_output(msg, camera=camera, output=output):
                if output == 'mask':
                    counts[camera] += 1
            node.create_subscription(msg_type, output_topic('/' + camera, output),
                                     on_output, qos)
    return counts


def publish_and_sample(args, node, executor, process, log_path, diagnostics, counts):
    """Publish frames on both cameras for ``--minutes``; return the RSS samples (s, KiB)."""
    from liteseg_ros.ros.messages import rgb8_message
    from liteseg_ros.sample_images import make_street_scene
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    publishers = {c: node.create_publisher(Image, '/%s/image_raw' % c, qos) for c in CAMERAS}
    frames = [rgb8_message(make_street_scene(args.height, args.width, seed=s))
              for s in range(6)]
    wait_until_active(executor, process, diagnostics,
                      lambda: all(p.get_subscription_count() for p in publishers.values()),
                      log_path)
    print('node pid %d; %s at %.0f Hz each, %dx%d rgb8, for %.1f min'
          % (process.pid, ' and '.join(CAMERAS), args.rate, args.width, args.height,
             args.minutes), flush=True)
    samples = []
    start = time.monotonic()
    sent = 0
    next_sample = start
    while time.monotonic() - start < args.minutes * 60.0:
        now = time.monotonic()
        if now >= start + sent / args.rate:
            stamp = node.get_clock().now().to_msg()
            for index, (camera, publisher) in enumerate(publishers.items()):
                msg = frames[(sent + 3 * index) % len(frames)]
                msg.header.stamp = stamp
                msg.header.frame_id = camera
                publisher.publish(msg)
            sent += 1
        if now >= next_sample:
            rss = rss_kib(process.pid)
            if rss is None:
                raise RuntimeError('the node exited; log:\n' + log_path.read_text()[-3000:])
            samples.append((now - start, rss))
            next_sample += 1.0
            if len(samples) % 30 == 0:
                print('  %4.0f s  RSS %.1f MiB  masks %s' % (
                    now - start, rss / 1024.0, dict(counts)), flush=True)
        executor.spin_once(timeout_sec=0.002)
    executor.spin_once(timeout_sec=0.5)
    return samples


def report(args, samples, diagnostics, counts, code, log_path):
    """Print the RSS figures and what the node did; write the CSV."""
    after_warmup = [rss for t, rss in samples if t >= 60.0]
    reference = after_warmup[0] if after_warmup else samples[len(samples) // 2][1]
    end = samples[-1][1]
    growth = 100.0 * (end - reference) / reference
    print()
    print('RSS at start %.1f MiB, after minute 1 %.1f MiB, at the end (%.0f s) %.1f MiB, '
          'max %.1f MiB' % (samples[0][1] / 1024.0, reference / 1024.0, samples[-1][0],
                            end / 1024.0, max(r for _, r in samples) / 1024.0))
    print('growth after minute 1: %+.2f %%  (acceptance within 5 %% over 5 minutes: %s)'
          % (growth, 'PASS' if abs(growth) <= 5.0 else 'FAIL'))
    for camera in CAMERAS:
        _, values = diagnostics.get('segment_node: ' + camera, ('', {}))
        print('%s: %s masks received here; node: took %s, segmented %s, dropped %s, '
              'decode errors %s, batched with the other camera %s' % (
                  camera, counts[camera], values.get('frames_received'),
                  values.get('frames_published'), values.get('dropped'),
                  values.get('decode_errors'), values.get('multi_camera_batched')))
    print('node exit code on SIGINT: %s; log %s' % (code, log_path))
    if args.csv:
        args.csv.write_text('seconds,rss_kib\n' + ''.join('%.1f,%d\n' % s for s in samples))
        print('wrote %s' % args.csv)


def main(argv=None):
    args = parse_args(argv)
    # This process publishes the frames: the node's allocator settings help here too.
    prepare_dds()
    scratch = Path(tempfile.mkdtemp(prefix='node_soak_'))
    model = args.model or default_model(scratch, input_size=[256, 512], dynamic_batch=True)
    params = soak_params(scratch / 'params.yaml', model, args.threads)
    log_path = scratch / 'node.log'
    process = start_node(params, log_path)
    try:
        with ros_node('node_soak') as (node, executor):
            diagnostics = listen_diagnostics(node)
            counts = subscribe_outputs(node)
            samples = publish_and_sample(args, node, executor, process, log_path, diagnostics,
                                         counts)
    finally:
        code = stop_node(process, 60)
    report(args, samples, diagnostics, counts, 'killed' if code is None else code, log_path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
