"""Reference results as a regression benchmark: per task and algorithm, at a small fixed budget,
the mean and spread over seeds of final return, final cost and total (training) cost.

``benchmarks/results/reference.json`` is what this writes; ``tests/test_benchmarks.py``'s
slow test re-runs a subset with the same settings and fails when a fresh run's mean over
seeds leaves the band stored with each figure (``mean +- max(3 std / sqrt(seeds), floor)``; see
``band`` below), so a change that silently breaks learning is caught.

Each (task, algorithm) is one jitted program vmapped over its seeds (``rho = 0``: the base
algorithms). ``final_*`` average the last 10% of updates, as ``pareto.py`` does.

  python benchmarks/reference.py                    # PointHazard: ppo_lag and ppo, 8 seeds
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The fixed budget: changing any of this invalidates reference.json (re-run this script).
BUDGET = dict(num_envs=16, unroll_length=64, num_minibatches=4, update_epochs=4, total_steps=16 * 64 * 150)
TASKS = {"PointHazard": ("ppo_lag", "ppo")}
NUM_SEEDS = 8
SEED = 0
FINAL_WINDOW = 0.1
BAND_K = 3.0  # band = mean +- max(BAND_K * std / sqrt(num_seeds), floor): 3 standard errors
FIGURES = ("final_return", "final_cost", "total_cost")


def band(stats: dict, floor: float) -> tuple[float, float]:
    """The interval a fresh mean over the same seeds must fall in."""
    half = max(BAND_K * stats["std"] / len(stats["per_seed"]) ** 0.5, floor)
    return stats["mean"] - half, stats["mean"] + half


def floor_of(figure: str, stats: dict) -> float:
    """A minimum half-width, so a figure whose seeds agree (e.g. cost 0) does not give a zero-width band."""
    return 0.1 * abs(stats["mean"]) + {"final_return": 1.0, "final_cost": 0.5, "total_cost": 50.0}[figure]


def config_for(env: str, algo: str, num_seeds: int = NUM_SEEDS):
    from shapo_jax.config import TrainConfig

    return TrainConfig(env=env, algo=algo, seed=SEED, num_seeds=num_seeds, progress=False, compilation_cache=False,
                       **BUDGET)


def run(env: str, algo: str, num_seeds: int = NUM_SEEDS) -> dict:
    """Trains ``num_seeds`` seeds in one program; per-figure mean/std/min/max and per-seed values."""
    import jax
    import numpy as np

    from _common import compile_timed, timed
    from shapo_jax.train import make_trainer, seed_keys

    config = config_for(env, algo, num_seeds)
    trainer = make_trainer(config)
    keys = seed_keys(config.seed, num_seeds)
    program, compile_s = compile_timed(jax.vmap(trainer.train), keys)
    out, run_s = timed(program, keys)
    metrics = jax.device_get(out.metrics)
    num_updates = metrics["episode_return"].shape[1]
    window = max(1, int(round(FINAL_WINDOW * num_updates)))
    values = {
        "final_return": metrics["episode_return"][:, -window:].mean(axis=1),
        "final_cost": metrics["episode_cost"][:, -window:].mean(axis=1),
        "total_cost": np.asarray(jax.device_get(out.state.episodes.total_cost)),
    }
    result = {"compile_s": round(compile_s, 2), "run_s": round(run_s, 2),
              "failed_runs": int((np.asarray(out.state.failed_update) >= 0).sum())}
    for name, v in values.items():
        v = np.asarray(v, dtype=np.float64)
        stats = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                 "min": float(v.min()), "max": float(v.max()), "per_seed": [float(x) for x in v]}
        stats["band"] = list(band(stats, floor_of(name, stats)))
        result[name] = stats
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="default benchmarks/results/reference.json")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from _common import RESULTS_DIR, header, write_json

    out = args.out or os.path.join(RESULTS_DIR, "reference.json")
    start = time.perf_counter()
    report = {**header(), "benchmark": "reference",
              "budget": BUDGET | {"num_seeds": NUM_SEEDS, "seed": SEED, "final_window": FINAL_WINDOW},
              "band_rule": f"fresh mean over the same seeds in mean +- max({BAND_K} * std / sqrt(num_seeds), floor); "
                           "floor = 0.1 |mean| + 1 (return), 0.5 (final cost), 50 (total cost)",
              "results": {}}
    for env, algos in TASKS.items():
        report["results"][env] = {}
        for algo in algos:
            row = run(env, algo)
            report["results"][env][algo] = row
            print(f"{env} {algo}: " + ", ".join(
                f"{k} {row[k]['mean']:.2f} +- {row[k]['std']:.2f}" for k in FIGURES) + f"  (compile {row['compile_s']}s)",
                flush=True)
            write_json(out, report)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    report["defaults"] = dataclasses.asdict(config_for("PointHazard", "ppo_lag"))
    write_json(out, report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
