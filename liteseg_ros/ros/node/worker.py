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
The node's worker thread: collect a batch from the cameras, drop stale frames, segment, publish.

One thread, started at activate and stopped at deactivate. It sleeps on a condition until a
subscription callback queues a message, takes the newest frame of each camera (see
cameras.take_newest), waits up to ``batch_timeout_ms`` after the first frame for the other
cameras, drops frames older than ``max_frame_age_ms`` and runs the rest through the Pipeline
as one batch (docs/node.md, "Design"). ``settings`` is read afresh for every batch, so live
parameter changes apply from the next frame.
"""

import threading
import time

from liteseg_ros.ros.node.cameras import take_newest, take_waiting
from liteseg_ros.ros.node.publishing import publish_outputs, wanted_outputs


def stamp_ns(header):
    """Return a header's stamp in nanoseconds."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class Worker:
    """The thread that takes, batches, segments and publishes the cameras' frames."""

    def __init__(self, cameras, settings, pipeline, batches, wake, logger, clock, gate=None):
        """
        Prepare a worker for ``cameras``; :meth:`start` runs it.

        ``wake`` is the threading.Condition the subscription callbacks notify; its lock guards
        the cameras' queues and counters and ``batches`` (BatchCounters). ``clock`` is the
        node clock that ``max_frame_age_ms`` compares stamps with. ``gate`` (an InputGate)
        is open while the worker waits for frames and closed while it is busy.
        """
        self.cameras = list(cameras)
        self.settings = settings
        self.pipeline = pipeline
        self.batches = batches
        self.lock = wake
        self.wake = wake
        self.logger = logger
        self.clock = clock
        self.grid = None  # the node's GroundGridOutput (ros/node/grid.py), if any
        self.gate = gate
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        """Start the thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name='segment_worker', daemon=True)
        self._thread.start()

    def stop(self):
        """Stop the thread and wait for it (unless called from it)."""
        self._stop.set()
        with self.wake:
            self.wake.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None

    def _run(self):
        while True:
            try:
                batch = self._collect()
            except Exception as exc:  # a subscription gone at shutdown, ...
                if self._stop.is_set():
                    return
                self.logger.error(f'taking images failed: {exc!r}', throttle_duration_sec=1.0)
                self._stop.wait(0.1)
                continue
            if batch is None:
                return
            try:
                self._process(batch)
            except Exception as exc:  # keep the worker alive whatever happens
                if self._stop.is_set():
                    return
                with self.lock:
                    for camera, _ in batch:
                        camera.counters.inference_errors += 1
                        camera.counters.last_error = f'processing failed: {exc!r}'
                self.logger.error(f'processing failed: {exc!r}', throttle_duration_sec=1.0)

    def _collect(self):
        """Wait until a batch is ready; return [(camera, frame)], or None when stopped."""
        cameras = self.cameras
        pending = {}
        deadline = None
        gate = self.gate
        if gate is not None:  # frames that came while busy: take them without the executor
            gate.count_closed()
            for camera in cameras:
                take_waiting(camera, self.lock, self.logger)
        while not self._stop.is_set():
            if gate is not None and not any(c.inbox for c in cameras):
                gate.start_taking()
            self._wait(deadline)
            for camera in cameras:
                frame = take_newest(camera, self.lock, self.logger)
                if frame is not None:
                    if camera.name in pending:
                        with self.lock:
                            camera.counters.dropped_replaced += 1
                    pending[camera.name] = frame
            if pending:
                if len(pending) == len(cameras):
                    break
                if deadline is None:
                    deadline = (min(f.received for f in pending.values())
                                + self.settings.batch_timeout_ms / 1e3)
                if time.monotonic() >= deadline:
                    break
        if self.gate is not None:
            self.gate.stop_taking()
        if self._stop.is_set():
            return None
        return [(c, pending[c.name]) for c in cameras if c.name in pending]

    def _wait(self, deadline):
        """Sleep until a camera has a message queued, ``deadline`` passes or stop()."""
        with self.wake:
            while not self._stop.is_set() and not any(c.inbox for c in self.cameras):
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    return
                self.wake.wait(timeout)

    def _fresh(self, batch):
        """Drop frames older than max_frame_age_ms (stamp vs node clock); return the rest."""
        max_age = self.settings.max_frame_age_ms
        if not max_age:
            return batch
        now = self.clock.now().nanoseconds
        fresh = []
        for camera, frame in batch:
            stamp = stamp_ns(frame.header)
            age_ms = (now - stamp) / 1e6
            if stamp and age_ms > max_age:  # a zero stamp is never stale
                with self.lock:
                    camera.counters.dropped_stale += 1
                self.logger.warning(
                    f"camera '{camera.name}': dropped a frame {age_ms:.0f} ms old (stamp "
                    f'{stamp / 1e9:.3f} s, node clock {now / 1e9:.3f} s), older than '
                    f'max_frame_age_ms {max_age:g}; replaying a bag needs use_sim_time, '
                    'max_frame_age_ms 0 turns the check off', throttle_duration_sec=1.0)
            else:
                fresh.append((camera, frame))
        return fresh

    def _process(self, batch):
        picked = time.monotonic()
        work = []
        for camera, frame in self._fresh(batch):
            wanted = wanted_outputs(camera.publishers)
            if wanted or (self.grid is not None and self.grid.wants_frames()):
                work.append((camera, frame, wanted))
            else:
                with self.lock:
                    camera.counters.skipped_no_subscribers += 1
        if not work:
            return
        results, backend_ms = self.pipeline.segment(
            [frame.rgb for _, frame, _ in work],
            any('confidence' in wanted for _, _, wanted in work))
        size = len(work)
        with self.lock:
            self.batches.add(size, backend_ms)
        published = []
        for (camera, frame, wanted), result in zip(work, results):
            outputs = self.pipeline.render(wanted, frame.rgb, result)
            publish_outputs(camera.publishers, outputs, frame.header)
            self._count_published(camera, frame, size, picked, backend_ms)
            published.append((camera.name, frame.header, result.mask, outputs))
        if self.grid is not None:  # camera_info beside the outputs, and the batch's grid
            self.grid.after_batch(published)

    def _count_published(self, camera, frame, size, picked, backend_ms):
        done = time.monotonic()
        latency = (done - frame.received) * 1e3
        with self.lock:
            counters, times = camera.counters, camera.times
            counters.published += 1
            counters.last_batch_size = size
            if size > 1:
                counters.multi_camera_batched += 1
            times.latency.append(latency)
            times.overhead.append(latency - backend_ms)
            times.processing.append((done - picked) * 1e3 - backend_ms)
            # In the DDS queue while the worker was busy, then waiting for the batch.
            times.queue_wait.append((frame.taken - frame.received + picked - frame.ready) * 1e3)
