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
TensorRT engines: cache keys, sidecars, platform checks, the graph TensorRT parses, backend.

Three kinds of tests:

- pure functions (keys, sidecars, messages) and the ONNX graph handed to TensorRT, checked
  with ONNX Runtime: run everywhere;
- the build / cache / load / run code paths against a stand-in ``tensorrt`` module whose
  "engine" runs the parsed ONNX graph with ONNX Runtime on host memory: run everywhere. It
  checks the plumbing (buffers, batching, sidecars, caches, error paths) and TensorRT's
  documented rules for UINT8 casts and for optimisation profiles, not TensorRT itself;
- ``tensorrt`` + ``gpu`` tests with the real TensorRT on a CUDA GPU: skipped elsewhere.
"""

import contextlib
import ctypes
import json
import sys
import types

from liteseg_ros.inference import load_backend, ModelFileError, Segmenter
from liteseg_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from liteseg_ros.inference.backends.tensorrt_backend import TensorRTBackend
from liteseg_ros.inference.model_files import engine_sidecar, onnx_metadata
from liteseg_ros.inference.tensorrt import build as trt_build, cuda_memory, runtime
from liteseg_ros.inference.tensorrt import (build_engine, cache_key, cached_engine,
                                            check_platform, DEFAULT_MAX_BATCH,
                                            engine_cache_key, engine_shapes, file_sha256,
                                            HostDeviceBuffer, import_tensorrt, PLATFORM_FIELDS,
                                            read_sidecar, tensorrt_onnx)
from model_fixtures import make_checkpoint, street_image
import numpy as np
import onnx
from onnx import TensorProto
import pytest
from tolerances import assert_confidence_close, assert_logits_close
from training.export import export_onnx

SMALL = [128, 256]
PLATFORM = {'tensorrt_version': '10.9.0.34', 'gpu_name': 'NVIDIA H100 80GB HBM3',
            'compute_capability': '9.0'}
SHAPES = {'input': 'image_u8', 'min': [1, 128, 256, 3], 'opt': [1, 128, 256, 3],
          'max': [1, 128, 256, 3]}


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Return a seeded T checkpoint at 128x256 and its exports (fixed, dynamic, fused)."""
    root = tmp_path_factory.mktemp('trt_models')
    checkpoint = make_checkpoint(root / 't.pt', input_size=SMALL)
    export_onnx(checkpoint, root / 't.onnx')
    export_onnx(checkpoint, root / 't_dyn.onnx', dynamic_batch=True)
    export_onnx(checkpoint, root / 't_fused.onnx', fuse=True)
    return {'checkpoint': checkpoint, 'onnx': root / 't.onnx', 'dynamic': root / 't_dyn.onnx',
            'fused': root / 't_fused.onnx', 'root': root}


@pytest.fixture(scope='module')
def reduced(models):
    """Return fp16 and int8 versions of the fixed-batch export (int8: trt and cpu-avx2)."""
    from training.quantize import reduce_precision

    root, fp32 = models['root'], onnx.load(str(models['onnx']))
    paths = {'fp16': root / 't_fp16.onnx', 'int8': root / 't_int8_trt.onnx',
             'int8_avx2': root / 't_int8_avx2.onnx'}
    quiet = {'log': lambda message: None}
    onnx.save(reduce_precision(fp32, 'fp16', **quiet), str(paths['fp16']))
    # Random weights leave many near-tied logits: the gate is the subject of test_quantize.
    for key, scheme in (('int8', 'trt'), ('int8_avx2', 'cpu-avx2')):
        model = reduce_precision(fp32, 'int8', frames(3), scheme, min_agreement=0.5, **quiet)
        onnx.save(model, str(paths[key]))
    return paths


def frames(count, seed=0):
    return np.stack([street_image(*SMALL, seed=seed + i) for i in range(count)])


# ---------------------------------------------------------------------------------------------
# Pure functions.


def test_cache_key_changes_with_every_input_and_only_with_them(tmp_path):
    first, second = tmp_path / 'a.onnx', tmp_path / 'b.onnx'
    first.write_bytes(b'model one')
    second.write_bytes(b'model two')
    base = dict(PLATFORM, precision='fp16', shapes=SHAPES)

    def key(path=first, **changes):
        args = dict(base, **changes)
        return engine_cache_key(path, args['precision'], args['shapes'],
                                tensorrt_version=args['tensorrt_version'],
                                gpu_name=args['gpu_name'],
                                compute_capability=args['compute_capability'])

    reference = key()
    assert key() == reference
    copy = tmp_path / 'copy.onnx'
    copy.write_bytes(first.read_bytes())
    assert key(copy) == reference  # content, not the file name
    dynamic = dict(SHAPES, max=[4, 128, 256, 3])
    variants = [key(second), key(tensorrt_version='10.9.0.35'), key(gpu_name='Orin'),
                key(compute_capability='8.7'), key(precision='fp32'), key(precision='int8'),
                key(shapes=dynamic)]
    assert len({reference, *variants}) == 1 + len(variants)
    sha = file_sha256(first)
    assert cache_key(sha, 'fp16', SHAPES, *PLATFORM.values()) == reference
    assert cache_key(sha, 'fp16', SHAPES, *PLATFORM.values(), variant='logits') != reference
    assert cache_key(sha, 'int8', SHAPES, *PLATFORM.values(), scheme='trt') != cache_key(
        sha, 'int8', SHAPES, *PLATFORM.values())
    with pytest.raises(ValueError, match='precision'):
        cache_key(sha, 'bf16', SHAPES, *PLATFORM.values())


