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
Drivable-area masks from class-id masks (numpy/OpenCV only; shared by the node and bag-eval).

Mode ``classes`` marks every pixel of the drivable classes; mode ``connected`` keeps only the
drivable region 4-connected to the bottom centre of the image, where the vehicle is.
"""

import cv2
import numpy as np

DRIVABLE_MODES = ('classes', 'connected')


def drivable_lut(class_names, drivable):
    """
    Return (a 256-entry 0/255 lookup table over class ids, the matched class ids).

    Names match case-insensitively; an unknown name raises ValueError listing the classes.
    """
    lower = [name.lower() for name in class_names]
    ids = []
    for name in drivable:
        if name.lower() not in lower:
            allowed = ', '.join(repr(n) for n in class_names)
            raise ValueError(f'{name!r} is not a class of this model; allowed '
                             f'values (any case): {allowed}')
        ids.append(lower.index(name.lower()))
    lut = np.zeros(256, np.uint8)
    lut[ids] = 255
    return lut, ids


def connected_drivable(drivable):
    """
    Keep the 4-connected drivable region at the bottom centre of a 0/255 mono8 image.

    Seed: the bottom-centre pixel (row H-1, column W//2) if drivable, else the drivable pixel of
    the bottom row nearest to it (the left one on a tie); no drivable bottom-row pixel gives an
    all-zero image.
    """
    height, width = drivable.shape
    bottom = drivable[height - 1]
    centre = width // 2
    if bottom[centre]:
        column = centre
    else:
        columns = np.flatnonzero(bottom)
        if not columns.size:
            return np.zeros_like(drivable)
        column = int(columns[np.argmin(np.abs(columns - centre))])
    work = drivable.copy()
    cv2.floodFill(work, None, (column, height - 1), 128, 0, 0, 4)
    return cv2.compare(work, 128, cv2.CMP_EQ)


def drivable_area(mask, lut, mode='classes'):
    """Return the 0/255 drivable-area image of class-id ``mask`` (uint8) for ``mode``."""
    if mode not in DRIVABLE_MODES:
        raise ValueError(f'drivable mode must be one of {DRIVABLE_MODES}, got {mode!r}')
    area = cv2.LUT(mask, lut)
    return connected_drivable(area) if mode == 'connected' else area
