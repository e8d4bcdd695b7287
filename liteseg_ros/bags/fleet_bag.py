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
One bag of a fleet: the request, the evaluation into the bag's folder, the bag's record.

:func:`evaluate_one` evaluates a bag into its own folder ``OUTPUT/<name>/`` (what the
single-bag command writes there, see ``bags.evaluation``) and ends with two files written
atomically: ``fleet_samples.npz`` (latency samples, confusion matrices, worst-frame
thumbnails), then ``fleet_result.json`` (the per-bag record). A bag's result counts once it has
that record; an attempt that dies before writing it leaves nothing that counts, and the next
attempt clears the folder first, so a retried bag is neither lost nor counted twice
(docs/bag_eval.md, "Fleet evaluation"). ``bags.fleet`` runs bags in this process,
``bags.fleet_ray`` on Ray, ``bags.fleet_report`` merges the records: all three import this
module, and it imports none of them.
"""

from dataclasses import asdict, dataclass, field
import heapq
import json
import math
from pathlib import Path
import shutil
import time

import cv2
from liteseg_ros.atomic_file import atomic_write, write_bytes_atomic
from liteseg_ros.bags.evaluation import BagEvaluation, DEFAULT_OUTPUTS, THUMB_WIDTH
from liteseg_ros.bags.report import STAGES
from liteseg_ros.inference.metrics import ConfusionMatrix
import numpy as np

RESULT_FILE = 'fleet_result.json'
SAMPLES_FILE = 'fleet_samples.npz'
RECORD_FORMAT = 'liteseg-fleet-bag/1'
#: Rows of a worst-frame thumbnail (fleet_report draws them in this order).
WORST_ROWS = ('image', 'prediction', 'label', 'overlay')
_REPORT_S = 0.5  # seconds between frame-progress reports of a running bag


class FleetError(ValueError):
    """A fleet request that cannot run (bag list, output folder, Ray); one line of text."""


@dataclass
class FleetRequest:
    """What to evaluate on every bag and how: the ``liteseg bag-eval`` options."""

    image_topics: list
    label_topics: list = field(default_factory=list)
    model: str = None
    backend: str = 'auto'
    device: str = 'auto'
    threads: int = 0
    upsample: str = 'nearest'
    batch: int = 1
    outputs: tuple = DEFAULT_OUTPUTS
    drivable_classes: tuple = ('road',)
    drivable_mode: str = 'classes'
    overlay_alpha: float = 0.5
    contact_frames: int = 4
    worst_frames: int = 8

    def load_segmenter(self):
        """Load the model (once per worker)."""
        from liteseg_ros.inference import Segmenter

        return Segmenter.from_file(self.model, self.backend, upsample=self.upsample,
                                   device=self.device, threads=self.threads)

    def describe(self):
        """Return the request as a JSON-able dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# -- one bag --------------------------------------------------------------------------------------

class _FleetBagEvaluation(BagEvaluation):
    """A bag evaluation that also keeps the worst frames by IoU and reports frame progress."""

    def __init__(self, *args, worst=8, on_frames=None, **kwargs):
        self.worst_count = int(worst)
        self.on_frames = on_frames
        super().__init__(*args, **kwargs)
        lut = np.zeros((256, 3), np.uint8)  # label colours; ignore (255) black
        lut[:self.num_classes] = np.asarray(self.segmenter.palette, np.uint8)[:self.num_classes]
        self.label_lut = lut

    def _reset(self):
        super()._reset()
        self.worst = []  # heap of (-IoU, order, caption, thumbnails): the worst N frames
        self.small = {}  # (topic, stamp) -> thumbnail RGB of a labelled frame not yet scored
        self.read_frames = 0
        self.reported = time.monotonic()

    def _read_frame(self, camera, message, tick, index):
        frame = super()._read_frame(camera, message, tick, index)
        self.read_frames += 1
        if self.on_frames is not None and time.monotonic() - self.reported > _REPORT_S:
            self.reported = time.monotonic()
            self.on_frames(self.read_frames, self.total)
        if (frame is not None and self.worst_count and camera.label_topic is not None
                and frame.stamp in camera.label_stamps):
            height, width = frame.rgb.shape[:2]
            size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
            self.small[(camera.topic, frame.stamp)] = cv2.resize(
                np.ascontiguousarray(frame.rgb), size, interpolation=cv2.INTER_AREA)
        return frame

    def _score(self, camera, stamp, mask, label, where):
        before = camera.labelled_frames
        super()._score(camera, stamp, mask, label, where)
        image = self.small.pop((camera.topic, stamp), None)
        if camera.labelled_frames == before or image is None:
            return
        frame_matrix = ConfusionMatrix(self.num_classes).update(mask, label)
        iou = frame_matrix.miou(skip_empty=True)  # this frame's classes only
        if math.isnan(iou):
            return
        if len(self.worst) >= self.worst_count and -self.worst[0][0] <= iou:
            return
        size = (image.shape[1], image.shape[0])
        small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        small_label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        rendered = self.renderer.render(('color', 'overlay'), image, small_mask)
        caption = f'{camera.topic} {stamp / 1e9:.3f}'
        pictures = (image, rendered['color'], self.label_lut[small_label], rendered['overlay'])
        heapq.heappush(self.worst, (-iou, camera.labelled_frames, caption, pictures))
        if len(self.worst) > self.worst_count:
            heapq.heappop(self.worst)

    def matrices(self):
        """Return {image topic: ConfusionMatrix} of the labelled cameras."""
        return {c.topic: c.matrix for c in self.cameras.values() if c.matrix is not None}


