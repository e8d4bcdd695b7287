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
Reduced precision as a property of the ONNX model: fp16 types and int8 Q/DQ nodes.

Every backend runs what the file says (docs/inference.md, "Precision"): ONNX Runtime on a CPU,
TensorRT >= 10 strongly typed. int8 is ONNX Runtime's static quantization in QDQ format after
``quant_pre_process``, with one of the schemes of ``SCHEMES``; fp16 is onnxconverter-common
with float32 graph inputs and outputs. Both are quantized before ``wrap_pre_post`` fuses the
pre- and post-processing, so the fused parts stay float and every backend fuses as for fp32.

The accuracy gate (``accuracy_gate``) compares the reduced model with the fp32 one on frames
kept out of the calibration: argmax agreement and the mIoU of its masks against fp32's. Below
the bar the sensitive nodes (first conv, segmentation-head convs, Resize) stay float and the
int8 model is made again; still below, ``PrecisionError`` carries the figures.
"""

import json
from pathlib import Path
import tempfile

from liteseg_ros.inference.metrics import ConfusionMatrix
from liteseg_ros.inference.model_files import onnx_io, write_onnx_metadata
from liteseg_ros.inference.onnx_graph import IMAGE_INPUT, LOGITS_OUTPUT
import numpy as np
import onnx
from training.calibration_data import normalise

PRECISIONS = ('fp32', 'fp16', 'int8')
SCHEMES = ('auto', 'trt', 'cpu-avx2', 'cpu-vnni')
SCHEME_NOTES = {
    'trt': 'symmetric int8 activations and weights (zero point 0), per-channel weights',
    'cpu-avx2': 'U8S8 with reduce_range, per-channel weights (x86 CPUs, with or without VNNI)',
    'cpu-vnni': 'S8S8, per-channel weights (AVX-512 VNNI / AVX-VNNI)',
}
DEFAULT_MIN_AGREEMENT = 0.99
MIN_HELD_OUT = 4


class PrecisionError(ValueError):
    """The reduced-precision model cannot be made or misses the accuracy gate."""


def resolve_scheme(scheme='auto', engine=False):
    """
    Return the concrete int8 scheme: ``auto`` is trt for engines, else cpu-avx2.

    U8S8 with reduce_range was the fastest int8 on both CPUs measured, AVX2 only (0.56x fp32)
    and AVX-512 with VNNI (0.53x), where S8S8 was slower than fp32 (1.33x, 1.2x): see
    docs/benchmarks.md.
    """
    if scheme not in SCHEMES:
        raise ValueError(f'int8 scheme must be one of {SCHEMES}, got {scheme!r}')
    if scheme != 'auto':
        return scheme
    if engine:
        return 'trt'
    return 'cpu-avx2'


def scheme_settings(scheme):
    """Return the keyword arguments of ``quantize_static`` for a concrete scheme."""
    from onnxruntime.quantization import QuantFormat, QuantType

    common = {'quant_format': QuantFormat.QDQ, 'per_channel': True}
    if scheme == 'trt':
        # TensorRT dequantizes int8 only: int32 bias Q/DQ would not parse, so biases stay
        # float (TensorRT fuses them into the int8 convolution).
        return dict(common, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    reduce_range=False,
                    extra_options={'ActivationSymmetric': True, 'WeightSymmetric': True,
                                   'QuantizeBias': False})
    if scheme == 'cpu-avx2':
        return dict(common, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    reduce_range=True)
    if scheme == 'cpu-vnni':
        return dict(common, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    reduce_range=False)
    raise ValueError(f'no int8 settings for scheme {scheme!r}')


def split_frames(frames):
    """Return (calibration frames, held-out frames): every 4th frame is held out."""
    held = np.arange(len(frames)) % 4 == 3
    if len(frames) >= 2 and not held.any():
        held[-1] = True
    return frames[~held], frames[held]


def gate_frames(held_out, height, width):
    """Return the held-out frames, topped up with generated street scenes to MIN_HELD_OUT."""
    from liteseg_ros.sample_images import make_street_scene

    import cv2

    extra = []
    for seed in range(max(0, MIN_HELD_OUT - len(held_out))):
        scene = make_street_scene(seed=1000 + seed)
        extra.append(cv2.resize(scene, (width, height), interpolation=cv2.INTER_LINEAR))
    if not extra:
        return held_out, 0
    stacked = np.concatenate([held_out, np.stack(extra)]) if len(held_out) else np.stack(extra)
    return stacked, len(extra)


def _input_batch(model):
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value or None


class _Reader:
    """ONNX Runtime CalibrationDataReader over normalised frames, in model-sized batches."""

    def __init__(self, inputs, batch):
        step = batch or 1
        self.batches = [inputs[i:i + step] for i in range(0, len(inputs) - step + 1, step)]
        if not self.batches:
            self.batches = [np.repeat(inputs[:1], step, axis=0)]
        self.position = 0

    def get_next(self):
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {IMAGE_INPUT: self.batches[self.position - 1]}

    def rewind(self):
        self.position = 0


def sensitive_nodes(model):
    """Return the node names kept float on a retry: first conv, head convs, every Resize."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names = [node.name for node in model.graph.node if node.op_type == 'Resize']
    first = next((n for n in model.graph.node
                  if n.op_type == 'Conv' and IMAGE_INPUT in n.input), None)
    if first is not None:
        names.append(first.name)
    # The segmentation head: the last convs before the logits, walking up the graph.
    stack, seen, head_convs = [LOGITS_OUTPUT], set(), []
    while stack and len(head_convs) < 2:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == 'Conv':
            head_convs.append(node.name)
        stack.extend(node.input)
    return sorted(set(names + head_convs))