def test_engine_shapes_for_fixed_and_dynamic_exports():
    io = {'input': 'image_u8', 'height': 128, 'width': 256, 'batch': 2}
    assert engine_shapes(io) == {'input': 'image_u8', 'min': [2, 128, 256, 3],
                                 'opt': [2, 128, 256, 3], 'max': [2, 128, 256, 3]}
    with pytest.raises(ValueError, match='--batch 3 or --dynamic-batch'):
        engine_shapes(io, batch=3)
    dynamic = dict(io, batch='dynamic')
    assert engine_shapes(dynamic)['max'][0] == DEFAULT_MAX_BATCH
    assert engine_shapes(dynamic)['opt'][0] == 1
    assert engine_shapes(dynamic, 6)['min'][0] == 1
    assert engine_shapes(dynamic, 6)['opt'][0] == engine_shapes(dynamic, 6)['max'][0] == 6


def sidecar_info(**changes):
    config = {'variant': 't', 'num_classes': 2, 'class_names': ['a', 'b'],
              'palette': [[0, 0, 0], [1, 1, 1]], 'mean': [0.5] * 3, 'std': [0.5] * 3,
              'input_size': SMALL, 'dataset': 'custom'}
    info = dict(PLATFORM, config=config, precision='fp16', onnx_sha256='0' * 64,
                onnx_file='/models/t.onnx', input_shape=[1, 128, 256, 3],
                io={'input': 'image_u8', 'output': 'labels', 'confidence': False,
                    'height': 128, 'width': 256, 'batch': 1})
    info.update(changes)
    return info


@pytest.mark.parametrize('field, label, value', [
    ('tensorrt_version', 'TensorRT version', '10.3.0.26'),
    ('gpu_name', 'GPU', 'Orin'),
    ('compute_capability', 'compute capability', '8.7'),
])
def test_platform_mismatch_names_the_field_and_the_rebuild_command(field, label, value):
    engine = '/models/t.engine'
    info = sidecar_info(**{field: value})
    with pytest.raises(ModelFileError) as error:
        check_platform(engine, info, PLATFORM)
    message = str(error.value)
    assert message.startswith(engine)
    assert f'{label}: engine built with {value!r}, this machine has {PLATFORM[field]!r}' in message
    others = [lab for f, lab in PLATFORM_FIELDS if f != field]
    assert not any(f'{other}: engine built' in message for other in others)
    assert ('python -m training.export CHECKPOINT.pt --onnx /models/t.onnx --engine '
            '/models/t.engine --precision fp16') in message
    assert 'delete /models/t.engine and /models/t.engine.json' in message
    check_platform(engine, sidecar_info(), PLATFORM)  # same platform: no error


def test_missing_corrupt_and_incomplete_sidecars_are_refused_naming_the_file(tmp_path):
    engine = tmp_path / 'm.engine'
    engine.write_bytes(b'engine')
    sidecar = engine_sidecar(engine)
    with pytest.raises(ModelFileError, match=f'{sidecar}.* is missing'):
        read_sidecar(engine)
    sidecar.write_text('{"config": ')
    with pytest.raises(ModelFileError, match=f'{sidecar}.* not JSON'):
        read_sidecar(engine)
    info = sidecar_info()
    del info['gpu_name'], info['onnx_sha256']
    sidecar.write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match=r"lacks \['gpu_name', 'onnx_sha256'\]"):
        read_sidecar(engine)
    info = sidecar_info()
    del info['config']['class_names']
    sidecar.write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match=r"config in .* lacks \['class_names'\]"):
        read_sidecar(engine)
    sidecar.write_text(json.dumps(sidecar_info()))
    assert read_sidecar(engine)['gpu_name'] == PLATFORM['gpu_name']


@pytest.mark.parametrize('path', ['x.engine', 'x.plan', 'model.onnx'])
def test_without_tensorrt_the_error_says_so_and_names_the_alternatives(monkeypatch, path):
    monkeypatch.setitem(sys.modules, 'tensorrt', None)  # import tensorrt raises ImportError
    with pytest.raises(ImportError) as error:
        load_backend(path, 'tensorrt' if path.endswith('.onnx') else 'auto')
    assert isinstance(error.value, ModelFileError)
    message = str(error.value)
    assert message.startswith('TensorRT is not installed')
    assert f'{path} cannot run with the tensorrt backend' in message
    assert "backend 'onnxruntime'" in message and "backend 'torch'" in message
    assert 'pip install tensorrt' in message


