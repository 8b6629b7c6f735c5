"""Brax's own PPO trainer on a shapo_envs task, timed per training epoch; runs in the peer venv.

Runs in the virtualenv made by ``setup.sh`` (jax 0.9.2 and Brax 0.14.2, whose PPO trainer calls
``jax.device_put_replicated``, gone from jax 0.10), not in the project's venv. ``throughput.py``
starts it as a subprocess with ``--lockstep`` and the sizes and hyperparameters of its own
PPO-Lag, so both run on the same task (this repository's ``shapo_envs``, installed ``--no-deps``
in the peer venv) and the same machine, in one run:

  benchmarks/brax_peer/.venv/bin/python benchmarks/brax_peer/run.py --env SafetyHopperVelocity \\
      --num-envs 64 --unroll-length 64 --num-minibatches 4 --update-epochs 4 --epochs 10

What is timed: ``brax.training.agents.ppo.train`` with one unroll of ``unroll_length`` per env
per training step (``batch_size * num_minibatches = num_envs``, batch_size counted in unrolls),
``num_updates_per_batch = update_epochs``, tanh policy and value nets, Normal policy,
normalize_observations=True, ``run_evals=False``, one training step per Brax "epoch". Each
epoch's time is Brax's own ``training/sps`` (measured around its pmapped training epoch after
``block_until_ready``), so our callback is outside it. Brax compiles its epoch on the first two
calls; the parent takes the compile time from those.

Output, on stdout: after each epoch one line ``{"epoch": i, "epoch_s": t}``; with ``--lockstep``
it then waits for a line on stdin before the next epoch (the parent times one iteration of its
own trainer there, so a shared machine loads both alike). Last, one line with the whole record
(``"benchmark": "brax_peer_ppo"``: epochs, setup and total times, the peer's versions, device).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from importlib import metadata


def _version(pkg):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    found = {p: _version(p) for p in ("jax", "jaxlib", "flax", "optax", "brax", "mujoco", "mujoco-mjx", "shapo-jax")}
    return found | {"python": platform.python_version()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="SafetyHopperVelocity", help="registered shapo_envs task")
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--unroll-length", type=int, default=64)
    p.add_argument("--num-minibatches", type=int, default=4, help="must divide --num-envs")
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--epochs", type=int, default=10, help="Brax training epochs, the first two compiling")
    p.add_argument("--hidden-sizes", type=int, nargs="+", default=[64, 64])
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--entropy-cost", type=float, default=0.0)
    p.add_argument("--discounting", type=float, default=0.99)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--clipping-epsilon", type=float, default=0.2)
    p.add_argument("--max-grad-norm", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lockstep", action="store_true", help="after each epoch's line, wait for a line on stdin")
    return p


def restore_device_put_replicated(jax) -> bool:
    """Gives jax >= 0.10 back ``jax.device_put_replicated`` (removed there), for Brax 0.14.2's PPO.

    Replicating ``x`` onto ``devices`` is stacking one copy per device and sharding the new leading
    axis over them: what the removed function returned and what ``jax.pmap`` takes. Where no venv of
    the old pins can be made (a GPU machine with its own jax and no registry), this lets Brax's
    trainer run unchanged; ``versions`` in the record says which jax it ran on.
    """
    if hasattr(jax, "device_put_replicated"):
        return False
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    def device_put_replicated(x, devices):
        sharding = NamedSharding(Mesh(np.array(devices), ("replica",)), PartitionSpec("replica"))
        stack = lambda leaf: jax.numpy.stack([jax.numpy.asarray(leaf)] * len(devices))
        return jax.device_put(jax.tree.map(stack, x), sharding)

    jax.device_put_replicated = device_put_replicated
    return True


def emit(obj) -> None:
    print(json.dumps(obj), flush=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_envs % args.num_minibatches:
        raise SystemExit("brax_peer/run.py: --num-minibatches must divide --num-envs")
    import functools

    import flax.linen as nn
    import jax
    shimmed = restore_device_put_replicated(jax)
    from brax.training.agents.ppo import networks as brax_networks
    from brax.training.agents.ppo import train as brax_ppo

    import shapo_envs

    steps = args.num_envs * args.unroll_length
    env = shapo_envs.make_env(args.env)
    epoch_s, first_progress = [], []

    def progress(step, metrics):
        if not first_progress:
            first_progress.append(time.perf_counter())
        epoch_s.append(steps / float(metrics["training/sps"]))
        emit({"epoch": len(epoch_s) - 1, "epoch_s": epoch_s[-1]})
        if args.lockstep and not sys.stdin.readline():
            raise SystemExit("brax_peer/run.py: stdin closed by the parent")

    network_factory = functools.partial(
        brax_networks.make_ppo_networks,
        policy_hidden_layer_sizes=tuple(args.hidden_sizes), value_hidden_layer_sizes=tuple(args.hidden_sizes),
        activation=nn.tanh, distribution_type="normal",
    )
    start = time.perf_counter()
    brax_ppo.train(
        environment=env, num_timesteps=args.epochs * steps, num_envs=args.num_envs,
        episode_length=shapo_envs.get_spec(args.env).episode_length, unroll_length=args.unroll_length,
        batch_size=args.num_envs // args.num_minibatches, num_minibatches=args.num_minibatches,
        num_updates_per_batch=args.update_epochs, learning_rate=args.learning_rate,
        entropy_cost=args.entropy_cost, discounting=args.discounting, gae_lambda=args.gae_lambda,
        clipping_epsilon=args.clipping_epsilon, max_grad_norm=args.max_grad_norm, normalize_observations=True,
        network_factory=network_factory, seed=args.seed, num_evals=args.epochs + 1, run_evals=False,
        progress_fn=progress,
    )
    total = time.perf_counter() - start
    dev = jax.devices()[0]
    emit({
        "benchmark": "brax_peer_ppo",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.executable,
        "versions": versions(),
        "device": {"platform": dev.platform, "device_kind": dev.device_kind, "num_devices": jax.device_count(),
                   "host_cpus": os.cpu_count()},
        "env": args.env, "steps_per_epoch": steps, "lockstep": args.lockstep,
        "device_put_replicated_shim": shimmed,
        "epoch_s": epoch_s,
        # Brax's setup before its first epoch (wrapping, pmapped reset compile, init), outside its timing
        "setup_s": first_progress[0] - start - epoch_s[0],
        "total_call_s": total,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
