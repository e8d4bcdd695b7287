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
Resumable HTTP downloads with a progress bar (standard library only).

:func:`download` writes into ``<target>.part`` and renames it to ``target`` only once the
server's whole body arrived. A cut transfer leaves the ``.part`` file, and the next call asks
for the rest with an HTTP ``Range`` request (a server that ignores it sends everything again).
"""

import http.client
import os
from pathlib import Path
import sys
import time
import urllib.error
import urllib.request

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
BAR_WIDTH = 30


class DownloadError(OSError):
    """
    The download of ``url`` failed for ``reason``.

    ``interrupted`` is True when a ``.part`` file is kept for the next call to resume.
    """

    def __init__(self, url, reason, interrupted=False):
        """Hold the URL, the one-line reason and whether the transfer can resume."""
        super().__init__(f'{url}: {reason}')
        self.url = url
        self.reason = reason
        self.interrupted = interrupted


def part_path(target):
    """Return the file a download of ``target`` grows in until it is complete."""
    target = Path(target)
    return target.with_name(target.name + '.part')


class Progress:
    """A one-line progress bar on ``stream``: redrawn in place on a terminal, else by tenths."""

    def __init__(self, label, total, done=0, stream=None):
        """Show ``label`` for ``total`` bytes (None: unknown), ``done`` of them already there."""
        self.label = label
        self.total = total
        self.done = done
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, 'isatty', lambda: False)())
        self._last_tenth = -1
        self._last_draw = 0.0
        self._start = time.monotonic()
        self._start_done = done

    def update(self, count):
        """Count ``count`` more bytes and redraw when it is time."""
        self.done += count
        now = time.monotonic()
        if self.live:
            if now - self._last_draw >= 0.1:
                self._last_draw = now
                self._draw('\r', '')
        elif self.total:
            tenth = 10 * self.done // self.total
            if tenth > self._last_tenth:
                self._last_tenth = tenth
                self._draw('', '\n')

    def say(self, text):
        """Write a line of text on the progress bar's stream."""
        self.stream.write(text + '\n')
        self.stream.flush()

    def close(self):
        """Draw the final state and end the line."""
        if self.live:
            self._draw('\r', '\n')
        elif not self.total:
            self._draw('', '\n')

    def _draw(self, start, end):
        mib = self.done / (1 << 20)
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = (self.done - self._start_done) / (1 << 20) / elapsed
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(BAR_WIDTH * fraction)
            text = (f'{self.label} [{"#" * filled}{"." * (BAR_WIDTH - filled)}] '
                    f'{100 * fraction:3.0f}% {mib:.1f}/{self.total / (1 << 20):.1f} MiB '
                    f'{rate:.1f} MiB/s')
        else:
            text = f'{self.label} {mib:.1f} MiB {rate:.1f} MiB/s'
        self.stream.write(start + text + end)
        self.stream.flush()


def _content_range(url, response):
    """Return (first byte, total length or None) of a 206 response's Content-Range."""
    value = response.headers.get('Content-Range', '')
    try:
        unit, spec = value.split(' ', 1)
        first_last, total = spec.split('/', 1)
        first = int(first_last.split('-', 1)[0])
    except ValueError:
        unit = None
    if unit != 'bytes':
        raise DownloadError(url, f'unreadable Content-Range {value!r}')
    return first, (int(total) if total.strip().isdigit() else None)


def _open(url, offset, timeout_s):
    request = urllib.request.Request(url, headers={'User-Agent': 'liteseg'})
    if offset:
        request.add_header('Range', f'bytes={offset}-')
    return urllib.request.urlopen(request, timeout=timeout_s)


def download(url, target, label=None, stream=None, timeout_s=TIMEOUT_S):
    """
    Download ``url`` to ``target``, resuming a ``.part`` file a cut transfer left; return it.

    :raises DownloadError: the server cannot be reached or answers with an error (nothing is
        kept), or the transfer was cut (``interrupted``: the ``.part`` file stays for the next
        call to resume).
    """
    target = Path(target)
    part = part_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, offset, timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part file is not a prefix of this file: restart
            part.unlink(missing_ok=True)
            return download(url, target, label, stream, timeout_s)
        raise DownloadError(url, f'HTTP {exc.code} {exc.reason}') from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(url, str(getattr(exc, 'reason', exc))) from None
    with response:
        total = response.headers.get('Content-Length')
        total = int(total) if total and total.isdigit() else None
        if response.status == 206:
            first, full = _content_range(url, response)
            if first != offset:
                raise DownloadError(url, f'asked for bytes from {offset}, the server sent them '
                                         f'from {first}')
            total = full if full is not None else (offset + total if total is not None
                                                   else None)
            mode = 'ab'
        else:  # 200: the whole file (no part file, or a server without Range support)
            offset, mode = 0, 'wb'
        progress = Progress(label or target.name, total, offset, stream)
        progress.say(f'downloading {url}' + (f' (resuming at byte {offset})' if offset else ''))
        received = offset
        try:
            with open(part, mode) as out:
                while True:
                    chunk = response.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    progress.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timeout
            progress.close()
            raise DownloadError(url, f'transfer cut after {received} of '
                                     f'{total if total is not None else "?"} bytes ({exc}); run '
                                     'again to resume', interrupted=True) from None
        progress.close()
    if total is not None and received != total:
        raise DownloadError(url, f'transfer cut after {received} of {total} bytes; run again '
                                 'to resume', interrupted=True)
    os.replace(part, target)
    return target
