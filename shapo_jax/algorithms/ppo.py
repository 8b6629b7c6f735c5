"""The PPO policy step (PPO, PPO-Lag, PPO-PID): epochs x shuffled minibatches of the clip loss.

When the actor's optimizer starts with ``sharpness_aware`` (SHAPO), each minibatch's
actor gradient is replaced by the gradient at the perturbed parameters. The transform
gets ``grad_fn`` for the same minibatch loss (same advantages and old log-probs, the
multiplier held fixed as data), and for the Fisher geometry the Fisher-vector product
and KL of the current policy against a frozen copy of itself on that minibatch (from
``trust_region.geometry_at``: the network linearised once per minibatch, and the KL's
reference distribution taken from that linearisation).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax

from shapo_jax.algorithms.base import ActorApply, Constraint, PolicyStep, make_sharpness
from shapo_jax.algorithms.trust_region import geometry_at
from shapo_jax.config import TrainConfig
from shapo_jax.diagnostics import sharpness_diagnostics
from shapo_jax.losses import PolicyBatch, ppo_clip_loss
from shapo_jax.minibatch import epochs_of_minibatches


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOConfig:
    num_minibatches: int
    update_epochs: int
    clip_epsilon: float
    entropy_coefficient: float
    uses_sharpness: bool
    fisher: bool


def ppo_actor_step(
    config: PPOConfig,
    actor_apply,
    actor_optimizer: optax.GradientTransformationExtraArgs,
    params,
    optimizer_state,
    batch: PolicyBatch,
    key: jax.Array,
):
    """``update_epochs`` passes of shuffled minibatches of the clip loss over a flat batch."""

    def loss(p, minibatch: PolicyBatch):
        return ppo_clip_loss(actor_apply, p, minibatch, config.clip_epsilon, config.entropy_coefficient)

    def minibatch_step(carry, minibatch: PolicyBatch):
        params, optimizer_state = carry
        (_, diagnostics), grads = jax.value_and_grad(loss, has_aux=True)(params, minibatch)
        extra = {}
        if config.uses_sharpness:
            extra["grad_fn"] = jax.grad(lambda p: loss(p, minibatch)[0])
            if config.fisher:
                geometry = geometry_at(actor_apply, params, minibatch.observation, damping=0.0)
                extra["fvp_fn"] = geometry.fisher_vector_product  # undamped: the transform damps it
                extra["kl_fn"] = geometry.kl
        updates, optimizer_state = actor_optimizer.update(grads, optimizer_state, params, **extra)
        params = optax.apply_updates(params, updates)
        return (params, optimizer_state), {**diagnostics, **sharpness_diagnostics(optimizer_state)}

    (params, optimizer_state), diagnostics = epochs_of_minibatches(
        minibatch_step, (params, optimizer_state), batch, key, config.update_epochs, config.num_minibatches
    )
    return params, optimizer_state, diagnostics


def make_actor_optimizer(config: TrainConfig, rho) -> optax.GradientTransformationExtraArgs:
    """PPO's actor optimizer: clip -> Adam, preceded by the sharpness step with SHAPO."""
    base = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.actor_learning_rate))
    sharpness = make_sharpness(config, rho)
    return optax.with_extra_args_support(base) if sharpness is None else optax.chain(sharpness, base)


def ppo_policy_step(config: TrainConfig, actor_apply: ActorApply, rho) -> PolicyStep:
    """PPO, PPO-Lag and PPO-PID: the clip loss over minibatches; the state is the optimizer's."""
    settings = PPOConfig(
        num_minibatches=config.num_minibatches, update_epochs=config.update_epochs,
        clip_epsilon=config.clip_epsilon, entropy_coefficient=config.entropy_coefficient,
        uses_sharpness=config.uses_sharpness, fisher=config.geometry == "fisher",
    )
    optimizer = make_actor_optimizer(config, rho)

    def step(params, optimizer_state, batch: PolicyBatch, constraint: Constraint, key: jax.Array):
        del constraint  # the multiplier is already in batch.advantage
        # The diagnostics hold the SHAPO ones averaged over minibatches.
        return ppo_actor_step(settings, actor_apply, optimizer, params, optimizer_state, batch, key)

    return PolicyStep(make_actor_optimizer(config, 0.0).init, step)
