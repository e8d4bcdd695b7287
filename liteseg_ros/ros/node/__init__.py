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
The parts of ``segment_node``, one job per module (the node class is ros/segment_node.py).

- ``parameters``: the parameter table, how each may change, :class:`Settings` and their
  validation (no rclpy);
- ``live``: parameter descriptors, checking changes at runtime, applying the live ones;
- ``cameras``: per-camera state, raw subscriptions (gated) queueing for the worker, decoding
  images, frames lost in transport (sequence or stamp gaps);
- ``take``: taking a waiting message without the executor (the one non-public rclpy call);
- ``pipeline``: loading the model, segmenting a batch, rendering the outputs (no rclpy);
- ``worker``: the thread that collects batches, drops stale frames, segments and publishes;
- ``publishing``: QoS, output publishers, rendered outputs wrapped into messages;
- ``diagnostics``: counters in, statuses out (pure functions), and their DiagnosticArray.
"""
