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

"""`liteseg demo` end to end: run as a subprocess, check the PNGs it writes."""

import os
from pathlib import Path
import socket
import subprocess
import sys

import cv2
from liteseg_ros.sample_images import make_street_scene
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = ('input.png', 'mask_color.png', 'overlay.png')


def run_cli(*args):
    """Run ``python -m liteseg_ros.cli ARGS`` from the source tree (no install needed)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(ROOT)] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    return subprocess.run(
        [sys.executable, '-m', 'liteseg_ros.cli'] + [str(a) for a in args],
        cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300)


def read_rgb(path):
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr is not None, 'could not read %s' % path
    assert bgr.dtype == np.uint8 and bgr.ndim == 3 and bgr.shape[2] == 3, bgr.shape
    return bgr[:, :, ::-1]


def colours_to_ids(color, palette):
    """Map each pixel colour to its palette index; -1 where the colour is not in the palette."""
    lut = np.asarray(palette, dtype=np.int64)
    codes = (color[..., 0].astype(np.int64) << 16) | (color[..., 1].astype(np.int64) << 8) \
        | color[..., 2].astype(np.int64)
    palette_codes = (lut[:, 0] << 16) | (lut[:, 1] << 8) | lut[:, 2]
    ids = np.full(codes.shape, -1, dtype=np.int64)
    for class_id, code in enumerate(palette_codes):
        ids[codes == code] = class_id
    return ids


def check_outputs(out, palette):
    """Assert the three PNGs exist, match the scene's size and are consistent; return ids."""
    for name in FILES:
        assert (out / name).is_file(), name
    image = read_rgb(out / 'input.png')
    color = read_rgb(out / 'mask_color.png')
    overlay = read_rgb(out / 'overlay.png')
    for arr in (image, color, overlay):
        assert arr.shape == (512, 1024, 3)

    # The input is the deterministic sample scene (PNG is lossless).
    np.testing.assert_array_equal(image, make_street_scene(512, 1024, seed=0))
    ids = colours_to_ids(color, palette)
    assert (ids >= 0).all(), 'mask_color.png has colours outside the palette: %s' % (
        np.unique(color[ids < 0], axis=0)[:5])
    # overlay = 0.5 * input + 0.5 * colour, rounded to uint8: within one grey level.
    expected = 0.5 * image.astype(np.float32) + 0.5 * color.astype(np.float32)
    assert np.abs(overlay.astype(np.float32) - expected).max() <= 1.0
    return ids


def test_demo_random_weights(tmp_path, monkeypatch):
    """Released weights out of reach (a closed port as the zoo mirror): random, loudly."""
    from liteseg_ros.classes import CITYSCAPES_PALETTE

    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv('LITESEG_WEIGHTS_URL', f'http://127.0.0.1:{port}')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    out = tmp_path / 'out'
    result = run_cli('demo', '--output', out, '--variant', 't')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Cannot fetch the released weights pp_liteseg_t_cityscapes_0.5' in result.stdout
    assert 'RANDOM weights' in result.stdout and 'RANDOM weights' in result.stderr
    assert 'liteseg weights get pp_liteseg_t_cityscapes_0.5' in result.stdout
    assert 'training.convert_paddle' in result.stdout
    for name in FILES:
        assert str(out / name) in result.stdout
    check_outputs(out, CITYSCAPES_PALETTE)


def test_demo_checkpoint_matches_direct_inference(tmp_path):
    torch = pytest.importorskip('torch')
    import torch.nn.functional as F

    from liteseg_ros.model import build_model, load_model, save_checkpoint

    # CamVid config: 11 classes, input size 720x960, so the demo must resize in and out.
    torch.manual_seed(0)
    ckpt = tmp_path / 'camvid_t.pt'
    save_checkpoint(ckpt, build_model('t', 11, dataset='camvid'))

    out = tmp_path / 'out'
    result = run_cli('demo', '--checkpoint', ckpt, '--output', out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'RANDOM' not in result.stdout + result.stderr

    model = load_model(ckpt)
    ids = check_outputs(out, model.config['palette'])

    # Independent computation of the mask: normalise, resize to the input size, forward,
    # resize the logits back, argmax.
    image = make_street_scene(512, 1024, seed=0)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = (x - 0.5) / 0.5
    x = F.interpolate(x, size=(720, 960), mode='bilinear', align_corners=False)
    with torch.no_grad():
        logits = model.eval()(x)
    logits = F.interpolate(logits, size=(512, 1024), mode='bilinear', align_corners=False)
    expected = logits.argmax(1)[0].numpy()
    # The demo resizes the uint8 frame with OpenCV, this with torch on floats: pixels whose
    # two best logits lie within that rounding may flip.
    assert (ids == expected).mean() > 0.999


def test_demo_missing_checkpoint_is_a_clear_error(tmp_path):
    missing = tmp_path / 'nope.pt'
    result = run_cli('demo', '--checkpoint', missing, '--output', tmp_path / 'out')
    assert result.returncode == 1
    assert str(missing) in result.stderr
    assert not (tmp_path / 'out').exists()
