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
Decode ROS image messages to numpy arrays, and encode arrays as image data (numpy + OpenCV).

Decoding works on any object with the fields of ``sensor_msgs/msg/Image`` (``encoding``,
``height``, ``width``, ``step``, ``is_bigendian``, ``data``) or
``sensor_msgs/msg/CompressedImage`` (``format``, ``data``): rclpy messages, messages
deserialised by ``rosbags``, or plain namespaces. It reads message fields only, so the node
and the bag tools share it; it imports neither rclpy nor any message package. Building rclpy
messages is ``liteseg_ros.ros.messages``'s job.

Every decoded image is an HxWx3 ``uint8`` RGB array. Messages are validated before any
reshaping: an unsupported encoding, impossible dimensions, a step that is too small or data
of the wrong length raise :class:`ImageDecodeError`, whose text names the encoding, the size
and what was expected. Nothing else escapes from the decoders for a malformed message.

Encoding notes (names as in ``sensor_msgs/image_encodings.hpp``):

- ``yuv422`` is UYVY (alias ``uyvy``), ``yuv422_yuy2`` is YUYV (alias ``yuyv``); both need an
  even width. YUV uses ITU-R BT.601 limited range, as OpenCV's converters do.
- ``nv12``/``nv21``: 4:2:0, a Y plane of ``height`` rows followed by an interleaved UV (nv12)
  or VU (nv21) plane of ``height/2`` rows, both with row stride ``step``; the data has
  ``step*height*3/2`` bytes and width and height must be even.
- ``nv24``: 4:4:4, a Y plane with row stride ``step`` followed by an interleaved UV plane with
  row stride ``2*step`` (the V4L2/libcamera layout, as camera_ros publishes it); the data has
  ``3*step*height`` bytes.
- ``mono16`` honours ``is_bigendian`` and keeps the high byte (value >> 8).
- ``bayer_*8``: demosaiced with OpenCV (bilinear), pattern named from the top-left 2x2 block.
- ``8UC1`` is read as ``mono8`` and ``8UC3`` as ``bgr8`` (OpenCV's channel order, which is what
  ``cv_bridge`` publishes for a BGR ``cv::Mat`` with the passthrough encoding).
