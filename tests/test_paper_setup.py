"""The released code's early-training setup (``--preset paper``) against NumPy references of its rules.

montrealrobotics/shapo@1bb7704 (safepo/single_agent/trpo_pid.py, safepo/common/logger.py,
safepo/common/lagrange.py, safepo/common/env.py, safepo/common/model.py) and Gymnasium 0.28's
``NormalizeObservation``: the constraint signal (``--cost-window``), per-step observation
statistics (``--observation-normalization step``) and PyTorch's default initialisation
(``--initialization torch``), each re-implemented here the way those files compute it.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State

from shapo_jax import TrainConfig, cli, normalization
from shapo_jax.config import apply_preset, resolve
from shapo_jax.networks import Critic, GaussianActor
from shapo_jax.rollout import CostWindow, append_episode_costs, collect_rollout
from shapo_jax.train import make_trainer, seed_keys


# ----------------------------------------------------------------------------------------
# NumPy references
# ----------------------------------------------------------------------------------------
class GymRunningMeanStd:
    """gymnasium/wrappers/normalize.py RunningMeanStd (float64), as NormalizeObservation uses it."""

    def __init__(self, size):
        self.mean, self.var, self.count = np.zeros(size), np.ones(size), 1e-4

    def normalize(self, obs):  # NormalizeObservation.normalize: update, then normalise
        batch_mean, batch_var, batch_count = obs.mean(0), obs.var(0), obs.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.mean, self.var, self.count = self.mean + delta * batch_count / total, m2 / total, total
        return (obs - self.mean) / np.sqrt(self.var + 1e-8)


class ReleasedSignal:
    """trpo_pid.py's episode loop and ``logger.get_stats("Metrics/EpCost")`` with
    lagrange.py's ``PIDLagrangian``: one ``epoch(ends)`` per update, ``ends`` a list per step of
    (env index, episode cost) in env order; returns (signal, multiplier)."""

    def __init__(self, window, cost_limit, kp=0.1, ki=0.01, kd=0.01, d_delay=10, initial=0.001):
        self.deque = collections.deque(maxlen=window)
        self.log_headers = []  # filled by the first dump_tabular
        self.cost_limit, self.kp, self.ki, self.kd = cost_limit, kp, ki, kd
        self.pid_i, self.delta_p, self.cost_d, self.penalty = initial, 0.0, 0.0, 0.0
        self.cost_ds = collections.deque([0.0], maxlen=d_delay)

    def epoch(self, ends):
        stored = []
        for step in ends:
            for _, cost in step:
                self.deque.append(cost)
                stored.append(np.mean(self.deque))
        signal = 0.0 if "Metrics/EpCost" not in self.log_headers else (np.mean(stored) if stored else np.nan)
        if np.isfinite(signal):
            self.update_pid(signal)
        if stored:  # logger.logged is False: log_tabular registers the headers
            self.log_headers.append("Metrics/EpCost")
        return signal, self.penalty

    def update_pid(self, cost):
        delta = cost - self.cost_limit
        self.pid_i += delta * self.ki
        if self.pid_i < 0.0 and delta <= 0.0:
            self.pid_i = 0.0
        self.delta_p = 0.95 * self.delta_p + 0.05 * delta
        self.cost_d = 0.95 * self.cost_d + 0.05 * cost
        pid_d = max(0.0, self.cost_d - self.cost_ds[0])
        output = self.kp * self.delta_p + self.pid_i + self.kd * pid_d
        self.penalty = 0.001 if (output < 0.0 and delta > 0.0) else max(0.0, output)
        self.cost_ds.append(self.cost_d)


# ----------------------------------------------------------------------------------------
# --cost-window
# ----------------------------------------------------------------------------------------
def test_append_episode_costs_matches_a_deque_in_env_order():
    rng = np.random.default_rng(0)
    window, size, num_envs = CostWindow.zeros(5), 5, 6
    reference = collections.deque(maxlen=size)
    append = jax.jit(append_episode_costs)
    for _ in range(12):
        ended = (rng.random(num_envs) < 0.4).astype(np.float32)
        costs = rng.integers(0, 30, num_envs).astype(np.float32)
        window, mean_sum = append(window, jnp.asarray(costs), jnp.asarray(ended))
        expected = 0.0
        for idx in np.flatnonzero(ended):
            reference.append(costs[idx])
            expected += np.mean(reference)
        np.testing.assert_allclose(float(mean_sum), expected, rtol=1e-6)
        assert int(window.count) == len(reference)
        np.testing.assert_array_equal(np.asarray(window.costs)[size - len(reference):], np.asarray(reference))


class LengthsEnv(Env):
    """Env i (``info["id"]``) terminates after 3 + i steps and pays cost 1 at the steps where
    (count * (id + 1)) % 3 == 0: fixed, varied episode lengths and costs, whatever the action."""

    def reset(self, rng):
        zero = jnp.zeros((), jnp.float32)
        return State(None, jnp.zeros((2,), jnp.float32), zero, zero, {},
                     {"cost": zero, "count": zero, "id": zero})

    def step(self, state, action):
        count, env_id = state.info["count"] + 1.0, state.info["id"]
        cost = (jnp.mod(count * (env_id + 1.0), 3.0) == 0).astype(jnp.float32)
        done = (count == 3.0 + env_id).astype(jnp.float32)
        return state.replace(obs=jnp.stack([count, env_id]), reward=-cost, done=done,
                             info={"cost": cost, "count": count, "id": env_id})

    observation_size = property(lambda self: 2)
    action_size = property(lambda self: 1)
    backend = property(lambda self: "jax")


def lengths_episode_ends(num_envs, num_steps):
    """Per step, the (env, cost) of the episodes LengthsEnv ends at it, in env order."""
    ends = []
    count, cost = np.zeros(num_envs), np.zeros(num_envs)
    for _ in range(num_steps):
        count += 1
        cost += (np.mod(count * (np.arange(num_envs) + 1), 3) == 0)
        done = count == 3 + np.arange(num_envs)
        ends.append([(i, cost[i]) for i in np.flatnonzero(done)])
        count[done], cost[done] = 0, 0
    return ends


def test_cost_window_signal_and_pid_follow_the_released_logger():
    """0 until an update begins with an episode finished, then the mean over the update's
    episode ends of the last-K mean at each; an update without ends holds the multiplier."""
    num_envs, unroll, updates = 4, 2, 10
    config = TrainConfig(env="PointHazard", algo="trpo_pid", num_envs=num_envs, unroll_length=unroll,
                         num_minibatches=1, update_epochs=1, total_steps=num_envs * unroll * updates,
                         episode_length=100, cost_limit=0.5, cost_window=3, redraw_resets=False)
    trainer = make_trainer(config, env=LengthsEnv())
    state = trainer.init(jax.random.PRNGKey(0))
    ids = jnp.arange(num_envs, dtype=jnp.float32)
    env_state = state.runner.env_state.replace(info={**state.runner.env_state.info, "id": ids})
    state = state._replace(runner=state.runner._replace(env_state=env_state, initial_env_state=env_state))
    update = jax.jit(trainer.update)
    reference = ReleasedSignal(3, 0.5)
    ends = lengths_episode_ends(num_envs, unroll * updates)
    signals, expected = [], []
    for u in range(updates):
        state, metrics = update(state)
        signal, multiplier = reference.epoch(ends[u * unroll:(u + 1) * unroll])
        signals.append(float(metrics["constraint_cost"]))
        expected.append(signal)
        np.testing.assert_allclose(float(metrics["multiplier"]), multiplier, rtol=1e-5, atol=1e-7)
    expected = np.asarray(expected)
    held = ~np.isfinite(expected)
    assert held.any() and (expected[:2] == 0).all() and (expected[~held] > 0).any()  # every case met
    np.testing.assert_allclose(np.asarray(signals)[~held], expected[~held], rtol=1e-6)
    # Where the released code gets NaN, CPO and CRPO keep the last signal here.
    last = [float(expected[:i][~held[:i]][-1]) for i in np.flatnonzero(held)]
    np.testing.assert_allclose(np.asarray(signals)[held], last, rtol=1e-6)


# ----------------------------------------------------------------------------------------
# --observation-normalization step
# ----------------------------------------------------------------------------------------
def test_running_mean_std_matches_gymnasium():
    rng = np.random.default_rng(1)
    reference, statistics = GymRunningMeanStd(3), normalization.RunningMeanStd.zeros(3)
    step = jax.jit(normalization.update_and_normalize)
    for _ in range(20):
        batch = rng.normal([1.0, -5.0, 100.0], [0.1, 3.0, 20.0], size=(7, 3)).astype(np.float32)
        statistics, normalized = step(statistics, jnp.asarray(batch))
        np.testing.assert_allclose(np.asarray(normalized), reference.normalize(batch.astype(np.float64)),
                                   rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(statistics.mean), reference.mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(statistics.var), reference.var, rtol=1e-4)
    np.testing.assert_allclose(float(statistics.count), reference.count, rtol=1e-6)


def test_per_step_rollout_stores_observations_normalised_as_the_vector_env_returns_them():
    """Two resets, then at every step the returned (post-reset) batch updates the statistics
    and is normalised with them; the policy sees exactly what is stored; a time-out's true
    last observation is normalised with that step's statistics."""
    num_envs, unroll = 4, 12
    config = TrainConfig(env="PointHazard", num_envs=num_envs, unroll_length=unroll, num_minibatches=1,
                         update_epochs=1, total_steps=num_envs * unroll, episode_length=4,
                         observation_normalization="step", redraw_resets=False)
    trainer = make_trainer(config, env=LengthsEnv())
    state = trainer.init(jax.random.PRNGKey(0))
    ids = jnp.arange(num_envs, dtype=jnp.float32)  # episodes of 3, 4 (time-out), 4, 4 steps
    env_state = state.runner.env_state.replace(info={**state.runner.env_state.info, "id": ids})
    state = state._replace(runner=state.runner._replace(env_state=env_state, initial_env_state=env_state))
    reference = GymRunningMeanStd(2)
    reference.normalize(np.zeros((num_envs, 2)))  # the two resets (every reset observation is 0 here)
    reference.normalize(np.zeros((num_envs, 2)))
    policy_inputs = []

    def policy(observation, key):
        policy_inputs.append(observation)
        return jnp.zeros((observation.shape[0], 1)), jnp.zeros(observation.shape[0])

    rollout = collect_rollout(trainer.env, policy, state.runner.env_state, state.runner.initial_env_state, state.runner.tracker,
                              jax.random.PRNGKey(1), unroll, 4, observation_statistics=state.learner.normalizer)
    observation = np.zeros((num_envs, 2))
    count = np.zeros(num_envs)
    expected_obs, expected_next = [], []
    normalized = (observation - reference.mean) / np.sqrt(reference.var + 1e-8)
    for _ in range(unroll):
        expected_obs.append(normalized)
        count += 1
        last = np.stack([count, np.arange(num_envs)], 1)
        ended = (count == 3 + np.arange(num_envs)) | (count >= 4)
        count[ended] = 0
        returned = np.where(ended[:, None], 0.0, last)
        normalized = reference.normalize(returned)
        expected_next.append((last - reference.mean) / np.sqrt(reference.var + 1e-8))
    transitions = rollout.transitions
    assert len(policy_inputs) == 1  # traced once, inside the scan
    np.testing.assert_allclose(np.asarray(transitions.observation), np.asarray(expected_obs), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(transitions.next_observation), np.asarray(expected_next), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(rollout.observation_statistics.mean), reference.mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(rollout.observation_statistics.var), reference.var, rtol=1e-4)


