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
Tests of liteseg_ros.image_codecs and ros.messages: every encoding, padding, buffers, bad input.

Decoded images are checked against independent computations: the original RGB for exact
encodings, ``cv2.COLOR_RGB2GRAY`` for grey, a numpy BT.601 reference for raw YUV buffers and
hand-built Bayer mosaics for the demosaicing patterns.
"""

import array
import subprocess
import sys
import types

import cv2
from liteseg_ros import image_codecs as ic
from liteseg_ros.image_codecs import decode_compressed, decode_image, ImageDecodeError
from liteseg_ros.ros import messages
import numpy as np
import pytest

# Codecs need only numpy and OpenCV: Python 3.10/3.12 too; message tests need ROS.
pytestmark = pytest.mark.lite

EXACT = ('rgb8', 'bgr8', 'rgba8', 'bgra8', '8UC3')
GREY = ('mono8', '8UC1', 'mono16')
YUV422 = ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv')
YUV420 = ('nv12', 'nv21')
YUV = YUV422 + YUV420 + ('nv24',)
BAYER = ('bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8', 'bayer_grbg8')
BYTES_PER_PIXEL = {'rgb8': 3, 'bgr8': 3, '8UC3': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1,
                   '8UC1': 1, 'mono16': 2, 'yuv422': 2, 'uyvy': 2, 'yuv422_yuy2': 2,
                   'yuyv': 2, 'nv12': 1, 'nv21': 1, 'nv24': 1, 'bayer_rggb8': 1,
                   'bayer_bggr8': 1, 'bayer_gbrg8': 1, 'bayer_grbg8': 1}
MALFORMED_IMAGES = 1300
MALFORMED_COMPRESSED = 1100


def smooth_rgb(height=96, width=128, seed=0):
    """Return a smooth random RGB image (bilinear upsampling of a tiny random one)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def fake_msg(encoding, height, width, step, data, is_bigendian=0):
    """Return an object with the fields of sensor_msgs/Image (like a rosbags message)."""
    return types.SimpleNamespace(encoding=encoding, height=height, width=width, step=step,
                                 is_bigendian=is_bigendian, data=data)


def round_trip(rgb, encoding, **kwargs):
    data, step = ic.encode_image(rgb, encoding, **kwargs)
    big = int(kwargs.get('big_endian', False))
    return decode_image(fake_msg(encoding, rgb.shape[0], rgb.shape[1], step, data, big))


def test_supported_encodings():
    for encoding in EXACT + GREY + YUV + BAYER:
        assert encoding in ic.SUPPORTED_ENCODINGS
    assert set(ic.SUPPORTED_ENCODINGS) == set(BYTES_PER_PIXEL)


def test_module_imports_no_ros():
    code = ('import sys, liteseg_ros.image_codecs, liteseg_ros.ros.messages; '
            'bad = [m for m in sys.modules if m.split(".")[0] in '
            '("rclpy", "sensor_msgs", "std_msgs")]; assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True)


@pytest.mark.parametrize('encoding', EXACT)
@pytest.mark.parametrize('shape', [(96, 128), (37, 51), (1, 1)])
def test_exact_round_trip(encoding, shape):
    rgb = smooth_rgb(*shape, seed=1)
    rgb[::3, ::2] = 255 - rgb[::3, ::2]  # not smooth: exact encodings do not care
    out = round_trip(rgb, encoding)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_exact_encodings_byte_order():
    rgb = np.array([[[10, 20, 30]]], dtype=np.uint8)
    assert ic.encode_image(rgb, 'rgb8') == (bytes([10, 20, 30]), 3)
    assert ic.encode_image(rgb, 'bgr8') == (bytes([30, 20, 10]), 3)
    assert ic.encode_image(rgb, 'rgba8') == (bytes([10, 20, 30, 255]), 4)
    assert ic.encode_image(rgb, 'bgra8') == (bytes([30, 20, 10, 255]), 4)
    out = decode_image(fake_msg('bgra8', 1, 1, 4, bytes([30, 20, 10, 0])))
    assert out.tolist() == [[[10, 20, 30]]]


@pytest.mark.parametrize('encoding', GREY)
def test_grey_round_trip(encoding):
    rgb = smooth_rgb(40, 57, seed=2)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = round_trip(rgb, encoding)
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize('big_endian', [False, True])
def test_mono16_endianness(big_endian):
    rng = np.random.default_rng(3)
    values = rng.integers(0, 65536, (23, 31), dtype=np.uint16)
    raw = values.astype('>u2' if big_endian else '<u2').tobytes()
    out = decode_image(fake_msg('mono16', 23, 31, 62, raw, int(big_endian)))
    expected = (values >> 8).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], expected)
    # The same bytes read with the other byte order give the low bytes instead.
    other = decode_image(fake_msg('mono16', 23, 31, 62, raw, int(not big_endian)))
    np.testing.assert_array_equal(other[:, :, 0], (values & 0xFF).astype(np.uint8))
    # encode_image writes the requested byte order.
    rgb = smooth_rgb(8, 10)
    np.testing.assert_array_equal(round_trip(rgb, 'mono16', big_endian=big_endian),
                                  round_trip(rgb, 'mono8'))


