"""Fitting the reward and cost critics, shared by every algorithm.

Regression of V(s) on its GAE targets by Adam over epochs of shuffled minibatches, plus
an optional L2 penalty on the weights (the paper's code: 0.001). SHAPO never touches the
critics (montrealrobotics/shapo@1bb7704 safepo/single_agent/trpo_pid.py, the critic loop of
``main``).
"""

from __future__ import annotations

import jax
import optax

from shapo_jax.fisher import tree_vdot
from shapo_jax.losses import value_loss
from shapo_jax.minibatch import epochs_of_minibatches


def fit_critics(
    critic_apply,
    optimizer: optax.GradientTransformation,
    params,  # {"reward": ..., "cost": ...}
    optimizer_state,
    observation: jax.Array,
    reward_target: jax.Array,
    cost_target: jax.Array,
    key: jax.Array,
    num_epochs: int,
    num_minibatches: int,
    l2: float = 0.0,
    cost_apply=None,
):
    """Returns the fitted params, optimizer state and mean losses.

    ``cost_apply`` (default ``critic_apply``) gives the cost values; with m constraints it
    returns [batch, m] against ``cost_target`` [batch, m], and the cost loss is the sum of
    the m critics' mean squared errors.
    """
    multi = cost_apply is not None and cost_target.ndim > 1
    cost_apply = critic_apply if cost_apply is None else cost_apply

    def loss(p, minibatch):
        observation, reward_target, cost_target = minibatch
        reward_loss = value_loss(critic_apply, p["reward"], observation, reward_target)
        cost_loss = value_loss(cost_apply, p["cost"], observation, cost_target)
        if multi:
            cost_loss = cost_loss * cost_target.shape[-1]  # mean over [batch, m] -> sum of m means
        penalty = l2 * tree_vdot(p, p) if l2 > 0 else 0.0
        return reward_loss + cost_loss + penalty, {"reward_value_loss": reward_loss, "cost_value_loss": cost_loss}

    def step(carry, minibatch):
        params, optimizer_state = carry
        (_, diagnostics), grads = jax.value_and_grad(loss, has_aux=True)(params, minibatch)
        updates, optimizer_state = optimizer.update(grads, optimizer_state, params)
        return (optax.apply_updates(params, updates), optimizer_state), diagnostics

    (params, optimizer_state), diagnostics = epochs_of_minibatches(
        step, (params, optimizer_state), (observation, reward_target, cost_target), key, num_epochs, num_minibatches
    )
    return params, optimizer_state, diagnostics
