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
Procedurally generated, deterministic street-like images (pure numpy).

Used by the demo, tests and benchmarks wherever a camera-like frame is needed without
shipping or downloading images. Nothing here is meant to be realistic enough for a trained
model to segment perfectly; it is a plausible driving scene layout: sky, buildings, trees,
sidewalks, a road with lane markings, poles with signs and cars.
"""

import numpy as np

__all__ = ['make_street_scene']


def _fill_rect(img, y0, y1, x0, x1, color):
    """Fill rows [y0, y1) and columns [x0, x1) with color, clipped to the image."""
    h, w = img.shape[:2]
    y0, y1 = max(0, int(round(y0))), min(h, int(round(y1)))
    x0, x1 = max(0, int(round(x0))), min(w, int(round(x1)))
    if y0 < y1 and x0 < x1:
        img[y0:y1, x0:x1] = color


def _fill_ellipse(img, cy, cx, ry, rx, color):
    """Fill an axis-aligned ellipse centred at (cy, cx) with radii (ry, rx)."""
    h, w = img.shape[:2]
    y0, y1 = max(0, int(cy - ry)), min(h, int(cy + ry) + 1)
    x0, x1 = max(0, int(cx - rx)), min(w, int(cx + rx) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = ((yy - cy) / max(ry, 1e-6)) ** 2 + ((xx - cx) / max(rx, 1e-6)) ** 2 <= 1.0
    img[y0:y1, x0:x1][inside] = color


def _road_edges(y, horizon, height, width):
    """Return the left and right road edge x at row y (a trapezoid from the horizon down)."""
    t = (y - horizon) / max(height - horizon, 1)
    half = width * (0.04 + 0.62 * t)
    return width / 2.0 - half, width / 2.0 + half


def make_street_scene(height=512, width=1024, seed=0):
    """
    Return a deterministic street-like RGB image.

    :param height: image height in pixels (>= 16).
    :param width: image width in pixels (>= 16).
    :param seed: seed of the random layout (building sizes, cars, colours); the same
        (height, width, seed) always gives the same image.
    :return: numpy.ndarray of shape (height, width, 3), dtype uint8, RGB channel order.
    """
    if height < 16 or width < 16:
        raise ValueError('make_street_scene needs height and width >= 16, got %dx%d'
                         % (height, width))
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), dtype=np.float32)
    horizon = int(0.45 * height)
    # ``rng`` is drawn from in this order (buildings, trees, cars, noise): keep it, so that a
    # seed keeps giving the same image.
    _draw_sky_and_ground(img, horizon)
    _draw_buildings(img, horizon, rng)
    # The road again, over the building bases that crossed the horizon.
    _draw_road(img, horizon, horizon, int(horizon + 0.02 * height) + 1, kerbs=False)
    _draw_trees(img, horizon, rng)
    _draw_centre_line(img, horizon)
    _draw_poles(img, horizon)
    _draw_cars(img, horizon, rng)
    # Mild sensor noise so the image is not piecewise constant.
    img += rng.normal(0.0, 3.0, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _draw_road(img, horizon, y0, y1, kerbs):
    """Draw the road on rows [y0, y1), with a light kerb strip on each edge if ``kerbs``."""
    height, width = img.shape[:2]
    for y in range(y0, y1):
        left, right = _road_edges(y, horizon, height, width)
        _fill_rect(img, y, y + 1, left, right, (82, 82, 88))
        if kerbs:
            kerb = max(1.0, 0.012 * (right - left))
            _fill_rect(img, y, y + 1, left - kerb, left, (200, 198, 190))
            _fill_rect(img, y, y + 1, right, right + kerb, (200, 198, 190))


def _draw_sky_and_ground(img, horizon):
    """Draw the sky gradient, and below the horizon sidewalk/terrain with the road on top."""
    # Sky: vertical gradient from deep blue to hazy near the horizon.
    t = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    top, bottom = np.array([60, 120, 200], np.float32), np.array([190, 212, 232], np.float32)
    img[:horizon] = (top * (1 - t) + bottom * t)[:, None, :]
    img[horizon:] = (150, 146, 140)
    _draw_road(img, horizon, horizon, img.shape[0], kerbs=True)


def _draw_buildings(img, horizon, rng):
    """Draw a row of facades standing on the horizon, with window grids."""
    height, width = img.shape[:2]
    x = -rng.uniform(0, 0.05) * width
    while x < width:
        bw = rng.uniform(0.08, 0.2) * width
        bh = rng.uniform(0.18, 0.38) * height
        base = horizon + 0.02 * height
        color = rng.uniform(90, 190, size=3) * np.array([1.0, 0.95, 0.9])
        _fill_rect(img, base - bh, base, x, x + bw - 2, color)
        window = color * 0.55
        rows, cols = int(bh // (0.05 * height)), int(bw // (0.035 * width))
        for r in range(rows):
            for c in range(cols):
                wy = base - bh + (r + 0.3) * 0.05 * height
                wx = x + (c + 0.3) * 0.035 * width
                _fill_rect(img, wy, wy + 0.025 * height, wx, wx + 0.015 * width, window)
        x += bw


def _draw_trees(img, horizon, rng):
    """Draw trees on both sides, between the buildings and the sidewalk."""
    height, width = img.shape[:2]
    for side in (0.06, 0.2, 0.8, 0.94):
        cx = side * width + rng.uniform(-0.02, 0.02) * width
        cy = horizon - 0.02 * height
        _fill_rect(img, cy, cy + 0.1 * height, cx - 0.006 * width, cx + 0.006 * width,
                   (90, 62, 40))
        _fill_ellipse(img, cy - 0.04 * height, cx, 0.09 * height, 0.045 * width,
                      (60 + rng.uniform(-10, 10), 125 + rng.uniform(-15, 15), 50))


def _draw_centre_line(img, horizon):
    """Draw the dashed centre line, with dash length growing towards the camera."""
    height, width = img.shape[:2]
    y = float(horizon + 2)
    while y < height:
        t = (y - horizon) / (height - horizon)
        dash = 0.02 * height + 0.12 * height * t
        for yy in range(int(y), min(height, int(y + dash))):
            tt = (yy - horizon) / (height - horizon)
            hw = max(1.0, 0.004 * width * (0.2 + tt))
            _fill_rect(img, yy, yy + 1, width / 2 - hw, width / 2 + hw, (235, 235, 225))
        y += 2.2 * dash


def _draw_poles(img, horizon):
    """Draw a pole with a sign on each sidewalk."""
    height, width = img.shape[:2]
    for side in (0.12, 0.88):
        px = side * width
        top_y = horizon - 0.22 * height
        _fill_rect(img, top_y, horizon + 0.2 * height, px - 0.004 * width, px + 0.004 * width,
                   (70, 70, 75))
        _fill_rect(img, top_y, top_y + 0.05 * height, px - 0.02 * width, px + 0.02 * width,
                   (220, 180, 30))


def _draw_cars(img, horizon, rng):
    """Draw cars on the road, further ones smaller; drawn far to near."""
    height, width = img.shape[:2]
    for depth in sorted(rng.uniform(0.15, 0.85, size=3)):
        y_bottom = horizon + depth * (height - horizon)
        left, right = _road_edges(y_bottom, horizon, height, width)
        car_w = 0.42 * (right - left) / 2
        lane_centre = rng.choice([left + 0.27 * (right - left), left + 0.73 * (right - left)])
        car_h = 0.55 * car_w
        x0 = lane_centre - car_w / 2
        body = rng.uniform(20, 220, size=3)
        _fill_rect(img, y_bottom - car_h * 0.6, y_bottom - car_h * 0.1, x0, x0 + car_w, body)
        _fill_rect(img, y_bottom - car_h, y_bottom - car_h * 0.6, x0 + 0.15 * car_w,
                   x0 + 0.85 * car_w, body * 0.9)
        _fill_rect(img, y_bottom - car_h * 0.92, y_bottom - car_h * 0.62, x0 + 0.2 * car_w,
                   x0 + 0.8 * car_w, (40, 50, 60))
        for wx in (x0 + 0.08 * car_w, x0 + 0.72 * car_w):
            _fill_rect(img, y_bottom - car_h * 0.15, y_bottom, wx, wx + 0.2 * car_w,
                       (20, 20, 20))
