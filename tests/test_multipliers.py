"""Tests for shapo_jax.multipliers and shapo_jax.algorithms.get_algorithm."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapo_jax.algorithms import get_algorithm
from shapo_jax.config import TrainConfig
from shapo_jax.multipliers import LagrangeState, lagrange_init, lagrange_update, lagrangian_advantage


def reference_lagrange(initial, costs, cost_limit, lr, b1=0.9, b2=0.999, eps=1e-8):
    """float64 Adam (torch / optax defaults, bias-corrected) on loss = -lambda (J_c - limit),
    followed by lambda <- max(lambda, 0) after every step (SafePO's clamp_(0)); the moments
    are not touched by the projection."""
    lam, m, v = float(initial), 0.0, 0.0
    out = []
    for t, cost in enumerate(costs, start=1):
        grad = -(cost - cost_limit)  # d/d lambda of -lambda (J_c - limit)
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        lam = lam - lr * m_hat / (np.sqrt(v_hat) + eps)
        lam = max(lam, 0.0)
        out.append(lam)
    return np.asarray(out)


COST_LIMIT = 2.0
LR = 0.035
# Violated (5 > 2) for 6 updates, then satisfied (0 < 2) for 40.
COSTS = [5.0] * 6 + [0.0] * 40


def run_updates(costs, initial=0.001, cost_limit=COST_LIMIT, lr=LR, jit=False):
    state = lagrange_init(initial, lr)
    update = jax.jit(lagrange_update, static_argnums=(2, 3)) if jit else lagrange_update
    out = []
    for cost in costs:
        state = update(state, jnp.asarray(cost, jnp.float32), cost_limit, lr)
        out.append(float(state.multiplier))
    return np.asarray(out), state


@pytest.mark.parametrize("jit", [False, True])
def test_lagrange_update_matches_adam_reference(jit):
    got, state = run_updates(COSTS, jit=jit)
    expected = reference_lagrange(0.001, COSTS, COST_LIMIT, LR)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert isinstance(state, LagrangeState)
    assert state.multiplier.dtype == jnp.float32 and state.multiplier.shape == ()

    # Shape of the trajectory: up while violated, then down, clamped at exactly 0.
    violated = got[:6]
    assert np.all(np.diff(np.concatenate([[0.001], violated])) > 0)
    # Adam's first step moves by ~lr whatever the gradient's size.
    np.testing.assert_allclose(got[0], 0.001 + LR, rtol=1e-4)
    peak = int(np.argmax(got))
    assert got[peak] > 0.15
    assert np.all(np.diff(got[peak:]) <= 0)
    assert got[-1] == 0.0
    first_zero = int(np.argmax(got == 0.0))
    assert first_zero > peak and np.all(got[first_zero:] == 0.0)


def test_lagrange_multiplier_never_negative_and_rises_again():
    costs = [0.0] * 5 + [10.0] * 5
    got, _ = run_updates(costs, initial=0.05)
    expected = reference_lagrange(0.05, costs, COST_LIMIT, LR)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.all(got >= 0.0)
    assert got[4] == 0.0  # clamped while satisfied
    # Moments were not reset by the clamp: the first violated steps only undo the momentum,
    # so lambda rises later than a fresh optimizer would, but it does rise.
    assert got[-1] > 0.0


def test_lagrange_update_satisfied_exactly_keeps_lambda():
    got, _ = run_updates([COST_LIMIT] * 3, initial=0.3)
    np.testing.assert_allclose(got, 0.3, rtol=1e-6)


def test_lagrange_init():
    state = lagrange_init(0.25, 0.01)
    assert float(state.multiplier) == 0.25 and state.multiplier.dtype == jnp.float32


@pytest.mark.parametrize("multiplier", [0.0, 0.5, 3.0])
def test_lagrangian_advantage_formula(multiplier):
    rng = np.random.default_rng(0)
    reward = rng.normal(size=(7, 3)).astype(np.float32)
    cost = rng.normal(size=(7, 3)).astype(np.float32)
    got = np.asarray(lagrangian_advantage(jnp.asarray(reward), jnp.asarray(cost), jnp.asarray(multiplier)))
    expected = (reward.astype(np.float64) - multiplier * cost) / (1.0 + multiplier)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    if multiplier == 0.0:
        np.testing.assert_array_equal(got, reward)


def test_lagrangian_advantage_large_multiplier_tends_to_minus_cost():
    reward, cost = jnp.asarray([1.0, -2.0]), jnp.asarray([0.5, 3.0])
    got = np.asarray(lagrangian_advantage(reward, cost, jnp.asarray(1e6)))
    np.testing.assert_allclose(got, -np.asarray(cost), rtol=1e-4, atol=1e-5)


CONFIG = TrainConfig(env="PointHazard", num_envs=8, unroll_length=16, num_minibatches=2, total_steps=256)


def test_get_algorithm_ppo_ignores_the_cost():
    ppo = get_algorithm("ppo")
    assert ppo.name == "ppo"
    state = ppo.multiplier.init(CONFIG)
    assert float(state.multiplier) == 0.0
    for cost in (100.0, 0.0, 50.0):
        state = ppo.multiplier.update(state, jnp.asarray(cost), 2.0, CONFIG)
        assert float(state.multiplier) == 0.0
    rng = np.random.default_rng(1)
    reward, cost = rng.normal(size=(2, 5, 4)).astype(np.float32)
    combined = ppo.objective(jnp.asarray(reward), jnp.asarray(cost), jnp.asarray(0.7), 5.0, 2.0, CONFIG)
    np.testing.assert_array_equal(np.asarray(combined), reward)


def test_get_algorithm_ppo_lag_uses_the_lagrange_rule():
    lag = get_algorithm("ppo_lag")
    assert lag.name == "ppo_lag"
    config = dataclasses.replace(CONFIG, multiplier_init=0.02, multiplier_learning_rate=0.1)
    state = lag.multiplier.init(config)
    assert float(state.multiplier) == pytest.approx(0.02)
    costs = [8.0, 8.0, 0.0]
    got = []
    for cost in costs:
        state = lag.multiplier.update(state, jnp.asarray(cost), 2.0, config)
        got.append(float(state.multiplier))
    np.testing.assert_allclose(got, reference_lagrange(0.02, costs, 2.0, 0.1), rtol=1e-5, atol=1e-6)
    reward, cost = jnp.asarray([1.0, 2.0]), jnp.asarray([4.0, -1.0])
    np.testing.assert_allclose(
        np.asarray(lag.objective(reward, cost, jnp.asarray(0.5), 5.0, 2.0, config)),
        [(1.0 - 2.0) / 1.5, (2.0 + 0.5) / 1.5], rtol=1e-6,
    )


def test_get_algorithm_unknown_names_valid_ones():
    with pytest.raises(ValueError) as info:
        get_algorithm("trpo")  # the paper's algorithms are trpo_lag / trpo_pid
    message = str(info.value)
    assert "trpo" in message and "ppo" in message and "ppo_lag" in message


def reference_pid(costs, limit, kp, ki, kd, initial, d_delay, alpha=0.95):
    """SafePO's PIDLagrangian written out with a Python deque, plus the paper's 0.001 quirk."""
    import collections

    integral, proportional, cost_ema = initial, 0.0, 0.0
    history = collections.deque([0.0], maxlen=d_delay)
    out = []
    for cost in costs:
        delta = cost - limit
        integral = max(0.0, integral + delta * ki)
        proportional = alpha * proportional + (1 - alpha) * delta
        cost_ema = alpha * cost_ema + (1 - alpha) * cost
        derivative = max(0.0, cost_ema - history[0])
        output = kp * proportional + integral + kd * derivative
        multiplier = max(0.0, output)
        if output < 0 and delta > 0:
            multiplier = initial
        history.append(cost_ema)
        out.append(multiplier)
    return out


def test_pid_multiplier_follows_its_recurrence():
    from shapo_jax.multipliers import pid_init, pid_update

    costs = [30.0, 40.0, 35.0, 20.0, 5.0, 0.0, 0.0, 12.0, 50.0, 3.0, 0.0, 0.0, 0.0, 25.0, 26.0]
    expected = reference_pid(costs, 10.0, kp=0.1, ki=0.01, kd=0.01, initial=0.001, d_delay=4)
    state = pid_init(0.001, 4)
    update = jax.jit(pid_update, static_argnums=(2, 3, 4, 5))
    got = []
    for cost in costs:
        state = update(state, jnp.asarray(cost), 10.0, 0.1, 0.01, 0.01)
        got.append(float(state.multiplier))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert max(got) > 0.5 and got[6] < got[2], "rises under violation, falls once satisfied"


def test_pid_quirk_sets_the_initial_multiplier_when_output_is_negative_under_violation():
    from shapo_jax.multipliers import pid_init, pid_update

    state = pid_init(0.001, 10)._replace(integral=jnp.asarray(0.0), proportional=jnp.asarray(-50.0))
    state = pid_update(state, jnp.asarray(11.0), 10.0, 0.1, 0.01, 0.01)
    assert float(state.multiplier) == pytest.approx(0.001)


def test_crpo_switches_objective_on_the_episode_cost():
    crpo = get_algorithm("crpo")
    reward, cost = jnp.asarray([1.0, 2.0]), jnp.asarray([4.0, -1.0])
    config = dataclasses.replace(CONFIG, crpo_distance=1.0)
    np.testing.assert_array_equal(np.asarray(crpo.objective(reward, cost, 0.0, 12.0, 10.0, config)), -np.asarray(cost))
    np.testing.assert_array_equal(np.asarray(crpo.objective(reward, cost, 0.0, 10.5, 10.0, config)), np.asarray(reward))
