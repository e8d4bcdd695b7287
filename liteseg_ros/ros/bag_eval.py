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
``liteseg bag-eval``: accuracy and latency of the segmenter on a recorded rosbag2.

Offline (default): read the image topics of a bag (MCAP or sqlite3, with ``rosbags``; no ROS
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

``--live`` (needs rclpy): replay the bag's image topics into the ROS graph at the recorded
rate (times ``--rate``) against a running ``segment_node``, record what the node publishes
into ``DIR/bag`` and report end-to-end latency (publish to reception of each output, matched
by header stamp), input and output rates and the frames that got no output. See
``docs/bag_eval.md``.
"""

import collections
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import shutil
import time

import cv2
from liteseg_ros.inference.drivable import drivable_area, drivable_lut, DRIVABLE_MODES
from liteseg_ros.inference.metrics import ConfusionMatrix
from liteseg_ros.ros.bags import (BagError, BagReader, BagWriter, compressed_message,
                                  COMPRESSED_TYPE, deserialize, image_message, IMAGE_TYPE,
                                  stamp_of, stamp_to_ns, typestore, with_stamp)
from liteseg_ros.ros.image_codecs import (decode_compressed, decode_image, decode_mask,
                                          ImageDecodeError)
import numpy as np

LOG = logging.getLogger('liteseg.bag_eval')

#: Outputs bag-eval can write (offline) or record (live); their message types.
OUTPUT_TYPES = {
    'mask': IMAGE_TYPE, 'mask/compressed': COMPRESSED_TYPE, 'color': IMAGE_TYPE,
    'overlay': IMAGE_TYPE, 'drivable_area': IMAGE_TYPE, 'confidence': IMAGE_TYPE,
}
OFFLINE_OUTPUTS = ('mask', 'mask/compressed', 'color', 'overlay', 'drivable_area')
DEFAULT_OUTPUTS = ('mask', 'color', 'drivable_area')
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
IGNORE_INDEX = 255
MAX_EXAMPLES = 20
STAGES = ('read', 'decode', 'preprocess', 'infer', 'postprocess', 'segment')
THUMB_WIDTH = 320
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
ERROR_KINDS = ('unsupported_messages', 'unreadable_frames', 'inference_errors',
               'unreadable_labels', 'invalid_labels', 'unmatched_labels', 'duplicate_labels',
               'frames_without_label')


# ---------------------------------------------------------------------------------------------
def percentiles(values):
    """Return {p50, p95, p99, mean, max} of ``values`` (None each when empty), rounded."""
    if not len(values):
        return {'p50': None, 'p95': None, 'p99': None, 'mean': None, 'max': None}
    array = np.asarray(values, np.float64)
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {'p50': round(float(p50), 3), 'p95': round(float(p95), 3),
            'p99': round(float(p99), 3), 'mean': round(float(array.mean()), 3),
            'max': round(float(array.max()), 3)}


# ---------------------------------------------------------------------------------------------
# Topics: output namespaces and label pairing.

def _split(topic):
    return [part for part in topic.split('/') if part]


def image_namespace(topic):
    """
    Return the namespace of an image topic: the topic without ``/compressed`` and its last name.

    ``/cam0/image_raw`` and ``/cam0/image_raw/compressed`` give ``/cam0``; ``/image_raw`` gives
    '' (outputs then go to ``/segmentation/...``), as the node names them for camera ``C``.
    """
    parts = _split(topic)
    if len(parts) > 1 and parts[-1] == 'compressed':
        parts = parts[:-1]
    return '/' + '/'.join(parts[:-1]) if len(parts) > 1 else ''


def output_topic(namespace, output):
    """Return ``<namespace>/segmentation/<output>``."""
    return f'{namespace}/segmentation/{output}'


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
        namespace = '/' + '/'.join(_split(label)[:-1]) if len(_split(label)) > 1 else ''
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


# ---------------------------------------------------------------------------------------------
# Offline evaluation.

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
                 overwrite=False, progress=True, model_name=None, log=print):
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
        self.overlay_alpha = float(overlay_alpha)
        self.contact_frames = int(contact_frames)
        self.progress = progress
        self.model_name = model_name
        self.log = log
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.class_names = list(segmenter.class_names)
        self.num_classes = len(self.class_names)
        self.drivable_lut, _ = drivable_lut(self.class_names, drivable_classes)
        self.drivable_classes = list(drivable_classes)
        self.drivable_mode = drivable_mode
        palette = np.zeros((256, 3), np.uint8)
        palette[:len(segmenter.palette)] = segmenter.palette
        self.color_luts = [np.ascontiguousarray(palette[:, c]) for c in range(3)]
        with BagReader(self.bag_path) as reader:
            reader.check_topics(self.image_topics, 'image topic')
            reader.check_topics(self.label_topics, 'label topic')
            self.storage = reader.storage
            self.topic_types = dict(reader.topics)
        pairs = pair_labels(self.image_topics, self.label_topics)
        self.cameras = {}
        for topic, label in pairs.items():
            camera = _Camera(topic, image_namespace(topic), label)
            if label is not None:
                camera.matrix = ConfusionMatrix(self.num_classes)
            self.cameras[topic] = camera
        namespaces = collections.defaultdict(list)
        for camera in self.cameras.values():
            namespaces[camera.namespace].append(camera.topic)
        clash = {ns: ts for ns, ts in namespaces.items() if len(ts) > 1}
        if clash and self.outputs and self.output_dir is not None:
            ns, topics = next(iter(clash.items()))
            raise BagError(f'image topics {", ".join(topics)} share the namespace {ns or "/"}: '
                           f'their outputs would go to the same {ns}/segmentation/ topics; '
                           'evaluate them in separate runs')
        self.label_cameras = {c.label_topic: c for c in self.cameras.values() if c.label_topic}
        self.bag_out = None
        if self.output_dir is not None and self.outputs:
            self.bag_out = self.output_dir / 'bag'
            if self.bag_out.exists():
                if not overwrite:
                    raise BagError(f'{self.bag_out} exists already; remove it, choose another '
                                   '--output or pass --overwrite')
        self.overwrite = overwrite
        self._reset()

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

        topics = self.image_topics + list(self.label_cameras)
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
        except BagError as exc:
            self._error('unreadable_frames', camera, f'{where}: {exc}')
            return None
        read_done = time.perf_counter()
        try:
            if message.msgtype == IMAGE_TYPE:
                rgb = decode_image(msg)
            else:
                rgb = decode_compressed(msg)
        except ImageDecodeError as exc:
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
            color = None
            if writer is not None:
                color = self._write_outputs(writer, frame, mask)
            if self.targets and frame.index >= self.targets[0]:
                self.targets.pop(0)
                self._thumbnail(frame, mask, color)
            if camera.label_topic is not None:
                self._on_mask(camera, frame.stamp, mask)

    def _colorize(self, mask):
        return cv2.merge([cv2.LUT(mask, lut) for lut in self.color_luts])

    def _write_outputs(self, writer, frame, mask):
        namespace = frame.camera.namespace
        header = frame.header
        color = None
        for output in self.outputs:
            topic = output_topic(namespace, output)
            if output == 'mask':
                msg = image_message(mask, 'mono8', header)
            elif output == 'mask/compressed':
                ok, png = cv2.imencode('.png', mask, PNG_PARAMS)
                msg = compressed_message(png, 'mono8; png compressed', header)
            elif output in ('color', 'overlay'):
                if color is None:
                    color = self._colorize(mask)
                if output == 'color':
                    msg = image_message(color, 'rgb8', header)
                else:
                    blend = cv2.addWeighted(np.ascontiguousarray(frame.rgb),
                                            1.0 - self.overlay_alpha, color, self.overlay_alpha,
                                            0.0)
                    msg = image_message(blend, 'rgb8', header)
            else:  # drivable_area
                msg = image_message(drivable_area(mask, self.drivable_lut, self.drivable_mode),
                                    'mono8', header)
            writer.write(topic, frame.timestamp, msg)
        return color

    def _thumbnail(self, frame, mask, color):
        height, width = mask.shape
        size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
        image = cv2.resize(np.ascontiguousarray(frame.rgb), size, interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        small_color = self._colorize(small_mask)
        blend = cv2.addWeighted(image, 1.0 - self.overlay_alpha, small_color,
                                self.overlay_alpha, 0.0)
        caption = f'{frame.camera.topic} {frame.stamp / 1e9:.3f}'
        self.thumbs.append((caption, image, small_color, blend))

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

    def _metrics(self, matrix):
        iou = matrix.iou()
        return {
            'miou': matrix.miou(),
            'miou_present_classes': matrix.miou(skip_empty=True) if matrix.present().any()
            else None,
            'pixel_accuracy': matrix.pixel_accuracy(),
            'per_class_iou': {name: float(v) for name, v in zip(self.class_names, iou)},
            'classes_present': [n for n, p in zip(self.class_names, matrix.present()) if p],
            'confusion_matrix': matrix.matrix.tolist(),
        }

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
            'drivable_classes': self.drivable_classes, 'drivable_mode': self.drivable_mode,
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
                entry.update({k: v for k, v in self._metrics(camera.matrix).items()
                              if k != 'confusion_matrix'})
                if total is None:
                    total = ConfusionMatrix(self.num_classes)
                total += camera.matrix
            summary['topics'][camera.topic] = entry
        if total is not None:
            summary['labelled_frames'] = sum(c.labelled_frames for c in self.cameras.values())
            summary.update(self._metrics(total))
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
                self._total_matrix.plot(path, self.class_names)
                files['confusion_matrix'] = str(path)
            path = self.output_dir / 'summary.json'
            files['summary'] = str(path)
            summary['files'] = files
            _write_json(path, summary)
        else:
            summary['files'] = files
        self.log(format_summary(summary))


def _write_json(path, data):
    tmp = Path(str(path) + '.tmp')
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False, default=_json_default) + '\n')
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def write_contact_sheet(path, thumbs):
    """
    Write a contact sheet PNG: one column per frame, rows image / mask colour / overlay.

    ``thumbs`` holds (caption, image, colour, overlay) RGB arrays of equal width.
    """
    label_width, caption_height, gap = 90, 22, 4
    height = max(t[1].shape[0] for t in thumbs)
    width = thumbs[0][1].shape[1]
    rows = ('image', 'mask', 'overlay')
    sheet_h = caption_height + len(rows) * (height + gap)
    sheet_w = label_width + len(thumbs) * (width + gap)
    sheet = np.full((sheet_h, sheet_w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for r, name in enumerate(rows):
        y = caption_height + r * (height + gap)
        cv2.putText(sheet, name, (6, y + height // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for c, (caption, *images) in enumerate(thumbs):
        x = label_width + c * (width + gap)
        text = caption if len(caption) <= 44 else '...' + caption[-41:]
        cv2.putText(sheet, text, (x, 15), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for r, image in enumerate(images):
            y = caption_height + r * (height + gap)
            sheet[y:y + image.shape[0], x:x + image.shape[1]] = image
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')
    return path


def _ms(value):
    return '-' if value is None else f'{value:.2f}'


def format_summary(summary):
    """Return the human-readable report of a summary."""
    lines = []
    if summary['mode'] == 'live':
        return format_live_summary(summary)
    lines.append(f"bag-eval {summary['bag']} ({summary['storage']}): model {summary['model']} "
                 f"({summary['backend']} on {summary['device']}, upsample "
                 f"{summary['upsample']}, batch {summary['batch']})")
    status = ' (INTERRUPTED: partial results)' if summary['interrupted'] else ''
    if summary['read_error']:
        status += f" (bag read stopped early: {summary['read_error']})"
    lines.append(f"frames evaluated: {summary['frames']} of {summary['image_messages']} image "
                 f'messages{status}')
    lines.append(f"FPS: {summary['fps']:.1f} (read + decode + segment), "
                 f"{summary['wall_fps']:.1f} wall clock incl. writing outputs "
                 f"({summary['wall_s']:.1f} s)")
    lines.append(f"{'latency ms':<14}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}")
    rows = [(stage, summary['stages_ms'][stage]) for stage in STAGES]
    rows.append(('total', summary['latency_ms']))
    for name, stats in rows:
        cells = ''.join(f'{_ms(stats[k]):>9}' for k in ('p50', 'p95', 'p99', 'mean'))
        lines.append(f'  {name:<12}{cells}')
    if 'miou' in summary:
        lines.append(f"accuracy on {summary['labelled_frames']} labelled frames: mIoU "
                     f"{100 * summary['miou']:.2f}% (all {len(summary['class_names'])} classes"
                     + (f", {100 * summary['miou_present_classes']:.2f}% over the "
                        f"{len(summary['classes_present'])} present"
                        if summary['miou_present_classes'] is not None else '')
                     + f"), pixel accuracy {100 * summary['pixel_accuracy']:.2f}%")
        width = max(len(n) for n in summary['class_names'])
        present = set(summary['classes_present'])
        for name, iou in summary['per_class_iou'].items():
            note = '' if name in present else '  (absent)'
            lines.append(f'  {name:<{width}}  {100 * iou:6.2f}%{note}')
        if len(summary['topics']) > 1:
            for topic, entry in summary['topics'].items():
                if 'miou' in entry:
                    lines.append(f"  {topic}: mIoU {100 * entry['miou']:.2f}% on "
                                 f"{entry['labelled_frames']} frames")
    errors = {k: v for k, v in summary['errors'].items() if v}
    if errors:
        lines.append('counted problems: ' + ', '.join(f'{k} {v}' for k, v in errors.items()))
        for example in summary['error_examples'][:8]:
            lines.append(f'  {example}')
    files = summary.get('files') or {}
    if files:
        lines.append('wrote: ' + ', '.join(files.values()))
    return '\n'.join(lines)


def evaluate_bag(bag, image_topics, segmenter, label_topics=(), output_dir=None, **options):
    """
    Evaluate ``segmenter`` on the image topics of a bag; return the summary dict.

    ``options``: batch, outputs, drivable_classes, drivable_mode, overlay_alpha,
    contact_frames, overwrite, progress, model_name, log (see :class:`BagEvaluation`).
    """
    return BagEvaluation(bag, image_topics, segmenter, label_topics, output_dir,
                         **options).run()


# ---------------------------------------------------------------------------------------------
# Live replay against a running node.

class LiveError(ValueError):
    """The live replay cannot start: no node on the topics, no rclpy, ..."""


@dataclass
class _LiveCamera:
    topic: str          # topic in the bag
    publish_topic: str  # topic published to (after --remap)
    namespace: str
    msgtype: str
    publisher: object = None
    published: int = 0
    skipped: int = 0
    sent: dict = field(default_factory=dict)       # stamp -> (publish time, original stamp, ts)
    received: dict = field(default_factory=dict)   # output -> {stamp: receive time}
    duplicates: int = 0


def _parse_remap(items):
    remap = {}
    for item in items or ():
        sep = ':=' if ':=' in item else '='
        source, _, target = item.partition(sep)
        if not source.strip() or not target.strip():
            raise ValueError(f'--remap {item!r}: expected FROM:=TO, e.g. '
                             '/camera/image_color:=/cam0/image_raw')
        remap[source.strip()] = target.strip()
    return remap


def _msg_class(msgtype):
    from sensor_msgs.msg import CompressedImage, Image

    return Image if msgtype == IMAGE_TYPE else CompressedImage


def run_live(bag, image_topics, output_dir=None, rate=1.0, outputs=DEFAULT_OUTPUTS, remap=None,
             timeout=30.0, drain=3.0, keep_stamps=False, overwrite=False, progress=True,
             log=print):
    """
    Replay image topics of ``bag`` into the ROS graph and time the node's outputs.

    Frames are published at their recorded log-time spacing divided by ``rate``; each one
    gets the current time as header stamp (``keep_stamps``: the recorded stamp, which the
    node drops as stale unless its ``max_frame_age_ms`` is 0 or it runs on sim time). The
    node's ``outputs`` under ``<namespace>/segmentation/`` are recorded (with the recorded
    stamp put back, at the input's log time) into ``output_dir/bag``. Returns the summary.
    """
    try:
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
    except ImportError as exc:
        raise LiveError(f'--live needs rclpy and sensor_msgs ({exc}); source a ROS 2 install '
                        'or install requirements-ros.txt') from None
    import queue
    import threading

    from tqdm import tqdm

    if rate <= 0:
        raise ValueError(f'--rate must be > 0, got {rate}')
    unknown = [o for o in outputs if o not in OUTPUT_TYPES]
    if unknown or not outputs:
        raise ValueError(f'--live records outputs of {", ".join(OUTPUT_TYPES)}; got '
                         f'{", ".join(unknown) or "none"}')
    remap = dict(remap or {})
    bag = Path(bag)
    with BagReader(bag) as reader:
        reader.check_topics(image_topics, 'image topic')
        storage = reader.storage
        topic_types = dict(reader.topics)
    cameras = {}
    for topic in dict.fromkeys(image_topics):
        msgtype = topic_types[topic][0]
        if msgtype not in IMAGE_TYPES:
            raise BagError(f'{topic} has type {msgtype}; --live replays sensor_msgs/msg/Image '
                           'and CompressedImage topics')
        target = remap.get(topic, topic)
        cameras[topic] = _LiveCamera(topic, target, image_namespace(target), msgtype)
    bag_out = None
    if output_dir is not None:
        output_dir = Path(output_dir)
        bag_out = output_dir / 'bag'
        if bag_out.exists():
            if not overwrite:
                raise BagError(f'{bag_out} exists already; remove it, choose another --output '
                               'or pass --overwrite')
            shutil.rmtree(bag_out)
        output_dir.mkdir(parents=True, exist_ok=True)

    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('liteseg_bag_eval_%d' % os.getpid(), context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    lock = threading.Lock()
    records = queue.SimpleQueue()
    stop = threading.Event()
    unexpected = collections.Counter()
    writer = None
    threads = []
    interrupted = False
    replay = {'start': None, 'end': None}
    try:
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for camera in cameras.values():
            camera.publisher = node.create_publisher(_msg_class(camera.msgtype),
                                                     camera.publish_topic, reliable)
        _wait_for_node(node, cameras, outputs, timeout)
        if bag_out is not None:
            writer = BagWriter(bag_out, storage)

        def on_output(raw, camera, output):
            now = time.monotonic()
            try:
                stamp = stamp_to_ns(stamp_of(raw))
            except BagError:
                unexpected['malformed'] += 1
                return
            with lock:
                sent = camera.sent.get(stamp)
                if sent is None:
                    unexpected[output] += 1
                    return
                got = camera.received[output]
                if stamp in got:
                    camera.duplicates += 1
                    return
                got[stamp] = now
            if writer is not None:
                _, original, timestamp = sent
                restored = raw if keep_stamps else with_stamp(raw, original // 10**9,
                                                              original % 10**9)
                records.put((output_topic(camera.namespace, output), timestamp, restored,
                             OUTPUT_TYPES[output]))

        for camera in cameras.values():
            for output in outputs:
                topic = output_topic(camera.namespace, output)
                qos = QoSProfile(depth=100, reliability=_publisher_reliability(node, topic))
                camera.received[output] = {}
                node.create_subscription(
                    _msg_class(OUTPUT_TYPES[output]), topic,
                    lambda raw, c=camera, o=output: on_output(raw, c, o), qos, raw=True)

        def spin():
            while not stop.is_set() and context.ok():
                executor.spin_once(timeout_sec=0.05)

        def write():
            while True:
                item = records.get()
                if item is None:
                    return
                topic, timestamp, raw, msgtype = item
                writer.write_raw(topic, timestamp, raw, msgtype)

        threads.append(threading.Thread(target=spin, name='bag_eval_spin', daemon=True))
        if writer is not None:
            threads.append(threading.Thread(target=write, name='bag_eval_writer', daemon=True))
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # let the output subscriptions match before the first frame

        with BagReader(bag) as reader:
            total = reader.count(list(cameras))
            bar = tqdm(total=total, unit='frame', desc='bag-eval --live',
                       disable=None if progress else True, dynamic_ncols=True)
            try:
                first_ts = None
                for message in reader.messages(list(cameras)):
                    camera = cameras[message.topic]
                    bar.update(1)
                    if message.msgtype not in IMAGE_TYPES:
                        camera.skipped += 1
                        continue
                    if first_ts is None:
                        first_ts = message.timestamp
                        replay['start'] = time.monotonic()
                    due = replay['start'] + (message.timestamp - first_ts) / 1e9 / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    try:
                        original = stamp_to_ns(stamp_of(message.raw))
                    except BagError:
                        camera.skipped += 1
                        continue
                    if keep_stamps:
                        stamp, raw = original, bytes(message.raw)
                    else:
                        stamp = node.get_clock().now().nanoseconds
                        raw = with_stamp(message.raw, stamp // 10**9, stamp % 10**9)
                    with lock:
                        camera.sent[stamp] = (time.monotonic(), original, message.timestamp)
                    camera.publisher.publish(raw)
                    camera.published += 1
                replay['end'] = time.monotonic()
                _drain(cameras, outputs, lock, drain)
            except KeyboardInterrupt:
                interrupted = True
                log('\nbag-eval --live: interrupted; writing the results so far')
            finally:
                bar.close()
                if replay['end'] is None:
                    replay['end'] = time.monotonic()
    finally:
        stop.set()
        records.put(None)
        for thread in threads:
            thread.join(timeout=30)
        if writer is not None:
            writer.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)

    summary = _live_summary(bag, storage, cameras, outputs, rate, replay, unexpected,
                            interrupted, keep_stamps)
    files = {}
    if bag_out is not None:
        files['bag'] = str(bag_out)
        files['summary'] = str(output_dir / 'summary.json')
        summary['files'] = files
        _write_json(output_dir / 'summary.json', summary)
    else:
        summary['files'] = files
    log(format_live_summary(summary))
    return summary


def _publisher_reliability(node, topic):
    from rclpy.qos import ReliabilityPolicy

    infos = node.get_publishers_info_by_topic(topic)
    if infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


def _wait_for_node(node, cameras, outputs, timeout):
    """Wait until every input has a subscriber and every output a publisher."""
    deadline = time.monotonic() + timeout
    while True:
        missing_in = [c.publish_topic for c in cameras.values()
                      if c.publisher.get_subscription_count() == 0]
        missing_out = [output_topic(c.namespace, o) for c in cameras.values() for o in outputs
                       if node.count_publishers(output_topic(c.namespace, o)) == 0]
        if not missing_in and not missing_out:
            return
        if time.monotonic() > deadline:
            namespaces = sorted({c.namespace.lstrip('/') or '(root)' for c in cameras.values()})
            raise LiveError(
                f'after {timeout:g} s: '
                + (f'nobody subscribes to {", ".join(missing_in)}; ' if missing_in else '')
                + (f'nobody publishes {", ".join(missing_out)}; ' if missing_out else '')
                + f'start segment_node with cameras: {namespaces} (transport raw for Image, '
                'compressed for CompressedImage topics) in the same ROS_DOMAIN_ID, or '
                "map the bag topics onto the node's with --remap FROM:=TO")
        time.sleep(0.1)


def _drain(cameras, outputs, lock, drain):
    """Wait until every frame has every output or ``drain`` s pass without a new one."""
    last_count, last_change = -1, time.monotonic()
    while True:
        with lock:
            done = all(len(c.received[o]) >= len(c.sent) for c in cameras.values()
                       for o in outputs)
            count = sum(len(c.received[o]) for c in cameras.values() for o in outputs)
        if done:
            return
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change > drain:
            return
        time.sleep(0.02)


def _live_summary(bag, storage, cameras, outputs, rate, replay, unexpected, interrupted,
                  keep_stamps):
    reference = outputs[0]
    duration = max((replay['end'] or 0) - (replay['start'] or 0), 1e-9)
    summary = {
        'mode': 'live', 'bag': str(bag), 'storage': storage, 'rate': rate,
        'outputs': list(outputs), 'reference_output': reference,
        'restamped': not keep_stamps, 'interrupted': interrupted, 'topics': {},
    }
    all_latency, all_frames, all_matched, all_times, all_sent = [], 0, 0, [], []
    for camera in cameras.values():
        published = len(camera.sent)
        sent_times = sorted(t for t, _, _ in camera.sent.values())
        all_sent += sent_times
        entry = {'publish_topic': camera.publish_topic, 'frames': published,
                 'skipped_messages': camera.skipped, 'outputs': {}}
        for output in outputs:
            got = camera.received[output]
            latency = [(got[s] - camera.sent[s][0]) * 1e3 for s in got]
            times = sorted(got.values())
            out_rate = _rate(times)
            entry['outputs'][output] = {
                'topic': output_topic(camera.namespace, output), 'received': len(got),
                'latency_ms': percentiles(latency), 'rate_hz': round(out_rate, 3)}
            if output == reference:
                missing = sorted(s for s in camera.sent if s not in got)
                entry['matched'] = len(got)
                entry['frames_without_output'] = len(missing)
                entry['missing_stamps'] = [camera.sent[s][1] / 1e9 for s in missing[:20]]
                entry['latency_ms'] = percentiles(latency)
                entry['output_rate_hz'] = round(out_rate, 3)
                entry['input_rate_hz'] = round(_rate(sent_times), 3)
                all_latency += latency
                all_frames += published
                all_matched += len(got)
                all_times += times
        summary['topics'][camera.topic] = entry
    summary.update({
        'frames': all_frames, 'matched': all_matched,
        'matched_fraction': round(all_matched / all_frames, 4) if all_frames else 0.0,
        'frames_without_output': all_frames - all_matched,
        'latency_ms': percentiles(all_latency),
        'input_rate_hz': round(_rate(sorted(all_sent)), 3),
        'output_rate_hz': round(_rate(sorted(all_times)), 3),
        'replay_s': round(duration, 3),
        'unexpected_outputs': dict(unexpected),
        'duplicate_outputs': sum(c.duplicates for c in cameras.values()),
    })
    return summary


def _rate(times):
    """Return events per second over sorted monotonic ``times`` (0 for fewer than two)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def format_live_summary(summary):
    """Return the human-readable report of a live summary."""
    lines = [f"bag-eval --live {summary['bag']} at {summary['rate']:g}x the recorded rate"
             + (' (INTERRUPTED: partial results)' if summary['interrupted'] else '')]
    lines.append(f"frames published: {summary['frames']}, with {summary['reference_output']} "
                 f"output: {summary['matched']} ({100 * summary['matched_fraction']:.1f}%), "
                 f"without: {summary['frames_without_output']}")
    lines.append(f"input rate {summary['input_rate_hz']:.2f} Hz, output rate "
                 f"{summary['output_rate_hz']:.2f} Hz")
    lat = summary['latency_ms']
    lines.append(f"end-to-end latency publish -> {summary['reference_output']} (ms): p50 "
                 f"{_ms(lat['p50'])}  p95 {_ms(lat['p95'])}  p99 {_ms(lat['p99'])}  max "
                 f"{_ms(lat['max'])}")
    for topic, entry in summary['topics'].items():
        lines.append(f"  {topic} -> {entry['publish_topic']}: {entry['matched']}/"
                     f"{entry['frames']} frames answered")
        for output, stats in entry['outputs'].items():
            lat = stats['latency_ms']
            lines.append(f"    {stats['topic']}: {stats['received']} received, p50 "
                         f"{_ms(lat['p50'])} ms, p95 {_ms(lat['p95'])} ms, "
                         f"{stats['rate_hz']:.2f} Hz")
    if summary['unexpected_outputs']:
        lines.append('outputs with stamps this replay did not send (another publisher?): '
                     f"{summary['unexpected_outputs']}")
    files = summary.get('files') or {}
    if files:
        lines.append('wrote: ' + ', '.join(files.values()))
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# Command line.

def add_arguments(parser):
    """Add ``liteseg bag-eval`` arguments to ``parser``."""
    parser.add_argument('bag', type=Path,
                        help='rosbag2 directory, or a .mcap / .db3 file (MCAP or sqlite3)')
    parser.add_argument('--image-topic', action='append', required=True, metavar='TOPIC',
                        help='sensor_msgs/Image or CompressedImage topic; repeat for several '
                             'cameras')
    parser.add_argument('--label-topic', action='append', default=[], metavar='TOPIC',
                        help='mono8 class-id label images (255 = ignore), matched to frames by '
                             'header stamp; paired with the image topic in the same namespace, '
                             'else label topic i with image topic i')
    parser.add_argument('--model', type=Path, default=None, metavar='MODEL',
                        help='checkpoint (.pt), ONNX model or TensorRT engine; required except '
                             'with --live (the running node has its own model)')
    parser.add_argument('--backend', default='auto',
                        choices=['auto', 'onnxruntime', 'torch', 'tensorrt'],
                        help='inference backend (default: by model file type)')
    parser.add_argument('--threads', type=int, default=None, help='CPU inference threads')
    parser.add_argument('--device', default=None, help='torch backend device, e.g. cuda')
    parser.add_argument('--upsample', choices=['nearest', 'bilinear'], default='nearest',
                        help="mask upsampling as the node's parameter (default: nearest)")
    parser.add_argument('--batch', type=int, default=1, metavar='N',
                        help='frames per inference call (default 1, as the node with one '
                             'camera)')
    parser.add_argument('--output', type=Path, default=Path('bag_eval_output'), metavar='DIR',
                        help='results folder: summary.json, bag/, contact_sheet.png, '
                             'confusion_matrix.png (default: ./bag_eval_output)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing DIR/bag')
    parser.add_argument('--outputs', default=None, metavar='LIST',
                        help='comma-separated outputs for DIR/bag: mask, mask/compressed, '
                             'color, overlay, drivable_area (live also: confidence), or none '
                             '(default: mask,color,drivable_area)')
    parser.add_argument('--drivable-classes', nargs='+', default=['road'], metavar='CLASS',
                        help='drivable class names, any case (default: road)')
    parser.add_argument('--drivable-mode', choices=DRIVABLE_MODES, default='classes',
                        help="as the node's drivable_mode (default: classes)")
    parser.add_argument('--overlay-alpha', type=float, default=0.5,
                        help='colour weight in overlays (default 0.5)')
    parser.add_argument('--contact-sheet', type=int, default=4, metavar='N',
                        help='frames in contact_sheet.png (default 4; 0: none)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    live = parser.add_argument_group('live replay (--live, needs rclpy and a running node)')
    live.add_argument('--live', action='store_true',
                      help='replay into the ROS graph against a running segment_node')
    live.add_argument('--rate', type=float, default=1.0,
                      help='replay speed as a multiple of the recorded rate (default 1)')
    live.add_argument('--remap', action='append', default=[], metavar='FROM:=TO',
                      help='publish bag topic FROM on topic TO (repeatable)')
    live.add_argument('--timeout', type=float, default=30.0,
                      help='seconds to wait for the node to appear (default 30)')
    live.add_argument('--drain', type=float, default=3.0,
                      help='after the last frame, wait until this many seconds pass without '
                           'a new output (default 3)')
    live.add_argument('--keep-stamps', action='store_true',
                      help='publish the recorded header stamps instead of the current time '
                           '(the node then needs max_frame_age_ms 0 or use_sim_time)')


def run(args):
    """Run ``liteseg bag-eval``; return the exit code."""
    if args.live:
        outputs = parse_outputs(args.outputs, tuple(OUTPUT_TYPES))
        if args.label_topic:
            print('bag-eval --live: label topics are not used live (accuracy is measured '
                  'offline, without --live)')
        summary = run_live(args.bag, args.image_topic, args.output, args.rate, outputs,
                           _parse_remap(args.remap), args.timeout, args.drain,
                           args.keep_stamps, args.overwrite, not args.no_progress)
        if summary['interrupted']:
            return 130
        return 0 if summary['matched'] else 1
    if args.model is None:
        raise ValueError('--model is required (a .pt checkpoint, .onnx model or .engine); '
                         "only --live runs without one, against the running node's model")
    outputs = parse_outputs(args.outputs)
    # Check topics and the output folder before the (slow) model load.
    with BagReader(args.bag) as reader:
        reader.check_topics(args.image_topic, 'image topic')
        reader.check_topics(args.label_topic, 'label topic')
    pair_labels(args.image_topic, args.label_topic)
    bag_out = args.output / 'bag'
    if outputs and bag_out.exists() and not args.overwrite:
        raise BagError(f'{bag_out} exists already; remove it, choose another --output or pass '
                       '--overwrite')
    from liteseg_ros.inference import Segmenter

    options = {}
    if args.threads:
        options['threads'] = args.threads
    if args.device:
        options['device'] = args.device
    segmenter = Segmenter.from_file(args.model, args.backend, upsample=args.upsample,
                                    **options)
    summary = evaluate_bag(
        args.bag, args.image_topic, segmenter, args.label_topic, args.output,
        batch=args.batch, outputs=outputs, drivable_classes=args.drivable_classes,
        drivable_mode=args.drivable_mode, overlay_alpha=args.overlay_alpha,
        contact_frames=args.contact_sheet, overwrite=args.overwrite,
        progress=not args.no_progress, model_name=str(args.model))
    if summary['interrupted']:
        return 130
    return 0 if summary['frames'] and not summary['read_error'] else 1


__all__ = ['BagEvaluation', 'DEFAULT_OUTPUTS', 'LiveError', 'OUTPUT_TYPES',
           'add_arguments', 'evaluate_bag', 'format_summary', 'image_namespace',
           'output_topic', 'pair_labels', 'parse_outputs', 'percentiles', 'run', 'run_live',
           'write_contact_sheet']