def test_old_tensorrt_is_refused(monkeypatch):
    old = types.SimpleNamespace(__version__='8.6.1', Builder=object)
    monkeypatch.setitem(sys.modules, 'tensorrt', old)
    with pytest.raises(ImportError, match='TensorRT 8.6.1 is too old.*needs TensorRT >= 10'):
        import_tensorrt('x.engine')


def test_a_tensorrt_namespace_without_builder_is_not_tensorrt(monkeypatch, tmp_path):
    # What `import tensorrt` gives with only tensorrt-stubs installed: an empty namespace.
    stub = types.ModuleType('tensorrt')
    stub.__path__ = [str(tmp_path / 'tensorrt')]
    monkeypatch.setitem(sys.modules, 'tensorrt', stub)
    with pytest.raises(ImportError) as error:
        import_tensorrt('x.engine')
    message = str(error.value)
    assert message.startswith('TensorRT is not installed') and 'has no Builder' in message
    assert 'too old' not in message


# ---------------------------------------------------------------------------------------------
# The graph TensorRT parses (checked with ONNX Runtime).


def value_types(model):
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types_ = {v.name: v.type.tensor_type.elem_type
              for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    types_.update({t.name: t.data_type for t in graph.initializer})
    return types_


def uint8_rule_violations(model):
    """Return Casts breaking TensorRT's rule: uint8 converts only to and from float/half."""
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
    types_ = value_types(model)
    bad = []
    for node in model.graph.node:
        if node.op_type != 'Cast':
            continue
        to = next(a.i for a in node.attribute if a.name == 'to')
        source = types_.get(node.input[0])
        if (to == TensorProto.UINT8 and source not in floats) or (
                source == TensorProto.UINT8 and to not in floats):
            bad.append(f'{node.input[0]} ({source}) -> {to}')
    return bad


def test_wrapped_graph_breaks_the_uint8_rule_and_the_tensorrt_graph_does_not(models):
    from liteseg_ros.inference.onnx_graph import wrap_pre_post

    plain = onnx.load(str(models['onnx']))
    config, _ = onnx_metadata(plain, models['onnx'])
    assert uint8_rule_violations(wrap_pre_post(plain, config['mean'], config['std']))
    model, _, io = tensorrt_onnx(models['onnx'])
    assert uint8_rule_violations(model) == []
    assert io['layout'] == 'nhwc_uint8' and io['output'] == 'labels'
    assert (io['height'], io['width'], io['batch']) == (128, 256, 1)
    (graph_input,) = model.graph.input
    assert graph_input.type.tensor_type.elem_type == TensorProto.UINT8


@pytest.mark.parametrize('output, confidence', [('labels', False), ('labels', True),
                                                ('logits', True)])
def test_tensorrt_graph_computes_what_the_onnxruntime_backend_computes(models, output,
                                                                       confidence):
    import onnxruntime as ort

    model, _, io = tensorrt_onnx(models['dynamic'], output, confidence)
    assert io['batch'] == 'dynamic' and uint8_rule_violations(model) == []
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    batch = frames(2)
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {io['input']: batch})))
    reference = OnnxRuntimeBackend(models['dynamic'])
    expected = reference.run(batch, output, confidence)
    if output == 'labels':
        np.testing.assert_array_equal(got['labels'], expected['labels'])
        assert got['labels'].dtype == np.uint8
    else:
        # Two ONNX Runtime float32 runs of the same network (equal when measured): allow one
        # network's rounding (tolerances.LOGIT_REL) should ONNX Runtime fuse them differently.
        assert_logits_close(got['logits'], expected['logits'], 'TensorRT graph vs backend')
    if confidence:
        scale = np.abs(reference.run(batch, 'logits')['logits']).max()
        assert_confidence_close(got['confidence'], expected['confidence'], scale,
                                'TensorRT graph vs backend')


def test_fused_export_is_used_as_exported_and_refuses_what_it_lacks(models):
    model, _, io = tensorrt_onnx(models['fused'])
    assert io['output'] == 'labels' and uint8_rule_violations(model) == []
    with pytest.raises(ModelFileError, match='exported with --fuse.*without --fuse'):
        tensorrt_onnx(models['fused'], 'logits')
    with pytest.raises(ModelFileError, match='labels\\+confidence needs an export'):
        tensorrt_onnx(models['fused'], 'labels', True)


# ---------------------------------------------------------------------------------------------
# Build / cache / load / run against a stand-in TensorRT (ONNX Runtime on host memory).