@pytest.mark.parametrize('encoding', YUV)
def test_yuv_round_trip(encoding):
    rgb = smooth_rgb(96, 128, seed=4)
    diff = np.abs(round_trip(rgb, encoding).astype(int) - rgb)
    # Chroma subsampling blurs colour edges a little; 4:4:4 only rounds.
    mean_limit, max_limit = {'nv24': (0.6, 3), 'nv12': (3.5, 24), 'nv21': (3.5, 24)}.get(
        encoding, (2.5, 16))
    assert diff.mean() < mean_limit and diff.max() <= max_limit, (diff.mean(), diff.max())


@pytest.mark.parametrize('encoding', YUV)
@pytest.mark.parametrize('colour', [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 60, 30),
                                    (0, 0, 0), (255, 255, 255), (128, 128, 128)])
def test_yuv_flat_colours(encoding, colour):
    rgb = np.empty((6, 10, 3), dtype=np.uint8)
    rgb[:] = colour
    out = round_trip(rgb, encoding)
    # Two 8-bit roundings (RGB -> YUV -> RGB) of a flat colour: at most 2 grey levels.
    assert np.abs(out.astype(int) - rgb).max() <= 2, (out[0, 0], colour)


def reference_yuv_to_rgb(y, u, v):
    """BT.601 limited range, float, as an independent check of the decoders."""
    y, u, v = (np.asarray(p, dtype=np.float64) for p in (y, u, v))
    c, d, e = 1.164 * (y - 16), u - 128, v - 128
    rgb = np.stack([c + 1.596 * e, c - 0.391 * d - 0.813 * e, c + 2.018 * d], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('encoding', YUV)
def test_yuv_layout_against_reference(encoding):
    # Random bytes (no smoothness): catches swapped U/V, Y positions and plane layout.
    height, width = 6, 8
    rng = np.random.default_rng(5)
    size = {'nv12': width * height * 3 // 2, 'nv21': width * height * 3 // 2,
            'nv24': 3 * width * height}.get(encoding, 2 * width * height)
    raw = rng.integers(16, 236, size, dtype=np.uint8)
    if encoding in YUV422:
        quads = raw.reshape(height, width // 2, 4)
        if encoding in ('yuv422', 'uyvy'):
            u, y0, v, y1 = (quads[:, :, i] for i in range(4))
        else:
            y0, u, y1, v = (quads[:, :, i] for i in range(4))
        y = np.stack([y0, y1], axis=-1).reshape(height, width)
        u, v = np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1)
    elif encoding in YUV420:
        y = raw[:height * width].reshape(height, width)
        chroma = raw[height * width:].reshape(height // 2, width // 2, 2)
        u, v = (chroma[:, :, 0], chroma[:, :, 1]) if encoding == 'nv12' else \
            (chroma[:, :, 1], chroma[:, :, 0])
        u, v = (np.repeat(np.repeat(p, 2, axis=0), 2, axis=1) for p in (u, v))
    else:
        y = raw[:height * width].reshape(height, width)
        chroma = raw[height * width:].reshape(height, width, 2)
        u, v = chroma[:, :, 0], chroma[:, :, 1]
    expected = reference_yuv_to_rgb(y, u, v)
    out = decode_image(fake_msg(encoding, height, width, BYTES_PER_PIXEL[encoding] * width,
                                raw.tobytes()))
    # OpenCV's fixed-point BT.601 coefficients vs the 3-digit float ones: <= 2 grey levels.
    assert np.abs(out.astype(int) - expected).max() <= 2


def make_mosaic(rgb, pattern):
    """Sample rgb on a Bayer grid whose top-left 2x2 block is pattern (e.g. 'rggb')."""
    mosaic = np.empty(rgb.shape[:2], dtype=np.uint8)
    for index, letter in enumerate(pattern):
        dy, dx = divmod(index, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, 'rgb'.index(letter)]
    return mosaic


@pytest.mark.parametrize('encoding', BAYER)
@pytest.mark.parametrize('colour', [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 60, 30),
                                    (30, 90, 220)])
def test_bayer_flat_colours(encoding, colour):
    # A flat colour must demosaic to itself: a wrong pattern swaps or mixes channels.
    rgb = np.empty((16, 22, 3), dtype=np.uint8)
    rgb[:] = colour
    mosaic = make_mosaic(rgb, encoding[len('bayer_'):-1])
    out = decode_image(fake_msg(encoding, 16, 22, 22, mosaic.tobytes()))
    # Demosaicing averages equal neighbours and rounds: one grey level.
    assert np.abs(out.astype(int) - rgb).max() <= 1, (out[8, 8], colour)
    data, step = ic.encode_image(rgb, encoding)
    assert step == 22 and data == mosaic.tobytes()


@pytest.mark.parametrize('encoding', BAYER)
def test_bayer_round_trip(encoding):
    rgb = smooth_rgb(96, 128, seed=6)
    out = round_trip(rgb, encoding)
    diff = np.abs(out.astype(int) - rgb)
    # Two of three colours per pixel are interpolated: smooth images lose < 1 level on average.
    assert diff.mean() < 1.0, diff.mean()
    # Odd sizes decode too.
    assert round_trip(smooth_rgb(9, 13), encoding).shape == (9, 13, 3)


def pad_rows(data, rows, row_bytes, step, rng):
    """Return data (rows of row_bytes) re-laid with rows of step bytes, padding random."""
    packed = np.frombuffer(data, dtype=np.uint8).reshape(rows, row_bytes)
    padded = rng.integers(0, 256, (rows, step), dtype=np.uint8)
    padded[:, :row_bytes] = packed
    return padded.tobytes()


@pytest.mark.parametrize('encoding', sorted(BYTES_PER_PIXEL))
def test_row_padding(encoding):
    rgb = smooth_rgb(10, 14, seed=7)
    height, width = rgb.shape[:2]
    data, step = ic.encode_image(rgb, encoding)
    unpadded = decode_image(fake_msg(encoding, height, width, step, data))
    rng = np.random.default_rng(8)
    padded_step = step + 5
    if encoding in YUV420:
        padded = pad_rows(data, height * 3 // 2, step, padded_step, rng)
    elif encoding == 'nv24':
        # Y plane rows of step bytes, then UV plane rows of 2*step bytes.
        luma = pad_rows(data[:height * width], height, width, padded_step, rng)
        chroma = pad_rows(data[height * width:], height, 2 * width, 2 * padded_step, rng)
        padded = luma + chroma
    else:
        padded = pad_rows(data, height, step, padded_step, rng)
    out = decode_image(fake_msg(encoding, height, width, padded_step, padded))
    np.testing.assert_array_equal(out, unpadded)
    assert out.flags.c_contiguous


def buffer_variants(data):
    return {
        'bytes': bytes(data),
        'bytearray': bytearray(data),
        'array.array': array.array('B', data),
        'numpy': np.frombuffer(data, dtype=np.uint8).copy(),
        'memoryview': memoryview(bytes(data)),
        'list': list(data),
    }


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'yuv422', 'bayer_rggb8', 'mono16'])
def test_data_buffer_types(encoding):
    rgb = smooth_rgb(12, 16, seed=9)
    data, step = ic.encode_image(rgb, encoding)
    expected = decode_image(fake_msg(encoding, 12, 16, step, data))
    for name, variant in buffer_variants(data).items():
        out = decode_image(fake_msg(encoding, 12, 16, step, variant))
        np.testing.assert_array_equal(out, expected, err_msg=name)


