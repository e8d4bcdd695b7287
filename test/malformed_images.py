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
Generators of malformed ``sensor_msgs`` image messages, for robustness tests.

``malformed_image_messages`` and ``malformed_compressed_messages`` yield
``(description, msg)`` pairs of real rclpy messages that ``liteseg_ros.image_codecs``
must reject with ``ImageDecodeError`` (and that a node must survive). They cycle through
the kinds of damage listed in ``IMAGE_KINDS`` and ``COMPRESSED_KINDS`` with random sizes
and encodings from a seeded generator, so a given (count, seed) always gives the same
messages. Sizes stay small and "huge" images carry only a few bytes: nothing large is
allocated.
"""

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage
from sensor_msgs.msg import Image

# Bytes per pixel of the encodings the decoder supports (as it sizes their rows).
_BYTES_PER_PIXEL = {
    'rgb8': 3, 'bgr8': 3, '8UC3': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, '8UC1': 1,
    'mono16': 2, 'yuv422': 2, 'uyvy': 2, 'yuv422_yuy2': 2, 'yuyv': 2,
    'bayer_rggb8': 1, 'bayer_bggr8': 1, 'bayer_gbrg8': 1, 'bayer_grbg8': 1,
}
_YUV422 = ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv')
_YUV420 = ('nv12', 'nv21')
# Real but unsupported encodings, misspellings and nonsense.
_UNKNOWN_ENCODINGS = (
    'rgb16', 'bgra16', 'mono32', '16UC1', '32FC1', '8UC4', 'bayer_rggb16', 'nv42', 'RGB8',
    'Mono8', 'rgb8 ', 'jpeg', 'yuv420', '', 'unknown',
)
_UNKNOWN_FORMATS = (
    'webp', 'tiff', 'bmp', 'raw', '', 'rgb8', '16UC1; compressedDepth png',
    '32FC1; compressedDepth', 'h264', 'jp2',
)

#: Kinds of damage to sensor_msgs/Image, in the order they are cycled through.
IMAGE_KINDS = (
    'unknown encoding', 'data shorter than step*height', 'data longer than step*height',
    'step < width*bytes_per_pixel', 'zero width', 'zero height', 'huge width',
    'huge height', 'huge step', 'empty data', 'odd width for 4:2:2 YUV',
    'odd height for 4:2:0 YUV', 'nv21 data sized as packed',
)

#: Kinds of damage to sensor_msgs/CompressedImage, in the order they are cycled through.
COMPRESSED_KINDS = (
    'truncated JPEG', 'truncated PNG', 'random bytes as JPEG', 'random bytes as PNG',
    'empty data', 'unknown format', 'JPEG without start-of-image marker',
    'PNG data labelled JPEG', 'PNG header claims a huge image', 'JPEG header claims a huge image',
    'PNG with corrupt image data',
)


def _image(encoding, width, height, step, data, is_bigendian=0):
    msg = Image()
    msg.encoding = encoding
    msg.width = width
    msg.height = height
    msg.step = step
    msg.is_bigendian = is_bigendian
    msg.data = bytes(data)
    return msg


def _random_bytes(rng, size):
    return rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def _make_image(kind, rng):
    """Return (description, msg) for one damaged sensor_msgs/Image."""
    packed = sorted(_BYTES_PER_PIXEL)
    encoding = packed[rng.integers(len(packed))]
    bpp = _BYTES_PER_PIXEL[encoding]
    width = int(rng.integers(1, 48))
    height = int(rng.integers(1, 32))
    if encoding in _YUV422 and width % 2:
        width += 1
    padding = int(rng.integers(0, 2)) * int(rng.integers(1, 9))
    step = width * bpp + padding
    size = step * height
    where = '%s %dx%d step %d' % (encoding, width, height, step)

    if kind == 'unknown encoding':
        bad = _UNKNOWN_ENCODINGS[rng.integers(len(_UNKNOWN_ENCODINGS))]
        return ('%s %r %dx%d' % (kind, bad, width, height),
                _image(bad, width, height, width * 3, _random_bytes(rng, width * 3 * height)))
    if kind == 'data shorter than step*height':
        short = int(rng.integers(0, size))
        return ('%s (%s: %d of %d bytes)' % (kind, where, short, size),
                _image(encoding, width, height, step, _random_bytes(rng, short)))
    if kind == 'data longer than step*height':
        extra = int(rng.integers(1, 2 * step + 2))
        return ('%s (%s: %d extra bytes)' % (kind, where, extra),
                _image(encoding, width, height, step, _random_bytes(rng, size + extra)))
    if kind == 'step < width*bytes_per_pixel':
        if width * bpp == 1:
            width, step = 2, 1
        else:
            step = int(rng.integers(0, width * bpp))
        return ('%s (%s %dx%d step %d)' % (kind, encoding, width, height, step),
                _image(encoding, width, height, step, _random_bytes(rng, step * height)))
    if kind == 'zero width':
        return ('%s (%s 0x%d)' % (kind, encoding, height),
                _image(encoding, 0, height, step, _random_bytes(rng, size)))
    if kind == 'zero height':
        return ('%s (%s %dx0)' % (kind, encoding, width),
                _image(encoding, width, 0, step, b''))
    if kind in ('huge width', 'huge height'):
        huge = int(rng.choice([16385, 100000, 2 ** 31 - 1, 2 ** 32 - 1]))
        if kind == 'huge width':
            width, step = huge, min(huge * bpp, 2 ** 32 - 1)
        else:
            height = huge
        return ('%s (%s %dx%d, %d bytes of data)' % (kind, encoding, width, height, size),
                _image(encoding, width, height, step, _random_bytes(rng, min(size, 64))))
    if kind == 'huge step':
        step = int(rng.choice([2 ** 31, 2 ** 32 - 1]))
        return ('%s (%s %dx%d step %d)' % (kind, encoding, width, height, step),
                _image(encoding, width, height, step, _random_bytes(rng, size)))
    if kind == 'empty data':
        return ('%s (%s)' % (kind, where), _image(encoding, width, height, step, b''))
    if kind == 'odd width for 4:2:2 YUV':
        encoding = _YUV422[rng.integers(len(_YUV422))]
        width = 2 * int(rng.integers(0, 24)) + 1
        return ('%s (%s %dx%d)' % (kind, encoding, width, height),
                _image(encoding, width, height, 2 * width,
                       _random_bytes(rng, 2 * width * height)))
    if kind == 'odd height for 4:2:0 YUV':
        encoding = _YUV420[rng.integers(len(_YUV420))]
        width = 2 * int(rng.integers(1, 24))
        height = 2 * int(rng.integers(0, 16)) + 1
        return ('%s (%s %dx%d)' % (kind, encoding, width, height),
                _image(encoding, width, height, width,
                       _random_bytes(rng, width * height * 3 // 2)))
    if kind == 'nv21 data sized as packed':
        width = 2 * int(rng.integers(1, 24))
        height = 2 * int(rng.integers(1, 16))
        return ('%s (nv21 %dx%d: %d bytes, no chroma plane)' % (kind, width, height,
                                                                width * height),
                _image('nv21', width, height, width, _random_bytes(rng, width * height)))
    raise ValueError('unknown kind %r' % kind)


def malformed_image_messages(count, seed=0):
    """
    Yield count ``(description, sensor_msgs.msg.Image)`` pairs, each malformed.

    Cycles through :data:`IMAGE_KINDS` (unknown encoding, data shorter or longer than
    step*height, step too small, zero or huge dimensions, empty data, odd sizes for
    subsampled YUV) with random encodings and sizes drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    for index in range(count):
        yield _make_image(IMAGE_KINDS[index % len(IMAGE_KINDS)], rng)


