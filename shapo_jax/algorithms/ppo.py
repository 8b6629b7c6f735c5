"""The PPO policy step: epochs x shuffled minibatches of the clip loss.

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
import jax.numpy as jnp
import optax

from shapo_jax.algorithms.trust_region import geometry_at
from shapo_jax.losses import PolicyBatch, ppo_clip_loss
from shapo_jax.sharpness import SharpnessAwareState


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    num_minibatches: int
    update_epochs: int
    clip_epsilon: float
    entropy_coefficient: float
    uses_sharpness: bool
    fisher: bool


def shuffled_minibatches(key: jax.Array, batch: Any, num_minibatches: int) -> Any:
    """A random permutation of the (flat) batch split into [num_minibatches, size, ...]."""
    size = jax.tree.leaves(batch)[0].shape[0]
    permutation = jax.random.permutation(key, size)
    return jax.tree.map(
        lambda x: x[permutation].reshape((num_minibatches, size // num_minibatches) + x.shape[1:]), batch
    )


def epochs_of_minibatches(step, carry, batch, key: jax.Array, num_epochs: int, num_minibatches: int):
    """Runs ``step(carry, minibatch) -> (carry, diagnostics)`` over epochs of shuffled
    minibatches; returns the final carry and the diagnostics averaged over all steps."""

    def epoch(carry, epoch_key):
        return jax.lax.scan(step, carry, shuffled_minibatches(epoch_key, batch, num_minibatches))

    carry, diagnostics = jax.lax.scan(epoch, carry, jax.random.split(key, num_epochs))
    return carry, jax.tree.map(jnp.mean, diagnostics)


def sharpness_diagnostics(optimizer_state) -> dict[str, jax.Array]:
    """The ``SharpnessAwareState`` inside an optimizer state, as metrics (zeros if absent)."""
    is_state = lambda x: isinstance(x, SharpnessAwareState)
    for leaf in jax.tree.leaves(optimizer_state, is_leaf=is_state):
        if is_state(leaf):
            return {
                "perturbation_norm": leaf.perturbation_norm,
                "perturbation_kl": leaf.kl,
                "perturbation_scale": leaf.scale,
                "perturbation_cosine": leaf.cosine,
            }
    zero = jnp.zeros((), jnp.float32)
    return {"perturbation_norm": zero, "perturbation_kl": zero, "perturbation_scale": zero, "perturbation_cosine": zero}


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
