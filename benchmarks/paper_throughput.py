"""Training throughput in the paper's setting: SafetyPointGoal1, SHAPO-PIDLag, 16 seeds vmapped.

The setting is ``shapo-train --env SafetyPointGoal1 --algo trpo_pid --preset paper --num-seeds 16``:
per seed and update 20 envs x 1000 steps (20,000 env steps), a TRPO step with the PID
Lagrangian and Fisher SHAPO (target KL 1e-5), critics fitted 10 epochs x 160 minibatches.
What is timed is ``jax.jit(jax.vmap(Trainer.update), donate_argnums=0)`` driven from Python one
update per call, as ``shapo-train`` drives it: compile apart, one warm-up update, then
``--updates`` updates, each ending in ``jax.block_until_ready``. Training env steps/s =
seeds x steps per update / median update time (all seeds; per seed is reported too).

The released SHAPO code (PyTorch on CPU) trains one seed of SHAPO-PIDLag on SafetyPointGoal1
at about 535 env steps/s on a 2-core CPU. That figure is quoted (``released``), not measured
here; the ratios against it compare different machines unless this runs on such a CPU.

  python benchmarks/paper_throughput.py --out benchmarks/results/paper_throughput_gpu_h200.json
  python benchmarks/paper_throughput.py --env PointHazard --seeds 2 --updates 1 --num-envs 2 \\
      --unroll-length 8 --num-minibatches 2 --update-epochs 1 --out /tmp/paper_smoke.json   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RELEASED = {
    "steps_per_s": 535.0,
    "num_seeds": 1,
    "what": "released SHAPO code (PyTorch), SHAPO-PIDLag on SafetyPointGoal1, one seed, 2-core CPU",
    "measured_here": False,
}
OVERRIDABLE = ("num_envs", "unroll_length", "num_minibatches", "update_epochs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="SafetyPointGoal1")
    p.add_argument("--algo", default="trpo_pid", help="the paper's PIDLag is trpo_pid")
    p.add_argument("--seeds", type=int, default=16, help="seeds vmapped in one program")
    p.add_argument("--updates", type=int, default=3, help="timed updates after the warm-up one")
    p.add_argument("--seed", type=int, default=0)
    for name in OVERRIDABLE:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help="override the paper preset's value (smoke runs only)")
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/paper_throughput_<platform>.json)")
    return p


def paper_config(args):
    """The paper preset resolved once (``shapo_jax.config.resolve``), then frozen (preset none) so
    overrides equal to a default stay; ``make_trainer`` resolves the result again, which checks them."""
    from shapo_jax.config import TrainConfig, resolve

    config = resolve(TrainConfig(env=args.env, algo=args.algo, preset="paper", num_seeds=args.seeds,
                                 seed=args.seed, progress=False, compilation_cache=False))
    overrides = {n: getattr(args, n) for n in OVERRIDABLE if getattr(args, n) is not None}
    config = dataclasses.replace(config, preset="none", **overrides)
    return dataclasses.replace(config, total_steps=config.steps_per_update * (args.updates + 1)), overrides


def setting(config, overrides: dict) -> dict:
    """What was trained, as the JSON records it."""
    keys = ("env", "algo", "num_seeds", "num_envs", "unroll_length", "num_minibatches", "update_epochs",
            "geometry", "perturbation_target_kl", "trust_region_kl", "trust_region_cg_iters", "cg_iters",
            "line_search_steps", "hidden_sizes")
    return {"preset": "paper", **{k: getattr(config, k) for k in keys},
            "steps_per_update_per_seed": config.steps_per_update, "overrides": overrides,
            # the released code's setting per seed; the ratios to its figure mean little otherwise
            "paper_setting": not overrides and config.env == "SafetyPointGoal1" and config.algo == "trpo_pid"}


def initial_state(config, env):
    """The vmapped TrainState with genuine resets (one compiled batched reset, no reset compile in init).

    Returns (state, reset compile s, init compile s).
    """
    import jax

    from _common import batched_reset, trainer_state
    from shapo_jax.train import seed_keys

    seeds, num_envs = config.num_seeds, config.num_envs
    states, reset_compile_s = batched_reset(env, jax.random.split(jax.random.PRNGKey(config.seed + 1), seeds * num_envs))
    states = jax.tree.map(lambda x: x.reshape((seeds, num_envs) + x.shape[1:]), states)
    state, init_compile_s = trainer_state(config, env, seed_keys(config.seed, seeds), states)
    return state, reset_compile_s, init_compile_s


def time_updates(update_c, state, updates: int):
    """Warm-up update, then ``updates`` timed ones; (state, warm-up s, [s per update])."""
    from _common import timed

    state_metrics, first_s = timed(update_c, state)
    state, times = state_metrics[0], []
    for _ in range(updates):
        (state, _), seconds = timed(update_c, state)
        times.append(seconds)
    return state, first_s, times


def summary(steps_per_update: int, seeds: int, times: list[float]) -> dict:
    """Steps/s over all seeds and per seed, and the ratios to the released code's quoted figure."""
    from _common import median

    rate = seeds * steps_per_update / median(times)
    return {"steps_per_s": rate, "steps_per_s_per_seed": rate / seeds,
            "speedup_vs_released": rate / RELEASED["steps_per_s"],
            "per_seed_vs_released": rate / seeds / RELEASED["steps_per_s"]}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import jax

    import shapo_envs
    from _common import RESULTS_DIR, compile_timed, header, write_json
    from shapo_jax.train import make_trainer

    wall = time.perf_counter()
    config, overrides = paper_config(args)
    out = args.out or os.path.join(RESULTS_DIR, f"paper_throughput_{jax.devices()[0].platform}.json")
    env = shapo_envs.make_env(config.env)
    trainer = make_trainer(config, env=env)  # validates the config before anything compiles
    state, reset_compile_s, init_compile_s = initial_state(config, env)
    update_c, update_compile_s = compile_timed(jax.vmap(trainer.update), state, donate_argnums=0)
    report = {**header(), "benchmark": "paper_throughput", "setting": setting(config, overrides),
              "compile_s": {"reset": round(reset_compile_s, 2), "init": round(init_compile_s, 2),
                            "update": round(update_compile_s, 2)},
              "released": RELEASED}
    write_json(out, report)  # compile times survive a timeout during the updates
    state, first_s, times = time_updates(update_c, state, args.updates)
    report |= {"first_update_s": round(first_s, 3), "update_s": [round(t, 4) for t in times],
               **summary(config.steps_per_update, config.num_seeds, times),
               "failed_updates": int((state.failed_update >= 0).sum()), "wall_s": round(time.perf_counter() - wall, 1)}
    write_json(out, report)
    print(f"{config.env} {config.algo} (paper preset{', overrides ' + str(overrides) if overrides else ''}), "
          f"{config.num_seeds} seeds x {config.steps_per_update:,} steps/update: {report['steps_per_s']:,.0f} env steps/s "
          f"({report['steps_per_s_per_seed']:,.0f} per seed; compile {update_compile_s:.0f}s) = "
          f"{report['speedup_vs_released']:.1f}x the released code's quoted {RELEASED['steps_per_s']:.0f} steps/s "
          f"({report['per_seed_vs_released']:.2f}x per seed); wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
