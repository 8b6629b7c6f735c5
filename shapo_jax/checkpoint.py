"""Checkpoints of the whole vmapped training state, for exact resume and for ``shapo-eval``.

A checkpoint is ``OUT/checkpoints/<env steps per seed>/``, written by orbax's
``CheckpointManager``: orbax writes into a temporary directory, drops ``commit_success.txt``
into it and renames it, so a checkpoint is whole or absent. Only directories holding that
file count, and one that still fails to restore is skipped, so a half-written checkpoint
(killed mid-copy, disk full) never stops a resume.

Nothing here names the fields of ``TrainState``: the state is saved as the pytree it is and
restored into the structure of a freshly initialised one (``jax.eval_shape`` of ``init``),
so new fields are checkpointed without changes here. Format 1 (before ``TrainState`` nested
its learner, env runner and episode statistics) kept those parts' fields at the top level;
such checkpoints are converted when restored (``_format_1_name``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

CHECKPOINTS = "checkpoints"
POLICY_FILE = "policy.npz"  # every finished run's actor and observation statistics, for shapo-eval
COMMIT_FILE = "commit_success.txt"  # orbax writes it just before the atomic rename
# 1: a flat TrainState (no "format" in the meta); 2: TrainState nests learner, runner, episodes
FORMAT = 2
# Flags that may change between a run and its resume: where and how it reports, how it
# checkpoints, and how long it trains (total_steps may grow).
# Checkpoints hold the whole state on the host, so the devices and hosts may change too;
# where the metrics are mirrored (Weights & Biases) may change as well.
RESUMABLE_CHANGES = frozenset(
    {"out", "progress", "compilation_cache", "resume", "checkpoint_every", "keep_checkpoints", "total_steps",
     "num_devices", "coordinator_address", "num_processes", "process_id", "distributed",
     "wandb_project", "wandb_entity", "wandb_group", "wandb_name"}
)


class Restored(NamedTuple):
    step: int  # env steps per seed
    update: int  # updates done
    state: Any  # the vmapped TrainState
    metrics: Optional[dict]  # the metrics of that update (None when not asked for)


class Policy(NamedTuple):
    """What acting needs of a ``TrainState`` (stacked over seeds): small, no env states."""

    actor_params: Any
    normalizer: Any


class SavedPolicy(NamedTuple):
    step: int  # env steps per seed
    update: int
    policy: Policy


def policy_of(state) -> Policy:
    return Policy(state.learner.actor_params, state.learner.normalizer)


def checkpoint_dir(out: str) -> str:
    return os.path.join(os.path.abspath(out), CHECKPOINTS)


def _is_key(x) -> bool:
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaf_name(path) -> str:
    """``actor_params.params.Dense_0.kernel``: a pytree path as a stable dotted name."""
    parts = []
    for entry in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
    return ".".join(parts)


def _format_1_name(tree) -> Callable[[Any], str]:
    """Leaf names as format 1 wrote them: the fields of the state's NamedTuple parts (learner,
    runner, episodes) sat at the top level, so the part's name is dropped from the path."""
    parts = {name for name in getattr(tree, "_fields", ()) if hasattr(getattr(tree, name), "_fields")}

    def name(path) -> str:
        if path and getattr(path[0], "name", None) in parts:
            path = path[1:]
        return _leaf_name(path)

    return name


