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


def wrap_pre_post(model, mean, std, output='labels', confidence=False):
    """
    Return a copy of logits ``model`` with uint8 NHWC input and the chosen outputs.

    ``output`` is 'labels' (ArgMax, uint8) or 'logits'; ``confidence`` adds the per-pixel
    softmax probability of the chosen class (float32). The io metadata is updated (input,
    layout, output, confidence); its size and batch entries are kept.
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
    needed, kept = {LOGITS_OUTPUT}, []
    for node in reversed(nodes):  # drop what only fed the Resize (its size computation)
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del cut.graph.node[:]
    cut.graph.node.extend(reversed(kept))
    used = needed | {i.name for i in cut.graph.input}
    initializers = [t for t in cut.graph.initializer if t.name in used]
    del cut.graph.initializer[:]
    cut.graph.initializer.extend(initializers)
    value_info = [v for v in cut.graph.value_info if v.name in used and v.name != source]
    del cut.graph.value_info[:]
    cut.graph.value_info.extend(value_info)
    batch = high[0] or 'batch'
    del cut.graph.output[:]
    cut.graph.output.append(helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT,
                                                          [batch, classes, h, w]))
    return cut, (height // h, width // w)
