"""Lagrange multiplier rules for the constraint J_c(pi) <= cost_limit.

The gradient rule follows SafePO's ``Lagrange`` (the codebase the paper's code forks):
lambda is a parameter trained by Adam on the loss -lambda * (J_c - cost_limit), then
projected onto lambda >= 0. Gradient ascent on the dual of the CMDP Lagrangian
J_r - lambda (J_c - cost_limit) (Altman 1999; Ray et al. 2019, "Benchmarking Safe Exploration").
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class LagrangeState(NamedTuple):
    multiplier: jax.Array
    optimizer_state: optax.OptState


def lagrange_optimizer(learning_rate: float) -> optax.GradientTransformation:
    """Adam, as SafePO's ``lambda_optimizer`` (torch Adam defaults)."""
    return optax.adam(learning_rate)


def lagrange_init(initial_multiplier: float, learning_rate: float) -> LagrangeState:
    multiplier = jnp.asarray(initial_multiplier, jnp.float32)
    return LagrangeState(multiplier, lagrange_optimizer(learning_rate).init(multiplier))


def lagrange_update(
    state: LagrangeState, mean_episode_cost: jax.Array, cost_limit: float, learning_rate: float
) -> LagrangeState:
    """One Adam step on -lambda * (mean_episode_cost - cost_limit), projected to lambda >= 0.

    The gradient with respect to lambda is -(J_c - cost_limit): lambda grows while the
    constraint is violated and shrinks (to 0 at least) while it is satisfied.
    """
    gradient = -(mean_episode_cost - cost_limit)
    updates, optimizer_state = lagrange_optimizer(learning_rate).update(
        gradient.astype(jnp.float32), state.optimizer_state, state.multiplier
    )
    multiplier = jnp.maximum(optax.apply_updates(state.multiplier, updates), 0.0)
    return LagrangeState(multiplier, optimizer_state)


def lagrangian_advantage(reward_advantage: jax.Array, cost_advantage: jax.Array, multiplier: jax.Array) -> jax.Array:
    """A = (A_r - lambda A_c) / (1 + lambda), the paper's code's scaled Lagrangian advantage."""
    return (reward_advantage - multiplier * cost_advantage) / (1.0 + multiplier)
