"""SG navigation robots on MJX against native MuJoCo (envs/shapo_envs/navigation/robots.py).

Each robot is simulated alone (its XML is floor + robot) by native MuJoCo (float64, the
reference SG uses) and by MJX (float32), with one compiled env step per robot cached at module
level. The env step mirrors SG's ``simulation_forward``: set ctrl, ``frameskip`` physics
steps, forward, read sensors; it returns the sensors of the state it starts from, so that a
sensor comparison sees the same state on both sides.

Tolerances, from measurements (see robots.py for why Car differs on its first step):

* sensors at an identical state: measured at most 2e-7 apart (float32 round-off) except the
  accelerometer, which comes out of the constraint solver (Newton, run to its tolerance in
  float32 by MJX, float64 natively): measured <= 1.5e-5 m/s^2 on values of 10-25. Allowed:
  1e-5 (accelerometer 1e-3) plus 1e-4 relative, ~50x the measured gaps.
* Point trajectory: float32 round-off, amplified by stick/slip of the sliding friction:
  measured 1.6e-4 m after 50 env steps; 1e-3 m allowed.
* Car trajectory: the first physics step differs (contacts at exactly zero distance, see
  robots.py) and the free-rolling rear ball amplifies it. Measured: 2e-3 m after one env step
  and 6 cm after 1.5 m of straight driving from yaw 0; 5e-8 m after one step and 2 cm after
  50 steps here. Allowed: 1e-2 m after one step, 0.1 m + 5% of the distance after 50.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from compile_options import QUICK_COMPILE
from shapo_envs.navigation import robots as R

N_STEPS = 50
START_XY = np.array([0.3, -0.2])
START_YAW = 0.7


def _actions(n: int) -> np.ndarray:
    """A fixed action sequence that drives and turns, with a value outside [-1, 1] to clip."""
    k = np.arange(n)[:, None]
    a = np.concatenate([np.cos(0.15 * k) + 0.3, np.sin(0.1 * k) * 1.2], axis=1)
    return a.astype(np.float32)


@functools.cache
def _model(name: str) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(R.ROBOTS[name].xml_path))


def _reset_data(name: str, xy=START_XY, yaw=START_YAW) -> mujoco.MjData:
    """Native data at SG's reset pose, placed through the robot's pose_setter."""
    m = _model(name)
    d = mujoco.MjData(m)
    set_pose = R.ROBOTS[name].pose_setter(m)
    d.qpos[:] = np.asarray(set_pose(jnp.asarray(m.qpos0), jnp.asarray(xy), jnp.asarray(yaw)))
    mujoco.mj_forward(m, d)
    return d


def _native_sensors(name: str, m: mujoco.MjModel, d: mujoco.MjData) -> np.ndarray:
    """SG's BaseAgent.obs_sensor flattened: raw sensordata, ballquat -> mju_quat2Mat."""
    parts = []
    for key, _ in R.ROBOTS[name].observation_sensors:
        s = m.sensor(key)
        value = d.sensordata[s.adr[0] : s.adr[0] + s.dim[0]].copy()
        if s.type[0] == mujoco.mjtSensor.mjSENS_BALLQUAT:
            mat = np.zeros(9)
            mujoco.mju_quat2Mat(mat, value)
            value = mat
        parts.append(value)
    return np.concatenate(parts)


def _native_env_step(name, m, d, action) -> np.ndarray:
    """SG simulation_forward + obs on native MuJoCo; returns the sensors of the start state."""
    d.ctrl[:] = np.clip(action, -1.0, 1.0)
    mujoco.mj_forward(m, d)
    sensors = _native_sensors(name, m, d)
    for _ in range(R.ROBOTS[name].frameskip):
        mujoco.mj_step(m, d)
    return sensors


