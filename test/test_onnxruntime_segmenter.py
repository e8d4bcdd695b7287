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
ONNX Runtime ``Segmenter`` on exported models, without torch (runs on Python 3.10/3.12 too).

The models come from ``onnx_models``: exported here when torch is installed, read from
``LITESEG_TEST_MODELS`` otherwise. Comparisons with PyTorch are in test_inference.py.
"""

from liteseg_ros.inference import load_backend, ModelFileError, Segmenter
from liteseg_ros.sample_images import make_street_scene as street_image
import numpy as np
from onnx_models import onnx_model
import pytest

pytestmark = pytest.mark.lite


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Return a seeded T at 128x256 as plain (dynamic batch) and fused (labels) ONNX."""
    return {'onnx': onnx_model('t_128x256', tmp_path_factory),
            'fused': onnx_model('t_fused', tmp_path_factory)}


def test_masks_come_back_at_each_frames_size(models):
    frames = [street_image(480, 640, 1), street_image(256, 512, 2), street_image(1024, 2048, 3)]
    segmenter = Segmenter.from_file(models['onnx'])
    results = segmenter(frames)
    assert [r.mask.shape for r in results] == [f.shape[:2] for f in frames]
    assert all(r.mask.dtype == np.uint8 and r.confidence is None for r in results)
    assert set(segmenter.timings) == {'preprocess', 'infer', 'postprocess', 'total'}
    # Batched results equal one-by-one results.
    for frame, result in zip(frames, results):
        assert np.array_equal(segmenter.segment(frame).mask, result.mask)


@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_fixed_batch_model_runs_any_number_of_frames(tmp_path_factory, backend):
    """A batch-3 export runs 1, 2, 4 and 7 frames as the dynamic-batch export of it does."""
    pytest.importorskip(backend)
    fixed = load_backend(onnx_model('t_batch3', tmp_path_factory), backend, device='cpu',
                         threads=1)
    dynamic = load_backend(onnx_model('t_128x256', tmp_path_factory), backend, device='cpu',
                           threads=1)
    assert fixed.batch_size == 3 and dynamic.batch_size is None
    frames = np.stack([street_image(128, 256, seed) for seed in range(7)])
    for count in (1, 2, 4, 7):
        got = fixed.run(frames[:count], 'logits')['logits']
        expected = dynamic.run(frames[:count], 'logits')['logits']
        assert got.shape == expected.shape == (count, 19, 128, 256)
        # Two float32 runs of one network: the bound of test/tolerances.py (LOGIT_REL).
        scale = np.abs(expected).max()
        assert np.abs(got - expected).max() <= 32 * 32 * np.finfo(np.float32).eps * scale
        labels = fixed.run(frames[:count])['labels']
        assert labels.shape == (count, 128, 256)
        assert (labels == dynamic.run(frames[:count])['labels']).mean() >= 0.9999
    # One frame through the Segmenter (one camera on a node).
    segmenter = Segmenter(fixed)
    assert segmenter.segment(frames[0]).mask.shape == (128, 256)


def test_fused_model_refuses_what_it_cannot_output(models):
    segmenter = Segmenter.from_file(models['fused'], confidence=True)
    with pytest.raises(ModelFileError, match=r't_fused.onnx: .*--fuse.*labels'):
        segmenter([street_image(256, 512)])


@pytest.mark.parametrize('frame, message', [
    (np.zeros((100, 100), np.uint8), r'frame 1: .*HxWx3 uint8.*\(100, 100\)'),
    (np.zeros((100, 100, 4), np.uint8), r'frame 1: .*\(100, 100, 4\)'),
    (np.zeros((100, 100, 3), np.float32), r'frame 1: .*float32'),
    (np.zeros((0, 100, 3), np.uint8), r'frame 1: .*\(0, 100, 3\)'),
])
def test_wrong_frames_are_named(models, frame, message):
    segmenter = Segmenter.from_file(models['onnx'])
    with pytest.raises(ValueError, match=message):
        segmenter([street_image(64, 64), frame])


