"""Flax networks: a diagonal-Gaussian actor and the reward and cost critics.

As in the paper's code (SafePO): tanh MLPs (64-64 by default), a state-independent
log standard deviation initialised to 0, and separate critics for reward and cost.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """tanh MLP with a linear output layer."""

    hidden_sizes: Sequence[int]
    output_size: int
    output_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_sizes:
            x = nn.tanh(nn.Dense(width, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)))(x))
        return nn.Dense(self.output_size, kernel_init=nn.initializers.orthogonal(self.output_scale))(x)


class GaussianActor(nn.Module):
    """pi(a|s) = N(mu(s), diag(exp(log_std))^2), log_std state-independent (SafePO)."""

    hidden_sizes: Sequence[int]
    action_size: int

    @nn.compact
    def __call__(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(self.hidden_sizes, self.action_size, output_scale=0.01)(observation)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_size,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class Critic(nn.Module):
    """V(s) -> scalar."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        return MLP(self.hidden_sizes, 1)(observation)[..., 0]


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """log N(action; mean, exp(log_std)^2), summed over action dimensions."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy of a diagonal Gaussian, summed over action dimensions."""
    return jnp.sum(log_std + 0.5 * jnp.log(2.0 * jnp.pi * jnp.e), axis=-1)


def gaussian_kl(mean_p: jax.Array, log_std_p: jax.Array, mean_q: jax.Array, log_std_q: jax.Array) -> jax.Array:
    """KL(p || q) of diagonal Gaussians per action dimension (not summed).

    The paper's code averages this over batch *and* action dimensions (torch
    ``kl_divergence(...).mean()``), which the callers do; see ../shared/paper.md, section 6.5.
    """
    variance_ratio = jnp.exp(2.0 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q) ** 2 * jnp.exp(-2.0 * log_std_q)
    return log_std_q - log_std_p + 0.5 * (variance_ratio + mean_term - 1.0)
