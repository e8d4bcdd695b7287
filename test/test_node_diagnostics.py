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


"""segment_node diagnostics: the pure functions from counter snapshots to statuses."""

from liteseg_ros.ros.node.diagnostics import (BatchCounters, camera_status, CameraCounters,
                                              CameraTimes, diagnostic_array, ERROR, node_status,
                                              OK, TRANSPORT_LOSS_HINT, WARN)
import pytest

TOPIC = '/car/front/image_raw'


def status(now, before=None, elapsed_s=2.0, times=None, **kwargs):
    return camera_status('/car/front', TOPIC, now, before or CameraCounters(), elapsed_s,
                         times or CameraTimes(), **kwargs)


def test_all_frames_published_is_ok_with_rates_per_second():
    result = status(CameraCounters(received=10, published=10), elapsed_s=2.0)
    assert (result.name, result.level, result.message) == ('/car/front', OK, 'ok')
    assert result.values['rate_hz'] == '5.00' and result.values['input_rate_hz'] == '5.00'
    assert result.values['topic'] == TOPIC and result.values['dropped'] == '0'
    assert result.values['last_error'] == '-' and result.values['backend'] == '-'


def test_dropped_frames_warn_and_count_every_kind():
    now = CameraCounters(received=12, published=9, dropped_replaced=1, dropped_in_queue=1,
                         dropped_stale=1)
    before = CameraCounters(dropped_in_queue=1)  # no frame lost in transport this period
    result = status(now, before)
    assert result.level == WARN
    assert result.message == '2 frames dropped (behind or stale)'
    assert [result.values[k] for k in ('dropped_replaced', 'dropped_in_queue', 'dropped_stale',
                                       'dropped')] == ['1', '1', '1', '3']


def test_frames_lost_in_transport_warn_with_cause_and_fixes():
    before = CameraCounters(received=10, published=10, dropped_in_queue=2)
    now = CameraCounters(received=20, published=20, dropped_in_queue=10, dropped_replaced=3)
    result = status(now, before)
    assert result.level == WARN
    assert result.message == ('8 frames lost before the node received them. '
                              + TRANSPORT_LOSS_HINT)
    for words in ('best-effort', 'UDP', 'ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST',
                  'socket buffers', 'FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA',
                  'qos_reliability: reliable', 'net.core.rmem_max'):
        assert words in result.message, words
    assert result.values['dropped_in_queue'] == '10' and result.values['dropped'] == '13'
    # Rejected images come first; losses older than the period are old news.
    assert status(CameraCounters(received=20, published=19, decode_errors=1,
                                 dropped_in_queue=10), before).message == '1 images rejected'
    assert status(CameraCounters(received=20, published=20, dropped_in_queue=2),
                  before).level == OK


def test_levels_come_from_the_period_and_values_from_the_totals():
    before = CameraCounters(received=100, published=90, dropped_stale=10, decode_errors=5)
    now = CameraCounters(received=110, published=100, dropped_stale=10, decode_errors=5)
    result = status(now, before, elapsed_s=4.0)
    assert (result.level, result.message) == (OK, 'ok')  # drops and errors are old news
    assert result.values['rate_hz'] == '2.50'  # 10 published in 4 s
    assert result.values['dropped'] == '10' and result.values['decode_errors'] == '5'
    assert result.values['frames_received'] == '110'


def test_every_message_rejected_is_an_error_some_rejected_a_warning():
    before = CameraCounters(received=3, published=3)
    all_bad = status(CameraCounters(received=7, published=3, decode_errors=4), before)
    assert (all_bad.level, all_bad.message) == (ERROR, 'all 4 images rejected')
    some_bad = status(CameraCounters(received=7, published=6, decode_errors=1), before)
    assert (some_bad.level, some_bad.message) == (WARN, '1 images rejected')


def test_inference_failures_come_first():
    now = CameraCounters(received=5, decode_errors=5, inference_errors=2, dropped_stale=1)
    result = status(now)
    assert (result.level, result.message) == (ERROR, '2 inference failures')


def test_no_images_warns_naming_the_topic():
    result = status(CameraCounters())
    assert (result.level, result.message) == (WARN, f'no images on {TOPIC}')


