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
fp16 and int8 ONNX exports: schemes, calibration sources, the accuracy gate, the backends.

A seeded (untrained) T at 128x256 keeps these fast; its many near-tied logits make int8
agree less than a trained model does, so the tests that need a model through the gate lower
``min_agreement``. The trained-model figures come from benchmarks/int8_cpu.py.
"""

import json

import cv2
from liteseg_ros.inference import load_backend
from liteseg_ros.inference.model_files import onnx_io, onnx_metadata
from liteseg_ros.inference.segmenter import Segmenter
from model_fixtures import make_checkpoint, street_image
import numpy as np
import onnx
import pytest
from training.calibration_data import (CalibrationError, load_calibration_frames, normalise,
                                       parse_source)
from training.export import export_onnx, main as export_main
from training.quantize import (pools_as_depthwise_convs, reduce_precision, resolve_scheme,
                               scheme_settings, sensitive_nodes, split_frames)

SMALL = (128, 256)
QUIET = {'log': lambda message: None}


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp('quantize') / 't.pt', input_size=list(SMALL))


@pytest.fixture(scope='module')
def fp32(checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp('fp32') / 't.onnx'
    export_onnx(checkpoint, path)
    return onnx.load(str(path))


def scenes(count, seed=0, size=SMALL):
    return np.stack([street_image(*size, seed=seed + i) for i in range(count)])


def test_auto_scheme_follows_the_measurements_and_the_engine():
    # S8S8 measured slower than fp32 on AVX2 and on AVX-512 VNNI CPUs: auto takes U8S8.
    assert resolve_scheme('auto') == 'cpu-avx2'
    assert resolve_scheme('auto', engine=True) == 'trt'
    assert resolve_scheme('cpu-avx2', engine=True) == 'cpu-avx2'
    with pytest.raises(ValueError, match='scheme must be one of'):
        resolve_scheme('u8u8')
    from onnxruntime.quantization import QuantType

    trt = scheme_settings('trt')
    assert trt['activation_type'] == trt['weight_type'] == QuantType.QInt8
    assert trt['extra_options'] == {'ActivationSymmetric': True, 'WeightSymmetric': True,
                                    'QuantizeBias': False}
    avx2 = scheme_settings('cpu-avx2')
    assert avx2['activation_type'] == QuantType.QUInt8 and avx2['reduce_range']
    vnni = scheme_settings('cpu-vnni')
    assert vnni['activation_type'] == QuantType.QInt8 and not vnni['reduce_range']
    assert all(scheme_settings(s)['per_channel'] for s in ('trt', 'cpu-avx2', 'cpu-vnni'))


def test_export_help_says_what_auto_picks(capsys, monkeypatch):
    monkeypatch.setenv('COLUMNS', '500')  # one line per option: no wrapping inside names
    with pytest.raises(SystemExit):
        export_main(['--help'])
    text = capsys.readouterr().out
    assert f"auto: trt with --engine, else {resolve_scheme('auto')} on every CPU" in text
    assert resolve_scheme('auto', engine=True) == 'trt'
    assert 'VNNI: cpu-vnni' not in text


def test_trt_scheme_is_int8_only_with_zero_points_zero_and_per_channel_weights(fp32):
    from onnx import numpy_helper

    model = reduce_precision(fp32, 'int8', scenes(3), 'trt', min_agreement=0.5, **QUIET)
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quantize = [n for n in model.graph.node if n.op_type in ('QuantizeLinear',
                                                             'DequantizeLinear')]
    assert quantize
    # TensorRT takes symmetric int8 Q/DQ only (no int32 bias dequantization).
    zero_points = [initializers[n.input[2]] for n in quantize if len(n.input) > 2]
    assert zero_points and all(not z.any() and z.dtype == np.int8 for z in zero_points)
    assert any(z.size > 1 for z in zero_points)  # per-channel weight scales


def test_sensitive_nodes_are_the_first_conv_the_head_and_every_resize(fp32):
    names = sensitive_nodes(fp32)
    nodes = {n.name: n for n in fp32.graph.node}
    resizes = {n.name for n in fp32.graph.node if n.op_type == 'Resize'}
    assert resizes and resizes <= set(names)
    convs = [n for n in names if nodes[n].op_type == 'Conv']
    assert any('image' in nodes[n].input for n in convs)
    assert len(convs) == 3  # first conv + the head's two convs


def int8_groups(model):
    """
    Return the first conv, the two head convs and every Resize of a QDQ ``model`` that run int8.

    Found in the written graph itself: the first conv reads the graph input, the head convs
    are the last two met walking up from the logits. A node runs int8 when it takes a weight
    from a DequantizeLinear or feeds a QuantizeLinear (DQ -> node -> Q is an int8 group).
    """
    nodes = list(model.graph.node)
    producer = {out: node for node in nodes for out in node.output}
    readers = {}
    for node in nodes:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node)

    def origin(tensor):  # the tensor before any Q/DQ
        node = producer.get(tensor)
        while node is not None and node.op_type in ('QuantizeLinear', 'DequantizeLinear'):
            tensor = node.input[0]
            node = producer.get(tensor)
        return tensor

    image = model.graph.input[0].name
    first = [n for n in nodes if n.op_type == 'Conv' and origin(n.input[0]) == image]
    head, node = [], producer.get(model.graph.output[0].name)
    while node is not None and len(head) < 2:
        if node.op_type == 'Conv':
            head.append(node)
        node = producer.get(node.input[0])
    resizes = [n for n in nodes if n.op_type == 'Resize']
    assert len(first) == 1 and len(head) == 2 and resizes
    int8 = []
    for node in first + head + resizes:
        weight = producer.get(node.input[1]) if node.op_type == 'Conv' else None
        quantized_out = any(r.op_type == 'QuantizeLinear' for out in node.output
                            for r in readers.get(out, []))
        if (weight is not None and weight.op_type == 'DequantizeLinear') or quantized_out:
            int8.append(node.name)
    return int8, {n.name for n in first + head + resizes}


@pytest.mark.parametrize('scheme', ['trt', 'cpu-avx2'])
def test_the_retry_writes_the_sensitive_nodes_float(checkpoint, tmp_path, monkeypatch, scheme):
    from training import quantize

    folder = tmp_path / 'frames'
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f'{i}.png'), street_image(*SMALL, seed=80 + i)[..., ::-1])
    real_compare, candidates = quantize.compare, []

    def first_attempt_misses(reference, candidate, frames, config):
        """Run the real gate, but fail the all-int8 attempt so that the retry runs."""
        candidates.append(candidate)
        result = real_compare(reference, candidate, frames, config)
        return dict(result, agreement=0.0) if len(candidates) == 1 else result

    monkeypatch.setattr(quantize, 'compare', first_attempt_misses)
    out = tmp_path / 'q.onnx'
    assert export_main([str(checkpoint), '--onnx', str(out), '--precision', 'int8',
                        '--calibration', str(folder), '--int8-scheme', scheme,
                        '--min-agreement', '0.5']) == 0
    assert len(candidates) == 2
    first_int8, _ = int8_groups(candidates[0])
    assert first_int8  # the all-int8 attempt has them int8: the check can tell
    written = onnx.load(str(out))
    int8, sensitive = int8_groups(written)
    assert int8 == []
    assert set(onnx_io(written)['float_nodes']) == sensitive
    # Still an int8 model elsewhere, and it runs.
    assert any(n.op_type == 'QuantizeLinear' for n in written.graph.node)
    labels = load_backend(out, 'onnxruntime', 'cpu', threads=1).run(scenes(1))['labels']
    assert labels.shape == (1, *SMALL)


def exclusive_average_pool(x, kernel, stride, pads):
    """float64 AveragePool with count_include_pad=0, window by window."""
    (kh, kw), (sh, sw), (top, left, bottom, right) = kernel, stride, pads
    _, _, height, width = x.shape
    rows = (height + top + bottom - kh) // sh + 1
    cols = (width + left + right - kw) // sw + 1
    out = np.empty(x.shape[:2] + (rows, cols))
    for i in range(rows):
        for j in range(cols):
            r0, c0 = i * sh - top, j * sw - left
            window = x[:, :, max(r0, 0):r0 + kh, max(c0, 0):c0 + kw]
            out[:, :, i, j] = window.mean(axis=(2, 3))
    return out


@pytest.mark.parametrize('height, width, kernel, stride, pads', [
    (16, 32, (3, 3), (2, 2), (1, 1, 1, 1)),  # STDC's skip pool, even sizes
    (15, 9, (3, 3), (2, 2), (1, 1, 1, 1)),  # odd sizes: the last window overlaps the padding
    (8, 16, (4, 8), (4, 8), (0, 0, 0, 0)),  # SPPM's pools: no padding, no border scale
    (7, 7, (3, 3), (1, 1), (1, 2, 1, 0)),  # uneven pads
])
def test_average_pools_become_depthwise_convs_with_the_same_function(height, width, kernel,
                                                                     stride, pads):
    from onnx import helper, TensorProto
    import onnxruntime as ort

    pool = helper.make_node('AveragePool', ['x'], ['y'], name='pool', kernel_shape=kernel,
                            strides=stride, pads=pads, count_include_pad=0)
    graph = helper.make_graph([pool], 'g',
                              [helper.make_tensor_value_info('x', TensorProto.FLOAT,
                                                             [1, 5, height, width])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    rewritten = pools_as_depthwise_convs(model)
    ops = [n.op_type for n in rewritten.graph.node]
    assert 'AveragePool' not in ops and ops[0] == 'Conv'
    assert ('Mul' in ops) == any(pads)  # the border scale only where windows meet padding
    x = np.random.default_rng(0).normal(size=(1, 5, height, width)).astype(np.float32)
    expected = exclusive_average_pool(x.astype(np.float64), kernel, stride, pads)
    for candidate in (model, rewritten):  # the test's reference agrees with ONNX Runtime's pool
        (got,) = ort.InferenceSession(candidate.SerializeToString()).run(None, {'x': x})
        assert got.shape == expected.shape
        # float32 sums of at most 32 unit-normal terms: a few ulps of their magnitude.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_cpu_int8_models_have_no_int8_average_pool_and_trt_ones_keep_theirs(fp32):
    from training.quantize import quantize_int8

    config = json.loads({p.key: p.value for p in fp32.metadata_props}['liteseg_config'])
    pools = sum(n.op_type == 'AveragePool' for n in fp32.graph.node)
    assert pools  # STDC's skip paths and SPPM: the check can tell
    for scheme, kept in (('cpu-avx2', 0), ('trt', pools)):
        model, _ = quantize_int8(fp32, scenes(2, seed=40), config, scheme)
        assert sum(n.op_type == 'AveragePool' for n in model.graph.node) == kept, scheme


def test_cpu_int8_image_step_is_the_normalisations_and_uint8_frames_feed_it(fp32):
    """The image's step is 1 / (255 std) even when no calibration pixel is 0 or 255."""
    from liteseg_ros.inference.onnx_graph import IMAGE_INPUT, wrap_pre_post
    from training.quantize import quantize_int8

    config = json.loads({p.key: p.value for p in fp32.metadata_props}['liteseg_config'])
    grey = scenes(2, seed=40) // 2 + 64  # grey levels 64 to 191 only
    model, _ = quantize_int8(fp32, grey, config, 'cpu-avx2')
    (quantize,) = [n for n in model.graph.node if IMAGE_INPUT in n.input]
    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    step, zero_point = (values[name] for name in quantize.input[1:])
    assert step == np.float32(1 / (255 * config['std'][0]))
    assert zero_point == np.round(255 * config['mean'][0])  # 127.5 -> 128, as ONNX rounds
    fed = wrap_pre_post(model, config['mean'], config['std'], 'logits', uint8_into_int8=True)
    assert not [n for n in fed.graph.node if n.op_type in ('QuantizeLinear', 'Cast')
                and n.output[0] in ('pre_float', 'image_QuantizeLinear_Output')]
    assert [n.op_type for n in fed.graph.node][0] == 'Transpose'


