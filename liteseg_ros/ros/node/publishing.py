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
The node's output side in ROS terms: QoS, lifecycle publishers, and output arrays as messages.

What each output contains is decided by ``liteseg_ros.inference.outputs.OutputRenderer``; this
module only wraps its arrays (and PNG bytes) into ``sensor_msgs`` messages and publishes them.
"""

import array

from liteseg_ros.inference.outputs import output_topic, OUTPUTS
from liteseg_ros.ros.messages import mono8_message, rgb8_message
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

PNG_FORMAT = 'mono8; png compressed'  # image_transport's name for a PNG of a mono8 image


def qos_profile(reliability, depth):
    """Return a volatile keep-last ``depth`` QoS, 'reliable' or 'best_effort'."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
        reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                     else ReliabilityPolicy.BEST_EFFORT))


def create_publishers(node, namespace, qos):
    """Return {output: lifecycle publisher on <namespace>/segmentation/<output>}."""
    return {output: node.create_lifecycle_publisher(
        CompressedImage if output == 'mask/compressed' else Image,
        output_topic(namespace, output), qos) for output in OUTPUTS}


def destroy_publishers(node, publishers):
    """Destroy the publishers of create_publishers."""
    for publisher in publishers.values():
        node.destroy_lifecycle_publisher(publisher)


def wanted_outputs(publishers):
    """Return the outputs someone subscribes to (the others are not computed)."""
    return {output for output, publisher in publishers.items()
            if publisher.get_subscription_count()}


def png_bytes_message(data, header):
    """Build a ``sensor_msgs/CompressedImage`` holding the PNG ``data`` of a mono8 image."""
    msg = CompressedImage()
    msg.header = header
    msg.format = PNG_FORMAT
    payload = array.array('B')  # what rclpy stores; a bytes value is checked byte by byte
    payload.frombytes(data)
    msg.data = payload
    return msg


def output_message(value, header):
    """Wrap one rendered output: PNG bytes, an HxW mono8 or an HxWx3 rgb8 array."""
    if isinstance(value, bytes):
        return png_bytes_message(value, header)
    return rgb8_message(value, header) if value.ndim == 3 else mono8_message(value, header)


def publish_outputs(publishers, outputs, header):
    """Publish ``outputs`` ({output: rendered value}) with the input's ``header``."""
    for output, value in outputs.items():
        publishers[output].publish(output_message(value, header))
