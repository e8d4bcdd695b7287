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
ROS 2 layer of liteseg_ros: the segmentation node, message construction, live replay, demo.

This is the only package of the project that may import rclpy or ROS message packages
(see docs/architecture.md). Submodules import them where they need them. The image decoders
read message fields only and live outside, in ``liteseg_ros.image_codecs``, with the bag
tools in ``liteseg_ros.bags``.
"""
