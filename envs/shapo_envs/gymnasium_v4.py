"""Gymnasium's v4 locomotion envs (Ant, HalfCheetah, Hopper, Humanoid, Walker2d) on MJX.

The SHAPO paper's fall tasks are Gymnasium's ``Ant-v4`` and ``Walker2d-v4``, and
Safety-Gymnasium's velocity tasks are Gymnasium's v4 envs with a cost whose thresholds were
calibrated on those models. So each env here loads the v4 model file unchanged
(``assets/<robot>.xml``, copied from Gymnasium 1.4.0) and computes what
``gymnasium/envs/mujoco/<robot>_v4.py`` computes with its default arguments:

- ``frame_skip`` physics steps per env step (Brax's ``n_frames``), the XML's integrator and
  timestep (RK4 everywhere but HalfCheetah's Euler);
- the reset: ``qpos0`` plus uniform noise on ``qpos`` and, per robot, uniform or normal
  noise on ``qvel`` (``reset_model``);
- the observation, reward terms (forward, healthy, control cost) and termination.

One deviation from a v4 XML: Humanoid-v4's asks for the PGS solver, which MJX does not
implement; ``Humanoid`` runs Newton instead (its docstring says what that changes).

What differs from Brax's own ``brax.envs`` models (which this package used before): Brax's
XMLs change contact settings, masses and solver options, and its Ant starts at z 0.55
(Gymnasium's 0.75); Brax's rewards and observations differ too (e.g. its Ant adds contact
forces). The model is loaded with ``mjcf.load_model`` on the compiled ``MjModel`` rather than
``mjcf.load``: the latter fuses joint-less bodies into their parents (Ant's leg roots),
which would renumber bodies, and Brax's ``sys.init_q`` would read the Ant XML's unused custom
``init_qpos`` (z 0.55) where Gymnasium starts from ``qpos0``.

Actions: v4 charges the control cost on the action as given (unclipped) and writes it to
``data.ctrl``; MuJoCo clamps the control to the XML's ``ctrlrange`` (every actuator here is
``ctrllimited``) when it computes the actuator force, and MJX does the same
(``mujoco/mjx/_src/forward.py`` ``fwd_actuation``). These envs do the same: they clip nothing.

The pipeline state is Brax's MJX state: ``q``/``qd`` (= ``qpos``/``qvel``) plus the MJX data.
Agreement with Gymnasium stepping natively (float64 MuJoCo) is tested step by step and in
distribution in ``tests/test_envs_locomotion.py``.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import jax
import mujoco
from brax.envs.base import PipelineEnv, State
from brax.io import mjcf
from jax import numpy as jp
from mujoco import mjx
from mujoco.mjx._src import collision_driver, collision_primitive
from mujoco.mjx._src import math as mjx_math
from mujoco.mjx._src.types import GeomType

_ASSETS = Path(__file__).parent / "assets"


@collision_primitive.collider(ncon=2)
def _plane_capsule(plane, cap):
    """MJX's ``plane_capsule`` with MuJoCo's contact frame.

    Both put the frame's first tangent along the capsule axis projected on the plane; MuJoCo
    (``mjraw_PlaneCapsule`` then ``mju_makeFrame``) does so whenever the projection is defined,
    while MJX 3.17 falls back to the world y axis once the projection is shorter than 0.5
    (a capsule steeper than 60 degrees: the Ant's and Walker's lower legs, much of the time).
    Under the pyramidal friction cone of these models the tangent sets the pyramid's
    orientation, so MJX's fallback changes the friction force: with it, Ant-v4 departs from
    MuJoCo by ~0.1 in qvel on its first foot contact; with this frame it agrees to float32.
    """
    n, axis = plane.mat[:, 2], cap.mat[:, 2]
    b, b_norm = mjx_math.normalize_with_norm(axis - n * jp.dot(n, axis))
    y, z = jp.array([0.0, 1.0, 0.0]), jp.array([0.0, 0.0, 1.0])
    b = jp.where(b_norm < 1e-6, jp.where((-0.5 < n[1]) & (n[1] < 0.5), y, z), b)
    frame = jp.array([[n, b, jp.cross(n, b)]])
    segment = axis * cap.size[1]
    collisions = []
    for offset in (segment, -segment):
        dist, pos = collision_primitive._plane_sphere(n, plane.pos, cap.pos + offset, cap.size[0])
        collisions.append((dist[None], pos[None], frame))
    return jax.tree_util.tree_map(lambda *x: jp.concatenate(x), *collisions)


@contextlib.contextmanager
def _mujoco_contact_frames():
    """Traces MJX collision with ``_plane_capsule`` in place of MJX's own.

    MJX picks its collision functions from a table while tracing, so swapping the entry for
    the duration of a trace changes only what is traced inside (this env's steps), not other
    MJX models in the process.
    """
    key = (GeomType.PLANE, GeomType.CAPSULE)
    original = collision_driver._COLLISION_FUNC[key]
    collision_driver._COLLISION_FUNC[key] = _plane_capsule
    try:
        yield
    finally:
        collision_driver._COLLISION_FUNC[key] = original


class GymnasiumV4Env(PipelineEnv):
    """Shared by the v4 envs: the model, ``frame_skip``, the reset, ``step``'s bookkeeping.

    A subclass sets ``xml``, ``frame_skip``, ``qvel_noise`` (``"uniform"`` or ``"normal"``) and
    ``metric_names``, and defines ``_get_obs(ps)``, ``is_healthy(ps)`` and
    ``_reward(ps_before, ps_after, action) -> (reward, metrics)``.
    """

    xml: str
    frame_skip: int
    qvel_noise: str
    metric_names: tuple[str, ...]

    def __init__(self, reset_noise_scale: float, terminate_when_unhealthy: bool = True,
                 backend: str = "mjx", **kwargs):
        if backend != "mjx":
            raise ValueError(f"{type(self).__name__} is written for the mjx backend, got backend={backend!r}")
        mj_model = self._mujoco_model()
        kwargs.setdefault("n_frames", self.frame_skip)
        super().__init__(sys=mjcf.load_model(mj_model), backend=backend, **kwargs)
        self._reset_noise_scale = reset_noise_scale
        self._terminate_when_unhealthy = terminate_when_unhealthy
        self._init_q = jp.asarray(mj_model.qpos0, jp.float32)  # Gymnasium's init_qpos

    @classmethod
    def _mujoco_model(cls) -> mujoco.MjModel:
        """The compiled v4 XML; a subclass changes here what MJX cannot run (Humanoid's solver)."""
        return mujoco.MjModel.from_xml_path(str(_ASSETS / cls.xml))

    @functools.cached_property
    def observation_size(self) -> int:
        """From the traced shape (Brax's property runs an eager MJX reset)."""
        return jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs.shape[-1]

    def pipeline_init(self, q, qd, act=None, ctrl=None):
        with _mujoco_contact_frames():
            return super().pipeline_init(q, qd, act, ctrl)

    def pipeline_step(self, pipeline_state, action):
        with _mujoco_contact_frames():
            return super().pipeline_step(pipeline_state, action)

    def reset(self, rng: jax.Array) -> State:
        rng_q, rng_qd = jax.random.split(rng)
        s = self._reset_noise_scale
        q = self._init_q + jax.random.uniform(rng_q, (self.sys.q_size(),), minval=-s, maxval=s)
        if self.qvel_noise == "normal":
            qd = s * jax.random.normal(rng_qd, (self.sys.qd_size(),))
        else:
            qd = jax.random.uniform(rng_qd, (self.sys.qd_size(),), minval=-s, maxval=s)
        pipeline_state = self.pipeline_init(q, qd)
        zero = jp.zeros(())
        metrics = {k: zero for k in self.metric_names}
        return State(pipeline_state, self._get_obs(pipeline_state), zero, zero, metrics)

    def step(self, state: State, action: jax.Array) -> State:
        ps0 = state.pipeline_state
        ps = self.pipeline_step(ps0, action)
        reward, metrics = self._reward(ps0, ps, action)
        done = (~self.is_healthy(ps) & self._terminate_when_unhealthy).astype(reward.dtype)
        state.metrics.update(metrics)
        return state.replace(pipeline_state=ps, obs=self._get_obs(ps), reward=reward, done=done)

    def healthy_reward(self, ps, weight: float) -> jax.Array:
        """v4's ``float(is_healthy or terminate_when_unhealthy) * healthy_reward``."""
        return (self.is_healthy(ps) | self._terminate_when_unhealthy).astype(jp.float32) * weight

    def is_healthy(self, ps) -> jax.Array:
        return jp.array(True)

    def _get_obs(self, ps) -> jax.Array:
        raise NotImplementedError

    def _reward(self, ps0, ps, action):
        raise NotImplementedError


def _control_cost(weight: float, action: jax.Array) -> jax.Array:
    """v4's ``ctrl_cost_weight * sum(action**2)`` on the action as given (not clamped)."""
    return weight * jp.sum(jp.square(action))


def _body_id(sys, name: str) -> int:
    return mujoco.mj_name2id(sys.mj_model, mujoco.mjtObj.mjOBJ_BODY, name)


def mass_center_xy(sys, ps) -> jax.Array:
    """humanoid_v4.py ``mass_center``: the mass-weighted ``xipos`` of all bodies, its x and y."""
    mass = sys.body_mass
    return (jp.sum(mass[:, None] * ps.xipos, axis=0) / jp.sum(mass))[:2]


class Ant(GymnasiumV4Env):
    """Gymnasium ``Ant-v4`` (ant_v4.py) with its defaults: 27-dim observation ``(qpos[2:], qvel)``
    (``use_contact_forces=False``, so no contact forces and no contact cost),
    ``reward = x_velocity(torso xpos) + 1 - 0.5 ||a||^2``, healthy while the state is finite
    and ``0.2 <= qpos[2] <= 1.0``; frame_skip 5, RK4 at 0.01 s; reset noise 0.1 (uniform
    on qpos, normal on qvel)."""

    xml, frame_skip, qvel_noise = "ant.xml", 5, "normal"
    metric_names = ("reward_forward", "reward_ctrl", "reward_survive", "x_position", "y_position",
                    "distance_from_origin", "x_velocity", "y_velocity", "forward_reward")

    def __init__(self, ctrl_cost_weight: float = 0.5, healthy_reward: float = 1.0,
                 healthy_z_range: tuple[float, float] = (0.2, 1.0), reset_noise_scale: float = 0.1, **kwargs):
        super().__init__(reset_noise_scale, **kwargs)
        self._ctrl_cost_weight = ctrl_cost_weight
        self._healthy_reward = healthy_reward
        self._healthy_z_range = healthy_z_range
        self._torso = _body_id(self.sys, "torso")

    def is_healthy(self, ps) -> jax.Array:
        finite = jp.all(jp.isfinite(ps.q)) & jp.all(jp.isfinite(ps.qd))
        low, high = self._healthy_z_range
        return finite & (ps.q[2] >= low) & (ps.q[2] <= high)

    def _get_obs(self, ps) -> jax.Array:
        return jp.concatenate([ps.q[2:], ps.qd])

    def _reward(self, ps0, ps, action):
        xy = ps.xpos[self._torso, :2]  # get_body_com("torso")
        xy_velocity = (xy - ps0.xpos[self._torso, :2]) / self.dt
        healthy_reward = self.healthy_reward(ps, self._healthy_reward)
        ctrl_cost = _control_cost(self._ctrl_cost_weight, action)
        metrics = dict(reward_forward=xy_velocity[0], reward_ctrl=-ctrl_cost, reward_survive=healthy_reward,
                       x_position=xy[0], y_position=xy[1], distance_from_origin=jp.linalg.norm(xy),
                       x_velocity=xy_velocity[0], y_velocity=xy_velocity[1], forward_reward=xy_velocity[0])
        return xy_velocity[0] + healthy_reward - ctrl_cost, metrics


class _Planar(GymnasiumV4Env):
    """HalfCheetah, Hopper, Walker2d: ``qpos = (rootx, rootz, rooty, joints...)``,
    ``x_velocity`` from ``qpos[0]``, observation ``(qpos[1:], qvel)``."""

    metric_names = ("x_position", "x_velocity", "reward_run", "reward_ctrl")
    clip_qvel = True  # Hopper and Walker2d observe clip(qvel, -10, 10)

    def __init__(self, forward_reward_weight: float, ctrl_cost_weight: float, healthy_reward: float,
                 reset_noise_scale: float, **kwargs):
        super().__init__(reset_noise_scale, **kwargs)
        self._forward_reward_weight = forward_reward_weight
        self._ctrl_cost_weight = ctrl_cost_weight
        self._healthy_reward = healthy_reward

    def _get_obs(self, ps) -> jax.Array:
        qd = jp.clip(ps.qd, -10.0, 10.0) if self.clip_qvel else ps.qd
        return jp.concatenate([ps.q[1:], qd])

    def _reward(self, ps0, ps, action):
        x_velocity = (ps.q[0] - ps0.q[0]) / self.dt
        forward_reward = self._forward_reward_weight * x_velocity
        ctrl_cost = _control_cost(self._ctrl_cost_weight, action)
        metrics = dict(x_position=ps.q[0], x_velocity=x_velocity, reward_run=forward_reward, reward_ctrl=-ctrl_cost)
        return forward_reward + self.healthy_reward(ps, self._healthy_reward) - ctrl_cost, metrics


class HalfCheetah(_Planar):
    """Gymnasium ``HalfCheetah-v4``: ``reward = x_velocity - 0.1 ||a||^2``, never terminates;
    frame_skip 5, Euler at 0.01 s; reset noise 0.1 (uniform on qpos, normal on qvel)."""

    xml, frame_skip, qvel_noise, clip_qvel = "half_cheetah.xml", 5, "normal", False

    def __init__(self, forward_reward_weight: float = 1.0, ctrl_cost_weight: float = 0.1,
                 reset_noise_scale: float = 0.1, **kwargs):
        super().__init__(forward_reward_weight, ctrl_cost_weight, 0.0, reset_noise_scale, **kwargs)


class Hopper(_Planar):
    """Gymnasium ``Hopper-v4``: ``reward = x_velocity + 1 - 1e-3 ||a||^2``; healthy while
    ``|state_vector()[2:]| < 100``, ``qpos[1] > 0.7`` and ``|qpos[2]| < 0.2``; frame_skip 4, RK4 at
    0.002 s; reset noise 5e-3 (uniform on both)."""

    xml, frame_skip, qvel_noise = "hopper.xml", 4, "uniform"

    def __init__(self, forward_reward_weight: float = 1.0, ctrl_cost_weight: float = 1e-3,
                 healthy_reward: float = 1.0, reset_noise_scale: float = 5e-3, **kwargs):
        super().__init__(forward_reward_weight, ctrl_cost_weight, healthy_reward, reset_noise_scale, **kwargs)

    def is_healthy(self, ps) -> jax.Array:
        state = jp.concatenate([ps.q, ps.qd])[2:]
        z, angle = ps.q[1], ps.q[2]
        return jp.all((state > -100.0) & (state < 100.0)) & (z > 0.7) & (angle > -0.2) & (angle < 0.2)


class Walker2d(_Planar):
    """Gymnasium ``Walker2d-v4``: ``reward = x_velocity + 1 - 1e-3 ||a||^2``; healthy while
    ``0.8 < qpos[1] < 2`` (the torso height: rootz has ``ref=1.25``) and ``-1 < qpos[2] < 1``;
    frame_skip 4, RK4 at 0.002 s; reset noise 5e-3 (uniform on both)."""

    xml, frame_skip, qvel_noise = "walker2d.xml", 4, "uniform"

    def __init__(self, forward_reward_weight: float = 1.0, ctrl_cost_weight: float = 1e-3,
                 healthy_reward: float = 1.0, reset_noise_scale: float = 5e-3, **kwargs):
        super().__init__(forward_reward_weight, ctrl_cost_weight, healthy_reward, reset_noise_scale, **kwargs)

    def is_healthy(self, ps) -> jax.Array:
        z, angle = ps.q[1], ps.q[2]
        return (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)


class Humanoid(GymnasiumV4Env):
    """Gymnasium ``Humanoid-v4`` (humanoid_v4.py) with its defaults, but Newton for PGS.

    Observation (376): ``qpos[2:]``, ``qvel``, then ``cinert``, ``cvel``, ``qfrc_actuator`` and
    ``cfrc_ext`` of all 14 bodies, the world's rows (zeros) included, as v4 flattens them.
    ``reward = 1.25 x_velocity + 5 - 0.1 ||a||^2`` with the x-velocity of the mass centre
    (``mass_center_xy``); v4 has no contact cost, and its healthy reward is paid on every step
    (``is_healthy or terminate_when_unhealthy``). Healthy while ``1 < qpos[2] < 2``, with no
    finiteness check (v4 has none). frame_skip 5, RK4 at 0.003 s; reset noise 1e-2 (uniform on
    qpos and qvel).

    ``cfrc_ext``: Gymnasium's ``MujocoEnv._step_mujoco_simulation`` calls
    ``mj_rnePostConstraint`` after the ``frame_skip`` substeps (MuJoCo leaves ``cfrc_ext`` zero
    otherwise), so ``step`` here calls ``mjx.rne_postconstraint`` on the last substep's data. The
    reset does not: Gymnasium's ``set_state`` runs only ``mj_forward`` after ``mj_resetData``, so
    its first observation has ``cfrc_ext`` zero, and so does this one. MuJoCo and MJX both credit a
    foot's contact force to the joint-less foot body, not to the shin it is welded to.

    Solver: the XML sets ``solver="PGS" iterations="50"``; MJX implements CG and Newton only, so
    the model is loaded unchanged and its ``opt.solver`` set to Newton before it goes to MJX
    (``iterations`` stays 50). Both solve the same convex problem for the constraint forces, PGS
    in the dual and Newton in the primal, so they agree as far as PGS has converged in its 50
    sweeps. Measured in float64 MuJoCo (Humanoid-v4 against the same model with Newton, 20
    episodes from v4's resets, actions uniform in [-1.5, 1.5], tolerance 2e-3 (1 + |x|)): the
    contact forces ``cfrc_ext`` first differ after 26 to 188 steps (median 93), the state and
    reward after 71 steps or later (6 of 20 episodes agree for all 200 steps). This env against
    Gymnasium's (``tests/test_envs_locomotion.py``): step by step for 36 steps, the first
    difference again in ``cfrc_ext`` (step 37); under a random policy, reward per step 4.501 +-
    0.019 here against 4.514 +- 0.017 (64 episodes each; neither exceeds the cost threshold).
    """

    xml, frame_skip, qvel_noise = "humanoid.xml", 5, "uniform"
    metric_names = ("reward_linvel", "reward_quadctrl", "reward_alive", "x_position", "y_position",
                    "distance_from_origin", "x_velocity", "y_velocity", "forward_reward")

    def __init__(self, forward_reward_weight: float = 1.25, ctrl_cost_weight: float = 0.1,
                 healthy_reward: float = 5.0, healthy_z_range: tuple[float, float] = (1.0, 2.0),
                 reset_noise_scale: float = 1e-2, **kwargs):
        super().__init__(reset_noise_scale, **kwargs)
        self._forward_reward_weight = forward_reward_weight
        self._ctrl_cost_weight = ctrl_cost_weight
        self._healthy_reward = healthy_reward
        self._healthy_z_range = healthy_z_range

    @classmethod
    def _mujoco_model(cls) -> mujoco.MjModel:
        model = super()._mujoco_model()
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON  # the XML's PGS: MJX has none
        return model

    def pipeline_step(self, pipeline_state, action):
        """``frame_skip`` MJX steps, then ``cfrc_ext`` as Gymnasium computes it after them."""
        return mjx.rne_postconstraint(self.sys, super().pipeline_step(pipeline_state, action))

    def is_healthy(self, ps) -> jax.Array:
        low, high = self._healthy_z_range
        return (ps.q[2] > low) & (ps.q[2] < high)

    def _get_obs(self, ps) -> jax.Array:
        bodies = (ps._impl.cinert, ps.cvel, ps.qfrc_actuator, ps._impl.cfrc_ext)
        return jp.concatenate([ps.q[2:], ps.qd] + [x.ravel() for x in bodies])

    def _reward(self, ps0, ps, action):
        xy = mass_center_xy(self.sys, ps)
        xy_velocity = (xy - mass_center_xy(self.sys, ps0)) / self.dt
        forward_reward = self._forward_reward_weight * xy_velocity[0]
        healthy_reward = self.healthy_reward(ps, self._healthy_reward)
        ctrl_cost = _control_cost(self._ctrl_cost_weight, action)
        metrics = dict(reward_linvel=forward_reward, reward_quadctrl=-ctrl_cost, reward_alive=healthy_reward,
                       x_position=xy[0], y_position=xy[1], distance_from_origin=jp.linalg.norm(xy),
                       x_velocity=xy_velocity[0], y_velocity=xy_velocity[1], forward_reward=forward_reward)
        return forward_reward + healthy_reward - ctrl_cost, metrics