def _status(summary):
    """Return (status, error) of a finished single-bag summary."""
    if summary['read_error']:
        return 'failed', f"the bag cannot be read to the end: {summary['read_error']}"
    if not summary['frames']:
        return 'failed', 'no frame evaluated'
    return 'ok', None


def evaluate_one(segmenter, bag, folder, request, on_frames=None):
    """
    Evaluate one bag into ``folder`` (cleared first); return (record, arrays).

    ``record`` (JSON-able): bag, name, status ('ok', 'failed' or 'interrupted'), error, frames,
    pipeline seconds, the single-bag summary, the worst frames' IoU and captions. ``arrays``:
    latency samples, confusion matrices, worst-frame thumbnails. Both are written to the folder
    (``SAMPLES_FILE`` then ``RESULT_FILE``, atomically) unless the run was interrupted. An
    exception from the bag (it cannot be opened, a topic is missing, ...) is a failed record.
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)  # what an earlier, unfinished attempt left
    folder.mkdir(parents=True)
    record = {'format': RECORD_FORMAT, 'bag': str(bag), 'name': folder.name, 'status': 'failed',
              'error': None, 'frames': 0, 'labelled_frames': 0, 'image_messages': 0,
              'pipeline_s': 0.0, 'wall_s': 0.0, 'fps': 0.0, 'summary': None, 'worst': [],
              'matrix_topics': []}
    arrays = {'latency_ms': np.zeros(0)}
    start = time.perf_counter()
    try:
        run = _FleetBagEvaluation(
            bag, request.image_topics, segmenter, request.label_topics, folder,
            batch=request.batch, outputs=tuple(request.outputs),
            drivable_classes=tuple(request.drivable_classes),
            drivable_mode=request.drivable_mode, overlay_alpha=request.overlay_alpha,
            contact_frames=request.contact_frames, overwrite=True, progress=False,
            model_name=str(request.model), log=lambda text: None,
            worst=request.worst_frames, on_frames=on_frames)
        summary = run.run()
    except Exception as exc:  # any failure of this bag is its result; the fleet goes on
        record['error'] = f'{type(exc).__name__}: {exc}'.splitlines()[0]
    else:
        record.update(_finished(run, summary, arrays))
    record['wall_s'] = round(time.perf_counter() - start, 3)
    if record['status'] != 'interrupted':
        write_record(folder, record, arrays)
    return record, arrays


def _finished(run, summary, arrays):
    """Return the record fields of a finished run; fill ``arrays``."""
    status, error = _status(summary)
    if summary['interrupted']:
        status, error = 'interrupted', 'interrupted'
    arrays['latency_ms'] = np.asarray(run.latency_ms, np.float64)
    for stage in STAGES:
        arrays[f'stage_{stage}'] = np.asarray(run.stage_ms[stage], np.float64)
    matrices = run.matrices()
    for i, matrix in enumerate(matrices.values()):
        arrays[f'matrix_{i}'] = matrix.numpy()
    worst = sorted(run.worst, key=lambda item: (-item[0], item[1]))
    for k, (_, _, _, pictures) in enumerate(worst):
        for row, picture in zip(WORST_ROWS, pictures):
            arrays[f'worst_{k}_{row}'] = picture
    return {'status': status, 'error': error, 'frames': summary['frames'],
            'labelled_frames': summary.get('labelled_frames', 0),
            'image_messages': summary['image_messages'], 'pipeline_s': run.pipeline_s,
            'fps': summary['fps'], 'summary': summary, 'matrix_topics': list(matrices),
            'worst': [{'iou': -neg, 'caption': caption} for neg, _, caption, _ in worst]}


def write_record(folder, record, arrays):
    """Write a bag's arrays, then its record (each atomically: the record marks it complete)."""
    with atomic_write(Path(folder) / SAMPLES_FILE) as f:
        np.savez(f, **arrays)
    text = json.dumps(record, indent=1, allow_nan=False, default=_json_default) + '\n'
    write_bytes_atomic(Path(folder) / RESULT_FILE, text.encode())


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def load_record(folder, bag=None):
    """
    Return (record, arrays) of a complete bag result in ``folder``, or None.

    Complete: a readable record of status 'ok' (for ``bag`` when given) and its arrays.
    """
    folder = Path(folder)
    try:
        record = json.loads((folder / RESULT_FILE).read_text())
        if record.get('format') != RECORD_FORMAT or record.get('status') != 'ok':
            return None
        if bag is not None and Path(record['bag']).resolve() != Path(bag).resolve():
            return None
        with np.load(folder / SAMPLES_FILE) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, KeyError):
        return None
    return record, arrays


__all__ = ['FleetError', 'FleetRequest', 'RECORD_FORMAT', 'RESULT_FILE', 'SAMPLES_FILE',
           'WORST_ROWS', 'evaluate_one', 'load_record', 'write_record']
