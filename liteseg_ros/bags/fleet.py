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
``liteseg bag-eval BAG [BAG ...]``: many drives, one report, in-process or on Ray.

The work unit is one bag. :func:`evaluate_one` evaluates a bag into its own folder
``OUTPUT/<name>/`` (what the single-bag command writes there, see ``bags.evaluation``) and
ends with two files written atomically: ``fleet_samples.npz`` (latency samples, confusion
matrices, worst-frame thumbnails), then ``fleet_result.json`` (the per-bag record). A bag's
result counts once it has that record; an attempt that dies before writing it leaves nothing
that counts, and the next attempt clears the folder first, so a retried bag is neither lost
nor counted twice (docs/bag_eval.md, "Fleet evaluation").

:func:`run_fleet` plans the bags (``--resume`` skips those with a complete record), runs them
one after another in this process or on Ray (``bags.fleet_ray``, imported only then), and
merges the records into the fleet report (``bags.fleet_report``).
"""

from dataclasses import asdict, dataclass, field
import glob
import hashlib
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
LIST_SUFFIXES = ('.txt', '.list')
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


# -- the bag list -------------------------------------------------------------------------------

def expand_bags(items):
    """
    Return the bag paths named by ``items``: bags, globs and list files, in order, once each.

    A ``.txt`` / ``.list`` file lists one bag (or glob) per line, ``#`` starts a comment,
    relative paths are relative to the list file's folder.

    :raises FleetError: a list file or glob that names no bag.
    """
    bags = []
    for item in items:
        path = Path(item)
        if path.is_file() and path.suffix in LIST_SUFFIXES:
            lines = [line.split('#', 1)[0].strip() for line in path.read_text().splitlines()]
            named = [str(path.parent / line) if not Path(line).is_absolute() else line
                     for line in lines if line]
            if not named:
                raise FleetError(f'{path}: the bag list names no bag')
            bags += expand_bags(named)
        elif not path.exists() and glob.has_magic(str(item)):
            found = sorted(glob.glob(str(item)))
            if not found:
                raise FleetError(f'{item}: no bag matches this pattern')
            bags += [Path(p) for p in found]
        else:
            bags.append(path)
    return list(dict.fromkeys(bags))


def bag_names(bags):
    """
    Return a folder name per bag: its name (a bare file without its suffix).

    Bags whose names clash get ``-`` and a short hash of their absolute path, so a name does
    not depend on which other bags are in the list (``--resume`` finds it again).
    """
    base = [Path(b).stem if Path(b).is_file() else Path(b).name for b in bags]
    counts = {}
    for name in base:
        counts[name] = counts.get(name, 0) + 1
    names = []
    for bag, name in zip(bags, base):
        if counts[name] > 1 or not name or name.startswith('.'):
            digest = hashlib.sha1(str(Path(bag).resolve()).encode()).hexdigest()[:8]
            name = f'{name or "bag"}-{digest}'
        names.append(name)
    return names


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


# -- the fleet ------------------------------------------------------------------------------------

@dataclass
class FleetJob:
    """One bag to evaluate into ``folder``."""

    bag: Path
    folder: Path


def plan(bags, output, resume=False, overwrite=False):
    """
    Return (jobs to run, {bag: (record, arrays)} already complete) for ``bags`` in ``output``.

    :raises FleetError: ``output`` holds fleet results and neither resume nor overwrite is set.
    """
    output = Path(output)
    jobs, done = [], {}
    for bag, name in zip(bags, bag_names(bags)):
        folder = output / name
        if resume:
            loaded = load_record(folder, bag)
            if loaded is not None:
                done[str(bag)] = loaded
                continue
        elif folder.exists() and not overwrite:
            raise FleetError(f'{folder} exists already: pass --resume to evaluate only the bags '
                             'without complete results, --overwrite to start again, or choose '
                             'another --output')
        jobs.append(FleetJob(Path(bag), folder))
    return jobs, done


class _Progress:
    """A bar over bags (with its ETA) that also shows frames and frames/s."""

    def __init__(self, total, enabled):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit='bag', desc='bag-eval fleet', dynamic_ncols=True,
                        disable=None if enabled else True)
        self.done_frames = 0
        self.running = {}
        self.start = time.monotonic()

    def frames(self, name, count):
        """Note that bag ``name`` has read ``count`` frames so far."""
        self.running[name] = count
        self._postfix()

    def bag_done(self, name, frames):
        """Note a finished bag."""
        self.running.pop(name, None)
        self.done_frames += frames
        self.bar.update(1)
        self._postfix()

    def _postfix(self):
        frames = self.done_frames + sum(self.running.values())
        rate = frames / max(time.monotonic() - self.start, 1e-9)
        self.bar.set_postfix_str(f'{frames} frames, {rate:.1f} frames/s', refresh=False)

    def close(self):
        """Close the bar."""
        self.bar.close()


def run_in_process(jobs, request, on_record, progress, make_segmenter=None):
    """Evaluate the jobs one after another with one model; stop at Ctrl-C."""
    segmenter = (make_segmenter or FleetRequest.load_segmenter)(request)
    for job in jobs:
        record, arrays = evaluate_one(
            segmenter, job.bag, job.folder, request,
            on_frames=lambda count, total, name=job.folder.name: progress.frames(name, count))
        on_record(job, record, arrays)
        if record['status'] == 'interrupted':
            raise KeyboardInterrupt


def run_fleet(bags, output, request, ray_address=None, workers=0, resume=False,
              overwrite=False, progress=True, log=print, make_segmenter=None):
    """
    Evaluate ``bags`` into ``output``; return the fleet summary (also ``output/summary.json``).

    ``ray_address`` None runs in this process; 'local', 'auto' or a cluster address runs on
    Ray with ``workers`` actors (0: one per GPU, else per ``request.threads`` CPUs).
    ``make_segmenter(request)`` replaces the model loading (tests).
    """
    from liteseg_ros.bags import fleet_report

    output = Path(output)
    bags = [Path(b) for b in bags]
    if not bags:
        raise FleetError('no bag to evaluate')
    jobs, done = plan(bags, output, resume, overwrite)
    records = dict(done)
    if done:
        log(f'bag-eval: --resume: {len(done)} of {len(bags)} bags have complete results; '
            f'evaluating {len(jobs)}')
    bar = _Progress(len(jobs), progress)
    start = time.perf_counter()
    interrupted = False
    info = {'mode': 'in-process', 'workers': 1, 'threads': request.threads}

    def on_record(job, record, arrays):
        records[str(job.bag)] = (record, arrays)
        bar.bag_done(job.folder.name, record['frames'])

    try:
        if not jobs:
            pass  # --resume found every bag complete: only the report is written again
        elif ray_address is None:
            run_in_process(jobs, request, on_record, bar, make_segmenter)
        else:
            from liteseg_ros.bags import fleet_ray

            info = fleet_ray.run_on_ray(ray_address, jobs, request, workers, on_record, bar,
                                        make_segmenter, log)
    except KeyboardInterrupt:
        interrupted = True
        log('\nbag-eval: interrupted; writing the fleet summary of the bags done')
    finally:
        bar.close()
    ordered = [records[str(b)] for b in bags if str(b) in records]
    pending = [str(b) for b in bags if str(b) not in records
               or records[str(b)][0]['status'] == 'interrupted']
    summary = fleet_report.write_fleet_report(
        output, ordered, request, time.perf_counter() - start, interrupted, pending,
        resumed=len(done), run_info=info)
    log(fleet_report.format_fleet_summary(summary))
    return summary


def exit_code(summary):
    """Return 130 (interrupted), 1 (a bag failed or none ran) or 0."""
    if summary['interrupted']:
        return 130
    return 0 if summary['bags']['failed'] == 0 and summary['bags']['ok'] else 1


__all__ = ['FleetError', 'FleetJob', 'FleetRequest', 'RESULT_FILE', 'SAMPLES_FILE',
           'WORST_ROWS', 'bag_names', 'evaluate_one', 'exit_code', 'expand_bags',
           'load_record', 'plan', 'run_fleet', 'run_in_process', 'write_record']
