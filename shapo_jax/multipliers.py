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
    """A = (A_r - lambda A_c) / (1 + lambda), the paper's code's scaled Lagrangian advantage.

    With m constraints (``multiplier`` [m], ``cost_advantage`` [..., m]):
    A = (A_r - sum_i lambda_i A_c,i) / (1 + sum_i lambda_i), the same scaling of the
    Lagrangian of the m-constraint CMDP (Altman 1999; one multiplier per constraint).
    """
    if jnp.ndim(multiplier) == 0:
        return (reward_advantage - multiplier * cost_advantage) / (1.0 + multiplier)
    return (reward_advantage - jnp.sum(multiplier * cost_advantage, axis=-1)) / (1.0 + jnp.sum(multiplier))


class PIDState(NamedTuple):
    """State of the PID Lagrangian (Stooke et al. 2020), as SafePO's ``PIDLagrangian`` keeps it."""

    multiplier: jax.Array
    integral: jax.Array  # I, starts at the initial multiplier
    proportional: jax.Array  # EMA of (J_c - cost_limit)
    cost_ema: jax.Array  # EMA of J_c, the derivative term's signal
    cost_ema_history: jax.Array  # the last ``d_delay`` values of cost_ema, oldest first
    history_size: jax.Array  # how many entries of cost_ema_history are filled


def pid_init(initial_multiplier: float, d_delay: int) -> PIDState:
    zero = jnp.zeros((), jnp.float32)
    return PIDState(
        multiplier=jnp.asarray(initial_multiplier, jnp.float32),
        integral=jnp.asarray(initial_multiplier, jnp.float32),
        proportional=zero,
        cost_ema=zero,
        cost_ema_history=jnp.zeros((d_delay,), jnp.float32),  # SafePO: deque([0], maxlen=d_delay)
        history_size=jnp.ones((), jnp.int32),
    )


def pid_update(
    state: PIDState,
    mean_episode_cost: jax.Array,
    cost_limit: float,
    kp: float,
    ki: float,
    kd: float,
    ema_alpha: float = 0.95,
    initial_multiplier: float = 0.001,
) -> PIDState:
    """One step of the PID Lagrangian (Stooke, Achiam, Abbeel 2020, "Responsive Safety in RL
    by PID Lagrangian Methods", Alg. 2), with SafePO's EMAs and the paper's code's quirks.

    delta = J_c - limit;  I <- max(0, I + K_i delta);  P <- EMA(delta);  C <- EMA(J_c)
    D = max(0, C - C[d_delay updates ago]);  lambda = max(0, K_p P + I + K_d D)
    and lambda = initial_multiplier when the PID output is negative while delta > 0
    (montrealrobotics/shapo@1bb7704 safepo/common/lagrange.py ``PIDLagrangian``).
    """
    cost = jnp.asarray(mean_episode_cost, jnp.float32)
    delta = cost - cost_limit
    integral = jnp.maximum(0.0, state.integral + ki * delta)
    proportional = ema_alpha * state.proportional + (1.0 - ema_alpha) * delta
    cost_ema = ema_alpha * state.cost_ema + (1.0 - ema_alpha) * cost
    derivative = jnp.maximum(0.0, cost_ema - state.cost_ema_history[0])
    output = kp * proportional + integral + kd * derivative
    multiplier = jnp.maximum(0.0, output)
    multiplier = jnp.where((output < 0) & (delta > 0), initial_multiplier, multiplier)
    history, size = _deque_append(state.cost_ema_history, state.history_size, cost_ema)
    return PIDState(multiplier, integral, proportional, cost_ema, history, size)


def _deque_append(buffer: jax.Array, size: jax.Array, value: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``collections.deque(maxlen=len(buffer)).append`` on a fixed array, oldest entry first."""
    full = size >= buffer.shape[0]
    shifted = jnp.roll(buffer, -1).at[-1].set(value)
    filled = buffer.at[jnp.minimum(size, buffer.shape[0] - 1)].set(value)
    return jnp.where(full, shifted, filled), jnp.minimum(size + 1, buffer.shape[0])
