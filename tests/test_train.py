"""End-to-end behaviour of the trainer on the pure-JAX PointHazard task."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapo_envs
from faulty_envs import NaNRewardAfter
from shapo_jax import TrainConfig, make_train, make_trainer, seed_keys

TINY = dict(env="PointHazard", num_envs=8, unroll_length=16, num_minibatches=2, update_epochs=2, total_steps=8 * 16 * 3)

# The learning setup: 200 updates of 16 envs x 64 steps (~205k steps per seed), 4 seeds.
LEARNING = dict(env="PointHazard", num_envs=16, unroll_length=64, num_minibatches=4, update_epochs=4,
                total_steps=16 * 64 * 200)
RANDOM_POLICY_RETURN = -8.0  # measured: the untrained policy's first-update mean return is -7 to -9


def run(config: TrainConfig, num_seeds: int = 2, seed: int = 0):
    train = jax.jit(jax.vmap(make_train(config)))
    return jax.block_until_ready(train(seed_keys(seed, num_seeds)))


def final_mean(output, name: str, last: int = 10) -> np.ndarray:
    """Per-seed mean of a metric over the last updates."""
    return np.asarray(output.metrics[name])[:, -last:].mean(axis=1)


@dataclasses.dataclass(frozen=True)
class SharpnessWithZeroRadius(TrainConfig):
    """Routes the actor gradient through sharpness_aware even though rho = 0."""

    @property
    def uses_sharpness(self) -> bool:
        return True


def test_metrics_have_one_value_per_update_and_seed():
    config = TrainConfig(**TINY)
    output = run(config, num_seeds=3)
    assert output.metrics["episode_return"].shape == (3, config.num_updates)
    assert np.all(np.asarray(output.metrics["env_steps"])[:, -1] == config.total_steps)
    assert np.all(np.asarray(output.state.failed_update) == -1)
    chex_finite = [np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(output.metrics)]
    assert all(chex_finite)
    # --cost-window 0 (the default): the constraint signal is this update's mean episode cost.
    np.testing.assert_array_equal(np.asarray(output.metrics["constraint_cost"]),
                                  np.asarray(output.metrics["episode_cost"]))


def test_same_key_same_numbers_different_keys_differ():
    config = TrainConfig(**TINY)
    first, again = run(config, seed=3), run(config, seed=3)
    for a, b in zip(jax.tree.leaves(first.state.learner.actor_params), jax.tree.leaves(again.state.learner.actor_params)):
        np.testing.assert_array_equal(a, b)
    returns = np.asarray(first.metrics["step_reward"])
    assert not np.array_equal(returns[0], returns[1]), "two seeds of one run must differ"
    other = run(config, seed=4)
    assert not np.array_equal(np.asarray(other.metrics["step_reward"]), returns)


@pytest.mark.parametrize("geometry", ["euclidean", "fisher"])
def test_zero_radius_through_the_transform_is_the_base_algorithm_bit_for_bit(geometry):
    base = run(TrainConfig(**TINY, geometry=geometry))
    through_transform = run(SharpnessWithZeroRadius(**TINY, geometry=geometry))
    for a, b in zip(jax.tree.leaves(base.state.learner.actor_params), jax.tree.leaves(through_transform.state.learner.actor_params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(base.metrics["total_cost"], through_transform.metrics["total_cost"])


def test_positive_radius_changes_training():
    base = run(TrainConfig(**TINY))
    shapo = run(TrainConfig(**TINY, rho=0.05))
    norms = np.asarray(shapo.metrics["perturbation_norm"])
    np.testing.assert_allclose(norms, 0.05, rtol=1e-4)
    differs = [not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(base.state.learner.actor_params), jax.tree.leaves(shapo.state.learner.actor_params))]
    assert any(differs)


def test_fisher_perturbation_respects_its_target_kl():
    target_kl = 1e-3
    output = run(TrainConfig(**TINY, geometry="fisher", perturbation_target_kl=target_kl))
    kl = np.asarray(output.metrics["perturbation_kl"])
    scale = np.asarray(output.metrics["perturbation_scale"])
    assert np.all(kl > 0), "the KL at the perturbed policy is measured"
    # Minibatch means: each accepted perturbation has KL <= delta, unless it fell back to 0.1.
    assert np.all((kl <= target_kl * 1.0001) | (scale < 1.0))
    assert np.all(np.asarray(output.metrics["perturbation_norm"]) > 0)


def test_critics_are_unchanged_by_the_sharpness_step_at_update_one():
    """SHAPO perturbs the actor only: after one update the critics equal the base run's."""
    one_update = dict(TINY, total_steps=8 * 16)
    base = run(TrainConfig(**one_update))
    shapo = run(TrainConfig(**one_update, rho=0.1))
    for a, b in zip(jax.tree.leaves(base.state.learner.critic_params), jax.tree.leaves(shapo.state.learner.critic_params)):
        np.testing.assert_array_equal(a, b)


def test_non_finite_values_stop_the_run_and_keep_the_last_finite_state():
    config = TrainConfig(**dict(TINY, total_steps=8 * 16 * 4))
    env = NaNRewardAfter(shapo_envs.make_env("PointHazard"), after=16 * 2 - 1)  # NaN from update 2's last step
    trainer = make_trainer(config, env=env)
    output = jax.block_until_ready(jax.jit(trainer.train)(seed_keys(0, 1)[0]))
    assert int(output.state.failed_update) == 2
    assert int(output.state.update) == 1, "the state after the last finite update is kept"
    finite = [bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(output.state.learner.actor_params)]
    assert all(finite)


