"""Pure loss functions: the PPO clip surrogate, critic regression, and the policy KL.

Each takes the network's ``apply`` function, parameters and a batch, and returns a
scalar (plus diagnostics), so it can be differentiated, perturbed by the sharpness
transform, or evaluated at other parameters without touching the training loop.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from shapo_jax.networks import gaussian_entropy, gaussian_kl, gaussian_log_prob

ActorApply = Callable[..., tuple[jax.Array, jax.Array]]
CriticApply = Callable[..., jax.Array]


class PolicyBatch(NamedTuple):
    """What the actor's loss needs: normalised observations, actions, old log-probs, advantages."""

    observation: jax.Array
    action: jax.Array
    old_log_prob: jax.Array
    advantage: jax.Array


def ppo_clip_loss(
    actor_apply: ActorApply,
    params,
    batch: PolicyBatch,
    clip_epsilon: float,
    entropy_coefficient: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """-mean(min(r A, clip(r, 1-eps, 1+eps) A)) - c_H * entropy (Schulman et al. 2017, eq. 7).

    ``A`` is already the (Lagrangian) advantage; the multiplier is data here, so it is
    held fixed wherever this loss is differentiated (including at perturbed parameters).
    """
    mean, log_std = actor_apply(params, batch.observation)
    log_prob = gaussian_log_prob(mean, log_std, batch.action)
    log_ratio = log_prob - batch.old_log_prob
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon)
    surrogate = jnp.minimum(ratio * batch.advantage, clipped * batch.advantage)
    entropy = gaussian_entropy(log_std).mean()
    loss = -surrogate.mean() - entropy_coefficient * entropy
    diagnostics = {
        "actor_loss": loss,
        "entropy": entropy,
        # k3 estimator of KL(old || new) (Schulman 2020, "Approximating KL divergence").
        "approx_kl": jnp.mean(ratio - 1.0 - log_ratio),
        "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > clip_epsilon),
    }
    return loss, diagnostics


def value_loss(critic_apply: CriticApply, params, observation: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error of V(s) against its GAE targets."""
    return jnp.mean((critic_apply(params, observation) - targets) ** 2)


def mean_policy_kl(actor_apply: ActorApply, reference_params, params, observation: jax.Array) -> jax.Array:
    """Mean over batch *and* action dimensions of KL(pi_reference || pi_params).

    The paper's code takes torch ``kl_divergence(Normal, Normal).mean()``, which averages
    over action dimensions as well; this fixes what a given target KL means
    (montrealrobotics/shapo@1bb7704 shapo.py ``fvp``: ``kl_divergence(...).mean()``).
    """
    mean_ref, log_std_ref = actor_apply(reference_params, observation)
    mean, log_std = actor_apply(params, observation)
    mean_ref, log_std_ref = jax.lax.stop_gradient((mean_ref, log_std_ref))
    return gaussian_kl(mean_ref, log_std_ref, mean, log_std).mean()
