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
Cost of the drivable ground grid per frame, and a picture of one (docs/node.md, "Ground grid").

Renders a synthetic scene (a straight road 7 m wide on grass, a car-sized box on it) for a
front and a rear camera (1920x1080 by default), takes the road pixels as their drivable areas,
and times ``GroundGrid.fuse`` over a 40 x 40 m grid at 0.1 m with one and with both cameras,
what the node adds per batch when only the grid is subscribed (drivable areas from the masks,
fusion, copying the cells into the message data), and the one-off lookup tables.

Usage::

    python benchmarks/ground_grid.py [--iterations 300] [--size 1920x1080]
        [--picture docs/images/drivable_grid.png]
"""

import argparse
import array
import math
import os
import statistics
import time

import cv2
from liteseg_ros.inference.bench import machine_description
from liteseg_ros.inference.drivable import drivable_area, drivable_lut
from liteseg_ros.inference.ground_projection import (body_pose, CameraModel, GroundGrid,
                                                     render_grid)
from liteseg_ros.inference.outputs import write_png
import numpy as np

GRID_RANGE = (-20.0, 20.0, -20.0, 20.0)
RESOLUTION = 0.1
ROAD_HALF_WIDTH = 3.5
CAR = (9.0, 13.5, -2.5, -0.7, 1.5)  # x0, x1, y0, y1, height of a box on the road
# name: (x, y, z, roll, pitch, yaw) of the camera body in base_link
CAMERAS = {'front': (1.8, 0.0, 1.5, 0.0, math.radians(10), 0.0),
           'rear': (-0.8, 0.0, 1.2, 0.0, math.radians(15), math.pi)}


def camera_model(width, height):
    """Return a pinhole CameraModel with a 78 degree horizontal field of view."""
    focal = width / 2 / math.tan(math.radians(39))
    return CameraModel.from_camera_info({
        'width': width, 'height': height, 'distortion_model': 'plumb_bob', 'd': [],
        'k': [focal, 0, (width - 1) / 2, 0, focal, (height - 1) / 2, 0, 0, 1]})


def _box_hit(origin, rays, box):
    """Return the ray parameter where each ray enters the box (inf: it misses)."""
    x0, x1, y0, y1, top = box
    low, high = np.array([x0, y0, 0.0]), np.array([x1, y1, top])
    with np.errstate(divide='ignore', invalid='ignore'):
        t0, t1 = (low - origin) / rays, (high - origin) / rays
    near = np.nanmax(np.minimum(t0, t1), axis=1)
    far = np.nanmin(np.maximum(t0, t1), axis=1)
    return np.where((near <= far) & (far > 0), near, np.inf)


def render_scene(model, pose):
    """Return (RGB image, 0/255 drivable area) of the synthetic scene seen by one camera."""
    rows, cols = np.mgrid[0:model.height, 0:model.width]
    k = model.k
    rays = np.stack([(cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1],
                     np.ones(rows.shape)], -1).reshape(-1, 3) @ pose.rotation.T
    origin = pose.position
    with np.errstate(divide='ignore'):
        ground = np.where(rays[:, 2] < 0, -origin[2] / rays[:, 2], np.inf)
    car = _box_hit(origin, rays, CAR)
    hit = origin + rays * np.where(np.isfinite(ground), ground, 0)[:, None]
    road = np.isfinite(ground) & (np.abs(hit[:, 1]) < ROAD_HALF_WIDTH) & (ground < car)
    image = np.empty((rows.size, 3), np.uint8)
    image[:] = (135, 190, 235)  # sky
    image[np.isfinite(ground)] = (125, 110, 70)  # dry grass
    image[road] = (110, 110, 115)
    image[car < ground] = (190, 40, 40)
    shape = (model.height, model.width)
    return image.reshape(shape + (3,)), road.reshape(shape).astype(np.uint8) * 255


def time_ms(function, iterations):
    """Return the median and minimum wall time of ``function()`` in ms."""
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def _panel(image, drivable, title, width):
    tinted = image.copy()
    tinted[drivable > 0] = (0.6 * tinted[drivable > 0] + (0, 100, 0)).astype(np.uint8)
    height = round(image.shape[0] * width / image.shape[1])
    small = cv2.resize(tinted, (width, height), interpolation=cv2.INTER_AREA)
    cv2.putText(small, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    return small


def picture(path, grid, fused, scenes):
    """Write the cameras' frames (drivable area tinted) beside the grid seen from above."""
    side = 480
    column = np.vstack([_panel(image, drivable, f'{name} camera', 360)
                        for name, (image, drivable) in scenes.items()])
    top = render_grid(fused)
    scale = side / top.shape[0]
    top = cv2.resize(top, (side, side), interpolation=cv2.INTER_NEAREST)
    x_min, x_max, y_min, y_max = grid.range
    for name, pose in CAMERAS.items():  # camera positions: x up, y to the left
        u = int((y_max - pose[1]) / grid.resolution * scale)
        v = int((x_max - pose[0]) / grid.resolution * scale)
        cv2.circle(top, (u, v), 5, (255, 255, 0), -1)
    cv2.putText(top, 'base_link grid, x up, y left', (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (255, 255, 255), 2)
    cv2.putText(top, 'green 0, red 100, grey -1', (8, side - 10), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, (255, 255, 255), 1)
    height = max(column.shape[0], side)
    canvas = np.full((height, column.shape[1] + side + 8, 3), 255, np.uint8)
    canvas[:column.shape[0], :column.shape[1]] = column
    canvas[:side, column.shape[1] + 8:] = top
    write_png(path, canvas)


def main():
    """Time the grid and optionally write the picture."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--iterations', type=int, default=300)
    parser.add_argument('--size', default='1920x1080', help='camera image WxH')
    parser.add_argument('--picture', help='write the grid picture (PNG) here')
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split('x'))
    model = camera_model(width, height)
    poses = {name: body_pose(*values) for name, values in CAMERAS.items()}
    scenes = {name: render_scene(model, pose) for name, pose in poses.items()}
    drivable = {name: scene[1] for name, scene in scenes.items()}
    grid = GroundGrid(GRID_RANGE, RESOLUTION)
    start = time.perf_counter()
    for name, pose in poses.items():
        grid.set_camera(name, model, pose)
    lookup_ms = (time.perf_counter() - start) * 1e3 / len(poses)
    print(f'CPU: {machine_description()}; load average {os.getloadavg()[0]:.2f}')
    print(f'grid {grid.width} x {grid.height} cells ({GRID_RANGE}, {RESOLUTION} m), cameras '
          f'{width}x{height}')
    print(f'lookup table per camera (once): {lookup_ms:.1f} ms')
    for names in (['front'], ['front', 'rear']):
        frames = {n: drivable[n] for n in names}
        grid.fuse(frames)  # the plan of this camera set is made once
        median, best = time_ms(lambda: grid.fuse(frames), args.iterations)
        print(f'fuse {"+".join(names)}: median {median:.2f} ms, min {best:.2f} ms per frame')
    masks = {n: np.where(d > 0, 0, 1).astype(np.uint8) for n, d in drivable.items()}
    lut, _ = drivable_lut(['road', 'other'], ['road'])

    def node_batch():
        # What the node adds per batch of both cameras when only the grid is subscribed:
        # drivable areas from the masks, the fusion, the OccupancyGrid's data.
        areas = {n: drivable_area(m, lut) for n, m in masks.items()}
        array.array('b').frombytes(grid.fuse(areas).tobytes())

    median, best = time_ms(node_batch, args.iterations)
    print(f'node, both cameras, drivable areas + fuse + message data: median {median:.2f} ms, '
          f'min {best:.2f} ms per batch')
    if args.picture:
        picture(args.picture, grid, grid.fuse(drivable), scenes)
        print(f'picture: {args.picture}')


if __name__ == '__main__':
    main()
