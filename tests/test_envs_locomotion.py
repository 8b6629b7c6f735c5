"""MJX locomotion tasks: smoke under vmap+jit, cost semantics, registry entries.

Each env compiles one batched reset and one batched step (module-level cache); the cost tests
reuse that step on edited states (same shapes, so no recompile). XLA's backend optimisation is
turned down for these compiles: it roughly halves compile time on CPU and changes only
floating-point rounding.
"""

from __future__ import annotations

import functools
import types

import jax
import mujoco
import numpy as np
import pytest
from jax import numpy as jp

import shapo_envs

VELOCITY = {  # name: (threshold, planar?) from Safety-Gymnasium safe_velocity/*_v1.py
    "SafetyAntVelocity": (2.6222, True),
    "SafetyHalfCheetahVelocity": (3.2096, False),
    "SafetyHopperVelocity": (0.7402, False),
    "SafetyHumanoidVelocity": (1.4149, True),
    "SafetySwimmerVelocity": (0.2282, False),
    "SafetyWalker2dVelocity": (2.3415, False),
}
# qpos index of the root's z: free joint (Ant, Humanoid) or rootz slide; Swimmer floats.
LIFT = {"SafetyAntVelocity": 2, "SafetyHumanoidVelocity": 2, "SafetySwimmerVelocity": None,
        "SafetyHalfCheetahVelocity": 1, "SafetyHopperVelocity": 1, "SafetyWalker2dVelocity": 1}
FALL = ("SafetyAntFall", "SafetyWalker2dFall")
ALL = tuple(VELOCITY) + FALL
N = 2  # envs per batch
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.lru_cache(maxsize=None)
def _compiled(name):
    """(env, jitted vmapped step, reset state of N envs): one compile of each per env."""
    env = shapo_envs.make_env(name)
    reset = jax.jit(jax.vmap(env.reset), compiler_options=_FAST_COMPILE)
    step = jax.jit(jax.vmap(env.step), compiler_options=_FAST_COMPILE)
    state = reset(jax.random.split(jax.random.PRNGKey(0), N))
    return env, step, state


def _with(state, qpos=None, qvel=None):
    """The batched state with qpos / qvel replaced (``mjx.step`` recomputes kinematics)."""
    ps = state.pipeline_state
    if qpos is not None:
        ps = ps.replace(qpos=qpos, q=qpos)
    if qvel is not None:
        ps = ps.replace(qvel=qvel, qd=qvel)
    return state.replace(pipeline_state=ps)


def _body(env, name):
    return mujoco.mj_name2id(env.unwrapped.sys.mj_model, mujoco.mjtObj.mjOBJ_BODY, name)


def _position(name, env, ps):
    """Numpy re-derivation of what Safety-Gymnasium reads, per env of the batch."""
    if name == "SafetyAntVelocity":  # get_body_com('torso') = data.xpos[torso]
        return np.asarray(ps.xpos)[:, _body(env, "torso"), :2]
    if name == "SafetyHumanoidVelocity":  # gymnasium humanoid_v4.mass_center
        mass = env.unwrapped.sys.mj_model.body_mass
        xipos = np.asarray(ps.xipos)
        return (np.einsum("b,nbk->nk", mass, xipos) / mass.sum())[:, :2]
    return np.asarray(ps.qpos)[:, 0]  # data.qpos[0]