@functools.cache
def _mjx(name: str):
    """(mjx model, compiled env step) for a robot, compiled once per test session."""
    robot, m = R.ROBOTS[name], _model(name)
    mx = mjx.put_model(m)
    read = robot.sensor_reader(m)

    def physics_step(d, _):
        # mjx.step is forward + euler; split to read the sensors forward computed. One copy of
        # forward in the program keeps the compile short.
        d = mjx.forward(mx, d)
        return mjx.euler(mx, d), read(mx, d)

    def env_step(d, action):
        d = d.replace(ctrl=jnp.clip(action, -1.0, 1.0))
        d, sensors = jax.lax.scan(physics_step, d, None, length=robot.frameskip)
        return d, sensors[0]

    d0 = mjx.put_data(m, _reset_data(name))
    action = jnp.zeros(m.nu, jnp.float32)
    return mx, jax.jit(env_step, compiler_options=QUICK_COMPILE).lower(d0, action).compile()


@functools.cache
def _rollouts(name: str):
    """Native and MJX free runs from the same reset over the same actions: (xy, sensors) each."""
    m, (_, step) = _model(name), _mjx(name)
    d, dx = _reset_data(name), None
    dx = mjx.put_data(m, d)
    native_xy, native_s, mjx_xy, mjx_s = [], [], [], []
    for a in _actions(N_STEPS):
        native_s.append(_native_env_step(name, m, d, a))
        native_xy.append(d.body("agent").xpos[:2].copy())
        dx, s = step(dx, jnp.asarray(a))
        mjx_s.append(np.asarray(s))
        mjx_xy.append(np.asarray(dx.xpos[m.body("agent").id, :2]))
    return tuple(np.array(v) for v in (native_xy, native_s, mjx_xy, mjx_s))


def _sensor_tolerance(name: str) -> np.ndarray:
    """Per-entry absolute tolerance: see the module docstring."""
    tol = []
    for key, size in R.ROBOTS[name].observation_sensors:
        tol += [1e-3 if key == "accelerometer" else 1e-5] * size
    return np.array(tol)


@pytest.mark.parametrize("name", ["Point", "Car"])
def test_interface(name):
    robot = R.ROBOTS[name]
    m = _model(name)
    assert robot.name == name and robot.frameskip == 10 and robot.placement_keepout == 0.4
    assert robot.observation_sensors[:4] == (
        ("accelerometer", 3), ("velocimeter", 3), ("gyro", 3), ("magnetometer", 3))
    if name == "Car":
        assert robot.observation_sensors[4:] == (("ballangvel_rear", 3), ("ballquat_rear", 9))
    assert robot.observation_size == (12 if name == "Point" else 24)
    assert m.opt.timestep == {"Point": 0.002, "Car": 0.004}[name]  # SG assets/xmls/*.xml
    assert R.agent_z_height(robot) == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["Point", "Car"])
def test_sensors_match_native_at_same_state(name):
    """sensor_reader on MJX equals SG's obs_sensor on native MuJoCo, state by state.

    MJX is re-synced to the native state before every env step. Car's reset state is skipped:
    its contacts are at exactly zero distance there, which native counts and MJX does not.
    """
    m, (_, step) = _model(name), _mjx(name)
    d = _reset_data(name)
    tol = _sensor_tolerance(name)
    for k, a in enumerate(_actions(12)):
        got = np.asarray(step(mjx.put_data(m, d), jnp.asarray(a))[1])
        want = _native_env_step(name, m, d, a)
        assert got.dtype == np.float32 and got.shape == (R.ROBOTS[name].observation_size,)
        if name == "Car" and k == 0:
            continue
        np.testing.assert_array_less(np.abs(got - want), tol + 1e-4 * np.abs(want), err_msg=f"step {k}")