def quantize_int8(model, frames, config, scheme, keep_float=False):
    """
    Return (int8 QDQ model, nodes kept float) of fp32 logits ``model``, calibrated on ``frames``.

    With ``keep_float`` the sensitive nodes stay float. They are found in the graph that
    ``quant_pre_process`` made, whose node names are the ones ``quantize_static`` matches, and
    are excluded from quantization; their outputs lose the Q/DQ pairs ``quantize_static`` puts
    on them for quantized consumers, since DequantizeLinear -> node -> QuantizeLinear is a
    group that ONNX Runtime and TensorRT run in int8.
    """
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    settings = scheme_settings(scheme)
    inputs = normalise(frames, config['mean'], config['std'])
    if scheme == 'cpu-avx2':
        # The image's range is that of any uint8 frame, not of the calibration frames: with
        # one mean and std its step is then the normalisation's, and the backends feed the
        # uint8 frame in as the quantized image (onnx_graph.wrap_pre_post, uint8_into_int8).
        mean, std = (np.asarray(config[k], np.float32) for k in ('mean', 'std'))
        low, high = (-mean / std).min(), ((1 - mean) / std).max()
        settings.setdefault('extra_options', {})['TensorQuantOverrides'] = {
            IMAGE_INPUT: [{'rmin': np.float32(low), 'rmax': np.float32(high)}]}
    if scheme != 'trt':
        model = pools_as_depthwise_convs(model)
    with tempfile.TemporaryDirectory(prefix='liteseg_int8_') as tmp:
        source, prepared, output = (Path(tmp) / n for n in ('fp32.onnx', 'pre.onnx',
                                                            'int8.onnx'))
        onnx.save(model, str(source))
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        exclude = sensitive_nodes(onnx.load(str(prepared))) if keep_float else []
        quantize_static(str(prepared), str(output), _Reader(inputs, _input_batch(model)),
                        nodes_to_exclude=exclude, **settings)
        quantized = onnx.load(str(output))
    _unquantize_outputs(quantized, exclude)
    if scheme != 'trt':
        _float_logits(quantized)
    _copy_metadata(model, quantized)
    return quantized, exclude


