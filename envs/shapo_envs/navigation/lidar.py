"""Safety-Gymnasium's pseudo-lidar in pure ``jax.numpy``.

Port of ``BaseTask._obs_lidar_pseudo`` and ``_ego_xy`` (SG bases/base_task.py) with SG's
default ``LidarConf`` (num_bins 16, max_dist 3, exp_gain 1, alias True; SG bases/base_task.py).

For every object the egocentric XY vector ``z`` is ``([x, y, 0] - agent_pos) @ agent_mat``
(SG projects the world vector onto the agent's axes, so a tilted car sees a slightly
foreshortened world). The object falls in bin ``int(angle(z) / bin_size)`` with reading
``max(0, max_dist - |z|) / max_dist`` (or ``exp(-exp_gain |z|)`` when ``max_dist`` is None);
with aliasing, the next bin gets ``alias * reading`` and the previous one
``(1 - alias) * reading``, where ``alias`` is the fractional position inside the bin. Each bin
keeps the maximum over objects.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp

NUM_BINS = 16  # SG bases/base_task.py LidarConf.num_bins
MAX_DIST = 3.0  # SG bases/base_task.py LidarConf.max_dist
EXP_GAIN = 1.0  # SG bases/base_task.py LidarConf.exp_gain (only used when max_dist is None)
ALIAS = True  # SG bases/base_task.py LidarConf.alias


def ego_xy(positions: jax.Array, agent_pos: jax.Array, agent_mat: jax.Array) -> jax.Array:
    """SG ``_ego_xy``: egocentric XY of world positions ``[n, 2 or 3]`` (z is dropped first)."""
    world = jnp.concatenate([positions[:, :2], jnp.zeros_like(positions[:, :1])], axis=-1) - agent_pos
    return (world @ agent_mat)[:, :2]


def pseudo_lidar(
    positions: jax.Array,
    agent_pos: jax.Array,
    agent_mat: jax.Array,
    num_bins: int = NUM_BINS,
    max_dist: Optional[float] = MAX_DIST,
    exp_gain: float = EXP_GAIN,
    alias: bool = ALIAS,
) -> jax.Array:
    """Lidar reading ``[num_bins]`` of objects at ``positions`` ``[n, 2 or 3]`` (n may be 0)."""
    if positions.shape[0] == 0:
        return jnp.zeros((num_bins,))
    z = ego_xy(positions, agent_pos, agent_mat)
    dist = jnp.sqrt(jnp.sum(jnp.square(z), axis=-1))
    angle = jnp.mod(jnp.arctan2(z[:, 1], z[:, 0]), 2 * math.pi)
    bin_size = 2 * math.pi / num_bins
    # float32 rounding can put angle at exactly 2*pi; SG's float64 never does.
    index = jnp.clip(jnp.floor(angle / bin_size).astype(jnp.int32), 0, num_bins - 1)
    if max_dist is None:
        sensor = jnp.exp(-exp_gain * dist)
    else:
        sensor = jnp.maximum(0.0, max_dist - dist) / max_dist
    bins = jnp.arange(num_bins)
    hit = jnp.where(index[:, None] == bins, sensor[:, None], 0.0)
    if alias:
        frac = jnp.clip((angle - bin_size * index) / bin_size, 0.0, 1.0)
        plus = (index + 1) % num_bins
        minus = (index - 1) % num_bins
        hit = jnp.maximum(hit, jnp.where(plus[:, None] == bins, (frac * sensor)[:, None], 0.0))
        hit = jnp.maximum(hit, jnp.where(minus[:, None] == bins, ((1 - frac) * sensor)[:, None], 0.0))
    return jnp.max(hit, axis=0)