def test_the_gate_refuses_black_calibration_frames_with_figures_and_writes_nothing(
        checkpoint, tmp_path, capsys):
    folder = tmp_path / 'black'
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f'{i}.png'), np.zeros((256, 512, 3), np.uint8))
    out = tmp_path / 'q.onnx'
    code = export_main([str(checkpoint), '--onnx', str(out), '--precision', 'int8',
                        '--calibration', str(folder), '--int8-scheme', 'cpu-vnni'])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists() and not list(tmp_path.glob('.*tmp*'))
    assert 'misses the accuracy gate of 99.00 % argmax agreement' in err
    assert 'all nodes int8: argmax agreement' in err and 'sensitive nodes float' in err
    assert 'mIoU vs fp32' in err and 'nothing written' in err


def test_int8_needs_calibration_and_never_falls_back_to_fp32(checkpoint, tmp_path, capsys):
    out = tmp_path / 'q.onnx'
    with pytest.raises(SystemExit) as exit_:
        export_main([str(checkpoint), '--onnx', str(out), '--precision', 'int8'])
    assert exit_.value.code == 2 and not out.exists()
    assert '--precision int8 needs --calibration SRC' in capsys.readouterr().err


def test_int8_runs_fused_and_unfused_in_onnxruntime_with_its_metadata(checkpoint, tmp_path):
    calibration = scenes(4, seed=10)
    kwargs = dict(precision='int8', frames=calibration, scheme='cpu-vnni', min_agreement=0.5,
                  calibration={'source': 'test', 'frames': 4}, **QUIET)
    plain = tmp_path / 'q.onnx'
    fused = tmp_path / 'q_fused.onnx'
    export_onnx(checkpoint, plain, **kwargs)
    export_onnx(checkpoint, fused, fuse=True, confidence=True, **kwargs)
    for path in (plain, fused):
        model = onnx.load(str(path))
        config, io = onnx_metadata(model, path)
        assert config['input_size'] == list(SMALL)
        assert (io['precision'], io['int8_scheme']) == ('int8', 'cpu-vnni')
        assert io['calibration'] == {'source': 'test', 'frames': 4, 'calibration_frames': 3}
        assert 0.5 <= io['gate']['agreement'] <= 1 and io['gate']['frames'] == 4
        assert any(n.op_type == 'QuantizeLinear' for n in model.graph.node)
    assert onnx_io(onnx.load(str(fused)))['layout'] == 'nhwc_uint8'
    batch = scenes(2, seed=20)
    unfused = load_backend(plain, 'onnxruntime', 'cpu', threads=1)
    fused_backend = load_backend(fused, 'onnxruntime', 'cpu', threads=1)
    got = unfused.run(batch, confidence=True)
    # Quantized before fusing: the same int8 graph either way, the same labels.
    np.testing.assert_array_equal(fused_backend.run(batch, confidence=True)['labels'],
                                  got['labels'])
    assert got['confidence'].dtype == np.float32
    masks = Segmenter(unfused)([street_image(200, 300, seed=3)])
    assert masks[0].mask.shape == (200, 300)


