"""The paper's experiment grid in one command: each base algorithm against SHAPO on each task.

Grid (montrealrobotics/shapo@1bb7704 README: the paper's tasks and algorithms): tasks
SafetyPointGoal1, SafetyPointButton1, SafetyAntFall and
SafetyWalker2dFall; algorithms trpo_pid (the paper's PIDLag), cpo and crpo; each with and
without SHAPO (Fisher geometry, target KL 1e-5, the released code's README setting), all other
settings the ``paper`` preset (20 envs x 1000 steps per update, 10M steps, cost limit 10). The
fall tasks pay at most 1 per episode, so a limit of 10 could never bind there: they keep their
own default limit (0.2, ours; the paper's value is unknown). ``--quick`` is a smoke run, not a
measurement: 3 short updates, episodes cut at 100 steps, compiled with XLA's cheap backend passes.

One cell = one (task, algorithm) pair = ONE compiled training program: ``jax.vmap`` over
``2 x --seeds`` runs of a scan over updates (the updates between two checkpoints), each run at
its own radius, a traced value (``Trainer.update_at_own_radius``, as ``train(key, rho)``
steps): rho = 0 for the base arm, which is then exactly the base algorithm (the SHAPO transform returns the gradient
unchanged), and rho = sqrt(2 delta) for the SHAPO arm. Seed i of both arms starts from the same
key (same initial networks and env draws). Each finished cell is written to
``OUT/cells/<task>__<algo>.json`` at once, with every run's curves. A cell in progress saves its
whole vmapped state every ``--checkpoint-every`` env steps per run (500k, 25 updates, by default)
under ``OUT/cells/<task>__<algo>.partial/``. A rerun of the same command skips the finished cells
and continues the interrupted one from its newest checkpoint (bit for bit as if it had not
stopped); cells started or finished with other settings stop it, naming ``--out``.

Per run: ``final_return`` and ``final_cost`` are the mean episode return / cost over the last
``--final-window`` fraction of updates (10%, at least one update; each update's value is the
mean over the episodes that finished in it), ``total_cost`` the cost paid during all of
training (every env step's cost summed). Per arm: mean and sample std over seeds; SHAPO minus
base: the difference of means, a 95% percentile-bootstrap interval (each arm resampled on its
own, 10,000 resamples, fixed seed) and the two-sided p-value of Welch's t-test
(``shapo_jax.statistics``). With few seeds (under ~8) the bootstrap interval is too narrow.

Writes, updated after every cell: ``OUT/paper.json`` (the settings and, per task and
algorithm, the statistics above), ``OUT/table.md`` (the same as a table), ``OUT/curves.csv``
(per run and update: env steps, episode return, episode cost, cumulative training cost) and
``OUT/<task>.png`` (one row per algorithm: those three curves against env steps, the mean over
seeds with a 95% Student-t band, base against SHAPO, the cost limit dashed).

  python benchmarks/paper.py --out runs/paper                       # the whole grid (GPU-sized)
  python benchmarks/paper.py --tasks SafetyPointGoal1 --algos trpo_pid --seeds 4 --total-steps 200000
  python benchmarks/paper.py --quick --out /tmp/paper_quick          # smoke: 1 cell, minutes on a CPU
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from typing import NamedTuple, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PAPER_TASKS = ("SafetyPointGoal1", "SafetyPointButton1", "SafetyAntFall", "SafetyWalker2dFall")
PAPER_ALGOS = ("trpo_pid", "cpo", "crpo")
# At most 1 cost per episode (cost = the fall that ends it): these keep the task's own limit.
FALL_TASKS = ("SafetyAntFall", "SafetyWalker2dFall")
ARMS = ("base", "shapo")
ARM_LABELS = {"base": "base", "shapo": "SHAPO"}
METRICS = ("final_return", "final_cost", "total_cost")
METRIC_LABELS = {"final_return": "final return", "final_cost": "final cost", "total_cost": "total cost"}
CURVES = ("episode_return", "episode_cost", "total_cost")
CURVE_TITLES = {"episode_return": "episode return", "episode_cost": "episode cost",
                "total_cost": "cost paid in training (cumulative)"}
DEFAULT_SEEDS = 10  # the paper's count is unknown
DEFAULT_CHECKPOINT_EVERY = 500_000  # 25 of the preset's updates
# --quick: one cell, 2 seeds per arm, 3 updates of 20 envs x 100 steps, minibatches of 125 as the
# preset's; episodes cut at 100 steps so that some finish in every update.
QUICK = dict(tasks=("SafetyPointGoal1",), algos=("trpo_pid",), seeds=2)
QUICK_SIZES = dict(num_envs=20, unroll_length=100, num_minibatches=16, update_epochs=2, episode_length=100,
                   total_steps=3 * 20 * 100)
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad input: one line naming the flag."""