@pytest.mark.parametrize("name", ALL)
def test_reset_step_smoke(name):
    env, step, s0 = _compiled(name)
    assert env.backend == "mjx"
    s1 = step(s0, jax.random.uniform(jax.random.PRNGKey(1), (N, env.action_size), minval=-1, maxval=1))
    for s in (s0, s1):
        assert s.obs.shape == (N, env.observation_size)
        for x in (s.reward, s.done, s.info["cost"], s.info["velocity"]):
            assert x.shape == (N,)
        assert s.info["cost"].dtype == s.info["velocity"].dtype == jp.float32
        for x in (s.obs, s.reward, s.done, s.info["cost"], s.info["velocity"]):
            assert np.isfinite(np.asarray(x)).all()
        assert set(np.asarray(s.info["cost"]).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(s0.info["cost"], 0.0)
    np.testing.assert_array_equal(s0.info["velocity"], 0.0)
    assert s1.metrics.keys() == s0.metrics.keys() and s1.metrics  # Brax's metrics are kept


@pytest.mark.parametrize("name", list(VELOCITY))
def test_velocity_cost(name):
    threshold, planar = VELOCITY[name]
    env, step, s0 = _compiled(name)
    nv = s0.pipeline_state.qvel.shape[-1]
    # qvel[0] is the root's x velocity for every model here (free joint or rootx slide).
    # Lift the robot clear of the floor so friction does not eat the velocity; a pure z shift of
    # the root leaves the x/y positions that the "before" state already holds unchanged.
    qpos = s0.pipeline_state.qpos
    if LIFT[name] is not None:
        qpos = qpos.at[:, LIFT[name]].add(0.5)
    cases = {  # x-velocity at the start of the step -> expected cost
        "fast": ([3.0 * threshold, -3.0 * threshold], [1.0, 1.0 if planar else 0.0]),
        "still": ([0.0, 0.1 * threshold], [0.0, 0.0]),
    }
    for vx, expected in cases.values():
        qvel = jp.zeros((N, nv)).at[:, 0].set(jp.array(vx))
        before = _with(s0, qpos=qpos, qvel=qvel)
        after = step(before, jp.zeros((N, env.action_size)))
        v = (_position(name, env, after.pipeline_state) - _position(name, env, before.pipeline_state)) / env.dt
        v = np.linalg.norm(v, axis=-1) if planar else v
        np.testing.assert_allclose(after.info["velocity"], v, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(after.info["cost"], expected)
        # the measured velocities sit clearly on their side of the threshold
        assert np.all(np.abs(v - threshold) > 0.2 * threshold), (name, vx, v)


@pytest.mark.parametrize("name", FALL)
def test_fall_cost(name):
    """Stepped from an unhealthy pose: cost 1 and done 1; from the reset pose: 0 and 0.

    Poses are unhealthy from above (torso too high) or by tilt, which one step cannot undo; a
    torso pushed into the floor would be thrown back up by the contact solver within the step,
    so the low side of the range is checked on the health function itself below.
    """
    env, step, s0 = _compiled(name)
    qpos = s0.pipeline_state.qpos
    if name == "SafetyAntFall":  # Ant-v4 healthy: finite state and 0.2 <= torso z (qpos[2]) <= 1.0
        fallen = _with(s0, qpos=qpos.at[0, 2].set(1.6).at[1, 2].set(jp.nan))
    else:  # Walker2d-v4 healthy: 0.8 < z < 2.0, -1 < angle (qpos[2]) < 1; Brax's z is q[1] + 1.25
        fallen = _with(s0, qpos=qpos.at[0, 2].set(1.3).at[1, 1].set(1.0))
    a = jp.zeros((N, env.action_size))
    for start, expected in ((s0, [0.0, 0.0]), (fallen, [1.0, 1.0])):
        s1 = step(start, a)
        np.testing.assert_array_equal(s1.info["cost"], expected)
        np.testing.assert_array_equal(s1.done, expected)


def test_fall_health_ranges():
    """Gymnasium-v4 health ranges at their edges, on the fall functions directly (no physics)."""
    from shapo_envs.locomotion import ant_fell, walker2d_fell

    ant_sys = _compiled("SafetyAntFall")[0].unwrapped.sys
    q = np.zeros(15)
    for z, fell in ((0.19, True), (0.2, False), (0.6, False), (1.0, False), (1.01, True)):
        ps = types.SimpleNamespace(q=jp.asarray(q).at[2].set(z), qd=jp.zeros(14))
        assert bool(ant_fell(ant_sys, ps)) is fell, z
    walker_sys = _compiled("SafetyWalker2dFall")[0].unwrapped.sys
    for z, angle, fell in ((0.79, 0.0, True), (0.81, 0.0, False), (1.25, 0.0, False), (1.99, 0.0, False),
                           (2.01, 0.0, True), (1.25, 0.99, False), (1.25, -1.01, True)):
        ps = types.SimpleNamespace(q=jp.array([0.0, z - 1.25, angle, 0, 0, 0, 0, 0, 0]))
        assert bool(walker2d_fell(walker_sys, ps)) is fell, (z, angle)


def test_specs():
    for name in VELOCITY:
        spec = shapo_envs.get_spec(name)
        assert (spec.cost_limit, spec.episode_length) == (25.0, 1000)
        assert str(VELOCITY[name][0]) in spec.description
    for name in FALL:
        spec = shapo_envs.get_spec(name)
        assert (spec.cost_limit, spec.episode_length) == (0.2, 1000)
        assert spec.description
    assert set(ALL) <= set(shapo_envs.list_envs())


def test_unknown_name_lists_valid_names():
    with pytest.raises(shapo_envs.UnknownEnvError) as err:
        shapo_envs.make_env("SafetyAntVelocityTypo")
    for name in ALL:
        assert name in str(err.value)
