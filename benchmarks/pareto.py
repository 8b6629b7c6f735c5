"""SHAPO's claim as a picture: final return against final cost and against the cost paid while
learning, per radius rho, from ONE compiled program that trains every (rho, seed) pair.

The config turns SHAPO on (``rho > 0``) so the sharpness transform is in the optimizer
chain; ``jax.jit(jax.vmap(trainer.train))(keys, rhos)`` then passes each run's radius as a
traced value (``train(key, rho)``), so rho = 0 (exactly the base algorithm: the transform
returns the gradient unchanged) and every radius share one program, vmapped over
``len(rhos) x num_seeds`` runs.

Per run: ``final_return`` and ``final_cost`` are the mean episode return / cost over the last
``--final-window`` fraction of updates (10% by default: the latest finished episodes of each
update, averaged to damp noise), ``total_cost`` is the cost paid during all of training
(summed over every env step of that run). Per rho: mean, std and min/max over seeds, written
to JSON, and drawn (PNG) as return vs final cost and return vs total cost (seeds as dots,
mean +- std as error bars, the task's cost limit dashed), plus the cumulative cost over
training.

  python benchmarks/pareto.py                  # small CPU sweep on PointHazard (minutes)
  python benchmarks/pareto.py --full           # GPU-sized sweep
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SMALL = dict(num_envs=16, unroll_length=64, num_minibatches=4, update_epochs=4, total_steps=16 * 64 * 150)
FULL = dict(num_envs=256, unroll_length=128, num_minibatches=32, update_epochs=10, total_steps=256 * 128 * 300)
SMALL_RHOS = (0.0, 0.02, 0.05, 0.1, 0.2)
FULL_RHOS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="PointHazard")
    p.add_argument("--algo", default="ppo_lag", help="ppo_lag, ppo, ppo_pid (PPO-family: the transform is in the actor's optimizer)")
    p.add_argument("--geometry", choices=("euclidean", "fisher"), default="euclidean")
    p.add_argument("--rhos", type=float, nargs="+", default=None, help=f"radii (default {SMALL_RHOS}; --full {FULL_RHOS})")
    p.add_argument("--num-seeds", type=int, default=None, help="seeds per radius (default 8; --full 16)")
    p.add_argument("--num-envs", type=int, default=None)
    p.add_argument("--unroll-length", type=int, default=None)
    p.add_argument("--num-minibatches", type=int, default=None)
    p.add_argument("--update-epochs", type=int, default=None)
    p.add_argument("--total-steps", type=int, default=None, help="env steps per run")
    p.add_argument("--cost-limit", type=float, default=None, help="default: the task's own")
    p.add_argument("--final-window", type=float, default=0.1, help="fraction of the last updates averaged for final_*")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full", action="store_true", help=f"GPU-sized: {FULL}, 16 seeds, {len(FULL_RHOS)} radii")
    p.add_argument("--out-prefix", default=None,
                   help="writes PREFIX.json and PREFIX.png (default benchmarks/results/pareto_<env>_<platform>[_full])")
    return p


def make_config(args):
    from shapo_jax.config import TrainConfig

    sizes = dict(FULL if args.full else SMALL)
    for name in sizes:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    rhos = tuple(args.rhos if args.rhos is not None else (FULL_RHOS if args.full else SMALL_RHOS))
    # any rho > 0 puts the transform in the chain; each run's own radius is passed traced
    config = TrainConfig(env=args.env, algo=args.algo, geometry=args.geometry, rho=max(max(rhos), 1e-3),
                         cost_limit=args.cost_limit, seed=args.seed, progress=False, compilation_cache=False, **sizes)
    return config, rhos


def run_sweep(config, rhos, num_seeds: int, final_window: float = 0.1) -> dict:
    """Trains ``len(rhos) x num_seeds`` runs in one jitted, vmapped program; returns per-run and per-rho figures."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from _common import compile_timed, timed
    from shapo_jax.train import make_trainer, seed_keys

    assert config.uses_sharpness, "the config must turn SHAPO on so that the transform is in the chain"
    trainer = make_trainer(config)
    keys = seed_keys(config.seed, num_seeds)
    run_keys = jnp.tile(keys, (len(rhos), 1))  # run i*num_seeds + s: radius i, seed s
    run_rhos = jnp.repeat(jnp.asarray(rhos, jnp.float32), num_seeds)
    program, compile_s = compile_timed(jax.vmap(trainer.train), run_keys, run_rhos)
    out, run_s = timed(program, run_keys, run_rhos)

    metrics = jax.device_get(out.metrics)  # leaves [runs, num_updates]
    num_updates = metrics["episode_return"].shape[1]
    window = max(1, int(round(final_window * num_updates)))
    final_return = metrics["episode_return"][:, -window:].mean(axis=1)
    final_cost = metrics["episode_cost"][:, -window:].mean(axis=1)
    total_cost = np.asarray(jax.device_get(out.state.episodes.total_cost))
    failed = np.asarray(jax.device_get(out.state.failed_update))

    def spread(values):
        v = np.asarray(values, dtype=np.float64)
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                "min": float(v.min()), "max": float(v.max()), "per_seed": [float(x) for x in v]}

    per_rho = []
    for i, rho in enumerate(rhos):
        sl = slice(i * num_seeds, (i + 1) * num_seeds)
        per_rho.append({
            "rho": float(rho),
            "final_return": spread(final_return[sl]),
            "final_cost": spread(final_cost[sl]),
            "total_cost": spread(total_cost[sl]),
            "failed_runs": int((failed[sl] >= 0).sum()),
            # mean over seeds, per update: for learning curves
            "curve_episode_return": metrics["episode_return"][sl].mean(axis=0).round(4).tolist(),
            "curve_episode_cost": metrics["episode_cost"][sl].mean(axis=0).round(4).tolist(),
            "curve_total_cost": metrics["total_cost"][sl].mean(axis=0).round(3).tolist(),
        })
    total_env_steps = len(rhos) * num_seeds * num_updates * config.steps_per_update
    return {
        "num_runs": len(rhos) * num_seeds,
        "num_updates": num_updates,
        "final_window_updates": window,
        "compile_s": round(compile_s, 2),
        "run_s": round(run_s, 2),
        "env_steps_per_s": total_env_steps / run_s,
        "cost_limit": trainer.cost_limit,
        "episode_length": trainer.episode_length,
        "per_rho": per_rho,
    }


