"""The PPO policy step: epochs x minibatches of the clip loss, critics fitted alongside.

When the actor's optimizer starts with ``sharpness_aware`` (SHAPO), each minibatch's
actor gradient is replaced by the gradient at the perturbed parameters. The transform
gets ``grad_fn`` for the same minibatch loss (same advantages and old log-probs, the
multiplier held fixed as data), and for the Fisher geometry the Fisher-vector product
and KL of the current policy against a frozen copy of itself on that minibatch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from shapo_jax.config import TrainConfig
from shapo_jax.fisher import hvp_of_kl
from shapo_jax.losses import PolicyBatch, mean_policy_kl, ppo_clip_loss, value_loss
from shapo_jax.sharpness import SharpnessAwareState


@dataclasses.dataclass(frozen=True)
class PPOStepConfig:
    num_minibatches: int
    update_epochs: int
    clip_epsilon: float
    entropy_coefficient: float
    uses_sharpness: bool
    fisher: bool

    @classmethod
    def from_train_config(cls, config: TrainConfig) -> "PPOStepConfig":
        return cls(
            config.num_minibatches, config.update_epochs, config.clip_epsilon, config.entropy_coefficient,
            config.uses_sharpness, config.geometry == "fisher",
        )


class PolicyStepResult(NamedTuple):
    actor_params: Any
    critic_params: Any
    actor_optimizer_state: optax.OptState
    critic_optimizer_state: optax.OptState
    diagnostics: dict[str, jax.Array]


class _Minibatch(NamedTuple):
    policy: PolicyBatch
    reward_target: jax.Array
    cost_target: jax.Array


def sharpness_diagnostics(optimizer_state) -> dict[str, jax.Array]:
    """The ``SharpnessAwareState`` inside a chained optimizer state, as metrics (zeros if absent)."""
    for leaf in jax.tree.leaves(optimizer_state, is_leaf=lambda x: isinstance(x, SharpnessAwareState)):
        if isinstance(leaf, SharpnessAwareState):
            return {
                "perturbation_norm": leaf.perturbation_norm,
                "perturbation_kl": leaf.kl,
                "perturbation_scale": leaf.scale,
                "perturbation_cosine": leaf.cosine,
            }
    zero = jnp.zeros((), jnp.float32)
    return {"perturbation_norm": zero, "perturbation_kl": zero, "perturbation_scale": zero, "perturbation_cosine": zero}


def ppo_policy_step(
    config: PPOStepConfig,
    actor_apply,
    critic_apply,
    actor_optimizer: optax.GradientTransformationExtraArgs,
    critic_optimizer: optax.GradientTransformation,
    actor_params,
    critic_params,
    actor_optimizer_state,
    critic_optimizer_state,
    observation: jax.Array,
    action: jax.Array,
    old_log_prob: jax.Array,
    advantage: jax.Array,
    reward_target: jax.Array,
    cost_target: jax.Array,
    key: jax.Array,
) -> PolicyStepResult:
    """``update_epochs`` passes of shuffled minibatches over one rollout's batch."""
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # [T, N, ...] -> [T*N, ...]
    batch = _Minibatch(
        PolicyBatch(flat(observation), flat(action), flat(old_log_prob), flat(advantage)),
        flat(reward_target),
        flat(cost_target),
    )
    batch_size = batch.reward_target.shape[0]
    minibatch_size = batch_size // config.num_minibatches

    def actor_loss(params, minibatch: PolicyBatch):
        return ppo_clip_loss(actor_apply, params, minibatch, config.clip_epsilon, config.entropy_coefficient)

    def actor_update(params, optimizer_state, minibatch: PolicyBatch):
        (_, diagnostics), grads = jax.value_and_grad(actor_loss, has_aux=True)(params, minibatch)
        extra = {}
        if config.uses_sharpness:
            extra["grad_fn"] = lambda p: jax.grad(lambda q: actor_loss(q, minibatch)[0])(p)
            if config.fisher:
                kl = lambda p: mean_policy_kl(actor_apply, params, p, minibatch.observation)
                extra["fvp_fn"] = hvp_of_kl(kl, params)
                extra["kl_fn"] = kl
        updates, optimizer_state = actor_optimizer.update(grads, optimizer_state, params, **extra)
        return optax.apply_updates(params, updates), optimizer_state, diagnostics

    def critic_update(params, optimizer_state, minibatch: _Minibatch):
        def loss(p):
            reward_loss = value_loss(critic_apply, p["reward"], minibatch.policy.observation, minibatch.reward_target)
            cost_loss = value_loss(critic_apply, p["cost"], minibatch.policy.observation, minibatch.cost_target)
            return reward_loss + cost_loss, {"reward_value_loss": reward_loss, "cost_value_loss": cost_loss}

        (_, diagnostics), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, optimizer_state = critic_optimizer.update(grads, optimizer_state, params)
        return optax.apply_updates(params, updates), optimizer_state, diagnostics

    def minibatch_step(carry, minibatch: _Minibatch):
        actor_params, critic_params, actor_state, critic_state = carry
        actor_params, actor_state, actor_diagnostics = actor_update(actor_params, actor_state, minibatch.policy)
        critic_params, critic_state, critic_diagnostics = critic_update(critic_params, critic_state, minibatch)
        diagnostics = {**actor_diagnostics, **critic_diagnostics, **sharpness_diagnostics(actor_state)}
        return (actor_params, critic_params, actor_state, critic_state), diagnostics

    def epoch(carry, epoch_key):
        permutation = jax.random.permutation(epoch_key, batch_size)
        shuffled = jax.tree.map(
            lambda x: x[permutation].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]), batch
        )
        return jax.lax.scan(minibatch_step, carry, shuffled)

    carry = (actor_params, critic_params, actor_optimizer_state, critic_optimizer_state)
    carry, diagnostics = jax.lax.scan(epoch, carry, jax.random.split(key, config.update_epochs))
    return PolicyStepResult(*carry, jax.tree.map(jnp.mean, diagnostics))