def test_corrupt_and_truncated_onnx_are_refused(models, tmp_path):
    truncated = tmp_path / 'truncated.onnx'
    truncated.write_bytes(models['onnx'].read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match='truncated.onnx: not a valid ONNX model'):
        load_backend(truncated)
    garbage = tmp_path / 'garbage.onnx'
    garbage.write_bytes(b'\x00not onnx' * 100)
    with pytest.raises(ModelFileError, match='garbage.onnx: not a valid ONNX model'):
        load_backend(garbage)
    with pytest.raises(ModelFileError, match="unknown model type '.bin'"):
        load_backend(tmp_path / 'model.bin')


def test_output_renderer_gives_each_output_and_one_png_setting(tmp_path):
    import cv2
    from liteseg_ros.inference.outputs import (encode_png, output_topic, OUTPUTS,
                                               OutputRenderer, write_png)

    names = ['road', 'sidewalk', 'car']
    palette = [[128, 64, 128], [244, 35, 232], [0, 0, 142]]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (6, 8), dtype=np.uint8)
    confidence = rng.random((6, 8), dtype=np.float32)
    renderer = OutputRenderer(names, palette, overlay_alpha=0.25)
    out = renderer.render(OUTPUTS, image, mask, confidence)
    assert list(out) == list(OUTPUTS)
    color = np.asarray(palette, np.uint8)[mask]
    np.testing.assert_array_equal(out['color'], color)
    # Rounded to uint8: half a grey level, plus float round-off of the blend.
    assert np.abs(out['overlay'] - (0.75 * image + 0.25 * color)).max() <= 0.5 + 1e-6
    np.testing.assert_array_equal(out['mask'], mask)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(out['mask/compressed'], np.uint8),
                                               cv2.IMREAD_UNCHANGED), mask)
    np.testing.assert_array_equal(out['confidence'], np.rint(confidence * 255))
    np.testing.assert_array_equal(out['drivable_area'], np.where(mask == 0, 255, 0))
    renderer.drivable_classes = ['Sidewalk', 'car']
    np.testing.assert_array_equal(renderer.render(['drivable_area'], image, mask)
                                  ['drivable_area'], np.where(mask > 0, 255, 0))
    assert 'confidence' not in renderer.render(['confidence'], image, mask)
    with pytest.raises(ValueError, match="'sky' is not a class of this model"):
        renderer.drivable_classes = ['sky']
    with pytest.raises(ValueError, match='unknown output'):
        renderer.render(['colour'], image, mask)
    write_png(tmp_path / 'sub' / 'color.png', out['color'])
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'sub' / 'color.png'))[:, :, ::-1],
                                  color)
    assert encode_png(mask) == out['mask/compressed']
    assert output_topic('/cam0', 'mask/compressed') == '/cam0/segmentation/mask/compressed'


def test_int8_model_has_float_logits_and_its_labels_are_their_argmax(tmp_path_factory):
    """A CPU int8 export ends in float logits (no Q/DQ pair on them); labels are their ArgMax."""
    from liteseg_ros.inference.model_files import load_onnx
    from liteseg_ros.inference.onnx_graph import LOGITS_OUTPUT

    path = onnx_model('t_int8', tmp_path_factory)
    graph = load_onnx(path).graph
    (producer,) = [node for node in graph.node if LOGITS_OUTPUT in node.output]
    assert producer.op_type == 'Resize'
    assert any(node.op_type == 'QuantizeLinear' for node in graph.node)
    backend = load_backend(path, 'onnxruntime', device='cpu', threads=1)
    frames = np.stack([street_image(128, 256, seed) for seed in range(3)])
    logits = backend.run(frames, 'logits')['logits']
    # The in-graph ArgMax (labels with confidence, or without the host's upsampling): exact.
    # Labels from the host's upsampling: test_upsampled_argmax.py.
    backend.upsample_on_host = False
    for confidence in (False, True):
        labels = backend.run(frames, 'labels', confidence)['labels']
        np.testing.assert_array_equal(labels, logits.argmax(1))
