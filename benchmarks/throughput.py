"""Training throughput side by side: env-only MJX, PPO-Lag and TRPO-PID with and without SHAPO, Brax PPO; one process.

Everything runs in this one process on one device with the same env and sizes
(``num_envs x unroll_length`` env steps per iteration, ``num_minibatches x update_epochs``
gradient steps per iteration, 64-64 tanh networks, observation normalisation on). Compile
time is measured apart (``jax.jit(...).lower(...).compile()``); every timed call ends in
``jax.block_until_ready``. What is timed, per iteration:

  env_only      a jitted ``lax.scan`` of ``unroll_length`` vmapped ``env.step`` calls, actions
                drawn as training draws them (``--actions policy``: Gaussian from a freshly
                initialised actor network, so MJX's solver sees the same kind of actions;
                ``zero`` and ``uniform`` are there for comparison) and envs reset to their
                initial state when done, as the trainer does. No learning: the ceiling.
  ppo_lag       ``jax.jit(jax.vmap(Trainer.update))`` of our PPO-Lag (rho = 0), driven from
                Python one update at a time as ``shapo-train`` does (1 seed).
  shapo_euclidean / shapo_fisher   the same with SHAPO on (``--rho``; Fisher radius from
                ``--target-kl``).
  trpo_pid / trpo_shapo_fisher   the paper's setting: TRPO with the PID Lagrangian (full-batch
                step, CG 15, line search 15 x 0.8, trust region 0.01), without and with Fisher
                SHAPO (``--target-kl``, CG 10, damping 0.1, backtracking 0.8 x 10, fallback 0.1;
                recorded under ``fisher_settings``). Same sizes as above; the critics are fitted
                in ``num_minibatches x update_epochs`` steps as for PPO.
  *_update      the update phase alone: the same ``Trainer.update`` built with
                ``env=NullEnv(...)`` (a Brax Env of the same sizes whose step costs nothing),
                so what remains is the policy's sampling plus advantages, multiplier, the PPO
                epochs x minibatches (with the sharpness step) and the normaliser.
  brax_ppo      ``brax.training.agents.ppo.train`` with matched sizes: one unroll of
                ``unroll_length`` per env per training step (``batch_size * num_minibatches =
                num_envs``, batch_size counted in unrolls), ``num_updates_per_batch =
                update_epochs``, 64-64 tanh policy and value nets, Normal policy (ours is an
                untransformed Gaussian too), normalize_observations=True, ``run_evals=False``,
                one training step per Brax "epoch". Its time per epoch is Brax's own
                ``training/sps`` (measured around its pmapped training epoch, after
                ``block_until_ready``, so evaluation and our callback are outside it); the first
                epoch includes compilation and is reported as ``compile_s``.

Interleaving, so that a shared, noisy CPU loads all variants alike: ours are timed in rounds,
one iteration of each per round (order rotated each round); Brax's ``progress_fn`` runs
one timed iteration of our PPO-Lag after each Brax epoch. Each ratio is the median over
rounds of the ratio of the paired iterations:

  ours_vs_brax_ppo       our PPO-Lag steps/s / Brax PPO steps/s      (target >= 1.0)
  shapo_overhead         SHAPO-euclidean / PPO-Lag time per iteration (target <= 1.10)
  shapo_update_overhead  the same for the update phase alone          (target <= 1.5)
  shapo_fisher_overhead  SHAPO-fisher / PPO-Lag time per iteration    (target <= 1.25)
  trpo_shapo_overhead    SHAPO-TRPO-PID / TRPO-PID time per iteration (target <= 1.10)
  train_vs_env_only      PPO-Lag steps/s / env-only steps/s           (target >= 0.7)

  python benchmarks/throughput.py --quick --out benchmarks/results/throughput_cpu_quick.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TARGETS = {
    "ours_vs_brax_ppo": (">=", 1.0),
    "shapo_overhead": ("<=", 1.10),
    "shapo_update_overhead": ("<=", 1.5),
    "shapo_fisher_overhead": ("<=", 1.25),
    "trpo_shapo_overhead": ("<=", 1.10),
    "train_vs_env_only": (">=", 0.7),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="SafetyHopperVelocity", help="registered task (default: SafetyHopperVelocity)")
    p.add_argument("--num-envs", type=int, default=1024)
    p.add_argument("--unroll-length", type=int, default=64)
    p.add_argument("--num-minibatches", type=int, default=32, help="must divide --num-envs (Brax's batch_size = num_envs / num_minibatches)")
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--rounds", type=int, default=10, help="timed iterations of each variant (after one warm-up)")
    p.add_argument("--rho", type=float, default=0.05, help="Euclidean SHAPO radius")
    p.add_argument("--target-kl", type=float, default=1e-5, help="Fisher SHAPO radius as a target KL (the paper's 1e-5)")
    p.add_argument("--actions", choices=("policy", "zero", "uniform"), default="policy",
                   help="env-only actions: policy = Gaussian from a fresh actor network, as training draws them")
    p.add_argument("--skip", nargs="*", default=[], choices=("brax", "euclidean", "fisher", "trpo"),
                   help="variants to leave out (their ratios are then null)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke: 64 envs x 64 steps, 4 minibatches x 4 epochs, 8 rounds (about 5 min on 2 idle cores)")
    p.add_argument("--note", default=None, help="free text stored in the JSON, e.g. that the CPU was shared with other jobs")
    p.add_argument("--out", required=True, help="JSON file to write")
    return p


def _ratio_summary(pairs: list[tuple[float, float]]) -> dict:
    """Paired (numerator_s, denominator_s) times -> median of per-round ratios, plus ratio of medians.

    Also the ratio of the fastest iterations: on a CPU shared with other jobs the delays are
    one-sided, so each variant's minimum is its least-disturbed time (a check on the median).
    """
    from _common import median

    ratios = [a / b for a, b in pairs]
    return {
        "median": median(ratios),
        "per_round": [round(r, 4) for r in ratios],
        "ratio_of_medians": median([a for a, _ in pairs]) / median([b for _, b in pairs]),
        "ratio_of_minimums": min(a for a, _ in pairs) / min(b for _, b in pairs),
    }


def fisher_settings(config, target_kl: float) -> dict:
    """What Fisher SHAPO and the TRPO step ran with (paper.md section 2), and how F v was formed."""
    from shapo_jax import fisher, sharpness

    return {
        "target_kl": target_kl, "cg_iters": config.cg_iters, "damping": config.cg_damping,
        "backtrack_factor": sharpness.BACKTRACK_FACTOR, "backtrack_tries": sharpness.MAX_BACKTRACKS,
        "fallback_scale": sharpness.FALLBACK_SCALE, "normaliser_epsilon": sharpness.FISHER_NORM_EPSILON,
        "trust_region_kl": config.trust_region_kl, "trust_region_cg_iters": config.trust_region_cg_iters,
        "line_search_steps": config.line_search_steps,
        # J^T M J v (Gauss-Newton form of the KL Hessian) where the library has it, else the KL's HVP
        "fisher_vector_product": "gauss_newton" if hasattr(fisher, "gaussian_fisher") else "kl_hessian_vector_product",
    }


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.num_envs, args.unroll_length, args.num_minibatches, args.update_epochs, args.rounds = 64, 64, 4, 4, 8
    if args.num_envs % args.num_minibatches:
        raise SystemExit("--num-minibatches must divide --num-envs (Brax PPO takes whole unrolls per minibatch)")

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from brax.training.agents.ppo import networks as brax_networks
    from brax.training.agents.ppo import train as brax_ppo

    import shapo_envs
    from _common import NullEnv, compile_timed, header, make_env_only, median, trainer_state, write_json
    from shapo_jax.config import TrainConfig
    from shapo_jax.networks import GaussianActor
    from shapo_jax.train import make_trainer, seed_keys

    warnings.filterwarnings("ignore", message=".*donated buffers.*")
    wall_start = time.perf_counter()
    steps = args.num_envs * args.unroll_length
    env = shapo_envs.make_env(args.env)
    null_env = NullEnv(env.observation_size, env.action_size)
    base = TrainConfig(
        env=args.env, algo="ppo_lag", num_envs=args.num_envs, unroll_length=args.unroll_length,
        num_minibatches=args.num_minibatches, update_epochs=args.update_epochs, total_steps=steps,
        seed=args.seed, progress=False, compilation_cache=False,
    )
    configs = {"ppo_lag": base}
    if "euclidean" not in args.skip:
        configs["shapo_euclidean"] = dataclasses.replace(base, rho=args.rho, geometry="euclidean")
    if "fisher" not in args.skip:
        configs["shapo_fisher"] = dataclasses.replace(base, geometry="fisher", perturbation_target_kl=args.target_kl)
    if "trpo" not in args.skip:
        configs["trpo_pid"] = dataclasses.replace(base, algo="trpo_pid")
        configs["trpo_shapo_fisher"] = dataclasses.replace(
            configs["trpo_pid"], geometry="fisher", perturbation_target_kl=args.target_kl)

    report = {
        **header(),
        "benchmark": "throughput",
        "quick": args.quick,
        "note": args.note,
        "load_average_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()],
        "sizes": {
            "env": args.env, "num_envs": args.num_envs, "unroll_length": args.unroll_length,
            "steps_per_iteration": steps, "num_minibatches": args.num_minibatches,
            "minibatch_size": steps // args.num_minibatches, "update_epochs": args.update_epochs,
            "hidden_sizes": list(base.hidden_sizes), "num_seeds": 1, "rounds": args.rounds,
            "rho_euclidean": args.rho, "target_kl_fisher": args.target_kl, "env_only_actions": args.actions,
            "brax_batch_size_unrolls": args.num_envs // args.num_minibatches,
        },
        "fisher_settings": fisher_settings(base, args.target_kl),
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "compile_s": {},
        "iteration_s": {},
        "steps_per_s": {},
    }

    def save():
        write_json(args.out, report)

    def log(msg):
        print(f"[{time.perf_counter() - wall_start:6.1f}s] {msg}", flush=True)

    # ---- env-only ceiling -------------------------------------------------------------------
    actor = GaussianActor(base.hidden_sizes, env.action_size)
    key = jax.random.PRNGKey(args.seed)
    actor_params = actor.init(key, jnp.zeros((1, env.observation_size)))
    env_only = make_env_only(env, actor, args.num_envs, args.unroll_length, args.actions)

    log(f"{args.env}: {args.num_envs} envs x {args.unroll_length} steps = {steps} steps/iteration, "
        f"{args.num_minibatches} minibatches x {args.update_epochs} epochs, device {report['device']['device_kind']}")
    reset_c, reset_compile = compile_timed(jax.vmap(env.reset), jax.random.split(key, args.num_envs))
    state0 = reset_c(jax.random.split(key, args.num_envs))
    env_only_c, c = compile_timed(env_only, (state0, state0, key), actor_params)
    report["compile_s"]["env_only"] = round(reset_compile + c, 2)
    env_carry = [(state0, state0, key)]
    log(f"compiled env_only in {reset_compile + c:.1f}s")

    # ---- our trainers: full iteration and update phase alone ---------------------------------
    # init: each trainer's init runs on a NullEnv (no MJX reset to trace and compile again),
    # then gets genuine reset states from the one compiled vmapped reset above; this changes
    # nothing that the update times (see _common.trainer_state).
    keys = seed_keys(args.seed, 1)
    env_states = jax.tree.map(lambda x: x[None], state0)  # [1 seed, num_envs, ...]
    null_env_states = jax.jit(jax.vmap(jax.vmap(null_env.reset)))(
        jax.random.split(key, args.num_envs).reshape((1, args.num_envs, -1)))
    programs = {}  # name -> [compiled update, state]
    for name, config in configs.items():
        full_state, ci = trainer_state(config, env, keys, env_states)
        null_trainer = make_trainer(config, env=null_env)
        null_state = full_state._replace(env_state=null_env_states, initial_env_state=null_env_states)
        for suffix, trainer, state in (("", make_trainer(config, env=env), full_state),
                                       ("_update", null_trainer, null_state)):
            update_c, cu = compile_timed(jax.vmap(trainer.update), state, donate_argnums=0)
            report["compile_s"][name + suffix] = {"init_without_env_reset": round(ci, 2), "update": round(cu, 2)}
            programs[name + suffix] = [update_c, jax.tree.map(lambda x: x.copy(), state)]
            log(f"compiled {name + suffix}: update {cu:.1f}s")
    save()

    def run_ours(name) -> float:
        update_c, state = programs[name]
        start = time.perf_counter()
        state, metrics = update_c(state)
        jax.block_until_ready((state, metrics))
        elapsed = time.perf_counter() - start
        programs[name][1] = state
        return elapsed

    def run_env_only() -> float:
        start = time.perf_counter()
        env_carry[0] = jax.block_until_ready(env_only_c(env_carry[0], actor_params))
        return time.perf_counter() - start

    variants = {"env_only": run_env_only, **{n: functools.partial(run_ours, n) for n in programs}}
    times = {n: [] for n in variants}
    warmup = {n: fn() for n, fn in variants.items()}  # first run after compile, kept apart
    report["first_run_s"] = {n: round(t, 4) for n, t in warmup.items()}
    order = list(variants)
    for r in range(args.rounds):
        rotated = order[r % len(order):] + order[: r % len(order)]
        for n in rotated:
            times[n].append(variants[n]())
        log("round %d: %s" % (r, ", ".join(f"{n} {times[n][-1]:.3f}s" for n in order)))
    report["iteration_s"].update({n: [round(t, 5) for t in ts] for n, ts in times.items()})
    report["steps_per_s"].update({n: steps / median(ts) for n, ts in times.items()})
    save()

    # ---- Brax PPO, with our PPO-Lag timed after each of its epochs --------------------------
    brax_rounds = []
    if "brax" not in args.skip:
        brax_epochs = args.rounds + 2  # Brax compiles its training epoch twice (first two calls)
        brax_times, ours_after = [], []

        def progress(step, metrics):
            if not first_progress:
                first_progress.append(time.perf_counter())
            brax_times.append(steps / float(metrics["training/sps"]))
            ours_after.append(run_ours("ppo_lag"))

        network_factory = functools.partial(
            brax_networks.make_ppo_networks,
            policy_hidden_layer_sizes=base.hidden_sizes, value_hidden_layer_sizes=base.hidden_sizes,
            activation=nn.tanh, distribution_type="normal",
        )
        log("Brax PPO: compiling and training")
        brax_start = time.perf_counter()
        first_progress = []
        episode_length = shapo_envs.get_spec(args.env).episode_length
        brax_ppo.train(
            environment=env, num_timesteps=brax_epochs * steps, num_envs=args.num_envs,
            episode_length=episode_length, unroll_length=args.unroll_length,
            batch_size=args.num_envs // args.num_minibatches, num_minibatches=args.num_minibatches,
            num_updates_per_batch=args.update_epochs, learning_rate=base.actor_learning_rate,
            entropy_cost=base.entropy_coefficient, discounting=base.gamma, gae_lambda=base.gae_lambda,
            clipping_epsilon=base.clip_epsilon, max_grad_norm=base.max_grad_norm, normalize_observations=True,
            network_factory=network_factory, seed=args.seed, num_evals=brax_epochs + 1, run_evals=False,
            progress_fn=progress,
        )
        brax_total = time.perf_counter() - brax_start
        steady_brax = brax_times[2:]
        report["compile_s"]["brax_ppo"] = round(brax_times[0] + brax_times[1] - 2 * median(steady_brax), 2)
        report["brax_first_two_epochs_s"] = [round(t, 3) for t in brax_times[:2]]
        report["brax_total_call_s"] = round(brax_total, 2)
        # Brax's setup before its first epoch (wrapping, pmapped reset compile, init), outside its timing
        report["brax_setup_s"] = round(first_progress[0] - brax_start - brax_times[0], 2)
        report["iteration_s"]["brax_ppo"] = [round(t, 5) for t in steady_brax]
        report["iteration_s"]["ppo_lag_between_brax_epochs"] = [round(t, 5) for t in ours_after[2:]]
        report["steps_per_s"]["brax_ppo"] = steps / median(steady_brax)
        report["steps_per_s"]["ppo_lag_between_brax_epochs"] = steps / median(ours_after[2:])
        brax_rounds = list(zip(steady_brax, ours_after[2:]))
        log(f"Brax PPO: first two epochs {brax_times[0]:.1f}s, {brax_times[1]:.1f}s (compiling), "
            f"steady {median(steady_brax):.3f}s/iteration; ours alongside {median(ours_after[2:]):.3f}s")

    # ---- ratios ----------------------------------------------------------------------------
    pair = lambda a, b: list(zip(times[a], times[b]))
    detail = {"train_vs_env_only": _ratio_summary(pair("env_only", "ppo_lag"))}  # time ratio = steps/s ratio inverted
    if "shapo_euclidean" in configs:
        detail["shapo_overhead"] = _ratio_summary(pair("shapo_euclidean", "ppo_lag"))
        detail["shapo_update_overhead"] = _ratio_summary(pair("shapo_euclidean_update", "ppo_lag_update"))
    if "shapo_fisher" in configs:
        detail["shapo_fisher_overhead"] = _ratio_summary(pair("shapo_fisher", "ppo_lag"))
        detail["shapo_fisher_update_overhead"] = _ratio_summary(pair("shapo_fisher_update", "ppo_lag_update"))
    if "trpo_pid" in configs:
        detail["trpo_shapo_overhead"] = _ratio_summary(pair("trpo_shapo_fisher", "trpo_pid"))
        detail["trpo_shapo_update_overhead"] = _ratio_summary(pair("trpo_shapo_fisher_update", "trpo_pid_update"))
        detail["update_share_of_trpo_pid_iteration"] = _ratio_summary(pair("trpo_pid_update", "trpo_pid"))
    if brax_rounds:
        detail["ours_vs_brax_ppo"] = _ratio_summary(brax_rounds)  # brax time / ours time = our steps/s / brax
    # the update phase's share of a PPO-Lag iteration, and the rollout estimated as the rest
    detail["update_share_of_ppo_lag_iteration"] = _ratio_summary(pair("ppo_lag_update", "ppo_lag"))
    # SHAPO's extra cost estimated from the (less noisy) update-phase times alone:
    # 1 + (update_shapo - update_base) / iteration_base, medians
    m = {n: median(ts) for n, ts in times.items()}
    if "shapo_euclidean" in configs:
        report["shapo_overhead_from_update_phase"] = round(
            1 + (m["shapo_euclidean_update"] - m["ppo_lag_update"]) / m["ppo_lag"], 4)
    if "shapo_fisher" in configs:
        report["shapo_fisher_overhead_from_update_phase"] = round(
            1 + (m["shapo_fisher_update"] - m["ppo_lag_update"]) / m["ppo_lag"], 4)
    if "trpo_pid" in configs:
        report["trpo_shapo_overhead_from_update_phase"] = round(
            1 + (m["trpo_shapo_fisher_update"] - m["trpo_pid_update"]) / m["trpo_pid"], 4)
    report["ratios"] = detail
    for k in (*TARGETS, "shapo_fisher_update_overhead", "trpo_shapo_update_overhead"):
        report[k] = round(detail[k]["median"], 4) if k in detail else None
    report["targets_met"] = {
        k: (None if report[k] is None else (report[k] >= v if op == ">=" else report[k] <= v))
        for k, (op, v) in TARGETS.items()
    }
    report["load_average_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_s"] = round(time.perf_counter() - wall_start, 1)
    save()
    print("\nsteps/s:", ", ".join(f"{k} {v:,.0f}" for k, v in report["steps_per_s"].items()))
    for k, (op, v) in TARGETS.items():
        print(f"{k:24s} {report[k]!s:>8}  target {op} {v}  met: {report['targets_met'][k]}")
    print(f"shapo_overhead estimated from the update phase: {report.get('shapo_overhead_from_update_phase')}")
    print(f"shapo_fisher_overhead    {report['shapo_fisher_overhead']}  (update phase {report['shapo_fisher_update_overhead']}, "
          f"estimated from the update phase {report.get('shapo_fisher_overhead_from_update_phase')})")
    print(f"trpo_shapo_overhead      {report['trpo_shapo_overhead']}  (update phase {report['trpo_shapo_update_overhead']}, "
          f"estimated from the update phase {report.get('trpo_shapo_overhead_from_update_phase')})")
    print(f"wrote {args.out} ({report['wall_s']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
