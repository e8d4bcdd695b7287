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

"""PaddleSeg weight conversion without Paddle: key mapping, refusals, safe unpickling."""

import os
from pathlib import Path
import pickle
import subprocess
import sys

from liteseg_ros.model import build_model, load_model
import numpy as np
import pytest
import torch
from training.convert_paddle import ConversionError, convert_backbone, convert_model, read_pdparams

DATA = Path(__file__).parent / 'data'
REPO = Path(__file__).resolve().parents[1]


def paddle_reference_keys(variant):
    """Return PaddleSeg's {name: shape} for a 19-class PP-LiteSeg (recorded from PaddleSeg 2.8)."""
    lines = (DATA / f'paddleseg_pp_liteseg_{variant}_cityscapes_state_dict.tsv').read_text()
    return {name: tuple(int(d) for d in shape.strip('[]').split(','))
            for name, shape in (line.split('\t') for line in lines.splitlines())}


def write_pdparams(path, arrays):
    """Write arrays the way paddle.save does: a protocol-4 pickle of a dict of ndarrays."""
    payload = dict(arrays)
    payload['StructuredToParameterName@@'] = {k: f'param_{i}' for i, k in enumerate(arrays)}
    with open(path, 'wb') as f:
        pickle.dump(payload, f, protocol=4)


def random_paddle_weights(variant, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32)
            for name, shape in paddle_reference_keys(variant).items()}


@pytest.mark.parametrize('variant', ['t', 'b'])
def test_every_paddleseg_key_lands_on_the_right_tensor(tmp_path, variant):
    weights = random_paddle_weights(variant)
    src = tmp_path / 'model.pdparams'
    write_pdparams(src, weights)
    model = convert_model(src, tmp_path / 'model.pt', variant, 19, 'cityscapes')
    state = model.state_dict()
    spots = {
        'backbone.features.0.conv.weight': 'backbone.features.0.conv.weight',
        'backbone.features.2.avd_layer.1._variance':
            'backbone.features.2.downsample.bn.running_var',
        'backbone.features.3.conv_list.3.bn._mean':
            'backbone.features.3.branches.3.bn.running_mean',
        'ppseg_head.cm.stages.2.1._conv.bias': 'decoder.sppm.stages.2.conv.bias',
        'ppseg_head.cm.conv_out._batch_norm.weight': 'decoder.sppm.conv_out.bn.weight',
        'ppseg_head.arm_list.1._scale': 'decoder.fusions.1.scale',
        'ppseg_head.arm_list.0.conv_xy_atten.1._conv.weight':
            'decoder.fusions.0.attention.1.conv.weight',
        'ppseg_head.arm_list.2.conv_x._batch_norm.bias': 'decoder.fusions.2.conv_x.bn.bias',
        'seg_heads.2.conv_out.weight': 'seg_heads.2.classifier.weight',
    }
    for paddle_name, ours in spots.items():
        assert np.array_equal(state[ours].numpy(), weights[paddle_name]), paddle_name
    # Every source array is used exactly once: the sums of all values agree (float64 sums of
    # the same float32 values in another order: round-off ~1e-13 relative).
    total_ours = sum(v.double().sum().item() for k, v in state.items()
                     if not k.endswith('num_batches_tracked'))
    assert total_ours == pytest.approx(sum(float(a.sum(dtype=np.float64))
                                           for a in weights.values()), rel=1e-9)
    assert model.config['class_names'][-1] == 'bicycle'


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path):
    weights = random_paddle_weights('t')
    del weights['seg_heads.1.conv._batch_norm._mean']
    weights['ppseg_head.extra.weight'] = np.zeros(3, np.float32)
    weights['ppseg_head.arm_list.0.conv_x._conv.weight'] = np.zeros((64, 255, 3, 3), np.float32)
    src = tmp_path / 'broken.pdparams'
    write_pdparams(src, weights)
    with pytest.raises(ConversionError) as err:
        convert_model(src, tmp_path / 'out.pt', 't', 19)
    message = str(err.value)
    assert 'seg_heads.1.conv.bn.running_mean' in message
    assert 'ppseg_head.extra.weight' in message
    assert 'ppseg_head.arm_list.0.conv_x._conv.weight [64, 255, 3, 3]' in message
    assert not (tmp_path / 'out.pt').exists()


