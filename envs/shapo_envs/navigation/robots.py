"""Safety-Gymnasium's navigation robots (Point, Car) for MJX: XML, placement and sensors.

Each :class:`Robot` carries what the navigation world needs from the robot and nothing else:
the robot's MJCF (verbatim copies of Safety-Gymnasium 1.0.0 ``assets/xmls/{point,car}.xml``,
which mujoco-mjx 3.17 runs unchanged), the sensor part of SG's observation, SG's placement
keepout and frameskip, and two factories that close over a compiled *world* model containing
the robot:

* ``pose_setter(mj_model)`` -> ``fn(qpos, xy, yaw) -> qpos``: put the agent where SG's reset
  puts it (SG ``world.py`` rebuilds the XML with the agent body at ``(xy, z_height)`` and quat
  ``rot2quat(yaw)``; with a fixed MJX model we reach the same world pose through the joints).
* ``sensor_reader(mj_model)`` -> ``fn(model, data) -> (obs_dim,) float32``: SG's
  ``BaseAgent.obs_sensor`` (SG ``bases/base_agent.py``) read from ``data.sensordata``.

Two things the caller must do as SG does (SG ``bases/underlying.py`` ``simulation_forward``
and ``bases/base_task.py`` ``obs``):

* run ``frameskip`` physics steps per env step with the action clipped to ``[-1, 1]``, then
  ``mjx.forward`` once before reading sensors. ``mjx.step`` computes ``sensordata`` *before*
  it integrates, so right after a step the sensors describe the previous state.
* keep the robot XML's ``<option timestep>`` (Point 0.002 s, Car 0.004 s): SG's world uses the
  robot file as the base of the world XML, so the timestep is the robot's.

MJX vs native MuJoCo, measured in ``tests/test_nav_robots.py``:

* Point: MJX matches native MuJoCo to float32 round-off: sensors at the same state within
  2e-5, positions within 2e-4 m after 50 env steps (sliding-friction stick/slip amplifies it).
* Car: SG resets the car with its wheels and rear ball *exactly* touching the floor
  (distance 0). Native MuJoCo keeps contacts with ``dist <= margin``; MJX activates a contact
  row only for ``dist - margin < 0`` (``mjx/_src/constraint.py``), so for the first physics
  step of an episode MJX has no contact force and native has one, picked by round-off (one
  contact per wheel, on a different rim for the left and right wheel, which is why native SG's
  car drifts sideways when driven straight). From a settled state the two agree to round-off
  (same contacts, same ``qacc``); the free-rolling rear ball then makes trajectories diverge
  slowly, as any perturbation does. No XML edit can remove this without moving SG's start pose.
* Collisions: MJX 3.17 has no cylinder-box (nor cylinder-mesh) collision and
  ``mjx.put_model`` refuses a model with such a pair. ``assets/car.xml`` therefore lets the
  wheel cylinders touch only the floor (contype 2; the floor's conaffinity is 2) and gives
  each wheel a massless sphere proxy (``left_proxy``/``right_proxy``, radius of the wheel,
  at its centre) for contacts with obstacles; alone on the floor the edited car steps bit for
  bit like SG's. A world must keep the robot file's floor (with ``conaffinity="2"``) and count
  the proxies among the agent's geoms. Cylinder obstacles (SG's pillars) still cannot meet
  box geoms (Point's ``pointarrow``, Car's body and bumpers) in MJX; the world has to model
  pillars with a shape MJX collides with boxes (e.g. a convex mesh prism).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

ASSETS = pathlib.Path(__file__).parent / "assets"

# SG bases/base_agent.py SensorConf.sensors: the explicitly listed sensors, in this order.
_BASE_SENSORS = (("accelerometer", 3), ("velocimeter", 3), ("gyro", 3), ("magnetometer", 3))

# SG bases/underlying.py: frameskip_binom_n=10, frameskip_binom_p=1.0, i.e. always 10.
_FRAMESKIP = 10

# SG agents/point.py, agents/car.py: keepout=0.4 (the BaseAgent default, not overridden by
# the Goal/Button/Push tasks; only Run/Circle set agent.keepout = 0).
_KEEPOUT = 0.4


@dataclasses.dataclass(frozen=True)
class Robot:
    """One SG navigation robot; see the module docstring for the contract."""

    name: str
    xml_path: pathlib.Path
    observation_sensors: tuple[tuple[str, int], ...]
    placement_keepout: float
    frameskip: int

    @property
    def observation_size(self) -> int:
        """Length of the flat sensor part of the observation."""
        return sum(size for _, size in self.observation_sensors)

    def pose_setter(self, mj_model: mujoco.MjModel) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
        """fn(qpos, xy (2,), yaw ()) -> qpos with the agent body at ``xy``, heading ``yaw``.

        Only the agent's root joints are written; other robot joints (Car wheels, rear ball)
        keep the values in ``qpos`` (pass ``mj_model.qpos0`` to get SG's reset state).
        """
        joint_type = mj_model.jnt_type[_joint_id(mj_model, _ROOT_JOINTS[self.name][0])]
        if joint_type == mujoco.mjtJoint.mjJNT_FREE:
            return _free_pose_setter(mj_model, _ROOT_JOINTS[self.name][0], agent_z_height(self))
        return _planar_pose_setter(mj_model, *_ROOT_JOINTS[self.name])

    def sensor_reader(self, mj_model: mujoco.MjModel) -> Callable[[mjx.Model, mjx.Data], jax.Array]:
        """fn(model, data) -> flat float32 sensor observation, in ``observation_sensors`` order.

        ``data`` must be fresh from ``mjx.forward`` (see module docstring). Sensors are looked
        up by name in ``mj_model``; ``ballquat*`` is turned into a row-major 3x3 rotation
        matrix like SG's ``quat2mat`` (SG bases/base_agent.py, sensors_angle_components=True).
        """
        slices = []
        for key, size in self.observation_sensors:
            sensor = mj_model.sensor(key)
            is_quat = int(sensor.type[0]) == mujoco.mjtSensor.mjSENS_BALLQUAT
            dim = int(sensor.dim[0])
            if dim != (4 if is_quat else size) or (is_quat and size != 9):
                raise ValueError(f"sensor {key!r} has dim {dim}, expected flat size {size}")
            slices.append((int(sensor.adr[0]), dim, is_quat))

        def read(model: mjx.Model, data: mjx.Data) -> jax.Array:
            del model  # the layout is fixed by mj_model
            parts = []
            for adr, dim, is_quat in slices:
                value = data.sensordata[adr : adr + dim]
                parts.append(quat_to_mat(value).reshape(9) if is_quat else value)
            return jnp.concatenate(parts).astype(jnp.float32)

        return read


# Root joint names in SG's robot XMLs: Point's planar slide-slide-hinge, Car's free joint.
_ROOT_JOINTS = {"Point": ("x", "y", "z"), "Car": ("agent",)}


def quat_to_mat(quat: jax.Array) -> jax.Array:
    """3x3 rotation matrix of a quaternion (w, x, y, z), exactly MuJoCo's ``mju_quat2Mat``.

    SG's ``utils/task_utils.py quat2mat`` calls ``mju_quat2Mat`` on the ``ballquat`` sensor,
    which MuJoCo (and MJX) already normalised; ``mju_quat2Mat`` itself does not normalise.
    """
    w, x, y, z = quat[0], quat[1], quat[2], quat[3]
    return jnp.array(
        [
            [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
        ]
    )


def yaw_quat(yaw: jax.Array) -> jax.Array:
    """Quaternion of a rotation by ``yaw`` about world z; SG ``utils/common_utils.py rot2quat``."""
    return jnp.array([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])


@functools.cache
def _robot_alone_z_height(xml_path: pathlib.Path) -> float:
    """SG ``BaseAgent.z_height``: the agent body's z after ``mj_forward`` on the robot XML alone."""
    model = mujoco.MjModel.from_xml_path(str(xml_path))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return float(data.body("agent").xpos[2])


def agent_z_height(robot: Robot) -> float:
    """Height SG places the agent body at on reset (0.1 for both Point and Car)."""
    return _robot_alone_z_height(robot.xml_path)


def _joint_id(mj_model: mujoco.MjModel, name: str) -> int:
    return mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_JOINT, name)


