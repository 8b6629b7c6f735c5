"""Env-only throughput of the registered MJX tasks: steps/s of a jitted ``lax.scan`` of vmapped ``env.step``.

For each task and batch size: one jitted vmapped ``reset`` (its compile time is
``reset_compile_s``), then one jitted scan of ``steps`` vmapped ``env.step`` calls whose actions are drawn
inside the scan (uniform in [-1, 1], or zeros with ``--actions zero``: random actions can push
MJX's constraint solver to its iteration limit, which costs time). No auto-reset and no policy, so this is the simulator's ceiling.
Compile time (trace + lower + XLA compile) is reported apart from run time; every timing ends
in ``jax.block_until_ready``. The first run after compiling is timed apart too (``first_run_s``)
and the steady-state rate is the median of the ``--repeats`` runs after it.

Navigation tasks are also stepped in Safety-Gymnasium 1.0.0 itself, side by side in the same
run: right after our sizes of a task are timed, ``cpu_peer/run.py --navigation TASK`` runs in
SG's own venv (``--sg-python``; single env, ``action_space.sample()`` actions, reset on
terminated/truncated, ``--sg-steps`` timed after a warm-up), so a shared CPU loads both alike.
Each row of such a task gets ``sg_steps_per_s`` and ``ratio_vs_sg`` (our env-only steps/s at
that batch size / SG's single-env steps/s; SG's timing includes its resets, one per 1000-step
episode, ours has none); ``sg`` holds SG's own records. ``--no-sg`` skips it.

``--devices N`` splits each batch over N devices (a one-axis mesh, every state leaf split along
the envs). XLA runs a program on one CPU device in a single thread, so on a CPU the script makes
N host devices before JAX starts (``--xla_force_host_platform_device_count``, unless
``XLA_FLAGS`` names a count) and N up to the core count uses N cores. Rows record
``num_devices`` and ``devices_holding_states`` (read from the final states' sharding). On
jaxlib 0.10 a CPU run with N > 1 can deadlock: the devices' batched LAPACK calls (MJX's
Cholesky) wait on pieces queued behind each other on XLA's one-thread-per-core pool; it did on
SafetyPointGoal2 (README, "All cores of a CPU").

  python benchmarks/env_throughput.py --quick --out benchmarks/results/env_throughput_cpu.json
  python benchmarks/env_throughput.py --suite navigation --num-envs 1 1024 --steps 4 --repeats 1 \
      --out benchmarks/results/env_throughput_navigation_cpu.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jp
import numpy as np

import shapo_envs

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import batched_reset, header  # noqa: E402

SG_PYTHON = os.path.join(HERE, "cpu_peer", ".venv", "bin", "python")
SG_RUN = os.path.join(HERE, "cpu_peer", "run.py")
SG_WARMUP = 100  # untimed SG steps before the timed ones
SG_TIMEOUT_S = 600


def _timed(fn, *args):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t


def env_sharding(num_devices: int):
    """The env batch split over the first ``num_devices`` devices (None for one device)."""
    if num_devices == 1:
        return None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    return NamedSharding(Mesh(np.asarray(jax.devices()[:num_devices]), ("env",)), PartitionSpec("env"))


def bench(env, num_envs: int, steps: int, actions: str, repeats: int, seed: int, num_devices: int = 1) -> dict:
    """Compile and time ``steps`` batched steps of ``num_envs`` envs (after one batched reset),
    the batch split over ``num_devices`` devices."""
    sharding = env_sharding(num_devices)
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
    state, reset_compile_s = batched_reset(env, jax.random.split(key_reset, num_envs), sharding)

    t = time.perf_counter()
    shardings = {} if sharding is None else {"in_shardings": (sharding, None), "out_shardings": sharding}
    rollout_c = jax.jit(rollout, **shardings).lower(state, key_act).compile()
    compile_s = time.perf_counter() - t

    final, first_run_s = _timed(rollout_c, state, key_act)
    runs = [_timed(rollout_c, state, key_act)[1] for _ in range(repeats)]
    run_s = statistics.median(runs)
    finite = jp.all(jp.isfinite(final.obs), axis=-1)
    return {
        "num_envs": num_envs,
        "num_devices": num_devices,
        "devices_holding_states": len(final.obs.sharding.device_set),
        "steps": steps,
        "actions": actions,
        "reset_compile_s": round(reset_compile_s, 3),
        "compile_s": round(compile_s, 3),
        "first_run_s": round(first_run_s, 4),
        "run_s": [round(r, 4) for r in runs],
        "steps_per_s": num_envs * steps / run_s,
        "ms_per_batched_step": 1e3 * run_s / steps,
        # without auto-reset, fallen robots keep being simulated; flags a state that blew up
        "nonfinite_final_obs_envs": int(num_envs - int(finite.sum())),
        "final_cost_mean": float(final.info["cost"].mean()),
    }


def physics_impl_supported() -> bool:
    """Whether ``make_env`` takes ``physics_impl`` (MJX's jax or warp), by its signature or the navigation env's.

    ``make_env`` forwards keyword arguments to the task's factory, so its own signature may not
    name it; the flag is offered only when one of them does.
    """
    if "physics_impl" in inspect.signature(shapo_envs.make_env).parameters:
        return True
    from shapo_envs.navigation.env import NavigationEnv

    return "physics_impl" in inspect.signature(NavigationEnv.__init__).parameters


def physics_kwargs(name: str, physics_impl: str | None, max_worlds: int = 1) -> dict:
    """``make_env`` options for ``physics_impl`` on the tasks that take it (the navigation ones):
    Warp also needs ``max_worlds``, the largest batch it will step (its contact list is shared)."""
    from shapo_envs.navigation import NAMES as NAVIGATION

    if physics_impl is None or name not in NAVIGATION:
        return {}
    if physics_impl == "warp":
        return {"physics_impl": physics_impl, "max_worlds": max_worlds}
    return {"physics_impl": physics_impl}


def run_sg(python: str, task: str, steps: int, seed: int, warmup: int = SG_WARMUP) -> dict:
    """SG's single-env steps/s of ``task``, from ``cpu_peer/run.py --navigation`` in SG's own venv.

    Its JSON is the last line of its stdout; a failure becomes ``{"error": ...}`` so one broken
    task does not lose the rest of the run.
    """
    cmd = [python, SG_RUN, "--navigation", task, "--steps", str(steps), "--warmup", str(warmup),
           "--repeats", "1", "--seed", str(seed), "--json", "-"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SG_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": f"{type(err).__name__}: {err}"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def sg_ratios(rows: list[dict], sg: dict) -> dict:
    """Adds ``sg_steps_per_s`` and ``ratio_vs_sg`` (ours / SG single env) to ``rows``; the per-task summary."""
    sg_rate = sg.get("steps_per_s")
    ratios = {}
    for row in rows:
        row["sg_steps_per_s"] = sg_rate
        row["ratio_vs_sg"] = row["steps_per_s"] / sg_rate if sg_rate else None
        ratios[str(row["num_envs"])] = row["ratio_vs_sg"]
    return {"sg_steps_per_s": sg_rate, "ratio_vs_sg": ratios, "run": sg}


def sg_line(name: str, sg: dict) -> str:
    """The console line of one task's SG figure and our ratios to it."""
    if sg["sg_steps_per_s"] is None:
        return f"{name:28s} Safety-Gymnasium: {sg['run'].get('error')}"
    ratios = "  ".join(f"x{n}: {r:.2f}x" for n, r in sg["ratio_vs_sg"].items())
    return f"{name:28s} Safety-Gymnasium single env {sg['sg_steps_per_s']:8.0f} steps/s; ours / SG  {ratios}"


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--sg-python", default=SG_PYTHON,
                   help="python of the Safety-Gymnasium venv that steps the navigation tasks natively (made by cpu_peer/setup.sh)")
    p.add_argument("--sg-steps", type=int, default=2000,
                   help="timed SG steps per navigation task (2000 = two 1000-step episodes, so SG's resets are in the timing)")
    p.add_argument("--no-sg", action="store_true", help="do not step Safety-Gymnasium")
    p.add_argument("--devices", type=int, default=1,
                   help="split each env batch over this many devices; on a CPU, that many host devices "
                        "are made (one thread each), so up to one per core adds cores (jaxlib 0.10 can "
                        "deadlock there on tasks with many degrees of freedom, e.g. SafetyPointGoal2)")
    if physics_impl_supported():
        p.add_argument("--physics-impl", choices=("jax", "warp"), default=None,
                       help="MJX implementation passed to make_env (default: the env's own)")
    return p


