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
Launch segment_node (a lifecycle node that configures and activates itself).

    ros2 launch liteseg_ros segment.launch.py model_path:=/path/pp_liteseg_t.onnx
    ros2 launch liteseg_ros segment.launch.py config:=my.yaml cameras:=front,rear
    ros2 launch liteseg_ros segment.launch.py namespace:=car use_sim_time:=true log_level:=debug
    ros2 launch liteseg_ros segment.launch.py model_path:=pp_liteseg_t_cityscapes_0.5

Arguments: ``config`` (parameters file; default: the installed config/segment.yaml),
``model_path`` and ``cameras`` (override the file when not empty; cameras as ``front,rear``
or ``[front, rear]``; a zoo name of ``liteseg weights list`` is a model too),
``namespace`` (of the node, and so of relative camera topics), ``use_sim_time``,
``log_level`` and ``large_frames`` (true: the node's Fast DDS reads the shipped
config/fastdds_large_frames.xml through FASTDDS_DEFAULT_PROFILES_FILE (Fast DDS 3) or
FASTRTPS_DEFAULT_PROFILES_FILE (Fast DDS 2); default true with
Fast DDS 2, i.e. Jazzy; the camera driver's process needs the same file, see
docs/troubleshooting.md).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from liteseg_ros.ros.dds import large_frames_by_default, large_frames_profile, profiles_env

LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'fatal']


def parse_cameras(text):
    """Return the camera list of a 'front,rear' / '[front, rear]' / 'front rear' argument."""
    text = text.strip().strip('[]')
    return [c.strip().strip('\'"') for c in text.replace(',', ' ').split() if c.strip('\'"')]


def _node(context):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {'use_sim_time': value('use_sim_time').lower() in ('true', '1', 'yes')}
    if value('model_path'):
        overrides['model_path'] = value('model_path')
    cameras = parse_cameras(value('cameras'))
    if cameras:
        overrides['cameras'] = cameras
    environment = {}
    if value('large_frames').lower() == 'true':
        environment[profiles_env()] = str(large_frames_profile())
    return [LifecycleNode(
        package='liteseg_ros', executable='segment_node', name='segment_node',
        namespace=value('namespace'), parameters=[value('config'), overrides],
        arguments=['--ros-args', '--log-level', value('log_level')], output='screen',
        additional_env=environment)]


def generate_launch_description():
    """Return the launch description (see the module docstring)."""
    default_config = os.path.join(get_package_share_directory('liteseg_ros'), 'config',
                                  'segment.yaml')
    return LaunchDescription([
        DeclareLaunchArgument('config', default_value=default_config,
                              description='parameters file of segment_node'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='model file (.pt, .onnx, .engine) or zoo name; '
                                          'overrides the config when not empty'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='camera namespaces, e.g. front,rear; overrides the '
                                          'config when not empty'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              choices=['true', 'false'],
                              description='use /clock (rosbag replay)'),
        DeclareLaunchArgument('log_level', default_value='info', choices=LOG_LEVELS,
                              description='logging level of the node'),
        DeclareLaunchArgument('large_frames',
                              default_value='true' if large_frames_by_default() else 'false',
                              choices=['true', 'false'],
                              description='Fast DDS profile for large frames (64 MiB shared '
                                          'memory) for the node; default true with Fast DDS 2 '
                                          '(Jazzy). Give the camera driver the same file.'),
        OpaqueFunction(function=_node),
    ])
