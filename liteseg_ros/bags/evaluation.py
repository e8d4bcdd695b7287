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
``liteseg bag-eval`` offline: accuracy and latency of the segmenter on a recorded rosbag2.

Read the image topics of a bag (MCAP or sqlite3, with ``rosbags``; no ROS
install needed), decode each ``sensor_msgs/Image`` (any encoding the node accepts) or
``CompressedImage`` (jpeg/png), run the same ``Segmenter`` as the node and report frames,
FPS and per-stage latency (read, decode, preprocess, infer, postprocess) p50/p95/p99. With
label topics (mono8 class-id images, or PNG CompressedImages, 255 = ignore) matched to frames
by exact header stamp, report per-class IoU, mIoU and pixel accuracy, computed from the
dataset-accumulated confusion matrix exactly as ``training.metrics`` (PaddleSeg) does. Into
``--output DIR`` go ``summary.json``, ``bag/`` (the node's outputs ``mask``, ``color``,
``drivable_area``... under ``<image topic namespace>/segmentation/`` with the input's log
timestamps and headers, same storage as the input), ``contact_sheet.png`` and, with labels,
``confusion_matrix.png``.

Label pairing: each label topic goes with the image topic in its namespace (``/cam0/labels``
with ``/cam0/image_raw`` or ``/cam0/image_raw/compressed``); when that does not pair every
label topic with exactly one image topic, label topic i goes with image topic i (the same
number of each must then be given).

Bad data never stops a run: messages of a type that is not an image, frames that do not
decode, labels that do not decode, have the wrong size or values, or whose stamp matches no
frame, and inference failures are counted (summary.json ``errors``, with the first examples)
and the rest is evaluated. A bag that cannot be read further ends the read early; Ctrl-C
stops it too. In every case the results so far are written (``interrupted`` says so).