def test_fp16_export_runs_on_cpu_with_float32_io_and_agrees_with_fp32(checkpoint, fp32,
                                                                      tmp_path):
    path = tmp_path / 'h.onnx'
    model = export_onnx(checkpoint, path, precision='fp16', **QUIET)
    assert onnx_io(model)['precision'] == 'fp16' and onnx_io(model)['gate']['agreement'] >= 0.99
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    halves = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert halves
    reference = tmp_path / 'f.onnx'
    onnx.save(fp32, str(reference))
    batch = scenes(3, seed=30)
    got = load_backend(path, 'onnxruntime', 'cpu').run(batch)['labels']
    expected = load_backend(reference, 'onnxruntime', 'cpu').run(batch)['labels']
    assert (got == expected).mean() >= 0.995


def test_calibration_frames_from_a_folder_a_bag_and_a_config_split(tmp_path):
    from liteseg_ros.bags.rosbag import BagWriter, header, image_message
    from training.synthetic_data import make_cityscapes_like

    images = [street_image(96, 160, seed=i) for i in range(3)]
    folder = tmp_path / 'images'
    folder.mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f'{i}.png'), image[..., ::-1])
    frames, summary = load_calibration_frames(folder, *SMALL, limit=2)
    assert frames.shape == (2, *SMALL, 3) and summary['kind'] == 'folder'
    resizer = Segmenter.__new__(Segmenter)
    resizer.backend = type('B', (), {'input_size': SMALL})()
    np.testing.assert_array_equal(frames[0], resizer.preprocess([images[0]])[0])
    bag = tmp_path / 'bag'
    with BagWriter(bag) as writer:
        for i, image in enumerate(images):
            writer.write('/cam/image_raw', i, image_message(image, 'rgb8', header(i, 0)))
    frames, summary = load_calibration_frames(bag, *SMALL, topic='/cam/image_raw')
    assert frames.shape[0] == 3 and summary['topic'] == '/cam/image_raw'
    np.testing.assert_array_equal(frames[2], resizer.preprocess([images[2]])[0])
    with pytest.raises(ValueError, match='no calibration topic /other'):
        load_calibration_frames(bag, *SMALL, topic='/other')
    make_cityscapes_like(tmp_path / 'city', 2, 1, size=(64, 128))
    config = tmp_path / 'c.yaml'
    config.write_text(json.dumps({'_base_': str(
        __import__('pathlib').Path(__file__).resolve().parents[1] / 'training' / 'configs'
        / 'pp_liteseg_t_cityscapes_0.5.yaml'), 'dataset': {'root': str(tmp_path / 'city')},
        'model': {'pretrained_backbone': None}}))
    assert parse_source(f'{config}:val') == ('config', config, 'val')
    frames, summary = load_calibration_frames(f'{config}:val', *SMALL)
    assert frames.shape[0] == 1 and summary['split'] == 'val'
    with pytest.raises(CalibrationError, match='no such calibration source'):
        load_calibration_frames(tmp_path / 'missing', *SMALL)


