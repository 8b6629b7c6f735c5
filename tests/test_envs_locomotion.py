"""MJX locomotion tasks: smoke under vmap+jit, cost semantics, registry entries, and agreement
with Gymnasium's v4 envs stepping natively (step by step; in distribution, slow).

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

from compile_options import QUICK_COMPILE
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


@functools.lru_cache(maxsize=None)
def _compiled(name):
    """(env, jitted vmapped step, reset state of N envs): one compile of each per env."""
    env = shapo_envs.make_env(name)
    reset = jax.jit(jax.vmap(env.reset), compiler_options=QUICK_COMPILE)
    step = jax.jit(jax.vmap(env.step), compiler_options=QUICK_COMPILE)
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
    assert s1.metrics.keys() == s0.metrics.keys() and s1.metrics  # the env's metrics are kept


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
    else:  # Walker2d-v4 healthy: 0.8 < z (qpos[1], rootz has ref 1.25) < 2.0, -1 < angle (qpos[2]) < 1
        fallen = _with(s0, qpos=qpos.at[0, 2].set(1.3).at[1, 1].set(2.25))
    a = jp.zeros((N, env.action_size))
    for start, expected in ((s0, [0.0, 0.0]), (fallen, [1.0, 1.0])):
        s1 = step(start, a)
        np.testing.assert_array_equal(s1.info["cost"], expected)
        np.testing.assert_array_equal(s1.done, expected)


def test_fall_health_ranges():
    """Gymnasium-v4 health ranges at their edges, on the envs' ``is_healthy`` (no physics)."""
    ant = _compiled("SafetyAntFall")[0].unwrapped
    q = np.zeros(15)
    for z, healthy in ((0.19, False), (0.2, True), (0.6, True), (1.0, True), (1.01, False)):
        ps = types.SimpleNamespace(q=jp.asarray(q).at[2].set(z), qd=jp.zeros(14))
        assert bool(ant.is_healthy(ps)) is healthy, z
    ps = types.SimpleNamespace(q=jp.asarray(q).at[2].set(0.6), qd=jp.zeros(14).at[3].set(jp.inf))
    assert not bool(ant.is_healthy(ps))
    walker = _compiled("SafetyWalker2dFall")[0].unwrapped
    for z, angle, healthy in ((0.8, 0.0, False), (0.81, 0.0, True), (1.25, 0.0, True), (1.99, 0.0, True),
                              (2.0, 0.0, False), (1.25, 0.99, True), (1.25, -1.0, False)):
        ps = types.SimpleNamespace(q=jp.array([0.0, z, angle, 0, 0, 0, 0, 0, 0]))
        assert bool(walker.is_healthy(ps)) is healthy, (z, angle)


def test_specs():
    for name in VELOCITY:
        spec = shapo_envs.get_spec(name)
        assert (spec.cost_limit, spec.episode_length, spec.redraw_resets) == (25.0, 1000, True)
        assert str(VELOCITY[name][0]) in spec.description
    for name in FALL:
        spec = shapo_envs.get_spec(name)
        assert (spec.cost_limit, spec.episode_length, spec.redraw_resets) == (0.2, 1000, True)
        assert spec.description
    assert set(ALL) <= set(shapo_envs.list_envs())


def test_unknown_name_lists_valid_names():
    with pytest.raises(shapo_envs.UnknownEnvError) as err:
        shapo_envs.make_env("SafetyAntVelocityTypo")
    for name in ALL:
        assert name in str(err.value)


# ---- Against Gymnasium's v4 envs stepping natively (float64 MuJoCo) -------------------------
# task: (Gymnasium module, class, steps compared). The horizon is where float32 MJX and float64
# MuJoCo still agree from the same state and actions (observation within 2e-3 (1 + |obs|),
# reward within 1e-3), measured with these seeds: contact makes the dynamics chaotic, so
# differences of ~1e-6 per step grow. Relative observation error at steps 15 / 30 / 45:
# Ant 2e-4 / 1e-3 / 4e-1, HalfCheetah (stiff Euler contacts) 2e-5 / 2e-2 / 4e-1,
# Walker2d 8e-5 / 5e-5 / 7e-5, Hopper 2e-6 / 3e-6 / 4e-6, Swimmer (no contact) 2e-6 throughout.
# Humanoid runs Newton where Gymnasium's XML runs PGS (MJX has no PGS): its feet touch down at
# step 9 (from 0) and all 376 entries agree to 5e-5 through step 36 (the contact forces cfrc_ext
# to 3e-4); at step 37, with 4 contacts, cfrc_ext is 2.4e-2 off while the state is within 8e-5.
# That is the solver: against MuJoCo switched to Newton the same run agrees through step 53.
GYMNASIUM = {
    "SafetyAntVelocity": ("ant_v4", "AntEnv", 30),
    "SafetyAntFall": ("ant_v4", "AntEnv", 30),
    "SafetyHalfCheetahVelocity": ("half_cheetah_v4", "HalfCheetahEnv", 18),
    "SafetyHopperVelocity": ("hopper_v4", "HopperEnv", 50),
    "SafetyHumanoidVelocity": ("humanoid_v4", "HumanoidEnv", 36),
    "SafetySwimmerVelocity": ("swimmer_v4", "SwimmerEnv", 50),
    "SafetyWalker2dVelocity": ("walker2d_v4", "Walker2dEnv", 50),
    "SafetyWalker2dFall": ("walker2d_v4", "Walker2dEnv", 50),
}


def gymnasium_env(name):
    """Gymnasium's own v4 env for a task, unwrapped (no TimeLimit, no checker)."""
    import importlib

    module, cls, _ = GYMNASIUM[name]
    return getattr(importlib.import_module(f"gymnasium.envs.mujoco.{module}"), cls)()


