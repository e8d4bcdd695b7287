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
Building blocks shared by the backbone and the decoder.

Every resize is bilinear with ``align_corners=False`` and every adaptive pooling is exact for any
input size, as in PaddleSeg, so converted weights give the same numbers.
"""

from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F


class BatchNorm2d(nn.BatchNorm2d):
    """
    BatchNorm2d whose running variance tracks the biased batch variance, as Paddle's does.

    torch folds the unbiased variance (n / (n - 1) larger) into ``running_var``; on small maps
    (SPPM's 1x1 bin: n = batch size) that differs by up to 2x. Normalisation itself is the same.
    """

    def forward(self, x):
        """Normalise ``x``; in training, fold the biased batch variance into running_var."""
        if not (self.training and self.track_running_stats) or self.momentum is None:
            return super().forward(x)
        previous = self.running_var.clone()
        out = super().forward(x)
        count = x.numel() // x.shape[1]
        with torch.no_grad():
            unbiased = (self.running_var - (1 - self.momentum) * previous) / self.momentum
            biased = unbiased * ((count - 1) / count)
            # Through .data: autograd saved running_var for backward and must not see a bump.
            self.running_var.data.copy_((1 - self.momentum) * previous + self.momentum * biased)
        return out


class ConvBNAct(nn.Sequential):
    """Conv2d, BatchNorm2d and an optional activation, with children named conv, bn, act."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1, bias=False,
                 act='relu'):
        """Build the block; ``act`` is 'relu', 'leaky_relu' or None."""
        layers = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                           padding=kernel_size // 2, groups=groups, bias=bias),
            bn=BatchNorm2d(out_channels, eps=1e-5, momentum=0.1))
        if act == 'relu':
            layers['act'] = nn.ReLU(inplace=True)
        elif act == 'leaky_relu':
            layers['act'] = nn.LeakyReLU(0.01, inplace=True)
        elif act is not None:
            raise ValueError(f"unknown activation {act!r}: expected 'relu', 'leaky_relu' or None")
        super().__init__(layers)


def resize(x, size):
    """Resize NCHW ``x`` to ``size`` (H, W), bilinear, align_corners=False."""
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def _bin_edges(length, bins):
    # Same edges as PaddleSeg and torch: floor(i*L/n) to ceil((i+1)*L/n).
    return [((i * length) // bins, -((-(i + 1) * length) // bins)) for i in range(bins)]


def adaptive_avg_pool2d(x, bins):
    """
    Adaptive average pooling to ``bins`` x ``bins``, exact and ONNX-exportable for any size.

    When the map divides evenly this is the framework's own op (a plain average pooling in
    ONNX); otherwise each bin is the mean of its own slice, which exports as static slices and
    means instead of the wrong fixed-kernel rewrite exporters fall back to.
    """
    height, width = int(x.shape[-2]), int(x.shape[-1])
    if height % bins == 0 and width % bins == 0:
        return F.adaptive_avg_pool2d(x, bins)
    rows = []
    for top, bottom in _bin_edges(height, bins):
        band = x[..., top:bottom, :]
        rows.append(torch.cat([band[..., left:right].mean(dim=(-2, -1), keepdim=True)
                               for left, right in _bin_edges(width, bins)], dim=-1))
    return torch.cat(rows, dim=-2)