def test_per_step_statistics_start_from_the_released_codes_two_reset_batches():
    config = TrainConfig(env="PointHazard", num_envs=8, unroll_length=16, num_minibatches=2, update_epochs=1,
                         total_steps=8 * 16 * 2, episode_length=8, observation_normalization="step")
    trainer = make_trainer(config)
    state = trainer.init(jax.random.PRNGKey(0))
    np.testing.assert_allclose(float(state.learner.normalizer.count), 2 * 8 + 1e-4, rtol=1e-6)
    reference = GymRunningMeanStd(trainer.env.observation_size)
    first_reset = jax.vmap(trainer.env.reset)(jax.random.split(jax.random.fold_in(
        jax.random.split(jax.random.PRNGKey(0), 5)[3], 1), 8))
    reference.normalize(np.asarray(first_reset.obs, np.float64))
    reference.normalize(np.asarray(state.runner.env_state.obs, np.float64))
    np.testing.assert_allclose(np.asarray(state.learner.normalizer.mean), reference.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state.learner.normalizer.var), reference.var, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------
# --initialization torch
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", [GaussianActor((64, 64), 3, "torch"), Critic((64, 64), "torch")])
def test_torch_initialization_is_uniform_within_one_over_sqrt_fan_in(module):
    params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 20)))["params"]
    layers = params["MLP_0"]
    fan_ins = [20, 64, 64]
    for i, fan_in in enumerate(fan_ins):
        bound = 1.0 / np.sqrt(fan_in)
        kernel, bias = (np.asarray(layers[f"Dense_{i}"][name]).ravel() for name in ("kernel", "bias"))
        assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
        assert np.abs(bias).max() <= bound and np.all(bias != 0)  # PyTorch's biases are not zero
        np.testing.assert_allclose(kernel.var(), bound**2 / 3, rtol=0.3)  # U(-b, b) has variance b^2/3
    if "log_std" in params:
        np.testing.assert_array_equal(np.asarray(params["log_std"]), 0.0)


