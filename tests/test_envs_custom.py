"""Bring your own env: ``register`` a Brax ``Env`` with a cost, train it in process and with
``shapo-train --env-module``, the cost check of ``make_env``, and the Playground adapter
(on a stand-in ``MjxEnv`` always, on a real Playground task when it is installed)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State
from flax import struct

from compile_options import QUICK_COMPILE, quick_compile_flags
import shapo_envs
from shapo_envs.playground import PLAYGROUND_OBS_KEY, PlaygroundEnv, from_playground
from shapo_envs.registry import EnvCostError, check_cost
from shapo_jax import TrainConfig, make_train
from shapo_jax.config import ConfigError, import_env_module

# The user's module: a 1-D point pushed towards a goal past a costly zone, registered on import.
USER_MODULE = "my_safe_envs"
USER_ENV = "CustomDrift"
USER_SOURCE = textwrap.dedent('''
    import jax
    import jax.numpy as jnp
    from brax.envs.base import Env, State

    import shapo_envs


    class Drift(Env):
        """x moves by 0.2 * action; reward -|x - 1|; cost 1 while 0.3 < x < 0.6."""

        observation_size = 1
        action_size = 1
        backend = "jax"

        def reset(self, rng):
            x = jax.random.uniform(rng, (1,), minval=-0.1, maxval=0.1)
            zero = jnp.zeros(())
            return State(None, x, zero, zero, {}, {"cost": zero})

        def step(self, state, action):
            x = state.obs + 0.2 * jnp.clip(action, -1.0, 1.0)
            cost = ((x[0] > 0.3) & (x[0] < 0.6)).astype(jnp.float32)
            return state.replace(obs=x, reward=-jnp.abs(x[0] - 1.0), info={"cost": cost})


    shapo_envs.register("CustomDrift", Drift, cost_limit=1.5, episode_length=10, description="test task")
''')

TINY = dict(env=USER_ENV, num_envs=4, unroll_length=8, num_minibatches=2, update_epochs=1, total_steps=64,
            hidden_sizes=(8,), episode_length=4)


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A directory holding the user's module, on ``sys.path`` (as the working directory is)."""
    directory = tmp_path_factory.mktemp("user")
    (directory / f"{USER_MODULE}.py").write_text(USER_SOURCE)
    sys.path.insert(0, str(directory))
    yield directory
    sys.path.remove(str(directory))


@pytest.fixture(scope="module")
def user_env(user_dir):
    import_env_module(TrainConfig(env=USER_ENV, env_module=USER_MODULE))
    return USER_ENV


def test_register_adds_the_env_to_make_env(user_env, cli_training):  # cli_training: start it now
    assert user_env in shapo_envs.list_envs()
    spec = shapo_envs.get_spec(user_env)
    assert (spec.cost_limit, spec.episode_length, spec.description) == (1.5, 10, "test task")
    env = shapo_envs.make_env(user_env)
    assert isinstance(env, Env) and type(env).__name__ == "Drift"
    state = jax.jit(env.step)(env.reset(jax.random.PRNGKey(0)), jnp.ones(1))
    assert state.info["cost"].shape == state.reward.shape == ()


def test_import_env_module_error_names_the_flag():
    with pytest.raises(ConfigError, match="--env-module: cannot import 'no_such_module_for_shapo'"):
        import_env_module(TrainConfig(env_module="no_such_module_for_shapo"))