class Grid(NamedTuple):
    """What the command runs: the cells (tasks x algos) and what every cell shares."""

    tasks: tuple[str, ...]
    algos: tuple[str, ...]
    seeds: int  # per arm
    sizes: dict  # TrainConfig fields set over the paper preset (--quick, --total-steps)
    target_kl: float  # SHAPO's radius as a target KL; rho = sqrt(2 target_kl)
    seed: int
    final_window: float
    resamples: int  # bootstrap resamples
    checkpoint_every: int  # env steps per run between checkpoints of a cell in progress (0: none)
    compiler_options: Optional[dict] = None


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"paper.py: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=None, help=f"registered task names (default: {' '.join(PAPER_TASKS)})")
    p.add_argument("--algos", nargs="+", default=None,
                   help=f"trust-region algorithms: trpo_pid, cpo, crpo, trpo_lag (default: {' '.join(PAPER_ALGOS)})")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds per arm, vmapped (default {DEFAULT_SEEDS})")
    p.add_argument("--total-steps", type=int, default=None,
                   help="env steps per run, a multiple of one update's steps (default: the preset's 10M)")
    p.add_argument("--perturbation-target-kl", type=float, default=1e-5, help="SHAPO's radius as a target KL (paper: 1e-5)")
    p.add_argument("--final-window", type=float, default=0.1, help="fraction of the last updates averaged for final_*")
    p.add_argument("--seed", type=int, default=0, help="base seed; seed i of both arms uses the same key")
    p.add_argument("--bootstrap-resamples", type=int, default=10_000)
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help=f"env steps per run between checkpoints of the cell in progress, so that an interrupted "
                        f"cell continues where it stopped (default {DEFAULT_CHECKPOINT_EVERY:,}; --quick: none; 0: none)")
    p.add_argument("--out", default=None, help="output directory (default benchmarks/results/paper_<platform>)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: SafetyPointGoal1, trpo_pid, 2 seeds per arm, 3 updates of 20 envs x 100 steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per cell still)")
    p.add_argument("--no-compilation-cache", action="store_true",
                   help="do not use JAX's persistent compilation cache (on by default, as shapo-train)")
    return p


# ------------------------------------------------------------------------------ settings


def resolve(args) -> Grid:
    """The grid to run with --quick and the defaults filled in; ``UsageError`` naming the first bad flag.

    Nothing is compiled here; the registry is read to check the task names.
    """
    import shapo_envs
    from shapo_jax.config import TRUST_REGION_ALGORITHMS

    quick = QUICK if args.quick else {}
    tasks = tuple(args.tasks or quick.get("tasks", PAPER_TASKS))
    algos = tuple(args.algos or quick.get("algos", PAPER_ALGOS))
    seeds = args.seeds if args.seeds is not None else quick.get("seeds", DEFAULT_SEEDS)
    known = shapo_envs.list_envs()
    for task in tasks:
        if task not in known:
            raise UsageError(f"--tasks: unknown task {task!r}; the paper's: {', '.join(PAPER_TASKS)}; "
                             f"registered: {', '.join(known)}")
    for algo in algos:
        if algo not in TRUST_REGION_ALGORITHMS:
            raise UsageError(f"--algos: unknown algorithm {algo!r}; valid (the paper preset's trust-region "
                             f"algorithms): {', '.join(TRUST_REGION_ALGORITHMS)}")
    if seeds < 2:
        raise UsageError(f"--seeds: the comparison needs at least 2 seeds per arm, got {seeds}")
    if not 0 < args.final_window <= 1:
        raise UsageError(f"--final-window: must be in (0, 1], got {args.final_window}")
    if not (math.isfinite(args.perturbation_target_kl) and args.perturbation_target_kl > 0):
        raise UsageError(f"--perturbation-target-kl: must be a finite number > 0, got {args.perturbation_target_kl}")
    if args.bootstrap_resamples < 1:
        raise UsageError(f"--bootstrap-resamples: must be a positive integer, got {args.bootstrap_resamples}")
    sizes = dict(QUICK_SIZES) if args.quick else {}
    if args.total_steps is not None:
        sizes["total_steps"] = args.total_steps
    checkpoint_every = args.checkpoint_every
    if checkpoint_every is None:
        checkpoint_every = 0 if args.quick else DEFAULT_CHECKPOINT_EVERY
    from _common import QUICK_COMPILER_OPTIONS  # --quick: a smoke run's program runs 3 updates

    grid = Grid(tuple(dict.fromkeys(tasks)), tuple(dict.fromkeys(algos)), seeds, sizes, args.perturbation_target_kl,
                args.seed, args.final_window, args.bootstrap_resamples, checkpoint_every,
                QUICK_COMPILER_OPTIONS if args.quick else None)
    config = cell_config(grid, grid.tasks[0], grid.algos[0])
    check_budget(config)
    check_checkpoints(config, checkpoint_every)
    return grid


