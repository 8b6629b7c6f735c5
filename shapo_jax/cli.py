"""``shapo-train``: train (SHAPO-)PPO-Lagrangian on a registered safe task from the shell.

The flags are the fields of ``TrainConfig``. A bad flag fails before anything compiles,
with one line naming the flag and no traceback. The run is one compiled program over all
seeds; compile time and training throughput are reported separately.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import platform
import sys
import time
from typing import Any, Optional, Sequence

EXIT_USAGE = 2
EXIT_FAILED = 1


def _quiet_imports():
    """Imports JAX, MJX and the package, hiding MJX's 'Failed to import warp' prints."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import jax  # noqa: F401
        import shapo_envs  # noqa: F401
        import shapo_jax  # noqa: F401


def describe_device() -> str:
    import jax

    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind} x{jax.device_count()}"


def enable_compilation_cache(enabled: bool) -> Optional[str]:
    """JAX's persistent compilation cache in the user cache dir, so a second run starts fast."""
    if not enabled:
        return None
    import jax

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "shapo_jax", "jax_compilation_cache")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "flax", "optax", "brax", "mujoco", "mujoco-mjx", "shapo-jax"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def run(config, out: Optional[str]) -> dict[str, Any]:
    """Compiles and runs one training; returns the summary (also written to ``out``).

    The seeds' ``init`` and ``update`` are each one compiled, vmapped program; Python only
    dispatches one update after another and logs the metrics each returns, one update
    behind, so logging overlaps the next update. (Host callbacks inside the program would
    keep JAX's persistent cache from storing it.)
    """
    import jax
    import numpy as np

    from shapo_jax.reporting import Reporter, write_json
    from shapo_jax.train import make_trainer, seed_keys

    cache_dir = enable_compilation_cache(config.compilation_cache)
    keys = seed_keys(config.seed, config.num_seeds)
    trainer = make_trainer(config)
    device = describe_device()
    resolved = {
        **dataclasses.asdict(config),
        "cost_limit": trainer.cost_limit,
        "episode_length": trainer.episode_length,
        "perturbation_radius": config.perturbation_radius,
        "num_updates": config.num_updates,
        "steps_per_update": config.steps_per_update,
        "minibatch_size": config.minibatch_size,
        "device": device,
        "versions": versions(),
        "compilation_cache_dir": cache_dir,
    }
    if out is not None:
        os.makedirs(out, exist_ok=True)
        write_json(os.path.join(out, "config.json"), resolved)

    print(f"shapo-train: {config.algo} on {config.env}, rho={config.perturbation_radius:g} ({config.geometry}), "
          f"{config.num_seeds} seed(s) x {config.num_updates * config.steps_per_update:,} steps, device {device}",
          flush=True)
    start = time.perf_counter()
    init = jax.jit(jax.vmap(trainer.init)).lower(keys).compile()
    state = init(keys)
    update = jax.jit(jax.vmap(trainer.update), donate_argnums=0).lower(state).compile()
    compile_seconds = time.perf_counter() - start
    print(f"compiled in {compile_seconds:.1f} s", flush=True)

    reporter = Reporter(config.num_seeds, config.num_updates, config.steps_per_update, out, config.progress)
    history = []
    start = time.perf_counter()
    previous = None
    for _ in range(config.num_updates):
        state, metrics = update(state)
        if previous is not None:
            history.append(jax.device_get(previous))
            reporter.log_update(history[-1])
        previous = metrics
    history.append(jax.device_get(previous))
    reporter.log_update(history[-1])
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - start
    reporter.close()

    final = history[-1]
    failed = np.asarray(final["failed_update"])
    total_env_steps = config.num_seeds * config.num_updates * config.steps_per_update
    summary = {
        "env": config.env,
        "algo": config.algo,
        "rho": config.perturbation_radius,
        "geometry": config.geometry,
        "num_seeds": config.num_seeds,
        "episode_return": np.asarray(final["episode_return"]).tolist(),
        "episode_cost": np.asarray(final["episode_cost"]).tolist(),
        "total_cost": np.asarray(final["total_cost"]).tolist(),
        "multiplier": np.asarray(final["multiplier"]).tolist(),
        "cost_limit": trainer.cost_limit,
        "env_steps_per_seed": int(config.num_updates * config.steps_per_update),
        "env_steps_per_second": total_env_steps / train_seconds,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "failed_update": failed.tolist(),
        "device": device,
    }
    if out is not None:
        write_json(os.path.join(out, "summary.json"), summary)
    bad = np.flatnonzero(failed >= 0)
    if bad.size:
        seed = int(bad[0])
        raise NonFiniteTrainingError(
            f"training stopped: non-finite loss, gradient or parameters in seed {seed} at update "
            f"{int(failed[seed])}; the state before that update was kept"
        )
    mean = lambda name: float(np.mean(summary[name]))
    print(f"return {mean('episode_return'):.2f}  cost {mean('episode_cost'):.2f} (limit {trainer.cost_limit:g})  "
          f"total cost {mean('total_cost'):.0f}  {summary['env_steps_per_second']:,.0f} env steps/s  "
          f"(compile {compile_seconds:.1f} s, train {train_seconds:.1f} s)", flush=True)
    return summary


class NonFiniteTrainingError(RuntimeError):
    """Training produced NaN or Inf; raised after the last finite state was saved."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    _quiet_imports()
    import tyro

    import shapo_envs
    from shapo_jax.config import ConfigError, TrainConfig, validate

    config = tyro.cli(TrainConfig, args=argv, description=__doc__.split("\n\n")[0])
    try:
        validate(config, shapo_envs.list_envs())
    except ConfigError as error:
        print(f"shapo-train: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        run(config, config.out)
    except NonFiniteTrainingError as error:
        print(f"shapo-train: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
