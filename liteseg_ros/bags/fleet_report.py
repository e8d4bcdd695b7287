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
The fleet report: per-bag records (``bags.fleet_bag``) merged into one summary.

Only bags evaluated to the end (status 'ok') enter the merged figures: confusion matrices are
summed (per camera topic and in total) and IoU, both mIoUs and pixel accuracy are computed
from the sum, as for one bag over all those frames; latency percentiles come from the
concatenated per-frame samples, not from per-bag percentiles. A bag that failed is listed
with its error. Writes ``summary.json`` (the single-bag keys plus ``bags``, ``failed_bags``,
``per_bag``), ``bags.csv``, ``worst_frames.png`` and ``confusion_matrix.png``
(docs/bag_eval.md, "Fleet evaluation").
"""

import collections
import csv
import io
from pathlib import Path

from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.bags.evaluation import ERROR_KINDS, MAX_EXAMPLES
from liteseg_ros.bags.fleet_bag import WORST_ROWS
from liteseg_ros.bags.report import (accuracy, accuracy_lines, percentiles, STAGES,
                                     write_confusion_matrix, write_contact_sheet, write_summary)
from liteseg_ros.inference.metrics import ConfusionMatrix
import numpy as np

CSV_COLUMNS = ('name', 'bag', 'status', 'frames', 'image_messages', 'labelled_frames',
               'miou', 'miou_present_classes', 'pixel_accuracy', 'fps', 'wall_s',
               'counted_problems', 'error')


def _merge_matrices(ok):
    """Return ({topic: summed ConfusionMatrix}, class names) over the ok records."""
    topics, names = {}, None
    for record, arrays in ok:
        summary = record['summary']
        if summary.get('class_names'):
            names = names or list(summary['class_names'])
        for i, topic in enumerate(record['matrix_topics']):
            counts = np.asarray(arrays[f'matrix_{i}'], np.int64)
            if topic not in topics:
                topics[topic] = ConfusionMatrix(counts.shape[0])
            topics[topic].matrix += counts
    return topics, names


def merge(records):
    """Return the fleet figures of ``records`` [(record, arrays)] (see the module text)."""
    ok = [(r, a) for r, a in records if r['status'] == 'ok']
    frames = sum(r['frames'] for r, _ in ok)
    pipeline_s = sum(r['pipeline_s'] for r, _ in ok)
    latency = [a['latency_ms'] for _, a in ok]
    merged = {
        'frames': frames,
        'image_messages': sum(r['image_messages'] for r, _ in ok),
        'fps': round(frames / pipeline_s, 3) if pipeline_s > 0 else 0.0,
        'latency_ms': percentiles(np.concatenate(latency) if latency else []),
        'stages_ms': {stage: percentiles(np.concatenate([a[f'stage_{stage}'] for _, a in ok])
                                         if ok else []) for stage in STAGES},
    }
    errors = collections.Counter()
    examples = []
    topic_entries = {}
    for record, _ in ok:
        summary = record['summary']
        errors.update(summary['errors'])
        examples += [f"{record['name']}: {e}" for e in summary['error_examples']]
        for topic, entry in summary['topics'].items():
            total = topic_entries.setdefault(topic, {'frames': 0, 'bags': 0,
                                                     'errors': collections.Counter()})
            total['frames'] += entry['frames']
            total['bags'] += 1
            total['errors'].update(entry['errors'])
    merged['errors'] = {kind: int(errors.get(kind, 0)) for kind in ERROR_KINDS}
    merged['error_examples'] = examples[:MAX_EXAMPLES]
    matrices, names = _merge_matrices(ok)
    total = None
    for topic, entry in topic_entries.items():
        entry['errors'] = dict(entry['errors'])
        matrix = matrices.get(topic)
        if matrix is not None:
            entry['labelled_frames'] = sum(r['summary']['topics'].get(topic, {})
                                           .get('labelled_frames', 0) for r, _ in ok)
            entry.update({k: v for k, v in accuracy(matrix, names).items()
                          if k != 'confusion_matrix'})
            total = ConfusionMatrix(matrix.num_classes) if total is None else total
            total += matrix
    merged['topics'] = topic_entries
    if total is not None:
        merged['labelled_frames'] = sum(r['labelled_frames'] for r, _ in ok)
        merged.update(accuracy(total, names))
        merged['class_names'] = names
    return merged, total


def per_bag_rows(records):
    """Return one dict per bag with the ``CSV_COLUMNS``."""
    rows = []
    for record, _ in records:
        summary = record.get('summary') or {}
        problems = sum((summary.get('errors') or {}).values())
        rows.append({
            'name': record['name'], 'bag': record['bag'], 'status': record['status'],
            'frames': record['frames'], 'image_messages': record['image_messages'],
            'labelled_frames': record['labelled_frames'],
            'miou': summary.get('miou'),
            'miou_present_classes': summary.get('miou_present_classes'),
            'pixel_accuracy': summary.get('pixel_accuracy'),
            'fps': record['fps'], 'wall_s': record['wall_s'],
            'counted_problems': problems, 'error': record['error']})
    return rows


def write_csv(path, rows):
    """Write the per-bag table as CSV (empty cells for absent values), atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_COLUMNS, lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: '' if row[k] is None else row[k] for k in CSV_COLUMNS})
    write_bytes_atomic(path, text.getvalue().encode())
    return path


