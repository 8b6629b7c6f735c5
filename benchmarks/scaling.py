"""Scaling: env steps/s against num_envs and against vmapped seeds, JSON + PNG.

Two sweeps on one task (default SafetyHopperVelocity), each point its own compiled program:

  num_envs  (1 seed)      training (our PPO-Lag, one full iteration = rollout + update, driven
                          as ``shapo-train`` drives it) and env-only (the MJX ceiling, actions
                          from a fresh policy, see throughput.py), steps/s of all envs;
  seeds     (--seed-envs) training with ``jax.vmap`` over seeds, steps/s summed over seeds.

Every timing is the median of ``--repeats`` iterations after one warm-up, each ending in
``jax.block_until_ready``; compile time is recorded per point. A point that does not fit
(out of memory) is recorded as such and the sweep stops growing: on an accelerator the
largest num_envs x seeds that fits is part of the result.

  python benchmarks/scaling.py --quick                 # CPU: num_envs 32..512, seeds 1..4
  python benchmarks/scaling.py                         # num_envs 64..4096, seeds 1..16 (GPU)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="SafetyHopperVelocity")
    p.add_argument("--num-envs", type=int, nargs="+", default=[64, 256, 1024, 4096])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--seed-envs", type=int, default=256, help="num_envs per seed in the seeds sweep")
    p.add_argument("--unroll-length", type=int, default=64)
    p.add_argument("--num-minibatches", type=int, default=32)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true",
                   help="CPU: num_envs 32 128 512, seeds 1 2 4 at 64 envs, unroll 32, 4 minibatches, 3 repeats")
    p.add_argument("--out-prefix", default=None, help="PREFIX.json and PREFIX.png (default benchmarks/results/scaling_<platform>[_quick])")
    return p


def is_oom(err: Exception) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.num_envs, args.seeds, args.seed_envs = [32, 128, 512], [1, 2, 4], 64
        args.unroll_length, args.num_minibatches, args.repeats = 32, 4, 3

    import jax
    import jax.numpy as jnp

    import shapo_envs
    from _common import (RESULTS_DIR, compile_timed, header, make_env_only, median, batched_reset, timed,
                         trainer_state, write_json)
    from shapo_jax.config import TrainConfig
    from shapo_jax.networks import GaussianActor
    from shapo_jax.train import make_trainer, seed_keys

    platform_name = jax.devices()[0].platform
    prefix = args.out_prefix or os.path.join(RESULTS_DIR, f"scaling_{platform_name}" + ("_quick" if args.quick else ""))
    env = shapo_envs.make_env(args.env)
    key = jax.random.PRNGKey(0)
    actor = GaussianActor((64, 64), env.action_size)
    actor_params = actor.init(key, jnp.zeros((1, env.observation_size)))
    report = {**header(), "benchmark": "scaling", "quick": args.quick,
              "sizes": {"env": args.env, "unroll_length": args.unroll_length, "num_minibatches": args.num_minibatches,
                        "update_epochs": args.update_epochs, "repeats": args.repeats, "seed_envs": args.seed_envs,
                        "algo": "ppo_lag", "rho": 0.0},
              "reset_compile_s": {}, "num_envs_sweep": [], "seeds_sweep": []}
    wall = time.perf_counter()

    def save():
        write_json(prefix + ".json", report)

    def resets(count):  # a batched reset compiled per batch size, its compile time kept apart
        states, seconds = batched_reset(env, jax.random.split(key, count))
        report["reset_compile_s"].setdefault(str(count), round(seconds, 2))
        return states

    def config_for(num_envs):
        return TrainConfig(env=args.env, num_envs=num_envs, unroll_length=args.unroll_length,
                           num_minibatches=args.num_minibatches, update_epochs=args.update_epochs,
                           total_steps=num_envs * args.unroll_length, progress=False, compilation_cache=False)

    def time_training(num_envs, num_seeds):
        config = config_for(num_envs)
        keys = seed_keys(0, num_seeds)
        env_states = resets(num_seeds * num_envs)
        env_states = jax.tree.map(lambda x: x.reshape((num_seeds, num_envs) + x.shape[1:]), env_states)
        state, _ = trainer_state(config, env, keys, env_states)
        update_c, compile_s = compile_timed(jax.vmap(make_trainer(config, env=env).update), state, donate_argnums=0)
        state, _ = jax.block_until_ready(update_c(state))  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            state, metrics = jax.block_until_ready(update_c(state))
            times.append(time.perf_counter() - t)
        steps = num_seeds * num_envs * args.unroll_length
        return {"compile_s": round(compile_s, 2), "iteration_s": [round(x, 5) for x in times],
                "steps_per_s": steps / median(times)}

    def time_env_only(num_envs):
        run = make_env_only(env, actor, num_envs, args.unroll_length)
        states = resets(num_envs)
        carry = (states, states, key)
        run_c, compile_s = compile_timed(run, carry, actor_params)
        carry, _ = timed(run_c, carry, actor_params)
        times = []
        for _ in range(args.repeats):
            carry, t = timed(run_c, carry, actor_params)
            times.append(t)
        return {"compile_s": round(compile_s, 2), "iteration_s": [round(x, 5) for x in times],
                "steps_per_s": num_envs * args.unroll_length / median(times)}

    for n in args.num_envs:
        row = {"num_envs": n}
        for name, fn in (("training", lambda: time_training(n, 1)), ("env_only", lambda: time_env_only(n))):
            try:
                row[name] = fn()
            except Exception as err:  # noqa: BLE001 - an OOM is a result, anything else is not
                if not is_oom(err):
                    raise
                row[name] = {"error": "out of memory"}
        report["num_envs_sweep"].append(row)
        print(f"[{time.perf_counter() - wall:6.0f}s] num_envs {n:5d}: training "
              f"{row['training'].get('steps_per_s', float('nan')):10,.0f} steps/s, env-only "
              f"{row['env_only'].get('steps_per_s', float('nan')):10,.0f} steps/s", flush=True)
        save()
        if "error" in row["training"] and "error" in row["env_only"]:
            break
    for s in args.seeds:
        try:
            row = {"num_seeds": s, "num_envs": args.seed_envs, "training": time_training(args.seed_envs, s)}
        except Exception as err:  # noqa: BLE001
            if not is_oom(err):
                raise
            report["seeds_sweep"].append({"num_seeds": s, "num_envs": args.seed_envs, "training": {"error": "out of memory"}})
            break
        report["seeds_sweep"].append(row)
        print(f"[{time.perf_counter() - wall:6.0f}s] seeds {s:3d} x {args.seed_envs} envs: training "
              f"{row['training']['steps_per_s']:10,.0f} steps/s (all seeds)", flush=True)
        save()
    fits = [r for r in report["seeds_sweep"] if "error" not in r["training"]]
    report["largest_fitting"] = {
        "num_envs_1_seed": max([r["num_envs"] for r in report["num_envs_sweep"] if "error" not in r["training"]], default=None),
        "seeds_x_envs": (max(r["num_seeds"] for r in fits), args.seed_envs) if fits else None,
        "note": "largest tried that ran; not a search for the limit unless a larger point failed with out of memory",
    }
    report["wall_s"] = round(time.perf_counter() - wall, 1)
    save()
    plot(report, prefix + ".png")
    print(f"wrote {prefix}.json and {prefix}.png")
    return 0


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from _common import device_label

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = report["num_envs_sweep"]
    for name, style in (("training", "o-"), ("env_only", "s--")):
        pts = [(r["num_envs"], r[name]["steps_per_s"]) for r in rows if "steps_per_s" in r.get(name, {})]
        if pts:
            axes[0].plot(*zip(*pts), style, label={"training": "PPO-Lag training", "env_only": "env-only (MJX)"}[name])
    axes[0].set_xscale("log", base=2)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("num_envs (1 seed)")
    axes[0].set_ylabel("env steps/s")
    axes[0].legend()
    pts = [(r["num_seeds"], r["training"]["steps_per_s"]) for r in report["seeds_sweep"] if "steps_per_s" in r["training"]]
    if pts:
        axes[1].plot(*zip(*pts), "o-", label=f"PPO-Lag training, {report['sizes']['seed_envs']} envs per seed")
    axes[1].set_xscale("log", base=2)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("vmapped seeds")
    axes[1].set_ylabel("env steps/s, all seeds")
    axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    dev = report["device"]
    fig.suptitle(f"{report['sizes']['env']}, unroll {report['sizes']['unroll_length']}; "
                 f"{device_label(dev)}, {report['date'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
