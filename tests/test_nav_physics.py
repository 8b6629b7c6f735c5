"""The navigation tasks' fast world against Safety-Gymnasium's physics (world.py ``reference``).

world.py edits the physics for speed: the Point off the floor, contacts with and among objects
at condim 3, vases and the push box on corner feet, sensors once per env step. Each edit is checked here
against native MuJoCo (float64) stepping the reference world, SG's physics without those edits;
statistics of whole tasks against SG itself are in test_navigation_fidelity.py.
"""

from __future__ import annotations

import jax
import mujoco
import numpy as np
import pytest
from jax import numpy as jp
from mujoco import mjx

from compile_options import LONG_RUN_COMPILE, QUICK_COMPILE
import shapo_envs
from shapo_envs.navigation import tasks, world
from shapo_envs.navigation.robots import POINT, ROBOTS

PUSH_STEPS, COAST_STEPS = 40, 40  # env steps driving straight ahead, then with zero action
FAR = 50.0


def _bare(env):
    while hasattr(env, "env"):
        env = env.env
    return env


# ----------------------------------------------------------------------------- model edits
def test_point_floor_contact_makes_no_constraint_natively():
    """Why the fast world may drop it: SG's Point on its own floor steps bit for bit alike with
    and without its floor contact (its slides fix its height; MuJoCo makes no row of it)."""
    xml = POINT.xml_path.read_text()
    off = xml.replace('<geom name="agent" type="sphere"', '<geom name="agent" contype="0" conaffinity="0" type="sphere"')
    off = off.replace('<geom name="pointarrow"', '<geom name="pointarrow" contype="0" conaffinity="0"')
    assert off.count('contype="0"') == 2
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (60, 2))
    trajectories = []
    for text in (xml, off):
        m = mujoco.MjModel.from_xml_string(text)
        d = mujoco.MjData(m)
        rows = 0
        for a in actions:
            d.ctrl[:] = a
            for _ in range(POINT.frameskip):
                mujoco.mj_step(m, d)
                rows = max(rows, d.nefc)
        trajectories.append((d.qpos.copy(), d.qvel.copy(), rows))
    (q0, v0, rows0), (q1, v1, rows1) = trajectories
    assert rows0 == rows1 == 0
    np.testing.assert_array_equal(q0, q1)
    np.testing.assert_array_equal(v0, v1)
    assert np.abs(q0[:2]).max() > 0.05  # it did move


def test_fast_world_structure():
    """What the fast world changes, and that the reference world keeps SG's contacts."""
    spec = tasks.task_spec("Push", 1, "Point")
    fast, _ = world.build_model(POINT, spec)
    ref, _ = world.build_model(POINT, spec, reference=True)
    floor = fast.geom("floor").id
    feet = [g for g in range(fast.ngeom) if "_foot" in fast.geom(g).name]
    assert len(feet) == 20  # the push box's five boxes, four bottom corners each
    assert fast.npair == 20 and set(fast.pair_geom1) == {floor} and set(fast.pair_geom2) == set(feet)
    assert (fast.pair_dim == int(world.FOOT_CONDIM)).all()
    np.testing.assert_allclose(fast.geom_size[feet, 0], world.FOOT_RADIUS)
    # the feet carry no mass: the box weighs what SG's does
    np.testing.assert_allclose(fast.body("push_box").mass, ref.body("push_box").mass, rtol=1e-12)
    for g in feet:  # a foot's lowest point is its box corner's
        assert abs(fast.geom_pos[g, 2] - fast.geom_size[g, 0] + tasks.PUSH_BOX["Point"][0]) < 1e-9
    agent = [g for g in range(fast.ngeom) if fast.geom_bodyid[g] == fast.body("agent").id]
    box = [g for g in range(fast.ngeom) if fast.geom_bodyid[g] == fast.body("push_box").id and g not in feet]
    assert set(fast.geom_condim[agent + box]) == {int(world.OBSTACLE_CONDIM)} and fast.geom("floor").condim == 6
    assert ref.npair == 0 and set(ref.geom_condim) == {6}
    # the Car keeps SG's condim 6 where it rolls on the floor (wheels, rear ball), not elsewhere
    car, _ = world.build_model(ROBOTS["Car"], tasks.task_spec("Goal", 1, "Car"))
    rolling = {car.geom(n).id for n in ("left", "right", "rear", "floor")}
    assert all((car.geom_condim[g] == 6) == (g in rolling) for g in range(car.ngeom) if "_foot" not in car.geom(g).name)

    def floor_pairs(m):
        from mujoco.mjx._src import collision_driver
        return {m.body(m.geom_bodyid[g2 if g1 == m.geom("floor").id else g1]).name
                for g1, g2, _ in collision_driver.geom_pairs(m) if m.geom("floor").id in (g1, g2)}

    assert floor_pairs(ref) == {"agent", "push_box"}
    assert floor_pairs(fast) == {"push_box"}  # through the feet only


# ----------------------------------------------------------------------------- pushed objects
def _native_displacements(name, obj, start_x, offsets):
    """Native MuJoCo on the reference world: the Point at the origin facing +x drives into
    ``obj`` placed at (start_x, offset); the object's XY displacement after push and coast."""
    robot, kind, level = "Point", name[len("SafetyPoint"):-1], int(name[-1])
    m, _ = world.build_model(POINT, tasks.task_spec(kind, level, robot), reference=True)
    body = m.body(obj).id
    qadr = m.jnt_qposadr[m.body_jntadr[body]]
    out = []
    for offset in offsets:
        d = mujoco.MjData(m)
        d.mocap_pos[:, :2] = FAR
        d.qpos[qadr:qadr + 2] = start_x, offset
        mujoco.mj_forward(m, d)
        start = d.xpos[body, :2].copy()
        for t in range(PUSH_STEPS + COAST_STEPS):
            d.ctrl[:] = (1.0, 0.0) if t < PUSH_STEPS else (0.0, 0.0)
            for _ in range(POINT.frameskip):
                mujoco.mj_step(m, d)
        out.append(d.xpos[body, :2] - start)
    return np.array(out)