- ``rgba8``/``bgra8``: the alpha channel is dropped.
"""

import collections

import cv2
import numpy as np

__all__ = [
    'ImageDecodeError', 'MAX_IMAGE_SIDE', 'SUPPORTED_ENCODINGS', 'SUPPORTED_COMPRESSED_FORMATS',
    'decode_image', 'decode_compressed', 'decode_mask', 'describe_array', 'encode_array',
    'encode_image', 'encoding_needs_even_width',
]

#: Largest width or height accepted, in pixels (guards against absurd headers).
MAX_IMAGE_SIDE = 16384

#: Compressed formats understood by :func:`decode_compressed`.
SUPPORTED_COMPRESSED_FORMATS = ('jpeg', 'png')


class ImageDecodeError(ValueError):
    """An image message cannot be decoded; the text names the encoding and the mismatch."""


# ---------------------------------------------------------------------------------------------
# YUV (ITU-R BT.601, limited range), shared by the encoder and the nv24 decoder.

# RGB -> YUV, rows Y, U (Cb), V (Cr); offsets 16, 128, 128.
_RGB_TO_YUV = np.array([[0.257, 0.504, 0.098],
                        [-0.148, -0.291, 0.439],
                        [0.439, -0.368, -0.071]], dtype=np.float32)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)

# YUV -> RGB with OpenCV's fixed-point BT.601 coefficients (color_yuv: ITUR_BT_601_*), as a
# 3x4 affine matrix for cv2.transform: columns Y, U, V, constant.
_CY, _CUB, _CUG, _CVG, _CVR = 1.164, 2.018, -0.391, -0.813, 1.596
_YUV_TO_RGB = np.array(
    [[_CY, 0.0, _CVR, -16 * _CY - 128 * _CVR],
     [_CY, _CUG, _CVG, -16 * _CY - 128 * (_CUG + _CVG)],
     [_CY, _CUB, 0.0, -16 * _CY - 128 * _CUB]], dtype=np.float32)

# ROS Bayer names give the top-left 2x2 block; OpenCV names the pattern by the second row's
# second and third pixels, so ROS RGGB is OpenCV BG (same mapping as cv_bridge; checked by
# test_image_codecs on synthetic mosaics).
_BAYER_TO_RGB = {
    'rggb': cv2.COLOR_BayerBG2RGB,
    'bggr': cv2.COLOR_BayerRG2RGB,
    'gbrg': cv2.COLOR_BayerGR2RGB,
    'grbg': cv2.COLOR_BayerGB2RGB,
}
_CHANNEL_OF = {'r': 0, 'g': 1, 'b': 2}


# ---------------------------------------------------------------------------------------------
# Decoders: (buf, height, width, step, big_endian) -> HxWx3 uint8 RGB. buf is a 1-D uint8
# array whose length has been checked against the layout.

def _rows(buf, height, step, row_bytes):
    """Return the (height, row_bytes) view of the first height rows of stride step."""
    return buf[:height * step].reshape(height, step)[:, :row_bytes]


def _decode_rgb8(buf, height, width, step, big_endian):
    if step == width * 3:
        # Zero-copy: a read-only view of the message's own buffer.
        out = buf.reshape(height, width, 3)
        out.flags.writeable = False
        return out
    return np.ascontiguousarray(_rows(buf, height, step, width * 3).reshape(height, width, 3))


def _cvt(code, channels):
    def decode(buf, height, width, step, big_endian):
        view = _rows(buf, height, step, width * channels)
        if channels > 1:
            view = view.reshape(height, width, channels)
        return cv2.cvtColor(view, code)
    return decode


def _decode_mono16(buf, height, width, step, big_endian):
    # The high byte of each sample is value >> 8: byte 0 (big endian) or byte 1 (little).
    rows = _rows(buf, height, step, width * 2)
    high = np.ascontiguousarray(rows[:, 0::2] if big_endian else rows[:, 1::2])
    return cv2.cvtColor(high, cv2.COLOR_GRAY2RGB)


def _yuv420sp(code):
    def decode(buf, height, width, step, big_endian):
        planes = buf.reshape(height * 3 // 2, step)[:, :width]
        return cv2.cvtColor(planes, code)
    return decode


def _decode_nv24(buf, height, width, step, big_endian):
    yuv = np.empty((height, width, 3), dtype=np.uint8)
    yuv[:, :, 0] = _rows(buf, height, step, width)
    uv = buf[height * step:].reshape(height, 2 * step)[:, :2 * width]
    yuv[:, :, 1:] = uv.reshape(height, width, 2)
    return cv2.transform(yuv, _YUV_TO_RGB)


def _bayer(pattern):
    return _cvt(_BAYER_TO_RGB[pattern], 1)


# How a layout's data size follows from step and height, and how that is written in errors.
_PACKED = ('step*height', lambda step, height: step * height)
_YUV420 = ('step*height*3/2', lambda step, height: step * height * 3 // 2)
_YUV444 = ('3*step*height', lambda step, height: 3 * step * height)

_Layout = collections.namedtuple(
    '_Layout', 'bytes_per_pixel even_width even_height size decode')

_LAYOUTS = {
    'rgb8': _Layout(3, False, False, _PACKED, _decode_rgb8),
    'bgr8': _Layout(3, False, False, _PACKED, _cvt(cv2.COLOR_BGR2RGB, 3)),
    'rgba8': _Layout(4, False, False, _PACKED, _cvt(cv2.COLOR_RGBA2RGB, 4)),
    'bgra8': _Layout(4, False, False, _PACKED, _cvt(cv2.COLOR_BGRA2RGB, 4)),
    'mono8': _Layout(1, False, False, _PACKED, _cvt(cv2.COLOR_GRAY2RGB, 1)),
    'mono16': _Layout(2, False, False, _PACKED, _decode_mono16),
    'yuv422': _Layout(2, True, False, _PACKED, _cvt(cv2.COLOR_YUV2RGB_UYVY, 2)),
    'uyvy': _Layout(2, True, False, _PACKED, _cvt(cv2.COLOR_YUV2RGB_UYVY, 2)),
    'yuv422_yuy2': _Layout(2, True, False, _PACKED, _cvt(cv2.COLOR_YUV2RGB_YUY2, 2)),
    'yuyv': _Layout(2, True, False, _PACKED, _cvt(cv2.COLOR_YUV2RGB_YUY2, 2)),
    'nv12': _Layout(1, True, True, _YUV420, _yuv420sp(cv2.COLOR_YUV2RGB_NV12)),
    'nv21': _Layout(1, True, True, _YUV420, _yuv420sp(cv2.COLOR_YUV2RGB_NV21)),
    'nv24': _Layout(1, False, False, _YUV444, _decode_nv24),
    'bayer_rggb8': _Layout(1, False, False, _PACKED, _bayer('rggb')),
    'bayer_bggr8': _Layout(1, False, False, _PACKED, _bayer('bggr')),
    'bayer_gbrg8': _Layout(1, False, False, _PACKED, _bayer('gbrg')),
    'bayer_grbg8': _Layout(1, False, False, _PACKED, _bayer('grbg')),
    '8UC1': _Layout(1, False, False, _PACKED, _cvt(cv2.COLOR_GRAY2RGB, 1)),
    '8UC3': _Layout(3, False, False, _PACKED, _cvt(cv2.COLOR_BGR2RGB, 3)),
}

#: Encodings accepted by :func:`decode_image` (and produced by :func:`encode_image`).
SUPPORTED_ENCODINGS = tuple(_LAYOUTS)


def _field(msg, name, what):
    try:
        return getattr(msg, name)
    except AttributeError:
        raise ImageDecodeError(
            'message of type %s has no field %r: expected a %s'
            % (type(msg).__name__, name, what)) from None


def _as_uint8(data, prefix):
    """Return data as a 1-D uint8 array, without copying when it exposes a buffer."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageDecodeError('%s: data is a numpy array of dtype %s, expected uint8'
                                   % (prefix, data.dtype))
        return data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        pass
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)  # e.g. a list of ints
    except (TypeError, ValueError, OverflowError) as exc:
        raise ImageDecodeError('%s: data of type %s is not a byte sequence (%s)'
                               % (prefix, type(data).__name__, exc)) from None