def test_rgb8_is_zero_copy_and_read_only():
    rgb = smooth_rgb(12, 16)
    for name, variant in buffer_variants(rgb.tobytes()).items():
        if name == 'list':
            continue
        out = decode_image(fake_msg('rgb8', 12, 16, 48, variant))
        assert np.shares_memory(out, np.frombuffer(variant, dtype=np.uint8)), name
        assert not out.flags.writeable, name
        np.testing.assert_array_equal(out, rgb)
    # A padded rgb8 image is copied into a contiguous array.
    padded = pad_rows(rgb.tobytes(), 12, 48, 52, np.random.default_rng(0))
    out = decode_image(fake_msg('rgb8', 12, 16, 52, padded))
    assert out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, rgb)


def test_numpy_data_must_be_uint8():
    data = np.zeros(12, dtype=np.int16)
    with pytest.raises(ImageDecodeError, match="encoding 'mono8' 4x3: .*dtype int16"):
        decode_image(fake_msg('mono8', 3, 4, 4, data))
    with pytest.raises(ImageDecodeError, match='not a byte sequence'):
        decode_image(fake_msg('mono8', 1, 2, 2, [1, 300]))


def test_error_messages():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(fake_msg('rgb8', 480, 640, 1920, bytes(1000)))
    assert str(info.value) == \
        "encoding 'rgb8' 640x480: data has 1000 bytes, expected step*height = 921600"
    with pytest.raises(ImageDecodeError, match="'rgb16'.*supported: rgb8, bgr8"):
        decode_image(fake_msg('rgb16', 2, 2, 12, bytes(24)))
    with pytest.raises(ImageDecodeError, match='limited to 16384'):
        decode_image(fake_msg('mono8', 1, 20000, 20000, b''))
    with pytest.raises(ImageDecodeError, match='step 5 is smaller than .* = 6'):
        decode_image(fake_msg('rgb8', 1, 2, 5, bytes(5)))
    with pytest.raises(ImageDecodeError, match='width must be even'):
        decode_image(fake_msg('yuyv', 1, 3, 6, bytes(6)))
    with pytest.raises(ImageDecodeError, match=r'expected step\*height\*3/2 = 12'):
        decode_image(fake_msg('nv21', 2, 4, 4, bytes(8)))
    with pytest.raises(ImageDecodeError, match="no field 'encoding'"):
        decode_image(types.SimpleNamespace(height=1, width=1))


