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
PP-LiteSeg (arXiv 2204.02681): STDC backbone, SPPM, UAFM fusion, flexible decoder, seg heads.

Structure, channel widths and numerics equal PaddleSeg 2.8's ``PPLiteSeg``, so its released
weights convert one to one (see ``training.convert_paddle``).
"""

from liteseg_ros.model.layers import adaptive_avg_pool2d, ConvBNAct, resize
from liteseg_ros.model.stdc import stdc1, stdc2
import torch
from torch import nn


class SPPM(nn.Module):
    """Simple pyramid pooling module: pooled context at a few bin sizes, summed, then fused."""

    def __init__(self, in_channels, mid_channels, out_channels, bin_sizes=(1, 2, 4)):
        """Build one 1x1 ConvBNReLU (with bias, as PaddleSeg) per bin size."""
        super().__init__()
        self.bin_sizes = tuple(bin_sizes)
        self.stages = nn.ModuleList(
            ConvBNAct(in_channels, mid_channels, kernel_size=1, bias=True) for _ in bin_sizes)
        self.conv_out = ConvBNAct(mid_channels, out_channels, kernel_size=3, bias=True)

    def forward(self, x):
        """Return the context feature at the input's resolution."""
        size = x.shape[-2:]
        out = None
        for bins, stage in zip(self.bin_sizes, self.stages):
            pooled = resize(stage(adaptive_avg_pool2d(x, bins)), size)
            out = pooled if out is None else out + pooled
        return self.conv_out(out)


class UAFM(nn.Module):
    """
    Unified attention fusion: out = conv(x * a + up(y) * (s - a)), a from an attention branch.

    ``x`` is the low-level feature (projected to the high-level width), ``y`` the high-level one.
    ``scale`` (s) is a frozen parameter equal to 1, kept in the state dict as PaddleSeg does.
    """

    def __init__(self, low_channels, high_channels, out_channels, kernel_size=3):
        """Build the projection and output convs shared by both attention variants."""
        super().__init__()
        self.conv_x = ConvBNAct(low_channels, high_channels, kernel_size=kernel_size)
        self.conv_out = ConvBNAct(high_channels, out_channels, kernel_size=3)
        self.scale = nn.Parameter(torch.ones(1), requires_grad=False)

    def attention_input(self, x, y):
        """Return the tensor the attention branch reads."""
        raise NotImplementedError

    def forward(self, low, high):
        """Fuse the low-level feature with the upsampled high-level one."""
        x = self.conv_x(low)
        y = resize(high, x.shape[-2:])
        weight = torch.sigmoid(self.attention(self.attention_input(x, y)))
        return self.conv_out(x * weight + y * (self.scale - weight))


class SpatialUAFM(UAFM):
    """UAFM with spatial attention from channel-wise mean and max of both inputs."""

    def __init__(self, low_channels, high_channels, out_channels, kernel_size=3):
        """Build the 4 -> 2 -> 1 channel 3x3 attention branch."""
        super().__init__(low_channels, high_channels, out_channels, kernel_size)
        self.attention = nn.Sequential(ConvBNAct(4, 2, kernel_size=3),
                                       ConvBNAct(2, 1, kernel_size=3, act=None))

    def attention_input(self, x, y):
        """Stack [mean_c x, max_c x, mean_c y, max_c y]."""
        return torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True),
                          y.mean(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)], dim=1)


