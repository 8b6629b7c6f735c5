"""networks.orthogonal: flax's orthogonal initializer, one QR per matrix even under vmap.

Why it exists: on jaxlib 0.10's CPU runtime ``jax.jit(jax.vmap(trainer.init))`` for 2 seeds x
256 SafetyPointGoal1 envs deadlocked (every thread idle, ``block_until_ready`` waiting
forever) while flax's initializer put both seeds' QRs into batched LAPACK calls, whose kernels
split a batch over XLA's thread pool and wait for the pieces; with ``initialization="torch"``
(no QR) or one seed it ran. The deadlock depends on program size and timing, so the test
below checks the cause, that no batched QR is left, rather than waiting on a hang.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from shapo_jax import TrainConfig, make_trainer, seed_keys
from shapo_jax.networks import orthogonal

QR_PRIMITIVES = {"qr", "geqrf", "geqp3", "householder_product"}


@pytest.mark.parametrize("shape", [(12, 64), (64, 64), (64, 2), (3, 5)])
def test_orthogonal_equals_flax_bit_for_bit_alone_and_vmapped(shape):
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    flax_init = nn.initializers.orthogonal(np.sqrt(2.0))
    expected = np.stack([np.asarray(flax_init(k, shape)) for k in keys])
    np.testing.assert_array_equal(np.asarray(orthogonal(np.sqrt(2.0))(keys[0], shape)), expected[0])
    vmapped = jax.jit(jax.vmap(lambda k: orthogonal(np.sqrt(2.0))(k, shape)))(keys)
    np.testing.assert_array_equal(np.asarray(vmapped), expected)
    nested = jax.vmap(jax.vmap(lambda k: orthogonal(np.sqrt(2.0))(k, shape)))(keys.reshape(3, 1, -1))
    np.testing.assert_array_equal(np.asarray(nested)[:, 0], expected)
    small = min(shape)  # orthonormal rows or columns, whichever are fewer, with norm sqrt 2
    gram = expected[0].T @ expected[0] if shape[0] >= shape[1] else expected[0] @ expected[0].T
    np.testing.assert_allclose(gram, 2.0 * np.eye(small), atol=1e-5)


def test_orthogonal_takes_a_traced_scale_under_nested_vmap():
    """The MLP passes ``jnp.sqrt(2.0)``, a tracer inside a traced init; the per-constraint cost
    critics add a vmap inside the seeds' one (train.init_cost_critic)."""
    def init(key, scale_source):
        keys = jax.random.split(key, 2)
        return jax.vmap(lambda k: orthogonal(jnp.sqrt(scale_source))(k, (5, 4)))(keys)

    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    got = np.asarray(jax.jit(jax.vmap(init, in_axes=(0, None)))(keys, 2.0))
    for i, key in enumerate(keys):
        for j, sub in enumerate(jax.random.split(key, 2)):
            np.testing.assert_array_equal(got[i, j], np.asarray(nn.initializers.orthogonal(np.sqrt(2.0))(sub, (5, 4))))


def _qr_operand_ranks(jaxpr) -> list[int]:
    ranks = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in QR_PRIMITIVES:
            ranks.append(eqn.invars[0].aval.ndim)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            ranks += _qr_operand_ranks(sub)
    return ranks


def test_vmapped_trainer_init_has_only_single_matrix_qrs():
    trainer = make_trainer(TrainConfig(env="PointHazard", num_envs=4, unroll_length=8, num_minibatches=2,
                                       total_steps=64, num_seeds=2))
    jaxpr = jax.make_jaxpr(jax.vmap(trainer.init))(seed_keys(0, 2)).jaxpr
    ranks = _qr_operand_ranks(jaxpr)
    assert ranks and set(ranks) == {2}, ranks  # the actor's and critics' layers, one matrix each
    # flax's own initializer is what batched them
    batched = jax.make_jaxpr(jax.vmap(lambda k: nn.initializers.orthogonal()(k, (8, 8))))(
        jax.random.split(jax.random.PRNGKey(0), 2)).jaxpr
    assert set(_qr_operand_ranks(batched)) == {3}

