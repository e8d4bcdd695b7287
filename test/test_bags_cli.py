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

"""``liteseg bag-eval`` front door: the --device words reach load_backend unchanged."""

import json

from liteseg_ros.bags.rosbag import BagWriter, header, image_message
from liteseg_ros.cli import main as liteseg_main
from liteseg_ros.sample_images import make_street_scene
from onnx_models import onnx_model
import pytest

# Torch-free: runs on Python 3.10/3.12 too.
pytestmark = pytest.mark.lite


@pytest.fixture(scope='module')
def onnx_and_bag(tmp_path_factory):
    """Return a small seeded ONNX model and a two-frame rgb8 bag."""
    root = tmp_path_factory.mktemp('bags_cli')
    model = onnx_model('t_128x256', tmp_path_factory)
    with BagWriter(root / 'bag', 'mcap') as writer:
        for i in range(2):
            stamp = 10**9 + i * 10**8
            msg = image_message(make_street_scene(64, 96, seed=i), 'rgb8',
                                header(stamp // 10**9, stamp % 10**9, 'cam'))
            writer.write('/cam/image_raw', stamp, msg)
    return model, root / 'bag'


def test_device_cuda_without_cuda_is_one_line_and_cpu_runs(onnx_and_bag, tmp_path, capsys,
                                                           monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, 'get_available_providers', lambda: ['CPUExecutionProvider'])
    model, bag = onnx_and_bag
    args = ['bag-eval', str(bag), '--model', str(model), '--image-topic', '/cam/image_raw',
            '--output', str(tmp_path / 'o'), '--no-progress', '--threads', '1']
    assert liteseg_main(args + ['--device', 'cuda']) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err
    assert "'cuda' needs onnxruntime's CUDAExecutionProvider" in err
    assert 'onnxruntime-gpu' in err
    assert liteseg_main(args + ['--device', 'cpu']) == 0
    summary = json.loads((tmp_path / 'o' / 'summary.json').read_text())
    assert summary['frames'] == 2 and summary['device'] == 'CPU'


def _bag_with(path, topics):
    """Write one message per (topic, encoding) of ``topics`` (mono8 = class ids) to a bag."""
    with BagWriter(path, 'mcap') as writer:
        for topic, encoding in topics:
            image = make_street_scene(64, 96, seed=0)
            if encoding == 'mono8':
                image = image[..., 0] % 11
            writer.write(topic, 10**9, image_message(image, encoding, header(1, 0, 'cam')))
    return path


def test_bag_eval_picks_the_only_image_and_label_topics(onnx_and_bag, tmp_path, capsys):
    model, _ = onnx_and_bag
    bag = _bag_with(tmp_path / 'bag', [('/camera/image_raw', 'rgb8'), ('/camera/labels', 'mono8')])
    args = ['bag-eval', str(bag), '--model', str(model), '--output', str(tmp_path / 'o'),
            '--no-progress', '--threads', '1', '--outputs', 'none']
    assert liteseg_main(args) == 0
    assert 'image topic /camera/image_raw, label topic /camera/labels' in capsys.readouterr().out
    summary = json.loads((tmp_path / 'o' / 'summary.json').read_text())
    assert summary['frames'] == 1 and summary['miou'] is not None


@pytest.mark.parametrize('topics, found', [
    ([('/a/image_raw', 'rgb8'), ('/b/image_raw', 'bgr8')], '2 image topic(s) and 0'),
    ([('/a/image_raw', 'rgb8'), ('/a/labels', 'mono8'), ('/b/labels', 'mono8')],
     '1 image topic(s) and 2'),
])
def test_bag_eval_ambiguous_topics_are_one_error_listing_them(onnx_and_bag, tmp_path, capsys,
                                                              topics, found):
    model, _ = onnx_and_bag
    bag = _bag_with(tmp_path / 'bag', topics)
    assert liteseg_main(['bag-eval', str(bag), '--model', str(model), '--output',
                         str(tmp_path / 'o'), '--no-progress']) != 0
    err = capsys.readouterr().err
    assert 'Traceback' not in err and found in err and '--image-topic' in err
    assert all(topic in err for topic, _ in topics)
