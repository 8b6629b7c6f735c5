"""Shared pieces of the benchmark scripts: device and version records, timing, a zero-cost env."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from importlib import metadata
from typing import Any, Callable

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# XLA's quick compile (backend level 0, LLVM's expensive passes off): about half the compile time
# and slower code, for programs run a few times or never timed (paper.py --quick, set-up steps).
QUICK_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def version_of(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    found = {p: version_of(p) for p in ("jax", "jaxlib", "flax", "optax", "brax", "mujoco", "mujoco-mjx", "shapo-jax")}
    return found | {"python": platform.python_version()}


def device_info() -> dict[str, Any]:
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "num_devices": jax.device_count(),
        "host_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The checkout's HEAD (a dirty tree is flagged), so a result names the code it measured."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "shapo_jax", "envs"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def header() -> dict[str, Any]:
    # XLA_FLAGS as this process ran (shapo_jax/xla_flags.py adds its CPU flags): they move CPU speed;
    # a persistent compilation cache turns compile_s into load times
    return {"device": device_info(), "versions": versions(), "date": now(), "git_commit": git_commit(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "compilation_cache_dir": jax.config.jax_compilation_cache_dir}


def timed(fn: Callable, *args) -> tuple[Any, float]:
    """``fn(*args)`` and its wall time, ending in ``jax.block_until_ready``."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def compile_timed(fn: Callable, *args, **jit_kwargs):
    """``jax.jit(fn).lower(*args).compile()`` and the seconds it took (trace + lower + compile)."""
    start = time.perf_counter()
    compiled = jax.jit(fn, **jit_kwargs).lower(*args).compile()
    return compiled, time.perf_counter() - start


def median(xs) -> float:
    return float(statistics.median(xs))


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=float)
        f.write("\n")
    os.replace(tmp, path)


class NullEnv(Env):
    """A Brax ``Env`` that costs (almost) nothing to step, with a given observation/action size.

    Passing it to ``make_trainer(config, env=NullEnv(...))`` leaves the trainer's program
    unchanged except for the simulator: an update then times the policy's sampling plus the
    algorithm's update (advantages, multiplier, epochs x minibatches, normaliser), i.e. the
    *update phase*, through the public API only. Observations follow a bounded linear
    recursion driven by the action, cost is 1 where the first observation is positive, and
    episodes never terminate (the trainer truncates them at the task's episode length).
    """

    def __init__(self, observation_size: int, action_size: int):
        self._observation_size = observation_size
        self._action_size = action_size

    def reset(self, rng: jax.Array) -> State:
        obs = jax.random.normal(rng, (self._observation_size,))
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state=None, obs=obs, reward=zero, done=zero, metrics={},
                     info={"cost": zero, "velocity": zero})

    def step(self, state: State, action: jax.Array) -> State:
        drive = jnp.resize(action, (self._observation_size,))
        obs = jnp.tanh(0.9 * state.obs + 0.5 * drive)
        reward = -jnp.sum(action**2) + obs[0]
        cost = (obs[0] > 0).astype(jnp.float32)
        return state.replace(obs=obs, reward=reward, info={**state.info, "cost": cost, "velocity": obs[0]})

    @property
    def observation_size(self) -> int:
        return self._observation_size

    @property
    def action_size(self) -> int:
        return self._action_size

    @property
    def backend(self) -> str:
        return "null"


def make_env_only(env: Env, actor, num_envs: int, steps: int, actions: str = "policy"):
    """``run((state, initial, key), actor_params) -> (state, initial, key)``: ``steps`` vmapped env steps.

    Actions as training draws them (``policy``: Gaussian from ``actor``), ``uniform`` in
    [-1, 1] or ``zero``; envs whose episode ended are put back to their initial state (a
    select, as the trainer does). No policy learning, no bookkeeping: the rollout's ceiling.
    """
    step_fn = jax.vmap(env.step)
    shape = (num_envs, env.action_size)

    def run(carry, actor_params):
        state, initial, key = carry

        def body(state, k):
            if actions == "policy":
                mean, log_std = actor.apply(actor_params, state.obs)
                action = mean + jnp.exp(log_std) * jax.random.normal(k, mean.shape)
            elif actions == "uniform":
                action = jax.random.uniform(k, shape, minval=-1.0, maxval=1.0)
            else:
                action = jnp.zeros(shape)
            nxt = step_fn(state, jnp.clip(action, -1.0, 1.0))
            done = nxt.done > 0
            nxt = jax.tree.map(
                lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (b.ndim - 1)), a, b), initial, nxt
            )
            return nxt, None

        key, sub = jax.random.split(key)
        state, _ = jax.lax.scan(body, state, jax.random.split(sub, steps))
        return state, initial, key

    return run


def trainer_state(config, env: Env, keys: jax.Array, env_states: State):
    """A vmapped ``TrainState`` for ``keys`` without compiling the env's reset inside ``init``.

    ``init`` runs with a ``NullEnv`` of the same sizes (networks, optimizers, multiplier,
    trackers: no simulator to trace), then its env states are replaced by ``env_states``
    (``[num_seeds, num_envs, ...]``, genuine resets of ``env``). Returns (state, init compile s).
    """
    from shapo_jax.train import make_trainer

    null_trainer = make_trainer(config, env=NullEnv(env.observation_size, env.action_size))
    init_c, seconds = compile_timed(jax.vmap(null_trainer.init), keys)
    state = init_c(keys)
    # separate buffers: the update donates its input state, and a buffer may be donated once
    runner = state.runner._replace(env_state=env_states, initial_env_state=jax.tree.map(jnp.copy, env_states))
    return state._replace(runner=runner), seconds


def batched_reset(env: Env, keys: jax.Array, sharding=None, compiler_options=None) -> tuple[State, float]:
    """``len(keys)`` reset states from one compiled ``vmap(env.reset)``, and its compile seconds;
    with ``sharding``, every leaf of the states is split along the batch by it.

    One device call for the whole batch. Stacking single-env resets instead costs a dispatch per
    env and a stack per leaf: on an H200 a 256-env SafetyPointGoal1 probe that way spent 44 s of its
    56 s outside compiling and stepping (imports and GPU start included), and 4096 envs did not
    finish within 268 s (benchmarks/README.md, GPU).
    """
    reset_c, seconds = compile_timed(jax.vmap(env.reset), keys, compiler_options=compiler_options,
                                     **({} if sharding is None else {"out_shardings": sharding}))
    return jax.block_until_ready(reset_c(keys)), seconds


def device_label(device: dict) -> str:
    """'NVIDIA H100 80GB HBM3 (gpu)' or 'CPU, 2 cores'."""
    if device["platform"] == "cpu":
        return f"CPU, {device['host_cpus']} cores"
    return f"{device['device_kind']} ({device['platform']})"
