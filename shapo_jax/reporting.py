"""Where metrics go: metrics.csv, TensorBoard, a progress bar, Weights & Biases, summary.json.

The CLI hands ``Reporter`` each update's metrics (arrays over seeds) as they leave the
compiled update; it writes one CSV row per seed and flushes, so a killed run loses nothing
already reported. With ``--wandb-project`` the same metrics go to one wandb run for all
seeds (keys ``METRIC/seed_I`` and ``METRIC/mean``, step = env steps per seed), which keeps a
command's seeds together without one wandb process per seed.
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
WANDB_INSTALL = "pip install 'shapo-jax[wandb]' (or pip install wandb)"


def require_wandb(config) -> None:
    """Before compiling: ``--wandb-*`` needs the optional wandb package (``ConfigError`` saying
    how to install it)."""
    from shapo_jax.config import ConfigError

    if config.wandb_project is None:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("wandb_project", f"needs the wandb package, which is not installed: {WANDB_INSTALL}") from None


def start_wandb(config, logged_config: dict[str, Any]):
    """The wandb run of this command (None without ``--wandb-project``), started before
    compiling so that a login or network problem fails fast, as a ``ConfigError``."""
    from shapo_jax.config import ConfigError

    if config.wandb_project is None:
        return None
    import wandb

    try:
        return wandb.init(project=config.wandb_project, entity=config.wandb_entity, group=config.wandb_group,
                          name=config.wandb_name, config=logged_config, job_type="train")
    except Exception as error:  # noqa: BLE001 - any failure of wandb's: one line, before compiling
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError("wandb_project", f"cannot start a wandb run: {message}") from None


def wandb_row(columns: dict[str, np.ndarray]) -> dict[str, float]:
    """One update's metrics as wandb keys: each seed's value and the mean over seeds."""
    row: dict[str, float] = {"update": int(columns["update"][0])} if "update" in columns else {}
    for name, values in columns.items():
        if name in ("update", "seed", "env_steps"):
            continue
        row[f"{name}/mean"] = float(np.mean(values))
        row.update({f"{name}/seed_{seed}": float(value) for seed, value in enumerate(values)})
    return row


def wandb_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json's single values (timings, device, throughput) for the wandb run's summary."""
    return {name: value for name, value in summary.items() if isinstance(value, (bool, int, float, str))}


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
      wandb_run: a started wandb run (``start_wandb``) to mirror the metrics to; ``close``
        finishes it.
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
        wandb_run: Any = None,
    ):
        self._append = append
        self._wandb = wandb_run
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
        if self._wandb is not None:
            self._wandb.log(wandb_row(columns), step=int(columns["env_steps"][0]))
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

    def close(self, summary: Optional[dict[str, Any]] = None, failed: bool = False) -> None:
        """Closes every output; the wandb run gets ``summary``'s single values and ends
        (exit code 1 for a run stopped by a non-finite update)."""
        if self._wandb is not None:
            if summary is not None:
                self._wandb.summary.update(wandb_summary(summary))
            self._wandb.finish(exit_code=1 if failed else 0)
            self._wandb = None
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
