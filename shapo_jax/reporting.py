"""Where metrics go: metrics.csv, TensorBoard, a progress bar, and summary.json.

The CLI hands ``Reporter`` each update's metrics (arrays over seeds) as they leave the
compiled update; it writes one CSV row per seed and flushes, so a killed run loses nothing
already reported.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from typing import Any, Optional, Sequence

import numpy as np

CSV_FIRST_COLUMNS = ("update", "seed", "env_steps", "episode_return", "episode_cost", "total_cost", "multiplier")


class Reporter:
    """Writes each update's metrics: CSV rows (one per seed), TensorBoard, a progress bar.

    Args:
      num_seeds: seeds trained side by side; metrics arrive as arrays of this length.
      num_updates: updates per seed, for the progress bar.
      steps_per_update: env steps of one update of one seed.
      out_dir: directory for metrics.csv and TensorBoard events (None: no files).
      progress: show a tqdm bar with return, cost and steps/s.
      append: continue an existing metrics.csv (a resumed run) instead of starting it anew.
      purge_step: a resumed run's first env step; TensorBoard hides the killed run's events
        from there on, so re-logged updates do not appear twice.
    """

    def __init__(
        self,
        num_seeds: int,
        num_updates: int,
        steps_per_update: int,
        out_dir: Optional[str] = None,
        progress: bool = True,
        append: bool = False,
        purge_step: Optional[int] = None,
    ):
        self._append = append
        self.num_seeds = num_seeds
        self.steps_per_update = steps_per_update
        self.out_dir = out_dir
        self.steps_per_second: Optional[float] = None
        self._csv_file = None
        self._csv_writer: Optional[csv.DictWriter] = None
        self._tensorboard = None
        self._bar = None
        self._last_time: Optional[float] = None
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(os.path.join(out_dir, "tensorboard"), purge_step=purge_step)
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=num_updates, unit="update", dynamic_ncols=True)

    def log_update(self, metrics: dict[str, Any]) -> None:
        """``metrics``: name -> array [num_seeds] for one update."""
        now = time.perf_counter()
        if self._last_time is not None:
            self.steps_per_second = self.num_seeds * self.steps_per_update / max(now - self._last_time, 1e-9)
        self._last_time = now
        columns = {name: np.asarray(value).reshape(self.num_seeds, -1)[:, 0] for name, value in metrics.items()}
        rows = [
            {"seed": seed, **{name: values[seed].item() for name, values in columns.items()}}
            for seed in range(self.num_seeds)
        ]
        if self.out_dir is not None:
            self._append_csv(rows)
            for row in rows:
                for name, value in row.items():
                    if name not in ("update", "seed"):
                        self._tensorboard.add_scalar(f"{name}/seed_{row['seed']}", value, row["env_steps"])
            self._tensorboard.flush()
        if self._bar is not None:
            postfix = {
                "return": f"{columns['episode_return'].mean():.2f}",
                "cost": f"{columns['episode_cost'].mean():.2f}",
            }
            if self.steps_per_second is not None:
                postfix["steps/s"] = f"{self.steps_per_second:,.0f}"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)

    def _append_csv(self, rows: Sequence[dict[str, Any]]) -> None:
        if self._csv_writer is None:
            path = os.path.join(self.out_dir, "metrics.csv")
            names = list(CSV_FIRST_COLUMNS) + sorted(set(rows[0]) - set(CSV_FIRST_COLUMNS))
            self._csv_file = open(path, "a" if self._append else "w", newline="")
            self._csv_writer = csv.DictWriter(self._csv_file, fieldnames=names, extrasaction="ignore")
            if self._csv_file.tell() == 0:
                self._csv_writer.writeheader()
        self._csv_writer.writerows(rows)
        self._csv_file.flush()
        os.fsync(self._csv_file.fileno())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._csv_file is not None:
            self._csv_file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def truncate_metrics(out_dir: str, last_update: int) -> None:
    """Keeps metrics.csv's header and its rows up to ``last_update`` (atomically).

    A run killed after its last checkpoint may have logged later updates, and its last line
    may be cut short; the resumed run logs those updates again.
    """
    path = os.path.join(out_dir, "metrics.csv")
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        lines = [line for line in f.read().splitlines(keepends=True) if line.endswith("\n")]
    if not lines:
        os.remove(path)
        return
    header = next(csv.reader(lines[:1]))
    kept = [lines[0]]
    for line in lines[1:]:
        row = next(csv.reader([line]))
        if len(row) == len(header) and int(row[header.index("update")]) <= last_update:
            kept.append(line)
    temporary = f"{path}.tmp"
    with open(temporary, "w", newline="") as f:
        f.writelines(kept)
    os.replace(temporary, path)


# What a run writes besides config.json (replaced atomically) and its checkpoints.
RUN_OUTPUTS = ("metrics.csv", "summary.json", "policy.npz")


def clear_earlier_run(out_dir: str) -> bool:
    """Removes an earlier run's outputs from ``out_dir``, so that a new run's files never mix
    with them (a crash before its summary leaves no stale summary or policy beside the new
    config.json); returns whether there was an earlier run. Checkpoints are not touched:
    the caller refuses a directory whose checkpoints ``--resume`` could continue."""
    import glob
    import shutil

    earlier = os.path.exists(os.path.join(out_dir, "config.json"))
    paths = [os.path.join(out_dir, name) for name in RUN_OUTPUTS]
    paths += glob.glob(os.path.join(out_dir, "eval_*.json")) + glob.glob(os.path.join(out_dir, "*.tmp"))
    for path in paths:
        if os.path.isfile(path):
            earlier = True
            os.remove(path)
    tensorboard = os.path.join(out_dir, "tensorboard")
    if os.path.isdir(tensorboard):
        earlier = True
        shutil.rmtree(tensorboard)
    return earlier


def write_json(path: str, data: dict[str, Any]) -> None:
    """Writes JSON atomically (temp file, then rename), with NaN/inf as null."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        json.dump(clean(data), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)
