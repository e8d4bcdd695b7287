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
The OpenVINO backend on exported models, without torch (runs on Python 3.10/3.12 too).

Real OpenVINO and real ONNX Runtime on the same files (fp32 dynamic batch, fused, int8 QDQ from
``onnx_models``): masks and logits against ONNX Runtime's, the bf16 decision against this CPU's
own flags in /proc/cpuinfo, and the device and precision errors OpenVINO gives on this machine.
The node with ``backend: openvino`` runs in test_segment_node.py.
"""

import json

from liteseg_ros.inference import backends
from liteseg_ros.inference import load_backend, ModelFileError, Segmenter
from liteseg_ros.sample_images import make_street_scene as street_image
import numpy as np
from onnx_models import onnx_model
import pytest

pytestmark = pytest.mark.lite

openvino = pytest.importorskip('openvino')

# The fp32 network in OpenVINO's and ONNX Runtime's CPU kernels: sums in other orders, so a
# few near-tied pixels of the seeded (untrained) model may flip. Logits within 1e-4 of their
# scale.
F32_MIN_AGREEMENT = 0.999
F32_LOGIT_REL = 1e-4
# bf16 keeps 8 bits of mantissa: the seeded model's many near-ties flip more often than a
# trained model's (99.5 % on CamVid test frames, docs/benchmarks.md).
BF16_MIN_AGREEMENT = 0.97


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Return a seeded T at 128x256: plain (dynamic batch), fused (labels) and int8 ONNX."""
    return {name: onnx_model(f't_{name}', tmp_path_factory)
            for name in ('128x256', 'fused', 'int8')}


def native_bf16():
    """Return True if this CPU reports bf16 arithmetic (AVX-512 BF16 or AMX) in its flags."""
    with open('/proc/cpuinfo') as f:
        flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')),
                     [])
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def frames():
    return [street_image(480, 640, 1), street_image(128, 256, 2), street_image(1024, 2048, 3)]


