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
from tolerances import (ARGMAX_MIN_AGREEMENT, assert_logits_close, float64_logits,
                        LOGIT_REL)
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
    """ONNX Runtime and PyTorch float32 each lie within LOGIT_REL of the model in float64."""
    import onnxruntime as ort

    checkpoint = make_checkpoint(tmp_path / 'b.pt', variant='b', num_classes=11,
                                 dataset='camvid')
    export_onnx(checkpoint, tmp_path / 'b.onnx', height, width)
    model = load_model(checkpoint)
    x = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / 'b.onnx'), providers=['CPUExecutionProvider'])
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(x)).numpy()
    exact = float64_logits(model, x)
    assert_logits_close(onnx_logits, exact, f'{height}x{width} ONNX Runtime vs float64')
    assert_logits_close(torch_logits, exact, f'{height}x{width} PyTorch float32 vs float64')
    # The export CLI's check compares two float32 runs, each within LOGIT_REL of float64.
    scale = np.abs(exact).max()
    assert check_against_torch(checkpoint, tmp_path / 'b.onnx') <= 2 * LOGIT_REL * scale


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
        # Two float32 implementations differ only on near-ties (see ARGMAX_MIN_AGREEMENT).
        assert (ort_masks == torch_masks).mean() >= ARGMAX_MIN_AGREEMENT


def test_nearest_mode_equals_argmax_then_nearest_enlargement(models):
    frame = doubled_frame(4)
    logits = reference_logits(models['checkpoint'], frame)
    labels = logits.argmax(1, keepdim=True).float()
    expected = F.interpolate(labels, size=frame.shape[:2], mode='nearest-exact')[0, 0].numpy()
    mask = Segmenter.from_file(models['onnx'])([frame])[0].mask
    # ONNX Runtime vs PyTorch float32: only near-ties flip, each over 2x2 pixels (none seen).
    assert (mask == expected).mean() >= 0.999


def test_bilinear_mode_and_confidence_equal_upsampled_logits(models):
    frame = doubled_frame(5)
    logits = F.interpolate(reference_logits(models['checkpoint'], frame), size=frame.shape[:2],
                           mode='bilinear', align_corners=False)
    expected = logits.argmax(1)[0].numpy()
    result = Segmenter.from_file(models['onnx'], upsample='bilinear', confidence=True)([frame])[0]
    # Two float32 runs and two float32 bilinear resizes: only near-ties flip (none seen).
    assert (result.mask == expected).mean() >= 0.999
    expected_confidence = torch.softmax(logits, 1).amax(1)[0].numpy()
    # The Segmenter resizes the model-size confidence instead of taking the softmax of resized
    # logits: they differ where the winning class changes (measured mean 2.4e-5, max 2.4e-3).
    assert np.abs(result.confidence - expected_confidence).mean() < 0.01
    assert 0 < result.confidence.min() and result.confidence.max() <= 1


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


def test_load_backend_maps_the_device_onto_each_backend(models, monkeypatch):
    import onnxruntime
    from liteseg_ros.inference import backends

    monkeypatch.setattr(onnxruntime, 'get_available_providers',
                        lambda: ['CUDAExecutionProvider', 'CPUExecutionProvider'])
    assert backends.onnxruntime_providers('auto') is None
    assert backends.onnxruntime_providers('cpu') == ['CPUExecutionProvider']
    for device in ('cuda', 'cuda:0'):
        assert backends.onnxruntime_providers(device) == ['CUDAExecutionProvider',
                                                          'CPUExecutionProvider']
    with pytest.raises(ValueError, match="runs on 'auto', 'cpu', 'cuda' or 'cuda:0'"):
        backends.onnxruntime_providers('cuda:1')
    monkeypatch.setattr(onnxruntime, 'get_available_providers', lambda: ['CPUExecutionProvider'])
    with pytest.raises(backends.DeviceUnavailable,
                       match=r"'cuda' needs onnxruntime's CUDAExecutionProvider.*"
                             r"\['CPUExecutionProvider'\].*onnxruntime-gpu"):
        load_backend(models['onnx'], device='cuda')
    assert load_backend(models['onnx'], device='cpu').providers == ['CPUExecutionProvider']
    assert load_backend(models['onnx'], threads=1).options.intra_op_num_threads == 1

    assert backends.tensorrt_device('auto') == backends.tensorrt_device('cuda') == 0
    assert backends.tensorrt_device('cuda:2') == 2
    with pytest.raises(backends.DeviceUnavailable, match='tensorrt backend needs a GPU'):
        backends.tensorrt_device('cpu')

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert backends.torch_device('auto') == backends.torch_device('cpu') == 'cpu'
    with pytest.raises(backends.DeviceUnavailable, match="'cuda:1' needs a CUDA GPU"):
        backends.torch_device('cuda:1')
    assert load_backend(models['checkpoint'], device='auto').device == 'cpu'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    assert backends.torch_device('auto') == 'cuda'
    assert backends.torch_device('cuda:1') == 'cuda:1'
    with pytest.raises(backends.DeviceUnavailable, match='sees 2 CUDA device'):
        backends.torch_device('cuda:2')
    for device in ('tpu', 'cuda:', 'gpu.0', 'CPU', None):
        with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda', 'cuda:N', "
                                             "'gpu', 'gpu:N' or 'npu'"):
            load_backend(models['onnx'], device=device)
    # Intel GPUs and NPUs are OpenVINO's (test_openvino.py): torch refuses them too.
    with pytest.raises(ValueError, match="'npu' is an Intel GPU/NPU, which only the openvino "
                                         'backend drives; the torch backend'):
        load_backend(models['checkpoint'], device='npu')


def test_bench_device_cuda_without_cuda_is_one_line_and_cpu_runs(models, monkeypatch, capsys):
    import onnxruntime
    from liteseg_ros.cli import main

    monkeypatch.setattr(onnxruntime, 'get_available_providers', lambda: ['CPUExecutionProvider'])
    args = ['bench', str(models['onnx']), '--frame-size', '128x64', '--iterations', '1',
            '--warmup', '0']
    assert main(args + ['--device', 'cuda']) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert 'CUDAExecutionProvider' in err and 'Traceback' not in err
    assert main(args + ['--device', 'cpu', '--threads', '1']) == 0
    assert 'onnxruntime on CPU' in capsys.readouterr().out