def test_encode_image_rejects_bad_input():
    with pytest.raises(ValueError, match='HxWx3 uint8'):
        ic.encode_image(np.zeros((4, 4), np.uint8), 'rgb8')
    with pytest.raises(ValueError, match='even width'):
        ic.encode_image(np.zeros((4, 5, 3), np.uint8), 'yuv422')
    with pytest.raises(ValueError, match='even width and height'):
        ic.encode_image(np.zeros((5, 4, 3), np.uint8), 'nv12')
    with pytest.raises(ValueError, match='cannot encode'):
        ic.encode_image(np.zeros((4, 4, 3), np.uint8), 'rgb16')


def fake_compressed(fmt, data):
    return types.SimpleNamespace(format=fmt, data=data)


@pytest.mark.parametrize('fmt', ['jpeg', 'bgr8; jpeg compressed bgr8',
                                 'rgb8; jpeg compressed bgr8'])
def test_decode_jpeg(fmt):
    rgb = smooth_rgb(64, 80, seed=10)
    rgb[:16, :16] = (255, 0, 0)
    ok, encoded = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    out = decode_compressed(fake_compressed(fmt, encoded.tobytes()))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    # JPEG quality 95 with 4:2:0 chroma: a few grey levels on average, more at the red edge.
    assert np.abs(out.astype(int) - rgb).mean() < 3
    assert out[4:12, 4:12, 0].min() > 230 and out[4:12, 4:12, 1:].max() < 25  # red stays red
    # Trailing zero padding after the end-of-image marker is accepted.
    padded = encoded.tobytes() + bytes(7)
    np.testing.assert_array_equal(decode_compressed(fake_compressed(fmt, padded)), out)


