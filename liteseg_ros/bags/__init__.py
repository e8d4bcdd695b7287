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
rosbag2 tools without ROS: bag I/O, offline evaluation, reports, dataset-to-bag.

Everything here works with ``rosbags`` alone (no rclpy, no generated message packages):

- ``rosbag``: read and write rosbag2 bags (MCAP and sqlite3);
- ``evaluation``: ``liteseg bag-eval`` offline, the segmenter on recorded image topics;
- ``report``: its summary JSON, text report, contact sheet and confusion matrix picture;
- ``cli``: the ``liteseg bag-eval`` arguments (``--live`` is handed in: ``ros.live_replay``);
- ``dataset_to_bag``: ``liteseg dataset-to-bag``, a dataset split written as a bag;
- ``fleet``, ``fleet_ray``, ``fleet_report``: many bags, one report, in-process or on Ray
  (ray is imported only for ``--ray``).

See docs/architecture.md for the layers and docs/bag_eval.md for bag-eval.
"""