class FakeCuda:
    """Host memory standing in for the GPU: 'device pointers' are numpy array addresses."""

    def __init__(self, device=0):
        self.index = cuda_memory._device_index(device)
        self.stream_handle = 0
        self.api = 'fake'

    def activate(self):
        return contextlib.nullcontext()

    def properties(self):
        return 'Fake GPU', '8.6'

    def buffer(self, nbytes):
        device = np.zeros(nbytes, np.uint8)
        return HostDeviceBuffer(np.zeros(nbytes, np.uint8), device.ctypes.data, nbytes,
                                (device,))

    def upload(self, buffer, nbytes=None):
        nbytes = buffer.nbytes if nbytes is None else nbytes
        buffer._owners[0][:nbytes] = buffer.host[:nbytes]

    def download(self, buffer, nbytes=None):
        nbytes = buffer.nbytes if nbytes is None else nbytes
        buffer.host[:nbytes] = buffer._owners[0][:nbytes]

    def synchronize(self):
        pass

    def close(self):
        pass


def memory_at(pointer, nbytes):
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(pointer))


MAGIC = b'FAKE-TRT-ENGINE\n'


def network_precision(model):
    """Return what a strongly typed build of ``model`` runs in: 'int8', 'fp16' or 'fp32'."""
    ops = {node.op_type for node in model.graph.node}
    if 'QuantizeLinear' in ops:
        return 'int8'
    halves = [t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16]
    return 'fp16' if halves else 'fp32'


ONNX_TO_TRT = {TensorProto.FLOAT: 'float', TensorProto.FLOAT16: 'half',
               TensorProto.UINT8: 'uint8', TensorProto.INT64: 'int64',
               TensorProto.INT32: 'int32'}


def dims(value):
    """Return an ONNX value's shape as TensorRT sees it: -1 for a dynamic dimension."""
    return [d.dim_value if d.dim_value else -1 for d in value.type.tensor_type.shape.dim]


def profile_rule_violations(model, profiles):
    """
    Return how ``profiles`` [{input: {'min', 'opt', 'max'}}] break TensorRT's build rules.

    The rules of IOptimizationProfile.set_shape and IBuilderConfig.add_optimization_profile
    (tensorrt-stubs docstrings) that need the network: a network with a dynamic input needs at
    least one profile; every profile sets every dynamic input; each shape set has the input's
    rank and equals its fixed dimensions.
    """
    inputs = {value.name: dims(value) for value in model.graph.input}
    dynamic = [name for name, shape in inputs.items() if -1 in shape]
    if dynamic and not profiles:
        return [f'network has dynamic inputs {dynamic} but no optimization profile']
    broken = []
    for index, profile in enumerate(profiles):
        broken += [f'profile {index} lacks dynamic input {name}' for name in dynamic
                   if name not in profile]
        for name, shapes in profile.items():
            real = inputs.get(name)
            for key, shape in shapes.items():
                if real is not None and (len(shape) != len(real) or any(
                        r not in (-1, v) for r, v in zip(real, shape))):
                    broken.append(f'profile {index} {key} {shape} does not fit {name} {real}')
    return broken


