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
``liteseg bag-eval --live``: replay a bag's image topics against a running ``segment_node``.

Frames are published at their recorded log-time spacing divided by ``rate``; each one gets
the current time as header stamp (``keep_stamps``: the recorded stamp, which the node drops
as stale unless its ``max_frame_age_ms`` is 0 or it runs on sim time). The node's outputs
under ``<namespace>/segmentation/`` are matched to the frames by header stamp, timed (publish
to reception) and recorded, with the recorded stamp put back, at the input's log time, into
``output_dir/bag``. rclpy is imported when a replay starts; the bag side is
``liteseg_ros.bags`` and the arguments are ``liteseg_ros.bags.cli``'s. See docs/bag_eval.md.
"""

import collections
from dataclasses import dataclass, field
import os
from pathlib import Path
import queue
import shutil
import threading
import time

from liteseg_ros.bags.evaluation import DEFAULT_OUTPUTS
from liteseg_ros.bags.report import format_live_summary, percentiles, write_summary
from liteseg_ros.bags.rosbag import (BagError, BagReader, BagWriter, COMPRESSED_TYPE,
                                     IMAGE_TYPE, OUTPUT_TYPES, stamp_of, stamp_to_ns,
                                     with_stamp)
from liteseg_ros.inference.outputs import image_namespace, output_topic

IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)


class LiveError(ValueError):
    """The live replay cannot start: no node on the topics, no rclpy, ..."""


@dataclass
class _LiveCamera:
    topic: str          # topic in the bag
    publish_topic: str  # topic published to (after --remap)
    namespace: str
    msgtype: str
    publisher: object = None
    published: int = 0
    skipped: int = 0
    sent: dict = field(default_factory=dict)       # stamp -> (publish time, original stamp, ts)
    received: dict = field(default_factory=dict)   # output -> {stamp: receive time}
    duplicates: int = 0


def _msg_class(msgtype):
    from sensor_msgs.msg import CompressedImage, Image

    return Image if msgtype == IMAGE_TYPE else CompressedImage


def _import_rclpy():
    try:
        import rclpy
        import rclpy.executors
    except ImportError as exc:
        raise LiveError(f'--live needs rclpy and sensor_msgs ({exc}); source a ROS 2 install '
                        'or install requirements-ros.txt') from None
    return rclpy


class LiveReplay:
    """
    One live replay; :meth:`run` returns the summary.

    The constructor checks the request (rate, outputs, topics, output folder) before any ROS
    work; :meth:`run` starts a private rclpy context, waits for the node, replays the bag and
    always shuts its context down, keeping the results so far on Ctrl-C.
    """

    def __init__(self, bag, image_topics, output_dir=None, rate=1.0, outputs=DEFAULT_OUTPUTS,
                 remap=None, timeout=30.0, drain=3.0, keep_stamps=False, overwrite=False,
                 progress=True, log=print):
        """Check the request and prepare the cameras; nothing is published yet."""
        if rate <= 0:
            raise ValueError(f'--rate must be > 0, got {rate}')
        unknown = [o for o in outputs if o not in OUTPUT_TYPES]
        if unknown or not outputs:
            raise ValueError(f'--live records outputs of {", ".join(OUTPUT_TYPES)}; got '
                             f'{", ".join(unknown) or "none"}')
        self.bag = Path(bag)
        self.rate, self.outputs, self.timeout, self.drain = rate, tuple(outputs), timeout, drain
        self.keep_stamps, self.progress, self.log = keep_stamps, progress, log
        remap = dict(remap or {})
        with BagReader(self.bag) as reader:
            reader.check_topics(image_topics, 'image topic')
            self.storage = reader.storage
            topic_types = dict(reader.topics)
        self.cameras = {}
        for topic in dict.fromkeys(image_topics):
            msgtype = topic_types[topic][0]
            if msgtype not in IMAGE_TYPES:
                raise BagError(f'{topic} has type {msgtype}; --live replays '
                               'sensor_msgs/msg/Image and CompressedImage topics')
            target = remap.get(topic, topic)
            self.cameras[topic] = _LiveCamera(topic, target, image_namespace(target), msgtype)
        self.output_dir = self.bag_out = None
        if output_dir is not None:
            self.output_dir = Path(output_dir)
            self.bag_out = self.output_dir / 'bag'
            if self.bag_out.exists():
                if not overwrite:
                    raise BagError(f'{self.bag_out} exists already; remove it, choose another '
                                   '--output or pass --overwrite')
                shutil.rmtree(self.bag_out)
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.records = queue.SimpleQueue()
        self.stop = threading.Event()
        self.unexpected = collections.Counter()
        self.writer = None
        self.interrupted = False
        self.replay = {'start': None, 'end': None}

    def run(self):
        """Replay the bag against the node; return the summary (written when asked)."""
        rclpy = _import_rclpy()
        from rclpy.signals import SignalHandlerOptions

        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node('liteseg_bag_eval_%d' % os.getpid(), context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        threads = []
        try:
            self._connect()
            threads.append(threading.Thread(target=self._spin, name='bag_eval_spin',
                                            daemon=True))
            if self.writer is not None:
                threads.append(threading.Thread(target=self._write, name='bag_eval_writer',
                                                daemon=True))
            for thread in threads:
                thread.start()
            time.sleep(1.0)  # let the output subscriptions match before the first frame
            self._replay_bag()
        finally:
            self.stop.set()
            self.records.put(None)
            for thread in threads:
                thread.join(timeout=30)
            if self.writer is not None:
                self.writer.close()
            self.executor.shutdown()
            self.node.destroy_node()
            rclpy.try_shutdown(context=self.context)
        return self._results()

    def _connect(self):
        """Create the publishers, wait for the node, then the writer and the subscriptions."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        node = self.node
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for camera in self.cameras.values():
            camera.publisher = node.create_publisher(_msg_class(camera.msgtype),
                                                     camera.publish_topic, reliable)
        _wait_for_node(node, self.cameras, self.outputs, self.timeout)
        if self.bag_out is not None:
            self.writer = BagWriter(self.bag_out, self.storage)
        for camera in self.cameras.values():
            for output in self.outputs:
                topic = output_topic(camera.namespace, output)
                qos = QoSProfile(depth=100, reliability=_publisher_reliability(node, topic))
                camera.received[output] = {}
                node.create_subscription(
                    _msg_class(OUTPUT_TYPES[output]), topic,
                    lambda raw, c=camera, o=output: self._on_output(raw, c, o), qos, raw=True)

    def _on_output(self, raw, camera, output):
        now = time.monotonic()
        try:
            stamp = stamp_to_ns(stamp_of(raw))
        except BagError:
            self.unexpected['malformed'] += 1
            return
        with self.lock:
            sent = camera.sent.get(stamp)
            if sent is None:
                self.unexpected[output] += 1
                return
            got = camera.received[output]
            if stamp in got:
                camera.duplicates += 1
                return
            got[stamp] = now
        if self.writer is not None:
            _, original, timestamp = sent
            restored = raw if self.keep_stamps else with_stamp(raw, original // 10**9,
                                                               original % 10**9)
            self.records.put((output_topic(camera.namespace, output), timestamp, restored,
                              OUTPUT_TYPES[output]))

    def _spin(self):
        while not self.stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _write(self):
        while True:
            item = self.records.get()
            if item is None:
                return
            topic, timestamp, raw, msgtype = item
            self.writer.write_raw(topic, timestamp, raw, msgtype)

    def _replay_bag(self):
        """Publish the frames at the recorded rate, then wait for the last outputs."""
        from tqdm import tqdm

        with BagReader(self.bag) as reader:
            total = reader.count(list(self.cameras))
            bar = tqdm(total=total, unit='frame', desc='bag-eval --live',
                       disable=None if self.progress else True, dynamic_ncols=True)
            try:
                first_ts = None
                for message in reader.messages(list(self.cameras)):
                    camera = self.cameras[message.topic]
                    bar.update(1)
                    if message.msgtype not in IMAGE_TYPES:
                        camera.skipped += 1
                        continue
                    if first_ts is None:
                        first_ts = message.timestamp
                        self.replay['start'] = time.monotonic()
                    due = self.replay['start'] + (message.timestamp - first_ts) / 1e9 / self.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self._publish(camera, message)
                self.replay['end'] = time.monotonic()
                _drain(self.cameras, self.outputs, self.lock, self.drain)
            except KeyboardInterrupt:
                self.interrupted = True
                self.log('\nbag-eval --live: interrupted; writing the results so far')
            finally:
                bar.close()
                if self.replay['end'] is None:
                    self.replay['end'] = time.monotonic()

    def _publish(self, camera, message):
        """Publish one recorded frame, restamped unless ``keep_stamps``."""
        try:
            original = stamp_to_ns(stamp_of(message.raw))
        except BagError:
            camera.skipped += 1
            return
        if self.keep_stamps:
            stamp, raw = original, bytes(message.raw)
        else:
            stamp = self.node.get_clock().now().nanoseconds
            raw = with_stamp(message.raw, stamp // 10**9, stamp % 10**9)
        with self.lock:
            camera.sent[stamp] = (time.monotonic(), original, message.timestamp)
        camera.publisher.publish(raw)
        camera.published += 1

    def _results(self):
        summary = live_summary(self.bag, self.storage, self.cameras, self.outputs, self.rate,
                               self.replay, self.unexpected, self.interrupted,
                               self.keep_stamps)
        files = {}
        if self.bag_out is not None:
            files['bag'] = str(self.bag_out)
            files['summary'] = str(self.output_dir / 'summary.json')
            summary['files'] = files
            write_summary(self.output_dir / 'summary.json', summary)
        else:
            summary['files'] = files
        self.log(format_live_summary(summary))
        return summary


def _publisher_reliability(node, topic):
    from rclpy.qos import ReliabilityPolicy

    infos = node.get_publishers_info_by_topic(topic)
    if infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


def _wait_for_node(node, cameras, outputs, timeout):
    """Wait until every input has a subscriber and every output a publisher."""
    deadline = time.monotonic() + timeout
    while True:
        missing_in = [c.publish_topic for c in cameras.values()
                      if c.publisher.get_subscription_count() == 0]
        missing_out = [output_topic(c.namespace, o) for c in cameras.values() for o in outputs
                       if node.count_publishers(output_topic(c.namespace, o)) == 0]
        if not missing_in and not missing_out:
            return
        if time.monotonic() > deadline:
            namespaces = sorted({c.namespace.lstrip('/') or '(root)' for c in cameras.values()})
            raise LiveError(
                f'after {timeout:g} s: '
                + (f'nobody subscribes to {", ".join(missing_in)}; ' if missing_in else '')
                + (f'nobody publishes {", ".join(missing_out)}; ' if missing_out else '')
                + f'start segment_node with cameras: {namespaces} (transport raw for Image, '
                'compressed for CompressedImage topics) in the same ROS_DOMAIN_ID, or '
                "map the bag topics onto the node's with --remap FROM:=TO")
        time.sleep(0.1)


def _drain(cameras, outputs, lock, drain):
    """Wait until every frame has every output or ``drain`` s pass without a new one."""
    last_count, last_change = -1, time.monotonic()
    while True:
        with lock:
            done = all(len(c.received[o]) >= len(c.sent) for c in cameras.values()
                       for o in outputs)
            count = sum(len(c.received[o]) for c in cameras.values() for o in outputs)
        if done:
            return
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change > drain:
            return
        time.sleep(0.02)


def live_summary(bag, storage, cameras, outputs, rate, replay, unexpected, interrupted,
                 keep_stamps):
    """Return the summary dict of a live replay (see docs/bag_eval.md)."""
    reference = outputs[0]
    duration = max((replay['end'] or 0) - (replay['start'] or 0), 1e-9)
    summary = {
        'mode': 'live', 'bag': str(bag), 'storage': storage, 'rate': rate,
        'outputs': list(outputs), 'reference_output': reference,
        'restamped': not keep_stamps, 'interrupted': interrupted, 'topics': {},
    }
    all_latency, all_frames, all_matched, all_times, all_sent = [], 0, 0, [], []
    for camera in cameras.values():
        published = len(camera.sent)
        sent_times = sorted(t for t, _, _ in camera.sent.values())
        all_sent += sent_times
        entry = {'publish_topic': camera.publish_topic, 'frames': published,
                 'skipped_messages': camera.skipped, 'outputs': {}}
        for output in outputs:
            got = camera.received[output]
            latency = [(got[s] - camera.sent[s][0]) * 1e3 for s in got]
            times = sorted(got.values())
            out_rate = _rate(times)
            entry['outputs'][output] = {
                'topic': output_topic(camera.namespace, output), 'received': len(got),
                'latency_ms': percentiles(latency), 'rate_hz': round(out_rate, 3)}
            if output == reference:
                missing = sorted(s for s in camera.sent if s not in got)
                entry['matched'] = len(got)
                entry['frames_without_output'] = len(missing)
                entry['missing_stamps'] = [camera.sent[s][1] / 1e9 for s in missing[:20]]
                entry['latency_ms'] = percentiles(latency)
                entry['output_rate_hz'] = round(out_rate, 3)
                entry['input_rate_hz'] = round(_rate(sent_times), 3)
                all_latency += latency
                all_frames += published
                all_matched += len(got)
                all_times += times
        summary['topics'][camera.topic] = entry
    summary.update({
        'frames': all_frames, 'matched': all_matched,
        'matched_fraction': round(all_matched / all_frames, 4) if all_frames else 0.0,
        'frames_without_output': all_frames - all_matched,
        'latency_ms': percentiles(all_latency),
        'input_rate_hz': round(_rate(sorted(all_sent)), 3),
        'output_rate_hz': round(_rate(sorted(all_times)), 3),
        'replay_s': round(duration, 3),
        'unexpected_outputs': dict(unexpected),
        'duplicate_outputs': sum(c.duplicates for c in cameras.values()),
    })
    return summary


def _rate(times):
    """Return events per second over sorted monotonic ``times`` (0 for fewer than two)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def run_live(bag, image_topics, output_dir=None, rate=1.0, outputs=DEFAULT_OUTPUTS, remap=None,
             timeout=30.0, drain=3.0, keep_stamps=False, overwrite=False, progress=True,
             log=print):
    """
    Replay image topics of ``bag`` into the ROS graph and time the node's outputs.

    ``remap`` maps bag topics onto the topics to publish on; ``timeout`` is how long to wait
    for the node, ``drain`` how long after the last frame to wait for outputs (see the module
    docstring). Returns the summary, also written to ``output_dir/summary.json``.
    """
    return LiveReplay(bag, image_topics, output_dir, rate, outputs, remap, timeout, drain,
                      keep_stamps, overwrite, progress, log).run()


__all__ = ['LiveError', 'LiveReplay', 'live_summary', 'run_live']
