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
Taking a waiting message without the executor: the one non-public rclpy call of the node.

When the worker finishes a batch while a newer frame already waits in DDS (a camera faster
than the model), it takes that frame itself instead of waking the executor to run the
subscription's callback: the public-only designs measured 0.83-0.87 of the standalone rate,
0.88-0.92 with this take (docs/node.md, "Choice of input path").
rclpy has no public ``take()``; ``Subscription.handle.take_message(msg_type, raw)`` has the
same signature on Humble, Jazzy and Kilted, and test/test_node_input.py pins what it returns on
Jazzy and Kilted. Everything that depends on it is here.
"""


def take_serialized(subscription):
    """
    Take the oldest waiting message of a raw subscription; return (bytes, info) or None.

    ``info`` is the message info dict (``{}`` where rclpy gives none), as the subscription's
    two-argument callback would receive it.
    """
    with subscription.handle:
        taken = subscription.handle.take_message(subscription.msg_type, True)
    if taken is None:
        return None
    data, info = taken if isinstance(taken, tuple) else (taken, {})
    return data, info if isinstance(info, dict) else {}