def cell_config(grid: Grid, task: str, algo: str):
    """The cell's TrainConfig: the paper preset resolved once (``shapo_jax.config.resolve``; SHAPO
    on, so the transform is in the program), then frozen (preset none) so that the overrides
    stay; fall tasks keep their own limit. ``prepare`` resolves it again, which checks the
    overrides and fills what they left to the task."""
    from shapo_jax.config import ConfigError, TrainConfig
    from shapo_jax.config import resolve as resolve_config

    try:
        config = resolve_config(TrainConfig(env=task, algo=algo, preset="paper", geometry="fisher",
                                            perturbation_target_kl=grid.target_kl, num_seeds=2 * grid.seeds,
                                            seed=grid.seed, progress=False, compilation_cache=False))
    except ConfigError as error:
        raise UsageError(str(error)) from None
    config = dataclasses.replace(config, preset="none", **grid.sizes)
    if task in FALL_TASKS:
        config = dataclasses.replace(config, cost_limit=None)  # the task's own
    return config


def check_budget(config) -> None:
    """--total-steps: at least one update, a whole number of updates."""
    per_update, total_steps = config.steps_per_update, config.total_steps
    if total_steps < per_update:
        raise UsageError(f"--total-steps: {total_steps:,} is less than one update ({per_update:,} env steps: "
                         f"{config.num_envs} envs x {config.unroll_length} steps)")
    if total_steps % per_update:
        raise UsageError(f"--total-steps: must be a multiple of one update's {per_update:,} env steps "
                         f"({config.num_envs} envs x {config.unroll_length}), got {total_steps:,}")


def check_checkpoints(config, checkpoint_every: int) -> None:
    """--checkpoint-every: 0, or whole updates that divide the run (or the whole run or more: none)."""
    per_update, total_steps = config.steps_per_update, config.total_steps
    if checkpoint_every < 0 or checkpoint_every % per_update:
        raise UsageError(f"--checkpoint-every: must be 0 or a positive multiple of one update's {per_update:,} env "
                         f"steps, got {checkpoint_every:,}")
    if 0 < checkpoint_every < total_steps and total_steps % checkpoint_every:
        raise UsageError(f"--checkpoint-every: must divide --total-steps {total_steps:,}, got {checkpoint_every:,}")


def cell_settings(config, grid: Grid) -> dict:
    """What a cell was trained with (``config`` resolved): a finished cell is reused only if
    these are equal."""
    fields = {k: v for k, v in dataclasses.asdict(config).items()
              if k not in ("num_seeds", "out", "progress", "compilation_cache")}
    settings = {**fields, "seeds_per_arm": grid.seeds, "rho": {"base": 0.0, "shapo": math.sqrt(2 * grid.target_kl)},
                "resolved_cost_limit": config.cost_limit, "resolved_episode_length": config.episode_length,
                "final_window": grid.final_window}
    return json.loads(json.dumps(settings))  # as it reads back from the file (tuples as lists)


def cell_path(out: str, task: str, algo: str) -> str:
    return os.path.join(out, "cells", f"{task}__{algo}.json")


