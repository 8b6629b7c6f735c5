"""``shapo-train``: train (SHAPO-)PPO-Lagrangian on a registered safe task from the shell.

The flags are the fields of ``TrainConfig``. A bad flag fails before anything compiles,
with one line naming the flag and no traceback. The run is one compiled program over all
seeds; compile time and training throughput are reported separately.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import os
import platform
import re
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


def describe_device(mesh=None) -> str:
    """``platform:kind xN``: the devices a run uses (all visible ones without a mesh)."""
    import jax

    device = jax.devices()[0]
    count = jax.device_count() if mesh is None else mesh.size
    hosts = f" on {jax.process_count()} hosts" if jax.process_count() > 1 else ""
    return f"{device.platform}:{device.device_kind} x{count}{hosts}"


def nvidia_smi_sees_gpu(timeout: float = 10.0) -> bool:
    """Whether ``nvidia-smi -L`` lists a GPU: the system has one, whatever JAX found."""
    import shutil
    import subprocess

    program = shutil.which("nvidia-smi")
    if program is None:
        return False
    try:
        result = subprocess.run([program, "-L"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def gpu_warning(jax_platform: str, requested_platforms: Optional[str], gpu_visible) -> Optional[str]:
    """One line when a GPU is there but JAX runs on the CPU (the CPU-only jaxlib installed);
    None when JAX has an accelerator or the user asked for the CPU (``JAX_PLATFORMS=cpu``).

    ``gpu_visible`` is called only when it matters (it runs ``nvidia-smi``).
    """
    if jax_platform != "cpu" or (requested_platforms or "").strip().lower() == "cpu" or not gpu_visible():
        return None
    return ("shapo-train: warning: nvidia-smi sees a GPU but JAX sees only a CPU (CPU-only jaxlib?); "
            "for the GPU: pip install -e '.[cuda12]'")


def _silent(*args, **kwargs) -> None:
    """``print`` for processes other than 0, which leave the talking to process 0."""


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


def resolved_config(config) -> dict[str, Any]:
    """What config.json records: every flag of the resolved ``config`` (``config.resolve``: the
    task defaults as values; the cost limit a number, or a list of one per constraint) and
    the derived sizes."""
    return {
        **dataclasses.asdict(config),
        "perturbation_radius": config.perturbation_radius,
        "num_updates": config.num_updates,
        "steps_per_update": config.steps_per_update,
        "minibatch_size": config.minibatch_size,
    }


def settings_changed(saved: dict[str, Any], resolved: dict[str, Any]) -> list[str]:
    """``--flag OLD (now NEW)`` for each training setting of the run recorded in ``saved`` (a
    config.json) that differs from ``resolved``. The saved config is resolved too, so a file
    written by an older version, with nulls for the task defaults or without a newer field,
    reads as the values it ran with."""
    from shapo_jax.checkpoint import incompatible_settings
    from shapo_jax.config import ConfigError, TrainConfig, from_record, resolve

    try:
        saved = resolved_config(resolve(from_record(saved)))
    except (ConfigError, TypeError, ValueError):
        pass  # a file this version cannot resolve: compare it as written
    return incompatible_settings(saved, resolved, dataclasses.fields(TrainConfig))


def check_checkpoints(config, resolved: dict[str, Any]):
    """Before compiling: the checkpoints to resume from or to write (None: no checkpointing).

    A fresh run never overwrites checkpoints that ``--resume`` could continue (with or
    without ``--checkpoint-every``); a resume must use the same training flags. Raises
    ``ConfigError`` naming the flag.
    """
    from shapo_jax.checkpoint import Checkpoints, checkpoint_dir
    from shapo_jax.config import ConfigError
    from shapo_jax.distributed import is_primary

    if config.out is None or not is_primary():
        return None  # process 0 checks, reads and writes checkpoints for everyone
    if not config.resume and os.path.isdir(checkpoint_dir(config.out)):
        earlier = Checkpoints(config.out)
        steps = earlier.steps()
        earlier.close()
        if steps:
            raise ConfigError("out", f"{earlier.directory} holds checkpoints of an earlier run (latest: step "
                                     f"{steps[-1]}); pass --resume to continue it, or use another --out")
    if config.checkpoint_every == 0 and not config.resume:
        return None
    checkpoints = Checkpoints(config.out, keep=config.keep_checkpoints, create=True)
    steps = checkpoints.steps()
    config_path = os.path.join(config.out, "config.json")
    if steps and os.path.exists(config_path):
        with open(config_path) as f:
            saved = json.load(f)
        differences = settings_changed(saved, resolved)
        if differences:
            raise ConfigError("resume", f"{config.out} was trained with other settings: {', '.join(differences)}")
    if steps and steps[-1] > config.total_steps:
        raise ConfigError("total_steps", f"must be at least the latest checkpoint's step {steps[-1]} to resume, "
                                         f"got {config.total_steps}")
    return checkpoints


def run(config, out: Optional[str]) -> dict[str, Any]:
    """Compiles and runs one training; returns the summary (also written to ``out``).

    The seeds' ``init`` and ``update`` are each one compiled, vmapped program, placed on the
    ``--num-devices`` mesh (``distributed.py``); Python only dispatches one update after
    another and logs the metrics each returns, one update behind, so logging overlaps the
    next update. (Host callbacks inside the program would keep JAX's persistent cache from
    storing it.) The compiled update is deterministic, so a run resumed from a checkpoint
    continues bit for bit as if it had never stopped. On several hosts every process runs
    this function and only process 0 writes.
    """
    import jax
    import numpy as np

    from shapo_jax import distributed
    from shapo_jax.config import ConfigError, resolve
    from shapo_jax.checkpoint import host_copy, policy_of, save_policy
    from shapo_jax.reporting import Reporter, clear_earlier_run, start_wandb, truncate_metrics, write_json
    from shapo_jax.train import make_trainer, seed_keys

    primary = distributed.is_primary()
    say = print if primary else _silent
    config = resolve(dataclasses.replace(config, out=out))  # what the trainer runs, and what config.json records
    resolved = resolved_config(config)
    checkpoints = _checkpoints_agreed(config, resolved)
    cache_dir = enable_compilation_cache(config.compilation_cache)
    try:
        mesh = distributed.make_mesh(config.num_seeds, config.num_envs, config.num_devices)
    except distributed.MeshError as error:
        raise ConfigError(error.field, str(error)) from None
    trainer = make_trainer(config)
    device = describe_device(mesh)
    warning = gpu_warning(jax.default_backend(), os.environ.get("JAX_PLATFORMS"), nvidia_smi_sees_gpu)
    if warning is not None and primary:
        print(warning, file=sys.stderr, flush=True)
    resuming = config.resume and checkpoints is not None and bool(checkpoints.steps())
    if out is not None and primary:
        os.makedirs(out, exist_ok=True)
        if not resuming and clear_earlier_run(out) and not config.resume:
            say(f"shapo-train: {out} holds an earlier run; starting afresh and replacing its files", flush=True)
    recorded = {**resolved, "device": device, "mesh": dict(mesh.shape), "versions": versions(),
                "compilation_cache_dir": cache_dir}
    if out is not None and primary:
        write_json(os.path.join(out, "config.json"), recorded)
    wandb_run = start_wandb(config, recorded) if primary else None

    say(f"shapo-train: {config.algo} on {config.env}, rho={config.perturbation_radius:g} ({config.geometry}), "
        f"{config.num_seeds} seed(s) x {config.num_updates * config.steps_per_update:,} steps, device {device}",
        flush=True)
    start = time.perf_counter()
    keys = distributed.put_global(seed_keys(config.seed, config.num_seeds), distributed.seed_sharding(mesh))
    abstract_state = jax.eval_shape(jax.vmap(trainer.init), keys)
    state_sharding = distributed.state_shardings(mesh, abstract_state, trainer.shared_env_leaves)
    update = jax.jit(
        jax.vmap(trainer.update), in_shardings=(state_sharding,),
        out_shardings=(state_sharding, distributed.replicated(mesh)), donate_argnums=0,
    ).lower(abstract_state).compile()
    restored = None
    if config.resume:
        restored = _restore_latest(checkpoints, abstract_state, update.out_info[1], state_sharding)
        if restored is None:
            say(f"shapo-train: --resume: no checkpoint in {config.out}; starting fresh", flush=True)
    if restored is None:
        init = jax.jit(jax.vmap(trainer.init), out_shardings=state_sharding)
        state = init.lower(keys).compile()(keys)
    compile_seconds = time.perf_counter() - start
    say(f"compiled in {compile_seconds:.1f} s", flush=True)
    if checkpoints is not None:
        done = restored.step if restored else 0
        for step in checkpoints.incomplete_steps() + [s for s in checkpoints.steps() if s > done]:
            print(f"shapo-train: setting aside checkpoint {step}, which is incomplete or newer than the resumed one")
            checkpoints.set_aside(step)

    first_update, final = 0, None
    if restored is not None:
        state, first_update, final = restored.state, restored.update, restored.metrics
        say(f"shapo-train: resumed from {config.out} at step {restored.step} "
            f"(update {first_update} of {config.num_updates})", flush=True)
        if out is not None and primary:
            truncate_metrics(out, first_update)
    reporter = Reporter(config.num_seeds, config.num_updates - first_update, config.steps_per_update,
                        out if primary else None, config.progress and primary, append=restored is not None,
                        purge_step=None if restored is None else restored.step + 1, wandb_run=wandb_run)
    start = time.perf_counter()
    final, updates_run, state = _train_loop(config, update, state, first_update, reporter, checkpoints, final)
    train_seconds = time.perf_counter() - start
    if checkpoints is not None:
        checkpoints.close()

    failed = np.asarray(final["failed_update"])
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
        "cost_limit": list(trainer.cost_limit) if isinstance(trainer.cost_limit, tuple) else trainer.cost_limit,
        "env_steps_per_seed": int(config.num_updates * config.steps_per_update),
        "env_steps_per_second": config.num_seeds * updates_run * config.steps_per_update / max(train_seconds, 1e-9),
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "failed_update": failed.tolist(),
        "resumed_from_step": 0 if restored is None else restored.step,
        "device": device,
        "num_devices": int(mesh.size),
        "num_processes": jax.process_count(),
        "mesh": dict(mesh.shape),
    }
    if isinstance(trainer.cost_limit, tuple):  # m constraints: the sums above, and each one per seed
        summary.update(per_constraint_summary(final, len(trainer.cost_limit)))
    bad = np.flatnonzero(failed >= 0)
    if not bad.size and out is not None:  # the final policy, for shapo-eval (every process gathers, process 0 writes)
        host_policy = host_copy(policy_of(state))
        if primary:
            save_policy(out, config.num_updates * config.steps_per_update, config.num_updates, host_policy)
    if out is not None and primary:
        write_json(os.path.join(out, "summary.json"), summary)
    reporter.close(summary, failed=bool(bad.size))
    if bad.size:
        seed = int(bad[0])
        kept = "; the last checkpoint before it was kept" if config.checkpoint_every else ""
        raise NonFiniteTrainingError(
            f"training stopped: non-finite loss, gradient or parameters in seed {seed} at update "
            f"{int(failed[seed])}{kept}"
        )
    mean = lambda name: float(np.mean(summary[name]))
    limit = (",".join(f"{x:g}" for x in trainer.cost_limit) if isinstance(trainer.cost_limit, tuple)
             else f"{trainer.cost_limit:g}")
    cost = (",".join(f"{mean(f'episode_cost_{i}'):.2f}" for i in range(len(trainer.cost_limit)))
            if isinstance(trainer.cost_limit, tuple) else f"{mean('episode_cost'):.2f}")
    say(f"return {mean('episode_return'):.2f}  cost {cost} (limit {limit})  "
        f"total cost {mean('total_cost'):.0f}  {summary['env_steps_per_second']:,.0f} env steps/s  "
        f"(compile {compile_seconds:.1f} s, train {train_seconds:.1f} s)", flush=True)
    return summary


PER_CONSTRAINT_SUMMARY = ("episode_cost", "total_cost", "multiplier", "violation_rate")


def per_constraint_summary(final: dict[str, Any], num_constraints: int) -> dict[str, Any]:
    """summary.json's per-constraint entries of an m-constraint run: ``NAME_i`` per seed (the
    unsuffixed ``episode_cost``, ``total_cost`` and ``multiplier`` are sums over constraints)."""
    import numpy as np

    return {f"{name}_{i}": np.asarray(final[f"{name}_{i}"]).tolist()
            for name in PER_CONSTRAINT_SUMMARY for i in range(num_constraints)}


def _checkpoints_agreed(config, resolved: dict[str, Any]):
    """``check_checkpoints`` on process 0, whose verdict every process shares, so that a
    rejected run directory stops all processes instead of leaving them waiting."""
    import numpy as np

    from shapo_jax import distributed
    from shapo_jax.config import ConfigError

    error, checkpoints = None, None
    try:
        checkpoints = check_checkpoints(config, resolved)
    except ConfigError as raised:
        error = raised
    if int(distributed.broadcast_from_primary(np.int32(error is not None))):
        raise error if error is not None else ConfigError("out", "process 0 rejected the run directory (see its error)")
    return checkpoints


def _restore_latest(checkpoints, abstract_state, abstract_metrics, state_sharding):
    """The latest checkpoint, read by process 0, shared with every process and placed on the
    mesh, whatever mesh saved it (checkpoints hold the whole state on the host)."""
    import jax
    import numpy as np

    from shapo_jax import distributed
    from shapo_jax.checkpoint import Restored

    restored = checkpoints.restore_latest(abstract_state, abstract_metrics) if checkpoints is not None else None
    if not int(distributed.broadcast_from_primary(np.int32(restored is not None))):
        return None
    zeros = lambda tree: jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), tree)
    if restored is not None:
        payload = (jax.device_get(restored.state), jax.device_get(restored.metrics),
                   np.asarray([restored.step, restored.update], np.int64))
    else:
        payload = (zeros(abstract_state), zeros(abstract_metrics), np.zeros(2, np.int64))
    host_state, metrics, (step, update) = distributed.broadcast_from_primary(payload)
    return Restored(int(step), int(update), distributed.put_global(host_state, state_sharding), metrics)


def _train_loop(config, update, state, first_update: int, reporter, checkpoints, final):
    """Runs the updates after ``first_update``; returns the last logged metrics, how many ran,
    and the last state.

    Metrics are logged one update behind (the next update is already dispatched), except on
    a checkpoint update: its row is written before its checkpoint, so a resume never misses
    a row. The loop stops at the first update that reports a non-finite result, before
    saving anything from it.
    """
    import jax
    import numpy as np

    from shapo_jax.checkpoint import host_copy
    from shapo_jax.distributed import to_host

    def log(metrics) -> bool:
        """Writes the update's rows; a failed update's are left out (it reports the kept,
        earlier state's counters) and only reach the summary."""
        nonlocal final
        final = to_host(metrics)
        ok = bool(np.all(np.asarray(final["failed_update"]) < 0))
        if ok:
            reporter.log_update(final)
        return ok

    pending, updates_run = None, 0
    for number in range(first_update + 1, config.num_updates + 1):
        state, metrics = update(state)
        updates_run += 1
        if pending is not None and not log(pending):
            return final, updates_run, state
        pending = metrics
        step = number * config.steps_per_update
        if config.checkpoint_every and (step % config.checkpoint_every == 0 or number == config.num_updates):
            pending = None
            if not log(metrics):
                return final, updates_run, state
            host_state = host_copy(state)  # every process gathers; process 0 saves
            if checkpoints is not None:
                checkpoints.save(step, number, host_state, host_copy(final))
    if pending is not None:
        log(pending)
    jax.block_until_ready(state)
    return final, updates_run, state


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FLAG = re.compile(r"--[A-Za-z0-9][A-Za-z0-9_-]*")


def parse_flags(argv: Optional[Sequence[str]]):
    """The ``TrainConfig`` of a command line, parsed by tyro; ``ConfigError`` naming the flag if
    tyro rejects it. (tyro's own report is a box of several lines whose last line names no flag.)
    ``--help`` prints and exits as usual."""
    import tyro

    from shapo_jax.config import TrainConfig

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured), _flag_types():
            config = tyro.cli(TrainConfig, args=argv, description=__doc__.split("\n\n")[0])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise command_line_error(captured.getvalue(), sys.argv[1:] if argv is None else list(argv)) from None
        sys.stderr.write(captured.getvalue())
        raise
    sys.stderr.write(captured.getvalue())  # tyro's warnings, if any
    return config


