"""``shapo-plot``: learning curves of shapo-train runs, side by side.

Episode return, episode cost (with the cost limit drawn) and the cost paid during training,
against env steps per seed: the mean over seeds with a band, one line per experiment. Runs
whose training settings are equal (the seeds of one experiment, e.g. ``'runs/pidlag-*'``)
are pooled into one line; the legend names each line by its config (algo, rho, and whatever
else differs between the lines). A run still in progress plots what it has logged.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import json
import math
import os
import sys
from typing import Any, Optional, Sequence

import numpy as np

EXIT_USAGE = 2
DEFAULT_METRICS = ("episode_return", "episode_cost", "total_cost")
TITLES = {"episode_return": "episode return", "episode_cost": "episode cost",
          "total_cost": "cost paid in training (cumulative)"}
FORMATS = (".png", ".svg", ".pdf")
BANDS = ("std", "ci95", "none")
# config.json entries that do not change what a run learns: runs differing only in these are
# seeds (or continuations) of one experiment and share a line.
NOT_SETTINGS = frozenset({
    "seed", "out", "progress", "compilation_cache", "resume", "checkpoint_every", "keep_checkpoints", "total_steps",
    "num_updates", "num_devices", "coordinator_address", "num_processes", "process_id", "distributed", "device",
    "mesh", "versions", "compilation_cache_dir", "wandb_project", "wandb_entity", "wandb_group", "wandb_name",
})
# Shown first in a label, so not repeated among the settings that differ.
LABEL_KEYS = frozenset({"algo", "rho", "perturbation_radius", "perturbation_target_kl", "geometry"})


class PlotError(ValueError):
    """Bad input, reported as one line naming the flag or path."""


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    path: str
    config: dict[str, Any]  # config.json ({} if absent)
    columns: dict[str, np.ndarray]  # metrics.csv's complete rows, column by column


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """Runs with equal settings: one line (their seeds pooled)."""

    runs: tuple[Run, ...]

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config

    @property
    def num_curves(self) -> int:
        return sum(len(np.unique(run.columns["seed"])) if "seed" in run.columns else 1 for run in self.runs)


def expand_runs(arguments: Sequence[str]) -> list[str]:
    """Run directories in order, glob patterns expanded (quoted patterns work as unquoted)."""
    paths: list[str] = []
    for argument in arguments:
        if glob.has_magic(argument):
            matches = sorted(path for path in glob.glob(argument) if os.path.isdir(path))
            if not matches:
                raise PlotError(f"{argument}: the pattern matches no directory")
            paths += matches
        else:
            paths.append(argument)
    return list(dict.fromkeys(os.path.normpath(path) for path in paths))


def read_columns(path: str) -> dict[str, np.ndarray]:
    """metrics.csv's complete rows as float columns; a line cut short (a run writing it right
    now, or killed mid-write) and unparsable rows are left out."""
    with open(path, newline="") as f:
        lines = [line for line in f.read().splitlines(keepends=True) if line.endswith("\n")]
    if not lines:
        return {}
    header = next(csv.reader(lines[:1]))
    rows = []
    for row in csv.reader(lines[1:]):
        try:
            if len(row) == len(header):
                rows.append([float(value) if value else math.nan for value in row])
        except ValueError:
            continue
    data = np.asarray(rows, np.float64).reshape(len(rows), len(header))
    return {name: data[:, index] for index, name in enumerate(header)}


def read_run(run_dir: str) -> Run:
    """A run directory's config and metrics; ``PlotError`` naming it if it is not a run."""
    if not os.path.isdir(run_dir):
        raise PlotError(f"{run_dir}: no such directory")
    if not os.listdir(run_dir):
        raise PlotError(f"{run_dir}: empty directory, not a shapo-train --out DIR")
    metrics = os.path.join(run_dir, "metrics.csv")
    if not os.path.isfile(metrics):
        raise PlotError(f"{run_dir}: no metrics.csv (not a shapo-train --out DIR, or a run not started yet)")
    config: dict[str, Any] = {}
    config_path = os.path.join(run_dir, "config.json")
    if os.path.isfile(config_path):
        try:
            with open(config_path) as f:
                config = json.load(f)
        except (OSError, ValueError):
            config = {}  # being replaced right now: the run still plots, labelled by its path
    return Run(run_dir, config, read_columns(metrics))


def settings_key(run: Run) -> str:
    """Equal for runs that differ only in seed, length, output and devices."""
    if not run.config:
        return run.path
    return json.dumps({k: v for k, v in run.config.items() if k not in NOT_SETTINGS}, sort_keys=True)