def _compressed(fmt, data):
    msg = CompressedImage()
    msg.format = fmt
    msg.data = bytes(data)
    return msg


def _valid(rng, ext):
    """Return a small random image encoded as .jpg or .png bytes."""
    height, width = int(rng.integers(8, 40)), int(rng.integers(8, 40))
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(ext, image)
    assert ok
    return encoded.tobytes()


def _random_payload(rng):
    data = bytearray(_random_bytes(rng, int(rng.integers(1, 2048))))
    data[0] = int(rng.integers(0, 0x89))  # never a JPEG (0xff) or PNG (0x89) signature
    return bytes(data)


def _make_compressed(kind, rng):
    """Return (description, msg) for one damaged sensor_msgs/CompressedImage."""
    jpeg_formats = ('jpeg', 'bgr8; jpeg compressed bgr8', 'rgb8; jpeg compressed bgr8')
    png_formats = ('png', 'mono8; png compressed', 'bgr8; png compressed bgr8')
    jpeg_format = jpeg_formats[rng.integers(len(jpeg_formats))]
    png_format = png_formats[rng.integers(len(png_formats))]

    if kind == 'truncated JPEG':
        data = _valid(rng, '.jpg')
        cut = int(rng.integers(0, len(data) - 1))
        return ('%s (%d of %d bytes)' % (kind, cut, len(data)),
                _compressed(jpeg_format, data[:cut]))
    if kind == 'truncated PNG':
        data = _valid(rng, '.png')
        cut = int(rng.integers(0, len(data) - 1))
        return ('%s (%d of %d bytes)' % (kind, cut, len(data)),
                _compressed(png_format, data[:cut]))
    if kind == 'random bytes as JPEG':
        data = _random_payload(rng)
        return '%s (%d bytes)' % (kind, len(data)), _compressed(jpeg_format, data)
    if kind == 'random bytes as PNG':
        data = _random_payload(rng)
        return '%s (%d bytes)' % (kind, len(data)), _compressed(png_format, data)
    if kind == 'empty data':
        fmt = (jpeg_format, png_format)[rng.integers(2)]
        return '%s (format %r)' % (kind, fmt), _compressed(fmt, b'')
    if kind == 'unknown format':
        fmt = _UNKNOWN_FORMATS[rng.integers(len(_UNKNOWN_FORMATS))]
        return '%s %r' % (kind, fmt), _compressed(fmt, _valid(rng, '.png'))
    if kind == 'JPEG without start-of-image marker':
        data = _valid(rng, '.jpg')
        return kind, _compressed(jpeg_format, data[2:])
    if kind == 'PNG data labelled JPEG':
        return kind, _compressed(jpeg_format, _valid(rng, '.png'))
    if kind == 'PNG header claims a huge image':
        data = bytearray(_valid(rng, '.png'))
        side = int(rng.choice([16385, 100000, 2 ** 31 - 1]))
        data[16:20] = side.to_bytes(4, 'big')  # IHDR width (CRC now wrong too)
        return '%s (width %d)' % (kind, side), _compressed(png_format, data)
    if kind == 'JPEG header claims a huge image':
        data = bytearray(_valid(rng, '.jpg'))
        sof = data.find(b'\xff\xc0')
        side = int(rng.choice([0, 16385, 65535]))
        data[sof + 5:sof + 7] = side.to_bytes(2, 'big')  # frame height
        return '%s (height %d)' % (kind, side), _compressed(jpeg_format, data)
    if kind == 'PNG with corrupt image data':
        data = bytearray(_valid(rng, '.png'))
        idat = data.find(b'IDAT')
        position = idat + 4 + int(rng.integers(0, 16))
        data[position] ^= 0xFF  # breaks the chunk CRC / zlib stream
        return '%s (byte %d flipped)' % (kind, position), _compressed(png_format, data)
    raise ValueError('unknown kind %r' % kind)


def malformed_compressed_messages(count, seed=0):
    """
    Yield count ``(description, sensor_msgs.msg.CompressedImage)`` pairs, each undecodable.

    Cycles through :data:`COMPRESSED_KINDS` (truncated JPEG/PNG, random bytes, empty data,
    unknown formats, missing signatures, format/data mismatch, absurd header sizes, corrupt
    PNG data) with random sizes drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    for index in range(count):
        yield _make_compressed(COMPRESSED_KINDS[index % len(COMPRESSED_KINDS)], rng)
