"""Epochs of shuffled minibatches, the loop PPO's policy step and the critic fit share."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def shuffled_minibatches(key: jax.Array, batch: Any, num_minibatches: int) -> Any:
    """A random permutation of the (flat) batch split into [num_minibatches, size, ...]."""
    size = jax.tree.leaves(batch)[0].shape[0]
    permutation = jax.random.permutation(key, size)
    return jax.tree.map(
        lambda x: x[permutation].reshape((num_minibatches, size // num_minibatches) + x.shape[1:]), batch
    )


def epochs_of_minibatches(
    step: Callable[[Any, Any], tuple[Any, Any]], carry, batch, key: jax.Array, num_epochs: int, num_minibatches: int
):
    """Runs ``step(carry, minibatch) -> (carry, diagnostics)`` over epochs of shuffled
    minibatches; returns the final carry and the diagnostics averaged over all steps."""

    def epoch(carry, epoch_key):
        return jax.lax.scan(step, carry, shuffled_minibatches(epoch_key, batch, num_minibatches))

    carry, diagnostics = jax.lax.scan(epoch, carry, jax.random.split(key, num_epochs))
    return carry, jax.tree.map(jnp.mean, diagnostics)