def group_runs(runs: Sequence[Run], separate: bool = False) -> list[Group]:
    """Runs with equal settings pooled, in the order their first run was given."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.path if separate else settings_key(run), []).append(run)
    return [Group(tuple(members)) for members in groups.values()]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "-".join(map(_value, value))
    return str(value)


def default_labels(groups: Sequence[Group]) -> list[str]:
    """``algo rho=R`` (and the geometry when SHAPO is on), the settings that differ between
    the lines, and the number of seeds."""
    differing = sorted({
        key for group in groups for key in group.config
        if key not in NOT_SETTINGS and key not in LABEL_KEYS
        and len({json.dumps(other.config.get(key), sort_keys=True) for other in groups}) > 1
    })
    labels = []
    for group in groups:
        config = group.config
        if not config:
            labels.append(os.path.basename(group.runs[0].path) or group.runs[0].path)
            continue
        rho = float(config.get("perturbation_radius", config.get("rho", 0.0)) or 0.0)
        parts = [str(config.get("algo", "?")), f"rho={rho:g}"]
        if rho > 0 and config.get("geometry", "euclidean") != "euclidean":
            parts.append(str(config["geometry"]))
        parts += [f"{key}={_value(config.get(key))}" for key in differing[:3]]
        seeds = group.num_curves
        labels.append(f"{' '.join(parts)} ({seeds} seed{'s' if seeds != 1 else ''})")
    return labels


def curves(group: Group, x: str, metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (x, y) curve per seed of each run, sorted by x (a re-logged x keeps its last row)."""
    found = []
    for run in group.runs:
        columns = run.columns
        seeds = columns["seed"] if "seed" in columns else np.zeros(len(columns[x]))
        for seed in np.unique(seeds):
            chosen = seeds == seed
            by_x = dict(zip(columns[x][chosen].tolist(), columns[metric][chosen].tolist()))
            xs = np.asarray(sorted(by_x), np.float64)
            found.append((xs, np.asarray([by_x[value] for value in xs], np.float64)))
    return found


def pooled(group_curves: Sequence[tuple[np.ndarray, np.ndarray]], band: str):
    """x, mean and the band's (low, high) over the curves that reached each x.

    ``std``: mean +- standard deviation; ``ci95``: mean +- 1.96 standard errors (a normal
    approximation of the 95% confidence interval of the mean); ``none``: no band.
    """
    xs = np.unique(np.concatenate([curve[0] for curve in group_curves]))
    means, lows, highs = [], [], []
    for value in xs:
        ys = np.asarray([y[x == value][0] for x, y in group_curves if np.any(x == value)])
        ys = ys[np.isfinite(ys)]
        mean = float(ys.mean()) if ys.size else math.nan
        if band == "std" and ys.size:
            width = float(ys.std())
        elif band == "ci95" and ys.size > 1:
            width = 1.96 * float(ys.std(ddof=1)) / math.sqrt(ys.size)
        else:
            width = 0.0
        means.append(mean)
        lows.append(mean - width)
        highs.append(mean + width)
    return xs, np.asarray(means), np.asarray(lows), np.asarray(highs)


def check_request(runs: Sequence[Run], metrics: Sequence[str], x: str) -> None:
    """Every metric and the x column exist in every run; ``PlotError`` naming the flag."""
    for flag, names in (("--x", [x]), ("--metrics", list(metrics))):
        for run in runs:
            missing = [name for name in names if name not in run.columns]
            if missing:
                available = ", ".join(name for name in run.columns if name not in ("update", "seed"))
                raise PlotError(f"{flag}: unknown column {missing[0]!r} (in {run.path}/metrics.csv); "
                                f"available: {available}")


def limit_of(cost_limit, metric: str) -> Optional[float]:
    """The limit drawn on ``metric``'s panel: the run's limit; with one per constraint (a
    list), their sum on ``episode_cost`` (a sum too) and the i-th on ``episode_cost_i``."""
    if cost_limit is None:
        return None
    if not isinstance(cost_limit, list):
        return float(cost_limit) if metric == "episode_cost" else None
    if metric == "episode_cost":
        return float(sum(cost_limit))
    index = metric.rsplit("_", 1)[1]
    return float(cost_limit[int(index)]) if index.isdigit() and int(index) < len(cost_limit) else None