def test_wrong_num_classes_is_named(tmp_path):
    src = tmp_path / 'city.pdparams'
    write_pdparams(src, random_paddle_weights('t'))
    with pytest.raises(ConversionError, match=r'seg_heads.0.conv_out.weight \[19, 32, 1, 1\] -> '
                                              r'seg_heads.0.classifier.weight \[11, 32, 1, 1\]'):
        convert_model(src, tmp_path / 'out.pt', 't', 11)


class _Exploit:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_malicious_pdparams_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / 'pwned'
    src = tmp_path / 'evil.pdparams'
    weights = random_paddle_weights('t')
    weights['backbone.features.0.conv.weight'] = _Exploit(marker)
    with open(src, 'wb') as f:
        pickle.dump(weights, f, protocol=4)
    assert b'system' in src.read_bytes()
    with pytest.raises(ConversionError, match=r'refusing to load global (posix|os)\.system'):
        read_pdparams(src)
    result = subprocess.run(
        [sys.executable, '-m', 'training.convert_paddle', str(src), str(tmp_path / 'out.pt'),
         '--variant', 't', '--num-classes', '19'], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert 'evil.pdparams: refusing to load global' in result.stderr
    assert not marker.exists()
    assert not (tmp_path / 'out.pt').exists()


def test_truncated_pdparams_is_refused(tmp_path):
    src = tmp_path / 'cut.pdparams'
    write_pdparams(src, random_paddle_weights('t'))
    src.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(ConversionError, match='cut.pdparams: not a readable .pdparams'):
        read_pdparams(src)


def test_cli_writes_a_loadable_checkpoint(tmp_path):
    src = tmp_path / 'camvid.pdparams'
    weights = random_paddle_weights('b')
    for i in range(3):
        key = f'seg_heads.{i}.conv_out.weight'
        weights[key] = weights[key][:11]
    write_pdparams(src, weights)
    out = tmp_path / 'camvid_b.pt'
    result = subprocess.run(
        [sys.executable, '-m', 'training.convert_paddle', str(src), str(out), '--variant', 'b',
         '--num-classes', '11', '--dataset', 'camvid'], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # 8 fewer classes drop 8 x (64 + 64 + 64) classifier weights.
    assert f'{12_366_464 - 8 * 192:,} trainable parameters' in result.stdout
    model = load_model(out, variant='b', num_classes=11)
    assert model.config['class_names'][0] == 'Sky'


def _stdc_backbone_keys(variant, paddle_names=True):
    keys = {k[len('backbone.'):]: s for k, s in paddle_reference_keys(variant).items()
            if k.startswith('backbone.')}
    if not paddle_names:  # STDC-Seg's torch checkpoints use torch BN names
        keys = {k.replace('._mean', '.running_mean').replace('._variance', '.running_var'): s
                for k, s in keys.items()}
    # ImageNet classifier layers, dropped by the conversion.
    keys.update({'conv_last.conv.weight': (1024, 1024, 1, 1), 'fc.weight': (1024, 1024),
                 'bn.weight': (1024,), 'linear.weight': (1000, 1024)})
    return keys


def test_backbone_from_paddle_pdparams(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {k: rng.standard_normal(s).astype(np.float32)
              for k, s in _stdc_backbone_keys('t').items()}
    src = tmp_path / 'PP_STDCNet1.pdparams'
    write_pdparams(src, arrays)
    backbone = convert_backbone(src, tmp_path / 'stdc1.pt', 't')
    assert np.array_equal(backbone['features.4.downsample.bn.running_mean'].numpy(),
                          arrays['features.4.avd_layer.1._mean'])
    saved = torch.load(tmp_path / 'stdc1.pt', weights_only=True)
    build_model('t', 19).backbone.load_state_dict(saved['backbone'])


def test_backbone_from_stdcseg_torch_checkpoint(tmp_path):
    model_keys = build_model('b', 2).backbone.state_dict()
    arrays = {k: torch.randn(s) for k, s in _stdc_backbone_keys('b', False).items()}
    arrays.update({k.replace('.running_var', '.num_batches_tracked'): torch.tensor(5)
                   for k in list(arrays) if k.endswith('running_var')})
    src = tmp_path / 'STDCNet1446_76.47.tar'
    torch.save({'state_dict': {'module.' + k: v for k, v in arrays.items()}}, src)
    backbone = convert_backbone(src, tmp_path / 'stdc2.pt', 'b')
    assert set(backbone) == set(model_keys)
    assert torch.equal(backbone['features.13.branches.3.conv.weight'],
                       arrays['features.13.conv_list.3.conv.weight'])