def pools_as_depthwise_convs(model):
    """
    Return a copy of ``model`` with every AveragePool of known shape as a depthwise Conv.

    ONNX Runtime's int8 AveragePool (QLinearAveragePool) took 6x the float pool's time, about
    10 ms at 512x1024 in the STDC skip paths; its int8 depthwise Conv is MLAS's fast kernel.
    The Conv sums each window with weights 1 / (kernel area) over zero padding; where
    ``count_include_pad`` is 0 and a window overlaps the padding, a Mul by a constant map of
    (kernel area) / (window's pixels in the image) restores the exclusive mean, so the function
    is the same in float (int8 weights of 1 / area are exact: symmetric per-channel scales).
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    inferred = onnx.shape_inference.infer_shapes(copy).graph
    shapes = {value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
              for value in list(inferred.value_info) + list(inferred.input)}
    nodes = []
    for node in graph.node:
        shape = shapes.get(node.input[0], []) if node.input else []
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != 'AveragePool' or len(shape) != 4 or not all(shape[1:])
                or attributes.get('ceil_mode', 0) or attributes.get('auto_pad', b'NOTSET')
                not in (b'NOTSET', 'NOTSET')):
            nodes.append(node)
            continue
        channels, height, width = shape[1:]
        kernel = list(attributes['kernel_shape'])
        strides = list(attributes.get('strides', [1, 1]))
        pads = list(attributes.get('pads', [0, 0, 0, 0]))
        weight = f'{node.name}/depthwise_weight'
        graph.initializer.append(onnx.numpy_helper.from_array(
            np.full((channels, 1, *kernel), 1.0 / np.prod(kernel), np.float32), weight))
        conv = onnx.helper.make_node('Conv', [node.input[0], weight], list(node.output),
                                     name=f'{node.name}/depthwise', group=channels,
                                     kernel_shape=kernel, strides=strides, pads=pads)
        rows = _window_pixels(height, kernel[0], strides[0], pads[0], pads[2])
        cols = _window_pixels(width, kernel[1], strides[1], pads[1], pads[3])
        scale = np.prod(kernel) / np.outer(rows, cols)
        if attributes.get('count_include_pad', 0) or np.all(scale == 1):
            nodes.append(conv)
            continue
        summed, border = f'{node.name}/window_sum', f'{node.name}/border_scale'
        conv.output[:] = [summed]
        graph.initializer.append(onnx.numpy_helper.from_array(
            scale.astype(np.float32).reshape(1, 1, *scale.shape), border))
        nodes += [conv, onnx.helper.make_node('Mul', [summed, border], list(node.output),
                                              name=f'{node.name}/exclude_pad')]
    del graph.node[:]
    graph.node.extend(nodes)
    return copy


def _window_pixels(size, kernel, stride, pad_begin, pad_end):
    """Return, per output position along one axis, how many window pixels lie in the image."""
    starts = np.arange((size + pad_begin + pad_end - kernel) // stride + 1) * stride - pad_begin
    return np.minimum(starts + kernel, size) - np.maximum(starts, 0)


def _float_logits(model):
    """
    Drop the QuantizeLinear -> DequantizeLinear pair that ``quantize_static`` puts on the logits.

    Rounding the logits to 256 levels adds ties to the ArgMax and costs two passes over every
    class plane at full resolution; with it OpenVINO also keeps the final Resize and the ArgMax
    in its int8 (NHWC) layout, where the ArgMax took 40 ms at 512x1024 instead of 3 ms.
    """
    graph = model.graph
    dequantize = next((n for n in graph.node if LOGITS_OUTPUT in n.output), None)
    if dequantize is None or dequantize.op_type != 'DequantizeLinear':
        return
    quantize = next((n for n in graph.node if dequantize.input[0] in n.output), None)
    readers = [n for n in graph.node if dequantize.input[0] in n.input]
    if quantize is None or quantize.op_type != 'QuantizeLinear' or len(readers) != 1:
        return
    source = quantize.input[0]
    graph.node.remove(dequantize)
    graph.node.remove(quantize)
    for node in graph.node:
        node.output[:] = [LOGITS_OUTPUT if out == source else out for out in node.output]
        node.input[:] = [LOGITS_OUTPUT if tensor == source else tensor for tensor in node.input]
    used = {tensor for node in graph.node for tensor in node.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _unquantize_outputs(model, names):
    """Let the consumers of the ``names`` nodes' outputs read them float: drop their Q/DQ."""
    graph = model.graph
    float_outputs = {out for node in graph.node if node.name in names for out in node.output}
    readers = {}
    for index, node in enumerate(graph.node):
        for tensor in node.input:
            readers.setdefault(tensor, []).append(index)
    kept_names = {value.name for value in graph.output}
    dropped, rename = set(), {}
    for index, node in enumerate(graph.node):
        if node.op_type != 'QuantizeLinear' or node.input[0] not in float_outputs:
            continue
        pairs = readers.get(node.output[0], [])
        dequantized = [graph.node[i].output[0] for i in pairs]
        if all(graph.node[i].op_type == 'DequantizeLinear' for i in pairs) and not (
                kept_names & ({node.output[0]} | set(dequantized))):
            dropped.update([index, *pairs])
            rename.update({tensor: node.input[0] for tensor in dequantized})
    nodes = [node for index, node in enumerate(graph.node) if index not in dropped]
    for node in nodes:
        node.input[:] = [rename.get(tensor, tensor) for tensor in node.input]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {tensor for node in graph.node for tensor in node.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def convert_fp16(model):
    """Return ``model`` with float16 weights and compute, float32 graph input and output."""
    import warnings

    from onnxconverter_common import float16

    with warnings.catch_warnings():  # one warning per weight below fp16's smallest normal
        warnings.simplefilter('ignore', UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    _copy_metadata(model, converted)
    return converted


def _copy_metadata(source, target):
    del target.metadata_props[:]
    for prop in source.metadata_props:
        target.metadata_props.add(key=prop.key, value=prop.value)
    target.producer_name = source.producer_name


def _labels(model, frames):
    """Return the class ids the ONNX Runtime CPU backend gives ``model`` for uint8 NHWC frames."""
    from liteseg_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model, providers=['CPUExecutionProvider']).run(frames)['labels']


def compare(reference, candidate, frames, config):
    """Return {'agreement', 'miou', 'frames'}: ``candidate``'s masks against ``reference``'s."""
    expected = _labels(reference, frames)
    got = _labels(candidate, frames)
    matrix = ConfusionMatrix(int(config['num_classes']))
    matrix.update(got, expected)
    return {'agreement': float((got == expected).mean()),
            'miou': float(matrix.miou(skip_empty=True)), 'frames': int(len(frames))}


def _figures(result):
    return (f"argmax agreement {100 * result['agreement']:.2f} %, mIoU vs fp32 "
            f"{100 * result['miou']:.2f} on {result['frames']} held-out frames")


def reduce_precision(model, precision, frames=None, scheme='auto', engine=False,
                     min_agreement=DEFAULT_MIN_AGREEMENT, calibration=None, log=print,
                     gate=None):
    """
    Return the ``precision`` version of fp32 logits ``model``, gated for accuracy.

    ``frames``: uint8 NHWC frames at the model size (int8: calibration and held-out frames;
    fp16: held-out frames, generated scenes when None). ``gate``: frames of their own for the
    accuracy gate (e.g. a validation split); then int8 calibrates on every frame of
    ``frames``. ``calibration``: the source summary recorded in the metadata. Raises
    PrecisionError with the figures when the gate fails.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if precision == 'fp32':
        return model
    config = json.loads({p.key: p.value for p in model.metadata_props}['liteseg_config'])
    io = onnx_io(model)
    height, width = int(io['height']), int(io['width'])
    if precision == 'fp16':
        checked = gate if gate is not None else frames
        held, generated = gate_frames(checked if checked is not None else
                                      np.zeros((0, height, width, 3), np.uint8), height, width)
        candidate = convert_fp16(model)
        result = compare(model, candidate, held, config)
        log(f'fp16: {_figures(result)}')
        if result['agreement'] < min_agreement:
            raise PrecisionError(f'fp16 misses the accuracy gate: {_figures(result)} < '
                                 f'{100 * min_agreement:.2f} % required; nothing written')
        return _record(candidate, 'fp16', None, result, calibration, [], generated)
    if frames is None or len(frames) < 2:
        raise PrecisionError('int8 needs calibration frames (--calibration SRC, at least 2)')
    scheme = resolve_scheme(scheme, engine)
    calibrate, held_out = split_frames(frames) if gate is None else (frames, gate)
    held, generated = gate_frames(held_out, height, width)
    results = []
    for keep_float in (False, True):  # then again with the sensitive nodes float
        candidate, float_nodes = quantize_int8(model, calibrate, config, scheme, keep_float)
        result = compare(model, candidate, held, config)
        results.append(result)
        kept = f' ({len(float_nodes)} sensitive nodes kept float)' if keep_float else ''
        log(f'int8 {scheme}{kept}: {_figures(result)}')
        if result['agreement'] >= min_agreement:
            summary = dict(calibration or {}, calibration_frames=int(len(calibrate)))
            return _record(candidate, 'int8', scheme, result, summary, float_nodes,
                           generated)
    tried = '; '.join(f"{'sensitive nodes float' if i else 'all nodes int8'}: {_figures(r)}"
                      for i, r in enumerate(results))
    raise PrecisionError(f'int8 ({scheme}) misses the accuracy gate of {100 * min_agreement:.2f}'
                         f' % argmax agreement with fp32 ({tried}); nothing written. Calibrate '
                         'on more frames like the ones the model will see, or lower '
                         '--min-agreement knowingly')


def _record(model, precision, scheme, result, calibration, float_nodes, generated):
    """Store precision, scheme, gate figures and calibration summary in the io metadata."""
    gate = dict(result, generated_frames=generated)
    io = {'precision': precision, 'int8_scheme': scheme, 'gate': gate,
          'calibration': calibration, 'float_nodes': float_nodes}
    write_onnx_metadata(model, io=io)
    return model
