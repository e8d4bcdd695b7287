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
Training logs: ``train_log.csv``, ``training_curves.png`` and TensorBoard scalars.

The CSV log is the record a resumed run continues (rows past the checkpoint are dropped); the
curves are drawn from it; TensorBoard is optional (skipped when the package is missing).
"""

import csv
import io
from pathlib import Path

from liteseg_ros.atomic_file import atomic_write, write_bytes_atomic

CSV_NAME = 'train_log.csv'
CURVES_NAME = 'training_curves.png'
CSV_FIELDS = ('iteration', 'loss', 'lr', 'it_s', 'data_s', 'miou')


class CsvLog:
    """``train_log.csv``: one row per logged iteration (``miou`` filled at evaluations)."""

    def __init__(self, path, start_iteration):
        """Open ``path``, dropping rows past ``start_iteration`` (written after last.pt)."""
        self.path = Path(path)
        rows = read_csv(self.path) if start_iteration > 0 else []
        rows = [r for r in rows if int(float(r['iteration'])) <= start_iteration]
        with atomic_write(self.path) as f:
            f.write(self._format(rows))

    @staticmethod
    def _format(rows):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, lineterminator='\n')
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, '') for k in CSV_FIELDS})
        return text.getvalue().encode()

    def append(self, **row):
        with open(self.path, 'a', newline='') as f:
            csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator='\n').writerow(
                {k: _csv_value(row.get(k)) for k in CSV_FIELDS})


def _csv_value(value):
    if value is None:
        return ''
    if isinstance(value, float):
        return f'{value:.8g}'
    return value


def read_csv(path):
    """Return the rows of a training CSV log as dicts of strings ([] when absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def plot_curves(csv_path, png_path):
    """Draw loss, learning rate and mIoU against iteration from the CSV log into a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = read_csv(csv_path)

    def series(key):
        pairs = [(float(r['iteration']), float(r[key])) for r in rows if r.get(key)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for ax, key, label in zip(axes, ('loss', 'lr', 'miou'),
                              ('training loss', 'learning rate', 'val mIoU')):
        x, y = series(key)
        ax.plot(x, y, marker='o' if key == 'miou' else None, markersize=4)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if key == 'miou' and y:
            best = max(range(len(y)), key=y.__getitem__)
            ax.annotate(f'best {y[best]:.4f} @ {int(x[best])}', (x[best], y[best]),
                        textcoords='offset points', xytext=(-6, -14), ha='right', fontsize=8)
    axes[-1].set_xlabel('iteration')
    axes[0].set_title(f'training curves ({Path(csv_path).parent.name})')
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=100)
    plt.close(fig)
    write_bytes_atomic(png_path, buffer.getvalue())


class TensorBoard:
    """SummaryWriter when the tensorboard package is importable, otherwise a no-op."""

    def __init__(self, log_dir, purge_step, log):
        """Open ``log_dir``; say once when TensorBoard logging is skipped."""
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            log(f'TensorBoard logging skipped: {exc} (pip install tensorboard)')
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step or None)

    def scalar(self, tag, value, step):
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def close(self):
        if self.writer is not None:
            self.writer.close()


def redraw_curves(out, log):
    """Redraw ``training_curves.png`` of ``out``; without matplotlib say so once."""
    try:
        plot_curves(out / CSV_NAME, out / CURVES_NAME)
    except ImportError as exc:
        if not getattr(redraw_curves, 'warned', False):
            log(f'training curves skipped: {exc} (pip install matplotlib)')
            redraw_curves.warned = True
