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
bag-eval reports: the summary JSON, the text report, the contact sheet, the confusion matrix.

Pure functions of a summary dict (see docs/bag_eval.md for its fields) or of pictures, shared
by the offline evaluation (``bags.evaluation``) and the live replay (``ros.live_replay``).
"""

import json

import cv2
from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.inference.metrics import miou_label
from liteseg_ros.inference.outputs import write_png
import numpy as np

#: Latency stages of an offline run, in report order.
STAGES = ('read', 'decode', 'preprocess', 'infer', 'postprocess', 'segment')


def percentiles(values):
    """Return {p50, p95, p99, mean, max} of ``values`` (None each when empty), rounded."""
    if not len(values):
        return {'p50': None, 'p95': None, 'p99': None, 'mean': None, 'max': None}
    array = np.asarray(values, np.float64)
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {'p50': round(float(p50), 3), 'p95': round(float(p95), 3),
            'p99': round(float(p99), 3), 'mean': round(float(array.mean()), 3),
            'max': round(float(array.max()), 3)}


def accuracy(matrix, class_names):
    """
    Return mIoU, pixel accuracy, per-class IoU and the matrix of a ``ConfusionMatrix``.

    ``miou`` is PaddleSeg's (absent classes count 0, as ``per_class_iou`` keeps them),
    ``miou_present_classes`` the Cityscapes script's (absent classes skipped); ``miou_labels``
    names both with what they average.
    """
    iou = matrix.iou()
    present = matrix.present()
    return {
        'miou': matrix.miou(),
        'miou_present_classes': matrix.miou(skip_empty=True) if present.any() else None,
        'miou_labels': {'miou': matrix.miou_label(),
                        'miou_present_classes': matrix.miou_label(skip_empty=True)},
        'pixel_accuracy': matrix.pixel_accuracy(),
        'per_class_iou': {name: float(v) for name, v in zip(class_names, iou)},
        'classes_present': [n for n, p in zip(class_names, present) if p],
        'classes_absent': [n for n, p in zip(class_names, present) if not p],
        'confusion_matrix': matrix.matrix.tolist(),
    }


def accuracy_lines(summary):
    """
    Return the text lines of a summary's accuracy: both mIoUs named, per-class IoU.

    A class with neither labels nor predictions shows n/a: its IoU is undefined (PaddleSeg's
    mIoU counts it 0, the present-classes mIoU skips it).
    """
    names = summary['class_names']
    present = set(summary['classes_present'])
    labels = summary.get('miou_labels') or {
        'miou': miou_label(len(names)),
        'miou_present_classes': miou_label(len(names), len(present))}
    figures = [(labels['miou'], summary['miou'])]
    if summary['miou_present_classes'] is not None:
        figures.append((labels['miou_present_classes'], summary['miou_present_classes']))
    figures.append(('pixel accuracy', summary['pixel_accuracy']))
    width = max(len(text) for text, _ in figures)
    lines = [f'  {text:<{width}}  {100 * value:6.2f}%' for text, value in figures]
    width = max(len(n) for n in names)
    for name in names:
        iou = summary['per_class_iou'][name]
        value = f'{100 * iou:6.2f}%' if name in present else '    n/a  (absent)'
        lines.append(f'    {name:<{width}}  {value}')
    return lines


def write_summary(path, summary):
    """Write ``summary`` as indented JSON to ``path`` (atomically; NaN is refused)."""
    text = json.dumps(summary, indent=2, allow_nan=False, default=_json_default) + '\n'
    write_bytes_atomic(path, text.encode())
    return path


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def write_contact_sheet(path, thumbs, rows=('image', 'mask', 'overlay')):
    """
    Write a contact sheet PNG: one column per frame, one row per picture (named by ``rows``).

    ``thumbs`` holds (caption, image, colour, overlay) RGB arrays of equal width (as many
    pictures per frame as ``rows`` names).
    """
    label_width, caption_height, gap = 90, 22, 4
    height = max(image.shape[0] for t in thumbs for image in t[1:])
    width = thumbs[0][1].shape[1]
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
    return write_png(path, sheet)


def write_confusion_matrix(path, matrix, class_names):
    """Write the row-normalised picture of a ``ConfusionMatrix`` to ``path``."""
    matrix.plot(path, class_names)
    return path


def _mious(entry):
    """Return 'mIoU (PaddleSeg, ...) x%, mIoU (present classes, ...) y%' of an entry."""
    labels = entry.get('miou_labels') or {'miou': 'mIoU', 'miou_present_classes': None}
    text = f"{labels['miou']} {100 * entry['miou']:.2f}%"
    if entry.get('miou_present_classes') is not None and labels['miou_present_classes']:
        text += (f", {labels['miou_present_classes']} "
                 f"{100 * entry['miou_present_classes']:.2f}%")
    return text


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
        lines.append(f"accuracy on {summary['labelled_frames']} labelled frames:")
        lines += accuracy_lines(summary)
        if len(summary['topics']) > 1:
            for topic, entry in summary['topics'].items():
                if 'miou' in entry:
                    lines.append(f"  {topic} on {entry['labelled_frames']} frames: "
                                 + _mious(entry))
    errors = {k: v for k, v in summary['errors'].items() if v}
    if errors:
        lines.append('counted problems: ' + ', '.join(f'{k} {v}' for k, v in errors.items()))
        for example in summary['error_examples'][:8]:
            lines.append(f'  {example}')
    files = summary.get('files') or {}
    if files:
        lines.append('wrote: ' + ', '.join(files.values()))
    return '\n'.join(lines)


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


__all__ = ['STAGES', 'accuracy', 'accuracy_lines', 'format_live_summary', 'format_summary',
           'percentiles', 'write_confusion_matrix', 'write_contact_sheet', 'write_summary']
