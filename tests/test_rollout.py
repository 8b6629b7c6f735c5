"""Tests for shapo_jax.rollout (with a hand-traceable counter env) and the PointHazard task."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State

import shapo_envs
from shapo_envs import point_hazard as ph
from shapo_jax.rollout import EpisodeTracker, FinishedEpisodes, collect_rollout, reset_where

# ----------------------------------------------------------------------------------------
# A deterministic counter env.
#   obs = [count]; step: count' = count + 1, reward = count', cost = 1 if count' in {2, 3},
#   done (termination) when count' == TERMINAL_COUNT. The action is only recorded.
# With EPISODE_LENGTH = 5 and the envs starting at counts [0, 2, 1]:
#   env 0: 1 2 3 4 5 -> truncated after 5 steps (count 5 is not terminal)
#   env 1: 3 4 5 6   -> terminated after 4 steps
#   env 2: 2 3 4 5 6 -> terminated after 5 steps: time limit and termination coincide,
#                        which counts as a termination (no truncation)
# ----------------------------------------------------------------------------------------
TERMINAL_COUNT = 6
EPISODE_LENGTH = 5
STARTS = [0.0, 2.0, 1.0]


class CounterEnv(Env):
    def reset(self, rng):
        zero = jnp.zeros((), jnp.float32)
        return State(
            pipeline_state=None,
            obs=jnp.zeros((1,), jnp.float32),
            reward=zero,
            done=zero,
            metrics={},
            info={"cost": zero, "count": zero, "last_action": jnp.zeros((1,), jnp.float32)},
        )

    def step(self, state, action):
        count = state.info["count"] + 1.0
        cost = ((count >= 2) & (count <= 3)).astype(jnp.float32)
        done = (count == TERMINAL_COUNT).astype(jnp.float32)
        return state.replace(
            obs=count[None],
            reward=count,
            done=done,
            info={"cost": cost, "count": count, "last_action": action},
        )

    @property
    def observation_size(self):
        return 1

    @property
    def action_size(self):
        return 1

    @property
    def backend(self):
        return "jax"


def counter_initial_state():
    env = CounterEnv()
    state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), len(STARTS)))
    starts = jnp.asarray(STARTS, jnp.float32)
    return state.replace(obs=starts[:, None], info={**state.info, "count": starts})


def counter_policy(observation, key):
    """action = count - 2 (outside [-1, 1] for some counts); log_prob = a draw from key."""
    action = observation - 2.0
    return action, jax.random.uniform(key, (observation.shape[0],))


@functools.partial(jax.jit, static_argnames=("unroll_length",))
def counter_rollout(state, initial_state, tracker, key, unroll_length):
    return collect_rollout(CounterEnv(), counter_policy, state, initial_state, tracker, key,
                           unroll_length, EPISODE_LENGTH)[:4]


# Counts seen by each env (columns) after each step (rows) over the first 7 steps and the
# 6 steps of the following rollout, worked out by hand from the rules above.
FIRST_NEXT_COUNTS = np.array([
    [1, 3, 2],
    [2, 4, 3],
    [3, 5, 4],
    [4, 6, 5],  # env 1 terminates (count 6, 4th step)
    [5, 3, 6],  # env 0 truncated (5 steps); env 2 terminates (count 6 at its 5th step)
    [1, 4, 2],
    [2, 5, 3],
], np.float32)
FIRST_OBS_COUNTS = np.array([
    [0, 2, 1],
    [1, 3, 2],
    [2, 4, 3],
    [3, 5, 4],
    [4, 2, 5],  # env 1 was reset to its start (2) after the termination
    [0, 3, 1],  # env 0 and env 2 reset to their starts (0, 1)
    [1, 4, 2],
], np.float32)
FIRST_TERMINATION = np.zeros((7, 3), np.float32)
FIRST_TERMINATION[3, 1] = FIRST_TERMINATION[4, 2] = 1
FIRST_EPISODE_END = FIRST_TERMINATION.copy()
FIRST_EPISODE_END[4, 0] = 1  # truncation: an episode end, not a termination

SECOND_NEXT_COUNTS = np.array([
    [3, 6, 4],  # env 1 terminates (its episode began in the first rollout)
    [4, 3, 5],
    [5, 4, 6],  # env 0 truncated (5 steps, 2 of them in the first rollout); env 2 terminates
    [1, 5, 2],
    [2, 6, 3],  # env 1 terminates again
    [3, 3, 4],
], np.float32)
SECOND_EPISODE_END = np.zeros((6, 3), np.float32)
SECOND_EPISODE_END[0, 1] = SECOND_EPISODE_END[2, 0] = SECOND_EPISODE_END[2, 2] = SECOND_EPISODE_END[4, 1] = 1
SECOND_TERMINATION = SECOND_EPISODE_END.copy()
SECOND_TERMINATION[2, 0] = 0


@pytest.fixture(scope="module")
def two_rollouts():
    initial = counter_initial_state()
    tracker = EpisodeTracker.zeros(3)
    first = counter_rollout(initial, initial, tracker, jax.random.PRNGKey(1), 7)
    second = counter_rollout(first[0], initial, first[1], jax.random.PRNGKey(2), 6)
    return initial, first, second


def test_counter_rollout_observations_are_true_pre_reset(two_rollouts):
    _, (state, _, transitions, _), _ = two_rollouts
    assert transitions.observation.shape == (7, 3, 1)
    np.testing.assert_array_equal(np.asarray(transitions.observation[..., 0]), FIRST_OBS_COUNTS)
    # next_observation keeps the true last observation at an episode end (5 for the
    # truncated env 0, 6 for the terminated envs), never the reset state's.
    np.testing.assert_array_equal(np.asarray(transitions.next_observation[..., 0]), FIRST_NEXT_COUNTS)
    # Outside episode ends, next_observation[t] is observation[t + 1].
    continuing = FIRST_EPISODE_END[:-1] == 0
    np.testing.assert_array_equal(
        np.asarray(transitions.next_observation[:-1, :, 0])[continuing],
        np.asarray(transitions.observation[1:, :, 0])[continuing],
    )
    # The env state after the rollout is the one after the last step (no end there).
    np.testing.assert_array_equal(np.asarray(state.obs[:, 0]), FIRST_NEXT_COUNTS[-1])
    np.testing.assert_array_equal(np.asarray(state.info["count"]), FIRST_NEXT_COUNTS[-1])


def test_counter_rollout_rewards_costs_actions(two_rollouts):
    _, (_, _, transitions, _), _ = two_rollouts
    np.testing.assert_array_equal(np.asarray(transitions.reward), FIRST_NEXT_COUNTS)
    expected_cost = ((FIRST_NEXT_COUNTS >= 2) & (FIRST_NEXT_COUNTS <= 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(transitions.cost), expected_cost)
    assert transitions.reward.dtype == jnp.float32 and transitions.cost.dtype == jnp.float32
    # The transition keeps the policy's action, which the env gets as it is.
    np.testing.assert_array_equal(np.asarray(transitions.action[..., 0]), FIRST_OBS_COUNTS - 2.0)
    # log_prob: one draw per step, each from its own key.
    log_probs = np.asarray(transitions.log_prob)
    assert log_probs.shape == (7, 3)
    assert len(np.unique(log_probs[:, 0])) == 7


def test_counter_rollout_env_receives_the_unclipped_action():
    """Envs clip where their originals do (v4 charges control cost on the raw action)."""
    initial = counter_initial_state()
    state, _, transitions, _ = counter_rollout(initial, initial, EpisodeTracker.zeros(3),
                                               jax.random.PRNGKey(1), 3)
    # The last step's action came from counts [2, 4, 3] -> [0, 2, 1], passed on as it is.
    np.testing.assert_array_equal(np.asarray(transitions.action[-1, :, 0]), [0.0, 2.0, 1.0])
    np.testing.assert_array_equal(np.asarray(state.info["last_action"][:, 0]), [0.0, 2.0, 1.0])


def test_counter_rollout_termination_vs_episode_end(two_rollouts):
    _, (_, _, first, _), (_, _, second, _) = two_rollouts
    np.testing.assert_array_equal(np.asarray(first.termination), FIRST_TERMINATION)
    np.testing.assert_array_equal(np.asarray(first.episode_end), FIRST_EPISODE_END)
    np.testing.assert_array_equal(np.asarray(second.termination), SECOND_TERMINATION)
    np.testing.assert_array_equal(np.asarray(second.episode_end), SECOND_EPISODE_END)
    np.testing.assert_array_equal(np.asarray(second.next_observation[..., 0]), SECOND_NEXT_COUNTS)


def test_counter_rollout_finished_episodes_by_hand(two_rollouts):
    _, (_, _, _, finished), _ = two_rollouts
    # First rollout: env 0: 1+2+3+4+5 = 15, cost 2 (counts 2, 3), length 5 (truncated)
    #                env 1: 3+4+5+6 = 18, cost 1 (count 3), length 4 (terminated)
    #                env 2: 2+3+4+5+6 = 20, cost 2 (counts 2, 3), length 5 (terminated)
    assert isinstance(finished, FinishedEpisodes)
    np.testing.assert_allclose(
        [float(finished.count), float(finished.return_sum), float(finished.cost_sum), float(finished.length_sum)],
        [3, 15 + 18 + 20, 2 + 1 + 2, 5 + 4 + 5],
    )


def test_counter_rollout_tracker_carries_over(two_rollouts):
    _, (_, tracker, _, _), (_, tracker2, _, finished2) = two_rollouts
    # After the first rollout the episodes in progress are:
    #   env 0: counts 1, 2 -> return 3, cost 1, length 2
    #   env 1: counts 3, 4, 5 -> return 12, cost 1, length 3
    #   env 2: counts 2, 3 -> return 5, cost 2, length 2
    np.testing.assert_allclose(np.asarray(tracker.episode_return), [3, 12, 5])
    np.testing.assert_allclose(np.asarray(tracker.episode_cost), [1, 1, 2])
    np.testing.assert_array_equal(np.asarray(tracker.length), [2, 3, 2])
    assert tracker.length.dtype == jnp.int32
    # Second rollout (the episodes above are finished in it, their first steps counted):
    #   env 0: 3+(3+4+5) = 15, cost 1+1 = 2, length 5 (truncated at its 3rd step here)
    #   env 1: 12+6 = 18, cost 1, length 4; then 3+4+5+6 = 18, cost 1, length 4
    #   env 2: 5+(4+5+6) = 20, cost 2, length 5
    np.testing.assert_allclose(
        [float(finished2.count), float(finished2.return_sum), float(finished2.cost_sum),
         float(finished2.length_sum)],
        [4, 15 + 18 + 18 + 20, 2 + 1 + 1 + 2, 5 + 4 + 4 + 5],
    )
    # In progress after the second rollout:
    #   env 0: counts 1, 2, 3 -> 6, cost 2, length 3; env 1: count 3 -> 3, cost 1, length 1;
    #   env 2: counts 2, 3, 4 -> 9, cost 2, length 3
    np.testing.assert_allclose(np.asarray(tracker2.episode_return), [6, 3, 9])
    np.testing.assert_allclose(np.asarray(tracker2.episode_cost), [2, 1, 2])
    np.testing.assert_array_equal(np.asarray(tracker2.length), [3, 1, 3])


def test_counter_rollout_split_equals_single(two_rollouts):
    """7 + 6 steps in two calls (tracker and state carried) equal 13 steps in one call."""
    initial, (_, _, first, finished1), (state2, tracker2, second, finished2) = two_rollouts
    state, tracker, whole, finished = counter_rollout(initial, initial, EpisodeTracker.zeros(3),
                                                      jax.random.PRNGKey(1), 13)
    for field in ("observation", "next_observation", "reward", "cost", "termination", "episode_end"):
        np.testing.assert_array_equal(
            np.asarray(getattr(whole, field)),
            np.concatenate([np.asarray(getattr(first, field)), np.asarray(getattr(second, field))]),
            err_msg=field,
        )
    for a, b, c in zip(finished, finished1, finished2):
        assert float(a) == float(b) + float(c)
    for a, b in zip(tracker, tracker2):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(state.obs), np.asarray(state2.obs))


def test_counter_rollout_fresh_tracker_loses_the_carried_part(two_rollouts):
    """Without the carried tracker, the episodes straddling the two rollouts come out shorter."""
    _, (state, _, _, _), (_, _, _, carried) = two_rollouts
    initial = counter_initial_state()
    _, _, _, fresh = counter_rollout(state, initial, EpisodeTracker.zeros(3), jax.random.PRNGKey(2), 6)
    # From counts [2, 5, 3] with every length reset to 0:
    #   env 0: 3 4 5 6 -> terminated at its 4th step (the carried tracker truncated it at 5
    #          instead): return 18, cost 1, length 4; then counts 1, 2
    #   env 1: 6 -> terminated, return 6, cost 0, length 1; then 3 4 5 6: 18, cost 1, length 4
    #   env 2: 4 5 6 -> terminated, return 15, cost 0, length 3
    np.testing.assert_allclose(
        [float(fresh.count), float(fresh.return_sum), float(fresh.cost_sum), float(fresh.length_sum)],
        [4, 18 + 6 + 18 + 15, 1 + 0 + 1 + 0, 4 + 1 + 4 + 3],
    )
    assert float(fresh.return_sum) != float(carried.return_sum)


def test_reset_where_selects_per_env():
    def state_of(seed_offset):
        r = np.random.default_rng(seed_offset)
        return State(
            pipeline_state={"q": jnp.asarray(r.normal(size=(4, 2, 3)), jnp.float32)},
            obs=jnp.asarray(r.normal(size=(4, 5)), jnp.float32),
            reward=jnp.asarray(r.normal(size=(4,)), jnp.float32),
            done=jnp.asarray(r.integers(0, 2, size=(4,)), jnp.float32),
            metrics={"m": jnp.asarray(r.normal(size=(4,)), jnp.float32)},
            info={"cost": jnp.asarray(r.normal(size=(4,)), jnp.float32),
                  "steps": jnp.asarray(r.integers(0, 9, size=(4,)), jnp.int32)},
        )

    initial, current = state_of(1), state_of(2)
    mask = np.array([True, False, False, True])
    out = jax.jit(reset_where)(jnp.asarray(mask), initial, current)
    for got, init_leaf, cur_leaf in zip(jax.tree.leaves(out), jax.tree.leaves(initial), jax.tree.leaves(current)):
        init_leaf, cur_leaf = np.asarray(init_leaf), np.asarray(cur_leaf)
        assert got.shape == cur_leaf.shape and got.dtype == cur_leaf.dtype
        for env in range(4):
            np.testing.assert_array_equal(np.asarray(got[env]), (init_leaf if mask[env] else cur_leaf)[env])
    # No env ended: unchanged; every env ended: the initial state.
    none = reset_where(jnp.zeros(4, bool), initial, current)
    every = reset_where(jnp.ones(4, bool), initial, current)
    for a, b in zip(jax.tree.leaves(none), jax.tree.leaves(current)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(every), jax.tree.leaves(initial)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_tracker_and_finished_zeros():
    tracker = EpisodeTracker.zeros(4)
    assert tracker.episode_return.shape == (4,) and tracker.length.dtype == jnp.int32
    assert all(float(x) == 0.0 for x in FinishedEpisodes.zeros())


# ----------------------------------------------------------------------------------------
# PointHazard
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env():
    return shapo_envs.make_env("PointHazard")


def hand_state(env, position, velocity=(0.0, 0.0)):
    state = env.reset(jax.random.PRNGKey(0))
    position = jnp.asarray(position, jnp.float32)
    velocity = jnp.asarray(velocity, jnp.float32)
    return state.replace(info={**state.info, "position": position, "velocity": velocity})


def test_point_hazard_registered():
    spec = shapo_envs.get_spec("PointHazard")
    assert spec.cost_limit == 2.0 and spec.episode_length == 60
    assert "PointHazard" in shapo_envs.list_envs()


def test_point_hazard_reset_vmap_jit(env):
    keys = jax.random.split(jax.random.PRNGKey(3), 16)
    state = jax.jit(jax.vmap(env.reset))(keys)
    assert state.obs.shape == (16, env.observation_size) == (16, 8)
    position = np.asarray(state.info["position"])
    assert position.shape == (16, 2)
    assert np.all(np.abs(position - np.asarray(ph.START)) <= ph.START_NOISE + 1e-6)
    assert len(np.unique(position[:, 0])) == 16  # different keys, different starts
    np.testing.assert_array_equal(np.asarray(state.info["velocity"]), 0.0)
    np.testing.assert_array_equal(np.asarray(state.info["cost"]), 0.0)
    np.testing.assert_array_equal(np.asarray(state.done), 0.0)
    obs = np.asarray(state.obs)
    np.testing.assert_allclose(obs[:, 0:2], position)
    np.testing.assert_allclose(obs[:, 2:4], 0.0)
    np.testing.assert_allclose(obs[:, 4:6], np.asarray(ph.GOAL) - position, rtol=1e-6)
    np.testing.assert_allclose(obs[:, 6:8], position - np.asarray(ph.HAZARD_CENTRE), rtol=1e-6)
    # Same key, same start (and eager == jit).
    np.testing.assert_array_equal(np.asarray(env.reset(keys[0]).obs), obs[0])


def reference_step(position, velocity, action):
    action = np.clip(action, -1.0, 1.0)
    velocity = 0.75 * velocity + 0.25 * 1.0 * action
    new_position = np.clip(position + 0.1 * velocity, -1.5, 1.5)
    goal = np.array([1.0, 0.0])
    before = np.linalg.norm(goal - position, axis=-1)
    after = np.linalg.norm(goal - new_position, axis=-1)
    reached = after < 0.1
    reward = 10.0 * (before - after) - 0.1 + 10.0 * reached
    cost = (np.linalg.norm(new_position, axis=-1) < 0.5).astype(float)
    return new_position, velocity, reward, cost, reached.astype(float)


def test_point_hazard_step_vmap_jit_matches_reference(env):
    rng = np.random.default_rng(0)
    n = 64
    keys = jax.random.split(jax.random.PRNGKey(4), n)
    state = jax.vmap(env.reset)(keys)
    position = rng.uniform(-1.6, 1.6, size=(n, 2)).astype(np.float32)
    position = np.clip(position, -1.5, 1.5)
    velocity = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    action = rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)
    state = state.replace(info={**state.info, "position": jnp.asarray(position), "velocity": jnp.asarray(velocity)})
    out = jax.jit(jax.vmap(env.step))(state, jnp.asarray(action))
    new_position, new_velocity, reward, cost, done = reference_step(
        position.astype(np.float64), velocity.astype(np.float64), action.astype(np.float64))
    np.testing.assert_allclose(np.asarray(out.info["position"]), new_position, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.info["velocity"]), new_velocity, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.reward), reward, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out.info["cost"]), cost)
    np.testing.assert_array_equal(np.asarray(out.done), done)
    assert out.reward.shape == (n,) and out.info["cost"].shape == (n,) and out.done.shape == (n,)
    assert out.reward.dtype == jnp.float32 and out.info["cost"].dtype == jnp.float32
    # Eager single-env step agrees with the jitted vmapped one.
    single = env.step(jax.tree.map(lambda x: x[0], state), jnp.asarray(action[0]))
    np.testing.assert_allclose(np.asarray(single.obs), np.asarray(out.obs[0]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "position,expected_cost",
    [
        ((0.0, 0.0), 1.0),
        ((0.49, 0.0), 1.0),
        ((0.0, -0.45), 1.0),
        ((0.3, 0.3), 1.0),    # |p| = 0.424
        ((0.51, 0.0), 0.0),
        ((0.0, -0.6), 0.0),
        ((0.4, 0.4), 0.0),    # |p| = 0.566
        ((-1.0, 0.0), 0.0),   # the start
    ],
)
def test_point_hazard_cost_inside_disc(env, position, expected_cost):
    # Zero velocity and zero action: the point stays where it was placed.
    state = hand_state(env, position)
    out = jax.jit(env.step)(state, jnp.zeros(2))
    np.testing.assert_allclose(np.asarray(out.info["position"]), position, atol=1e-7)
    assert float(out.info["cost"]) == expected_cost
    assert float(env.hazard_cost(jnp.asarray(position, jnp.float32))) == expected_cost
    # Outside the goal the reward is just the time penalty (no progress when standing still).
    assert float(out.done) == 0.0
    np.testing.assert_allclose(float(out.reward), -0.1, atol=1e-6)


def test_point_hazard_goal_bonus_and_done(env):
    # Standing at distance 0.05 from the goal: reward = 10*(0.05 - 0.05) - 0.1 + 10 = 9.9.
    out = env.step(hand_state(env, (0.95, 0.0)), jnp.zeros(2))
    assert float(out.done) == 1.0
    np.testing.assert_allclose(float(out.reward), 9.9, atol=1e-5)
    # Moving in: v' = 0.75*0.4 + 0.25*1 = 0.55, p' = 0.85 + 0.1*0.55 = 0.905 (distance 0.095):
    # reward = 10*(0.15 - 0.095) - 0.1 + 10 = 10.45.
    out = env.step(hand_state(env, (0.85, 0.0), (0.4, 0.0)), jnp.asarray([1.0, 0.0]))
    np.testing.assert_allclose(np.asarray(out.info["position"]), [0.905, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.info["velocity"]), [0.55, 0.0], atol=1e-6)
    assert float(out.done) == 1.0
    np.testing.assert_allclose(float(out.reward), 10.45, atol=1e-5)
    # Just outside the goal radius: no bonus, not done.
    # From 0.85 with v = 0.2: v' = 0.15 + 0.25 = 0.4, p' = 0.89 (distance 0.11):
    # reward = 10*(0.15 - 0.11) - 0.1 = 0.3.
    out = env.step(hand_state(env, (0.85, 0.0), (0.2, 0.0)), jnp.asarray([1.0, 0.0]))
    assert float(out.done) == 0.0
    np.testing.assert_allclose(float(out.reward), 0.3, atol=1e-5)


def test_point_hazard_walls_clip_position(env):
    # v' = 0.75*(1, -1) + 0.25*(1, -1) = (1, -1); p + 0.1 v' = (1.55, -1.55) -> clipped to +-1.5.
    out = env.step(hand_state(env, (1.45, -1.45), (1.0, -1.0)), jnp.asarray([1.0, -1.0]))
    np.testing.assert_allclose(np.asarray(out.info["position"]), [1.5, -1.5], atol=1e-7)
    np.testing.assert_allclose(np.asarray(out.obs[0:2]), [1.5, -1.5], atol=1e-7)
    np.testing.assert_allclose(np.asarray(out.obs[2:4]), [1.0, -1.0], atol=1e-7)
    # Pushing against the wall for many steps never leaves the arena; actions beyond
    # [-1, 1] act like +-1.
    state = hand_state(env, (0.0, 1.4))
    step = jax.jit(env.step)
    for _ in range(30):
        state = step(state, jnp.asarray([-5.0, 5.0]))
    position = np.asarray(state.info["position"])
    assert np.all(np.abs(position) <= 1.5)
    np.testing.assert_allclose(position[1], 1.5)
    clipped = env.step(hand_state(env, (0.2, 0.7), (0.3, 0.1)), jnp.asarray([5.0, -5.0]))
    unit = env.step(hand_state(env, (0.2, 0.7), (0.3, 0.1)), jnp.asarray([1.0, -1.0]))
    np.testing.assert_array_equal(np.asarray(clipped.obs), np.asarray(unit.obs))


def test_point_hazard_in_collect_rollout(env):
    """PointHazard runs unwrapped in collect_rollout; costs and done follow its state."""
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    initial = jax.vmap(env.reset)(keys)
    policy = lambda obs, key: (jnp.tile(jnp.asarray([[1.0, 0.0]]), (obs.shape[0], 1)), jnp.zeros(obs.shape[0]))
    rollout = jax.jit(lambda s, t, k: collect_rollout(env, policy, s, initial, t, k, 12, 10))
    _, tracker, transitions, finished = rollout(initial, EpisodeTracker.zeros(4), jax.random.PRNGKey(6))[:4]
    # Full throttle to the right for 10 steps from x ~ -1: no termination, truncation at step 10.
    np.testing.assert_array_equal(np.asarray(transitions.termination), 0.0)
    np.testing.assert_array_equal(np.asarray(transitions.episode_end[9]), 1.0)
    assert float(finished.count) == 4 and float(finished.length_sum) == 40
    np.testing.assert_array_equal(np.asarray(tracker.length), 2)
    # The cost recorded is the hazard cost of the next observation's position.
    positions = np.asarray(transitions.next_observation[..., 0:2])
    np.testing.assert_array_equal(np.asarray(transitions.cost),
                                  (np.linalg.norm(positions, axis=-1) < 0.5).astype(np.float32))
    np.testing.assert_allclose(float(finished.cost_sum), np.asarray(transitions.cost[:10]).sum())
    # After the truncation every env is back at its initial state.
    np.testing.assert_array_equal(np.asarray(transitions.observation[10]), np.asarray(initial.obs))