def gymnasium_cost(name, info, terminated):
    """Safety-Gymnasium's cost (or the fall task's) from Gymnasium's own step info."""
    if name in FALL:
        return float(terminated)
    threshold, planar = VELOCITY[name]
    velocity = np.hypot(info["x_velocity"], info["y_velocity"]) if planar else info["x_velocity"]
    return float(velocity > threshold)


@pytest.mark.parametrize("name", list(GYMNASIUM))
def test_steps_match_gymnasium_v4(name):
    """From our reset states, with the same actions (uniform in [-1.5, 1.5]: outside the
    ctrlrange, so the control cost on the raw action and MuJoCo's clamp are both exercised),
    observation, reward, cost and termination agree with Gymnasium's v4 env step by step."""
    pytest.importorskip("gymnasium")
    pytest.importorskip("mujoco")
    env, step, state = _compiled(name)
    horizon = GYMNASIUM[name][2]
    theirs = [gymnasium_env(name) for _ in range(N)]
    for i, g in enumerate(theirs):
        g.reset(seed=i)
        g.set_state(np.asarray(state.pipeline_state.qpos[i], np.float64),
                    np.asarray(state.pipeline_state.qvel[i], np.float64))
        np.testing.assert_allclose(state.obs[i], g._get_obs(), atol=1e-6)
    rng = np.random.default_rng(0)
    terminations = contact_steps = 0
    for t in range(horizon):
        action = rng.uniform(-1.5, 1.5, (N, env.action_size)).astype(np.float32)
        state = step(state, jp.asarray(action))
        for i, g in enumerate(theirs):
            obs, reward, terminated, _, info = g.step(action[i].astype(np.float64))
            where = f"{name} env {i} step {t}"
            np.testing.assert_allclose(state.obs[i], obs, rtol=2e-3, atol=2e-3, err_msg=where)
            np.testing.assert_allclose(state.reward[i], reward, rtol=0, atol=1e-3, err_msg=where)
            assert float(state.done[i]) == float(terminated), where
            assert float(state.info["cost"][i]) == gymnasium_cost(name, info, terminated), where
            terminations += terminated
            contact_steps += name == "SafetyHumanoidVelocity" and np.any(obs[-84:] != 0)
    if name in FALL:  # the fall, and the cost it pays, are among what was compared
        assert terminations > 0
    if name == "SafetyHumanoidVelocity":  # so are the feet's contact forces (cfrc_ext, obs[-84:])
        assert contact_steps > 0


EPISODES, HORIZON = 64, 200  # per side, for the comparison in distribution


def _mean_and_standard_error(per_episode):
    per_episode = np.asarray(per_episode, np.float64)
    return per_episode.mean(axis=0), per_episode.std(axis=0, ddof=1) / np.sqrt(len(per_episode))


def _ours_per_episode(name):
    """Reward and cost per step of each of EPISODES episodes (at most HORIZON steps, ended by
    termination) under actions uniform in [-1, 1], from fresh resets. A while loop: the batch
    stops stepping once every episode has ended (a random Humanoid falls within ~50 steps)."""
    env = shapo_envs.make_env(name)

    def episode(key):
        reset_key, action_key = jax.random.split(key)
        actions = jax.random.uniform(action_key, (HORIZON, env.action_size), minval=-1.0, maxval=1.0)

        def running(carry):
            steps, _, done, _ = carry
            return (steps < HORIZON) & (done == 0)

        def body(carry):
            steps, state, _, sums = carry
            state = env.step(state, actions[steps])
            return steps + 1, state, state.done, sums + jp.stack([state.reward, state.info["cost"]])

        start = (0, env.reset(reset_key), jp.zeros(()), jp.zeros(2))
        steps, _, _, sums = jax.lax.while_loop(running, body, start)
        return sums / steps

    run = jax.jit(jax.vmap(episode), compiler_options=QUICK_COMPILE)
    return np.asarray(run(jax.random.split(jax.random.PRNGKey(7), EPISODES)))


def _gymnasium_per_episode(name):
    """The same statistics from Gymnasium's env stepping natively, its own resets."""
    g = gymnasium_env(name)
    rng = np.random.default_rng(7)
    out = []
    for episode in range(EPISODES):
        g.reset(seed=1000 + episode)
        rewards, costs = [], []
        for _ in range(HORIZON):
            _, reward, terminated, _, info = g.step(rng.uniform(-1.0, 1.0, g.action_space.shape))
            rewards.append(reward)
            costs.append(gymnasium_cost(name, info, terminated))
            if terminated:
                break
        out.append([np.mean(rewards), np.mean(costs)])
    return np.asarray(out)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(GYMNASIUM))
def test_random_policy_statistics_match_gymnasium_v4(name):
    """Mean reward and cost per step under a uniform random policy: ours and Gymnasium's
    differ by less than 4 standard errors of the difference (episodes independent)."""
    pytest.importorskip("gymnasium")
    ours, ours_se = _mean_and_standard_error(_ours_per_episode(name))
    theirs, theirs_se = _mean_and_standard_error(_gymnasium_per_episode(name))
    bound = 4.0 * np.sqrt(ours_se**2 + theirs_se**2) + 1e-9
    for k, what in enumerate(("reward", "cost")):
        print(f"{name} {what} per step: ours {ours[k]:.4f} +- {ours_se[k]:.4f}, "
              f"Gymnasium {theirs[k]:.4f} +- {theirs_se[k]:.4f}")
        assert abs(ours[k] - theirs[k]) <= bound[k], (name, what, ours[k], theirs[k], bound[k])
