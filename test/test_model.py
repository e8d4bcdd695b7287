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

"""PP-LiteSeg structure: sizes, parameter counts, exact pooling, ONNX export."""

from liteseg_ros.model import build_model, pp_liteseg_b, pp_liteseg_t
from liteseg_ros.model.layers import adaptive_avg_pool2d
from liteseg_ros.model.pp_liteseg import PPLiteSeg
from liteseg_ros.model.stdc import stdc1
import pytest
from tolerances import assert_logits_close, float64_logits
import torch
import torch.nn.functional as F


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv_multiply_adds(model, height, width):
    """Count convolution multiply-adds of one forward pass with hooks."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * module.in_channels // module.groups * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, 3, height, width))
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize('factory, expected', [(pp_liteseg_t, 8_141_600),
                                               (pp_liteseg_b, 12_366_464)])
def test_trainable_parameters_equal_paddleseg(factory, expected):
    assert trainable(factory(19)) == expected


@pytest.mark.parametrize('variant, giga', [('t', 11.47), ('b', 19.29)])
def test_convolution_cost_matches_paper_at_512x1024(variant, giga):
    # PaddleSeg's published multiply-adds count convolutions; 2 % allows for the rounding of
    # the published figures and the few element-wise ops it may add.
    macs = conv_multiply_adds(build_model(variant, 19), 512, 1024) / 1e9
    assert macs == pytest.approx(giga, rel=0.02)


def test_eval_returns_logits_at_input_size_train_returns_three_heads():
    model = pp_liteseg_t(11)
    x = torch.randn(2, 3, 96, 160)
    model.train()
    heads = model(x)
    assert len(heads) == 3 and all(h.shape == (2, 11, 96, 160) for h in heads)
    model.eval()
    with torch.inference_mode():
        logits = model(x)
    assert logits.shape == (2, 11, 96, 160)


def test_train_mode_backward_updates_running_variance_like_paddle():
    model = pp_liteseg_t(3).train()
    bn = model.decoder.sppm.stages[0].bn  # 1x1 pooled map: n = batch size
    x = torch.randn(4, 3, 64, 64)
    sum(head.mean() for head in model(x)).backward()
    assert model.backbone.features[0].conv.weight.grad is not None
    # Re-run the same batch to read the batch variance that was folded in.
    with torch.no_grad():
        pooled = model.backbone(x)[-1].mean(dim=(2, 3), keepdim=True)
        features = model.decoder.sppm.stages[0].conv(pooled)
    biased = features.var(dim=(0, 2, 3), unbiased=False)
    expected = 0.9 * 1.0 + 0.1 * biased  # running_var starts at 1
    # The same float32 features reduced again, maybe in another order: ~1e-7 relative; an
    # unbiased variance would make the batch term 4/3 as large.
    assert torch.allclose(bn.running_var, expected, rtol=1e-4, atol=1e-6)


def test_eval_output_is_the_first_head_in_eval_batchnorm():
    model = pp_liteseg_t(5).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        eval_logits = model(x)
        model.train()
        for m in model.modules():  # keep BN in eval so both passes use the same statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        heads = model(x)
    assert torch.equal(eval_logits, heads[0])


@pytest.mark.parametrize('height, width', [(23, 30), (16, 32), (45, 60), (7, 9), (1, 1), (3, 5)])
@pytest.mark.parametrize('bins', [1, 2, 4, 3])
def test_adaptive_pooling_is_exact(height, width, bins):
    x = torch.randn(2, 4, height, width, dtype=torch.float64)
    # float64 means of the same <= 23x30 values in another order: round-off ~1e-15.
    assert torch.allclose(adaptive_avg_pool2d(x, bins), F.adaptive_avg_pool2d(x, bins),
                          atol=1e-12)


def test_channel_attention_variant_builds_and_runs():
    model = PPLiteSeg(stdc1(), 4, fusion_channels=(32, 64, 128), head_channels=(32, 64, 64),
                      attention='channel').eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4, 64, 64)


def test_unknown_attention_is_refused():
    with pytest.raises(ValueError, match='unknown attention'):
        PPLiteSeg(stdc1(), 4, (32, 64, 128), (32, 64, 64), attention='temporal')


def test_onnx_export_at_720x960_matches_torch(tmp_path):
    ort = pytest.importorskip('onnxruntime')
    model = build_model('t', 11, dataset='camvid').eval()
    for m in model.modules():  # non-trivial BN statistics so a wrong pooling shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 720, 960)
    path = tmp_path / 'model.onnx'
    torch.onnx.export(model, (x,), str(path), input_names=['image'], output_names=['logits'],
                      opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (onnx_logits,) = session.run(None, {'image': x.numpy()})
    with torch.inference_mode():
        torch_logits = model(x).numpy()
    # Each float32 run against the model in float64, relative to the logit scale
    # (tolerances.LOGIT_REL); align_corners=True in SPPM's resize moves them by 0.2 of it.
    exact = float64_logits(model, x)
    assert_logits_close(onnx_logits, exact, 'ONNX Runtime float32 vs PyTorch float64')
    assert_logits_close(torch_logits, exact, 'PyTorch float32 vs PyTorch float64')