def test_f32_masks_and_logits_match_onnxruntime(models):
    reference = Segmenter.from_file(models['128x256'], 'onnxruntime', device='cpu', threads=2,
                                    confidence=True)
    segmenter = Segmenter.from_file(models['128x256'], 'openvino', device='cpu', threads=2,
                                    precision='f32', confidence=True)
    assert segmenter.backend.precision == 'f32'
    assert 'openvino on CPU' in segmenter.backend.describe()
    expected, results = reference(frames()), segmenter(frames())
    for want, got in zip(expected, results):
        assert got.mask.shape == want.mask.shape and got.mask.dtype == np.uint8
        assert (got.mask == want.mask).mean() >= F32_MIN_AGREEMENT
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-3)
    # A batch of three (dynamic-batch model, compiled for three) equals one frame at a time.
    for frame, result in zip(frames(), results):
        assert np.array_equal(segmenter.segment(frame).mask, result.mask)
    batch = reference.preprocess(frames())
    logits = segmenter.backend.run(batch, 'logits')['logits']
    want = reference.backend.run(batch, 'logits')['logits']
    assert logits.shape == want.shape == (3, 19, 128, 256) and logits.dtype == np.float32
    assert np.abs(logits - want).max() <= F32_LOGIT_REL * np.abs(want).max()
    # Model only: the bare logits graph on the normalised input.
    normalised = ((batch.transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.5).astype(np.float32)
    bare = segmenter.backend.run_model_only(normalised)
    assert np.abs(bare - want).max() <= F32_LOGIT_REL * np.abs(want).max()


def test_fused_and_int8_models_run_as_in_onnxruntime(models):
    frame = street_image(256, 512, 4)
    fused = Segmenter.from_file(models['fused'], 'openvino', device='cpu', precision='f32')
    plain = Segmenter.from_file(models['128x256'], 'onnxruntime', device='cpu')
    assert (fused.segment(frame).mask == plain.segment(frame).mask).mean() >= F32_MIN_AGREEMENT
    with pytest.raises(ModelFileError, match=r't_fused.onnx: .*--fuse.*labels'):
        Segmenter.from_file(models['fused'], 'openvino', device='cpu',
                            confidence=True).segment(frame)
    # int8 QDQ: OpenVINO runs the quantized graph in its own int8 kernels, which round
    # otherwise than ONNX Runtime's (whose own results differ between its versions): its masks
    # stay within 2 points of ONNX Runtime int8's agreement with fp32, or above 85 %.
    fp32 = Segmenter.from_file(models['128x256'], 'onnxruntime', device='cpu')
    int8 = Segmenter.from_file(models['int8'], 'openvino', device='cpu', precision='f32')
    int8_ort = Segmenter.from_file(models['int8'], 'onnxruntime', device='cpu')
    reference = [fp32.segment(f).mask for f in frames()]
    openvino_int8 = np.mean([(int8.segment(f).mask == r).mean()
                             for f, r in zip(frames(), reference)])
    onnxruntime_int8 = np.mean([(int8_ort.segment(f).mask == r).mean()
                                for f, r in zip(frames(), reference)])
    figures = (openvino_int8, onnxruntime_int8)
    assert openvino_int8 >= min(0.85, onnxruntime_int8 - 0.02), figures


def test_auto_precision_is_bf16_exactly_where_the_cpu_has_it(models):
    native = native_bf16()
    auto = load_backend(models['128x256'], 'openvino', device='cpu')
    assert auto.precision == ('bf16' if native else 'f32')
    assert f'OpenVINO {auto.precision}' in auto.describe()
    if not native:
        with pytest.raises(backends.DeviceUnavailable, match=r"precision 'bf16' is not native "
                           r'on OpenVINO device CPU .*use precision auto or f32'):
            load_backend(models['128x256'], 'openvino', device='cpu', precision='bf16')
        return
    bf16 = Segmenter.from_file(models['128x256'], 'openvino', device='cpu', precision='bf16')
    f32 = Segmenter.from_file(models['128x256'], 'openvino', device='cpu', precision='f32')
    for frame in frames():
        assert (bf16.segment(frame).mask == f32.segment(frame).mask).mean() >= BF16_MIN_AGREEMENT
    # What OpenVINO compiled is what was asked for.
    request = bf16.backend.compiled('labels', False, 1)
    assert request.get_compiled_model().get_property(
        'INFERENCE_PRECISION_HINT').get_type_name() == 'bf16'


def runtime_precisions(request):
    """Return [(layer type, runtime precision)] of the nodes OpenVINO compiled, in order."""
    model = request.get_compiled_model().get_runtime_model()
    return [(op.get_rt_info()['layerType'].astype(str),
             op.get_rt_info()['runtimePrecision'].astype(str)) for op in model.get_ordered_ops()]


@pytest.mark.skipif(not native_bf16(), reason='needs a CPU with native bf16')
def test_bf16_keeps_the_normalisation_and_first_convolution_f32(models):
    backend = load_backend(models['128x256'], 'openvino', device='cpu', precision='bf16')
    compiled = runtime_precisions(backend.compiled('labels', False, 1))
    convolutions = [precision for kind, precision in compiled if kind == 'Convolution']
    assert convolutions[0] == 'f32' and set(convolutions[1:]) == {'bf16'}
    first = next(i for i, (kind, _) in enumerate(compiled) if kind == 'Convolution')
    assert 'bf16' not in [p for _, p in compiled[:first]]  # normalisation and reorders
    # OpenVINO left to itself runs the first convolution in bf16 too: the check can tell.
    core = openvino.Core()
    plain = core.compile_model(core.read_model(models['fused']), 'CPU',
                               {'INFERENCE_PRECISION_HINT': 'bf16'}).create_infer_request()
    assert [p for kind, p in runtime_precisions(plain) if kind == 'Convolution'][0] == 'bf16'


def test_precision_words_and_threads(models):
    with pytest.raises(ValueError, match=r"openvino precision must be one of \('auto', 'f32', "
                                         r"'bf16'\), got 'fp16'"):
        load_backend(models['128x256'], 'openvino', device='cpu', precision='fp16')
    backend = load_backend(models['128x256'], 'openvino', device='cpu', threads=1,
                           precision='f32')
    backend.run(np.zeros((1, 128, 256, 3), np.uint8))
    compiled = backend.compiled('labels', False, 1).get_compiled_model()
    assert compiled.get_property('INFERENCE_NUM_THREADS') == 1
    assert compiled.get_property('INFERENCE_PRECISION_HINT').get_type_name() == 'f32'


def test_devices_map_onto_openvino_and_missing_ones_are_refused(models):
    available = openvino.Core().available_devices
    has_gpu = any(d.startswith('GPU') for d in available)
    assert backends.openvino_device('cpu') == 'CPU'
    assert backends.openvino_device('auto') == ('GPU' if has_gpu else 'CPU')
    for device, name, needs in (('gpu', 'GPU', 'an Intel GPU'), ('gpu:1', 'GPU.1', 'an Intel GPU'),
                                ('npu', 'NPU', 'an Intel NPU')):
        if name in available or (name == 'GPU' and has_gpu):
            assert backends.openvino_device(device) == name
            continue
        with pytest.raises(backends.DeviceUnavailable,
                           match=rf"device '{device}' needs {needs}.*but OpenVINO .* sees "
                                 + re_list(available)):
            load_backend(models['128x256'], 'openvino', device=device)
    for device in ('cuda', 'cuda:0'):
        with pytest.raises(ValueError, match=r"openvino backend runs on 'auto', 'cpu', 'gpu', "
                                             r"'gpu:N' or 'npu'"):
            load_backend(models['128x256'], 'openvino', device=device)
    # The Intel devices belong to OpenVINO only.
    for device in ('gpu', 'gpu:0', 'npu'):
        with pytest.raises(ValueError, match=rf"device '{device}' is an Intel GPU/NPU, which "
                                             r'only the openvino backend drives; the '
                                             r'onnxruntime backend'):
            load_backend(models['128x256'], 'onnxruntime', device=device)
        with pytest.raises(ValueError, match='the tensorrt backend'):
            backends.tensorrt_device(device)
    with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu', 'cuda', 'cuda:N', "
                                         r"'gpu', 'gpu:N' or 'npu', got 'gpu0'"):
        load_backend(models['128x256'], 'openvino', device='gpu0')
    with pytest.raises(ValueError, match=r'the openvino backend cannot run a checkpoint file'):
        backends.resolve_backend('model.pt', 'openvino')


