"""Gymnasium's running observation statistics, as a pytree the rollout scan can carry.

``--observation-normalization step`` reproduces the released code's normalisation
(safepo/common/env.py@1bb7704 wraps the vector env in ``NormalizeObservation``): at every
env step the batch of observations the vector env returns (after its auto-resets) first
updates the statistics, then is normalised with them, and the normalised batch is what the
policy sees and the buffer stores. The update is Chan et al.'s parallel one of Gymnasium's
``RunningMeanStd`` (gymnasium/wrappers/normalize.py, 0.28): mean 0, variance 1 and a count of
1e-4 to start, population variance of the batch, no clipping, and
``(x - mean) / sqrt(var + 1e-8)``. Gymnasium keeps float64; these are float32.

Under ``--num-devices`` a seed's envs may be split over devices: the batch mean and variance
here are over the whole batch, and XLA's SPMD partitioner reduces them across those devices,
so the statistics are the same as on one device (to round-off).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

INITIAL_COUNT = 1e-4  # Gymnasium's RunningMeanStd(epsilon=1e-4)
EPSILON = 1e-8  # NormalizeObservation(epsilon=1e-8), added to the variance


class RunningMeanStd(NamedTuple):
    """Mean, population variance and (fractional) count of all observations seen."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def zeros(cls, size: int) -> "RunningMeanStd":
        return cls(jnp.zeros((size,), jnp.float32), jnp.ones((size,), jnp.float32),
                   jnp.asarray(INITIAL_COUNT, jnp.float32))


def update(statistics: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """The statistics with the rows of ``batch`` [n, size] added (Gymnasium's
    ``update_mean_var_count_from_moments``)."""
    batch_mean = jnp.mean(batch, axis=0)
    batch_var = jnp.var(batch, axis=0)
    batch_count = jnp.asarray(batch.shape[0], jnp.float32)
    delta = batch_mean - statistics.mean
    total = statistics.count + batch_count
    mean = statistics.mean + delta * batch_count / total
    m2 = statistics.var * statistics.count + batch_var * batch_count + delta**2 * statistics.count * batch_count / total
    return RunningMeanStd(mean, m2 / total, total)


def normalize(statistics: RunningMeanStd, observation: jax.Array) -> jax.Array:
    """``(observation - mean) / sqrt(var + 1e-8)``, as NormalizeObservation returns it."""
    return (observation - statistics.mean) / jnp.sqrt(statistics.var + EPSILON)


def update_and_normalize(statistics: RunningMeanStd, batch: jax.Array) -> tuple[RunningMeanStd, jax.Array]:
    """One ``NormalizeObservation.normalize`` call: update with the batch, then normalise it."""
    statistics = update(statistics, batch)
    return statistics, normalize(statistics, batch)