The live replay against a running node is ``liteseg_ros.ros.live_replay``; the reports are
written by ``bags.report``. See ``docs/bag_eval.md``.
"""

import collections
from dataclasses import dataclass, field
from pathlib import Path
import shutil
import time

import cv2
from liteseg_ros.bags.ground_grid import BagGrid
from liteseg_ros.bags.report import (accuracy, format_summary, percentiles, STAGES,
                                     write_confusion_matrix, write_contact_sheet, write_summary)
from liteseg_ros.bags.rosbag import (BagError, BagReader, BagWriter, compressed_message,
                                     COMPRESSED_TYPE, deserialize, image_message, IMAGE_TYPE,
                                     OUTPUT_TYPES, stamp_of, stamp_to_ns, typestore)
from liteseg_ros.image_codecs import (decode_compressed, decode_image, decode_mask,
                                      ImageDecodeError)
from liteseg_ros.inference.drivable import DRIVABLE_MODES
from liteseg_ros.inference.metrics import ConfusionMatrix
from liteseg_ros.inference.outputs import image_namespace, output_topic, OutputRenderer
import numpy as np

#: Outputs an offline run can write (confidence needs a live node); the default ones.
OFFLINE_OUTPUTS = ('mask', 'mask/compressed', 'color', 'overlay', 'drivable_area',
                   'drivable_grid')
DEFAULT_OUTPUTS = ('mask', 'color', 'drivable_area')
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
IGNORE_INDEX = 255
MAX_EXAMPLES = 20
THUMB_WIDTH = 320
ERROR_KINDS = ('unsupported_messages', 'unreadable_frames', 'inference_errors',
               'unreadable_labels', 'invalid_labels', 'unmatched_labels', 'duplicate_labels',
               'frames_without_label', 'invalid_camera_info', 'frames_without_camera_info')


def pair_labels(image_topics, label_topics):
    """
    Return {image topic: label topic or None}.

    By namespace when each label topic has exactly one image topic in its namespace and no
    two share one; otherwise by position (then as many label topics as image topics).

    :raises BagError: neither rule applies, or a topic is given twice.
    """
    pairs = {topic: None for topic in image_topics}
    if not label_topics:
        return pairs
    for what, topics in (('image', image_topics), ('label', label_topics)):
        duplicates = sorted({t for t in topics if topics.count(t) > 1})
        if duplicates:
            raise BagError(f'{what} topic {", ".join(duplicates)} given more than once')
    both = sorted(set(image_topics) & set(label_topics))
    if both:
        raise BagError(f'{", ".join(both)} given both as an image and as a label topic')
    by_namespace = {}
    for label in label_topics:
        parts = [part for part in label.split('/') if part]
        namespace = '/' + '/'.join(parts[:-1]) if len(parts) > 1 else ''
        found = [t for t in image_topics if image_namespace(t) == namespace]
        if len(found) != 1 or found[0] in by_namespace.values():
            by_namespace = None
            break
        by_namespace[label] = found[0]
    if by_namespace is not None:
        for label, image in by_namespace.items():
            pairs[image] = label
        return pairs
    if len(label_topics) != len(image_topics):
        raise BagError(
            f'cannot pair label topics {", ".join(label_topics)} with image topics '
            f'{", ".join(image_topics)}: put each label topic in its camera\'s namespace '
            '(e.g. /cam0/labels for /cam0/image_raw), or give as many --label-topic as '
            '--image-topic, in the same order (label topic i goes with image topic i)')
    for image, label in zip(image_topics, label_topics):
        pairs[image] = label
    return pairs


def parse_outputs(text, allowed=OFFLINE_OUTPUTS):
    """Return the tuple of outputs named in a comma-separated list ('none': no outputs)."""
    if text is None:
        return DEFAULT_OUTPUTS
    names = [n.strip() for n in text.split(',') if n.strip()]
    if names == ['none']:
        return ()
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise ValueError(f'--outputs: unknown output(s) {", ".join(unknown) or repr(text)}; '
                         f'choose from {", ".join(allowed)} (comma-separated) or none')
    return tuple(dict.fromkeys(names))


@dataclass
class _Camera:
    topic: str
    namespace: str
    label_topic: str = None
    label_stamps: set = field(default_factory=set)
    waiting_labels: dict = field(default_factory=dict)  # stamp -> label not yet matched
    waiting_masks: dict = field(default_factory=dict)  # stamp -> mask whose label comes later
    scored: set = field(default_factory=set)
    matrix: ConfusionMatrix = None
    frames: int = 0
    labelled_frames: int = 0
    errors: collections.Counter = field(default_factory=collections.Counter)


@dataclass
class _Frame:
    camera: _Camera
    timestamp: int
    header: object
    stamp: int
    rgb: np.ndarray
    read_ms: float
    decode_ms: float
    index: int


class BagEvaluation:
    """
    One offline evaluation run; :meth:`run` returns the summary dict.

    Use :func:`evaluate_bag`; the class holds the state so that an interrupted or failing read
    still ends in written results.
    """

    def __init__(self, bag, image_topics, segmenter, label_topics=(), output_dir=None,
                 batch=1, outputs=DEFAULT_OUTPUTS, drivable_classes=('road',),
                 drivable_mode='classes', overlay_alpha=0.5, contact_frames=4,
                 overwrite=False, progress=True, model_name=None, log=print,
                 camera_poses=None):
        """Check the request (topics, outputs, output folder); nothing is read yet."""
        self.bag_path = Path(bag)
        self.image_topics = list(dict.fromkeys(image_topics))
        self.label_topics = list(label_topics or ())
        if not self.image_topics:
            raise BagError('give at least one --image-topic')
        if batch < 1:
            raise ValueError(f'--batch must be >= 1, got {batch}')
        if drivable_mode not in DRIVABLE_MODES:
            raise ValueError(f'--drivable-mode must be one of {DRIVABLE_MODES}, got '
                             f'{drivable_mode!r}')
        unknown = [o for o in outputs if o not in OFFLINE_OUTPUTS]
        if unknown:
            raise ValueError(f'outputs {unknown} cannot be produced offline; choose from '
                             f'{", ".join(OFFLINE_OUTPUTS)}')
        self.segmenter = segmenter
        self.batch = int(batch)
        self.outputs = tuple(outputs)
        self.contact_frames = int(contact_frames)
        self.progress = progress
        self.model_name = model_name
        self.log = log
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.class_names = list(segmenter.class_names)
        self.num_classes = len(self.class_names)
        # The node's renderer: the output bag holds the pixels the node would publish.
        self.renderer = OutputRenderer(self.class_names, segmenter.palette, overlay_alpha,
                                       list(drivable_classes), drivable_mode)
        with BagReader(self.bag_path) as reader:
            reader.check_topics(self.image_topics, 'image topic')
            reader.check_topics(self.label_topics, 'label topic')
            self.storage = reader.storage
            self.topic_types = dict(reader.topics)
        self.cameras = self._cameras()
        self.label_cameras = {c.label_topic: c for c in self.cameras.values() if c.label_topic}
        self.grid = (BagGrid.for_evaluation(camera_poses, self.cameras, self.topic_types)
                     if 'drivable_grid' in self.outputs else None)
        self.bag_out = None
        if self.output_dir is not None and self.outputs:
            self.bag_out = self.output_dir / 'bag'
            if self.bag_out.exists() and not overwrite:
                raise BagError(f'{self.bag_out} exists already; remove it, choose another '
                               '--output or pass --overwrite')
        self.overwrite = overwrite
        self._reset()

    def _cameras(self):
        """Return {image topic: _Camera} with the paired label topics; refuse output clashes."""
        cameras = {}
        for topic, label in pair_labels(self.image_topics, self.label_topics).items():
            camera = _Camera(topic, image_namespace(topic), label)
            if label is not None:
                camera.matrix = ConfusionMatrix(self.num_classes)
            cameras[topic] = camera
        namespaces = collections.defaultdict(list)
        for camera in cameras.values():
            namespaces[camera.namespace].append(camera.topic)
        clash = {ns: ts for ns, ts in namespaces.items() if len(ts) > 1}
        if clash and self.outputs and self.output_dir is not None:
            ns, topics = next(iter(clash.items()))
            raise BagError(f'image topics {", ".join(topics)} share the namespace {ns or "/"}: '
                           f'their outputs would go to the same {ns}/segmentation/ topics; '
                           'evaluate them in separate runs')
        return cameras

    def _reset(self):
        self.stage_ms = {stage: [] for stage in STAGES}
        self.latency_ms = []
        self.pipeline_s = 0.0
        self.errors = collections.Counter()
        self.examples = []
        self.thumbs = []
        self.frames = 0
        self.read_error = None
        self.interrupted = False
        self.total = 0
        self.targets = []

    # -- bookkeeping ---------------------------------------------------------------------------

    def _error(self, kind, camera, message, count=1):
        self.errors[kind] += count
        if camera is not None:
            camera.errors[kind] += count
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f'{kind}: {message}')

    # -- the run -------------------------------------------------------------------------------

    def run(self):
        """Evaluate; return the summary (also written to ``output_dir/summary.json``)."""
        self._reset()
        start = time.perf_counter()
        typestore()  # build it (~0.1 s) before the first timed read
        writer = None
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if self.bag_out is not None:
                if self.bag_out.exists() and self.overwrite:
                    shutil.rmtree(self.bag_out)
                writer = BagWriter(self.bag_out, self.storage)
        try:
            with BagReader(self.bag_path) as reader:
                self.total = reader.count(self.image_topics)
                if self.contact_frames > 0 and self.total:
                    count = min(self.contact_frames, self.total)
                    self.targets = sorted(set(np.linspace(0, self.total - 1, count)
                                              .round().astype(int).tolist()))
                try:
                    self._scan_labels(reader)
                    if self.grid is not None:
                        self.grid.first_camera_infos(reader)
                    self._loop(reader, writer)
                except KeyboardInterrupt:
                    self.interrupted = True
                    self.log('\nbag-eval: interrupted; writing the results so far')
        finally:
            if writer is not None:
                writer.close()
        wall_s = time.perf_counter() - start
        summary = self._summary(wall_s)
        self._write_results(summary)
        return summary

    def _scan_labels(self, reader):
        """First pass: the header stamps of every label message (no decoding)."""
        for message in reader.messages(list(self.label_cameras)):
            camera = self.label_cameras[message.topic]
            if message.msgtype not in IMAGE_TYPES:
                continue  # counted in the main pass
            try:
                stamp = stamp_to_ns(stamp_of(message.raw))
            except BagError:
                continue  # counted when the main pass fails to deserialise it
            if stamp in camera.label_stamps:
                self._error('duplicate_labels', camera, f'{message.topic}: more than one label '
                            f'with stamp {stamp / 1e9:.9f}; the first is used')
            camera.label_stamps.add(stamp)

    def _loop(self, reader, writer):
        from tqdm import tqdm

        grid_topics = self.grid.info_cameras if self.grid is not None else {}
        topics = self.image_topics + list(self.label_cameras) + list(grid_topics)
        bar = tqdm(total=self.total, unit='frame', desc='bag-eval',
                   disable=None if self.progress else True, dynamic_ncols=True)
        messages = reader.messages(topics)
        pending = []
        index = 0
        try:
            while True:
                tick = time.perf_counter()
                try:
                    message = next(messages)
                except StopIteration:
                    break
                except Exception as exc:  # a damaged bag: stop reading, keep what we have
                    self.read_error = f'{type(exc).__name__}: {exc}'
                    self.log(f'bag-eval: the bag cannot be read further ({self.read_error}); '
                             'writing the results so far')
                    break
                if message.topic in self.label_cameras:
                    self._on_label(message)
                    continue
                if message.topic in grid_topics:
                    self.grid.on_camera_info(message, self._error)
                    continue
                camera = self.cameras[message.topic]
                frame = self._read_frame(camera, message, tick, index)
                index += 1
                bar.update(1)
                if frame is None:
                    continue
                pending.append(frame)
                if len(pending) >= self.batch:
                    self._process(pending, writer)
                    pending = []
            if pending:
                self._process(pending, writer)
            if self.grid is not None and writer is not None:
                self.grid.write(writer, self.grid.flush())
        finally:
            bar.close()
            messages.close()

    def _read_frame(self, camera, message, tick, index):
        """Deserialise and decode one image message; None (counted) when that fails."""
        where = f'{message.topic} at {message.timestamp / 1e9:.9f} s'
        if message.msgtype not in IMAGE_TYPES:
            self._error('unsupported_messages', camera,
                        f'{where}: type {message.msgtype} is not sensor_msgs/msg/Image or '
                        'CompressedImage')
            return None
        try:
            msg = deserialize(message)
            read_done = time.perf_counter()
            rgb = (decode_image if message.msgtype == IMAGE_TYPE else decode_compressed)(msg)
        except (BagError, ImageDecodeError) as exc:
            self._error('unreadable_frames', camera, f'{where}: {exc}')
            return None
        decoded = time.perf_counter()
        return _Frame(camera, message.timestamp, msg.header, stamp_to_ns(msg.header.stamp), rgb,
                      (read_done - tick) * 1e3, (decoded - read_done) * 1e3, index)

    def _process(self, frames, writer):
        try:
            results = self.segmenter([f.rgb for f in frames])
        except Exception as exc:  # a model failure on these frames: count, go on
            for frame in frames:
                self._error('inference_errors', frame.camera,
                            f'{frame.camera.topic} at {frame.timestamp / 1e9:.9f} s: '
                            f'{type(exc).__name__}: {exc}')
            return
        timings = self.segmenter.timings
        segment_ms = timings.get('total', 0.0)
        self.pipeline_s += segment_ms / 1e3
        for frame, result in zip(frames, results):
            camera = frame.camera
            camera.frames += 1
            self.frames += 1
            self.pipeline_s += (frame.read_ms + frame.decode_ms) / 1e3
            self.stage_ms['read'].append(frame.read_ms)
            self.stage_ms['decode'].append(frame.decode_ms)
            for stage in ('preprocess', 'infer', 'postprocess'):
                self.stage_ms[stage].append(timings.get(stage, 0.0))
            self.stage_ms['segment'].append(segment_ms)
            self.latency_ms.append(frame.read_ms + frame.decode_ms + segment_ms)
            mask = result.mask
            if writer is not None:
                self._write_outputs(writer, frame, mask)
            if self.targets and frame.index >= self.targets[0]:
                self.targets.pop(0)
                self._thumbnail(frame, mask)
            if camera.label_topic is not None:
                self._on_mask(camera, frame.stamp, mask)

    def _write_outputs(self, writer, frame, mask):
        header = frame.header
        images = [o for o in self.outputs if o != 'drivable_grid']
        rendered = self.renderer.render(images + ['drivable_area'] * (self.grid is not None),
                                        frame.rgb, mask)
        if self.grid is not None:
            self.grid.add_frame(writer, frame, rendered['drivable_area'], self._error)
        for output in images:
            value = rendered[output]
            if output == 'mask/compressed':
                msg = compressed_message(value, 'mono8; png compressed', header)
            else:
                msg = image_message(value, 'rgb8' if value.ndim == 3 else 'mono8', header)
            writer.write(output_topic(frame.camera.namespace, output), frame.timestamp, msg)

    def _thumbnail(self, frame, mask):
        height, width = mask.shape
        size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
        image = cv2.resize(np.ascontiguousarray(frame.rgb), size, interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        small = self.renderer.render(('color', 'overlay'), image, small_mask)
        caption = f'{frame.camera.topic} {frame.stamp / 1e9:.3f}'
        self.thumbs.append((caption, image, small['color'], small['overlay']))

    # -- labels --------------------------------------------------------------------------------

    def _on_label(self, message):
        camera = self.label_cameras[message.topic]
        where = f'{message.topic} at {message.timestamp / 1e9:.9f} s'
        if message.msgtype not in IMAGE_TYPES:
            self._error('unsupported_messages', camera,
                        f'{where}: label type {message.msgtype} is not sensor_msgs/msg/Image '
                        '(mono8) or CompressedImage (png)')
            return
        try:
            msg = deserialize(message)
            label = decode_mask(msg)
        except (BagError, ImageDecodeError) as exc:
            self._error('unreadable_labels', camera, f'{where}: {exc}')
            return
        stamp = stamp_to_ns(msg.header.stamp)
        if stamp in camera.waiting_masks:
            self._score(camera, stamp, camera.waiting_masks.pop(stamp), label, where)
        elif stamp not in camera.waiting_labels and stamp not in camera.scored:
            camera.waiting_labels[stamp] = label

    def _on_mask(self, camera, stamp, mask):
        if stamp in camera.waiting_labels:
            where = f'{camera.label_topic} at stamp {stamp / 1e9:.9f}'
            self._score(camera, stamp, mask, camera.waiting_labels.pop(stamp), where)
        elif stamp in camera.label_stamps and stamp not in camera.scored:
            camera.waiting_masks[stamp] = mask
        else:
            self.errors['frames_without_label'] += 1
            camera.errors['frames_without_label'] += 1

    def _score(self, camera, stamp, mask, label, where):
        camera.scored.add(stamp)
        try:
            camera.matrix.update(mask, label)
        except ValueError as exc:
            self._error('invalid_labels', camera, f'{where}: {exc}')
            return
        camera.labelled_frames += 1

    # -- results -------------------------------------------------------------------------------

    def _finish_labels(self):
        for camera in self.cameras.values():
            if camera.label_topic is None:
                continue
            for stamp in sorted(camera.waiting_labels):
                self._error('unmatched_labels', camera,
                            f'{camera.label_topic}: label with stamp {stamp / 1e9:.9f} matches '
                            f'no evaluated frame of {camera.topic}')
            camera.waiting_labels.clear()
            # Frames whose label never arrived or could not be decoded.
            for _ in camera.waiting_masks:
                self.errors['frames_without_label'] += 1
                camera.errors['frames_without_label'] += 1
            camera.waiting_masks.clear()

    def _summary(self, wall_s):
        self._finish_labels()
        fps = self.frames / self.pipeline_s if self.pipeline_s > 0 else 0.0
        summary = {
            'mode': 'offline',
            'bag': str(self.bag_path), 'storage': self.storage,
            'model': self.model_name,
            'backend': getattr(self.segmenter.backend, 'name', None),
            'device': getattr(self.segmenter.backend, 'device', None),
            'upsample': self.segmenter.upsample, 'batch': self.batch,
            'image_topics': self.image_topics, 'label_topics': self.label_topics,
            'frames': self.frames,
            'image_messages': self.total,
            'fps': round(fps, 3),
            'wall_s': round(wall_s, 3),
            'wall_fps': round(self.frames / wall_s, 3) if wall_s > 0 else 0.0,
            'latency_ms': percentiles(self.latency_ms),
            'stages_ms': {stage: percentiles(v) for stage, v in self.stage_ms.items()},
            'errors': {kind: int(self.errors.get(kind, 0)) for kind in ERROR_KINDS},
            'error_examples': list(self.examples),
            'read_error': self.read_error,
            'interrupted': self.interrupted,
            'outputs': list(self.outputs) if self.bag_out is not None else [],
            'drivable_classes': list(self.renderer.drivable_classes),
            'drivable_mode': self.renderer.drivable_mode,
            'topics': {},
        }
        total = None
        for camera in self.cameras.values():
            entry = {
                'frames': camera.frames,
                'messages': self.topic_types.get(camera.topic, (None, 0))[1],
                'type': self.topic_types.get(camera.topic, (None, 0))[0],
                'outputs_namespace': output_topic(camera.namespace, '')[:-1],
                'label_topic': camera.label_topic,
                'errors': {kind: int(camera.errors.get(kind, 0)) for kind in ERROR_KINDS
                           if camera.errors.get(kind)},
            }
            if camera.matrix is not None:
                entry['labelled_frames'] = camera.labelled_frames
                entry.update({k: v for k, v in accuracy(camera.matrix, self.class_names).items()
                              if k != 'confusion_matrix'})
                if total is None:
                    total = ConfusionMatrix(self.num_classes)
                total += camera.matrix
            summary['topics'][camera.topic] = entry
        if total is not None:
            summary['labelled_frames'] = sum(c.labelled_frames for c in self.cameras.values())
            summary.update(accuracy(total, self.class_names))
            summary['class_names'] = self.class_names
            self._total_matrix = total
        else:
            self._total_matrix = None
        return summary

    def _write_results(self, summary):
        files = {}
        if self.output_dir is not None:
            if self.bag_out is not None:
                files['bag'] = str(self.bag_out)
            if self.thumbs:
                path = self.output_dir / 'contact_sheet.png'
                write_contact_sheet(path, self.thumbs)
                files['contact_sheet'] = str(path)
            if self._total_matrix is not None and summary.get('labelled_frames'):
                path = self.output_dir / 'confusion_matrix.png'
                write_confusion_matrix(path, self._total_matrix, self.class_names)
                files['confusion_matrix'] = str(path)
            path = self.output_dir / 'summary.json'
            files['summary'] = str(path)
            summary['files'] = files
            write_summary(path, summary)
        else:
            summary['files'] = files
        self.log(format_summary(summary))


def evaluate_bag(bag, image_topics, segmenter, label_topics=(), output_dir=None, **options):
    """
    Evaluate ``segmenter`` on the image topics of a bag; return the summary dict.

    ``options``: batch, outputs, drivable_classes, drivable_mode, overlay_alpha,
    contact_frames, overwrite, progress, model_name, log (see :class:`BagEvaluation`).
    """
    return BagEvaluation(bag, image_topics, segmenter, label_topics, output_dir,
                         **options).run()


__all__ = ['BagEvaluation', 'DEFAULT_OUTPUTS', 'OFFLINE_OUTPUTS', 'OUTPUT_TYPES',
           'evaluate_bag', 'image_namespace', 'output_topic', 'pair_labels', 'parse_outputs']