def re_list(values):
    """Return a regular expression matching ``values`` printed as a Python list."""
    import re

    return re.escape(str(list(values)))


def test_liteseg_bench_and_bag_eval_run_openvino(models, tmp_path, capsys):
    from liteseg_ros.bags.rosbag import BagWriter, header, image_message
    from liteseg_ros.cli import main as liteseg

    report = tmp_path / 'bench.json'
    args = ['bench', str(models['128x256']), '--backend', 'openvino', '--frame-size', '256x128',
            '--iterations', '1', '--warmup', '0', '--threads', '1', '--device', 'cpu']
    assert liteseg(args + ['--precision', 'f32', '--json', str(report)]) == 0
    out = json.loads(report.read_text())
    assert out['backend'] == 'openvino' and out['model_only']['mean_ms'] > 0
    assert 'OpenVINO f32' in capsys.readouterr().out
    assert liteseg(args + ['--device', 'npu']) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "device 'npu'" in err
    assert 'Traceback' not in err
    args[args.index('openvino')] = 'onnxruntime'
    assert liteseg(args + ['--precision', 'bf16']) == 1
    assert '--precision is an openvino option' in capsys.readouterr().err

    bag = tmp_path / 'bag'
    with BagWriter(bag) as writer:
        for i in range(2):
            writer.write('/cam/image_raw', i, image_message(street_image(96, 160, seed=i),
                                                            'rgb8', header(i, 0)))
    assert liteseg(['bag-eval', str(bag), '--image-topic', '/cam/image_raw', '--model',
                    str(models['128x256']), '--backend', 'openvino', '--device', 'cpu',
                    '--threads', '1', '--output', str(tmp_path / 'out')]) == 0
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert (summary['frames'], summary['backend'], summary['device']) == (2, 'openvino', 'CPU')
    assert 'openvino on CPU' in capsys.readouterr().out