@pytest.mark.parametrize('ext', ['.jpg', '.png'])
def test_truncation_detected_without_opencv(ext, monkeypatch):
    # OpenCV 4 decodes a truncated JPEG with only a warning: the codec must catch it itself.
    ok, encoded = cv2.imencode(ext, smooth_rgb(16, 16))
    monkeypatch.setattr(ic.cv2, 'imdecode', lambda buf, flags: np.zeros((16, 16, 3), np.uint8))
    fmt = ext[1:].replace('jpg', 'jpeg')
    for cut in (1, 2, 20, len(encoded) // 2):
        with pytest.raises(ImageDecodeError, match='truncated'):
            decode_compressed(fake_compressed(fmt, encoded.tobytes()[:-cut]))


def test_decode_png_colour_and_grey():
    rgb = smooth_rgb(20, 30, seed=11)
    ok, encoded = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = decode_compressed(fake_compressed('bgr8; png compressed bgr8', encoded))
    np.testing.assert_array_equal(out, rgb)
    grey = rgb[:, :, 1].copy()
    ok, encoded = cv2.imencode('.png', grey)
    out = decode_compressed(fake_compressed('png', encoded.tobytes()))
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


# ---------------------------------------------------------------------------------------------
# With rclpy messages.

@pytest.fixture
def header():
    std_msgs = pytest.importorskip('std_msgs.msg')
    value = std_msgs.Header()
    value.frame_id = 'camera_optical'
    value.stamp.sec = 12
    value.stamp.nanosec = 345
    return value


def check_header(msg):
    assert msg.header.frame_id == 'camera_optical'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)


@pytest.mark.ros
@pytest.mark.parametrize('encoding', sorted(BYTES_PER_PIXEL))
def test_encoded_image_message_round_trip(encoding, header):
    rgb = smooth_rgb(24, 32, seed=12)
    msg = messages.encoded_image_message(rgb, encoding, header)
    check_header(msg)
    assert (msg.encoding, msg.height, msg.width) == (encoding, 24, 32)
    assert msg.step == 32 * BYTES_PER_PIXEL[encoding]
    assert isinstance(msg.data, array.array)
    np.testing.assert_array_equal(decode_image(msg), round_trip(rgb, encoding))


@pytest.mark.ros
def test_image_message_helpers(header):
    rgb = smooth_rgb(24, 32, seed=13)
    msg = messages.rgb8_message(rgb, header)
    check_header(msg)
    assert (msg.encoding, msg.step, msg.is_bigendian) == ('rgb8', 96, 0)
    out = decode_image(msg)
    np.testing.assert_array_equal(out, rgb)
    assert np.shares_memory(out, np.frombuffer(msg.data, dtype=np.uint8))

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(decode_image(messages.image_message(bgr, 'bgr8', header)), rgb)

    mask = (np.arange(24 * 32) % 19).astype(np.uint8).reshape(24, 32)
    msg = messages.mono8_message(mask, header)
    assert (msg.encoding, msg.step) == ('mono8', 32)
    np.testing.assert_array_equal(ic.decode_mask(msg), mask)
    np.testing.assert_array_equal(decode_image(msg)[:, :, 2], mask)

    for dtype, big in (('<u2', 0), ('>u2', 1)):
        values = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80
        msg = messages.image_message(values.astype(dtype), 'mono16')
        assert (msg.step, msg.is_bigendian) == (64, big)
        np.testing.assert_array_equal(decode_image(msg)[:, :, 0], values >> 8)

    uyvy = np.frombuffer(ic.encode_image(rgb, 'yuv422')[0], np.uint8).reshape(24, 32, 2)
    np.testing.assert_array_equal(decode_image(messages.image_message(uyvy, 'yuv422')),
                                  round_trip(rgb, 'yuv422'))