def parse_cost_limit(text: str):
    """``--cost-limit``'s value: ``10`` -> 10.0, ``5,15`` -> (5.0, 15.0) (one per constraint)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected a number or comma-separated numbers (e.g. 5,15), got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _flag_types():
    """tyro's parsing of the config's own flag types: ``--cost-limit 5,15``."""
    from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec, PrimitiveTypeInfo

    from shapo_jax.config import CostLimit

    registry = ConstructorRegistry()

    @registry.primitive_rule
    def cost_limit(type_info: PrimitiveTypeInfo):
        if type_info.type not in (CostLimit, Optional[CostLimit]):
            return None
        return PrimitiveConstructorSpec(
            nargs=1, metavar="LIMIT[,LIMIT...]",
            instance_from_str=lambda args: None if args[0] == "None" else parse_cost_limit(args[0]),
            is_instance=lambda value: value is None or isinstance(value, (int, float, tuple)),
            str_from_instance=lambda value: [",".join(map(str, value)) if isinstance(value, tuple) else str(value)],
        )

    return registry


def command_line_error(report: str, argv: Sequence[str]):
    """tyro's report of a rejected command line as one ``ConfigError``: the report's first
    paragraph on one line, under the flag it names (the first one the user typed), or, for a
    stray value, the flag that precedes it."""
    from shapo_jax.config import ConfigError

    report = _ANSI_ESCAPE.sub("", report)
    if ": error: " in report:  # argparse's style: "prog: error: message"
        message = report.split(": error: ", 1)[1].strip().splitlines()[0]
    else:  # tyro's box: a title, a rule, the message, a rule, help; drawn with or without UTF-8 lines
        lines = [line.strip().strip("│┃").strip() for line in report.splitlines() if line.strip()[:1] not in "╭╰"]
        is_rule = lambda line: len(line) >= 3 and set(line) <= set("─━-")  # noqa: E731
        if "╭" not in report and any(map(is_rule, lines)):  # the title is a line of its own
            lines = lines[[is_rule(line) for line in lines].index(True) + 1:]
        lines = itertools.dropwhile(lambda line: not line, lines)
        message = " ".join(itertools.takewhile(lambda line: line and not is_rule(line), lines))
    message = message or "invalid command line"
    typed = [token.split("=", 1)[0] for token in argv if token.startswith("--")]
    named = [flag for flag in _FLAG.findall(message) if flag in typed]
    if named and message.startswith("Unrecognized options"):
        suggestion = re.search(r"Perhaps you meant:[\s│]*(--[A-Za-z0-9_-]+)", report)
        hint = f"; did you mean {suggestion.group(1)}?" if suggestion else " (see --help)"
        return ConfigError(named[0][2:], f"unknown flag{hint}")
    if named:
        flag = named[0]
        for redundant in (f"Error parsing {flag}: ", f" for argument '{flag}'"):
            message = message.replace(redundant, "")
        return ConfigError(flag[2:], message)
    stray = message.split(":", 1)[1] if ":" in message else message
    words = {word.strip() for word in stray.split(",")}
    for index, token in enumerate(argv):
        if token in words:
            before = [t.split("=", 1)[0] for t in argv[:index] if t.startswith("--")]
            if before:
                return ConfigError(before[-1][2:], f"unexpected value {token!r} after it ({message})")
            break
    return ConfigError("help", f"{message}; shapo-train takes --flags only (see --help)")


def prepare_out(out: Optional[str]) -> None:
    """Before compiling: creates the ``--out`` directory; ``ConfigError`` naming ``--out`` if it
    is a file, lies under one, or cannot be created."""
    from shapo_jax.config import ConfigError

    if out is None:
        return
    if not out:
        raise ConfigError("out", "must name a directory, got an empty string")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ConfigError("out", f"{out} exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise ConfigError("out", f"cannot create {out}: {error.strerror or error}") from None


def _join_distributed(config) -> None:
    """``jax.distributed.initialize`` from the flags; a failure is a one-line ``ConfigError``."""
    from shapo_jax.config import ConfigError, validate
    from shapo_jax.distributed import initialize

    validate(config)  # the process flags, before waiting on the other processes
    try:
        initialize(config.coordinator_address, config.num_processes, config.process_id)
    except (RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError("coordinator_address", f"cannot join the distributed run: {first_line}") from None


class NonFiniteTrainingError(RuntimeError):
    """Training produced NaN or Inf; raised after the last finite state was saved."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    _quiet_imports()
    from shapo_envs.registry import EnvCostError
    from shapo_jax.config import ConfigError, resolve
    from shapo_jax.distributed import is_primary
    from shapo_jax.reporting import require_wandb

    try:
        config = parse_flags(argv)
        if config.multi_host:  # first: JAX must not have touched a device before it joins
            _join_distributed(config)
        config = resolve(config)  # --env-module imported, preset, validation, task defaults: before anything compiles
        require_wandb(config)
        if is_primary():  # the process that writes
            prepare_out(config.out)
        run(config, config.out)
    except (ConfigError, EnvCostError) as error:
        print(f"shapo-train: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteTrainingError as error:
        print(f"shapo-train: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