def test_normalisation_matches_the_fused_graph_and_frames_are_split_for_the_gate():
    import onnxruntime as ort
    from liteseg_ros.inference.onnx_graph import wrap_pre_post
    from onnx import helper, TensorProto

    identity = helper.make_model(helper.make_graph(
        [helper.make_node('Identity', ['image'], ['logits'])], 'g',
        [helper.make_tensor_value_info('image', TensorProto.FLOAT, [1, 3, 4, 5])],
        [helper.make_tensor_value_info('logits', TensorProto.FLOAT, [1, 3, 4, 5])]),
        opset_imports=[helper.make_opsetid('', 17)])
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    wrapped = wrap_pre_post(identity, mean, std, 'logits')
    frame = np.random.default_rng(0).integers(0, 256, (1, 4, 5, 3), dtype=np.uint8)
    session = ort.InferenceSession(wrapped.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    (graph,) = session.run(None, {'image_u8': frame})
    np.testing.assert_array_equal(normalise(frame, mean, std), graph)
    calibrate, held = split_frames(np.arange(8))
    assert held.tolist() == [3, 7] and calibrate.tolist() == [0, 1, 2, 4, 5, 6]
    calibrate, held = split_frames(np.arange(2))
    assert held.tolist() == [1] and calibrate.tolist() == [0]


def test_int8_model_runs_in_liteseg_bench_and_bag_eval(fp32, tmp_path, capsys):
    from liteseg_ros.bags.evaluation import evaluate_bag
    from liteseg_ros.bags.rosbag import BagWriter, header, image_message
    from liteseg_ros.cli import main as liteseg

    path = tmp_path / 'q.onnx'
    onnx.save(reduce_precision(fp32, 'int8', scenes(3), 'cpu-avx2', min_agreement=0.5,
                               **QUIET), str(path))
    report = tmp_path / 'bench.json'
    assert liteseg(['bench', str(path), '--frame-size', '256x128', '--iterations', '1',
                    '--warmup', '0', '--threads', '1', '--device', 'cpu',
                    '--json', str(report)]) == 0
    assert json.loads(report.read_text())['model_only']['mean_ms'] > 0
    bag = tmp_path / 'bag'
    with BagWriter(bag) as writer:
        for i in range(2):
            writer.write('/cam/image_raw', i, image_message(street_image(96, 160, seed=i),
                                                            'rgb8', header(i, 0)))
    segmenter = Segmenter.from_file(path, 'onnxruntime', device='cpu', threads=1)
    summary = evaluate_bag(bag, ['/cam/image_raw'], segmenter, output_dir=tmp_path / 'out',
                           progress=False)
    assert json.dumps(summary) and (tmp_path / 'out').is_dir()


def test_gate_frames_of_their_own_gate_int8_and_all_calibration_frames_calibrate(
        checkpoint, fp32, tmp_path):
    """``--gate SRC``: calibrate on every frame, gate on the other source's frames only."""
    calibration, gate = scenes(4, seed=10), scenes(6, seed=40)
    path = tmp_path / 'q.onnx'
    export_onnx(checkpoint, path, precision='int8', frames=calibration, scheme='cpu-avx2',
                min_agreement=0.5, calibration={'source': 'test'}, gate=gate, **QUIET)
    model = onnx.load(str(path))
    config, io = onnx_metadata(model, path)
    assert io['calibration']['calibration_frames'] == 4  # none held out
    assert io['gate']['frames'] == 6 and io['gate']['generated_frames'] == 0
    # The recorded agreement is the gate frames' own, recomputed with the backends.
    fp32_path = tmp_path / 'fp32.onnx'
    onnx.save(fp32, str(fp32_path))
    labels = [load_backend(p, 'onnxruntime', 'cpu', threads=1).run(gate)['labels']
              for p in (fp32_path, path)]
    assert io['gate']['agreement'] == pytest.approx((labels[0] == labels[1]).mean(), abs=1e-9)


def test_export_gate_option_reads_its_own_source(checkpoint, tmp_path, capsys):
    folder = tmp_path / 'val'
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f'{i}.png'), street_image(*SMALL, seed=60 + i)[..., ::-1])
    out = tmp_path / 'q.onnx'
    assert export_main([str(checkpoint), '--onnx', str(out), '--precision', 'int8',
                        '--calibration', str(folder), '--gate', str(folder),
                        '--min-agreement', '0.5']) == 0
    io = onnx_io(onnx.load(str(out)))
    assert io['gate']['frames'] == 5 and io['calibration']['calibration_frames'] == 5
    assert io['calibration']['gate_source']['source'] == str(folder)
    with pytest.raises(SystemExit):
        export_main([str(checkpoint), '--onnx', str(out), '--gate', str(folder)])
    assert '--gate needs --precision fp16 or int8' in capsys.readouterr().err