def _to_int(value, name, prefix):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ImageDecodeError('%s: field %s is %r, expected an integer'
                               % (prefix, name, value)) from None


def decode_image(msg):
    """
    Decode a ``sensor_msgs/Image`` (or any object with its fields) to an HxWx3 uint8 RGB array.

    ``msg.data`` may be ``bytes``, ``bytearray``, ``array.array('B')`` (rclpy), a uint8 numpy
    array (rosbags) or anything else exposing a byte buffer; it is read without copying. The
    result is C-contiguous. For ``rgb8`` without row padding it is a zero-copy, read-only view
    of ``msg.data`` (call ``.copy()`` to modify it); otherwise it is a new array.

    :raises ImageDecodeError: unsupported encoding, zero or too large (> MAX_IMAGE_SIDE)
        width or height, odd width for the 4:2:2 encodings (odd width or height for 4:2:0),
        step smaller than width times bytes per pixel, or data length not what encoding,
        step and height require.
    """
    what = 'sensor_msgs/Image'
    encoding = _field(msg, 'encoding', what)
    raw_height = _field(msg, 'height', what)
    raw_width = _field(msg, 'width', what)
    prefix = 'encoding %r %sx%s' % (encoding, raw_width, raw_height)
    height = _to_int(raw_height, 'height', prefix)
    width = _to_int(raw_width, 'width', prefix)
    layout = _LAYOUTS.get(encoding) if isinstance(encoding, str) else None
    if layout is None:
        raise ImageDecodeError(
            '%s: unsupported encoding; supported: %s (republish the camera in one of these, '
            'e.g. with image_proc)' % (prefix, ', '.join(SUPPORTED_ENCODINGS)))
    if width <= 0 or height <= 0:
        raise ImageDecodeError('%s: width and height must be positive' % prefix)
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise ImageDecodeError('%s: width and height are limited to %d pixels each'
                               % (prefix, MAX_IMAGE_SIDE))
    if layout.even_width and width % 2:
        raise ImageDecodeError('%s: width must be even for this chroma-subsampled encoding'
                               % prefix)
    if layout.even_height and height % 2:
        raise ImageDecodeError('%s: height must be even for this 4:2:0 encoding' % prefix)
    step = _to_int(_field(msg, 'step', what), 'step', prefix)
    min_step = width * layout.bytes_per_pixel
    if step < min_step:
        raise ImageDecodeError('%s: step %d is smaller than width*bytes_per_pixel = %d*%d = %d'
                               % (prefix, step, width, layout.bytes_per_pixel, min_step))
    formula, size_of = layout.size
    expected = size_of(step, height)
    buf = _as_uint8(_field(msg, 'data', what), prefix)
    if buf.size != expected:
        raise ImageDecodeError('%s: data has %d bytes, expected %s = %d'
                               % (prefix, buf.size, formula, expected))
    big_endian = bool(_field(msg, 'is_bigendian', what))
    try:
        return layout.decode(buf, height, width, step, big_endian)
    except cv2.error as exc:  # not expected after the checks above; keep the contract anyway
        raise ImageDecodeError('%s: OpenCV could not convert the image: %s'
                               % (prefix, str(exc).strip())) from None


