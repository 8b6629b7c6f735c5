"""flat_vmap: the same results as nested vmaps, with the outer axes folded into one batch; and
select_envs, which keeps the leaves a batch of envs shares whole."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapo_jax.batching import flat_vmap, select_envs


def per_entry(state, scale):
    """Stands in for an env step: entry-wise work whose output is a pytree."""
    return {"x": jnp.tanh(state["x"] * scale) + state["n"], "n": state["n"] + 1}


@pytest.fixture
def batch():
    key = jax.random.PRNGKey(0)
    return {"x": jax.random.normal(key, (3, 5, 4)), "n": jnp.arange(15, dtype=jnp.int32).reshape(3, 5)}


def test_equals_nested_vmap_with_batched_and_unbatched_arguments(batch):
    scale = jnp.linspace(0.5, 2.0, 5)  # batched over the inner axis only
    nested = jax.vmap(jax.vmap(per_entry), in_axes=(0, None))(batch, scale)
    flat = jax.vmap(flat_vmap(per_entry), in_axes=(0, None))(batch, scale)
    for key in nested:
        np.testing.assert_array_equal(np.asarray(flat[key]), np.asarray(nested[key]))
        assert flat[key].dtype == nested[key].dtype
    # unvmapped, it is jax.vmap; twice vmapped, it folds both outer axes
    np.testing.assert_array_equal(flat_vmap(per_entry)(jax.tree.map(lambda x: x[0], batch), scale)["x"], nested["x"][0])
    deep = jax.tree.map(lambda x: jnp.stack([x, x]), batch)
    twice = jax.vmap(jax.vmap(flat_vmap(per_entry), in_axes=(0, None)), in_axes=(0, None))(deep, scale)
    np.testing.assert_array_equal(np.asarray(twice["x"][1]), np.asarray(nested["x"]))


def primitive_shapes(jaxpr, name: str) -> list[tuple]:
    """Output shapes of every ``name`` equation in ``jaxpr`` and the jaxprs nested in it."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == name:
            found += [tuple(v.aval.shape) for v in eqn.outvars]
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                found += primitive_shapes(inner, name)
    return found


def test_the_work_runs_on_one_merged_batch_axis(batch):
    """Under an outer vmap the entry-wise ops run on [outer * inner, ...], not [outer, inner, ...]."""
    def tanh_shapes(fn):
        return primitive_shapes(jax.make_jaxpr(jax.vmap(fn, in_axes=(0, None)))(batch, jnp.ones(5)).jaxpr, "tanh")

    assert tanh_shapes(jax.vmap(per_entry)) == [(3, 5, 4)]
    assert tanh_shapes(flat_vmap(per_entry)) == [(15, 4)]


def test_env_rollout_matches_nested_vmap():
    """PointHazard stepped under a vmap over seeds: flat and nested batching agree."""
    import shapo_envs

    env = shapo_envs.make_env("PointHazard")
    keys = jax.random.split(jax.random.PRNGKey(1), 6).reshape(2, 3, -1)
    states = jax.vmap(jax.vmap(env.reset))(keys)
    actions = jax.random.uniform(jax.random.PRNGKey(2), (2, 3, env.action_size), minval=-1, maxval=1)
    nested = jax.jit(jax.vmap(jax.vmap(env.step)))(states, actions)
    flat = jax.jit(jax.vmap(flat_vmap(env.step)))(states, actions)
    for a, b in zip(jax.tree.leaves(nested), jax.tree.leaves(flat)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-6)


def test_select_envs_picks_per_env_and_keeps_shared_leaves_whole():
    """Per env where the mask says, leaf by leaf; a shared leaf (MJX Warp's contact list: one
    array for the batch, no env axis) comes from ``latest`` whatever the mask, also for a
    scalar mask (the NaN guard's, per seed)."""
    chosen = {"qpos": jnp.zeros((3, 2)), "contacts": jnp.zeros(5)}
    latest = {"qpos": jnp.ones((3, 2)), "contacts": jnp.arange(5.0)}
    shared = {"qpos": False, "contacts": True}
    out = select_envs(jnp.array([True, False, True]), chosen, latest, shared)
    np.testing.assert_array_equal(out["qpos"], [[0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(out["contacts"], np.arange(5.0))
    whole = select_envs(jnp.array(True), chosen, latest, shared)
    np.testing.assert_array_equal(whole["qpos"], np.zeros((3, 2)))
    np.testing.assert_array_equal(whole["contacts"], np.arange(5.0))
    with pytest.raises(ValueError):  # without the tree, the mask [3] cannot select a [5] leaf
        select_envs(jnp.array([True, False, True]), chosen, latest)
