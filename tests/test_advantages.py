"""Tests for shapo_jax.advantages: GAE with terminations vs truncations, standardize, center."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapo_jax.advantages import center, generalized_advantage_estimation, standardize

T, N = 17, 5


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Slow float64 GAE, one env at a time, walking backwards through time.

    terminated step: delta = r - V(s), and the advantage does not carry over from t+1.
    truncated step:  delta = r + gamma V(s'_t) - V(s) (bootstrap from the true last
                     observation), and the advantage does not carry over from t+1.
    ordinary step:   delta = r + gamma V(s'_t) - V(s), A_t = delta + gamma lam A_{t+1}.
    The last step of the rollout has no A_{T} to carry (it is 0).
    """
    rewards, values, next_values = (np.asarray(a, np.float64) for a in (rewards, values, next_values))
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for n in range(envs):
        following = 0.0  # A_{t+1} of the same episode, 0 past an episode end / rollout end
        for t in range(steps - 1, -1, -1):
            if terminated[t, n]:
                delta = rewards[t, n] - values[t, n]
                advantage = delta
            elif truncated[t, n]:
                delta = rewards[t, n] + gamma * next_values[t, n] - values[t, n]
                advantage = delta
            else:
                delta = rewards[t, n] + gamma * next_values[t, n] - values[t, n]
                advantage = delta + gamma * lam * following
            advantages[t, n] = advantage
            following = advantage
    return advantages


def random_rollout(seed, steps=T, envs=N):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(steps, envs))
    values = rng.normal(size=(steps, envs))
    next_values = rng.normal(size=(steps, envs))
    terminated = rng.random((steps, envs)) < 0.15
    truncated = (rng.random((steps, envs)) < 0.15) & ~terminated
    # Make sure each kind occurs, incl. at the first and the last step.
    terminated[0, 0] = True
    truncated[0, 0] = False
    truncated[steps - 1, 1] = True
    terminated[steps - 1, 1] = False
    terminated[steps - 1, 2] = True
    truncated[steps - 1, 2] = False
    truncated[5, 3] = True
    terminated[5, 3] = False
    return rewards, values, next_values, terminated, truncated