def worst_frames(records, count):
    """Return the ``count`` frames of lowest IoU over all ok bags as contact-sheet thumbs."""
    candidates = []
    for record, arrays in records:
        if record['status'] != 'ok':
            continue
        for k, entry in enumerate(record['worst']):
            candidates.append((entry['iou'], record['name'], k, entry['caption'], arrays))
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))
    thumbs = []
    for iou, name, k, caption, arrays in candidates[:count]:
        pictures = [arrays[f'worst_{k}_{row}'] for row in WORST_ROWS]
        thumbs.append((f'{name} {caption} IoU {100 * iou:.1f}%', *pictures))
    return thumbs


def write_fleet_report(output, records, request, wall_s, interrupted, pending, resumed=(),
                       run_info=None):
    """
    Merge ``records`` [(record, arrays)]; write the fleet files; return the summary.

    ``resumed``: the names of the bags whose records an earlier run wrote (``--resume``).
    They count in every figure but the rates over this run's ``wall_s`` (``wall_fps``,
    ``bags_per_min``).
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    merged, total = merge(records)
    statuses = collections.Counter(r['status'] for r, _ in records)
    resumed = set(resumed)
    this_run = [r for r, _ in records if r['status'] == 'ok' and r['name'] not in resumed]
    run_frames = sum(r['frames'] for r in this_run)
    failed = [{'bag': r['bag'], 'name': r['name'], 'error': r['error']}
              for r, _ in records if r['status'] == 'failed']
    first = next((r['summary'] for r, _ in records if r.get('summary')), {})
    summary = {
        'mode': 'fleet', 'bag': str(output), 'storage': None, 'model': str(request.model),
        'backend': first.get('backend', request.backend),
        'device': first.get('device', request.device), 'upsample': request.upsample,
        'batch': request.batch, 'image_topics': list(request.image_topics),
        'label_topics': list(request.label_topics),
        'bags': {'total': len(records) + len([p for p in pending if p not in
                                              {r['bag'] for r, _ in records}]),
                 'ok': statuses['ok'], 'failed': statuses['failed'],
                 'not_done': len(pending), 'resumed': len(resumed)},
        'failed_bags': failed,
        'not_done_bags': list(pending),
        'run': run_info or {},
        'wall_s': round(wall_s, 3),
        'wall_fps': round(run_frames / wall_s, 3) if wall_s > 0 else 0.0,
        'bags_per_min': round(60 * len(this_run) / wall_s, 3) if wall_s > 0 else 0.0,
        'read_error': (f'{len(failed)} of {len(records)} bags failed (failed_bags)'
                       if failed else None),
        'interrupted': bool(interrupted),
        'outputs': list(request.outputs),
    }
    summary.update(merged)
    rows = per_bag_rows(records)
    summary['per_bag'] = rows
    files = {'summary': str(output / 'summary.json'),
             'bags_csv': str(write_csv(output / 'bags.csv', rows))}
    thumbs = worst_frames(records, request.worst_frames)
    if thumbs:
        files['worst_frames'] = str(write_contact_sheet(output / 'worst_frames.png', thumbs,
                                                        WORST_ROWS))
    if total is not None and summary.get('labelled_frames'):
        files['confusion_matrix'] = str(write_confusion_matrix(
            output / 'confusion_matrix.png', total, summary['class_names']))
    summary['files'] = files
    write_summary(output / 'summary.json', summary)
    return summary


def _pct(value):
    return '-' if value is None else f'{100 * value:.2f}'


def format_fleet_summary(summary, max_rows=30):
    """Return the human-readable fleet report."""
    bags = summary['bags']
    status = ' (INTERRUPTED: partial results)' if summary['interrupted'] else ''
    lines = [f"bag-eval fleet: {bags['ok']} of {bags['total']} bags evaluated, "
             f"{bags['failed']} failed, {bags['not_done']} not done{status}; model "
             f"{summary['model']} ({summary['run'].get('mode', '')}, "
             f"{summary['run'].get('workers', 1)} workers)"]
    lines.append(f"frames: {summary['frames']}; FPS {summary['fps']:.1f} (read + decode + "
                 f"segment), {summary['bags_per_min']:.2f} bags/min wall clock "
                 f"({summary['wall_s']:.1f} s)")
    lat = summary['latency_ms']
    if lat['p50'] is not None:
        lines.append(f"latency ms over all frames: p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  "
                     f"p99 {lat['p99']:.2f}  max {lat['max']:.2f}")
    if 'miou' in summary:
        lines.append(f"accuracy on {summary['labelled_frames']} labelled frames of "
                     f"{bags['ok']} bags:")
        lines += accuracy_lines(summary)
    rows = summary['per_bag']
    if rows:
        width = max(len(r['name']) for r in rows[:max_rows])
        lines.append(f"  {'bag':<{width}}  {'frames':>6}  {'mIoU all':>8}  "
                     f"{'present':>8}  {'FPS':>6}  {'problems':>8}  status")
        for row in rows[:max_rows]:
            lines.append(f"  {row['name']:<{width}}  {row['frames']:>6}  "
                         f"{_pct(row['miou']):>8}  {_pct(row['miou_present_classes']):>8}  "
                         f"{row['fps']:>6.1f}  {row['counted_problems']:>8}  {row['status']}"
                         + (f": {row['error']}" if row['error'] else ''))
        if len(rows) > max_rows:
            lines.append(f'  ... {len(rows) - max_rows} more in bags.csv')
    errors = {k: v for k, v in summary['errors'].items() if v}
    if errors:
        lines.append('counted problems: ' + ', '.join(f'{k} {v}' for k, v in errors.items()))
    lines.append('wrote: ' + ', '.join(summary['files'].values()))
    return '\n'.join(lines)


__all__ = ['CSV_COLUMNS', 'format_fleet_summary', 'merge', 'per_bag_rows', 'worst_frames',
           'write_csv', 'write_fleet_report']
