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
Frames lost in transport are explained: /diagnostics WARNs with the cause and the fixes.

The node and a publisher process run Fast DDS the way that loses large best-effort frames:
discovery range LOCALHOST over UDP only (no shared memory). The publisher sends small frames,
which arrive, between 2048x1024 ones, which overflow the UDP socket buffers and are lost; the
node sees the gaps in the publisher's sequence numbers. The publisher is a process of its own
because Fast DDS reads its transport settings once per process.
"""

import json
import os
import subprocess
import sys

import pytest
import test_segment_node as base

pytestmark = pytest.mark.ros
model, run_node = base.model, base.run_node  # fixtures: the test model, nodes as processes

LOSSY = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'FASTDDS_BUILTIN_TRANSPORTS': 'UDPv4'}

# Publishes small and 2048x1024 frames on /cam0/image_raw, best effort, until cam0's diagnostics
# report lost frames or 90 s pass; prints that status as JSON. The stamps are zero, so only the
# sequence numbers of the message info can show the gaps.
PUBLISHER = """
import json, sys, time
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from liteseg_ros.ros.messages import encoded_image_message
from liteseg_ros.sample_images import make_street_scene
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

rclpy.init()
node = rclpy.create_node('transport_loss_publisher')
found = []
def on_diagnostics(msg):
    for status in msg.status:
        if status.name == 'segment_node: cam0' and 'lost before' in status.message:
            found.append({'level': status.level[0], 'message': status.message,
                          'values': {kv.key: kv.value for kv in status.values}})
node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
publisher = node.create_publisher(Image, '/cam0/image_raw',
                                  QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
small = make_street_scene(48, 64, seed=1)
big = np.ascontiguousarray(np.tile(make_street_scene(256, 512, seed=2), (4, 4, 1)))
messages = {}
for name, frame in (('small', small), ('big', big)):
    messages[name] = encoded_image_message(frame, 'rgb8', Header(frame_id='cam0'))
deadline = time.monotonic() + 90
while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
index = 0
while not found and time.monotonic() < deadline:
    publisher.publish(messages['small' if index % 3 == 0 else 'big'])
    index += 1
    rclpy.spin_once(node, timeout_sec=0.05)
print(json.dumps({'published': index, 'status': found[-1] if found else None}))
"""


@pytest.fixture
def lossy_env():
    """Set the lossy DDS settings for the processes started meanwhile."""
    old = {k: os.environ.get(k) for k in LOSSY}
    os.environ.update(LOSSY)
    yield dict(os.environ)
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_lost_frames_warn_with_cause_and_fixes(model, lossy_env, run_node):
    """Frames lost over UDP: the camera WARNs naming the cause and fixes; a log line too."""
    node = run_node(model_path=str(model['onnx']), cameras=['cam0'], threads=1,
                    max_frame_age_ms=0, diagnostics_period_s=0.5)
    result = subprocess.run([sys.executable, '-c', PUBLISHER], env=lossy_env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    status = report['status']
    assert status is not None, (report, node.log()[-3000:])
    assert status['level'] == 1  # WARN
    assert int(status['values']['dropped_in_queue']) > 0, status
    for words in ('best-effort', 'UDP', 'ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST',
                  'socket buffers', 'FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA', 'reliable',
                  'docs/troubleshooting.md'):
        assert words in status['message'], (words, status['message'])
    log = node.log()
    assert "camera 'cam0'" in log and 'were lost before the node received them' in log, log