def differing_settings(path: str, earlier: dict, settings: dict) -> None:
    """``UsageError`` naming --out if ``earlier`` (read from ``path``) differs from ``settings``;
    fields only one side knows are ignored (a config field added since)."""
    from shapo_jax.config import TASK_DEFAULTS

    # Cells written before configs were resolved hold null for the task defaults; their
    # values are in resolved_cost_limit and resolved_episode_length.
    same = lambda k: settings[k] == earlier[k] or (k in TASK_DEFAULTS and earlier[k] is None)  # noqa: E731
    differing = sorted(k for k in settings.keys() & earlier.keys() if not same(k))
    if differing:
        raise UsageError(f"--out: {path} was trained with other settings ({', '.join(differing[:4])}); "
                         f"give another --out or delete it")


def partial_settings(settings: dict, checkpoint_every: int) -> dict:
    """What a cell in progress was started with: resuming needs the same chunks too."""
    return {**settings, "checkpoint_every": checkpoint_every}


def check_partial(out: str, task: str, algo: str, settings: dict) -> None:
    """A cell in progress with other settings stops the command (naming --out) before compiling."""
    path = os.path.join(partial_dir(out, task, algo), "settings.json")
    try:
        with open(path) as f:
            earlier = json.load(f)
    except (OSError, ValueError):
        return
    differing_settings(os.path.dirname(path), earlier, settings)


def finished_cell(out: str, task: str, algo: str, settings: dict):
    """The cell already written by an earlier run with the same settings, or None; ``UsageError``
    naming --out if it was written with other settings. Fields only one side knows are ignored
    (a config field added since)."""
    path = cell_path(out, task, algo)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            cell = json.load(f)
    except (OSError, ValueError):
        return None  # cut short: run it again
    differing_settings(path, cell.get("settings", {}), settings)
    return cell


# ------------------------------------------------------------------------------ one cell


class Progress:
    """A tqdm bar over one cell's updates, fed by the trainer's progress_fn (one call per run
    per update), with each arm's mean over seeds of the latest episode return."""

    def __init__(self, label: str, num_updates: int, seeds: int, enabled: bool):
        self.seeds, self.calls, self.enabled = seeds, 0, enabled
        self.latest: dict[str, list[float]] = {"base": [], "shapo": []}
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=num_updates, desc=label, unit="update", dynamic_ncols=True, file=sys.stderr)

    def __call__(self, metrics) -> None:
        import numpy as np

        arm = "shapo" if float(np.asarray(metrics["rho"])) > 0 else "base"
        self.latest[arm] = (self.latest[arm] + [float(np.asarray(metrics["episode_return"]))])[-self.seeds:]
        self.calls += 1
        if self.calls % (2 * self.seeds) == 0:
            self.bar.update(1)
            self.bar.set_postfix({f"return {ARM_LABELS[a]}": f"{np.mean(v):.2f}" for a, v in self.latest.items() if v},
                                 refresh=False)

    def skip(self, updates: int) -> None:
        """Updates done before a resume."""
        if self.enabled:
            self.bar.update(updates)

    def close(self) -> None:
        if self.enabled:
            self.bar.close()


def chunk_updates(config, checkpoint_every: int) -> int:
    """Updates per compiled chunk: every update without checkpoints, else --checkpoint-every's."""
    if checkpoint_every == 0 or checkpoint_every >= config.total_steps:
        return config.num_updates
    return checkpoint_every // config.steps_per_update


def partial_dir(out: str, task: str, algo: str) -> str:
    """Where a cell in progress keeps its checkpoints (removed once the cell is written)."""
    return os.path.join(out, "cells", f"{task}__{algo}.partial")


def save_partial(checkpoints, updates: int, steps_per_update: int, state, history: list[dict]) -> None:
    """The vmapped state after ``updates`` updates and the curves so far, as one orbax checkpoint
    (written whole or not at all)."""
    import numpy as np

    from shapo_jax.checkpoint import host_copy

    curves = {k: np.concatenate([h[k] for h in history], axis=1) for k in history[0]}
    checkpoints.save(updates * steps_per_update, updates, host_copy(state), host_copy(curves))