def make_fake_tensorrt(version='10.9.0.34'):
    """
    Return a module with the slice of the TensorRT Python API the code uses.

    Only names that TensorRT 10.x and 11.x both have (the stubs' names, checked by
    test_the_stand_in_uses_only_names_of_the_published_api): no BuilderFlag, no calibrator,
    so a weakly typed build fails here as it fails on TensorRT 11.
    """
    import onnxruntime as ort

    trt = types.ModuleType('tensorrt')
    trt.__version__ = version
    trt.builds = []
    trt.DataType = types.SimpleNamespace(FLOAT='float', HALF='half', UINT8='uint8',
                                         INT64='int64', INT32='int32')
    trt.nptype = {'float': np.float32, 'half': np.float16, 'uint8': np.uint8,
                  'int64': np.int64, 'int32': np.int32}.__getitem__
    trt.TensorIOMode = types.SimpleNamespace(INPUT='input', OUTPUT='output')
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE='workspace')

    class Base:
        """Base of the interfaces Python code subclasses."""

        def __init__(self):
            pass

    trt.ILogger = trt.IProgressMonitor = Base

    class Network:
        """The network the parser fills: here, the parsed ONNX model."""

        model = None

        def __init__(self, flags):
            self.strongly_typed = bool(flags & (1 << trt.NetworkDefinitionCreationFlag.
                                                STRONGLY_TYPED))

    class Parser:
        """OnnxParser enforcing the UINT8 cast rule."""

        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse(self, data):
            model = onnx.load_from_string(data)
            self.errors = uint8_rule_violations(model)
            self.network.model = model
            return not self.errors

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return f'UINT8 cast not supported: {self.errors[i]}'

    class Profile:
        """IOptimizationProfile: set_shape checks what it can without the network."""

        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, low, opt, high):
            low, opt, high = list(low), list(opt), list(high)
            if not (len(low) == len(opt) == len(high) and all(
                    0 <= a <= b <= c for a, b, c in zip(low, opt, high))):
                raise ValueError(f'{name}: not 0 <= min <= opt <= max: {low} {opt} {high}')
            self.shapes[name] = {'min': low, 'opt': opt, 'max': high}

    class TimingCache:
        """ITimingCache."""

        def __init__(self, data):
            self.data = bytes(data) or b'fake timing cache'

        def serialize(self):
            return self.data

    class Config:
        """IBuilderConfig (TensorRT 11: no precision flags, no calibrator)."""

        def __init__(self):
            self.profiles = []
            self.progress_monitor = None

        def set_memory_pool_limit(self, pool, size):
            assert pool == 'workspace' and size > 0

        def add_optimization_profile(self, profile):
            if not profile.shapes:
                return -1
            self.profiles.append(profile.shapes)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing_cache = cache
            return True

    class Builder:
        """Builder: the serialized engine is a header and the ONNX model."""

        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            broken = profile_rule_violations(network.model, config.profiles)
            for message in broken:
                self.logger.log(1, message)
            if broken:
                return None
            graph_input = network.model.graph.input[0]
            shape = dims(graph_input)
            profile = config.profiles[0][graph_input.name] if config.profiles else {
                'min': shape, 'opt': shape, 'max': shape}
            monitor = config.progress_monitor
            monitor.phase_start('Building engine', None, 2)
            for step in range(2):
                assert monitor.step_complete('Building engine', step)
            monitor.phase_finish('Building engine')
            if not network.strongly_typed:  # TensorRT 11 has no other kind
                self.logger.log(1, 'weakly typed networks are not supported')
                return None
            trt.builds.append(network_precision(network.model))
            header = json.dumps({'profile': profile}).encode() + b'\n'
            return MAGIC + header + network.model.SerializeToString()

    class Context:
        """IExecutionContext: ONNX Runtime on the memory at the tensor addresses."""

        def __init__(self, engine):
            self.engine, self.addresses, self.shapes = engine, {}, {}

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = pointer

        def set_input_shape(self, name, shape):
            low, high = self.engine.profile['min'], self.engine.profile['max']
            if not all(a <= s <= b for a, s, b in zip(low, shape, high)):
                return False
            self.shapes[name] = list(shape)
            return True

        def execute_async_v3(self, stream_handle):
            engine = self.engine
            name = engine.names[0]
            shape = self.shapes.get(name) or engine.get_tensor_shape(name)
            image = memory_at(self.addresses[name], int(np.prod(shape))).reshape(shape)
            outputs = engine.session.run(None, {name: image.copy()})
            for output, value in zip(engine.names[1:], outputs):
                target = memory_at(self.addresses[output], value.nbytes)
                target[:] = value.reshape(-1).view(np.uint8)
            return True

    class Engine:
        """ICudaEngine with tensor names, modes, types and shapes of the ONNX graph."""

        def __init__(self, model, profile):
            self.model, self.profile = model, profile
            self.session = ort.InferenceSession(model.SerializeToString(),
                                                providers=['CPUExecutionProvider'])
            values = list(model.graph.input) + list(model.graph.output)
            self.names = [v.name for v in values]
            self.values = {v.name: v for v in values}
            self.num_io_tensors = len(values)

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return 'input' if name == self.names[0] else 'output'

        def get_tensor_dtype(self, name):
            return ONNX_TO_TRT[self.values[name].type.tensor_type.elem_type]

        def get_tensor_shape(self, name):
            return dims(self.values[name])

        def get_tensor_profile_shape(self, name, index):
            return self.profile['min'], self.profile['opt'], self.profile['max']

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        """Runtime: refuses bytes that are not a (whole) fake engine."""

        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            if not data.startswith(MAGIC):
                self.logger.log(1, 'Serialization assertion magicTagRead == kMAGIC_TAG failed')
                return None
            header, _, body = data[len(MAGIC):].partition(b'\n')
            try:
                return Engine(onnx.load_from_string(body), json.loads(header)['profile'])
            except Exception as exc:  # noqa: B902 - a truncated engine
                self.logger.log(1, f'engine truncated: {exc}')
                return None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    # The published class each stand-in plays (test_tensorrt_api compares their names).
    trt.stand_ins = {'Builder': Builder, 'IBuilderConfig': Config, 'INetworkDefinition': Network,
                     'IOptimizationProfile': Profile, 'ITimingCache': TimingCache,
                     'OnnxParser': Parser, 'Runtime': Runtime, 'ICudaEngine': Engine,
                     'IExecutionContext': Context}
    return trt


@pytest.fixture
def fake_trt(monkeypatch):
    trt = make_fake_tensorrt()
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    monkeypatch.setattr(runtime, '_LOGGER', None)
    monkeypatch.setattr(cuda_memory, 'CudaMemory', FakeCuda)
    return trt