def make_figure(groups: Sequence[Group], metrics: Sequence[str], x: str = "env_steps", band: str = "std",
                labels: Optional[Sequence[str]] = None, title: Optional[str] = None):
    """The figure: one panel per metric, one line (and band) per group, one legend below.

    The episode-cost panel draws each distinct cost limit of the groups' configs as a dashed
    line, with its own small legend."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    labels = list(labels) if labels is not None else default_labels(groups)
    figure = Figure(figsize=(4.4 * len(metrics), 3.6), layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for axis, metric in zip(axes, metrics):
        for index, (group, label) in enumerate(zip(groups, labels)):
            xs, mean, low, high = pooled(curves(group, x, metric), band)
            axis.plot(xs, mean, color=f"C{index}", label=label)
            if band != "none":
                axis.fill_between(xs, low, high, color=f"C{index}", alpha=0.2, linewidth=0)
        if metric == "episode_cost" or metric.startswith("episode_cost_"):
            limits = sorted({limit for g in groups if (limit := limit_of(g.config.get("cost_limit"), metric)) is not None})
            for limit in limits:
                axis.axhline(limit, color="0.3", linestyle="--", linewidth=1, label=f"cost limit {limit:g}")
            if limits:
                axis.legend(handles=axis.get_lines()[len(groups):], fontsize="small", loc="upper right")
        axis.set_title(TITLES.get(metric, metric.replace("_", " ")))
        axis.set_xlabel("env steps per seed" if x == "env_steps" else x.replace("_", " "))
        axis.grid(alpha=0.3)
    figure.legend(handles=axes[0].get_lines()[:len(groups)], loc="outside lower center",
                  ncols=min(len(groups), 3), fontsize="small")
    envs = sorted({str(g.config["env"]) for g in groups if "env" in g.config})
    figure.suptitle(title if title is not None else ", ".join(envs))
    return figure


def prepare_out(path: str) -> str:
    """The output path, its format checked and its folder made; ``PlotError`` naming --out."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise PlotError(f"--out: {path}: give a file ending in {', '.join(FORMATS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise PlotError(f"--out: cannot write {path}: {folder} is not a directory")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise PlotError(f"--out: cannot write {path}: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK):
        raise PlotError(f"--out: cannot write {path}: {folder} is not writable")
    return path


def save(figure, path: str) -> None:
    """Writes the figure atomically (a temporary file beside it, then a rename)."""
    extension = os.path.splitext(path)[1].lower()
    temporary = f"{path}.tmp{extension}"
    try:
        figure.savefig(temporary, format=extension[1:], dpi=150)
        os.replace(temporary, path)
    except OSError as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise PlotError(f"--out: cannot write {path}: {error.strerror or error}") from None


def load_groups(arguments: Sequence[str], separate: bool = False, warn=print) -> list[Group]:
    """The runs named (patterns expanded), read and grouped; runs without a complete row yet
    are skipped with a warning, and ``PlotError`` if none is left."""
    runs = [read_run(path) for path in expand_runs(arguments)]
    ready = [run for run in runs if run.columns and len(next(iter(run.columns.values())))]
    if not ready:
        raise PlotError(f"{runs[0].path}: metrics.csv has no complete row yet: nothing to plot")
    for run in runs:
        if not any(run is other for other in ready):
            warn(f"shapo-plot: skipping {run.path}: metrics.csv has no complete row yet")
    return group_runs(ready, separate)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shapo-plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="--out DIRs of shapo-train runs, or quoted glob patterns ('runs/pidlag-*')")
    parser.add_argument("--out", default="curves.png", help="image to write: .png, .svg or .pdf (default curves.png)")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                        help=f"metrics.csv columns, one panel each (default: {' '.join(DEFAULT_METRICS)})")
    parser.add_argument("--x", default="env_steps", help="the x axis column (default env_steps; or update)")
    parser.add_argument("--label", nargs="+", default=None,
                        help="one legend label per line, in order (default: from each config: algo, rho, ...)")
    parser.add_argument("--band", choices=BANDS, default="std",
                        help="band around the mean over seeds: std (default), ci95 (1.96 standard errors), none")
    parser.add_argument("--separate", action="store_true",
                        help="one line per run directory, even where settings are equal (default: seeds pooled)")
    parser.add_argument("--title", default=None, help="figure title (default: the task names)")
    return parser.parse_args(argv)


def plot(args: argparse.Namespace, warn=print) -> tuple[str, list[str]]:
    """Checks everything, then draws and writes; returns the path and the legend labels.
    The extension of --out is checked first, before reading any run."""
    if os.path.splitext(args.out)[1].lower() not in FORMATS:
        raise PlotError(f"--out: {args.out}: give a file ending in {', '.join(FORMATS)}")
    groups = load_groups(args.runs, args.separate, warn)
    check_request([run for group in groups for run in group.runs], args.metrics, args.x)
    if args.label is not None and len(args.label) != len(groups):
        raise PlotError(f"--label: {len(args.label)} label(s) for {len(groups)} line(s): "
                        f"{'; '.join(default_labels(groups))}")
    labels = args.label if args.label is not None else default_labels(groups)
    out = prepare_out(args.out)  # last: bad input leaves no folder behind
    save(make_figure(groups, args.metrics, args.x, args.band, labels, args.title), out)
    return out, labels


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        out, labels = plot(args, warn=lambda line: print(line, file=sys.stderr))
    except PlotError as error:
        print(f"shapo-plot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"shapo-plot: wrote {out} ({len(labels)} line(s): {'; '.join(labels)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