def _free_pose_setter(mj_model: mujoco.MjModel, joint: str, z_height: float):
    """Car: the free joint's qpos is the body's world pose (pos, quat), set like SG's reset."""
    jid = _joint_id(mj_model, joint)
    if jid < 0:
        raise ValueError(f"world model has no joint {joint!r}")
    adr = int(mj_model.jnt_qposadr[jid])

    def set_pose(qpos: jax.Array, xy: jax.Array, yaw: jax.Array) -> jax.Array:
        pose = jnp.concatenate([xy, jnp.array([z_height]), yaw_quat(yaw)]).astype(qpos.dtype)
        return qpos.at[adr : adr + 7].set(pose)

    return set_pose


def _planar_pose_setter(mj_model: mujoco.MjModel, slide_x: str, slide_y: str, hinge: str):
    """Point: solve the slide/hinge joint values that put the body at (xy, yaw).

    SG rebuilds the XML with the body at ``(xy, z)`` rotated by ``yaw`` and all joints at 0, so
    its slide axes turn with the start heading. Here the body frame is the compiled one and the
    joints carry the pose; both slides have the same damping (0.01, no armature, limits or
    friction loss), so the dynamics are the same, only the (unobserved) x/y qpos values differ.
    """
    ids = [_joint_id(mj_model, n) for n in (slide_x, slide_y, hinge)]
    if min(ids) < 0:
        raise ValueError(f"world model lacks one of the joints {slide_x, slide_y, hinge}")
    body = int(mj_model.jnt_bodyid[ids[0]])
    body_rot = np.zeros(9)
    mujoco.mju_quat2Mat(body_rot, mj_model.body_quat[body])
    body_rot = body_rot.reshape(3, 3)
    if not np.allclose(body_rot[:, 2], [0, 0, 1]) or not np.allclose(mj_model.jnt_axis[ids[2]], [0, 0, 1]):
        raise ValueError("planar robot body must be upright with its hinge about z")
    if mj_model.body_parentid[body] != 0:
        raise ValueError("planar robot body must be a child of the world body")
    axes = body_rot @ mj_model.jnt_axis[ids[:2]].T  # world directions of the two slides
    to_joint = jnp.asarray(np.linalg.inv(axes[:2]), jnp.float32)
    origin = jnp.asarray(mj_model.body_pos[body, :2], jnp.float32)
    yaw0 = float(np.arctan2(body_rot[1, 0], body_rot[0, 0]))
    adrs = np.asarray([mj_model.jnt_qposadr[i] for i in ids])

    def set_pose(qpos: jax.Array, xy: jax.Array, yaw: jax.Array) -> jax.Array:
        slides = to_joint @ (xy - origin)
        return qpos.at[adrs].set(jnp.concatenate([slides, jnp.reshape(yaw - yaw0, (1,))]).astype(qpos.dtype))

    return set_pose


POINT = Robot(
    name="Point",
    xml_path=ASSETS / "point.xml",
    observation_sensors=_BASE_SENSORS,
    placement_keepout=_KEEPOUT,
    frameskip=_FRAMESKIP,
)

# SG bases/base_agent.py obs_sensor / build_sensor_observation_space insert, after the listed
# sensors, ball-joint angular velocities and then ball-joint quaternions as 3x3 matrices.
CAR = Robot(
    name="Car",
    xml_path=ASSETS / "car.xml",
    observation_sensors=_BASE_SENSORS + (("ballangvel_rear", 3), ("ballquat_rear", 9)),
    placement_keepout=_KEEPOUT,
    frameskip=_FRAMESKIP,
)

ROBOTS: dict[str, Robot] = {"Point": POINT, "Car": CAR}
