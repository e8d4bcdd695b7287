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
STDC backbones (STDC1, STDC2) as used by PP-LiteSeg.

Layout and numerics follow PaddleSeg's ``STDCNet``: two stride-2 ConvBNReLU stems, then stages
of CatBottleneck blocks; features at strides 8, 16 and 32 feed the decoder.
"""

import math

from liteseg_ros.model.layers import ConvBNAct
import torch
from torch import nn


class CatBottleneck(nn.Module):
    """
    STDC block: four convolutions of shrinking width whose outputs are concatenated.

    Branch 0 is a 1x1 conv to out/2; branches 1..3 are 3x3 convs to out/4, out/8, out/8. A
    stride-2 block downsamples branch 0 with a depthwise 3x3 conv (+BN, no ReLU) before
    branch 1, and its skip with average pooling that excludes the padding.
    """

    def __init__(self, in_channels, out_channels, num_branches=4, stride=1):
        """Build the block."""
        super().__init__()
        if num_branches < 2:
            raise ValueError('a CatBottleneck needs at least 2 branches')
        half = out_channels // 2
        self.stride = stride
        if stride == 2:
            self.downsample = ConvBNAct(half, half, 3, stride=2, groups=half, act=None)
            self.skip = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        branches = [ConvBNAct(in_channels, half, kernel_size=1)]
        for idx in range(1, num_branches):
            branch_in = out_channels // int(math.pow(2, idx))
            if idx == 1 and num_branches == 2:
                branch_out = half
            elif idx < num_branches - 1:
                branch_out = out_channels // int(math.pow(2, idx + 1))
            else:
                branch_out = branch_in
            branches.append(ConvBNAct(branch_in, branch_out, kernel_size=3))
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        """Concatenate the (downsampled) first branch with the chain of later branches."""
        first = self.branches[0](x)
        out = self.downsample(first) if self.stride == 2 else first
        outputs = [self.skip(first) if self.stride == 2 else first]
        for branch in self.branches[1:]:
            out = branch(out)
            outputs.append(out)
        return torch.cat(outputs, dim=1)


class STDCNet(nn.Module):
    """STDC backbone returning the stride 8, 16 and 32 feature maps."""

    def __init__(self, stage_depths, base_channels=64, num_branches=4):
        """Build the backbone; ``stage_depths`` is [2, 2, 2] for STDC1, [4, 5, 3] for STDC2."""
        super().__init__()
        features = [ConvBNAct(3, base_channels // 2, 3, stride=2),
                    ConvBNAct(base_channels // 2, base_channels, 3, stride=2)]
        in_channels = base_channels
        self.stage_ends = []
        for stage, depth in enumerate(stage_depths):
            out_channels = base_channels * 4 * 2 ** stage
            for block in range(depth):
                stride = 2 if block == 0 else 1
                features.append(CatBottleneck(in_channels, out_channels, num_branches, stride))
                in_channels = out_channels
            self.stage_ends.append(len(features))
        self.features = nn.Sequential(*features)
        self.out_channels = [base_channels * 4 * 2 ** s for s in range(len(stage_depths))]

    def forward(self, x):
        """Return [x8, x16, x32] features."""
        outputs = []
        for idx, layer in enumerate(self.features, start=1):
            x = layer(x)
            if idx in self.stage_ends:
                outputs.append(x)
        return outputs


def stdc1():
    """STDC1 (STDC813M), the backbone of PP-LiteSeg-T."""
    return STDCNet([2, 2, 2])


def stdc2():
    """STDC2 (STDC1446M), the backbone of PP-LiteSeg-B."""
    return STDCNet([4, 5, 3])