def restore_partial(checkpoints, steps_per_update: int, abstract_state, abstract_chunk: dict):
    """(state, curves so far, updates done) from the newest checkpoint that restores, or None;
    unreadable ones are set aside with a message."""
    import jax
    import numpy as np

    for step in reversed(checkpoints.steps()):
        updates = step // steps_per_update
        curves = {k: jax.ShapeDtypeStruct(v.shape[:1] + (updates,), v.dtype) for k, v in abstract_chunk.items()}
        try:
            restored = checkpoints.restore(step, abstract_state, curves)
        except Exception as error:  # noqa: BLE001 - any failure means: not usable
            print(f"    checkpoint {step} in {checkpoints.directory} cannot be restored ({type(error).__name__}); "
                  f"skipping it", flush=True)
            checkpoints.set_aside(step)
            continue
        return restored.state, [{k: np.asarray(v) for k, v in restored.metrics.items()}], restored.update
    return None


def run_cell(config, grid: Grid, settings: dict, progress: bool, partial: str) -> dict:
    """Trains both arms x ``grid.seeds`` seeds of one (task, algorithm) in one program; every
    run's curves and final figures.

    The program is ``jax.vmap`` of a scan over a chunk of updates, each run at its own (traced)
    radius; with --checkpoint-every the state and the curves so far are saved under ``partial``
    after every chunk, and a cell interrupted earlier continues from its newest checkpoint."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from _common import compile_timed
    from shapo_jax.checkpoint import Checkpoints
    from shapo_jax.train import make_trainer, seed_keys

    bar = Progress(f"{config.env} {config.algo}", config.num_updates, grid.seeds, progress)
    trainer = make_trainer(config, progress_fn=bar if progress else None)
    keys = seed_keys(grid.seed, grid.seeds)
    run_keys = jnp.concatenate([keys, keys])  # run a * seeds + i: arm a, seed i (same key in both arms)
    radius = settings["rho"]["shapo"]
    run_rhos = jnp.repeat(jnp.asarray([0.0, radius], jnp.float32), grid.seeds)
    chunk = chunk_updates(config, grid.checkpoint_every)
    kept = ("env_steps",) + CURVES

    def advance(state):
        state, metrics = jax.lax.scan(lambda s, _: trainer.update_at_own_radius(s), state, None, chunk)
        return state, {k: metrics[k] for k in kept}

    init = jax.vmap(trainer.init)
    checkpoints = None
    if chunk < config.num_updates:
        from shapo_jax.reporting import write_json

        checkpoints = Checkpoints(partial, keep=2, create=True)
        write_json(os.path.join(partial, "settings.json"), partial_settings(settings, grid.checkpoint_every))
    try:
        state, history, done = None, [], 0
        if checkpoints is not None:
            abstract = jax.eval_shape(init, run_keys, run_rhos)
            restored = restore_partial(checkpoints, config.steps_per_update, abstract,
                                       jax.eval_shape(jax.vmap(advance), abstract)[1])
            if restored is not None:
                state, history, done = restored
                print(f"    continuing from the checkpoint after update {done} of {config.num_updates}", flush=True)
                bar.skip(done)
        if state is None:
            state = jax.jit(init)(run_keys, run_rhos)
        program, compile_s = compile_timed(jax.vmap(advance), state, compiler_options=grid.compiler_options)
        start, ran = time.perf_counter(), 0
        while done < config.num_updates:
            state, metrics = program(state)
            history.append(jax.device_get(metrics))
            done, ran = done + chunk, ran + chunk
            if checkpoints is not None and done < config.num_updates:
                save_partial(checkpoints, done, config.steps_per_update, state, history)
        jax.block_until_ready(state)
        run_s = time.perf_counter() - start
    finally:
        bar.close()
        if checkpoints is not None:
            checkpoints.close()
    curves = {k: np.concatenate([np.asarray(h[k], np.float64) for h in history], axis=1) for k in kept}
    timing = {"compile_s": round(compile_s, 2), "run_s": round(run_s, 2), "updates_per_chunk": chunk,
              "env_steps_per_s": 2 * grid.seeds * ran * config.steps_per_update / max(run_s, 1e-9)}
    total_cost, failed = jax.device_get((state.episodes.total_cost, state.failed_update))
    return cell_record(config, grid, settings, trainer.cost_limit, curves, np.asarray(total_cost, np.float64),
                       np.asarray(failed), timing)


def cell_record(config, grid: Grid, settings: dict, cost_limit: float, metrics: dict, total_cost, failed,
                timing: dict) -> dict:
    """The cell's JSON: per arm and seed, the final figures and the curves (``metrics``: [runs,
    updates]); ``total_cost`` and ``failed`` (the first update that was not finite, or -1) per run."""
    radius = settings["rho"]["shapo"]
    window = max(1, int(round(grid.final_window * config.num_updates)))
    arms = {}
    for index, arm in enumerate(ARMS):
        runs = []
        for seed in range(grid.seeds):
            r = index * grid.seeds + seed
            runs.append({
                "seed": seed,
                "final_return": float(metrics["episode_return"][r, -window:].mean()),
                "final_cost": float(metrics["episode_cost"][r, -window:].mean()),
                "total_cost": float(total_cost[r]),
                "failed_update": int(failed[r]),
                "curves": {"env_steps": metrics["env_steps"][r].astype(int).tolist(),
                           **{k: metrics[k][r].round(5).tolist() for k in CURVES}},
            })
        arms[arm] = {"rho": [0.0, radius][index], "runs": runs}
    return {"task": config.env, "algo": config.algo, "settings": settings, "cost_limit": cost_limit,
            "num_updates": config.num_updates, "final_window_updates": window, **timing, "arms": arms}


# ------------------------------------------------------------------------------ statistics and outputs


def summarize(cell: dict, resamples: int) -> dict:
    """Per arm: mean and std over seeds of each final figure; SHAPO minus base with its 95%
    bootstrap interval and Welch p-value."""
    from shapo_jax.statistics import compare, spread

    values = {arm: {m: [run[m] for run in cell["arms"][arm]["runs"]] for m in METRICS} for arm in ARMS}
    summary = {arm: {"rho": cell["arms"][arm]["rho"], **{m: spread(values[arm][m]) for m in METRICS},
                     "failed_runs": sum(run["failed_update"] >= 0 for run in cell["arms"][arm]["runs"])}
               for arm in ARMS}
    summary["shapo_minus_base"] = {m: compare(values["base"][m], values["shapo"][m], resamples=resamples)
                                   for m in METRICS}
    return {"cost_limit": cell["cost_limit"], "seeds_per_arm": len(cell["arms"]["base"]["runs"]),
            "num_updates": cell["num_updates"], "final_window_updates": cell["final_window_updates"],
            "compile_s": cell["compile_s"], "run_s": cell["run_s"], **summary,
            "curves": os.path.relpath(cell_path("", cell["task"], cell["algo"]))}


def table_rows(task: str, algo: str, summary: dict) -> list[str]:
    rows = []
    for m in METRICS:
        base, shapo, diff = summary["base"][m], summary["shapo"][m], summary["shapo_minus_base"][m]
        low, high = diff["ci95"]
        rows.append(f"| {task} | {algo} | {METRIC_LABELS[m]} | {base['mean']:.2f} +- {base['std']:.2f} | "
                    f"{shapo['mean']:.2f} +- {shapo['std']:.2f} | {diff['mean']:+.2f} [{low:+.2f}, {high:+.2f}] | "
                    f"{diff['p_value']:.3g} |")
    return rows


TABLE_HEADER = ["| task | algorithm | metric | base (mean +- std) | SHAPO (mean +- std) | SHAPO - base [95% CI] | Welch p |",
                "|---|---|---|---|---|---|---|"]


def write_curves_csv(path: str, cells: list[dict]) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "algo", "arm", "rho", "seed", "update", "env_steps", *CURVES])
        for cell in cells:
            for arm in ARMS:
                for run in cell["arms"][arm]["runs"]:
                    curves = run["curves"]
                    for u, steps in enumerate(curves["env_steps"]):
                        writer.writerow([cell["task"], cell["algo"], arm, f"{cell['arms'][arm]['rho']:g}", run["seed"],
                                         u + 1, steps, *(curves[k][u] for k in CURVES)])
    os.replace(temporary, path)


def plot_task(task: str, cells: list[dict], path: str) -> None:
    """One row per algorithm, one column per curve: mean over seeds and its 95% t band, base and
    SHAPO; the cost limit dashed on the episode-cost panel."""
    import numpy as np
    from matplotlib.figure import Figure

    from shapo_jax.plot import save
    from shapo_jax.statistics import mean_interval

    figure = Figure(figsize=(4.4 * len(CURVES), 3.2 * len(cells) + 0.6), layout="constrained")
    axes = figure.subplots(len(cells), len(CURVES), squeeze=False)
    for row, cell in zip(axes, cells):
        for axis, curve in zip(row, CURVES):
            for colour, arm in zip(("C0", "C1"), ARMS):
                runs = cell["arms"][arm]["runs"]
                steps = np.asarray(runs[0]["curves"]["env_steps"], np.float64)
                mean, low, high = mean_interval([r["curves"][curve] for r in runs])
                rho = cell["arms"][arm]["rho"]
                axis.plot(steps, mean, color=colour, marker="." if len(steps) < 20 else None,
                          label=f"{ARM_LABELS[arm]}" + (f" (KL {rho * rho / 2:g})" if rho > 0 else ""))
                axis.fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
            if curve == "episode_cost":
                axis.axhline(cell["cost_limit"], color="0.3", linestyle="--", linewidth=1,
                             label=f"cost limit {cell['cost_limit']:g}")
            axis.set_title(f"{cell['algo']}: {CURVE_TITLES[curve]}", fontsize="medium")
            axis.set_xlabel("env steps per run")
            axis.grid(alpha=0.3)
            axis.legend(fontsize="small")
    seeds = len(cells[0]["arms"]["base"]["runs"])
    figure.suptitle(f"{task}: base vs SHAPO, mean over {seeds} seeds per arm, 95% t band")
    save(figure, path)


def write_outputs(out: str, cells: list[dict], report: dict, resamples: int) -> dict:
    """paper.json, table.md, curves.csv and one PNG per task, from the cells finished so far."""
    from shapo_jax.reporting import write_json

    results: dict = {}
    lines = list(TABLE_HEADER)
    for cell in cells:
        summary = summarize(cell, resamples)
        results.setdefault(cell["task"], {})[cell["algo"]] = summary
        lines += table_rows(cell["task"], cell["algo"], summary)
    write_json(os.path.join(out, "paper.json"), {**report, "results": results,
                                                  "cells_done": len(cells)})
    with open(os.path.join(out, "table.md.tmp"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(os.path.join(out, "table.md.tmp"), os.path.join(out, "table.md"))
    write_curves_csv(os.path.join(out, "curves.csv"), cells)
    for task in dict.fromkeys(cell["task"] for cell in cells):
        plot_task(task, [c for c in cells if c["task"] == task], os.path.join(out, f"{task}.png"))
    return results


def print_cell(summary: dict) -> None:
    for m in METRICS:
        base, shapo, diff = summary["base"][m], summary["shapo"][m], summary["shapo_minus_base"][m]
        low, high = diff["ci95"]
        print(f"    {METRIC_LABELS[m]:<13} base {base['mean']:10.2f} +- {base['std']:<8.2f} SHAPO {shapo['mean']:10.2f} "
              f"+- {shapo['std']:<8.2f} diff {diff['mean']:+9.2f} [{low:+.2f}, {high:+.2f}]  p={diff['p_value']:.3g}",
              flush=True)


# ------------------------------------------------------------------------------ main


def prepare(args):
    """Every check before anything compiles: the grid, each cell's config, the output
    directory and the cells already finished there. Returns (grid, out, [(config, settings, cell or None)])."""
    from shapo_jax.config import ConfigError
    from shapo_jax.config import resolve as resolve_config

    grid = resolve(args)
    import jax

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"paper_{jax.devices()[0].platform}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out: {out} exists and is not a directory")
    plan = []
    for task in grid.tasks:
        for algo in grid.algos:
            try:
                config = resolve_config(cell_config(grid, task, algo))
            except ConfigError as error:
                raise UsageError(str(error)) from None
            settings = cell_settings(config, grid)
            cell = finished_cell(out, task, algo, settings)
            if cell is None:
                check_partial(out, task, algo, partial_settings(settings, grid.checkpoint_every))
            plan.append((config, settings, cell))
    try:
        os.makedirs(os.path.join(out, "cells"), exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out: cannot write {out}: {error.strerror or error}") from None
    return grid, out, plan


def describe(args, grid: Grid, first) -> dict:
    """paper.json's record of the grid and of what each figure means."""
    return {"benchmark": "paper", "quick": args.quick,
            "grid": {"tasks": list(grid.tasks), "algos": list(grid.algos), "seeds_per_arm": grid.seeds,
                     "total_steps": first.total_steps, "steps_per_update": first.steps_per_update,
                     "num_updates": first.num_updates, "perturbation_target_kl": grid.target_kl,
                     "geometry": "fisher", "final_window": grid.final_window,
                     "bootstrap_resamples": grid.resamples, "seed": grid.seed,
                     "checkpoint_every": grid.checkpoint_every},
            "definitions": {
                "final_return": "mean episode return over the last final_window of updates, per run",
                "final_cost": "mean episode cost over the last final_window of updates, per run",
                "total_cost": "cost summed over every env step of training, per run",
                "std": "sample standard deviation over seeds (ddof 1)",
                "shapo_minus_base": "difference of means; ci95: percentile bootstrap, arms resampled "
                                    "independently; p_value: two-sided Welch t-test",
                "fall_tasks": f"{', '.join(FALL_TASKS)} keep the task's own cost limit (at most 1 cost per "
                              "episode, so the preset's 10 could never bind; the paper's value is unknown)"}}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        grid, out, plan = prepare(args)
    except UsageError as error:
        print(f"paper.py: error: {error}", file=sys.stderr)
        return EXIT_USAGE

    from _common import header
    from shapo_jax.cli import enable_compilation_cache
    from shapo_jax.reporting import write_json

    enable_compilation_cache(not args.no_compilation_cache)
    first = plan[0][0]
    report = {**header(), **describe(args, grid, first)}
    done = {(config.env, config.algo): cell for config, _, cell in plan if cell is not None}
    in_grid_order = lambda: [done[key] for key in ((c.env, c.algo) for c, _, _ in plan) if key in done]
    print(f"paper.py: {len(plan)} cell(s) ({', '.join(grid.tasks)} x {', '.join(grid.algos)}), {grid.seeds} seeds x "
          f"{{base, SHAPO target KL {grid.target_kl:g}}} per cell, {first.num_updates} updates of "
          f"{first.num_envs} envs x {first.unroll_length} steps per run; {len(done)} already in {out}", flush=True)
    start = time.perf_counter()
    for number, (config, settings, cell) in enumerate(plan, 1):
        tag = f"[{number}/{len(plan)}] {config.env} {config.algo}"
        if cell is not None:
            print(f"{tag}: done earlier, read from {cell_path(out, config.env, config.algo)}", flush=True)
            continue
        print(f"{tag}: compiling and training {2 * grid.seeds} runs (cost limit {settings['resolved_cost_limit']:g})",
              flush=True)
        try:
            cell = run_cell(config, grid, settings, not args.no_progress, partial_dir(out, config.env, config.algo))
        except KeyboardInterrupt:
            print(f"\npaper.py: interrupted in {tag}; {len(done)} cell(s) kept in {out}"
                  f"{', and this one up to its last checkpoint' if grid.checkpoint_every else ''}; "
                  f"the same command resumes", file=sys.stderr, flush=True)
            return 130
        write_json(cell_path(out, config.env, config.algo), cell)
        shutil.rmtree(partial_dir(out, config.env, config.algo), ignore_errors=True)
        done[config.env, config.algo] = cell
        results = write_outputs(out, in_grid_order(), report, grid.resamples)
        print(f"{tag}: compile {cell['compile_s']:.0f}s, train {cell['run_s']:.0f}s "
              f"({cell['env_steps_per_s']:,.0f} env steps/s over all runs)", flush=True)
        print_cell(results[config.env][config.algo])
    results = write_outputs(out, in_grid_order(), {**report, "wall_s": round(time.perf_counter() - start, 1)}, grid.resamples)
    print("\n".join(TABLE_HEADER + [row for task, algos in results.items() for algo, s in algos.items()
                                    for row in table_rows(task, algo, s)]))
    print(f"paper.py: wrote {os.path.join(out, 'paper.json')}, table.md, curves.csv, "
          f"{', '.join(t + '.png' for t in results)} and cells/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
