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
Example: one segment_node serving two cameras, front and rear, batched together.

    ros2 launch liteseg_ros multi_camera.launch.py model_path:=/path/pp_liteseg_t.onnx

Subscribes to /front/image_raw and /rear/image_raw and publishes /front/segmentation/* and
/rear/segmentation/*. Frames of both cameras that arrive within ``batch_timeout_ms`` (from the
config file) run as one batch. Other arguments as in segment.launch.py.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from liteseg_ros.ros.dds import large_frames_by_default

# Forwarded to segment.launch.py (config, when given, is seen by the included file as well;
# otherwise it applies its own default).
FORWARDED = (('model_path', ''), ('namespace', ''), ('use_sim_time', 'false'),
             ('log_level', 'info'),
             ('large_frames', 'true' if large_frames_by_default() else 'false'))


def generate_launch_description():
    """Include segment.launch.py with cameras:=/front,/rear."""
    segment = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'segment.launch.py')
    arguments = [DeclareLaunchArgument('cameras', default_value='/front,/rear',
                                       description='the two camera namespaces')]
    arguments += [DeclareLaunchArgument(name, default_value=default)
                  for name, default in FORWARDED]
    forwarded = {name: LaunchConfiguration(name) for name, _ in FORWARDED}
    forwarded['cameras'] = LaunchConfiguration('cameras')
    return LaunchDescription(arguments + [IncludeLaunchDescription(
        PythonLaunchDescriptionSource(segment), launch_arguments=forwarded.items())])