def task_names(args) -> list[str]:
    from shapo_envs.navigation import NAMES as NAVIGATION

    return args.envs or {"all": shapo_envs.list_envs(), "navigation": list(NAVIGATION),
                         "locomotion": [n for n in shapo_envs.list_envs() if n not in NAVIGATION]}[args.suite]


def check_sg_python(args, names: list[str]) -> None:
    """Fails in one line, before anything compiles, when navigation tasks need an SG venv that is absent."""
    from shapo_envs.navigation import NAMES as NAVIGATION

    if args.no_sg or not set(names) & set(NAVIGATION) or os.path.exists(args.sg_python):
        return
    raise SystemExit(f"env_throughput.py: no Safety-Gymnasium python at {args.sg_python}; "
                     f"run `bash benchmarks/cpu_peer/setup.sh` first, or pass --no-sg")


def use_devices(num_devices: int, batch_sizes: list[int]) -> None:
    """Makes ``num_devices`` host devices where JAX runs on the CPU (XLA's
    ``--xla_force_host_platform_device_count``, read when JAX starts its backend, so before any
    computation); fails in one line when that many devices cannot be had or a batch does not split."""
    if num_devices < 1 or any(n % num_devices for n in batch_sizes):
        raise SystemExit(f"env_throughput.py: --devices: must be >= 1 and divide every --num-envs "
                         f"{batch_sizes}, got {num_devices}")
    if num_devices > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={num_devices}").strip()
    if jax.device_count() < num_devices:
        raise SystemExit(f"env_throughput.py: --devices: {num_devices} asked for, {jax.device_count()} "
                         f"{jax.default_backend()} device(s) visible")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.num_envs, args.steps, args.repeats = [1, 128], 100, 3
    from shapo_envs.navigation import NAMES as NAVIGATION

    names = task_names(args)
    check_sg_python(args, names)
    use_devices(args.devices, args.num_envs)
    physics_impl = getattr(args, "physics_impl", None)
    if physics_impl is not None:  # one line, before anything compiles
        from shapo_envs.navigation import physics

        if physics_impl == "warp" and args.devices > 1:
            raise SystemExit("env_throughput.py: --devices: Warp shares one contact list across the worlds it "
                             "steps, so --physics-impl warp runs on one device")
        try:
            physics.check_impl(physics_impl, max(args.num_envs))
        except ValueError as error:
            raise SystemExit(f"env_throughput.py: --physics-impl {physics_impl}: "
                             f"{str(error).removeprefix('physics_impl: ')}") from None
    envs = {n: shapo_envs.make_env(n, **physics_kwargs(n, physics_impl, max(args.num_envs))) for n in names}
    if args.envs is None:  # only the MJX tasks
        envs = {n: e for n, e in envs.items() if e.backend == "mjx"}

    sg_on = not args.no_sg and bool(set(envs) & set(NAVIGATION))
    report = {
        **header(),
        "benchmark": "env_throughput",
        "config": {"steps": args.steps, "num_envs": args.num_envs, "actions": args.actions,
                   "repeats": args.repeats, "seed": args.seed, "auto_reset": False, "physics_impl": physics_impl,
                   "devices": args.devices,
                   "sg": {"python": args.sg_python, "steps": args.sg_steps, "warmup": SG_WARMUP, "num_envs": 1,
                          "ratio_vs_sg": "our env-only steps/s at that num_envs / SG single-env steps/s, "
                                         "SG timed right after ours on the same machine"} if sg_on else None},
        "results": [],
    }
    if sg_on:
        report["sg"] = {}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def save():  # rewritten after each row: partial results survive
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)

    for name, env in envs.items():
        rows = []
        for n in args.num_envs:
            print(f"{name:28s} num_envs={n:5d}  compiling and running", file=sys.stderr, flush=True)
            row = {"env": name, **bench(env, n, args.steps, args.actions, args.repeats, args.seed, args.devices)}
            rows.append(row)
            report["results"].append(row)
            print(f"{name:28s} num_envs={n:5d}  {row['steps_per_s']:10.0f} steps/s  "
                  f"compile {row['compile_s']:6.1f}s (reset {row['reset_compile_s']:.1f}s)  "
                  f"run {row['run_s']}s", flush=True)
            save()
        if sg_on and name in NAVIGATION:  # right after ours, so both see the same load
            report["sg"][name] = sg_ratios(rows, run_sg(args.sg_python, name, args.sg_steps, args.seed))
            print(sg_line(name, report["sg"][name]), flush=True)
            save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