# ---------------------------------------------------------------------------------------------
# Compressed images.

_JPEG_SOI = b'\xff\xd8\xff'
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'IEND\xaeB`\x82'
_IMREAD_RGB = getattr(cv2, 'IMREAD_COLOR_RGB', None)  # OpenCV >= 4.10


def _compression_of(fmt):
    """Return 'jpeg', 'png' or None for a CompressedImage format string."""
    lowered = fmt.lower()
    if 'compresseddepth' in lowered:
        return None
    if 'jpeg' in lowered or 'jpg' in lowered:
        return 'jpeg'
    if 'png' in lowered:
        return 'png'
    return None


def _jpeg_size(view):
    """Return (width, height) from the first SOF marker of a JPEG, or None if there is none."""
    i, n = 2, len(view)
    while i + 4 <= n:
        if view[i] != 0xFF:
            return None
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length = (view[i + 2] << 8) | view[i + 3]
        if length < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            height = (view[i + 5] << 8) | view[i + 6]
            width = (view[i + 7] << 8) | view[i + 8]
            return width, height
        i += 2 + length
    return None


def _ends_with(buf, suffix):
    """Return True if buf, ignoring trailing zero padding, ends with suffix."""
    tail = buf[-4096:]
    nonzero = np.flatnonzero(tail)
    if nonzero.size == 0:
        return False
    end = int(nonzero[-1]) + 1
    return end >= len(suffix) and tail[end - len(suffix):end].tobytes() == suffix


def _check_compressed(buf, kind, prefix):
    """Check signature, size and completeness of JPEG or PNG data before decoding it."""
    def fail(reason):
        raise ImageDecodeError('%s: the data could not be decoded: %s' % (prefix, reason))

    if buf.size == 0:
        fail('it is empty')
    head = buf[:64].tobytes()
    if head.startswith(_JPEG_SOI):
        actual = 'jpeg'
    elif head.startswith(_PNG_SIGNATURE):
        actual = 'png'
    else:
        fail('it is neither JPEG nor PNG (starts with %s)' % head[:8].hex())
    if actual != kind:
        fail('the format says %s but the data is %s' % (kind.upper(), actual.upper()))
    if kind == 'jpeg':
        size = _jpeg_size(memoryview(buf))
        if size is None:
            fail('no JPEG frame header (SOF) before the image data')
        if not _ends_with(buf, b'\xff\xd9'):
            fail('JPEG is truncated (no end-of-image marker at the end)')
    else:
        if len(head) < 24 or head[12:16] != b'IHDR':
            fail('PNG has no IHDR header')
        size = int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
        if not _ends_with(buf, _PNG_IEND):
            fail('PNG is truncated (no IEND chunk)')
    width, height = size
    if width <= 0 or height <= 0 or width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        fail('its header says %dx%d; width and height must be 1..%d'
             % (width, height, MAX_IMAGE_SIDE))