def start_cli(args, cwd):
    # -P: no working directory on sys.path, as with the shapo-train script; --env-module adds it.
    # XLA's quick compile halves the compile; the checks here do not depend on it.
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": quick_compile_flags()}
    return subprocess.Popen([sys.executable, "-P", "-m", "shapo_jax.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def cli_training(user_dir, tmp_path_factory):
    """``shapo-train --env-module my_safe_envs --env CustomDrift`` in a subprocess, started
    by the first test that asks, so that it compiles while the in-process tests run."""
    out = tmp_path_factory.mktemp("cli") / "run"
    args = ["--env-module", USER_MODULE, "--no-progress", "--no-compilation-cache", "--out", str(out)]
    for name, value in TINY.items():
        args += [f"--{name.replace('_', '-')}", *map(str, value if isinstance(value, tuple) else (value,))]
    process = start_cli(args, cwd=user_dir)
    yield process, out
    if process.poll() is None:
        process.kill()
        process.communicate()


# ------------------------------------------------------------------------------------------
# The cost check of make_env.
# ------------------------------------------------------------------------------------------


class NoCost(Env):
    observation_size = 1
    action_size = 1
    backend = "jax"

    def __init__(self, reset_info=None, step_info=None):
        self.reset_info = {} if reset_info is None else reset_info
        self.step_info = self.reset_info if step_info is None else step_info

    def reset(self, rng):
        return State(None, jnp.zeros(1), jnp.zeros(()), jnp.zeros(()), {}, dict(self.reset_info))

    def step(self, state, action):
        return state.replace(info=dict(self.step_info))


@pytest.mark.parametrize("factory,message", [
    (lambda: NoCost(), r"'NoCostTask': reset returns no 'cost' in state.info \(its keys: \[\]\)"),
    (lambda: NoCost({"cost": jnp.zeros(())}, {"other": jnp.zeros(())}), r"'NoCostTask': step returns no 'cost'"),
    (lambda: NoCost({"cost": jnp.zeros((1,))}), r"'NoCostTask': reset returns state.info\['cost'\] of shape \(1,\)"),
    (lambda: object(), r"'NoCostTask': the factory returned object, not a brax.envs.Env"),
])
def test_make_env_rejects_an_env_without_cost(factory, message):
    shapo_envs.register("NoCostTask", factory, cost_limit=1.0, overwrite=True)
    try:
        with pytest.raises(EnvCostError, match=message) as raised:
            shapo_envs.make_env("NoCostTask")
        assert "\n" not in str(raised.value)
    finally:
        shapo_envs.registry._REGISTRY.pop("NoCostTask")


@pytest.mark.parametrize("kwargs,error", [
    (dict(name="", factory=NoCost, cost_limit=1.0), ValueError),
    (dict(name="X", factory=None, cost_limit=1.0), TypeError),
    (dict(name="X", factory=NoCost, cost_limit=float("nan")), ValueError),
    (dict(name="X", factory=NoCost, cost_limit=1.0, episode_length=0), ValueError),
    (dict(name="PointHazard", factory=NoCost, cost_limit=1.0), ValueError),  # already registered
])
def test_register_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        shapo_envs.register(kwargs.pop("name"), kwargs.pop("factory"), **kwargs)
    assert "X" not in shapo_envs.list_envs()


# ------------------------------------------------------------------------------------------
# The Playground adapter, on a stand-in following MjxEnv's interface.
# ------------------------------------------------------------------------------------------


@struct.dataclass
class StandInState:
    """mujoco_playground's State: the same fields."""

    data: dict
    obs: dict
    reward: jax.Array
    done: jax.Array
    metrics: dict
    info: dict


class StandInMjxEnv:
    """A cart on a rail: qpos += 0.1 * action. Dict observation, whose step reads the
    previous observation (as Playground's observation-history envs do)."""

    action_size = 1
    dt = 0.02

    def reset(self, rng):
        qpos = jax.random.uniform(rng, (1,), minval=-0.05, maxval=0.05)
        obs = {"state": jnp.concatenate([qpos, jnp.zeros(2)]), "privileged_state": jnp.ones((2, 1))}
        return StandInState({"qpos": qpos}, obs, jnp.zeros(()), jnp.zeros(()), {"reward/x": jnp.zeros(())},
                            {"rng": rng, "steps": jnp.zeros((), jnp.int32)})

    def step(self, state, action):
        qpos = state.data["qpos"] + 0.1 * action
        history = jnp.concatenate([qpos, state.obs["state"][:2]])  # reads state.obs
        metrics = dict(state.metrics, **{"reward/x": qpos[0]})
        info = dict(state.info, steps=state.info["steps"] + 1)
        return StandInState({"qpos": qpos}, dict(state.obs, state=history), qpos[0], (qpos[0] > 1.0).astype(float),
                            metrics, info)


def past_half(state, action, next_state):
    return next_state.data["qpos"][0] > 0.5


def test_adapter_wraps_a_stand_in_mjx_env():
    env = from_playground(StandInMjxEnv(), past_half, name="StandIn")
    assert isinstance(env, PlaygroundEnv) and isinstance(env, Env)
    assert (env.observation_size, env.action_size, env.backend, env.dt) == (5, 1, "mjx", 0.02)
    assert from_playground(StandInMjxEnv(), past_half, obs_keys=("state",)).observation_size == 3
    check_cost(env, "StandIn")

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    state = jax.jit(jax.vmap(env.reset))(keys)
    assert state.obs.shape == (3, 5) and state.info["cost"].shape == (3,) and not state.info["cost"].any()
    step = jax.jit(jax.vmap(env.step))
    costs = []
    for _ in range(8):
        state = step(state, jnp.full((3, 1), 5.0))  # clipped to 1: qpos grows by 0.1 a step
        costs.append(np.asarray(state.info["cost"]))
    start = np.asarray(jax.vmap(env.reset)(keys).pipeline_state["qpos"][:, 0])
    qpos = np.asarray(state.pipeline_state["qpos"][:, 0])
    np.testing.assert_allclose(qpos, start + 0.8, atol=1e-5)
    expected = start[None] + 0.1 * np.arange(1, 9)[:, None] > 0.5  # the cost of each step: past 0.5
    np.testing.assert_array_equal(np.stack(costs), expected)
    assert np.stack(costs).dtype == np.float32 and 0 < expected.sum() < expected.size
    # Playground's own observation, info and metrics come through; the flat obs is its entries, sorted.
    inner_obs = state.info[PLAYGROUND_OBS_KEY]
    np.testing.assert_array_equal(state.obs, np.concatenate(
        [inner_obs["privileged_state"].reshape(3, -1), inner_obs["state"]], axis=1))
    np.testing.assert_allclose(inner_obs["state"][:, 1], qpos - 0.1, atol=1e-5)  # the history it kept
    assert (np.asarray(state.info["steps"]) == 8).all()
    np.testing.assert_allclose(state.metrics["reward/x"], qpos, atol=1e-6)


def test_adapter_rejects_a_cost_of_the_wrong_shape():
    env = from_playground(StandInMjxEnv(), lambda s, a, ns: ns.data["qpos"], name="Vector")
    with pytest.raises(ValueError, match=r"Vector: cost_fn returned shape \(1,\), but the reward's shape is \(\)"):
        env.step(env.reset(jax.random.PRNGKey(0)), jnp.zeros(1))
    with pytest.raises(TypeError, match="needs a MuJoCo Playground MjxEnv"):
        from_playground(object(), past_half)


def test_adapter_env_registers_and_trains_in_process():
    shapo_envs.register("StandInSafe", lambda: from_playground(StandInMjxEnv(), past_half), cost_limit=2.0,
                        episode_length=6, overwrite=True)
    try:
        env = shapo_envs.make_env("StandInSafe")  # runs the cost check
        assert isinstance(env, PlaygroundEnv)
        config = TrainConfig(**{**TINY, "env": "StandInSafe", "total_steps": 64})
        key = jax.random.PRNGKey(1)
        train = jax.jit(make_train(config)).lower(key).compile(compiler_options=QUICK_COMPILE)
        output = jax.device_get(train(key))
        assert output.metrics["cost_limit"][-1] == pytest.approx(2.0)  # the registered default
        assert np.isfinite(output.metrics["episode_return"]).all() and np.isfinite(output.metrics["episode_cost"]).all()
        assert int(output.state.env_steps) == 64
    finally:
        shapo_envs.registry._REGISTRY.pop("StandInSafe")


# ------------------------------------------------------------------------------------------
# A real Playground task, when Playground is installed (pip install 'shapo-jax[playground]').
# ------------------------------------------------------------------------------------------


def test_adapter_on_a_real_playground_env():
    registry = pytest.importorskip("mujoco_playground").registry
    name = "CartpoleBalance"
    env = from_playground(registry.load(name, config_overrides={"impl": "jax"}),
                          lambda s, a, ns: jnp.abs(ns.data.qpos[0]) > 0.05, name="CartpoleSafe")
    shapo_envs.register("CartpoleSafe", lambda: env, cost_limit=25.0,
                        episode_length=registry.get_default_config(name).episode_length, overwrite=True)
    try:
        assert shapo_envs.make_env("CartpoleSafe") is env
        assert shapo_envs.get_spec("CartpoleSafe").episode_length == 1000
    finally:
        shapo_envs.registry._REGISTRY.pop("CartpoleSafe")
    assert (env.observation_size, env.action_size) == (5, 1)

    def rollout(key):
        def body(state, _):
            state = env.step(state, jnp.ones(1))  # push the cart right: it leaves the safe band
            return state, state.info["cost"]

        return jax.lax.scan(body, env.reset(key), None, length=30)

    state, costs = jax.jit(jax.vmap(rollout))(jax.random.split(jax.random.PRNGKey(0), 2))
    costs = np.asarray(costs)
    assert costs.shape == (2, 30) and set(np.unique(costs)) <= {0.0, 1.0}
    assert not costs[:, 0].any() and costs[:, -1].all() and np.isfinite(np.asarray(state.obs)).all()
    np.testing.assert_array_equal(costs[:, -1], np.abs(np.asarray(state.pipeline_state.qpos[:, 0])) > 0.05)


# ------------------------------------------------------------------------------------------
# The CLI runs (last: the training run compiles while the tests above run).
# ------------------------------------------------------------------------------------------


def test_cli_trains_a_user_module_env(cli_training):
    process, out = cli_training
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == USER_ENV and summary["cost_limit"] == 1.5  # the registered default
    assert summary["env_steps_per_seed"] == 64
    assert np.isfinite(summary["episode_return"]).all() and np.isfinite(summary["episode_cost"]).all()
    assert json.loads((out / "config.json").read_text())["env_module"] == USER_MODULE


def test_cli_bad_env_module_fails_in_one_line(tmp_path):
    process = start_cli(["--env-module", "no_such_module_for_shapo", "--env", USER_ENV], cwd=tmp_path)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    last = stderr.strip().splitlines()[-1]
    assert "--env-module" in last and "no_such_module_for_shapo" in last
    assert "Traceback" not in stderr
