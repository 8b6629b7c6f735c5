"""Training on many devices and hosts with JAX's own runtime: ``jax.sharding`` and ``jax.distributed``.

The trainer stays a function of one seed; ``jax.vmap`` stacks the seeds and this module
only says where each slice of the stacked state lives. The devices form a 2-D mesh
``(seed, env)``: seeds are split across the ``seed`` axis, and when there are fewer seeds
than devices each seed's environments are split across the ``env`` axis as well. Inside
the compiled program XLA's SPMD partitioner then inserts the collectives a seed needs (the
all-reduce of its policy gradient over the envs held by several devices), so the program is
the same function of the same keys and differs from one device only in the order of
floating-point reductions.

Across hosts, ``jax.distributed.initialize`` makes every process see every device, each
process runs this same program (multi-controller SPMD), and only process 0 writes files.
Checkpoints hold the whole state gathered to the host, so they restore onto any number of
devices.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seed"
ENV_AXIS = "env"


class MeshError(ValueError):
    """A device request that cannot be met; ``field`` is the config field to blame."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def initialize(coordinator_address: Optional[str], num_processes: Optional[int], process_id: Optional[int]) -> None:
    """Joins this process to a multi-host run (``jax.distributed.initialize``).

    Arguments left ``None`` come from the standard variables (``JAX_COORDINATOR_ADDRESS``)
    or the cluster (SLURM, Open MPI, TPU pods), as JAX detects them. CPU processes reduce
    across hosts through gloo; the setting only touches the CPU client, so it is harmless on
    GPU hosts.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)


def is_primary() -> bool:
    """Process 0 writes logs, summaries and checkpoints; the others only compute."""
    return jax.process_index() == 0


def mesh_shape(num_seeds: int, num_envs: int, num_devices: int) -> tuple[int, int]:
    """``(seed devices, env devices)``: as many devices on seeds as divide both, the rest on envs.

    Seeds need no communication, so they are split first; a seed's envs share its policy
    update, so splitting them costs an all-reduce per gradient.
    """
    seed_devices = math.gcd(num_seeds, num_devices)
    env_devices = num_devices // seed_devices
    if num_envs % env_devices:
        raise MeshError(
            "num_envs",
            f"must be a multiple of {env_devices} to split each seed's envs over {num_devices} devices "
            f"with {num_seeds} seed(s) (seeds take {seed_devices}), got {num_envs}",
        )
    return seed_devices, env_devices


def make_mesh(num_seeds: int, num_envs: int, num_devices: int) -> Mesh:
    """The ``(seed, env)`` mesh over the first ``num_devices`` devices (0: all, across hosts)."""
    devices = jax.devices()
    num_devices = num_devices or len(devices)
    if num_devices > len(devices):
        hint = (" (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N host devices)"
                if devices[0].platform == "cpu" else "")
        raise MeshError("num_devices", f"asks for {num_devices} devices, but {len(devices)} are visible{hint}")
    if jax.process_count() > 1 and num_devices != len(devices):
        raise MeshError("num_devices", f"a multi-host run uses every device of every process; pass 0 or "
                                       f"{len(devices)}, got {num_devices}")
    shape = mesh_shape(num_seeds, num_envs, num_devices)
    return Mesh(np.asarray(devices[:num_devices]).reshape(shape), (SEED_AXIS, ENV_AXIS))


def seed_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (seed) axis split over the mesh's seed axis, replicated over its env axis."""
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device: for metrics, which every process may read."""
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(mesh: Mesh, abstract_state, shared_env_leaves: Optional[Any] = None) -> Any:
    """Shardings for a vmapped ``TrainState``: every leaf by seed, and the env runner's
    ``[seeds, envs, ...]`` leaves by seed and env; env-state leaves that the whole batch
    shares (``shared_env_leaves``, batching.py: MJX Warp's contact list, no seed or env axis)
    replicated."""
    by_seed = seed_sharding(mesh)
    by_seed_and_env = NamedSharding(mesh, PartitionSpec(SEED_AXIS, ENV_AXIS))
    shardings = jax.tree.map(lambda _: by_seed, abstract_state)
    runner = jax.tree.map(lambda _: by_seed_and_env, abstract_state.runner)
    if shared_env_leaves is not None:
        env_state = jax.tree.map(lambda shared, sharding: replicated(mesh) if shared else sharding,
                                 shared_env_leaves, runner.env_state)
        runner = runner._replace(env_state=env_state, initial_env_state=env_state)
    return shardings._replace(runner=runner)


def put_global(host_tree, shardings) -> Any:
    """Places host arrays that every process holds whole onto the mesh (each device takes its slice)."""

    def put(value, sharding):
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, host_tree, shardings)


def to_host(tree) -> Any:
    """The whole of a (possibly multi-host) sharded tree as NumPy, on every process (a collective)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)

    def gather(value):
        if not isinstance(value, jax.Array):
            return np.asarray(value)  # host values are whole on every process already
        if value.is_fully_replicated:
            return np.asarray(value.addressable_data(0))  # every process already holds it all
        return multihost_utils.process_allgather(value, tiled=True)

    return jax.tree.map(gather, tree)


def broadcast_from_primary(tree) -> Any:
    """Process 0's values of a host tree on every process (a no-op on one process)."""
    if jax.process_count() == 1:
        return tree
    return jax.device_get(multihost_utils.broadcast_one_to_all(tree))
