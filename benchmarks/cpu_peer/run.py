"""Safety-Gymnasium's own CPU env stepping, for the "x times the CPU stack" figure (measured here).

Runs in the separate Python 3.10 virtualenv made by ``setup.sh`` (Safety-Gymnasium 1.0.0 from
PyPI with its pinned MuJoCo), not in the project's JAX venv:

  bash benchmarks/cpu_peer/setup.sh
  benchmarks/cpu_peer/.venv/bin/python benchmarks/cpu_peer/run.py \\
      --compare benchmarks/results/throughput_cpu_quick.json --out benchmarks/results/cpu_peer.json

What is timed: ``env.step`` with uniformly random actions (``action_space.sample()``, drawn
inside the timed loop as an agent would draw its actions), resetting when an episode
terminates or is truncated; steps/s over ``--steps`` steps after ``--warmup`` untimed ones.
Single env, then Safety-Gymnasium's vector env (``safety_gymnasium.vector.make``) both
synchronous (one process) and asynchronous (one subprocess per env). No policy, no learning.
With ``--compare FILE`` (a throughput.py JSON from the same machine), the JSON also holds the
ratio of our MJX env-only and training steps/s to these.

``--navigation TASK`` times one navigation task instead (SG id ``TASK-v0``, single env, the same
loop) and writes one JSON object (``--json -``: one line on stdout); ``env_throughput.py --suite
navigation`` runs it as a subprocess right after timing our env for that task:

  benchmarks/cpu_peer/.venv/bin/python benchmarks/cpu_peer/run.py --navigation SafetyPointGoal1 \\
      --steps 2000 --warmup 100 --repeats 1 --seed 0 --json -
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata


def _version(pkg):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def single_env(env_id, steps, warmup, repeats, seed):
    import safety_gymnasium

    env = safety_gymnasium.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    rates, episodes = [], 0

    def run(n):
        nonlocal episodes
        for _ in range(n):
            _, _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                episodes += 1
                env.reset()

    run(warmup)
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        rates.append(steps / (time.perf_counter() - start))
    env.close()
    return {"num_envs": 1, "steps": steps, "repeats": repeats, "steps_per_s_runs": [round(r, 1) for r in rates],
            "steps_per_s": statistics.median(rates), "episodes_ended": episodes}


def vector_env(env_id, num_envs, asynchronous, steps, warmup, repeats, seed):
    import safety_gymnasium

    env = safety_gymnasium.vector.make(env_id, num_envs=num_envs, asynchronous=asynchronous)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    batched = max(1, steps // num_envs)
    for _ in range(max(1, warmup // num_envs)):
        env.step(env.action_space.sample())  # vector envs reset finished envs themselves
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batched):
            env.step(env.action_space.sample())
        rates.append(batched * num_envs / (time.perf_counter() - start))
    env.close()
    return {"num_envs": num_envs, "asynchronous": asynchronous, "steps": batched * num_envs, "repeats": repeats,
            "steps_per_s_runs": [round(r, 1) for r in rates], "steps_per_s": statistics.median(rates)}


def machine():
    return {"platform": "cpu", "cpu_model": cpu_model(), "host_cpus": os.cpu_count(), "machine": platform.machine()}


def sg_versions():
    return {p: _version(p) for p in ("safety-gymnasium", "gymnasium", "mujoco", "numpy")} | {"python": platform.python_version()}


def navigation(task, steps, warmup, repeats, seed):
    """One navigation task, single env: the figure our MJX port is compared against per task."""
    env_id = task if task.endswith("-v0") else f"{task}-v0"
    start = time.perf_counter()
    row = single_env(env_id, steps, warmup, repeats, seed)
    return {"benchmark": "cpu_peer_navigation", "task": env_id[:-3], "env_id": env_id,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": machine(), "versions": sg_versions(),
            "actions": "uniform random (action_space.sample())", "reset": "on terminated or truncated",
            "warmup": warmup, "seed": seed, **row, "wall_s": round(time.perf_counter() - start, 2)}


def write_report(report, path):
    """``-``: one line on stdout (a parent process reads the last line); else a file."""
    if path == "-":
        print(json.dumps(report), flush=True)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="SafetyHopperVelocity-v1")
    p.add_argument("--steps", type=int, default=5000, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vector-envs", type=int, nargs="*", default=[2, 4], help="vector env sizes (sync and async)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", default=None, help="a throughput.py JSON from the same machine")
    p.add_argument("--navigation", metavar="TASK", default=None,
                   help="time one navigation task single env (e.g. SafetyPointGoal1 -> SafetyPointGoal1-v0); needs --json")
    p.add_argument("--json", default=None, metavar="PATH", help="with --navigation: JSON file, or - for one line on stdout")
    p.add_argument("--out", default=None, help="JSON file of the locomotion run (required without --navigation)")
    args = p.parse_args(argv)
    if args.navigation:
        if not args.json:
            p.error("--navigation needs --json PATH (or --json -)")
        write_report(navigation(args.navigation, args.steps, args.warmup, args.repeats, args.seed), args.json)
        return 0
    if not args.out:
        p.error("--out is required (or --navigation TASK --json PATH)")

    report = {
        "benchmark": "cpu_peer",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": machine(),
        "versions": sg_versions(),
        "env_id": args.env_id,
        "actions": "uniform random (action_space.sample())",
        "results": [],
    }
    row = single_env(args.env_id, args.steps, args.warmup, args.repeats, args.seed)
    report["results"].append({"kind": "single", **row})
    print(f"{args.env_id} single env: {row['steps_per_s']:,.0f} steps/s", flush=True)
    for n in args.vector_envs:
        for asynchronous in (False, True):
            row = vector_env(args.env_id, n, asynchronous, args.steps, args.warmup, args.repeats, args.seed)
            report["results"].append({"kind": "vector_async" if asynchronous else "vector_sync", **row})
            print(f"{args.env_id} vector env x{n} {'async' if asynchronous else 'sync '}: {row['steps_per_s']:,.0f} steps/s",
                  flush=True)
    best = max(report["results"], key=lambda r: r["steps_per_s"])
    report["best_steps_per_s"] = best["steps_per_s"]
    report["best_kind"] = f"{best['kind']} x{best['num_envs']}"
    report["single_env_steps_per_s"] = report["results"][0]["steps_per_s"]

    if args.compare:
        with open(args.compare) as f:
            ours = json.load(f)
        sps = ours["steps_per_s"]
        report["compare"] = {
            "file": os.path.relpath(args.compare),
            "ours_device": ours["device"],
            "ours_sizes": ours["sizes"],
            "ours_date": ours["date"],
            "mjx_env_only_steps_per_s": sps["env_only"],
            "mjx_env_only_vs_single_env": sps["env_only"] / report["single_env_steps_per_s"],
            "mjx_env_only_vs_best_cpu": sps["env_only"] / report["best_steps_per_s"],
            "ppo_lag_training_steps_per_s": sps["ppo_lag"],
            "ppo_lag_training_vs_single_env_stepping": sps["ppo_lag"] / report["single_env_steps_per_s"],
            "ppo_lag_training_vs_best_cpu_stepping": sps["ppo_lag"] / report["best_steps_per_s"],
        }
        c = report["compare"]
        print(f"ours (MJX, {ours['device']['device_kind']}): env-only {c['mjx_env_only_steps_per_s']:,.0f} steps/s = "
              f"{c['mjx_env_only_vs_single_env']:.2f}x single env, {c['mjx_env_only_vs_best_cpu']:.2f}x best CPU stepping; "
              f"PPO-Lag training {c['ppo_lag_training_steps_per_s']:,.0f} steps/s = "
              f"{c['ppo_lag_training_vs_best_cpu_stepping']:.2f}x best CPU stepping (no learning)", flush=True)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
