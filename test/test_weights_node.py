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
A zoo name as the node's ``model_path``: a real node process fetches, converts and exports it.

The zoo path is served by ``test_weights.ZooServer`` on 127.0.0.1 (a seeded model of ours
under PaddleSeg's key names); the node downloads it at configure, exports the ONNX into the
cache and segments a frame, whose mask must match this process's PyTorch run of the model
that was served.
"""

from liteseg_ros.inference import Segmenter, weights
from liteseg_ros.model import save_checkpoint
import numpy as np
import pytest
import test_segment_node as base
from test_weights import CITY_T, paddle_format, paddle_names, seeded_model, zoo_path, ZooServer

pytestmark = pytest.mark.ros
client, ros_context, run_node = base.client, base.ros_context, base.run_node  # fixtures


def test_zoo_name_as_model_path(tmp_path, monkeypatch, client, run_node):
    model = seeded_model()
    server = ZooServer()
    server.files[zoo_path(CITY_T)] = paddle_format(model.state_dict(), paddle_names('t'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    monkeypatch.setenv(weights.URL_ENV, server.url)
    try:
        node = run_node(model_path=CITY_T, cameras=['cam0'], threads=1, max_frame_age_ms=0.0,
                        qos_reliability='reliable', diagnostics_period_s=0.5)
        client.subscribe('cam0', ['mask'])
        publisher = client.publisher('/cam0/image_raw')
        base.wait_matched(client, [publisher], timeout=120)
        _, _, values = client.wait_diagnostics(
            'node', lambda level, message, v: message == 'active', 600,
            'the node to fetch, export and load the zoo model')
    finally:
        server.close()
    onnx = tmp_path / 'xdg' / 'liteseg' / f'{CITY_T}.onnx'
    assert onnx.is_file() and CITY_T in values['model'], values
    assert f'loading {onnx} with the onnxruntime backend' in node.log()
    assert [r[0] for r in server.requests] == [zoo_path(CITY_T)]

    frame = base.make_street_scene(256, 512, seed=3)
    sent = base.header('cam0_optical_frame', base.stamp_now())
    publisher.publish(base.encoded_image_message(frame, 'rgb8', sent))
    base.wait_for_outputs(client, ['cam0'], {'cam0': sent}, timeout=120)
    mask = next(base.image_array(m) for m in client.received[('cam0', 'mask')]
                if base.same_header(m, sent))
    checkpoint = tmp_path / 'served.pt'
    save_checkpoint(checkpoint, model)
    expected = Segmenter.from_file(checkpoint, 'torch', threads=1)([frame])[0].mask
    agreement = float((mask == expected).mean())
    assert len(np.unique(expected)) > 1 and agreement >= 0.999, agreement
    assert 'downloading' in node.log()