def test_torch_initial_action_means_are_of_order_a_third_orthogonal_near_zero():
    observation = jax.random.normal(jax.random.PRNGKey(1), (256, 20))
    scale = {}
    for initialization in ("torch", "orthogonal"):
        actor = GaussianActor((64, 64), 2, initialization)
        mean, _ = actor.apply(actor.init(jax.random.PRNGKey(0), observation), observation)
        scale[initialization] = float(jnp.sqrt(jnp.mean(mean**2)))
    assert 0.1 < scale["torch"] < 1.0 and scale["orthogonal"] < 0.05


# ----------------------------------------------------------------------------------------
# Presets, flags and resume
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["paper", "paper-base"])
def test_paper_presets_turn_the_released_setup_on_and_config_json_records_it(preset):
    config = apply_preset(TrainConfig(preset=preset, algo="trpo_pid"))
    assert (config.cost_window, config.observation_normalization, config.initialization) == (50, "step", "torch")
    recorded = cli.resolved_config(resolve(config))
    assert recorded["cost_window"] == 50 and recorded["observation_normalization"] == "step"
    assert recorded["initialization"] == "torch"
    defaults = TrainConfig()
    assert (defaults.cost_window, defaults.observation_normalization, defaults.initialization) == (0, "update", "orthogonal")