def test_build_writes_engine_and_a_complete_sidecar(models, fake_trt, tmp_path):
    engine = tmp_path / 'out' / 't.engine'
    timing = tmp_path / 'timing.cache'
    assert build_engine(models['onnx'], engine, timing_cache=timing) == engine
    assert fake_trt.builds == ['fp32']
    info = read_sidecar(engine)
    assert info['config'] == read_sidecar(engine)['config']
    assert info['config']['input_size'] == SMALL
    assert info['io']['output'] == 'labels' and info['io']['layout'] == 'nhwc_uint8'
    assert info['input_shape'] == [1, 128, 256, 3]
    assert info['precision'] == 'fp32' and info['int8_scheme'] is None
    assert info['onnx_sha256'] == file_sha256(models['onnx'])
    assert (info['tensorrt_version'], info['gpu_name'], info['compute_capability']) == (
        '10.9.0.34', 'Fake GPU', '8.6')
    assert timing.read_bytes() == b'fake timing cache'
    assert not list(engine.parent.glob('.*.tmp'))  # atomic writes leave nothing behind


def test_engine_runs_like_onnxruntime_frame_by_frame_for_other_batches(models, fake_trt,
                                                                       tmp_path):
    engine = build_engine(models['onnx'], tmp_path / 't.engine', 'fp32')
    backend = load_backend(engine)
    assert isinstance(backend, TensorRTBackend)
    assert backend.batch_size == 1 and backend.input_size == tuple(SMALL)
    batch = frames(3)
    labels = backend.run(batch)['labels']
    expected = OnnxRuntimeBackend(models['onnx']).run(batch)['labels']
    np.testing.assert_array_equal(labels, expected)
    masks = Segmenter(backend)([street_image(256, 512, seed=5)])
    assert masks[0].mask.shape == (256, 512)
    with pytest.raises(ModelFileError, match='this engine outputs labels; logits needs an '
                                             'engine built for it: give the tensorrt backend '
                                             'the ONNX model'):
        backend.run(batch, 'logits')
    with pytest.raises(ValueError, match=r'expects uint8 batches of shape \(N, 128, 256, 3\)'):
        backend.run(batch[:, :64])


def test_dynamic_engine_runs_in_profile_sized_chunks(models, fake_trt, tmp_path):
    engine = build_engine(models['dynamic'], tmp_path / 'd.engine', batch=2)
    info = read_sidecar(engine)
    assert info['input_shape'] == [-1, 128, 256, 3]
    assert info['profile']['max'] == [2, 128, 256, 3]
    backend = TensorRTBackend(engine)
    assert backend.batch_size is None
    batch = frames(5, seed=3)
    np.testing.assert_array_equal(backend.run(batch)['labels'],
                                  OnnxRuntimeBackend(models['dynamic']).run(batch)['labels'])


def test_dynamic_export_built_for_batch_1_has_a_profile_and_runs(models, fake_trt, tmp_path):
    # One camera: a dynamic-batch export built for batch 1 (profile min == max) still has a
    # dynamic input, which TensorRT builds only with an optimisation profile.
    engine = build_engine(models['dynamic'], tmp_path / 'one.engine', batch=1)
    info = read_sidecar(engine)
    assert info['input_shape'] == [-1, 128, 256, 3]
    assert info['profile']['min'] == info['profile']['max'] == [1, 128, 256, 3]
    backend = TensorRTBackend(engine)
    assert backend.batch_size is None
    batch = frames(3, seed=11)
    np.testing.assert_array_equal(backend.run(batch)['labels'],
                                  OnnxRuntimeBackend(models['dynamic']).run(batch)['labels'])
    # The same through the cache, as the node loads a dynamic export for one camera.
    cached = TensorRTBackend(models['dynamic'], cache_dir=tmp_path / 'cache', batch=1)
    assert read_sidecar(cached.engine_path)['profile']['max'] == [1, 128, 256, 3]


def test_the_stand_in_refuses_the_profiles_tensorrt_refuses(models, fake_trt):
    logger = runtime.trt_logger()
    dynamic, _, _ = tensorrt_onnx(models['dynamic'])
    fixed, _, _ = tensorrt_onnx(models['onnx'])
    name = dynamic.graph.input[0].name
    one, four = [1, 128, 256, 3], [4, 128, 256, 3]

    def build(model, *shapes_by_input):
        builder = fake_trt.Builder(logger)
        network = builder.create_network(1 << 1)
        assert fake_trt.OnnxParser(network, logger).parse(model.SerializeToString())
        config = builder.create_builder_config()
        config.progress_monitor = trt_build._make_progress_monitor(False)
        for shapes in shapes_by_input:
            profile = builder.create_optimization_profile()
            for input_name, (low, opt, high) in shapes.items():
                profile.set_shape(input_name, low, opt, high)
            assert config.add_optimization_profile(profile) == len(config.profiles) - 1
        logger.take_errors()
        return builder.build_serialized_network(network, config)

    assert build(dynamic) is None
    assert 'dynamic inputs' in logger.take_errors()
    assert build(dynamic, {'other': (one, one, one)}) is None
    assert f'lacks dynamic input {name}' in logger.take_errors()
    low = [1, 64, 256, 3]  # not the network's height
    assert build(dynamic, {name: (low, low, low)}) is None
    assert 'does not fit' in logger.take_errors()
    assert build(dynamic, {name: (one, one, one)}) is not None
    assert build(dynamic, {name: (one, one, four)}) is not None
    assert build(fixed) is not None  # no dynamic input: a profile is optional
    assert build(fixed, {name: (one, one, one)}) is not None
    assert build(fixed, {name: (one, one, four)}) is None  # a fixed batch of 1, not 1..4
    with pytest.raises(ValueError, match='min <= opt <= max'):
        fake_trt.Builder(logger).create_optimization_profile().set_shape(name, four, one, four)
    empty = fake_trt.Builder(logger).create_optimization_profile()
    assert fake_trt.Builder(logger).create_builder_config().add_optimization_profile(empty) == -1