def decode_compressed(msg):
    """
    Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to an HxWx3 uint8 RGB array.

    ``msg.format`` is read as image_transport writes it (``'jpeg'``, ``'png'``,
    ``'rgb8; jpeg compressed bgr8'``, ``'mono8; png compressed'``...); grey images come back
    with three equal channels and 16-bit PNGs are reduced to 8 bits.

    :raises ImageDecodeError: unsupported format (including ``compressedDepth``), empty,
        truncated or corrupt data, data that is not the format named, or a header size of
        zero or above MAX_IMAGE_SIDE.
    """
    flags = cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB
    image = _decode_compressed(msg, 'sensor_msgs/CompressedImage', flags)
    if _IMREAD_RGB is None:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _decode_compressed(msg, what, flags):
    fmt = _field(msg, 'format', what)
    prefix = 'format %r' % (fmt,)
    kind = _compression_of(fmt) if isinstance(fmt, str) else None
    if kind is None:
        raise ImageDecodeError(
            '%s: unsupported compressed format; supported: %s (as image_transport names them, '
            "e.g. 'jpeg', 'rgb8; jpeg compressed bgr8', 'png')"
            % (prefix, ', '.join(SUPPORTED_COMPRESSED_FORMATS)))
    buf = _as_uint8(_field(msg, 'data', what), prefix)
    _check_compressed(buf, kind, prefix)
    try:
        image = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise ImageDecodeError('%s: the data could not be decoded: %s'
                               % (prefix, str(exc).strip())) from None
    if image is None:
        raise ImageDecodeError('%s: the data could not be decoded (corrupt %s data)'
                               % (prefix, kind.upper()))
    return image


def decode_mask(msg):
    """
    Decode a class-id mask message to an HxW uint8 array with the exact values.

    Accepts a ``sensor_msgs/Image`` in ``mono8``/``8UC1`` (as ``ros.messages.mono8_message``
    writes it) or a ``sensor_msgs/CompressedImage`` holding an 8-bit single-channel PNG (as
    ``ros.messages.png_message`` writes it).

    :raises ImageDecodeError: any other encoding or format, or malformed data.
    """
    if hasattr(msg, 'format') and not hasattr(msg, 'encoding'):
        mask = _decode_compressed(msg, 'sensor_msgs/CompressedImage', cv2.IMREAD_UNCHANGED)
        if mask.ndim != 2 or mask.dtype != np.uint8:
            raise ImageDecodeError(
                'format %r: a mask must be a single-channel 8-bit PNG, got %d channel(s) of %s'
                % (msg.format, 1 if mask.ndim == 2 else mask.shape[2], mask.dtype))
        return mask
    encoding = _field(msg, 'encoding', 'sensor_msgs/Image')
    if encoding not in ('mono8', '8UC1'):
        raise ImageDecodeError('encoding %r %sx%s: a mask must be mono8 or 8UC1'
                               % (encoding, getattr(msg, 'width', '?'),
                                  getattr(msg, 'height', '?')))
    rgb = decode_image(msg)  # validates the message
    return np.ascontiguousarray(rgb[:, :, 0])


# ---------------------------------------------------------------------------------------------
# Encoding (numpy -> message bytes), the inverse of the decoders.

def encoding_needs_even_width(encoding):
    """Return True for the chroma-subsampled encodings (4:2:2, 4:2:0) that need an even width."""
    return _LAYOUTS[encoding].even_width


def _check_rgb(rgb):
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3:
        raise ValueError('expected an HxWx3 uint8 RGB array, got %s'
                         % describe_array(rgb))
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError('expected a non-empty image, got shape %s' % (rgb.shape,))


def describe_array(value):
    """Return 'an array of shape ... and dtype ...' (or the type) of ``value`` for errors."""
    if isinstance(value, np.ndarray):
        return 'an array of shape %s and dtype %s' % (value.shape, value.dtype)
    return 'a %s' % type(value).__name__


def _round_u8(values):
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _rgb_to_yuv(rgb):
    """Return float32 Y, U, V planes (BT.601 limited range, not rounded)."""
    yuv = cv2.transform(rgb.astype(np.float32), _RGB_TO_YUV) + _YUV_OFFSET
    return yuv[:, :, 0], yuv[:, :, 1], yuv[:, :, 2]


