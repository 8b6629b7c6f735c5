"""Generalised advantage estimation for reward and cost, and advantage normalisation.

GAE (Schulman et al. 2016, eq. 16) with terminations and time-limit truncations kept apart:
a truncated episode is bootstrapped from the value of its true last observation (Pardo et
al. 2018, "Time Limits in Reinforcement Learning"), a terminated one is not, and neither
lets the advantage leak into the next episode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def generalized_advantage_estimation(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminations: jax.Array,
    episode_ends: jax.Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """GAE over a time-major rollout (leading axis = time).

    delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
    A_t = delta_t + gamma * lambda * (1 - episode_end_t) * A_{t+1}

    Args:
      rewards: r_t, shape [T, ...] (reward or cost; a cost of m constraints is [T, N, m],
        with terminations and episode ends [T, N, 1], one GAE per constraint).
      values: V(s_t).
      next_values: V(s'_t) of the true next observation s'_t (before any auto-reset).
      terminations: 1 where s'_t is terminal (no bootstrap).
      episode_ends: 1 where the episode ended at t (terminated or truncated).
      gamma, gae_lambda: discount and GAE lambda.

    Returns:
      (advantages, value targets = advantages + values), both shaped like ``rewards``.
    """
    deltas = rewards + gamma * (1.0 - terminations) * next_values - values
    continues = gamma * gae_lambda * (1.0 - episode_ends)

    def backward(next_advantage, inputs):
        delta, cont = inputs
        advantage = delta + cont * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, continues), reverse=True
    )
    return advantages, advantages + values


def standardize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(x - mean) / std over all elements (the paper's treatment of the reward advantage)."""
    return (x - x.mean()) / (x.std() + eps)


def center(x: jax.Array, axis=None) -> jax.Array:
    """x - mean (the paper's treatment of the cost advantage: centred, not scaled); over
    ``axis`` only, e.g. (0, 1) to centre each constraint of a [T, N, m] advantage on its own."""
    return x - x.mean() if axis is None else x - x.mean(axis=axis)
