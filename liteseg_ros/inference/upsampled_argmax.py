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
The class ids of bilinearly upsampled logits, computed only where the upsampling can change them.

PP-LiteSeg ends in a bilinear upsampling of its 1/8-scale logits (half-pixel centres, as
``F.interpolate(align_corners=False)`` and ONNX ``Resize`` linear) followed by the ArgMax. Every
output pixel is a weighted mean of the 2x2 low-resolution pixels around it, so where class c is
the ArgMax at all four (the first of the tied, as ONNX's ArgMax) it is the ArgMax at every pixel
between them: ``x_c >= x_k`` at each corner (``>`` for k < c) holds for any mean with positive
weights. Only the cells whose four corners disagree (the class boundaries, about a tenth of a
street scene) are interpolated and compared; the rest are filled.

The boundary cells are computed in float64. With power-of-two factors (PP-LiteSeg's 8) the
weights have at most a few significant bits, so every product of a float32 logit and a weight is
exact and so are the sums (unless two corners differ in magnitude by more than about 2^25): the
result is the ArgMax of the exact upsampling, ties included. A float32 Resize rounds, and on
int8 models, whose logits lie on a grid, exact ties between two classes are common: there it
picks either class, depending on the order of its sums (ONNX Runtime and OpenVINO differ).

At 512x1024 with 11 or 19 classes this replaces a Resize of every class plane at full
resolution and an ArgMax over them (17 to 40 ms on two CPU cores) with a few milliseconds.
"""

import numpy as np


def upsampled_argmax(logits, scale):
    """
    Return uint8 class ids (N, h*sy, w*sx) of float ``logits`` (N, C, h, w) upsampled by ``scale``.

    ``scale`` (sy, sx): even integer factors of a bilinear, half-pixel upsampling.

    :raises ValueError: a scale that is not a pair of even integers, or more than 256 classes.
    """
    sy, sx = (int(s) for s in scale)
    if sy != scale[0] or sx != scale[1] or sy < 2 or sx < 2 or sy % 2 or sx % 2:
        raise ValueError(f'upsampled_argmax needs even integer scale factors, got {scale}')
    if logits.ndim != 4 or not 0 < logits.shape[1] <= 256:
        raise ValueError(f'expected logits (N, 1 <= C <= 256, h, w), got shape {logits.shape}')
    return np.stack([_one(np.asarray(image), sy, sx) for image in logits])


def _one(logits, sy, sx):
    classes, h, w = logits.shape
    # Cell (i, j) of the (h+1) x (w+1) grid holds the output pixels between the low-resolution
    # pixel centres i-1, i and j-1, j (clamped at the borders); on a canvas shifted by half a
    # cell every cell is sy x sx pixels.
    corners = np.pad(np.argmax(logits, axis=0).astype(np.uint8), 1, mode='edge')
    first = corners[:-1, :-1]
    uniform = ((first == corners[:-1, 1:]) & (first == corners[1:, :-1])
               & (first == corners[1:, 1:]))
    canvas = np.broadcast_to(first[:, None, :, None], (h + 1, sy, w + 1, sx)).copy()

    rows, cols = np.nonzero(~uniform)
    if len(rows):
        top, bottom = np.maximum(rows - 1, 0), np.minimum(rows, h - 1)
        left, right = np.maximum(cols - 1, 0), np.minimum(cols, w - 1)
        wy = ((np.arange(sy) + 0.5) / sy)[:, None, None]  # (sy, 1, 1): cell row weights
        wx = ((np.arange(sx) + 0.5) / sx)[:, None]  # (sx, 1)
        corner = [logits[:, y, x].astype(np.float64)  # (C, K) each
                  for y, x in ((top, left), (top, right), (bottom, left), (bottom, right))]
        best = labels = None
        for c in range(classes):  # one class of every boundary cell at a time: (sy, sx, K)
            upper = corner[0][c] * (1 - wx) + corner[1][c] * wx
            lower = corner[2][c] * (1 - wx) + corner[3][c] * wx
            value = upper * (1 - wy) + lower * wy
            if best is None:
                best, labels = value, np.zeros(value.shape, np.uint8)
                continue
            better = value > best  # strict: the first class wins a tie, as ONNX's ArgMax
            np.copyto(labels, c, where=better)
            np.maximum(best, value, out=best)
        canvas[rows, :, cols, :] = labels.transpose(2, 0, 1)
    canvas = canvas.reshape((h + 1) * sy, (w + 1) * sx)
    return canvas[sy // 2:sy // 2 + h * sy, sx // 2:sx // 2 + w * sx]


__all__ = ['upsampled_argmax']