def plot(result: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    per_rho = result["per_rho"]
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(per_rho)))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, cost_key, label in ((axes[0], "final_cost", "final episode cost"),
                                (axes[1], "total_cost", "total cost paid during training")):
        means_x, means_y = [], []
        for colour, row in zip(colours, per_rho):
            x, y = row[cost_key], row["final_return"]
            ax.scatter(x["per_seed"], y["per_seed"], color=colour, alpha=0.35, s=18)
            ax.errorbar(x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], color=colour, marker="o", ms=8,
                        capsize=3, label=f"rho={row['rho']:g}" + (" (base)" if row["rho"] == 0 else ""))
            means_x.append(x["mean"])
            means_y.append(y["mean"])
        ax.plot(means_x, means_y, color="grey", lw=0.8, zorder=0)
        ax.set_xlabel(label)
        ax.set_ylabel("final episode return")
        ax.grid(alpha=0.3)
    axes[0].axvline(result["cost_limit"], color="red", ls="--", lw=1, label="cost limit")
    axes[0].legend(fontsize=8)
    axes[0].set_title("return vs final cost (mean +- std over seeds)")
    axes[1].set_title("return vs cost paid while learning")
    steps_per_update = result["config"]["num_envs"] * result["config"]["unroll_length"]
    for colour, row in zip(colours, per_rho):
        curve = np.asarray(row["curve_total_cost"])
        axes[2].plot(np.arange(1, len(curve) + 1) * steps_per_update, curve, color=colour, label=f"rho={row['rho']:g}")
    axes[2].set_xlabel("env steps per run")
    axes[2].set_ylabel("cumulative training cost (mean over seeds)")
    axes[2].set_title("cost paid during training")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    num_seeds = args.num_seeds or (16 if args.full else 8)
    config, rhos = make_config(args)

    import jax

    from _common import RESULTS_DIR, device_label, header, write_json

    platform_name = jax.devices()[0].platform
    prefix = args.out_prefix or os.path.join(
        RESULTS_DIR, f"pareto_{args.env}_{platform_name}" + ("_full" if args.full else ""))
    print(f"{len(rhos)} radii {list(rhos)} x {num_seeds} seeds of {config.algo} ({config.geometry}) on {config.env}: "
          f"{config.num_updates} updates of {config.num_envs}x{config.unroll_length} steps each, one program", flush=True)
    start = time.perf_counter()
    result = run_sweep(config, rhos, num_seeds, args.final_window)
    report = {**header(), "benchmark": "pareto", "full": args.full,
              "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "progress", "compilation_cache")}
              | {"rhos": list(rhos), "num_seeds": num_seeds, "rho_in_config": config.rho,
                 "note": "config rho only puts the transform in the chain; each run's radius is the traced rho"},
              **result}
    report["wall_s"] = round(time.perf_counter() - start, 1)
    write_json(prefix + ".json", report)
    dev = report["device"]
    plot(report, prefix + ".png",
         f"{config.algo} + SHAPO ({config.geometry}) on {config.env}: {num_seeds} seeds per rho, "
         f"{config.total_steps:,} steps per run; {device_label(dev)}, {report['date'][:10]}")
    print(f"compile {result['compile_s']}s, run {result['run_s']}s ({result['env_steps_per_s']:,.0f} env steps/s over all runs)")
    print(f"{'rho':>6} {'final return':>20} {'final cost':>18} {'total cost':>22}")
    for row in result["per_rho"]:
        f = lambda d: f"{d['mean']:9.2f} +- {d['std']:6.2f}"
        print(f"{row['rho']:6g} {f(row['final_return']):>20} {f(row['final_cost']):>18} {f(row['total_cost']):>22}"
              + (f"  ({row['failed_runs']} failed)" if row["failed_runs"] else ""))
    print(f"wrote {prefix}.json and {prefix}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
