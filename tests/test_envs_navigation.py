"""Safety-Gymnasium navigation tasks on MJX: layouts, lidar, costs, goals, smoke under vmap+jit.

The layout sampler and the lidar are pure JAX and are checked without physics. Each MJX task
compiles one batched reset and one batched step (module-level cache, XLA optimisation turned
down as in test_envs_locomotion.py); the scenario tests edit the reset state (same shapes, no
recompile) and step it. Compiling is ~30-40 s per task on a small CPU, so the default run
compiles four tasks (Point Goal1/Button1/Push1 and Car Goal1); the other fourteen are smoked
under ``-m slow``.
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pytest
from jax import numpy as jp

from compile_options import QUICK_COMPILE
import shapo_envs
from shapo_envs.navigation import NAMES, layout, lidar, tasks

N = 2  # envs per batch
DEFAULT = ("SafetyPointGoal1", "SafetyPointButton1", "SafetyPointPush1", "SafetyCarGoal1")
FAR = 50.0  # where objects are moved to be out of the way


@functools.lru_cache(maxsize=None)
def _compiled(name):
    """(env, jitted vmapped step, reset state of N envs): one compile of each per task."""
    env = shapo_envs.make_env(name)
    reset = jax.jit(jax.vmap(env.reset), compiler_options=QUICK_COMPILE)
    step = jax.jit(jax.vmap(env.step), compiler_options=QUICK_COMPILE)
    return env, step, reset(jax.random.split(jax.random.PRNGKey(0), N))


def _place_agent(env, state, xy, yaw=(0.0, 0.0)):
    qpos = jax.vmap(env._set_pose)(state.pipeline_state.qpos, jp.asarray(xy, jp.float32), jp.asarray(yaw, jp.float32))
    return state.replace(pipeline_state=state.pipeline_state.replace(qpos=qpos))


def _with_layout(state, slots, xy):
    """The state with layout slots (hazards, buttons, gremlin centres...) moved to ``xy``."""
    return state.replace(info={**state.info, "layout": state.info["layout"].at[:, slots].set(xy)})


def _zeros(env):
    return jp.zeros((N, env.action_size))


# ----------------------------------------------------------------------------- registry
def test_registry_and_observation_sizes():
    assert set(NAMES) <= set(shapo_envs.list_envs()) and len(NAMES) == 18
    for name in NAMES:
        spec = shapo_envs.get_spec(name)
        assert (spec.cost_limit, spec.episode_length) == (25.0, 1000) and spec.description
        env = spec.factory()
        sensors = 12 if "Point" in name else 24  # SG: 4 sensors x 3, Car + ballangvel 3 + ballquat 9
        assert env.observation_size == sensors + 16 * len(env.spec.objects), name
        assert env.action_size == 2 and env.backend == "mjx"
        if name.endswith("0"):  # level 0 pays no cost
            assert not any(o.constrained for o in env.spec.objects)
    # SG 1.0.0's flat observation sizes
    assert shapo_envs.make_env("SafetyPointGoal1").observation_size == 60
    assert shapo_envs.make_env("SafetyCarGoal1").observation_size == 72


# ----------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("kind", ["Goal", "Button", "Push"])
def test_layouts_valid_and_random(kind):
    """Many keys per task: every layout complete, inside the extents, keepouts respected, and
    all different. (Point and Car layouts differ only in Push, by the box's keepout.)"""
    keys = jax.random.split(jax.random.PRNGKey(1), 128)
    for robot, level in [("Point", 0), ("Point", 1), ("Point", 2)] + ([("Car", 2)] if kind == "Push" else []):
        spec = tasks.task_spec(kind, level, robot)
        keepouts = np.array([0.4] + [o.keepout for o in spec.objects for _ in range(o.num)], np.float32)
        xy, ok = jax.jit(jax.vmap(lambda k: layout.sample_layout(k, keepouts, spec.extents)))(keys)
        assert bool(ok.all()), (kind, level)
        clearance = jax.vmap(lambda p: layout.min_clearance(p, keepouts))(xy)
        assert float(clearance.min()) >= -1e-6, (kind, level)
        hi = spec.extents[2] - keepouts
        assert np.all(np.abs(np.asarray(xy)) <= hi[None, :, None] + 1e-6)
        # different keys, different layouts
        assert np.unique(np.round(np.asarray(xy[:, 0]), 4), axis=0).shape[0] == len(keys)


def test_goal_resampling_respects_keepouts():
    others = jp.array([[0.0, 0.0], [0.8, 0.0], [-0.5, 0.7]])
    keep = jp.array([0.4, 0.18, 0.15])
    goals, oks = jax.vmap(lambda k: layout.sample_goal(k, 0.305, others, keep, (-1.5, -1.5, 1.5, 1.5)))(
        jax.random.split(jax.random.PRNGKey(2), 256))
    assert bool(oks.all())
    dist = np.linalg.norm(np.asarray(goals)[:, None] - np.asarray(others)[None], axis=-1)
    assert np.all(dist >= np.asarray(keep) + 0.305)
    assert np.all(np.abs(np.asarray(goals)) <= 1.5 - 0.305)
    # no room at all: not ok (the env then ends the episode, as SG's resampling failure)
    _, ok = layout.sample_goal(jax.random.PRNGKey(0), 0.305, others, jp.array([5.0, 5.0, 5.0]), (-1, -1, 1, 1))
    assert not bool(ok)


# ----------------------------------------------------------------------------- lidar
def _sg_lidar(positions, agent_pos, agent_mat, num_bins=16, max_dist=3.0):
    """SG bases/base_task.py _obs_lidar_pseudo, verbatim in numpy (alias on)."""
    obs = np.zeros(num_bins)
    for pos in positions:
        ego = np.matmul(np.concatenate([pos[:2], [0]]) - agent_pos, agent_mat)[:2]
        z = complex(*ego)
        dist, angle = np.abs(z), np.angle(z) % (np.pi * 2)
        bin_size = (np.pi * 2) / num_bins
        b = int(angle / bin_size)
        sensor = max(0, max_dist - dist) / max_dist
        obs[b] = max(obs[b], sensor)
        alias = (angle - bin_size * b) / bin_size
        obs[(b + 1) % num_bins] = max(obs[(b + 1) % num_bins], alias * sensor)
        obs[(b - 1) % num_bins] = max(obs[(b - 1) % num_bins], (1 - alias) * sensor)
    return obs


def test_lidar_by_hand():
    eye, origin = jp.eye(3), jp.zeros(3)
    # one object 1 m straight ahead: bin 0 reads (3 - 1) / 3; alias 0 puts it all on bin 15 too
    out = np.asarray(lidar.pseudo_lidar(jp.array([[1.0, 0.0]]), origin, eye))
    expected = np.zeros(16)
    expected[0] = expected[15] = 2 / 3
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # 1.5 m away in the middle of bin 1: 0.5 there, 0.25 on bins 0 and 2
    a = 1.5 * 2 * math.pi / 16
    out = np.asarray(lidar.pseudo_lidar(jp.array([[1.5 * math.cos(a), 1.5 * math.sin(a)]]), origin, eye))
    expected = np.zeros(16)
    expected[1], expected[0], expected[2] = 0.5, 0.25, 0.25
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # the agent turned by 90 degrees sees a point on world +y straight ahead; beyond 3 m reads 0
    rot = jp.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out = np.asarray(lidar.pseudo_lidar(jp.array([[2.0, 3.0], [9.0, 0.0]]), jp.array([2.0, 1.0, 0.1]), rot))
    expected = np.zeros(16)
    expected[0] = expected[15] = 1 / 3
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # a random scene against SG's own loop
    rng = np.random.default_rng(0)
    pos = rng.uniform(-2, 2, (10, 3))
    yaw = 0.7
    mat = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    agent = np.array([0.3, -0.2, 0.1])
    np.testing.assert_allclose(lidar.pseudo_lidar(jp.asarray(pos), jp.asarray(agent), jp.asarray(mat)),
                               _sg_lidar(pos, agent, mat), atol=1e-5)


# ----------------------------------------------------------------------------- MJX smoke
def _smoke(name):
    env, step, s0 = _compiled(name)
    s1 = step(s0, jax.random.uniform(jax.random.PRNGKey(1), (N, env.action_size), minval=-1, maxval=1))
    for s in (s0, s1):
        assert s.obs.shape == (N, env.observation_size)
        for x in (s.reward, s.done, s.info["cost"]):
            assert x.shape == (N,)
        assert s.info["cost"].dtype == jp.float32
        assert np.isfinite(np.asarray(s.obs)).all() and np.isfinite(np.asarray(s.reward)).all()
        assert set(np.asarray(s.info["cost"]).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(s0.info["cost"], 0.0)  # SG asserts no cost at reset
    assert not np.allclose(s0.obs[0], s0.obs[1])  # two keys, two layouts
    assert np.abs(np.asarray(s1.reward)).max() < 1.0  # one step of progress is small


@pytest.mark.parametrize("name", DEFAULT)
def test_smoke(name):
    _smoke(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n not in DEFAULT])
def test_smoke_slow(name):
    _smoke(name)


# ----------------------------------------------------------------------------- costs, goals
def test_hazard_cost():
    """SG Hazards.cal_cost: cost where the agent is within the hazard radius (0.2), then the
    indicator: 1 at 0.1 from a hazard's centre, 0 at 0.3."""
    env, step, s0 = _compiled("SafetyPointGoal1")
    hazards = env._slots["hazards"]
    agent = np.asarray(s0.pipeline_state.xpos[:, env._agent, :2])
    xy = np.full((N, len(hazards), 2), FAR, np.float32)
    xy[:, 0] = agent + np.array([[0.1, 0.0], [0.3, 0.0]])
    s = _with_layout(s0, hazards, jp.asarray(xy))
    s = s.replace(info={**s.info, "layout": s.info["layout"].at[:, env._slots["vases"]].set(FAR)})
    s1 = step(s, _zeros(env))
    np.testing.assert_array_equal(s1.info["cost"], [1.0, 0.0])
    assert abs(float(tasks.HAZARD_SIZE - 0.1) * tasks.HAZARD_COST - 0.1) < 1e-9  # the shaped value before the indicator


def test_goal_reached_bonus_and_new_goal():
    env, step, s0 = _compiled("SafetyPointGoal1")
    agent = np.asarray(s0.pipeline_state.xpos[:, env._agent, :2])
    goal = agent + np.array([[0.1, 0.0], [1.0, 0.0]], np.float32)  # env 0 inside the goal (0.3)
    dist = np.linalg.norm(goal - agent, axis=-1)
    s = s0.replace(info={**s0.info, "goal": jp.asarray(goal), "last_dist_goal": jp.asarray(dist, jp.float32)})
    s1 = step(s, _zeros(env))
    np.testing.assert_array_equal(s1.info["goal_met"], [1.0, 0.0])
    assert 0.95 < float(s1.reward[0]) < 1.05 and abs(float(s1.reward[1])) < 0.05
    np.testing.assert_allclose(s1.info["goal"][1], goal[1])
    new = np.asarray(s1.info["goal"][0])
    assert np.linalg.norm(new - goal[0]) > 1e-3
    # the new goal respects every keepout against the current positions (SG sample_goal_position)
    keep = env._keepouts
    xy = np.asarray(s1.info["layout"][0]).copy()
    xy[0] = np.asarray(s1.pipeline_state.xpos[0, env._agent, :2])
    xy[env._slots["vases"]] = np.asarray(s1.pipeline_state.xpos[0, env._free["vases"][0], :2])
    others = env._others
    assert np.all(np.linalg.norm(xy[others] - new, axis=-1) >= keep[others] + keep[env._goal_slot] - 1e-6)
    assert np.all(np.abs(new) <= env.spec.extents[2] - keep[env._goal_slot])
    assert float(s1.done.max()) == 0.0


def test_button_pressed_wrongly_and_goal_button():
    """Touching a wrong button costs 1 (SG Buttons.cal_cost); touching the goal button pays the
    bonus, draws a goal button and hides the buttons' lidar for 10 steps (SG ButtonLevel0)."""
    env, step, s0 = _compiled("SafetyPointButton1")
    s = _with_layout(s0, env._slots["hazards"], FAR)
    s = _with_layout(s, env._slots["gremlins"], FAR)
    buttons = np.asarray(s.info["layout"][:, env._slots["buttons"]])
    s = _place_agent(env, s, buttons[:, 0] + np.array([0.0, 0.19]), yaw=(-math.pi / 2, -math.pi / 2))
    goal_button = jp.array([1, 0], jp.int32)  # env 0 touches a wrong button, env 1 its goal
    s = s.replace(info={**s.info, "goal_button": goal_button,
                        "goal": jp.asarray(buttons[np.arange(N), [1, 0]]),
                        "last_dist_goal": jp.zeros(N)})
    s1 = step(s, _zeros(env))
    np.testing.assert_array_equal(s1.info["cost"], [1.0, 0.0])
    np.testing.assert_array_equal(s1.info["goal_met"], [0.0, 1.0])
    np.testing.assert_array_equal(s1.info["timer"], [0, tasks.BUTTON_RESAMPLING_DELAY])
    assert float(s1.reward[1]) > 0.5
    k = 12 + 16 * [o.name for o in env.spec.objects].index("buttons")
    assert np.asarray(s1.obs[1, k:k + 16]).max() == 0.0 and np.asarray(s1.obs[0, k:k + 16]).max() > 0.0
    # with the timer running, wrong buttons cost nothing
    s2 = step(s1.replace(info={**s1.info, "timer": jp.array([5, 5], jp.int32)}), _zeros(env))
    np.testing.assert_array_equal(s2.info["cost"], [0.0, 0.0])


def test_push_box_moves():
    env, step, s0 = _compiled("SafetyPointPush1")
    s = _with_layout(s0, env._slots["hazards"], FAR)
    ps = s.pipeline_state
    ps = ps.replace(mocap_pos=ps.mocap_pos.at[:, env._mocap["pillars"], :2].set(FAR))
    box_q = env._free["push_box"][1][0]
    box = env.spec.object("push_box").size
    agent = np.array([[0.0, 0.0], [0.0, 0.0]], np.float32)
    qpos = ps.qpos.at[:, box_q:box_q + 2].set(jp.asarray(agent + [[0.16 + box, 0.0], [-0.5 - box, 0.0]]))
    qpos = qpos.at[:, box_q + 3:box_q + 7].set(jp.array([1.0, 0, 0, 0]))
    s = _place_agent(env, s.replace(pipeline_state=ps.replace(qpos=qpos)), agent)
    before = np.asarray(s.pipeline_state.qpos[:, box_q:box_q + 2])
    forward = jp.tile(jp.array([1.0, 0.0]), (N, 1))
    for _ in range(25):
        s = step(s, forward)
    moved = np.asarray(s.pipeline_state.qpos[:, box_q:box_q + 2]) - before
    assert moved[0, 0] > 0.05, moved  # pushed ahead of the agent
    assert np.abs(moved[1]).max() < 1e-3, moved  # the box behind it stays put