@pytest.mark.ros
def test_image_message_rejects_bad_arrays():
    pytest.importorskip('sensor_msgs.msg')
    with pytest.raises(ValueError, match='HxWx3 uint8'):
        messages.image_message(np.zeros((4, 4), np.uint8), 'rgb8')
    with pytest.raises(ValueError, match='HxW uint8'):
        messages.mono8_message(np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match='encoded_image_message'):
        messages.image_message(np.zeros((6, 4), np.uint8), 'nv12')
    with pytest.raises(ValueError, match='HxW uint8 mask'):
        messages.png_message(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.ros
def test_serialized_1080p_round_trip(header):
    serialization = pytest.importorskip('rclpy.serialization')
    from sensor_msgs.msg import Image
    rgb = np.random.default_rng(14).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    msg = messages.rgb8_message(rgb, header)
    raw = serialization.serialize_message(msg)
    assert len(raw) > 1080 * 1920 * 3
    back = serialization.deserialize_message(raw, Image)
    check_header(back)
    np.testing.assert_array_equal(decode_image(back), rgb)


@pytest.mark.ros
def test_png_message_round_trip(header):
    rng = np.random.default_rng(15)
    mask = np.kron(rng.integers(0, 19, (16, 32)), np.ones((16, 16), int)).astype(np.uint8)
    mask[::7, ::5] = 255  # ignore label, isolated pixels
    msg = messages.png_message(mask, header)
    check_header(msg)
    assert msg.format == 'mono8; png compressed'
    assert bytes(msg.data[:8]) == b'\x89PNG\r\n\x1a\n'
    np.testing.assert_array_equal(ic.decode_mask(msg), mask)
    out = decode_compressed(msg)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], mask)


def test_decode_mask_rejects_colour():
    with pytest.raises(ImageDecodeError, match="encoding 'rgb8'.*mono8 or 8UC1"):
        ic.decode_mask(fake_msg('rgb8', 1, 1, 3, bytes(3)))
    ok, encoded = cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match='single-channel 8-bit PNG'):
        ic.decode_mask(fake_compressed('png', encoded.tobytes()))


@pytest.mark.ros
def test_malformed_images_raise_image_decode_error():
    pytest.importorskip('sensor_msgs.msg')
    from malformed_images import IMAGE_KINDS, malformed_image_messages
    seen, failures = set(), []
    for description, msg in malformed_image_messages(MALFORMED_IMAGES, seed=0):
        seen.add(description.split(' (')[0].split(" '")[0])
        try:
            decode_image(msg)
        except ImageDecodeError as exc:
            if repr(msg.encoding) not in str(exc):
                failures.append('%s: message does not name the encoding: %s'
                                % (description, exc))
        except Exception as exc:  # noqa: B902 - any other type is the failure under test
            failures.append('%s: %s: %s' % (description, type(exc).__name__, exc))
        else:
            failures.append('%s: decoded without an error' % description)
    assert not failures, '\n'.join(failures[:20])
    assert seen == set(IMAGE_KINDS)


@pytest.mark.ros
def test_malformed_compressed_raise_image_decode_error():
    pytest.importorskip('sensor_msgs.msg')
    from malformed_images import COMPRESSED_KINDS, malformed_compressed_messages
    seen, failures = set(), []
    for description, msg in malformed_compressed_messages(MALFORMED_COMPRESSED, seed=0):
        seen.add(description.split(' (')[0].split(" '")[0])
        for decode in (decode_compressed, ic.decode_mask):
            try:
                decode(msg)
            except ImageDecodeError as exc:
                if repr(msg.format) not in str(exc):
                    failures.append('%s: message does not name the format: %s'
                                    % (description, exc))
            except Exception as exc:  # noqa: B902 - any other type is the failure under test
                failures.append('%s: %s: %s' % (description, type(exc).__name__, exc))
            else:
                failures.append('%s: decoded without an error' % description)
    assert not failures, '\n'.join(failures[:20])
    assert seen == set(COMPRESSED_KINDS)
