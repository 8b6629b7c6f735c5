"""Which MJX implementation steps a navigation world: JAX (the default) or Warp.

MJX 3.17 runs one model through either implementation (``mjx.put_model(m, impl=...)``). The
Warp one (MuJoCo Warp, bundled in ``mujoco-mjx`` and needing ``warp-lang``, the ``warp``
extra) runs whole ``mjx.step`` / ``mjx.forward`` calls as Warp kernels, on an NVIDIA GPU or,
slowly, on the CPU; MuJoCo's documentation says it scales better than the JAX implementation
in contact-rich scenes on a GPU. Two things differ for the env (env.py):

* Warp keeps the contacts of *all* worlds of a vmapped batch in one list of ``naconmax``
  entries, so the contact list must be sized for the batch (``max_worlds``), and a vmapped
  env cannot read its own contacts from it: the world carries one MuJoCo contact sensor per
  contact-costed object instead (world.py ``touch_sensors``), computed per world. Only the
  Warp world has them: MJX's JAX ``put_model`` refuses contact sensors that match bodies, and
  the JAX path reads its own per-world contact array.
* Warp has no stage functions (``mjx.euler``, ``mjx.sensor_pos``...): a step is
  ``frameskip`` x ``mjx.step`` without sensors, then one ``mjx.forward`` with them, the same
  sequence of computations as the JAX path's.

The trainer takes Warp envs (``shapo-train --physics-impl warp``): ``jax.vmap`` leaves Warp's
shared fields unbatched (MJX's batching rule, which also merges nested batch axes itself), so
the trainer vmaps such envs plainly and keeps those fields whole in its per-env selects
(resets, the NaN guard), as MJX's ``Data.where`` does (``shapo_jax/batching.py``).
"""

from __future__ import annotations

import copy
import importlib.util

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx
from mujoco.mjx._src import collision_driver

IMPLS = ("jax", "warp")
# Warp may emit more contacts for a geom pair than MJX's JAX collision functions allocate
# (box-box: up to 8 against 4), so the per-world bounds are doubled.
SAFETY_FACTOR = 2


def warp_installed() -> bool:
    return importlib.util.find_spec("warp") is not None


def check_impl(impl: str, max_worlds: int | None = None, backend: str | None = None) -> None:
    """Raise a one-line ``ValueError`` when ``impl`` cannot run here (before any compile)."""
    if impl not in IMPLS:
        raise ValueError(f"physics_impl: {impl!r} is not one of {', '.join(IMPLS)}")
    if impl == "jax":
        return
    if not warp_installed():
        raise ValueError("physics_impl: 'warp' needs warp-lang, which is not installed "
                         "(pip install 'shapo-jax[warp]')")
    backend = backend or jax.default_backend()
    if backend not in ("cpu", "gpu", "cuda"):
        raise ValueError(f"physics_impl: 'warp' runs on NVIDIA GPUs and CPUs, not on the {backend} backend")
    if max_worlds is None or int(max_worlds) < 1:
        raise ValueError(f"max_worlds: the Warp implementation sizes its contact list for the batch, "
                         f"so it needs the number of envs stepped together (>= 1), got {max_worlds!r}")


def world_bounds(mj_model: mujoco.MjModel) -> tuple[int, int]:
    """(contacts, constraint rows) one world can have at once: every contact MJX's JAX
    implementation allocates for it without its broad phase (``max_geom_pairs`` off), their
    rows (pyramidal cone: 2 (condim - 1), condim 1: 1; elliptic: condim), and one row per
    equality component, joint limit and friction-loss dof."""
    m = copy.copy(mj_model)
    numeric = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_NUMERIC, "max_geom_pairs")
    if numeric >= 0:
        m.numeric_data[m.numeric_adr[numeric]] = -1
    condim = collision_driver.make_condim(m)
    if m.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC:
        contact_rows = int(condim.sum())
    else:
        contact_rows = int(np.where(condim == 1, 1, 2 * (condim - 1)).sum())
    other_rows = 6 * m.neq + int(m.jnt_limited.sum()) + int((m.dof_frictionloss > 0).sum()) + int(m.tendon_limited.sum())
    return len(condim), contact_rows + other_rows


def warp_models(mj_model: mujoco.MjModel, max_worlds: int):
    """(model, model without sensors, initial data) for the Warp implementation."""
    without_sensors = copy.copy(mj_model)
    without_sensors.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_SENSOR)
    contacts, rows = world_bounds(mj_model)
    data0 = mjx.make_data(mj_model, impl="warp", naconmax=int(max_worlds) * max(1, SAFETY_FACTOR * contacts),
                          njmax=max(1, SAFETY_FACTOR * rows))
    return (mjx.put_model(mj_model, impl="warp"), mjx.put_model(without_sensors, impl="warp"), data0)


def poison_on_overflow(data: mjx.Data, obs: jax.Array, reward: jax.Array) -> tuple[jax.Array, jax.Array]:
    """NaN observation and reward where Warp flagged an overflow (a full contact, broad-phase
    or constraint list: contacts were dropped), so the trainer's NaN guard stops the run
    instead of training on wrong physics."""
    bad = data._impl.overflow != 0
    return jnp.where(bad, jnp.nan, obs), jnp.where(bad, jnp.nan, reward)
