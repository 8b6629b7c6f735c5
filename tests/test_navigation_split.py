"""Split-cost navigation tasks (issue 14): one constraint per costing kind of object.

``Safety{Point,Car}{Goal2,Button1,Button2,Push2}Split`` report ``info["cost"]`` of shape
(m,), one SG indicator per constrained kind (hazards, vases, gremlins, buttons, pillars
order), made from the same per-kind values (``info["cost_<kind>"]``) as the summed task's
indicator. A rollout checks, for one reset key and one action sequence, that the split
task's ``any(cost > 0)`` is the summed task's cost at every step, that each component is
``cost_<kind> > 0``, and that both tasks report the same per-kind values. So that every kind
costs, the first instance of each kind is moved onto the agent after reset: env k gets kind
k, env m all of them, the last env none; then the envs take uniform random actions.

Default run: the names, errors and shapes (traced, not compiled), and one compiled rollout of
SafetyPointButton1Split (three kinds). Every Split task against its summed task (two
compiles each, ~40 s for a Point task on 2 cores), and the reference physics, under ``-m slow``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax import numpy as jp

from compile_options import QUICK_COMPILE
import shapo_envs
from shapo_envs.navigation import COST_LIMIT, SPLIT_NAMES, tasks
from shapo_envs.navigation.env import NavigationEnv

STEPS = 25
# the Split tasks and their constraints, in order, as issue 14 lists them
EXPECTED = {
    f"Safety{robot}{task}Split": kinds
    for robot in ("Point", "Car")
    for task, kinds in (("Goal2", ("hazards", "vases")), ("Button1", ("hazards", "gremlins", "buttons")),
                        ("Button2", ("hazards", "gremlins", "buttons")), ("Push2", ("hazards", "pillars")))
}


def _parse(name):
    """``SafetyPointButton1Split`` -> ("Point", "Button", 1)."""
    body = name.removeprefix("Safety").removesuffix("Split")
    robot = "Point" if body.startswith("Point") else "Car"
    return robot, body[len(robot):-1], int(body[-1])


# ----------------------------------------------------------------------------- no compile
def test_split_names_registry_and_errors():
    assert set(SPLIT_NAMES) == set(EXPECTED)
    for name, kinds in EXPECTED.items():
        robot, kind, level = _parse(name)
        assert tasks.task_spec(kind, level, robot).cost_kinds == kinds
    # level 0 costs nothing; the level-1 Goal and Push tasks have one costing kind
    single = [(r, k, lv) for r in ("Point", "Car") for k in ("Goal", "Button", "Push") for lv in (0, 1, 2)
              if f"Safety{r}{k}{lv}Split" not in EXPECTED]
    assert all(len(tasks.task_spec(k, lv, r).cost_kinds) < 2 for r, k, lv in single) and len(single) == 10

    assert {n for n in shapo_envs.list_envs() if n.endswith("Split")} == set(EXPECTED)
    for name, kinds in EXPECTED.items():
        spec = shapo_envs.get_spec(name)
        assert spec.cost_limit == (COST_LIMIT,) * len(kinds) and spec.num_constraints == len(kinds)
        assert spec.episode_length == 1000 and spec.redraw_resets
        assert spec.description.endswith("one constraint per kind: " + ", ".join(kinds))
    with pytest.raises(shapo_envs.UnknownEnvError) as error:  # no Split variant of a one-kind task
        shapo_envs.make_env("SafetyPointGoal1Split")
    assert "\n" not in str(error.value) and "'SafetyPointGoal1Split'" in str(error.value)

    for robot, kind, level, what in (("Point", "Goal", 1, "(hazards)"), ("Car", "Push", 0, "(none)")):
        with pytest.raises(ValueError) as error:  # raised before the model is built
            NavigationEnv(robot, kind, level, split_cost=True)
        message = str(error.value)
        assert message.startswith(f"split_cost: Safety{robot}{kind}{level} ") and what in message
        assert "\n" not in message


# ----------------------------------------------------------------------------- rollouts
def _stage(env, state):
    """Moves the first instance of each costing kind onto the agent: env k gets kind k, env m
    (= number of kinds) every kind, the later envs none. Object geometry: SG sizes (tasks.py)."""
    d, info = state.pipeline_state, dict(state.info)
    agent = d.xpos[:, env._agent, :2]
    qpos, mocap, layout = d.qpos, d.mocap_pos, info["layout"]
    m = len(env.cost_kinds)
    for k, name in enumerate(env.cost_kinds):
        slot = env._slots[name][0]
        for e in (k, m):
            if name == "hazards":  # agent at a hazard's centre
                layout = layout.at[e, slot].set(agent[e])
            elif name == "vases":  # box of half-size 0.1, 0.15 from the agent's centre: touching
                q = env._free["vases"][1][0]
                qpos = qpos.at[e, q:q + 2].set(agent[e] + jp.array([0.15, 0.0]))
            elif name == "pillars":  # capsule of radius 0.2, 0.25 away: touching
                mocap = mocap.at[e, env._mocap["pillars"][0], :2].set(agent[e] + jp.array([0.25, 0.0]))
            elif name == "gremlins":  # circles its layout point at radius travel, from (0, travel) at t = 0
                travel = env.spec.object("gremlins").get("travel")
                layout = layout.at[e, slot].set(agent[e] - jp.array([0.0, travel]))
            elif name == "buttons":  # a wrong button (the goal button is another) 0.15 away: touching
                xy = agent[e] + jp.array([0.0, 0.15])
                layout = layout.at[e, slot].set(xy)
                mocap = mocap.at[e, env._mocap["buttons"][0], :2].set(xy)
                info["goal_button"] = info["goal_button"].at[e].set(1)
                info["goal"] = info["goal"].at[e].set(layout[e, env._slots["buttons"][1]])
    info["layout"] = layout
    return state.replace(pipeline_state=d.replace(qpos=qpos, mocap_pos=mocap), info=info)


def _rollout(env, keys, actions):
    """Per step, every ``cost*`` entry of ``info`` of the staged envs: (T, E, ...) arrays."""

    def run(keys, actions):
        state = _stage(env, jax.vmap(env.reset)(keys))

        def body(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, {k: v for k, v in s.info.items() if k.startswith("cost")}

        return jax.lax.scan(body, state, actions)[1]

    return jax.device_get(jax.jit(run, compiler_options=QUICK_COMPILE)(keys, actions))


def _split_rollout(robot, kind, level, **physics):
    """(split env, rollout of the staged split env, reset keys, actions)."""
    env = NavigationEnv(robot, kind, level, split_cost=True, **physics)
    assert env.cost_kinds == EXPECTED[f"Safety{robot}{kind}{level}Split"]
    envs = len(env.cost_kinds) + 2
    keys = jax.random.split(jax.random.PRNGKey(level), envs)
    actions = jax.random.uniform(jax.random.PRNGKey(7), (STEPS, envs, env.action_size), minval=-1, maxval=1)
    return env, _rollout(env, keys, actions), keys, actions


def _check_components(env, a):
    """Shapes; each component is ``cost_<kind> > 0``; the staging made every kind cost."""
    m, envs = len(env.cost_kinds), len(env.cost_kinds) + 2
    names = [f"cost_{k}" for k in env.cost_kinds]
    assert set(a) == {"cost", *names}
    assert a["cost"].shape == (STEPS, envs, m) and a["cost"].dtype == np.float32
    for j, key in enumerate(names):
        assert a[key].shape == (STEPS, envs) and a[key].dtype == np.float32 and np.all(a[key] >= 0)
        np.testing.assert_array_equal(a["cost"][..., j], (a[key] > 0).astype(np.float32))
    # each kind costs on the first step in the env it was put in, and all of them in env m
    np.testing.assert_array_equal(a["cost"][0, :m], np.eye(m, dtype=np.float32))
    np.testing.assert_array_equal(a["cost"][0, m], np.ones(m, np.float32))


def _check_against_summed(robot, kind, level, **physics):
    """The split task against the summed one, stepped with the same keys and actions."""
    split, a, keys, actions = _split_rollout(robot, kind, level, **physics)
    _check_components(split, a)
    b = _rollout(NavigationEnv(robot, kind, level, **physics), keys, actions)
    assert b["cost"].shape == a["cost"].shape[:2] and b["cost"].dtype == np.float32
    assert set(a) == set(b)
    for key in a:
        if key != "cost":  # the same per-kind values either way (the same physics)
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(np.any(a["cost"] > 0, axis=-1).astype(np.float32), b["cost"])
    np.testing.assert_array_equal(b["cost"][0, :len(split.cost_kinds) + 1], 1.0)


def test_split_shapes():
    """Traced, not compiled: the registered task's cost is (m,) and the per-kind values scalars,
    as the registry's check for m cost limits wants."""
    env = shapo_envs.make_env("SafetyPointGoal2Split")
    assert env.split_cost and env.cost_kinds == ("hazards", "vases")
    shapo_envs.registry.check_cost(env, "SafetyPointGoal2Split", num_constraints=2)
    state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    assert state.info["cost"].shape == (2,) and state.info["cost"].dtype == jp.float32
    assert state.info["cost_hazards"].shape == state.info["cost_vases"].shape == ()
    step = jax.eval_shape(env.step, state, jax.ShapeDtypeStruct((env.action_size,), jp.float32))
    assert jax.tree.structure(step.info) == jax.tree.structure(state.info)  # a scan carry
    assert step.info["cost"].shape == (2,) and step.reward.shape == ()


def test_split_point_button1():
    """One compile: the split rollout's components, and the summed task's indicator of the
    same per-kind values (its ``_cost``, no second compile) is ``any`` of them. The summed
    task's own rollout is compared under ``-m slow``."""
    env, a, _, _ = _split_rollout("Point", "Button", 1)
    _check_components(env, a)
    summed = NavigationEnv("Point", "Button", 1)
    values = {k: jp.asarray(v) for k, v in a.items() if k != "cost"}
    np.testing.assert_array_equal(summed._cost(values), np.any(a["cost"] > 0, axis=-1).astype(np.float32))
    assert 0 < a["cost"].sum() < a["cost"].size  # some steps cost, some do not


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED))
def test_split_matches_summed_slow(name):
    _check_against_summed(*_parse(name))


@pytest.mark.slow
def test_split_under_reference_physics():
    """The per-kind costs come from the same contacts and distances under SG's own physics
    (world.py ``reference``): Goal2, whose vases stand on their boxes there, not on feet."""
    _check_against_summed("Point", "Goal", 2, reference_physics=True)
