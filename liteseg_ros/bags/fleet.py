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

The work unit is one bag, evaluated into its own folder by ``bags.fleet_bag.evaluate_one``
(its record marks it complete). :func:`run_fleet` plans the bags (``--resume`` skips those with
a complete record), runs them one after another in this process or on Ray
(``bags.fleet_ray``, imported only then), and merges the records into the fleet report
(``bags.fleet_report``). Imports run one way: this module uses those three, ``fleet_ray`` and
``fleet_report`` use only ``fleet_bag``.
"""

from dataclasses import dataclass
import glob
import hashlib
from pathlib import Path
import time

from liteseg_ros.bags import fleet_report
from liteseg_ros.bags.fleet_bag import evaluate_one, FleetError, FleetRequest, load_record

LIST_SUFFIXES = ('.txt', '.list')


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
        resumed=[record['name'] for record, _ in done.values()], run_info=info)
    log(fleet_report.format_fleet_summary(summary))
    return summary


def exit_code(summary):
    """Return 130 (interrupted), 1 (a bag failed or none ran) or 0."""
    if summary['interrupted']:
        return 130
    return 0 if summary['bags']['failed'] == 0 and summary['bags']['ok'] else 1


__all__ = ['FleetJob', 'bag_names', 'exit_code', 'expand_bags', 'plan', 'run_fleet',
           'run_in_process']
