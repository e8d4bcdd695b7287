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
ONNX models for tests, made with torch where it is installed and read from disk elsewhere.

The torch-free runs (Python 3.10/3.12, ``-m lite``) get the same models exported by the 3.11
venv: ``test/make_test_models.py DIR`` writes them and ``make test`` points
``LITESEG_TEST_MODELS`` at DIR. A model that should be there and is not fails the test.
"""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

#: name -> (checkpoint options, export options); seeded weights, so logits are O(10).
MODELS = {
    't_128x256': ({'variant': 't', 'input_size': [128, 256]}, {'dynamic_batch': True}),
    't_fused': ({'variant': 't', 'input_size': [128, 256]}, {'fuse': True}),
    't_batch3': ({'variant': 't', 'input_size': [128, 256]}, {'batch': 3}),
    # int8 QDQ (cpu-avx2), calibrated on generated scenes; seeded weights tie often, so the
    # export's gate is lowered (trained-model figures: benchmarks/int8_cpu.py).
    't_int8': ({'variant': 't', 'input_size': [128, 256]},
               {'precision': 'int8', 'scheme': 'cpu-avx2', 'min_agreement': 0.5,
                'calibration_scenes': 8}),
}


def export_model(name, directory):
    """Export ``MODELS[name]`` (needs torch) as ``directory/name.onnx`` and return its path."""
    from model_fixtures import make_checkpoint
    from training.export import export_onnx

    checkpoint_options, export_options = MODELS[name]
    export_options = dict(export_options)
    scenes = export_options.pop('calibration_scenes', 0)
    if scenes:
        from liteseg_ros.sample_images import make_street_scene

        height, width = checkpoint_options['input_size']
        export_options['frames'] = np.stack([make_street_scene(height, width, seed=100 + i)
                                             for i in range(scenes)])
        export_options['log'] = lambda *args: None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(directory / f'{name}.pt', **checkpoint_options)
    onnx_path = directory / f'{name}.onnx'
    export_onnx(checkpoint, onnx_path, **export_options)
    return onnx_path


def onnx_model(name, tmp_path_factory):
    """
    Return the path of test model ``name``: exported once per session with torch, else the copy.

    With torch the model lands in the session's base temporary directory, shared by every test
    module (the same seeded weights: one export, one file on disk). Without torch it comes from
    ``$LITESEG_TEST_MODELS``; without either the test skips.
    """
    if importlib.util.find_spec('torch') is not None:
        directory = tmp_path_factory.getbasetemp() / 'onnx_models'
        path = directory / f'{name}.onnx'
        # The export writes atomically: a file that is there is whole.
        return path if path.is_file() else export_model(name, directory)
    prebuilt = os.environ.get('LITESEG_TEST_MODELS')
    if not prebuilt:
        pytest.skip(f'test model {name!r} needs torch to export it, or LITESEG_TEST_MODELS '
                    '(made by test/make_test_models.py)')
    path = Path(prebuilt) / f'{name}.onnx'
    if not path.is_file():
        pytest.fail(f'{path} is missing: run test/make_test_models.py {prebuilt} with torch')
    return path