def _saveable(tree, name: Callable[[Any], str] = _leaf_name) -> dict[str, Any]:
    """The tree as a flat ``{dotted path: array}`` dict, which orbax writes on any host.

    Flat, because some containers rebuild device arrays from host ones when unflattened
    (Brax's ``UInt64`` count), and a multi-host save accepts only host or global arrays.
    Orbax cannot write zero-size arrays (MJX data has some) nor typed PRNG keys: the first
    become None (their shape comes back from the target), the second their raw key data.
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]

    def saveable(x):
        return None if x.size == 0 else (jax.random.key_data(x) if _is_key(x) else x)

    return {name(path): saveable(leaf) for path, leaf in leaves}


def _unsaveable(abstract, saved: dict[str, Any], name: Callable[[Any], str] = _leaf_name):
    """Inverse of ``_saveable`` given the abstract (``eval_shape``) tree."""

    def leaf(path, target):
        value = saved.get(name(path))
        if value is None:
            return jnp.zeros(target.shape, target.dtype)
        if _is_key(target):
            return jax.random.wrap_key_data(value, impl=target.dtype._impl)  # the key dtype carries its impl
        return value

    return jax.tree_util.tree_map_with_path(leaf, abstract)


def host_copy(tree) -> dict[str, Any]:
    """The whole (possibly sharded, possibly multi-host) tree as savable NumPy, on every process.

    Checkpoints hold this, not device shards, so they restore onto any number of devices; on
    several hosts every process must call it (it gathers), and only process 0 saves.
    """
    from shapo_jax.distributed import to_host

    return to_host(_saveable(tree))


def _restore_target(abstract, name: Callable[[Any], str] = _leaf_name):
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    shapes = jax.eval_shape(lambda tree: _saveable(tree, name), abstract)
    return {leaf: None if x is None else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)
            for leaf, x in shapes.items()}


class Checkpoints:
    """The checkpoints of one run directory (``OUT/checkpoints``)."""

    def __init__(self, out: str, keep: Optional[int] = None, create: bool = False):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = checkpoint_dir(out)
        # Only process 0 ever opens checkpoints (it saves gathered host copies), so orbax must
        # not wait for the other processes at its barriers (and then leaves creating to us).
        if create:
            os.makedirs(self.directory, exist_ok=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=False, enable_async_checkpointing=False, cleanup_tmp_directories=create,
            multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0}),
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def _path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def steps(self) -> list[int]:
        """Complete checkpoints, oldest first."""
        if not os.path.isdir(self.directory):
            return []
        return sorted(s for s in self._manager.all_steps() if os.path.exists(os.path.join(self._path(s), COMMIT_FILE)))

    def incomplete_steps(self) -> list[int]:
        """Step directories orbax would count that were never committed."""
        if not os.path.isdir(self.directory):
            return []
        complete = set(self.steps())
        return sorted(s for s in self._manager.all_steps() if s not in complete)

    def set_aside(self, step: int) -> None:
        """Renames a step directory so that orbax no longer sees it (and keeps saving after it)."""
        os.replace(self._path(step), os.path.join(self.directory, f"unusable-{step}"))
        self._manager.reload()

    def save(self, step: int, update: int, state, metrics: dict) -> None:
        """Saves synchronously: the caller donates ``state`` to the next update right after.

        ``state`` and ``metrics`` are ``host_copy``'s flat NumPy dicts (from any mesh)."""
        args = self._ocp.args
        self._manager.save(
            step,
            args=args.Composite(
                state=args.StandardSave(state),
                update_metrics=args.StandardSave(metrics),
                meta=args.JsonSave({"step": step, "update": update, "format": FORMAT}),
            ),
        )

    def restore(self, step: int, abstract_state, abstract_metrics=None) -> Restored:
        """The checkpoint of ``step`` in the structure of ``abstract_state``; format 1 is converted."""
        args = self._ocp.args
        meta = self._manager.restore(step, args=args.Composite(meta=args.JsonRestore()))["meta"]
        saved_format = int(meta.get("format", 1))
        if saved_format not in (1, FORMAT):
            raise ValueError(
                f"checkpoint {self._path(step)} has format {saved_format}; this shapo_jax reads 1 and {FORMAT}")
        name = _leaf_name if saved_format == FORMAT else _format_1_name(abstract_state)
        items = {"state": args.StandardRestore(_restore_target(abstract_state, name)), "meta": args.JsonRestore()}
        if abstract_metrics is not None:
            items["update_metrics"] = args.StandardRestore(_restore_target(abstract_metrics))
        restored = self._manager.restore(step, args=args.Composite(**items))
        metrics = None if abstract_metrics is None else _unsaveable(abstract_metrics, restored["update_metrics"])
        meta = restored["meta"]
        state = _unsaveable(abstract_state, restored["state"], name)
        return Restored(int(meta["step"]), int(meta["update"]), state, metrics)

    def restore_latest(self, abstract_state, abstract_metrics=None, log=print) -> Optional[Restored]:
        """The newest checkpoint that restores; unreadable ones are reported and set aside."""
        for step in reversed(self.steps()):
            try:
                return self.restore(step, abstract_state, abstract_metrics)
            except Exception as error:  # noqa: BLE001 - any failure means: not usable
                log(f"checkpoint {self._path(step)} cannot be restored ({type(error).__name__}); skipping it")
                self.set_aside(step)
        return None

    def close(self) -> None:
        self._manager.close()


def save_policy(out: str, step: int, update: int, host_policy: dict[str, Any]) -> str:
    """Writes ``host_copy(policy_of(state))`` to ``OUT/policy.npz`` atomically (a temporary
    file, synced, then renamed), so a reader finds the old policy or the whole new one."""
    path = os.path.join(out, POLICY_FILE)
    arrays = {name: np.asarray(value) for name, value in host_policy.items() if value is not None}
    arrays.update({"meta.step": np.int64(step), "meta.update": np.int64(update)})
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    return path


def load_policy(out: str, abstract_policy: Policy) -> Optional[SavedPolicy]:
    """``OUT/policy.npz`` in the structure of ``abstract_policy`` (None if there is none);
    a file that does not fit the structure raises ``ValueError``."""
    path = os.path.join(out, POLICY_FILE)
    if not os.path.exists(path):
        return None
    with np.load(path) as saved:
        arrays = {name: saved[name] for name in saved.files}
    expected = {name for name, x in jax.eval_shape(_saveable, abstract_policy).items() if x is not None}
    missing = sorted(expected - set(arrays))
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing[:3])}")
    for name, target in jax.eval_shape(_saveable, abstract_policy).items():
        if target is not None and arrays[name].shape != target.shape:
            raise ValueError(f"{path}: {name} has shape {arrays[name].shape}, the run's config needs {target.shape}")
    policy = _unsaveable(abstract_policy, arrays)
    return SavedPolicy(int(arrays["meta.step"]), int(arrays["meta.update"]), policy)


def incompatible_settings(saved: dict, current: dict, fields: list[dataclasses.Field]) -> list[str]:
    """``--flag OLD (now NEW)`` for each training-relevant field that differs.

    Both dicts are the resolved ``config.json`` contents; a field missing from the saved one
    (written by an older version) counts as its default.
    """

    def normal(value):
        return json.loads(json.dumps(value))

    differences = []
    for field in fields:
        if field.name in RESUMABLE_CHANGES:
            continue
        default = field.default if field.default is not dataclasses.MISSING else None
        old, new = normal(saved.get(field.name, default)), normal(current[field.name])
        if old != new:
            differences.append(f"--{field.name.replace('_', '-')} {old} (now {new})")
    return differences