def run_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    episode_end = terminated | truncated
    return generalized_advantage_estimation(
        f32(rewards), f32(values), f32(next_values), f32(terminated), f32(episode_end), gamma, lam
    )


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (0.97, 1.0), (0.5, 0.7), (1.0, 1.0), (0.0, 0.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_loop_reference(seed, gamma, lam):
    rollout = random_rollout(seed)
    rewards, values, next_values, terminated, truncated = rollout
    assert terminated.any() and truncated.any() and not (terminated & truncated).any()
    advantages, targets = run_gae(*rollout, gamma, lam)
    expected = reference_gae(*rollout, gamma, lam)
    assert advantages.shape == (T, N) and targets.shape == (T, N)
    np.testing.assert_allclose(np.asarray(advantages), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(targets), expected + values, rtol=1e-5, atol=1e-5)


def test_gae_terminations_and_truncations_are_not_interchangeable():
    """Swapping the kind of an episode end changes exactly the bootstrap of that step."""
    rewards, values, next_values, terminated, truncated = random_rollout(3)
    as_given, _ = run_gae(rewards, values, next_values, terminated, truncated, 0.9, 0.8)
    all_truncated, _ = run_gae(rewards, values, next_values, np.zeros_like(terminated),
                               terminated | truncated, 0.9, 0.8)
    t, n = 0, 0  # a termination (see random_rollout)
    # At a truncation the step bootstraps from V(s'_t); at a termination it does not.
    assert np.isclose(float(all_truncated[t, n] - as_given[t, n]), 0.9 * next_values[t, n], atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(all_truncated),
        reference_gae(rewards, values, next_values, np.zeros_like(terminated), terminated | truncated, 0.9, 0.8),
        rtol=1e-5, atol=1e-5,
    )


def test_gae_lambda_zero_is_one_step_td_and_lambda_one_is_discounted_return():
    rewards, values, next_values, terminated, truncated = random_rollout(4)
    gamma = 0.9
    advantages, _ = run_gae(rewards, values, next_values, terminated, truncated, gamma, 0.0)
    td = rewards + gamma * (1 - terminated) * next_values - values
    np.testing.assert_allclose(np.asarray(advantages), td, rtol=1e-5, atol=1e-5)

    # lambda = 1, computed forwards: discounted rewards up to the episode/rollout end,
    # plus the discounted bootstrap V(s') unless the segment ended in a termination.
    # (The sum telescopes only when V(s'_t) = V(s_{t+1}) inside an episode, as in a real
    # rollout, so make the values consistent first.)
    episode_end = terminated | truncated
    next_values = next_values.copy()
    next_values[:-1] = np.where(episode_end[:-1], next_values[:-1], values[1:])
    advantages, _ = run_gae(rewards, values, next_values, terminated, truncated, gamma, 1.0)
    expected = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, discount, k = 0.0, 1.0, t
            while True:
                total += discount * rewards[k, n]
                if terminated[k, n]:
                    break
                if truncated[k, n] or k == T - 1:
                    total += discount * gamma * next_values[k, n]
                    break
                discount *= gamma
                k += 1
            expected[t, n] = total - values[t, n]
    np.testing.assert_allclose(np.asarray(advantages), expected, rtol=1e-5, atol=1e-5)


# Hand-computed T=3, one env: r = [1, 2, 3], V(s) = [0.5, 1.0, 1.5], V(s') = [1.0, 1.5, 2.0],
# gamma = 0.9, lambda = 0.5, so gamma * lambda = 0.45.
#   deltas without episode ends: d0 = 1 + 0.9*1.0 - 0.5 = 1.4
#                                d1 = 2 + 0.9*1.5 - 1.0 = 2.35
#                                d2 = 3 + 0.9*2.0 - 1.5 = 3.3
# (a) no episode end:   A2 = 3.3, A1 = 2.35 + 0.45*3.3 = 3.835, A0 = 1.4 + 0.45*3.835 = 3.12575
# (b) terminated at 1:  d1 = 2 - 1.0 = 1.0; A2 = 3.3, A1 = 1.0 (no carry), A0 = 1.4 + 0.45*1.0 = 1.85
# (c) truncated at 1:   d1 = 2.35 (bootstrapped); A2 = 3.3, A1 = 2.35 (no carry), A0 = 1.4 + 0.45*2.35 = 2.4575
HAND_R = [1.0, 2.0, 3.0]
HAND_V = [0.5, 1.0, 1.5]
HAND_NEXT_V = [1.0, 1.5, 2.0]


@pytest.mark.parametrize(
    "terminated,episode_end,expected",
    [
        ([0, 0, 0], [0, 0, 0], [3.12575, 3.835, 3.3]),
        ([0, 1, 0], [0, 1, 0], [1.85, 1.0, 3.3]),
        ([0, 0, 0], [0, 1, 0], [2.4575, 2.35, 3.3]),
    ],
    ids=["no-end", "terminated", "truncated"],
)
def test_gae_hand_computed(terminated, episode_end, expected):
    f = lambda a: jnp.asarray(a, jnp.float32)
    advantages, targets = generalized_advantage_estimation(
        f(HAND_R), f(HAND_V), f(HAND_NEXT_V), f(terminated), f(episode_end), 0.9, 0.5
    )
    np.testing.assert_allclose(np.asarray(advantages), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(targets), np.asarray(expected) + np.asarray(HAND_V), rtol=1e-6)


def test_gae_hand_computed_terminated_last_step():
    # Terminated at the last step: A2 = 3 - 1.5 = 1.5, A1 = 2.35 + 0.45*1.5 = 3.025,
    # A0 = 1.4 + 0.45*3.025 = 2.76125.
    f = lambda a: jnp.asarray(a, jnp.float32)
    advantages, _ = generalized_advantage_estimation(
        f(HAND_R), f(HAND_V), f(HAND_NEXT_V), f([0, 0, 1]), f([0, 0, 1]), 0.9, 0.5
    )
    np.testing.assert_allclose(np.asarray(advantages), [2.76125, 3.025, 1.5], rtol=1e-6)


def test_gae_jit_and_vmap_consistent():
    rewards, values, next_values, terminated, truncated = random_rollout(5)
    args = tuple(jnp.asarray(a, jnp.float32) for a in (rewards, values, next_values, terminated,
                                                         terminated | truncated))
    eager = generalized_advantage_estimation(*args, 0.95, 0.9)
    jitted = jax.jit(generalized_advantage_estimation)(*args, 0.95, 0.9)
    # vmap over the env axis: each env's [T] rollout on its own.
    per_env = jax.vmap(generalized_advantage_estimation, in_axes=(1, 1, 1, 1, 1, None, None), out_axes=1)(
        *args, 0.95, 0.9
    )
    for got in (jitted, per_env):
        np.testing.assert_allclose(np.asarray(got[0]), np.asarray(eager[0]), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(got[1]), np.asarray(eager[1]), rtol=1e-6, atol=1e-6)
    # vmap over a batch of (gamma, lambda) pairs matches the loop reference for each.
    gammas = jnp.asarray([0.9, 0.99, 0.5])
    lambdas = jnp.asarray([0.0, 0.95, 1.0])
    batched, _ = jax.jit(jax.vmap(generalized_advantage_estimation, in_axes=(None,) * 5 + (0, 0)))(
        *args, gammas, lambdas
    )
    for i in range(3):
        expected = reference_gae(rewards, values, next_values, terminated, truncated,
                                 float(gammas[i]), float(lambdas[i]))
        np.testing.assert_allclose(np.asarray(batched[i]), expected, rtol=1e-5, atol=1e-5)


def test_gae_trailing_axes():
    """Leading axis is time; any trailing shape (e.g. [T, seeds, envs]) is elementwise."""
    rng = np.random.default_rng(6)
    shape = (T, 2, 3)
    rewards, values, next_values = (rng.normal(size=shape) for _ in range(3))
    terminated = rng.random(shape) < 0.2
    truncated = (rng.random(shape) < 0.2) & ~terminated
    advantages, _ = run_gae(rewards, values, next_values, terminated, truncated, 0.99, 0.95)
    flat = lambda a: a.reshape(T, -1)
    expected = reference_gae(flat(rewards), flat(values), flat(next_values), flat(terminated),
                             flat(truncated), 0.99, 0.95)
    np.testing.assert_allclose(np.asarray(advantages).reshape(T, -1), expected, rtol=1e-5, atol=1e-5)


def test_standardize():
    rng = np.random.default_rng(7)
    x = rng.normal(loc=3.0, scale=5.0, size=(T, N)).astype(np.float32)
    y = np.asarray(standardize(jnp.asarray(x)))
    assert y.shape == x.shape
    assert abs(y.mean()) < 1e-5
    assert abs(y.std() - 1.0) < 1e-4
    np.testing.assert_allclose(y, (x - x.mean()) / x.std(), rtol=1e-4, atol=1e-5)
    # A constant input has std 0: eps keeps the result finite (zeros), not NaN.
    constant = np.asarray(standardize(jnp.full((4, 3), 2.5)))
    assert np.all(np.isfinite(constant))
    np.testing.assert_allclose(constant, 0.0, atol=1e-6)


def test_center():
    rng = np.random.default_rng(8)
    x = rng.normal(loc=-2.0, scale=3.0, size=(T, N)).astype(np.float32)
    y = np.asarray(center(jnp.asarray(x)))
    assert abs(y.mean()) < 1e-5
    np.testing.assert_allclose(y, x - x.mean(dtype=np.float64), rtol=1e-5, atol=1e-5)
    # Centred, not scaled: the spread is unchanged.
    np.testing.assert_allclose(y.std(), x.std(), rtol=1e-5)