def test_negative_cost_window_is_one_line_naming_the_flag_before_compiling(capsys):
    code = cli.main(["--env", "PointHazard", "--cost-window", "-1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert err.strip().splitlines() == ["shapo-train: error: --cost-window: must be an integer >= 0 (0 = this update's episodes), got -1"]


@pytest.mark.slow
def test_resume_from_a_checkpoint_is_bit_for_bit_with_the_released_setup_on(tmp_path):
    """Two updates, saved and restored through orbax, then two more: the same state as four
    updates in one go (window, statistics and signal included). About a minute on 2 cores."""
    from shapo_jax.checkpoint import Checkpoints, host_copy

    config = TrainConfig(env="PointHazard", algo="trpo_pid", num_envs=8, unroll_length=16, num_minibatches=2,
                         update_epochs=1, total_steps=8 * 16 * 4, episode_length=6, num_seeds=2, cost_window=5,
                         observation_normalization="step", initialization="torch")
    trainer = make_trainer(config)
    keys = seed_keys(0, 2)
    update = jax.jit(jax.vmap(trainer.update))
    state = jax.jit(jax.vmap(trainer.init))(keys)
    for _ in range(2):
        state, metrics = update(state)
    checkpoints = Checkpoints(str(tmp_path), create=True)
    checkpoints.save(256, 2, host_copy(state), host_copy(metrics))
    abstract = jax.eval_shape(jax.vmap(trainer.init), keys)
    restored = checkpoints.restore(256, abstract).state
    checkpoints.close()
    for _ in range(2):
        state, _ = update(state)
        restored, _ = update(restored)
    assert int(np.asarray(state.episodes.cost_window.count).min()) > 0
    np.testing.assert_allclose(np.asarray(state.learner.normalizer.count), 2 * 8 + 4 * 8 * 16 + 1e-4, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


SHARDED_MAIN = """
import jax, numpy as np
from shapo_jax import TrainConfig, distributed
from shapo_jax.train import make_trainer, seed_keys

config = TrainConfig(env="PointHazard", algo="ppo_pid", num_envs=8, unroll_length=16, num_minibatches=2,
                     update_epochs=1, total_steps=8 * 16 * 3, episode_length=6, num_seeds=1, cost_window=5,
                     observation_normalization="step", initialization="torch")
trainer = make_trainer(config)
keys = seed_keys(0, 1)
finals = []
for num_devices in (1, 2):
    mesh = distributed.make_mesh(1, 8, num_devices)
    put = distributed.put_global(keys, distributed.seed_sharding(mesh))
    abstract = jax.eval_shape(jax.vmap(trainer.init), put)
    sharding = distributed.state_shardings(mesh, abstract)
    state = jax.jit(jax.vmap(trainer.init), out_shardings=sharding)(put)
    update = jax.jit(jax.vmap(trainer.update), in_shardings=(sharding,), out_shardings=(sharding, distributed.replicated(mesh)))
    for _ in range(3):
        state, _ = update(state)
    assert len(state.runner.env_state.obs.sharding.device_set) == num_devices
    finals.append(jax.device_get(state))
one, two = finals
for name in ("mean", "var", "count"):
    np.testing.assert_allclose(getattr(two.learner.normalizer, name), getattr(one.learner.normalizer, name), rtol=1e-5, atol=1e-6)
np.testing.assert_array_equal(two.episodes.cost_window.costs, one.episodes.cost_window.costs)
np.testing.assert_array_equal(two.episodes.cost_window.count, one.episodes.cost_window.count)
np.testing.assert_allclose(two.episodes.constraint_cost, one.episodes.constraint_cost, rtol=1e-6)
for a, b in zip(jax.tree.leaves(one.learner.actor_params), jax.tree.leaves(two.learner.actor_params)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
print("OK", float(one.learner.normalizer.count[0]), one.episodes.cost_window.count.tolist())
"""


@pytest.mark.slow
def test_per_step_statistics_and_cost_window_are_those_of_the_whole_seed_on_two_devices():
    """A seed's envs split over 2 host devices: the statistics and the cost window are reduced
    over all of its envs (XLA inserts the cross-device reductions), as on one device."""
    import os
    import subprocess
    import sys

    environment = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = subprocess.run([sys.executable, "-c", SHARDED_MAIN], env=environment, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].startswith("OK"), done.stdout


# ----------------------------------------------------------------------------------------
# Unclipped actions: each env clips where its original does
# ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["SafetyPointGoal1", "Swimmer"])
def test_envs_clamp_an_out_of_range_action_to_the_motor_range(name):
    """Navigation clips to the actuators' range as Safety-Gymnasium's builder does; Swimmer
    (v4) leaves it to MuJoCo's ctrlrange clamp and charges its control cost on the raw action."""
    import shapo_envs
    from shapo_envs.swimmer import Swimmer

    env = Swimmer() if name == "Swimmer" else shapo_envs.make_env(name)
    step = jax.jit(env.step)
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    inside = jnp.linspace(-1.0, 1.0, env.action_size) * jnp.ones(env.action_size)
    outside = 3.0 * inside
    clipped, raw = step(state, inside), step(state, outside)
    np.testing.assert_array_equal(np.asarray(raw.obs), np.asarray(clipped.obs))
    if name == "Swimmer":
        extra = 1e-4 * float(jnp.sum(outside**2) - jnp.sum(inside**2))  # Swimmer-v4's control cost weight
        np.testing.assert_allclose(float(clipped.reward - raw.reward), extra, rtol=1e-4)
    else:
        np.testing.assert_array_equal(np.asarray(raw.reward), np.asarray(clipped.reward))