def _mjx_displacements(name, obj_kind, start_x, offsets):
    """The same scripted push through the task's own ``env.step`` (the fast world on MJX)."""
    env = _bare(shapo_envs.make_env(name))
    n = len(offsets)
    # reset and forward run once: jitted (MJX op by op is slow), compiled quick
    state = jax.jit(jax.vmap(env.reset), compiler_options=QUICK_COMPILE)(jax.random.split(jax.random.PRNGKey(0), n))
    data = state.pipeline_state
    qpos = jax.vmap(env._set_pose)(data.qpos, jp.zeros((n, 2)), jp.zeros(n))
    xy = jp.stack([jp.full(n, start_x), jp.asarray(offsets, jp.float32)], -1)[:, None]
    qpos = jax.vmap(lambda q, p: env.place_object(q, obj_kind, p, jp.zeros(1)))(qpos, xy)
    data = data.replace(qpos=qpos, qvel=jp.zeros_like(data.qvel), mocap_pos=jp.full_like(data.mocap_pos, FAR))
    data = jax.jit(jax.vmap(lambda d: mjx.forward(env.sys, d)), compiler_options=QUICK_COMPILE)(data)
    body = env._free[obj_kind][0][0]
    start = data.xpos[:, body, :2]
    state = state.replace(pipeline_state=data, info={**state.info, "layout": jp.full_like(state.info["layout"], FAR)})

    def run(state):
        def body_fn(s, t):
            action = jp.where(t < PUSH_STEPS, jp.array([1.0, 0.0]), jp.zeros(2))
            return jax.vmap(env.step)(s, jp.tile(action, (n, 1))), None
        return jax.lax.scan(body_fn, state, jp.arange(PUSH_STEPS + COAST_STEPS))[0]

    final = jax.jit(run, compiler_options=LONG_RUN_COMPILE)(state)
    return np.asarray(final.pipeline_state.xpos[:, body, :2] - start)


@pytest.mark.parametrize("name,obj_kind,obj,start_x", [
    ("SafetyPointGoal1", "vases", "vase0", 0.3),
    pytest.param("SafetyPointPush1", "push_box", "push_box", 0.5, marks=pytest.mark.slow),
])
def test_pushed_object_displacement_matches_reference(name, obj_kind, obj, start_x):
    """Issue 12: a pushed vase or box moves as in SG's physics, within 10% on average.

    A pushed vase (8 mg) hops and turns: SG itself moves it 0.46 m or 0.73 m for starts 0.1 mm
    apart, so single pushes cannot be compared; the mean over 48 lateral offsets of the start
    can (its standard error is ~8% for the vase, ~1.4% for the box). Measured: vase 0.599 m
    against 0.564 m natively (1.06), push box 0.713 m against 0.719 m (0.99).
    """
    offsets = np.linspace(-0.12, 0.12, 48)
    native = np.linalg.norm(_native_displacements(name, obj, start_x, offsets), axis=1)
    fast = np.linalg.norm(_mjx_displacements(name, obj_kind, start_x, offsets), axis=1)
    assert native.mean() > 0.3  # the push happened
    ratio = fast.mean() / native.mean()
    assert abs(ratio - 1) <= 0.10, (ratio, native.mean(), fast.mean())


def test_sensors_after_last_substep_equal_a_full_forward():
    """The env computes sensors once, after its last substep: equal to a whole ``forward`` (up
    to float32 round-off: a second forward solves the constraints again from the warm start)."""
    env = _bare(shapo_envs.make_env("SafetyPointGoal1"))
    state = jax.jit(env.reset)(jax.random.PRNGKey(3))
    state = jax.jit(env.step)(state, jp.array([0.8, -0.4]))
    again = jax.jit(mjx.forward)(env.sys, state.pipeline_state)
    np.testing.assert_allclose(state.pipeline_state.sensordata, again.sensordata, rtol=2e-6, atol=1e-6)
    assert np.abs(np.asarray(state.pipeline_state.sensordata)).max() > 0


@pytest.mark.parametrize("robot", ["Point", "Car"])
def test_vases_start_at_rest_on_their_feet(robot):
    """SG's vases start at their rest on the floor (VASE_SINK), so an untouched vase never
    passes the 1e-4 m/s velocity threshold that costs (SG Vases.cal_cost); on feet they start
    at the fast world's rest (VASE_SINK_ON_FEET). Natively, every vase of Goal2, 20 env steps
    of zero action."""
    for reference in (True, False):
        m, _ = world.build_model(ROBOTS[robot], tasks.task_spec("Goal", 2, robot), reference=reference)
        d = mujoco.MjData(m)
        vases = [b for b in range(m.nbody) if m.body(b).name.startswith("vase")]
        for k, b in enumerate(vases):  # apart, away from the robot at the origin
            qadr = m.jnt_qposadr[m.body_jntadr[b]]
            d.qpos[qadr:qadr + 2] = k * 0.5 - 2.0, 1.5
        dofs = np.array([m.jnt_dofadr[m.body_jntadr[b]] for b in vases])[:, None] + np.arange(3)
        speed = 0.0
        for _ in range(20):
            for _ in range(ROBOTS[robot].frameskip):
                mujoco.mj_step(m, d)
            speed = max(speed, np.linalg.norm(d.qvel[dofs], axis=1).max())
        assert speed < 0.7 * tasks.VASE_VELOCITY_THRESHOLD, (reference, speed)
