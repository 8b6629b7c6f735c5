"""Env-only throughput of the registered MJX tasks: steps/s of a jitted ``lax.scan`` of vmapped ``env.step``.

For each task: one jitted single-env ``reset`` (its states stacked into the batch); for each
batch size, one jitted scan of ``steps`` vmapped ``env.step`` calls whose actions are drawn
inside the scan (uniform in [-1, 1], or zeros with ``--actions zero``: random actions can push
MJX's constraint solver to its iteration limit, which costs time). No auto-reset and no policy, so this is the simulator's ceiling.
Compile time (trace + lower + XLA compile) is reported apart from run time; every timing ends
in ``jax.block_until_ready``. The first run after compiling is timed apart too (``first_run_s``)
and the steady-state rate is the median of the ``--repeats`` runs after it.

  python benchmarks/env_throughput.py --quick --out benchmarks/results/env_throughput_cpu.json
  python benchmarks/env_throughput.py --suite navigation --num-envs 1 1024 --steps 4 --repeats 1 \
      --out benchmarks/results/env_throughput_navigation_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata

import jax
import jax.numpy as jp

import shapo_envs


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _timed(fn, *args):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t


def batched_reset(reset_c, keys):
    """``num_envs`` reset states from one compiled single-env reset (one compile per task, not per size)."""
    states = [reset_c(k) for k in keys]
    return jax.block_until_ready(jax.tree.map(lambda *xs: jp.stack(xs), *states))


def bench(env, reset_c, num_envs: int, steps: int, actions: str, repeats: int, seed: int) -> dict:
    """Compile and time ``steps`` batched steps of ``num_envs`` envs."""
    step = jax.vmap(env.step)
    size = (num_envs, env.action_size)

    def rollout(state, key):
        def body(carry, _):
            state, key = carry
            key, sub = jax.random.split(key)
            a = jax.random.uniform(sub, size, minval=-1.0, maxval=1.0) if actions == "random" else jp.zeros(size)
            return (step(state, a), key), None

        (state, _), _ = jax.lax.scan(body, (state, key), None, length=steps)
        return state

    key_reset, key_act = jax.random.split(jax.random.PRNGKey(seed))
    state = batched_reset(reset_c, jax.random.split(key_reset, num_envs))

    t = time.perf_counter()
    rollout_c = jax.jit(rollout).lower(state, key_act).compile()
    compile_s = time.perf_counter() - t

    final, first_run_s = _timed(rollout_c, state, key_act)
    runs = [_timed(rollout_c, state, key_act)[1] for _ in range(repeats)]
    run_s = statistics.median(runs)
    finite = jp.all(jp.isfinite(final.obs), axis=-1)
    return {
        "num_envs": num_envs,
        "steps": steps,
        "actions": actions,
        "compile_s": round(compile_s, 3),
        "first_run_s": round(first_run_s, 4),
        "run_s": [round(r, 4) for r in runs],
        "steps_per_s": num_envs * steps / run_s,
        "ms_per_batched_step": 1e3 * run_s / steps,
        # without auto-reset, fallen robots keep being simulated; flags a state that blew up
        "nonfinite_final_obs_envs": int(num_envs - int(finite.sum())),
        "final_cost_mean": float(final.info["cost"].mean()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=None, help="task names (default: every registered MJX task of --suite)")
    p.add_argument("--suite", choices=("all", "navigation", "locomotion"), default="all",
                   help="without --envs: every MJX task, or the 18 navigation tasks, or the others")
    p.add_argument("--num-envs", nargs="+", type=int, default=[1, 64, 1024], help="batch sizes")
    p.add_argument("--steps", type=int, default=100, help="env steps per timed rollout")
    p.add_argument("--actions", choices=("random", "zero"), default="random")
    p.add_argument("--repeats", type=int, default=2, help="timed runs after the first (median reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="num_envs 1 and 128, 100 steps, 3 repeats (CPU smoke)")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    if args.quick:
        args.num_envs, args.steps, args.repeats = [1, 128], 100, 3

    from shapo_envs.navigation import NAMES as NAVIGATION

    names = args.envs or {"all": shapo_envs.list_envs(), "navigation": list(NAVIGATION),
                          "locomotion": [n for n in shapo_envs.list_envs() if n not in NAVIGATION]}[args.suite]
    envs = {n: shapo_envs.make_env(n) for n in names}
    if args.envs is None:  # only the MJX tasks
        envs = {n: e for n, e in envs.items() if e.backend == "mjx"}

    dev = jax.devices()[0]
    report = {
        "device": {"platform": dev.platform, "device_kind": dev.device_kind, "num_devices": jax.device_count(),
                   "host_cpus": os.cpu_count(), "machine": platform.machine()},
        "versions": {p: _version(p) for p in ("jax", "jaxlib", "mujoco", "mujoco-mjx", "brax")}
        | {"python": platform.python_version()},
        "config": {"steps": args.steps, "num_envs": args.num_envs, "actions": args.actions,
                   "repeats": args.repeats, "seed": args.seed, "auto_reset": False},
        "results": [],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for name, env in envs.items():
        t = time.perf_counter()
        reset_c = jax.jit(env.reset).lower(jax.random.PRNGKey(0)).compile()
        reset_compile_s = round(time.perf_counter() - t, 3)
        for n in args.num_envs:
            row = {"env": name, "reset_compile_s": reset_compile_s,
                   **bench(env, reset_c, n, args.steps, args.actions, args.repeats, args.seed)}
            report["results"].append(row)
            print(f"{name:28s} num_envs={n:5d}  {row['steps_per_s']:10.0f} steps/s  "
                  f"compile {row['compile_s']:6.1f}s (reset {row['reset_compile_s']:.1f}s)  "
                  f"run {row['run_s']}s", flush=True)
            with open(args.out, "w") as f:  # rewritten after each row: partial results survive
                json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