def encode_array(rgb, encoding, big_endian=False):
    """Return (a flat uint8 array holding the image data, step): encode_image without a copy."""
    _check_rgb(rgb)
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise ValueError('cannot encode to %r; supported: %s'
                         % (encoding, ', '.join(SUPPORTED_ENCODINGS)))
    height, width = rgb.shape[:2]
    if (layout.even_width and width % 2) or (layout.even_height and height % 2):
        raise ValueError('encoding %r needs an even %s, got %dx%d'
                         % (encoding, 'width and height' if layout.even_height else 'width',
                            width, height))
    rgb = np.ascontiguousarray(rgb)
    if encoding == 'rgb8':
        out = rgb
    elif encoding in ('bgr8', '8UC3'):
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == 'rgba8':
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    elif encoding == 'bgra8':
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    elif encoding in ('mono8', '8UC1'):
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding == 'mono16':
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * np.uint16(257)
        out = gray.astype('>u2' if big_endian else '<u2').view(np.uint8)
    elif encoding.startswith('bayer_'):
        out = np.empty((height, width), dtype=np.uint8)
        pattern = encoding[len('bayer_'):-1]
        for index, letter in enumerate(pattern):
            dy, dx = divmod(index, 2)
            out[dy::2, dx::2] = rgb[dy::2, dx::2, _CHANNEL_OF[letter]]
    else:
        out = _encode_yuv(rgb, encoding)
    out = np.ascontiguousarray(out)
    step = width * layout.bytes_per_pixel
    return out.reshape(-1), step


def _encode_yuv(rgb, encoding):
    height, width = rgb.shape[:2]
    y, u, v = _rgb_to_yuv(rgb)
    if encoding in ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'):
        out = np.empty((height, width // 2, 4), dtype=np.uint8)
        u2 = _round_u8((u[:, 0::2] + u[:, 1::2]) * 0.5)
        v2 = _round_u8((v[:, 0::2] + v[:, 1::2]) * 0.5)
        y0, y1 = _round_u8(y[:, 0::2]), _round_u8(y[:, 1::2])
        if encoding in ('yuv422', 'uyvy'):
            planes = (u2, y0, v2, y1)
        else:
            planes = (y0, u2, y1, v2)
        for index, plane in enumerate(planes):
            out[:, :, index] = plane
        return out
    if encoding in ('nv12', 'nv21'):
        out = np.empty((height * 3 // 2, width), dtype=np.uint8)
        out[:height] = _round_u8(y)
        u4 = (u[0::2, 0::2] + u[0::2, 1::2] + u[1::2, 0::2] + u[1::2, 1::2]) * 0.25
        v4 = (v[0::2, 0::2] + v[0::2, 1::2] + v[1::2, 0::2] + v[1::2, 1::2]) * 0.25
        chroma = out[height:].reshape(height // 2, width // 2, 2)
        first, second = (u4, v4) if encoding == 'nv12' else (v4, u4)
        chroma[:, :, 0] = _round_u8(first)
        chroma[:, :, 1] = _round_u8(second)
        return out
    # nv24: Y plane (stride width) then UV plane (stride 2*width).
    out = np.empty(3 * height * width, dtype=np.uint8)
    out[:height * width] = _round_u8(y).reshape(-1)
    uv = out[height * width:].reshape(height, width, 2)
    uv[:, :, 0] = _round_u8(u)
    uv[:, :, 1] = _round_u8(v)
    return out


def encode_image(rgb, encoding, big_endian=False):
    """
    Encode an HxWx3 uint8 RGB array as the data of a ``sensor_msgs/Image``.

    The inverse of :func:`decode_image`, for test data and for writing bags: exact for
    rgb8/bgr8/rgba8/bgra8 (alpha 255), grey (BT.601 luma, as ``cv2.COLOR_RGB2GRAY``) for
    mono8/mono16 (mono16 = grey * 257), BT.601 limited-range YUV with chroma averaged over
    each 2x1 (4:2:2) or 2x2 (4:2:0) block, and Bayer mosaics sampled from the RGB channels.
    Rows are not padded.

    :param rgb: HxWx3 uint8 RGB image.
    :param encoding: one of :data:`SUPPORTED_ENCODINGS`.
    :param big_endian: byte order of mono16 samples (set ``is_bigendian`` to match).
    :returns: ``(data, step)``: the message bytes and the row stride in bytes.
    :raises ValueError: not an RGB image, unsupported encoding, or odd width/height where the
        encoding needs even ones.
    """
    out, step = encode_array(rgb, encoding, big_endian)
    return out.tobytes(), step
