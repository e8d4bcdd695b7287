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
Build ``sensor_msgs`` image messages from numpy arrays (the inverse of ``image_codecs``).

The node's outputs and the test and demo publishers build their messages here. The decoders
and the encoder of image data (no message package needed) are in ``liteseg_ros.image_codecs``;
``sensor_msgs`` is imported when a message is built, so this module imports without ROS.
"""

import array as pyarray
import sys

from liteseg_ros.image_codecs import (describe_array, encode_array, encoding_needs_even_width,
                                      MAX_IMAGE_SIDE)
from liteseg_ros.inference.outputs import encode_png
import numpy as np

__all__ = ['encoded_image_message', 'image_message', 'mono8_message', 'png_message',
           'rgb8_message']


def _byte_array(values):
    """Copy a numpy array's bytes into an array.array('B') (what rclpy stores)."""
    data = pyarray.array('B')
    data.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return data


def _image(encoding, height, width, step, is_bigendian, payload, header):
    from sensor_msgs.msg import Image
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height = int(height)
    msg.width = int(width)
    msg.encoding = encoding
    msg.is_bigendian = int(bool(is_bigendian))
    msg.step = int(step)
    # array.array, not an ndarray (assigning an ndarray costs ~300 ms for 1080p).
    msg.data = _byte_array(payload)
    return msg


# encoding -> (channels, numpy dtype) of the array image_message takes.
_ARRAY_LAYOUTS = {
    'rgb8': (3, np.uint8), 'bgr8': (3, np.uint8), '8UC3': (3, np.uint8),
    'rgba8': (4, np.uint8), 'bgra8': (4, np.uint8),
    'mono8': (1, np.uint8), '8UC1': (1, np.uint8), 'mono16': (1, np.uint16),
    'yuv422': (2, np.uint8), 'uyvy': (2, np.uint8),
    'yuv422_yuy2': (2, np.uint8), 'yuyv': (2, np.uint8),
    'bayer_rggb8': (1, np.uint8), 'bayer_bggr8': (1, np.uint8),
    'bayer_gbrg8': (1, np.uint8), 'bayer_grbg8': (1, np.uint8),
}


def image_message(array, encoding, header=None):
    """
    Build a ``sensor_msgs/Image`` holding array as is, in the given encoding.

    array must already be in that encoding's channel layout: HxWx3 for rgb8/bgr8/8UC3,
    HxWx4 for rgba8/bgra8, HxWx2 for the 4:2:2 YUV encodings, HxW (or HxWx1) uint8 for
    mono8/8UC1/bayer_*, HxW uint16 for mono16 (``is_bigendian`` follows the array's byte
    order). For converting an RGB image to another encoding (including the planar nv12, nv21,
    nv24), use :func:`encoded_image_message`. ``step`` is width * bytes per pixel and ``data``
    a copy of the array's bytes.

    :raises ValueError: unsupported encoding or an array whose shape or dtype does not fit it.
    """
    if encoding not in _ARRAY_LAYOUTS:
        raise ValueError('image_message cannot take an array for encoding %r (supported: %s); '
                         'use encoded_image_message for the planar encodings'
                         % (encoding, ', '.join(_ARRAY_LAYOUTS)))
    channels, dtype = _ARRAY_LAYOUTS[encoding]
    ok = isinstance(array, np.ndarray) and array.dtype.kind == 'u' \
        and array.dtype.itemsize == np.dtype(dtype).itemsize
    if ok and array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    ok = ok and array.ndim == expected_ndim and (channels == 1 or array.shape[2] == channels)
    if not ok:
        raise ValueError('encoding %r needs an %s %s array, got %s'
                         % (encoding, 'HxW' if channels == 1 else 'HxWx%d' % channels,
                            np.dtype(dtype).name, describe_array(array)))
    height, width = array.shape[:2]
    if height == 0 or width == 0 or height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        raise ValueError('image size %dx%d: width and height must be 1..%d'
                         % (width, height, MAX_IMAGE_SIDE))
    if encoding_needs_even_width(encoding) and width % 2:
        raise ValueError('encoding %r needs an even width, got %d' % (encoding, width))
    byteorder = array.dtype.byteorder
    big_endian = array.dtype.itemsize > 1 and (
        byteorder == '>' or (byteorder in '=|' and sys.byteorder == 'big'))
    step = width * channels * array.dtype.itemsize
    return _image(encoding, height, width, step, big_endian, array, header)


def encoded_image_message(rgb, encoding, header=None, big_endian=False):
    """
    Build a ``sensor_msgs/Image`` in any supported encoding from an HxWx3 uint8 RGB array.

    Uses ``image_codecs.encode_image``; see there for how each encoding is produced.
    """
    out, step = encode_array(rgb, encoding, big_endian)
    height, width = rgb.shape[:2]
    return _image(encoding, height, width, step, big_endian and encoding == 'mono16', out,
                  header)


def rgb8_message(rgb, header=None):
    """Build an ``rgb8`` ``sensor_msgs/Image`` from an HxWx3 uint8 RGB array."""
    return image_message(rgb, 'rgb8', header)


def mono8_message(mask, header=None):
    """Build a ``mono8`` ``sensor_msgs/Image`` from an HxW uint8 array (e.g. class ids)."""
    return image_message(mask, 'mono8', header)


def png_message(mask, header=None):
    """
    Build a ``sensor_msgs/CompressedImage`` holding an HxW uint8 mask as a lossless PNG.

    The format is ``'mono8; png compressed'`` (image_transport's naming); the PNG is written
    for speed (compression level 1, zlib RLE strategy, no row
    filters: ``inference.outputs.encode_png``). ``decode_mask`` returns the mask exactly.

    :raises ValueError: mask is not a non-empty HxW (or HxWx1) uint8 array.
    """
    if isinstance(mask, np.ndarray) and mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.ndim != 2 \
            or mask.size == 0:
        raise ValueError('png_message needs a non-empty HxW uint8 mask, got %s'
                         % describe_array(mask))
    encoded = encode_png(mask)
    from sensor_msgs.msg import CompressedImage
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = 'mono8; png compressed'
    msg.data = pyarray.array('B', encoded)
    return msg
