"""The SHAPO perturbation's diagnostics as metrics, read from any optimizer state."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from shapo_jax.sharpness import SharpnessAwareState

SHARPNESS_METRICS = ("perturbation_norm", "perturbation_kl", "perturbation_scale", "perturbation_cosine")


def sharpness_diagnostics(optimizer_state) -> dict[str, jax.Array]:
    """The first ``SharpnessAwareState`` inside ``optimizer_state``, as metrics (zeros if none).

    Every policy step reports these keys, so the metrics of all algorithms, with or without
    SHAPO, have the same names.
    """
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
    return {name: zero for name in SHARPNESS_METRICS}
