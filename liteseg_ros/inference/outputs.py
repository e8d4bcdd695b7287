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
The segmentation outputs: their names, their topics and their pixels (numpy/OpenCV only).

One home for what the node publishes, what bag-eval writes into its output bag and what the
demos save, so that all three give the same pixels for the same mask:

- :data:`OUTPUTS`, the output names; :func:`image_namespace` and :func:`output_topic`, the
  topic scheme ``<camera namespace>/segmentation/<output>``;
- :class:`OutputRenderer`, which turns an image and its class-id mask (and confidence) into
  the arrays (or PNG bytes) of the outputs asked for;
- :func:`encode_png` / :func:`write_png`, the one PNG setting of the package.
"""

import cv2
from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.inference.drivable import drivable_area, drivable_lut, DRIVABLE_MODES
from liteseg_ros.inference.visualize import colorize, overlay
import numpy as np

#: Every output, in publishing order.
OUTPUTS = ('mask', 'mask/compressed', 'color', 'overlay', 'confidence', 'drivable_area')

#: PNG compression level of :func:`encode_png` (0-9; 1 is fast and still small for masks).
PNG_COMPRESSION_LEVEL = 1

# Masks are runs of equal labels: zlib's RLE strategy without row filters encodes a 2048x1024
# mask 2-3x faster than the default (adaptive filters + deflate) at a similar size. The node
# encodes a PNG per frame, so its setting is the one everything uses (lossless either way).
# IMWRITE_PNG_FILTER needs OpenCV >= 4.10; older versions keep libpng's filter choice.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION_LEVEL,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
if hasattr(cv2, 'IMWRITE_PNG_FILTER'):
    PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


def _split(topic):
    return [part for part in topic.split('/') if part]


def image_namespace(topic):
    """
    Return the namespace of an image topic: the topic without ``/compressed`` and its last name.

    ``/cam0/image_raw`` and ``/cam0/image_raw/compressed`` give ``/cam0``; ``/image_raw`` gives
    '' (outputs then go to ``/segmentation/...``), as the node names them for camera ``C``.
    """
    parts = _split(topic)
    if len(parts) > 1 and parts[-1] == 'compressed':
        parts = parts[:-1]
    return '/' + '/'.join(parts[:-1]) if len(parts) > 1 else ''


def output_topic(namespace, output):
    """Return ``<namespace>/segmentation/<output>``."""
    return f'{namespace}/segmentation/{output}'


def _describe(value):
    if isinstance(value, np.ndarray):
        return f'an array of shape {value.shape} and dtype {value.dtype}'
    return f'a {type(value).__name__}'


def encode_png(array):
    """
    Return the PNG bytes of an HxW uint8 image (a mask) or an HxWx3 uint8 RGB image.

    Lossless, written for speed (see :data:`PNG_PARAMS`); ``cv2.imread`` of the bytes gives
    the mask back exactly (an RGB image comes back in OpenCV's BGR order).

    :raises ValueError: not a non-empty HxW, HxWx1 or HxWx3 uint8 array.
    """
    if isinstance(array, np.ndarray) and array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if (not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.size == 0
            or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3))):
        raise ValueError(f'a PNG needs a non-empty HxW or HxWx3 uint8 array, got '
                         f'{_describe(array)}')
    pixels = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, encoded = cv2.imencode('.png', pixels, PNG_PARAMS)
    if not ok:
        raise ValueError(f'OpenCV could not encode a {array.shape[1]}x{array.shape[0]} image '
                         'as PNG')
    return encoded.tobytes()


def write_png(path, rgb_or_mask):
    """
    Write an HxW mask or an HxWx3 RGB image to ``path`` as PNG, atomically; return ``path``.

    The folder is created when missing; on failure the previous file (if any) is kept.
    """
    write_bytes_atomic(path, encode_png(rgb_or_mask))
    return path


class OutputRenderer:
    """
    The pixels of the outputs for one model's classes and palette.

    ``overlay_alpha``, ``drivable_classes`` and ``drivable_mode`` may be changed between
    frames; setting ``drivable_classes`` rebuilds the drivable lookup table (an unknown class
    name raises ValueError listing the model's classes, any case matches).
    """

    def __init__(self, class_names, palette, overlay_alpha=0.5, drivable_classes=('road',),
                 drivable_mode='classes'):
        """Prepare the colours and the drivable lookup table of a model."""
        self.class_names = list(class_names)
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.overlay_alpha = float(overlay_alpha)
        self.drivable_classes = drivable_classes
        self.drivable_mode = drivable_mode

    @property
    def drivable_classes(self):
        """Return the drivable class names (as given)."""
        return self._drivable_classes

    @drivable_classes.setter
    def drivable_classes(self, names):
        names = [names] if isinstance(names, str) else list(names)
        self.drivable_lut, self.drivable_ids = drivable_lut(self.class_names, names)
        self._drivable_classes = names

    @property
    def drivable_mode(self):
        """Return the drivable mode: 'classes' or 'connected' (see inference.drivable)."""
        return self._drivable_mode

    @drivable_mode.setter
    def drivable_mode(self, mode):
        if mode not in DRIVABLE_MODES:
            raise ValueError(f'drivable mode must be one of {DRIVABLE_MODES}, got {mode!r}')
        self._drivable_mode = mode

    def colorize(self, mask):
        """Return the palette colours (HxWx3 uint8 RGB) of a class-id mask."""
        return colorize(mask, self.palette)

    def render(self, wanted, image, mask, confidence=None):
        """
        Return {output: value} for each name in ``wanted`` (in :data:`OUTPUTS` order).

        ``image`` is the HxWx3 uint8 RGB frame, ``mask`` its HxW uint8 class ids and
        ``confidence`` the optional HxW float top-class probability. Values: 'mask' the class
        ids, 'mask/compressed' the PNG bytes of the mask, 'color' and 'overlay' HxWx3 uint8 RGB,
        'confidence' uint8 (probability * 255; left out when ``confidence`` is None),
        'drivable_area' uint8 0/255.

        :raises ValueError: an unknown output name.
        """
        unknown = [name for name in wanted if name not in OUTPUTS]
        if unknown:
            raise ValueError(f'unknown output(s) {unknown}; choose from {", ".join(OUTPUTS)}')
        result = {}
        if 'mask' in wanted:
            result['mask'] = mask
        if 'mask/compressed' in wanted:
            result['mask/compressed'] = encode_png(mask)
        if 'color' in wanted or 'overlay' in wanted:
            color = self.colorize(mask)  # once for both
            if 'color' in wanted:
                result['color'] = color
            if 'overlay' in wanted:
                result['overlay'] = overlay(image, color, self.overlay_alpha)
        if 'confidence' in wanted and confidence is not None:
            result['confidence'] = cv2.convertScaleAbs(confidence, alpha=255.0)
        if 'drivable_area' in wanted:
            result['drivable_area'] = drivable_area(mask, self.drivable_lut, self.drivable_mode)
        return result


__all__ = ['OUTPUTS', 'OutputRenderer', 'PNG_PARAMS', 'encode_png', 'image_namespace',
           'output_topic', 'write_png']
