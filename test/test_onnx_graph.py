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
The uint8 frame as an int8 model's quantized input (``wrap_pre_post(uint8_into_int8=True)``).

A hand-built QDQ graph (image -> QuantizeLinear -> DequantizeLinear -> Conv with an int32 bias),
run by ONNX Runtime, against the float64 convolution of the normalised frame written out here.
"""

from liteseg_ros.inference.onnx_graph import (IMAGE_INPUT, LOGITS_OUTPUT, UINT8_INPUT,
                                              wrap_pre_post)
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
import pytest

pytestmark = pytest.mark.lite

MEAN, STD = 0.5, 0.5
STEP = np.float32(1 / (255 * STD))  # the normalisation's own step: 2 / 255


def qdq_conv(step=STEP, zero_point=128, seed=0):
    """Return (QDQ model: image -> Q -> DQ -> 3x3 Conv, pad 1, int32 bias; float weights, bias)."""
    rng = np.random.default_rng(seed)
    weight_scale = np.full(4, 0.01, np.float32)
    q_weights = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    q_bias = rng.integers(-20000, 20000, 4).astype(np.int32)
    bias_scale = (step * weight_scale).astype(np.float32)
    initializers = [
        numpy_helper.from_array(np.array(step, np.float32), 'x_scale'),
        numpy_helper.from_array(np.array(zero_point, np.uint8), 'x_zero_point'),
        numpy_helper.from_array(q_weights, 'w_q'),
        numpy_helper.from_array(weight_scale, 'w_scale'),
        numpy_helper.from_array(np.zeros(4, np.int8), 'w_zero_point'),
        numpy_helper.from_array(q_bias, 'b_q'),
        numpy_helper.from_array(bias_scale, 'b_scale'),
        numpy_helper.from_array(np.zeros(4, np.int32), 'b_zero_point'),
    ]
    nodes = [
        helper.make_node('QuantizeLinear', [IMAGE_INPUT, 'x_scale', 'x_zero_point'], ['x_q']),
        helper.make_node('DequantizeLinear', ['x_q', 'x_scale', 'x_zero_point'], ['x_dq']),
        helper.make_node('DequantizeLinear', ['w_q', 'w_scale', 'w_zero_point'], ['w'], axis=0),
        helper.make_node('DequantizeLinear', ['b_q', 'b_scale', 'b_zero_point'], ['b'], axis=0),
        helper.make_node('Conv', ['x_dq', 'w', 'b'], [LOGITS_OUTPUT], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, 'qdq_conv', [helper.make_tensor_value_info(IMAGE_INPUT, TensorProto.FLOAT,
                                                          [1, 3, 8, 10])],
        [helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT, [1, 4, 8, 10])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                              ir_version=8)  # opset 17's IR: every onnxruntime reads it
    weights = q_weights.astype(np.float64) * weight_scale.astype(np.float64)[:, None, None, None]
    return model, weights, q_bias * bias_scale.astype(np.float64)


def run(model, frame):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    return session.run([LOGITS_OUTPUT], {UINT8_INPUT: frame[None]})[0][0].astype(np.float64)


def float64_conv(image, weights, bias):
    """Return the 3x3, pad-1 convolution of a (3, H, W) float64 image."""
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)))
    _, height, width = image.shape
    out = np.empty((len(weights), height, width))
    for o, kernel in enumerate(weights):
        out[o] = bias[o] + sum(kernel[c, dy, dx] * padded[c, dy:dy + height, dx:dx + width]
                               for c in range(3) for dy in range(3) for dx in range(3))
    return out


def test_uint8_frame_feeds_the_int8_convolution_with_all_its_grey_levels():
    model, weights, bias = qdq_conv()
    frame = np.random.default_rng(1).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    normalised = (frame.transpose(2, 0, 1).astype(np.float64) / 255 - MEAN) / STD
    expected = float64_conv(normalised, weights, bias)

    fed = wrap_pre_post(model, [MEAN] * 3, [STD] * 3, 'logits', uint8_into_int8=True)
    ops = [node.op_type for node in fed.graph.node]
    assert ops[0] == 'Transpose' and 'QuantizeLinear' not in ops and 'Cast' not in ops
    got = run(fed, frame)
    # Inside, only float32 arithmetic and the bias's rounding to int32 (half a bias step) differ.
    scale = np.abs(expected).max()
    bias_step = float(STEP) * 0.01
    inner = np.s_[:, 1:-1, 1:-1]
    assert np.abs(got - expected)[inner].max() <= 1e-6 * scale + bias_step
    # At the border a padded tap stands for -delta (half a step) instead of 0.
    delta = 128 * float(STEP) - MEAN / STD
    border = np.abs(weights).sum(axis=(1, 2, 3)).max() * abs(delta)
    assert np.abs(got - expected).max() <= border + 1e-6 * scale + bias_step

    # Quantizing the normalised frame merges pairs of grey levels (p - 127.5 rounds half to
    # even): the plain fused graph is off by up to half a step in every pixel.
    plain = run(wrap_pre_post(model, [MEAN] * 3, [STD] * 3, 'logits'), frame)
    assert np.abs(plain - expected)[inner].max() > 10 * np.abs(got - expected)[inner].max()


@pytest.mark.parametrize('step, zero_point', [(np.float32(1 / 100), 128),  # not 1 / (255 std)
                                              (STEP, None)])                 # int8 zero point
def test_other_input_quantizations_keep_the_float_pre_processing(step, zero_point):
    model, weights, bias = qdq_conv(step, 128)
    if zero_point is None:  # symmetric int8 activations (TensorRT's scheme)
        for tensor in model.graph.initializer:
            if tensor.name == 'x_zero_point':
                tensor.CopyFrom(numpy_helper.from_array(np.array(0, np.int8), 'x_zero_point'))
    fed = wrap_pre_post(model, [MEAN] * 3, [STD] * 3, 'logits', uint8_into_int8=True)
    plain = wrap_pre_post(model, [MEAN] * 3, [STD] * 3, 'logits')
    assert fed.graph.node == plain.graph.node
    onnx.checker.check_model(fed)
