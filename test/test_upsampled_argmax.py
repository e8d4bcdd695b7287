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
Class ids of upsampled logits found on the host, and the graph cut the ONNX backends run for them.

``upsampled_argmax`` and ``split_final_upsample``. The reference is the whole upsampling written
out in float64 (one interpolation matrix per axis, from the half-pixel rule) and NumPy's ArgMax
over every pixel, and ONNX Runtime's Resize and ArgMax on the same logits.
"""

from liteseg_ros.inference import load_backend
from liteseg_ros.inference.onnx_graph import LOGITS_OUTPUT, split_final_upsample
from liteseg_ros.inference.upsampled_argmax import upsampled_argmax
from liteseg_ros.sample_images import make_street_scene as street_image
import numpy as np
from onnx_models import onnx_model
import pytest

pytestmark = pytest.mark.lite


def interpolation_matrix(size, scale):
    """(size * scale, size) float64 weights of a bilinear, half-pixel upsampling of one axis."""
    out = np.arange(size * scale)
    source = np.clip((out + 0.5) / scale - 0.5, 0, size - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size - 1)
    matrix = np.zeros((len(out), size))
    np.add.at(matrix, (out, low), 1 - (source - low))
    np.add.at(matrix, (out, high), source - low)
    return matrix


def reference_labels(logits, scale):
    """Return the ArgMax (first on ties) of the float64 upsampling of (N, C, h, w) logits."""
    return upsampled(logits, scale).argmax(1).astype(np.uint8)


def upsampled(logits, scale):
    """Return the full float64 upsampling of (N, C, h, w) ``logits``."""
    _, _, h, w = logits.shape
    rows, cols = interpolation_matrix(h, scale[0]), interpolation_matrix(w, scale[1])
    return rows @ logits.astype(np.float64) @ cols.T


def street_like_logits(rng, batch, classes, h, w, grid=None):
    """Smooth logits with regions and boundaries; on a grid of 1/``grid`` (exact ties) if set."""
    logits = np.cumsum(rng.normal(size=(batch, classes, h, w)), axis=3)
    logits += np.cumsum(rng.normal(size=(batch, classes, h, 1)), axis=2)
    if grid:
        logits = np.round(logits * grid) / grid
    return logits.astype(np.float32)


def onnx_resize_argmax(logits, size):
    """Return ONNX Runtime's Resize (linear, half-pixel) of ``logits`` and its ArgMax."""
    from onnx import helper, numpy_helper, TensorProto
    import onnxruntime as ort

    n, c = logits.shape[:2]
    sizes = numpy_helper.from_array(np.array([n, c, *size], np.int64), 'sizes')
    graph = helper.make_graph(
        [helper.make_node('Resize', ['x', '', '', 'sizes'], ['up'], mode='linear',
                          coordinate_transformation_mode='half_pixel'),
         helper.make_node('ArgMax', ['up'], ['ids'], axis=1, keepdims=0)],
        'resize_argmax', [helper.make_tensor_value_info('x', TensorProto.FLOAT, logits.shape)],
        [helper.make_tensor_value_info('up', TensorProto.FLOAT, None),
         helper.make_tensor_value_info('ids', TensorProto.INT64, None)], [sizes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                              ir_version=8)  # opset 17's IR: every onnxruntime reads it
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    upsampled, ids = session.run(None, {'x': logits})
    return upsampled, ids.astype(np.uint8)


def assert_differences_are_ties(labels, expected, upsampled, relative=1e-6):
    """Where ``labels`` and ``expected`` differ, both classes' upsampled values must tie."""
    where = np.nonzero(labels != expected)
    ours = np.take_along_axis(upsampled, labels[:, None].astype(int), 1)[:, 0][where]
    theirs = np.take_along_axis(upsampled, expected[:, None].astype(int), 1)[:, 0][where]
    assert np.all(np.abs(ours - theirs) <= relative * np.maximum(1, np.abs(theirs))), (
        f'{len(ours)} pixels differ by more than rounding')
    return len(ours)


@pytest.mark.parametrize('classes, h, w, scale', [
    (11, 64, 128, (8, 8)),   # PP-LiteSeg at 512x1024, CamVid's classes
    (19, 9, 7, (4, 4)),
    (3, 1, 9, (2, 2)),       # one row: every cell clamps to it
    (5, 12, 10, (2, 6)),     # unequal factors; 6: weights not dyadic
    (1, 4, 4, (8, 8)),       # one class: every pixel is 0
])
@pytest.mark.parametrize('grid', [None, 4])
def test_equals_the_argmax_of_the_whole_upsampling(classes, h, w, scale, grid):
    logits = street_like_logits(np.random.default_rng(classes + h), 2, classes, h, w, grid)
    labels = upsampled_argmax(logits, scale)
    assert labels.shape == (2, h * scale[0], w * scale[1]) and labels.dtype == np.uint8
    expected = reference_labels(logits, scale)
    if grid and 6 not in scale:  # dyadic weights on a dyadic grid: both sides exact, ties too
        np.testing.assert_array_equal(labels, expected)
    else:
        assert_differences_are_ties(labels, expected, upsampled(logits, scale), relative=1e-12)


def test_ties_on_a_grid_go_to_the_first_class():
    # Class 1 equals class 0 at every corner: the upsampling ties everywhere, class 0 wins.
    logits = street_like_logits(np.random.default_rng(3), 1, 3, 6, 8, grid=4)
    logits[:, 1] = logits[:, 0]
    logits[:, 2] = logits[:, 0] - 1
    np.testing.assert_array_equal(upsampled_argmax(logits, (8, 8)), 0)
    # A class that wins no corner can win between them (second everywhere, first in the middle).
    corners = np.array([[[1.0, 0.0]], [[0.9, 0.9]], [[0.0, 1.0]]], np.float32)  # (C=3, 1, 2)
    labels = upsampled_argmax(corners[None], (2, 2))[0]
    np.testing.assert_array_equal(labels, reference_labels(corners[None], (2, 2))[0])
    assert set(np.unique(labels)) == {0, 1, 2}


def test_matches_onnx_runtime_resize_and_argmax_up_to_rounding():
    logits = street_like_logits(np.random.default_rng(7), 2, 19, 32, 64)
    upsampled, expected = onnx_resize_argmax(logits, (256, 512))
    labels = upsampled_argmax(logits, (8, 8))
    differing = assert_differences_are_ties(labels, expected, upsampled)
    assert differing <= 1e-5 * labels.size
    # On a grid many classes tie exactly; ONNX Runtime's float32 sums pick one by rounding.
    logits = street_like_logits(np.random.default_rng(8), 2, 11, 32, 64, grid=8)
    upsampled, expected = onnx_resize_argmax(logits, (256, 512))
    assert_differences_are_ties(upsampled_argmax(logits, (8, 8)), expected, upsampled)


@pytest.mark.parametrize('scale', [(8, 7), (3, 3), (1, 1), (8.5, 8), (0, 2)])
def test_other_factors_are_refused(scale):
    with pytest.raises(ValueError, match=r'even integer scale factors, got'):
        upsampled_argmax(np.zeros((1, 2, 4, 4), np.float32), scale)


def test_logits_of_the_wrong_rank_or_too_many_classes_are_refused():
    with pytest.raises(ValueError, match=r'expected logits \(N, 1 <= C <= 256, h, w\)'):
        upsampled_argmax(np.zeros((2, 4, 4), np.float32), (2, 2))
    with pytest.raises(ValueError, match=r'got shape \(1, 300, 2, 2\)'):
        upsampled_argmax(np.zeros((1, 300, 2, 2), np.float32), (2, 2))


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Return a seeded T at 128x256: plain fp32 (dynamic batch), fused, and int8 QDQ."""
    return {name: onnx_model(name, tmp_path_factory)
            for name in ('t_128x256', 't_fused', 't_int8')}


def test_the_cut_model_ends_in_the_low_resolution_logits(models):
    from liteseg_ros.inference.model_files import load_onnx

    model = load_onnx(models['t_128x256'])
    cut, scale = split_final_upsample(model)
    assert scale == (8, 8)
    (output,) = cut.graph.output
    assert output.name == LOGITS_OUTPUT
    assert [d.dim_value for d in output.type.tensor_type.shape.dim][1:] == [19, 16, 32]
    (producer,) = [n for n in cut.graph.node if LOGITS_OUTPUT in n.output]
    assert producer.op_type == 'Conv'  # the classifier

    def count(graph, op):
        return sum(node.op_type == op for node in graph.node)

    assert count(cut.graph, 'Resize') == count(model.graph, 'Resize') - 1
    # The final Resize's size computation went with it (PP-LiteSeg's Shape, Slice, Concat).
    assert count(cut.graph, 'Shape') < count(model.graph, 'Shape')
    assert split_final_upsample(load_onnx(models['t_fused'])) is None  # ends in an ArgMax
    # A Resize this path does not reproduce (nearest) keeps the in-graph path.
    (resize,) = [n for n in model.graph.node if LOGITS_OUTPUT in n.output]
    for attribute in resize.attribute:
        if attribute.name == 'mode':
            attribute.s = b'nearest'
    assert split_final_upsample(model) is None


@pytest.mark.parametrize('name', ['t_128x256', 't_int8'])
def test_backend_labels_are_the_argmax_of_its_upsampled_logits(models, name):
    """Labels from the cut graph equal the ArgMax of the full graph's logits, up to ties."""
    backend = load_backend(models[name], 'onnxruntime', device='cpu', threads=1)
    frames = np.stack([street_image(128, 256, seed) for seed in range(3)])
    labels = backend.run(frames, 'labels')['labels']
    assert backend.host_upsample()[1] == (8, 8) and labels.dtype == np.uint8
    logits = backend.run(frames, 'logits')['logits']
    assert_differences_are_ties(labels, logits.argmax(1).astype(np.uint8), logits)
    backend.upsample_on_host = False
    in_graph = backend.run(frames, 'labels')['labels']
    assert_differences_are_ties(labels, in_graph, logits)
    if name == 't_128x256':  # float logits: no exact ties, the same ids
        np.testing.assert_array_equal(labels, in_graph)