def test_the_nan_guard_takes_shared_env_leaves_from_the_new_state():
    """keep_last_finite restores every leaf of the last finite state except env-state leaves
    the batch shares (MJX Warp's contact list, here stood in for by the observations), which
    are the physics' scratch space and must stay one whole array."""
    from shapo_jax.train import keep_last_finite

    trainer = make_trainer(TrainConfig(**TINY))
    old = trainer.init(seed_keys(0, 1)[0])
    new = jax.tree.map(lambda x: x + 1 if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, old)
    shared = jax.tree.map(lambda _: False, old.runner.env_state).replace(obs=True)
    kept = keep_last_finite(old, new._replace(update=old.update + 1), jnp.asarray(False), shared)
    np.testing.assert_array_equal(kept.runner.env_state.obs, new.runner.env_state.obs)
    np.testing.assert_array_equal(kept.runner.initial_env_state.obs, new.runner.initial_env_state.obs)
    for name in ("env_state", "initial_env_state"):
        np.testing.assert_array_equal(getattr(kept.runner, name).reward, getattr(old.runner, name).reward)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(kept.learner), jax.tree.leaves(old.learner)))
    assert int(kept.update) == int(old.update) and int(kept.failed_update) == 1


def test_progress_fn_is_called_once_per_update_per_seed_under_vmap():
    calls = []
    config = TrainConfig(**TINY)
    train = make_train(config, progress_fn=lambda metrics: calls.append(jax.device_get(metrics)))
    keys = seed_keys(0, 2)
    jax.block_until_ready(jax.jit(jax.vmap(train))(keys))
    jax.effects_barrier()
    assert len(calls) == 2 * config.num_updates
    seen = {(int(c["update"]), tuple(np.asarray(c["seed_key"]).tolist())) for c in calls}
    assert len(seen) == 2 * config.num_updates
    assert all(np.ndim(c["episode_return"]) == 0 for c in calls)


def test_ppo_lagrangian_learns_to_reach_the_goal_within_the_cost_limit_and_ppo_does_not():
    """The learning test: constrained PPO is safe and much better than random; unconstrained PPO
    (the cost term off) takes the short path through the hazard and violates the limit."""
    cost_limit = shapo_envs.get_spec("PointHazard").cost_limit
    constrained = run(TrainConfig(**LEARNING, algo="ppo_lag"), num_seeds=4)
    unconstrained = run(TrainConfig(**LEARNING, algo="ppo"), num_seeds=4)

    constrained_return = final_mean(constrained, "episode_return").mean()
    assert constrained_return > RANDOM_POLICY_RETURN + 15.0, constrained_return
    assert final_mean(constrained, "episode_cost").mean() <= cost_limit
    assert final_mean(unconstrained, "episode_cost").mean() > 2 * cost_limit
    assert final_mean(unconstrained, "episode_return").mean() > RANDOM_POLICY_RETURN + 15.0
    # The multiplier rose to enforce the constraint; unconstrained PPO keeps it at 0.
    assert np.all(np.asarray(constrained.metrics["multiplier"]).max(axis=1) > 0.1)
    np.testing.assert_array_equal(unconstrained.metrics["multiplier"], 0.0)


def test_vmap_over_radii_matches_separate_runs():
    """train(key, rho) with a traced radius: one program over radii equals one run per radius."""
    config = TrainConfig(**TINY, rho=0.1)
    train = make_train(config)
    key = seed_keys(0, 1)[0]
    radii = jnp.asarray([0.0, 0.1])
    swept = jax.jit(jax.vmap(train, in_axes=(None, 0)))(key, radii)
    base = jax.jit(make_train(TrainConfig(**TINY)))(key)
    shapo = jax.jit(train)(key)
    np.testing.assert_allclose(swept.metrics["perturbation_norm"][1], 0.1, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(swept.state.learner.actor_params), jax.tree.leaves(base.state.learner.actor_params)):
        np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(swept.state.learner.actor_params), jax.tree.leaves(shapo.state.learner.actor_params)):
        np.testing.assert_allclose(a[1], b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("redraw", [False, True])
def test_reset_states_are_redrawn_each_update_only_when_asked(redraw):
    trainer = make_trainer(TrainConfig(**TINY, redraw_resets=redraw))
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    after_one, _ = jax.jit(trainer.update)(state)
    after_two, _ = jax.jit(trainer.update)(after_one)
    starts = [np.asarray(s.runner.initial_env_state.info["position"]) for s in (state, after_one, after_two)]
    if redraw:  # a new start per env at every update, all inside PointHazard's start box
        assert not np.allclose(starts[0], starts[1]) and not np.allclose(starts[1], starts[2])
        assert np.all(np.abs(starts[2] - np.asarray([-1.0, 0.0])) <= 0.1)
    else:
        np.testing.assert_array_equal(starts[0], starts[2])


def test_navigation_tasks_redraw_their_layouts_by_default():
    from shapo_jax.config import resolve

    assert resolve(TrainConfig(env="SafetyPointGoal1")).redraw_resets is True
    assert resolve(TrainConfig(env="PointHazard")).redraw_resets is False
    assert resolve(TrainConfig(env="SafetyPointGoal1", redraw_resets=False)).redraw_resets is False