@pytest.mark.parametrize("name", ["Point", "Car"])
def test_trajectory_matches_native(name):
    native_xy, native_s, mjx_xy, mjx_s = _rollouts(name)
    err = np.linalg.norm(native_xy - mjx_xy, axis=1)
    travelled = np.linalg.norm(native_xy[-1] - START_XY)
    assert travelled > 0.1  # the actions really move the robot
    if name == "Point":
        assert err.max() < 1e-3
    else:
        assert err[0] < 1e-2
        assert err.max() < 0.1 + 0.05 * travelled
    # Heading stays close too (magnetometer: the world field seen in the body frame). The other
    # sensors are not compared on free runs: the agent slides on the floor with friction 1, and
    # stick/slip switches make accelerometer and gyro jump on tiny state differences.
    atol = 5e-3 if name == "Point" else 0.05  # |field| = 0.5
    np.testing.assert_allclose(mjx_s[:, 9:12], native_s[:, 9:12], atol=atol)


def _agent_pose(m, d):
    body = d.body("agent")
    mat = body.xmat.reshape(3, 3)
    return body.xpos.copy(), np.arctan2(mat[1, 0], mat[0, 0]), mat


@pytest.mark.parametrize("name", ["Point", "Car"])
@pytest.mark.parametrize("body_pose", ["", 'pos="1.5 -0.5 .1" quat="0.8 0 0 0.6"'])
def test_pose_setter(name, body_pose):
    """The agent lands at xy / yaw at SG's z_height, upright, whatever the compiled body pose."""
    xml = R.ROBOTS[name].xml_path.read_text()
    if body_pose:  # a world compiled with the agent elsewhere, as SG's own rebuilt XML would be
        xml = xml.replace('<body name="agent" pos="0 0 .1">', f'<body name="agent" {body_pose}>')
    m = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(m)
    set_pose = jax.jit(R.ROBOTS[name].pose_setter(m))
    for xy, yaw in [((0.0, 0.0), 0.0), ((1.2, -0.7), 2.5), ((-1.0, 0.4), -2.0), ((0.1, 1.9), 5.9)]:
        d.qpos[:] = np.asarray(set_pose(jnp.asarray(m.qpos0, jnp.float32), jnp.asarray(xy), jnp.asarray(yaw)))
        mujoco.mj_forward(m, d)
        pos, got_yaw, mat = _agent_pose(m, d)
        np.testing.assert_allclose(pos, [*xy, 0.1], atol=1e-5)
        assert abs(np.angle(np.exp(1j * (got_yaw - yaw)))) < 1e-5
        np.testing.assert_allclose(mat[:, 2], [0, 0, 1], atol=1e-6)


def _drive(name, action, n):
    """MJX run of a constant action from the reset pose; (start pose, end pose)."""
    m, (_, step) = _model(name), _mjx(name)
    d = _reset_data(name)
    dx = mjx.put_data(m, d)
    for _ in range(n):
        dx, _ = step(dx, jnp.asarray(action, jnp.float32))
    mujoco.mj_resetData(m, d)
    d.qpos[:], d.qvel[:] = np.asarray(dx.qpos), np.asarray(dx.qvel)
    mujoco.mj_forward(m, d)
    return _agent_pose(m, _reset_data(name)), _agent_pose(m, d)


def test_point_actions():
    """SG Point: action[0] pushes along the heading (the arrow, body +x), action[1] turns."""
    (p0, yaw0, mat0), (p1, yaw1, _) = _drive("Point", [1.0, 0.0], 10)
    move = p1[:2] - p0[:2]
    assert np.linalg.norm(move) > 0.03
    assert move @ mat0[:2, 0] > 0.99 * np.linalg.norm(move)
    assert abs(yaw1 - yaw0) < 1e-3
    (p0, yaw0, _), (p1, yaw1, _) = _drive("Point", [0.0, 1.0], 10)
    assert np.linalg.norm(p1[:2] - p0[:2]) < 0.01
    assert np.angle(np.exp(1j * (yaw1 - yaw0))) > 0.3  # positive action turns counter-clockwise


