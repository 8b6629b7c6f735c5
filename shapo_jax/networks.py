"""Flax networks: a diagonal-Gaussian actor and the reward and cost critics.

As in the paper's code (SafePO): tanh MLPs (64-64 by default), a state-independent
log standard deviation initialised to 0, and separate critics for reward and cost.
Weights start orthogonal (gain sqrt 2, the actor's output layer 0.01, zero biases: initial
action means near 0), or with ``initialization="torch"`` as the released code's
``build_mlp_network`` leaves them (safepo/common/model.py@1bb7704: ``nn.Linear`` with
``kaiming_uniform_(a=sqrt(5))`` weights and PyTorch's default biases, both
U(-1/sqrt(fan_in), 1/sqrt(fan_in)); initial action means of order 0.3).
"""

from __future__ import annotations

from typing import Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


Initialization = Literal["orthogonal", "torch"]


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's ``nn.Linear`` default for weights
    (``kaiming_uniform_(a=sqrt(5))``: gain sqrt(1/3) times sqrt(3/fan_in)) and biases."""
    bound = 1.0 / jnp.sqrt(float(fan_in))

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def orthogonal(scale: float) -> nn.initializers.Initializer:
    """Flax's orthogonal initializer, drawing one matrix at a time under ``vmap``.

    The same values as ``nn.initializers.orthogonal(scale)`` (the QR of a normal matrix). Under
    ``vmap`` (seeds, radii) JAX would batch that QR into one LAPACK call, and jaxlib 0.10's
    batched LAPACK kernels split the batch over XLA's intra-op thread pool (one thread per core)
    and wait for the pieces, so two such calls at once can hold every thread of a 2-core CPU
    with the pieces never run (gdb showed exactly that for MJX's batched Cholesky, README "All
    cores of a CPU"). A vmapped ``init`` of 2 seeds x 256 SafetyPointGoal1 envs deadlocked so
    (every thread idle) with flax's initializer, and ran with ``initialization="torch"`` (no
    QR) and with this one. Here the batch is a ``lax.map``: each QR is one matrix's.
    """
    unit = nn.initializers.orthogonal(1.0)  # the scale is applied outside: it may be a tracer,
    # which a custom_vmap function must not close over

    def init(key, shape, dtype=jnp.float32):
        @jax.custom_batching.custom_vmap
        def draw(key):
            return unit(key, shape, dtype)

        @draw.def_vmap
        def draw_batched(axis_size, in_batched, key):
            del axis_size
            if not in_batched[0]:
                return draw(key), False
            return jax.lax.map(draw, key), True

        return jnp.asarray(scale, dtype) * draw(key)

    return init


def dense(width: int, fan_in: int, initialization: Initialization, orthogonal_scale: float) -> nn.Dense:
    if initialization == "torch":
        return nn.Dense(width, kernel_init=torch_uniform(fan_in), bias_init=torch_uniform(fan_in))
    return nn.Dense(width, kernel_init=orthogonal(orthogonal_scale))


class MLP(nn.Module):
    """tanh MLP with a linear output layer."""

    hidden_sizes: Sequence[int]
    output_size: int
    output_scale: float = 1.0  # orthogonal gain of the output layer
    initialization: Initialization = "orthogonal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_sizes:
            x = nn.tanh(dense(width, x.shape[-1], self.initialization, jnp.sqrt(2.0))(x))
        return dense(self.output_size, x.shape[-1], self.initialization, self.output_scale)(x)


class GaussianActor(nn.Module):
    """pi(a|s) = N(mu(s), diag(exp(log_std))^2), log_std state-independent (SafePO)."""

    hidden_sizes: Sequence[int]
    action_size: int
    initialization: Initialization = "orthogonal"

    @nn.compact
    def __call__(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(self.hidden_sizes, self.action_size, output_scale=0.01, initialization=self.initialization)(observation)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_size,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class Critic(nn.Module):
    """V(s) -> scalar."""

    hidden_sizes: Sequence[int]
    initialization: Initialization = "orthogonal"

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        return MLP(self.hidden_sizes, 1, initialization=self.initialization)(observation)[..., 0]


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
    ``kl_divergence(...).mean()``), which the callers do; see montrealrobotics/shapo@1bb7704
    shapo.py ``fvp`` and ``compute_kl_constrained_perturbation``.
    """
    variance_ratio = jnp.exp(2.0 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q) ** 2 * jnp.exp(-2.0 * log_std_q)
    return log_std_q - log_std_p + 0.5 * (variance_ratio + mean_term - 1.0)
