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
ONNX graph surgery: fold pre- and post-processing into a logits model.

The wrapped graph takes the resized camera frames as they are (uint8, NHWC, RGB), normalises
them in-graph, and ends in an ArgMax (uint8 class ids) with an optional softmax confidence, so
the host neither converts to float nor scans 19 logit planes. ``split_final_upsample`` cuts a
logits model before its final upsampling, for backends that find the class ids of the upsampled
logits on the host (``upsampled_argmax``).
"""

from liteseg_ros.inference.model_files import write_onnx_metadata
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

IMAGE_INPUT = 'image'
UINT8_INPUT = 'image_u8'
LOGITS_OUTPUT = 'logits'
LABELS_OUTPUT = 'labels'
CONFIDENCE_OUTPUT = 'confidence'


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def wrap_pre_post(model, mean, std, output='labels', confidence=False, uint8_into_int8=False):
    """
    Return a copy of logits ``model`` with uint8 NHWC input and the chosen outputs.

    ``output`` is 'labels' (ArgMax, uint8) or 'logits'; ``confidence`` adds the per-pixel
    softmax probability of the chosen class (float32). The io metadata is updated (input,
    layout, output, confidence); its size and batch entries are kept. ``uint8_into_int8``: an
    int8 QDQ model whose image quantization step is the normalisation's gets the uint8 frame as
    its quantized input (``_feed_uint8_to_int8``; ONNX Runtime and OpenVINO, not TensorRT,
    whose DequantizeLinear takes int8 only).
    """
    if output not in ('labels', 'logits'):
        raise ValueError(f"output must be 'labels' or 'logits', got {output!r}")
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    graph = wrapped.graph
    (image,) = [i for i in graph.input if i.name == IMAGE_INPUT]
    (logits,) = [o for o in graph.output if o.name == LOGITS_OUTPUT]
    batch, _, height, width = _dims(image)
    batch_dim = batch if batch else 'batch'

    mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    scale, shift = 1.0 / (255.0 * std), -mean / std
    if np.all(scale == scale.flat[0]) and np.all(shift == shift.flat[0]):
        # The same values as scalars: ONNX Runtime moves the Transpose behind the Mul/Add for
        # its NHWC int8 kernels, where a (1, 1, 1, 3) broadcast costs 20 ms at 512x1024.
        scale, shift = scale.flat[0].reshape(()), shift.flat[0].reshape(())
    graph.initializer.extend([numpy_helper.from_array(scale, 'pre_scale'),
                              numpy_helper.from_array(shift, 'pre_shift')])
    pre = [
        helper.make_node('Cast', [UINT8_INPUT], ['pre_float'], to=TensorProto.FLOAT),
        helper.make_node('Transpose', ['pre_float'], ['pre_nchw'], perm=[0, 3, 1, 2]),
        helper.make_node('Mul', ['pre_nchw', 'pre_scale'], ['pre_scaled']),
        helper.make_node('Add', ['pre_scaled', 'pre_shift'], [IMAGE_INPUT]),
    ]
    post, outputs = [], []
    if output == 'labels':
        post += [helper.make_node('ArgMax', [LOGITS_OUTPUT], ['post_argmax'], axis=1,
                                  keepdims=0),
                 helper.make_node('Cast', ['post_argmax'], [LABELS_OUTPUT], to=TensorProto.UINT8)]
        outputs.append(helper.make_tensor_value_info(LABELS_OUTPUT, TensorProto.UINT8,
                                                     [batch_dim, height, width]))
    else:
        outputs.append(logits)
    if confidence:
        # max softmax = 1 / sum(exp(logits - max)).
        graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), 'post_axes'))
        post += [
            helper.make_node('ReduceMax', [LOGITS_OUTPUT], ['post_max'], axes=[1], keepdims=1),
            helper.make_node('Sub', [LOGITS_OUTPUT, 'post_max'], ['post_centred']),
            helper.make_node('Exp', ['post_centred'], ['post_exp']),
            helper.make_node('ReduceSum', ['post_exp', 'post_axes'], ['post_sum'], keepdims=0),
            helper.make_node('Reciprocal', ['post_sum'], [CONFIDENCE_OUTPUT]),
        ]
        outputs.append(helper.make_tensor_value_info(CONFIDENCE_OUTPUT, TensorProto.FLOAT,
                                                     [batch_dim, height, width]))
    nodes = pre + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(nodes)
    if uint8_into_int8 and _feed_uint8_to_int8(graph, scale, shift):
        _prune(graph, [o.name for o in outputs])
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(UINT8_INPUT, TensorProto.UINT8,
                                                     [batch_dim, height, width, 3]))
    del graph.output[:]
    graph.output.extend(outputs)
    io = {'input': UINT8_INPUT, 'layout': 'nhwc_uint8', 'output': output,
          'confidence': bool(confidence)}
    write_onnx_metadata(wrapped, io=io)
    onnx.checker.check_model(wrapped)
    return wrapped


def _attributes(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def split_final_upsample(model):
    """
    Return (``model`` ending before its final upsampling, (sy, sx)), or None.

    The cut model's LOGITS_OUTPUT is the low-resolution logits (N, C, h, w); (sy, sx) are the
    factors of the upsampling it skips. None unless LOGITS_OUTPUT is made by a Resize that
    ``upsampled_argmax`` reproduces: linear, half-pixel centres, no antialiasing, static sizes
    and even integer factors.
    """
    graph = model.graph
    producers = [n for n in graph.node if LOGITS_OUTPUT in n.output]
    if len(producers) != 1 or producers[0].op_type != 'Resize':
        return None
    resize = producers[0]
    attributes = _attributes(resize)
    if (attributes.get('mode') != b'linear' or attributes.get('antialias', 0)
            or attributes.get('coordinate_transformation_mode', b'half_pixel')
            not in (b'half_pixel', b'pytorch_half_pixel') or 'axes' in attributes):
        return None
    source = resize.input[0]
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: _dims(v) for v in list(inferred.graph.value_info) + list(graph.output)}
    low, high = shapes.get(source), shapes.get(LOGITS_OUTPUT)
    image = next((i for i in graph.input if i.name == IMAGE_INPUT), None)
    if high and image and not all(isinstance(d, int) for d in high[2:]):
        high = high[:2] + _dims(image)[2:]  # symbolic (dynamic-batch export): the input size
    if not low or not high or len(low) != 4 or not all(isinstance(d, int) and d > 0
                                                       for d in low[1:] + high[2:]):
        return None
    (_, classes, h, w), (_, _, height, width) = low, high
    if height % h or width % w or (height // h) % 2 or (width // w) % 2:
        return None

    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    nodes = [n for n in cut.graph.node if LOGITS_OUTPUT not in n.output]
    for node in nodes:  # the low-resolution logits take the output's name
        node.output[:] = [LOGITS_OUTPUT if name == source else name for name in node.output]
        node.input[:] = [LOGITS_OUTPUT if name == source else name for name in node.input]
    del cut.graph.node[:]
    cut.graph.node.extend(nodes)
    _prune(cut.graph, [LOGITS_OUTPUT])  # what only fed the Resize (its size computation)
    batch = high[0] or 'batch'
    del cut.graph.output[:]
    cut.graph.output.append(helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT,
                                                          [batch, classes, h, w]))
    return cut, (height // h, width // w)


def _prune(graph, outputs):
    """Keep only the nodes, initializers and value infos that ``outputs`` depend on."""
    needed, kept = set(outputs), []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    for field in (graph.initializer, graph.value_info):
        entries = [entry for entry in field if entry.name in needed]
        del field[:]
        field.extend(entries)


def _feed_uint8_to_int8(graph, scale, shift):
    """
    Give an int8 model's first convolutions the uint8 frame as their quantized input.

    Applies when the normalised image is only quantized (one QuantizeLinear, read only by
    DequantizeLinears that feed Convs with quantized int32 biases) and the quantization step is
    the normalisation's own (1 / (255 std)): then the uint8 pixels are the quantized image with
    its zero point (about 255 mean), up to a constant ``delta`` (half a step for mean 0.5) that
    the convolutions' biases take up (``delta`` times the sum of each filter's weights). This
    saves the float pass over the frame (cast, scale, shift, quantize), and keeps all 256 grey
    levels: quantizing ``p - 127.5`` rounds half to even, so pairs of grey levels merged. Only
    the zero padding of those convolutions differs: a padded tap now stands for ``-delta``
    instead of 0 (half a step, at the frame's border). Return True when it applied.
    """
    def consumers(name):
        return [n for n in graph.node if name in n.input]

    initializers = {t.name: t for t in graph.initializer}
    quantize = consumers(IMAGE_INPUT)
    if scale.ndim or len(quantize) != 1 or quantize[0].op_type != 'QuantizeLinear':
        return False
    (quantize,) = quantize
    step = initializers.get(quantize.input[1])
    point = initializers.get(quantize.input[2]) if len(quantize.input) > 2 else None
    if (step is None or point is None or point.data_type != TensorProto.UINT8
            or numpy_helper.to_array(step).size != 1
            or abs(numpy_helper.to_array(step).item() * 255 / float(scale) - 255) > 1e-4):
        return False
    dequantizers = consumers(quantize.output[0])
    convs = [c for d in dequantizers for c in consumers(d.output[0])]
    if (not dequantizers or any(d.op_type != 'DequantizeLinear' for d in dequantizers)
            or any(c.op_type != 'Conv' or len(c.input) < 3 or c.input[0] not in
                   [d.output[0] for d in dequantizers] for c in convs)):
        return False
    producers = {n.output[0]: n for n in graph.node}
    zero_point = int(numpy_helper.to_array(point))  # the calibrated one: about 255 mean
    delta = float(shift) + zero_point * float(scale)  # normalised = dequantized + delta
    updates = []
    for conv in convs:
        weights, bias = producers.get(conv.input[1]), producers.get(conv.input[2])
        if (weights is None or bias is None or weights.op_type != 'DequantizeLinear'
                or bias.op_type != 'DequantizeLinear'
                or not all(i in initializers for i in list(weights.input) + list(bias.input))):
            return False
        q_weights, w_scale, *w_zero = (numpy_helper.to_array(initializers[i])
                                       for i in weights.input)
        q_bias, b_scale = (numpy_helper.to_array(initializers[i]) for i in bias.input[:2])
        if q_bias.dtype != np.int32:
            return False
        shape = (-1,) + (1,) * (q_weights.ndim - 1)
        centred = q_weights.astype(np.float64) - (np.reshape(w_zero[0], shape) if w_zero else 0)
        real = centred * np.reshape(w_scale, shape)
        shifted = q_bias + np.round(delta * real.sum(axis=tuple(range(1, real.ndim)))
                                    / np.asarray(b_scale, np.float64))
        updates.append((bias.input[0], shifted.astype(np.int32)))
    for name, value in updates:
        initializers[name].CopyFrom(numpy_helper.from_array(value, name))
    graph.node.insert(0, helper.make_node('Transpose', [UINT8_INPUT], ['pre_uint8_nchw'],
                                          perm=[0, 3, 1, 2]))
    for dequantize in dequantizers:
        dequantize.input[0] = 'pre_uint8_nchw'
    return True
