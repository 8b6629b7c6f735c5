"""Several constraints (issue 14 item 1): a task's cost with a trailing axis of m.

One multiplier per constraint, the Lagrangian advantage (A_r - sum_i lambda_i A_c,i) /
(1 + sum_i lambda_i), GAE per constraint, CRPO on the most violated constraint, per-constraint
metrics, and one-line errors for limits that do not fit the task. With m = 1 every algorithm
is unchanged bit for bit: ``test_algorithm_regression.py`` pins that.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env

import shapo_envs
from shapo_envs.registry import EnvCostError
from shapo_jax import TrainConfig, cli, make_train, multipliers, seed_keys
from shapo_jax import train as trainer_module
from shapo_jax.algorithms import get_algorithm
from shapo_jax.config import ConfigError, resolve, validate
from shapo_jax.rollout import CostWindow, append_constraint_costs, append_episode_costs

TINY = dict(env="PointHazard2", num_envs=8, unroll_length=16, num_minibatches=2, update_epochs=2,
            total_steps=8 * 16 * 2)
LIMITS = shapo_envs.get_spec("PointHazard2").cost_limit


# --- The registry -------------------------------------------------------------------------


class VectorCostEnv(Env):
    """A one-state env whose cost has ``cost_size`` entries (None: a scalar cost)."""

    def __init__(self, cost_size=None):
        self._shape = () if cost_size is None else (cost_size,)

    observation_size = property(lambda self: 2)
    action_size = property(lambda self: 1)
    backend = property(lambda self: "jax")

    def reset(self, rng):
        from brax.envs.base import State

        zero = jnp.zeros(())
        return State(None, jnp.zeros(2), zero, zero, {}, {"cost": jnp.zeros(self._shape)})

    def step(self, state, action):
        return state.replace(info={"cost": jnp.ones(self._shape)})


@pytest.fixture
def registered():
    names = []

    def register(name, cost_size, cost_limit):
        shapo_envs.register(name, lambda: VectorCostEnv(cost_size), cost_limit=cost_limit, overwrite=True)
        names.append(name)
        return name

    yield register
    for name in names:
        shapo_envs.registry._REGISTRY.pop(name, None)
        shapo_envs.registry._CHECKED.discard(name)


def test_register_takes_one_limit_or_one_per_constraint():
    assert shapo_envs.get_spec("PointHazard2").cost_limit == (2.0, 1.0)
    assert shapo_envs.get_spec("PointHazard2").num_constraints == 2
    assert shapo_envs.get_spec("PointHazard").num_constraints == 1
    assert isinstance(shapo_envs.get_spec("PointHazard").cost_limit, float)


@pytest.mark.parametrize("limit", [(1.0, -2.0), -1.0, (), (1.0, float("nan"))])
def test_register_rejects_a_bad_limit_in_one_line(limit):
    with pytest.raises(ValueError) as error:
        shapo_envs.register("BadLimits", lambda: VectorCostEnv(2), cost_limit=limit)
    assert "cost_limit of 'BadLimits'" in str(error.value) and "\n" not in str(error.value)
    assert "BadLimits" not in shapo_envs.list_envs()


def test_make_env_accepts_a_cost_with_one_entry_per_limit(registered):
    env = shapo_envs.make_env(registered("TwoCosts", 2, (1.0, 3.0)))
    assert env.reset(jax.random.PRNGKey(0)).info["cost"].shape == (2,)
    shapo_envs.make_env(registered("OneCost", None, 5.0))


@pytest.mark.parametrize("cost_size,limits,expected", [
    (3, (1.0, 2.0), "(2,)"),  # a cost of 3 entries, 2 limits
    (None, (1.0, 2.0), "(2,)"),  # a scalar cost, 2 limits
    (2, 1.0, "the reward's shape is ()"),  # a cost of 2 entries, one limit
])
def test_make_env_rejects_a_cost_that_does_not_fit_the_limits(registered, cost_size, limits, expected):
    name = registered("MisfitCost", cost_size, limits)
    with pytest.raises(EnvCostError) as error:
        shapo_envs.make_env(name)
    message = str(error.value)
    assert "'MisfitCost'" in message and expected in message and "\n" not in message


# --- Limits from the command line ----------------------------------------------------------


def limit_of(**fields):
    return resolve(TrainConfig(**fields)).cost_limit


def test_limits_resolve_per_task():
    assert limit_of(env="PointHazard2") == LIMITS
    assert limit_of(env="PointHazard2", cost_limit=(5.0, 15.0)) == (5.0, 15.0)
    assert limit_of(env="PointHazard2", cost_limit=4.0) == (4.0, 4.0)  # one value: every constraint
    assert limit_of(env="PointHazard2", cost_limit=[5.0, 15.0]) == (5.0, 15.0)  # as config.json holds it
    assert limit_of(env="PointHazard", cost_limit=3.0) == 3.0 and isinstance(limit_of(env="PointHazard"), float)


@pytest.mark.parametrize("fields,flag", [
    (dict(env="PointHazard", cost_limit=(5.0, 15.0)), "--cost-limit"),  # 2 limits for a scalar cost
    (dict(env="PointHazard2", cost_limit=(1.0, 2.0, 3.0)), "--cost-limit"),  # 3 limits for 2 constraints
    (dict(env="PointHazard2", algo="cpo"), "--algo"),  # CPO's dual solve has one constraint
])
def test_limits_that_do_not_fit_the_task_fail_naming_the_flag(fields, flag):
    with pytest.raises(ConfigError) as error:
        limit_of(**fields)
    assert error.value.flag == flag and "\n" not in str(error.value)


@pytest.mark.parametrize("limit", [(5.0, -1.0), (float("inf"), 1.0), ()])
def test_negative_or_non_finite_limits_fail_validation(limit):
    with pytest.raises(ConfigError) as error:
        validate(TrainConfig(env="PointHazard2", cost_limit=limit))
    assert error.value.flag == "--cost-limit"


def test_cost_limit_flag_takes_comma_separated_values():
    assert cli.parse_flags(["--cost-limit", "5,15"]).cost_limit == (5.0, 15.0)
    assert cli.parse_flags(["--cost-limit", "7"]).cost_limit == 7.0
    assert cli.parse_flags(["--cost-limit=2.5,0"]).cost_limit == (2.5, 0.0)
    assert cli.parse_flags([]).cost_limit is None
    with pytest.raises(ConfigError) as error:
        cli.parse_flags(["--cost-limit", "5,x"])
    assert error.value.flag == "--cost-limit" and "5,x" in str(error.value)


CLI_BASE = ["--num-envs", "8", "--unroll-length", "16", "--num-minibatches", "2", "--total-steps", "256",
            "--no-progress", "--no-compilation-cache"]


@pytest.mark.parametrize("argv,flag", [
    (["--env", "PointHazard", "--cost-limit", "5,15"], "--cost-limit"),
    (["--env", "PointHazard2", "--cost-limit", "1,2,3"], "--cost-limit"),
    (["--env", "PointHazard2", "--cost-limit", "5,-1"], "--cost-limit"),
    (["--env", "PointHazard2", "--algo", "cpo"], "--algo"),
])
def test_cli_fails_in_one_line_before_compiling(monkeypatch, capsys, argv, flag):
    def no_compiling(config):
        raise AssertionError("compiled before the error")

    monkeypatch.setattr("shapo_jax.train.make_trainer", no_compiling)
    assert cli.main(CLI_BASE + argv) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.err.startswith(f"shapo-train: error: {flag}: ") and captured.err.count("\n") == 1


def test_config_json_records_the_limits_as_a_list():
    config = TrainConfig(env="PointHazard2", cost_limit=4.0)
    resolved = cli.resolved_config(resolve(config))
    assert json.loads(json.dumps(resolved))["cost_limit"] == [4.0, 4.0]
    assert cli.resolved_config(resolve(TrainConfig(env="PointHazard")))["cost_limit"] == 2.0


# --- The pieces against references ----------------------------------------------------------


def test_lagrangian_advantage_of_m_constraints_matches_numpy():
    rng = np.random.default_rng(0)
    reward, cost = rng.normal(size=(5, 4)), rng.normal(size=(5, 4, 3))
    multiplier = np.array([0.5, 0.0, 2.0])
    expected = np.empty_like(reward)
    for index in np.ndindex(reward.shape):
        penalty = sum(multiplier[i] * cost[index + (i,)] for i in range(3))
        expected[index] = (reward[index] - penalty) / (1.0 + multiplier.sum())
    actual = multipliers.lagrangian_advantage(jnp.asarray(reward), jnp.asarray(cost), jnp.asarray(multiplier))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    one = multipliers.lagrangian_advantage(jnp.asarray(reward), jnp.asarray(cost[..., :1]), jnp.asarray(multiplier[:1]))
    np.testing.assert_allclose(one, multipliers.lagrangian_advantage(reward, cost[..., 0], 0.5), rtol=1e-5, atol=1e-6)


def numpy_gae(rewards, values, next_values, terminations, episode_ends, gamma, lam):
    advantages, next_advantage = np.zeros_like(rewards), 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1 - terminations[t]) * next_values[t] - values[t]
        next_advantage = delta + gamma * lam * (1 - episode_ends[t]) * next_advantage
        advantages[t] = next_advantage
    return advantages


@pytest.fixture(scope="module")
def rollout_of_two_constraints():
    """The trainer's pieces, initial state and one collected rollout on PointHazard2 (with
    episode ends inside it: 16 steps of episodes cut at 5)."""
    config = TrainConfig(**TINY, episode_length=5, gamma=0.9, gae_lambda=0.8)
    pieces = trainer_module.make_pieces(config)
    state = trainer_module.init(pieces, seed_keys(1, 1)[0])
    collected = trainer_module.collect(pieces, state, jax.random.PRNGKey(3))
    return pieces, state, collected


def test_cost_gae_runs_per_constraint_with_its_own_critic(rollout_of_two_constraints):
    pieces, state, collected = rollout_of_two_constraints
    transitions = collected.transitions
    assert transitions.cost.shape == (16, 8, 2) and np.asarray(transitions.episode_end).sum() > 0
    estimates = trainer_module.advantages(pieces, state.learner, transitions)
    assert estimates.cost_advantage.shape == (16, 8, 2)
    config = pieces.config
    observation = trainer_module.normalize(pieces, state.learner.normalizer, transitions.observation)
    next_observation = trainer_module.normalize(pieces, state.learner.normalizer, transitions.next_observation)
    for i in range(2):
        params = jax.tree.map(lambda leaf: leaf[i], state.learner.critic_params["cost"])  # critic i alone
        values = np.asarray(pieces.critic.apply(params, observation))
        next_values = np.asarray(pieces.critic.apply(params, next_observation))
        expected = numpy_gae(np.asarray(transitions.cost[..., i]), values, next_values, np.asarray(transitions.termination),
                             np.asarray(transitions.episode_end), config.gamma, config.gae_lambda)
        np.testing.assert_allclose(estimates.cost_advantage[..., i], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(estimates.cost_target[..., i], expected + values, rtol=1e-5, atol=1e-5)


def test_episode_costs_are_summed_per_constraint(rollout_of_two_constraints):
    pieces, state, collected = rollout_of_two_constraints
    transitions, finished = collected.transitions, collected.finished
    episodes, _ = trainer_module.episode_statistics(pieces, state.episodes, collected)
    np.testing.assert_allclose(episodes.total_cost, np.asarray(transitions.cost).sum(axis=(0, 1)))
    # Per env, the costs of the episodes that ended, from the transitions.
    cost, ends = np.asarray(transitions.cost), np.asarray(transitions.episode_end)
    ended_sum, running = np.zeros(2), np.zeros((8, 2))
    violations, any_violations = np.zeros(2), 0.0
    for t in range(cost.shape[0]):
        running += cost[t]
        for env in np.flatnonzero(ends[t]):
            ended_sum += running[env]
            over = running[env] > np.asarray(LIMITS)
            violations += over
            any_violations += over.any()
            running[env] = 0.0
    np.testing.assert_allclose(finished.cost_sum, ended_sum)
    np.testing.assert_allclose(finished.violations, violations)
    np.testing.assert_allclose(finished.any_violations, any_violations)


@pytest.mark.parametrize("algo", ["ppo_lag", "ppo_pid", "trpo_pid"])
def test_each_multiplier_moves_as_its_own_scalar_rule(algo):
    limits = (2.0, 0.5, 7.0)
    pieces = dataclasses.replace(trainer_module.make_pieces(TrainConfig(**TINY, algo=algo)), cost_limit=limits)
    rule, config = pieces.algorithm.multiplier, pieces.config
    state = trainer_module.init_multiplier(pieces)
    scalar_states = [rule.init(config) for _ in limits]
    costs = np.random.default_rng(1).uniform(0.0, 9.0, size=(15, 3)).astype(np.float32)
    for cost in costs:  # 15 updates: the PID's derivative history fills
        state = trainer_module.update_multiplier(pieces, state, jnp.asarray(cost), None)
        scalar_states = [rule.update(s, cost[i], limits[i], config) for i, s in enumerate(scalar_states)]
        for i, scalar in enumerate(scalar_states):
            for stacked, alone in zip(jax.tree.leaves(state), jax.tree.leaves(scalar)):
                np.testing.assert_allclose(stacked[i], alone, rtol=1e-6, atol=1e-7)
    assert np.asarray(state.multiplier).shape == (3,) and len(set(np.asarray(state.multiplier).tolist())) > 1


def test_crpo_reduces_the_most_violated_constraint():
    crpo = get_algorithm("crpo").objective
    config = TrainConfig(crpo_distance=0.5)
    rng = np.random.default_rng(2)
    reward, cost = jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray(rng.normal(size=(6, 4, 3)))
    limits = jnp.asarray([1.0, 2.0, 3.0])
    # excesses 0.2, 3.0, 1.0: the second is the most violated
    np.testing.assert_array_equal(crpo(reward, cost, None, jnp.asarray([1.2, 5.0, 4.0]), limits, config), -cost[..., 1])
    # excesses 2.0, -1.0, 1.5: the first
    np.testing.assert_array_equal(crpo(reward, cost, None, jnp.asarray([3.0, 1.0, 4.5]), limits, config), -cost[..., 0])
    # all within limit + distance: the reward
    np.testing.assert_array_equal(crpo(reward, cost, None, jnp.asarray([1.4, 2.5, 0.0]), limits, config), reward)


def test_cost_window_appends_per_constraint():
    rng = np.random.default_rng(3)
    window = CostWindow(jnp.asarray(rng.uniform(size=(4, 2)), jnp.float32), jnp.asarray(2, jnp.int32))
    costs = jnp.asarray(rng.uniform(size=(5, 2)), jnp.float32)
    ended = jnp.asarray([1.0, 0.0, 1.0, 1.0, 0.0])
    both, sums = append_constraint_costs(window, costs, ended)
    for i in range(2):
        alone, total = append_episode_costs(CostWindow(window.costs[:, i], window.count), costs[:, i], ended)
        np.testing.assert_array_equal(both.costs[:, i], alone.costs)
        np.testing.assert_allclose(sums[i], total, rtol=1e-6)
        assert int(both.count) == int(alone.count)


# --- Metrics, summary, the whole run ---------------------------------------------------------


PER_CONSTRAINT = ("episode_cost", "constraint_cost", "total_cost", "cost_limit", "multiplier", "violation_rate")


def metric_shapes(config: TrainConfig) -> dict:
    trainer = trainer_module.make_trainer(config)
    state = jax.eval_shape(trainer.init, seed_keys(0, 1)[0])
    return jax.eval_shape(trainer.update, state)[1]


def test_a_scalar_task_keeps_its_metric_names():
    names = set(metric_shapes(TrainConfig(**dict(TINY, env="PointHazard"))))
    assert not any(name.endswith(("_0", "_1")) for name in names)
    assert set(PER_CONSTRAINT) <= names


def test_m_constraints_add_per_constraint_scalars():
    shapes = metric_shapes(TrainConfig(**TINY))
    for name in PER_CONSTRAINT:
        assert {name, f"{name}_0", f"{name}_1"} <= set(shapes) and f"{name}_2" not in shapes
    assert all(shape.shape == () for shape in shapes.values())


@pytest.mark.parametrize("algo", ["ppo_lag", pytest.param("crpo", marks=pytest.mark.slow)])
def test_two_constraint_run_reports_each_constraint(tmp_path, algo):
    """shapo-train end to end on PointHazard2 (4 updates, cost window on): metrics.csv,
    summary.json and config.json carry each constraint; the sums are the sums."""
    out = str(tmp_path / "run")
    argv = ["--env", "PointHazard2", "--algo", algo, "--cost-limit", "0.5,1.5", "--num-envs", "8",
            "--unroll-length", "16", "--num-minibatches", "2", "--update-epochs", "1", "--total-steps", "512",
            "--num-seeds", "2", "--cost-window", "3", "--episode-length", "10", "--no-progress",
            "--no-compilation-cache", "--out", out]
    assert cli.main(argv) == 0
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["cost_limit"] == [0.5, 1.5]
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["cost_limit"] == [0.5, 1.5]
    for name in ("episode_cost", "total_cost", "multiplier"):
        np.testing.assert_allclose(summary[name], np.add(summary[f"{name}_0"], summary[f"{name}_1"]), rtol=1e-5)
    assert len(summary["violation_rate_1"]) == 2
    import csv

    with open(os.path.join(out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4
    for row in rows:
        for name in ("episode_cost", "total_cost", "multiplier", "cost_limit"):
            assert float(row[name]) == pytest.approx(float(row[f"{name}_0"]) + float(row[f"{name}_1"]), rel=1e-5, abs=1e-5)
        assert (float(row["cost_limit_0"]), float(row["cost_limit_1"])) == (0.5, 1.5)
        assert max(float(row["violation_rate_0"]), float(row["violation_rate_1"])) <= float(row["violation_rate"]) <= 1.0
    assert all(float(row["episodes_finished"]) > 0 for row in rows)  # 10-step episodes: each update ends some
    from shapo_jax.evaluate import evaluate_run

    report = evaluate_run(out, num_episodes=2)
    part = report["deterministic"]
    assert report["cost_limit"] == [0.5, 1.5] and np.shape(part["episode_cost_per_constraint"]) == (2, 2)
    np.testing.assert_allclose(part["episode_cost"], np.sum(part["episode_cost_per_constraint"], axis=1), rtol=1e-6)


# --- Learning ---------------------------------------------------------------------------------


LEARNING = dict(env="PointHazard2", num_envs=16, unroll_length=64, num_minibatches=4, update_epochs=4,
                total_steps=16 * 64 * 300)


@pytest.mark.slow
def test_ppo_lagrangian_keeps_both_costs_under_their_limits_and_ppo_does_not():
    """4 seeds, 300 updates of 16 envs x 64 steps: averaged over seeds and the last 50
    updates, PPO-Lag ends under both limits (limit 2 on the first hazard, 1 on the second),
    having raised the first hazard's multiplier, and reaches the goal; PPO crosses the first
    hazard and violates its limit. (Lagrange multipliers oscillate: the seeds' costs swing
    around the limit for ~250 updates before they settle, hence the long run and window.)"""

    def run(algo):
        output = jax.block_until_ready(jax.jit(jax.vmap(make_train(TrainConfig(**LEARNING, algo=algo))))(seed_keys(0, 4)))
        return {name: np.asarray(value)[:, -50:].mean() for name, value in output.metrics.items()}, output

    constrained, output = run("ppo_lag")
    unconstrained, _ = run("ppo")
    for i, limit in enumerate(LIMITS):
        assert constrained[f"episode_cost_{i}"] <= limit, (i, constrained[f"episode_cost_{i}"])
    assert constrained["episode_return"] > 7.0, constrained["episode_return"]  # the untrained policy: about -7
    assert np.asarray(output.metrics["multiplier_0"]).max() > 0.1
    assert any(unconstrained[f"episode_cost_{i}"] > limit for i, limit in enumerate(LIMITS)), unconstrained


def test_a_two_constraint_state_checkpoints_and_restores(tmp_path):
    """The stacked multipliers, cost critics and per-constraint statistics go through a
    checkpoint like any leaf (one-constraint states keep their shapes, so their checkpoints
    are unchanged)."""
    from shapo_jax.checkpoint import Checkpoints, host_copy

    trainer = trainer_module.make_trainer(TrainConfig(**dict(TINY, algo="ppo_pid")))
    keys = seed_keys(0, 2)
    state = jax.jit(jax.vmap(trainer.init))(keys)
    assert state.learner.multiplier_state.cost_ema_history.shape == (2, 2, trainer.config.pid_d_delay)
    assert state.episodes.episode_cost.shape == (2, 2) and state.runner.tracker.episode_cost.shape == (2, 8, 2)
    checkpoints = Checkpoints(str(tmp_path), create=True)
    checkpoints.save(128, 1, host_copy(state), {"update": np.ones(2, np.int32)})
    restored = checkpoints.restore(128, jax.eval_shape(jax.vmap(trainer.init), keys))
    checkpoints.close()
    for saved, loaded in zip(jax.tree.leaves(state), jax.tree.leaves(restored.state)):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))


def test_plot_draws_each_constraints_limit_and_their_sum():
    from shapo_jax.plot import limit_of

    assert limit_of([2.0, 1.0], "episode_cost") == 3.0  # the panel of the summed cost
    assert (limit_of([2.0, 1.0], "episode_cost_0"), limit_of([2.0, 1.0], "episode_cost_1")) == (2.0, 1.0)
    assert limit_of([2.0, 1.0], "episode_cost_2") is None and limit_of(2.0, "episode_cost_0") is None
    assert limit_of(2.0, "episode_cost") == 2.0 and limit_of(None, "episode_cost") is None