def test_onnx_model_builds_once_then_loads_from_the_cache(models, fake_trt, tmp_path):
    cache = tmp_path / 'cache'
    backend = TensorRTBackend(models['onnx'], cache_dir=cache)
    engines = list(cache.glob('*.engine'))
    assert len(engines) == 1 and engines[0] == backend.engine_path
    assert engines[0].name.startswith('t-fp32-labels-')
    assert len(list(cache.glob('timing-trt10.9.0.34-sm86.cache'))) == 1
    TensorRTBackend(models['onnx'], cache_dir=cache)
    assert len(fake_trt.builds) == 1
    # Another output (bilinear upsampling) builds that variant once, then reuses it.
    batch = frames(1)
    logits = backend.run(batch, 'logits', confidence=True)
    reference = OnnxRuntimeBackend(models['onnx']).run(batch, 'logits', True)
    # The stand-in engine runs ONNX Runtime too: one float32 network's rounding at most.
    assert_logits_close(logits['logits'], reference['logits'], 'stand-in engine vs backend')
    assert_confidence_close(logits['confidence'], reference['confidence'],
                            np.abs(reference['logits']).max(), 'stand-in engine vs backend')
    backend.run(batch, 'logits')
    assert len(fake_trt.builds) == 2 and len(list(cache.glob('*.engine'))) == 2
    # A new TensorRT gets its own engine.
    fake_trt.__version__ = '10.10.0.1'
    TensorRTBackend(models['onnx'], cache_dir=cache)
    assert len(fake_trt.builds) == 3 and len(list(cache.glob('*.engine'))) == 3


def test_cached_engine_rebuilds_when_its_sidecar_is_broken(models, fake_trt, tmp_path):
    engine = cached_engine(models['onnx'], tmp_path)
    assert cached_engine(models['onnx'], tmp_path, 'fp32') == engine
    engine_sidecar(engine).write_text('{')
    assert cached_engine(models['onnx'], tmp_path) == engine
    assert len(fake_trt.builds) == 2 and read_sidecar(engine)


def test_engine_for_another_platform_is_refused_before_deserialising(
        models, fake_trt, tmp_path):
    engine = build_engine(models['onnx'], tmp_path / 't.engine')
    fake_trt.__version__ = '10.3.0.26'
    with pytest.raises(ModelFileError) as error:
        load_backend(engine)
    message = str(error.value)
    assert "TensorRT version: engine built with '10.9.0.34', this machine has '10.3.0.26'" in (
        message)
    assert f'--engine {engine} --precision fp32' in message


def test_corrupt_and_truncated_engines_are_refused_naming_the_file(models, fake_trt, tmp_path):
    engine = build_engine(models['onnx'], tmp_path / 't.engine')
    data = engine.read_bytes()
    engine.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError, match=f'{engine}: the file does not match its '
                                             'description'):
        load_backend(engine)
    # Without the recorded sha256 the engine reaches TensorRT, whose refusal is reported.
    info = json.loads(engine_sidecar(engine).read_text())
    del info['engine_sha256']
    engine_sidecar(engine).write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match=f'{engine}: TensorRT .* cannot deserialise this '
                                             'engine .*engine truncated'):
        load_backend(engine)
    engine.write_bytes(b'\0' * 100)
    with pytest.raises(ModelFileError, match='magicTagRead.*corrupt or truncated'):
        load_backend(engine)
    with pytest.raises(ModelFileError, match='no such TensorRT engine file'):
        load_backend(tmp_path / 'missing.engine')


def test_fp16_and_int8_engines_come_from_the_onnx_types(reduced, fake_trt, tmp_path):
    for precision in ('fp16', 'int8'):
        engine = build_engine(reduced[precision], tmp_path / f'{precision}.engine')
        info = read_sidecar(engine)
        assert info['precision'] == precision
        assert info['int8_scheme'] == ('trt' if precision == 'int8' else None)
        backend = load_backend(engine)
        batch = frames(2, seed=7)
        # The stand-in runs the same ONNX in ONNX Runtime: the backend's labels exactly.
        np.testing.assert_array_equal(backend.run(batch)['labels'],
                                      OnnxRuntimeBackend(reduced[precision]).run(batch)['labels'])
    assert fake_trt.builds == ['fp16', 'int8']
    # The cache key and the file name carry the precision (and scheme) of the ONNX model.
    cached = cached_engine(reduced['int8'], tmp_path / 'cache')
    assert cached.name.startswith('t_int8_trt-int8-labels-')