class ChannelUAFM(UAFM):
    """UAFM with channel attention from spatial mean and max of both inputs."""

    def __init__(self, low_channels, high_channels, out_channels, kernel_size=3):
        """Build the 4C -> C/2 -> C 1x1 attention branch (LeakyReLU between, as PaddleSeg)."""
        super().__init__(low_channels, high_channels, out_channels, kernel_size)
        self.attention = nn.Sequential(
            ConvBNAct(4 * high_channels, high_channels // 2, kernel_size=1, act='leaky_relu'),
            ConvBNAct(high_channels // 2, high_channels, kernel_size=1, act=None))

    def attention_input(self, x, y):
        """Stack [avg_hw x, max_hw x, avg_hw y, max_hw y]."""
        return torch.cat([x.mean(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True),
                          y.mean(dim=(2, 3), keepdim=True), y.amax(dim=(2, 3), keepdim=True)],
                         dim=1)


FUSIONS = {'spatial': SpatialUAFM, 'channel': ChannelUAFM}


class FLDDecoder(nn.Module):
    """Flexible and lightweight decoder: SPPM on x32, then UAFMs from x32 down to x8."""

    def __init__(self, in_channels, fusion_channels, context_channels=128, bin_sizes=(1, 2, 4),
                 attention='spatial'):
        """Build the decoder; ``in_channels`` and ``fusion_channels`` are ordered x8, x16, x32."""
        super().__init__()
        if attention not in FUSIONS:
            raise ValueError(f'unknown attention {attention!r}: expected one of {sorted(FUSIONS)}')
        self.sppm = SPPM(in_channels[-1], context_channels, context_channels, bin_sizes)
        high_channels = list(fusion_channels[1:]) + [context_channels]
        self.fusions = nn.ModuleList(
            FUSIONS[attention](low, high, out)
            for low, high, out in zip(in_channels, high_channels, fusion_channels))

    def forward(self, features):
        """Return fused features ordered x8, x16, x32."""
        high = self.sppm(features[-1])
        outputs = []
        for low, fusion in zip(reversed(features), reversed(self.fusions)):
            high = fusion(low, high)
            outputs.insert(0, high)
        return outputs


class SegHead(nn.Module):
    """3x3 ConvBNReLU then a 1x1 classifier, both without bias."""

    def __init__(self, in_channels, mid_channels, num_classes):
        """Build the head."""
        super().__init__()
        self.conv = ConvBNAct(in_channels, mid_channels, kernel_size=3)
        self.classifier = nn.Conv2d(mid_channels, num_classes, kernel_size=1, bias=False)

    def forward(self, x):
        """Return logits at the feature's resolution."""
        return self.classifier(self.conv(x))


class PPLiteSeg(nn.Module):
    """PP-LiteSeg: logits at input size; eval returns the x8 head, train the list of 3 heads."""

    def __init__(self, backbone, num_classes, fusion_channels, head_channels,
                 context_channels=128, bin_sizes=(1, 2, 4), attention='spatial'):
        """Build the network around ``backbone`` (an STDCNet)."""
        super().__init__()
        self.backbone = backbone
        self.decoder = FLDDecoder(backbone.out_channels, fusion_channels, context_channels,
                                  bin_sizes, attention)
        self.seg_heads = nn.ModuleList(
            SegHead(in_ch, mid_ch, num_classes)
            for in_ch, mid_ch in zip(fusion_channels, head_channels))
        self.num_classes = num_classes

    def forward(self, x):
        """Map a normalised NCHW image batch to logits (N, classes, H, W)."""
        size = x.shape[-2:]
        features = self.decoder(self.backbone(x))
        if not self.training:
            return resize(self.seg_heads[0](features[0]), size)
        return [resize(head(feature), size) for head, feature in zip(self.seg_heads, features)]


def pp_liteseg_t(num_classes=19, **kwargs):
    """PP-LiteSeg-T: STDC1 backbone, fusion widths 32/64/128, head widths 32/64/64."""
    return PPLiteSeg(stdc1(), num_classes, fusion_channels=(32, 64, 128),
                     head_channels=(32, 64, 64), **kwargs)


def pp_liteseg_b(num_classes=19, **kwargs):
    """PP-LiteSeg-B: STDC2 backbone, fusion widths 64/96/128, head widths 64/64/64."""
    return PPLiteSeg(stdc2(), num_classes, fusion_channels=(64, 96, 128),
                     head_channels=(64, 64, 64), **kwargs)


VARIANTS = {'t': pp_liteseg_t, 'b': pp_liteseg_b}


@torch.no_grad()
def init_like_paddleseg(model, generator=None):
    """
    Re-initialise ``model`` in place as PaddleSeg 2.8 initialises a new PPLiteSeg.

    STDCNet.init_weight draws every backbone conv from N(0, 0.001) and sets BatchNorm to
    weight 1, bias 0; every other conv keeps paddle's Conv2D default, Kaiming normal
    N(0, 2 / (k*k*in_channels)) with zero bias. Training from scratch starts from there, as
    PaddleSeg's trainer does; PyTorch's defaults (Kaiming uniform, a=sqrt(5)) train differently.
    """
    backbone = set(model.backbone.modules())
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if module in backbone:
                std = 0.001
            else:
                # paddle counts in_channels, not in_channels / groups
                std = (2.0 / (module.kernel_size[0] * module.kernel_size[1]
                              * module.in_channels)) ** 0.5
            module.weight.normal_(0.0, std, generator=generator)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.fill_(1.0)
            module.bias.zero_()
    return model
