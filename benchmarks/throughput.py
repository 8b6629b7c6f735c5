"""Training throughput side by side: env-only MJX, PPO-Lag and TRPO-PID with and without SHAPO, Brax PPO; one run.

Everything runs on one device with the same env and sizes
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
  brax_ppo      ``brax.training.agents.ppo.train`` (``brax_peer/run.py``, run by ``--brax-python``,
                default this python: the same pins; Brax 0.14.2's PPO calls
                ``jax.device_put_replicated``, gone from jax 0.10, which ``brax_peer/run.py``
                puts back; ``--brax-python benchmarks/brax_peer/.venv/bin/python``, made by
                ``brax_peer/setup.sh``, runs it on the jax 0.9.2 it was released with), as a
                subprocess in lockstep with this one, on the same ``shapo_envs`` task, with matched sizes: one unroll of
                ``unroll_length`` per env per training step (``batch_size * num_minibatches =
                num_envs``, batch_size counted in unrolls), ``num_updates_per_batch =
                update_epochs``, 64-64 tanh policy and value nets, Normal policy (ours is an
                untransformed Gaussian too), normalize_observations=True, ``run_evals=False``,
                one training step per Brax "epoch". Its time per epoch is Brax's own
                ``training/sps`` (measured around its pmapped training epoch, after
                ``block_until_ready``, so evaluation and our callback are outside it); the first
                epoch includes compilation and is reported as ``compile_s``.

Interleaving, so that a shared, noisy CPU loads all variants alike: ours are timed in rounds,
one iteration of each per round (order rotated each round); after each Brax epoch the peer
waits (its ``progress_fn``, outside its timing) while this process times one iteration of our
PPO-Lag. The JSON's ``versions`` are this process's (the package's pins), ``brax_peer`` holds the
peer's versions, device and python. Each ratio is the median over
rounds of the ratio of the paired iterations:

  ours_vs_brax_ppo       our PPO-Lag steps/s / Brax PPO steps/s      (target >= 1.0)
  shapo_overhead         SHAPO-euclidean / PPO-Lag time per iteration (target <= 1.10)
  shapo_update_overhead  the same for the update phase alone          (target <= 1.5)
  shapo_fisher_overhead  SHAPO-fisher / PPO-Lag time per iteration    (target <= 1.25)
  trpo_shapo_overhead    SHAPO-TRPO-PID / TRPO-PID time per iteration (target <= 1.10)
  train_vs_env_only      PPO-Lag steps/s / env-only steps/s           (target >= 0.7)

  python benchmarks/throughput.py --quick --out benchmarks/results/throughput_cpu_quick.json
  bash benchmarks/brax_peer/setup.sh   # Brax PPO on its own pins: --brax-python benchmarks/brax_peer/.venv/bin/python
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
BRAX_PYTHON = sys.executable  # the same pins; brax_peer/.venv/bin/python for Brax's own (jax 0.9.2)
BRAX_RUN = os.path.join(HERE, "brax_peer", "run.py")

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
    p.add_argument("--brax-python", default=BRAX_PYTHON,
                   help="python that runs Brax's PPO trainer (default this one; brax_peer/setup.sh makes a venv "
                        "with Brax's own pins, jax 0.9.2)")
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
    """What Fisher SHAPO and the TRPO step ran with (montrealrobotics/shapo@1bb7704 shapo.py
    ``compute_shapo_gradients_actor``), and how F v was formed."""
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


def brax_peer_command(python: str, args, base) -> list[str]:
    """``brax_peer/run.py`` in lockstep with the sizes and PPO hyperparameters of our PPO-Lag ``base``."""
    return [python, BRAX_RUN, "--lockstep", "--env", args.env, "--num-envs", str(args.num_envs),
            "--unroll-length", str(args.unroll_length), "--num-minibatches", str(args.num_minibatches),
            "--update-epochs", str(args.update_epochs), "--epochs", str(args.rounds + 2),  # 2 compiling epochs
            "--hidden-sizes", *map(str, base.hidden_sizes), "--learning-rate", repr(base.actor_learning_rate),
            "--entropy-cost", repr(base.entropy_coefficient), "--discounting", repr(base.gamma),
            "--gae-lambda", repr(base.gae_lambda), "--clipping-epsilon", repr(base.clip_epsilon),
            *(["--max-grad-norm", repr(base.max_grad_norm)] if base.max_grad_norm is not None else []),
            "--seed", str(args.seed)]


def run_brax_peer(command: list[str], between_epochs) -> dict:
    """Runs the peer, calling ``between_epochs()`` after each of its epochs while it waits; its record.

    The peer prints one JSON line per epoch and waits for a line on stdin; its last JSON line is
    the whole record. A failure becomes ``{"error": ...}`` (with the last line of its stderr) so the
    rest of the run is kept. On a GPU the peer does not preallocate memory (this process holds its
    share already).
    """
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "false")}
    record = None
    with tempfile.TemporaryFile("w+") as stderr:
        try:
            peer = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                    text=True, bufsize=1, env=env)
        except OSError as err:
            return {"error": f"{type(err).__name__}: {err}"}
        with peer:
            for line in peer.stdout:
                if not line.startswith("{"):
                    continue
                obj = json.loads(line)
                if "epoch" in obj:
                    between_epochs()
                    try:
                        peer.stdin.write("\n")
                        peer.stdin.flush()
                    except BrokenPipeError:  # the peer died; its exit status and stderr say why
                        break
                elif obj.get("benchmark") == "brax_peer_ppo":
                    record = obj
        if peer.returncode != 0 or record is None:
            stderr.seek(0)
            tail = (stderr.read().strip().splitlines() or ["no output"])[-1]
            return {"error": f"exit {peer.returncode}: {tail}"}
    return record


def check_brax_python(args) -> None:
    """Fails in one line, before anything compiles, when Brax PPO is to run and its venv is absent."""
    if "brax" in args.skip or os.path.exists(args.brax_python):
        return
    raise SystemExit(f"throughput.py: no Brax PPO python at {args.brax_python}; "
                     f"leave --brax-python out (this python), run `bash benchmarks/brax_peer/setup.sh` for "
                     f"that venv, or pass --skip brax")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.num_envs, args.unroll_length, args.num_minibatches, args.update_epochs, args.rounds = 64, 64, 4, 4, 8
    if args.num_envs % args.num_minibatches:
        raise SystemExit("--num-minibatches must divide --num-envs (Brax PPO takes whole unrolls per minibatch)")
    check_brax_python(args)

    import jax
    import jax.numpy as jnp

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
        null_state = full_state._replace(
            runner=full_state.runner._replace(env_state=null_env_states, initial_env_state=null_env_states))
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

    # ---- Brax PPO in its venv, with our PPO-Lag timed after each of its epochs ---------------
    brax_rounds = []
    if "brax" not in args.skip:
        ours_after = []
        command = brax_peer_command(args.brax_python, args, base)
        log("Brax PPO (peer venv): compiling and training")
        peer = run_brax_peer(command, lambda: ours_after.append(run_ours("ppo_lag")))
        report["brax_peer"] = {
            "python": args.brax_python, "command": " ".join(command[1:]),
            **{k: peer.get(k) for k in ("versions", "device", "lockstep", "date", "error", "device_put_replicated_shim")
               if k in peer},
        }
        brax_times = peer.get("epoch_s", [])
        if "error" in peer or len(brax_times) < 3:
            log(f"Brax PPO failed: {peer.get('error', 'fewer than 3 epochs')}; ours_vs_brax_ppo is null")
        elif peer["device"]["platform"] != report["device"]["platform"]:
            log(f"Brax PPO ran on {peer['device']['platform']}, ours on {report['device']['platform']}: "
                "ours_vs_brax_ppo is null (BRAX_PEER_CUDA=1 bash benchmarks/brax_peer/setup.sh for a GPU)")
        else:
            steady_brax = brax_times[2:]  # Brax compiles its training epoch on its first two calls
            report["compile_s"]["brax_ppo"] = round(brax_times[0] + brax_times[1] - 2 * median(steady_brax), 2)
            report["brax_first_two_epochs_s"] = [round(t, 3) for t in brax_times[:2]]
            report["brax_total_call_s"] = round(peer["total_call_s"], 2)
            # Brax's setup before its first epoch (wrapping, pmapped reset compile, init), outside its timing
            report["brax_setup_s"] = round(peer["setup_s"], 2)
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