def test_car_actions():
    """SG Car: equal wheel torques drive straight (along body -y), opposite torques turn."""
    (p0, yaw0, mat0), (p1, yaw1, _) = _drive("Car", [1.0, 1.0], 10)
    move = p1[:2] - p0[:2]
    assert np.linalg.norm(move) > 0.2
    assert move @ -mat0[:2, 1] > 0.99 * np.linalg.norm(move)
    assert abs(np.angle(np.exp(1j * (yaw1 - yaw0)))) < 0.05
    (p0, yaw0, _), (p1, yaw1, _) = _drive("Car", [1.0, -1.0], 10)
    assert abs(np.angle(np.exp(1j * (yaw1 - yaw0)))) > 0.3


def _strip_mjx_edits(xml: str) -> str:
    """SG's original car.xml from ours: drop the wheel proxies and the collision bits."""
    xml = re.sub(r'\s*<geom type="sphere" name="\w+_proxy"[^>]*/>', "", xml)
    xml = xml.replace(' iterations="10" ls_iterations="10"', "")
    xml = re.sub(r"\s*<!-- MJX edit: the wheels' proxies never meet.*?</contact>", "", xml, flags=re.S)
    return re.sub(r' (contype|conaffinity)="\d"', "", xml)


def test_car_mjx_edits_keep_sg_physics():
    """Alone on the floor, the edited car steps bit for bit like SG's original XML."""
    xml = R.CAR.xml_path.read_text()
    original = _strip_mjx_edits(xml)
    assert "_proxy\"" not in original and 'contype="' not in original
    models = [mujoco.MjModel.from_xml_string(x) for x in (xml, original)]
    np.testing.assert_array_equal(models[0].body_mass, models[1].body_mass)
    datas = [mujoco.MjData(m) for m in models]
    for a in _actions(300):
        for m, d in zip(models, datas):
            d.ctrl[:] = a
            mujoco.mj_step(m, d)
    np.testing.assert_array_equal(datas[0].qpos, datas[1].qpos)


def test_car_excluded_pairs_cannot_touch():
    """car.xml excludes the wheels' proxies against the rear ball: over a random drive natively
    their centres stay 0.2385 m apart, far beyond the 0.1 m their radii reach."""
    m = mujoco.MjModel.from_xml_string(R.CAR.xml_path.read_text())
    d = mujoco.MjData(m)
    gap = []
    for a in _actions(300):
        d.ctrl[:] = a
        mujoco.mj_step(m, d)
        for proxy in ("left_proxy", "right_proxy"):
            gap.append(np.linalg.norm(d.geom(proxy).xpos - d.geom("rear").xpos) - m.geom(proxy).size[0] - m.geom("rear").size[0])
    assert min(gap) > 0.13 and np.ptp(gap) < 1e-6
    assert np.linalg.norm(d.body("agent").xpos[:2]) > 0.05  # it drove
    from mujoco.mjx._src import collision_driver
    names = {frozenset((m.geom(g1).name, m.geom(g2).name)) for g1, g2, _ in collision_driver.geom_pairs(m)}
    assert not any("rear" in p and p & {"left_proxy", "right_proxy"} for p in names)


def test_car_wheels_meet_boxes_through_proxies():
    """MJX has no cylinder-box collision: a box at the wheel touches the wheel's sphere proxy.
    (The box has contype 3 like the push box: car.xml's floor meets only contype bit 2.)"""
    box = '<body name="box" pos="0.2 0.1 .05"><freejoint/><geom name="box" type="box" size=".05 .05 .05" contype="3"/></body>'
    xml = R.CAR.xml_path.read_text().replace("</worldbody>", box + "</worldbody>")
    m = mujoco.MjModel.from_xml_string(xml)
    mjx.put_model(m)  # raises NotImplementedError for a cylinder-box pair
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    pairs = {frozenset((m.geom(c.geom[0]).name, m.geom(c.geom[1]).name)) for c in d.contact[: d.ncon]}
    assert {"right_proxy", "box"} in pairs and {"floor", "box"} in pairs
    assert {"floor", "right"} in pairs and {"floor", "left"} in pairs
    assert not any(p & {"left_proxy", "right_proxy"} and "floor" in p for p in pairs)
