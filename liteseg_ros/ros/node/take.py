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
Taking messages from a subscription without the executor: the one non-public rclpy call.

rclpy has no public ``take()``; ``Subscription.handle.take_message(msg_type, raw)`` has the
same signature on Humble, Jazzy and Kilted (its info dict differs: Humble has timestamps only,
Jazzy adds sequence numbers, Kilted the publisher gid). Everything that depends on it is here,
so replacing it touches this module only.
"""

from rclpy.callback_groups import CallbackGroup


class TakenByTheWorker(CallbackGroup):
    """Callback group of the image subscriptions: never executed, the worker takes them."""

    def can_execute(self, entity):
        return False

    def beginning_execution(self, entity):
        return False

    def ending_execution(self, entity):
        pass


def never_called(msg):
    """Stand in for the image subscriptions' callbacks (the worker takes the messages)."""


def subscribe(node, msg_type, topic, qos):
    """Create a subscription that the executor never runs; take its messages with take()."""
    return node.create_subscription(msg_type, topic, never_called, qos,
                                    callback_group=TakenByTheWorker())


def take(subscription, msg_type):
    """
    Take the oldest waiting message; return (message, info dict) or None when there is none.

    ``info`` may hold ``received_timestamp`` (ns, system clock), ``publication_sequence_number``
    and ``publisher_gid`` depending on the ROS distribution; it is ``{}`` when unknown.
    """
    with subscription.handle:
        taken = subscription.handle.take_message(msg_type, False)
    if taken is None:
        return None
    # (message, message info dict); tolerate a bare message from other rclpy versions
    msg, info = taken if isinstance(taken, tuple) else (taken, {})
    return msg, info if isinstance(info, dict) else {}
