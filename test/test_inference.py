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

"""Inference runtime: export exactness, backend agreement, Segmenter semantics, bad input."""

from liteseg_ros.inference import load_backend, ModelFileError, read_model_config, Segmenter
from liteseg_ros.model import build_model, load_model, save_checkpoint
from model_fixtures import make_checkpoint, seed_weights, street_image
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from training.export import check_against_torch, export_onnx

SMALL = [256, 512]


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Export a seeded T checkpoint at 256x512 as plain (dynamic batch) and fused ONNX."""
    root = tmp_path_factory.mktemp('models')
    checkpoint = make_checkpoint(root / 't.pt', input_size=SMALL)
    export_onnx(checkpoint, root / 't.onnx', dynamic_batch=True)
    export_onnx(checkpoint, root / 't_fused.onnx', fuse=True)
    return {'checkpoint': checkpoint, 'onnx': root / 't.onnx', 'fused': root / 't_fused.onnx'}


def doubled_frame(seed):
    """
    Return a 512x1024 frame made of 2x2 blocks: resizing it to 256x512 is exact in uint8 too.

    (A seeded random network flips ~1% of labels under the +-0.5 grey-level rounding of a
    uint8 resize, so frames whose resize needs no rounding keep the comparison exact.)
    """
    small = street_image(*SMALL, seed)
    return np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)


def reference_logits(checkpoint, frame):
    """Independent path: resize with torch, normalise, run the PyTorch model."""
    model = load_model(checkpoint)
    height, width = model.config['input_size']
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(height, width), mode='bilinear', align_corners=False)
    mean = torch.tensor(model.config['mean']).view(1, 3, 1, 1)
    std = torch.tensor(model.config['std']).view(1, 3, 1, 1)
    with torch.inference_mode():
        return model((x / 255 - mean) / std)


@pytest.mark.parametrize('height, width', [(720, 960), (512, 1024), (768, 1536)])
def test_export_matches_pytorch_logits(tmp_path, height, width):
    checkpoint = make_checkpoint(tmp_path / 'b.pt', variant='b', num_classes=11,
                                 dataset='camvid')
    export_onnx(checkpoint, tmp_path / 'b.onnx', height, width)
    assert check_against_torch(checkpoint, tmp_path / 'b.onnx') <= 1e-4


def test_onnx_carries_the_checkpoint_config(models):
    config = read_model_config(models['onnx'])
    assert config == load_model(models['checkpoint']).config
    assert read_model_config(models['fused']) == config
    assert onnx.load(str(models['onnx'])).opset_import[0].version >= 17


def test_onnxruntime_agrees_with_pytorch(models):
    frame = street_image(512, 1024)
    torch_masks = Segmenter.from_file(models['checkpoint'])([frame])[0].mask
    for path in (models['onnx'], models['fused']):
        ort_masks = Segmenter.from_file(path)([frame])[0].mask
        assert (ort_masks == torch_masks).mean() >= 0.9999


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


def test_nearest_mode_equals_argmax_then_nearest_enlargement(models):
    frame = doubled_frame(4)
    logits = reference_logits(models['checkpoint'], frame)
    labels = logits.argmax(1, keepdim=True).float()
    expected = F.interpolate(labels, size=frame.shape[:2], mode='nearest-exact')[0, 0].numpy()
    mask = Segmenter.from_file(models['onnx'])([frame])[0].mask
    assert (mask == expected).mean() >= 0.999


def test_bilinear_mode_and_confidence_equal_upsampled_logits(models):
    frame = doubled_frame(5)
    logits = F.interpolate(reference_logits(models['checkpoint'], frame), size=frame.shape[:2],
                           mode='bilinear', align_corners=False)
    expected = logits.argmax(1)[0].numpy()
    result = Segmenter.from_file(models['onnx'], upsample='bilinear', confidence=True)([frame])[0]
    assert (result.mask == expected).mean() >= 0.999
    expected_confidence = torch.softmax(logits, 1).amax(1)[0].numpy()
    assert np.abs(result.confidence - expected_confidence).mean() < 0.01
    assert 0 < result.confidence.min() and result.confidence.max() <= 1


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


def test_model_whose_classes_disagree_with_its_config_is_refused(tmp_path):
    model = seed_weights(build_model('t', 11, input_size=SMALL))
    save_checkpoint(tmp_path / 'eleven.pt', model)
    export_onnx(tmp_path / 'eleven.pt', tmp_path / 'eleven.onnx')
    onnx_model = onnx.load(str(tmp_path / 'eleven.onnx'))
    nineteen = build_model('t', 19, dataset='cityscapes').config
    for prop in onnx_model.metadata_props:
        if prop.key == 'liteseg_config':
            prop.value = __import__('json').dumps(nineteen)
    onnx.save(onnx_model, str(tmp_path / 'relabelled.onnx'))
    with pytest.raises(ModelFileError, match=r'relabelled.onnx: the model outputs 11 classes but '
                                             r'its config lists 19'):
        load_backend(tmp_path / 'relabelled.onnx')


def test_backend_and_file_type_must_fit(models):
    with pytest.raises(ValueError, match=r'the torch backend cannot run a onnx file'):
        load_backend(models['onnx'], backend='torch')
