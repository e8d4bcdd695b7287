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
OpenVINO backend: the exported ONNX models on Intel/AMD CPUs, Intel GPUs and NPUs.

It runs the same files as ONNX Runtime (fp32 and int8 QDQ), fused in memory the same way
(uint8 NHWC input, in-graph normalisation and ArgMax). ``precision`` is OpenVINO's inference
precision for the float parts: 'bf16' halves the CPU time where the CPU has native bf16
(AVX-512 BF16, AMX) and needs no calibration; the first convolution stays f32
(``keep_first_conv_f32``). What the device cannot do is refused, never replaced: OpenVINO
itself would silently run bf16 as f32 on a CPU without it.
"""

import logging
from pathlib import Path
import tempfile
from xml.etree import ElementTree

from liteseg_ros.inference.backends import DeviceUnavailable, import_openvino
from liteseg_ros.inference.backends.onnx_file import OnnxFileBackend
import numpy as np

LOG = logging.getLogger(__name__)
PRECISIONS = ('auto', 'f32', 'bf16')
#: The OPTIMIZATION_CAPABILITIES entry a device reports for each explicit precision.
_CAPABILITY = {'f32': 'FP32', 'bf16': 'BF16'}


class PrecisionUnavailable(DeviceUnavailable):
    """The inference precision asked for is not native on the device."""


def device_precision(core, device, precision='auto'):
    """
    Return the inference precision to compile for: 'f32', 'bf16' or None (the device's own).

    'auto' is bf16 on a CPU that OpenVINO reports native bf16 for, f32 on other CPUs, and the
    device's default elsewhere (GPUs: f16). 'f32' and 'bf16' must be among the device's
    optimization capabilities.

    :raises ValueError: an unknown precision word.
    :raises PrecisionUnavailable: the device lacks the precision asked for.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'openvino precision must be one of {PRECISIONS}, got {precision!r}')
    capabilities = core.get_property(device, 'OPTIMIZATION_CAPABILITIES')
    if precision == 'auto':
        if not device.startswith('CPU'):
            return None
        return 'bf16' if 'BF16' in capabilities else 'f32'
    if _CAPABILITY[precision] not in capabilities:
        name = core.get_property(device, 'FULL_DEVICE_NAME')
        raise PrecisionUnavailable(
            f'precision {precision!r} is not native on OpenVINO device {device} ({name}), whose '
            f'capabilities are {list(capabilities)}; use precision auto or f32')
    return precision


def keep_first_conv_f32(core, model):
    """
    Return ``model`` with its first Convolution and what feeds it marked to run f32.

    Under bf16 the normalised image and the stem's weights would be rounded to 8 significant
    bits: on CamVid test frames that alone changed about 0.1 % of the mask pixels, and keeping
    the normalisation and the first convolution f32 costs no measurable time. OpenVINO's CPU
    plugin takes per-node precision from the DisablePrecisionConversion attribute, which only
    its IR reader can build (a Python rt_info entry is a string and fails to compile), so the
    model makes a trip through IR in a temporary folder.
    """
    import openvino

    first = next((op for op in model.get_ordered_ops() if op.get_type_name() == 'Convolution'),
                 None)
    if first is None:
        return model
    names, stack = set(), [first]
    while stack:  # the convolution and its ancestors (normalisation, casts, transposes)
        node = stack.pop()
        if node.get_friendly_name() not in names:
            names.add(node.get_friendly_name())
            stack += [value.get_node() for value in node.input_values()]
    with tempfile.TemporaryDirectory(prefix='liteseg_openvino_') as tmp:
        xml, weights = Path(tmp) / 'model.xml', Path(tmp) / 'model.bin'
        openvino.save_model(model, str(xml), compress_to_fp16=False)
        tree = ElementTree.parse(xml)
        for layer in tree.iter('layer'):
            if layer.get('name') not in names or layer.get('type') in ('Const', 'Parameter'):
                continue
            rt_info = layer.find('rt_info')
            if rt_info is None:
                rt_info = ElementTree.Element('rt_info')
                layer.insert(0, rt_info)
            ElementTree.SubElement(rt_info, 'attribute', name='DisablePrecisionConversion',
                                   version='0', value='dynamic:f16')
        return core.read_model(ElementTree.tostring(tree.getroot()),
                               openvino.Tensor(np.fromfile(weights, np.uint8)))


class OpenVinoBackend(OnnxFileBackend):
    """
    Runs an exported liteseg ONNX model with OpenVINO; plain logits models are fused in memory.

    One compiled model per requested output (and, for dynamic-batch models, per batch size),
    compiled for latency: one stream, ``threads`` inference threads on a CPU.
    """

    name = 'openvino'
    static_batches = True  # static shapes run faster

    def __init__(self, path, device='CPU', precision='auto', threads=None):
        """
        Load ``path`` for OpenVINO ``device`` ('CPU', 'GPU', 'GPU.N', 'NPU').

        ``precision``: 'auto', 'f32' or 'bf16' (``device_precision``); ``threads``: CPU
        inference threads (None: OpenVINO's default). ``load_backend`` maps a device name.
        """
        self._core = import_openvino().Core()
        self._load(path)
        self.device = device
        self.precision = device_precision(self._core, device, precision)
        self.properties = {'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': 1}
        if self.precision:
            self.properties['INFERENCE_PRECISION_HINT'] = self.precision
        if threads and device.startswith('CPU'):
            self.properties['INFERENCE_NUM_THREADS'] = int(threads)

    def describe(self):
        """Return the one-line description, with the inference precision."""
        precision = self.precision or 'device default'
        return f'{super().describe()}, OpenVINO {precision}'

    def _compile(self, model, batch):
        """
        Return an infer request of ONNX ``model`` compiled for this device.

        ``batch``: the batch size a dynamic-batch input is fixed to (static shapes run faster).
        """
        ov_model = self._core.read_model(model.SerializeToString())
        port = ov_model.inputs[0]
        if batch is not None and port.get_partial_shape().is_dynamic:
            shape = port.get_partial_shape()
            shape[0] = batch
            ov_model.reshape({port.get_any_name(): shape})
        if self.precision == 'bf16':
            ov_model = keep_first_conv_f32(self._core, ov_model)
        compiled = self._core.compile_model(ov_model, self.device, self.properties)
        if self.precision:
            # OpenVINO may quietly lower a hint it cannot honour: check what it compiled.
            got = compiled.get_property('INFERENCE_PRECISION_HINT').get_type_name()
            if got != self.precision:
                raise PrecisionUnavailable(f'OpenVINO compiled {self.path} for {self.device} in '
                                           f'{got}, not the {self.precision} asked for')
        return compiled.create_infer_request()

    def _infer(self, request, names, images):
        results = request.infer({0: images}, share_inputs=True)
        by_name = {port.get_any_name(): value for port, value in results.items()}
        return [by_name[name] for name in names]


__all__ = ['device_precision', 'keep_first_conv_f32', 'OpenVinoBackend', 'PRECISIONS',
           'PrecisionUnavailable']