def test_no_subscribers_is_idle_not_slow():
    result = status(CameraCounters(received=4, skipped_no_subscribers=4), min_rate_hz=10.0)
    assert (result.level, result.message) == (OK, 'idle: no subscribers')


@pytest.mark.parametrize('min_rate_hz, level', [(0.0, OK), (1.0, OK), (1.5, WARN)])
def test_min_rate(min_rate_hz, level):
    result = status(CameraCounters(received=2, published=2), elapsed_s=2.0,
                    min_rate_hz=min_rate_hz)
    assert result.level == level
    if level == WARN:
        assert result.message == 'rate 1.0 Hz below min_rate_hz 1.5'


def test_percentiles_of_the_recent_times():
    times = CameraTimes()
    times.latency.extend([40.0, 10.0, 30.0, 20.0])
    times.decode.extend([1.0, 2.0])
    result = status(CameraCounters(received=4, published=4), times=times.copy())
    # numpy's default (linear) percentile of 10, 20, 30, 40: p50 halfway between 20 and 30,
    # p95 at rank 0.95 * 3 = 2.85, i.e. 30 + 0.85 * 10.
    assert result.values['latency_p50_ms'] == '25.0'
    assert result.values['latency_p95_ms'] == '38.5'
    assert result.values['decode_p50_ms'] == '1.50'
    assert result.values['overhead_p50_ms'] == 'nan'  # nothing measured yet


def test_node_status():
    batches = BatchCounters()
    for size, backend_ms in ((1, 10.0), (2, 30.0), (1, 20.0)):
        batches.add(size, backend_ms)
    snapshot = batches.copy()
    batches.add(2, 99.0)  # after the snapshot: not reported
    result = node_status('active', 'onnxruntime (model.onnx)', snapshot)
    assert (result.name, result.level, result.message) == ('node', OK, 'active')
    assert result.values == {'state': 'active', 'model': 'onnxruntime (model.onnx)',
                             'batches': '3', 'batch_sizes': '1:2 2:1',
                             'backend_ms_p50': '20.0', 'confidence': 'ok',
                             'confidence_failures': '0', 'confidence_error': '-'}
    inactive = node_status('inactive', '', BatchCounters())
    assert (inactive.level, inactive.message) == (WARN, 'inactive, not segmenting')
    assert inactive.values['model'] == '-' and inactive.values['batch_sizes'] == '-'
    failed = node_status('unconfigured', '', BatchCounters(), 'no such file')
    assert (failed.level, failed.message) == (ERROR, 'configure failed: no such file')


def test_failing_confidence_warns_with_the_error_and_the_next_try():
    paused = node_status('active', 'm', BatchCounters(), confidence=(3, 'CUDA out of memory', 4.0))
    assert paused.level == WARN
    assert paused.message == ('confidence failed 3 times in a row, the confidence output pauses '
                              '(next try in 4.0 s): CUDA out of memory')
    assert (paused.values['confidence'], paused.values['confidence_failures'],
            paused.values['confidence_error']) == ('paused', '3', 'CUDA out of memory')
    # A failed configure or an inactive node says that first; the values still tell.
    failed = node_status('unconfigured', '', BatchCounters(), 'no such file', (1, 'oom', 1.0))
    assert failed.level == ERROR and failed.values['confidence'] == 'paused'


def test_counters_copy_is_a_snapshot():
    counters = CameraCounters(received=1)
    snapshot = counters.copy()
    counters.received += 1
    assert (snapshot.received, counters.received) == (1, 2)


def test_diagnostic_array_wraps_the_statuses():
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticStatus

    statuses = [node_status('active', 'm', BatchCounters()),
                status(CameraCounters(received=2, decode_errors=2))]
    array = diagnostic_array(statuses, Time(sec=3), 'segment_node', '/car/segment_node')
    assert array.header.stamp.sec == 3
    assert [s.name for s in array.status] == ['segment_node: node', 'segment_node: /car/front']
    assert [s.level for s in array.status] == [DiagnosticStatus.OK, DiagnosticStatus.ERROR]
    assert all(s.hardware_id == '/car/segment_node' for s in array.status)
    values = {kv.key: kv.value for kv in array.status[1].values}
    assert values == statuses[1].values