def test_a_precision_the_onnx_model_lacks_is_an_error_not_a_fallback(models, reduced,
                                                                     fake_trt, tmp_path):
    with pytest.raises(ModelFileError, match='is a fp32 ONNX model .* for fp16 export one: '
                                             'python -m training.export .*--precision fp16'):
        build_engine(models['onnx'], tmp_path / 'a.engine', 'fp16')
    with pytest.raises(ModelFileError, match='--precision int8 --calibration SRC '
                                             '--int8-scheme trt'):
        TensorRTBackend(models['onnx'], cache_dir=tmp_path, precision='int8')
    with pytest.raises(ModelFileError, match="int8 scheme 'cpu-avx2' has zero points "
                                             'TensorRT does not take'):
        build_engine(reduced['int8_avx2'], tmp_path / 'b.engine')
    assert fake_trt.builds == [] and not list(tmp_path.glob('*.engine'))


def test_a_gpu_or_tensorrt_that_cannot_build_the_precision_is_named(reduced, fake_trt,
                                                                    tmp_path, monkeypatch):
    monkeypatch.setattr(FakeCuda, 'properties', lambda self: ('Tesla M40', '5.2'))
    with pytest.raises(RuntimeError, match=r'Tesla M40 \(compute capability 5.2\) cannot run '
                                           'fp16 engines .*--precision fp32'):
        build_engine(reduced['fp16'], tmp_path / 'a.engine')
    monkeypatch.setattr(FakeCuda, 'properties', lambda self: ('Fake GPU', '8.6'))
    del fake_trt.NetworkDefinitionCreationFlag
    with pytest.raises(RuntimeError, match='has no strongly typed networks'):
        build_engine(reduced['int8'], tmp_path / 'b.engine')
    assert not list(tmp_path.glob('*.engine'))


def test_parse_errors_name_the_onnx_file(models, fake_trt, tmp_path, monkeypatch):
    monkeypatch.setattr(trt_build, '_cast_uint8_through_float', lambda model: model)
    with pytest.raises(ModelFileError, match=f"{models['onnx']}: TensorRT 10.9.0.34 cannot "
                                             'parse this model: UINT8 cast not supported'):
        build_engine(models['onnx'], tmp_path / 't.engine')
    assert not (tmp_path / 't.engine').exists()


# ---------------------------------------------------------------------------------------------
# Real TensorRT on a CUDA GPU.


def real_tensorrt():
    trt = pytest.importorskip('tensorrt')
    torch = pytest.importorskip('torch')
    if not torch.cuda.is_available():
        pytest.skip('needs a CUDA GPU')
    return trt


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_fp16_engine_agrees_with_pytorch_fp32(models, reduced, tmp_path):
    real_tensorrt()
    backend = TensorRTBackend(reduced['fp16'], cache_dir=tmp_path, precision='fp16')
    reference = Segmenter(load_backend(models['checkpoint'], 'torch'))
    segmenter = Segmenter(backend)
    batch = [street_image(*SMALL, seed=i) for i in range(4)]
    got = np.stack([s.mask for s in segmenter(batch)])
    expected = np.stack([s.mask for s in reference(batch)])
    # fp16 has 8000x float32's epsilon (9.8e-4): pixels whose two best logits lie within a
    # few 1e-3 of the logit scale may flip; 0.5 % of the pixels allows for those.
    assert (got == expected).mean() >= 0.995
    assert TensorRTBackend(reduced['fp16'], cache_dir=tmp_path).engine_path == (
        backend.engine_path)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_engine_file_batches_and_corruption(models, tmp_path):
    real_tensorrt()
    engine = build_engine(models['dynamic'], tmp_path / 't.engine', 'fp32', batch=2)
    backend = load_backend(engine)
    batch = frames(3)
    labels = backend.run(batch)['labels']
    single = np.concatenate([backend.run(batch[i:i + 1])['labels'] for i in range(3)])
    np.testing.assert_array_equal(labels, single)
    expected = OnnxRuntimeBackend(models['dynamic']).run(batch)['labels']
    # TensorRT 'fp32' engines may use TF32 (fp16's 10-bit mantissa): near-ties as for fp16.
    assert (labels == expected).mean() >= 0.995
    data = engine.read_bytes()
    engine.write_bytes(data[:len(data) // 3])
    info = json.loads(engine_sidecar(engine).read_text())
    del info['engine_sha256']
    engine_sidecar(engine).write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match=f'{engine}: TensorRT .* cannot deserialise'):
        load_backend(engine)
