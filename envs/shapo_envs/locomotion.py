"""MJX locomotion tasks: Safety-Gymnasium's velocity suite (v1) and SHAPO's fall tasks.

Each task is a Brax env on the MJX backend wrapped by ``SafeLocomotion``, which measures a
velocity from the pipeline states before and after ``step`` (``(after - before) / env.dt``,
as Safety-Gymnasium computes it) and writes ``info["cost"]`` and ``info["velocity"]``
(float32, shaped like the reward, zero after ``reset``). Brax's own metrics are kept.

Velocity tasks (Safety-Gymnasium ``safety_gymnasium/tasks/safe_velocity/safety_*_velocity_v1.py``):
``cost = 1.0 if velocity > threshold else 0.0``; the healthy termination stays Brax's.
Fall tasks (SHAPO's Ant-v4 / Walker2d-v4 runs with ``cost = terminated``): ``cost = done = 1.0``
on the step the robot leaves Gymnasium-v4's healthy range, checked on ``qpos`` as Gymnasium
does; this ``done`` replaces Brax's, which reads the torso's ``xpos`` (one substep stale).

Dynamics, rewards and observations are Brax's MJX models (brax/envs/assets/*.xml, e.g. the
Ant starts at z 0.55, not Gymnasium's 0.75), except Swimmer (see ``shapo_envs.swimmer``).

Position sources mirror Gymnasium/Safety-Gymnasium exactly. ``qpos`` is the state after the
last physics substep; ``xpos``/``xipos`` come from the forward pass at the start of that
substep (``mj_step`` and ``mjx.step`` both run kinematics before integrating), which is what
Gymnasium's ``get_body_com`` and ``mass_center`` read too.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import mujoco
from brax.envs import ant, half_cheetah, hopper, humanoid, walker2d
from brax.envs.base import Env, State, Wrapper
from jax import numpy as jp

from shapo_envs.registry import register
from shapo_envs.swimmer import Swimmer

# (system, pipeline_state) -> position; velocity = (pos_after - pos_before) / dt, then the
# signed x component (1-D position) or the planar speed ||v_xy|| (2-D position).
PositionFn = Callable[[object, object], jax.Array]
# (system, pipeline_state after the step) -> True where the robot is unhealthy.
FallFn = Callable[[object, object], jax.Array]


def _body_id(sys, name: str) -> int:
    return mujoco.mj_name2id(sys.mj_model, mujoco.mjtObj.mjOBJ_BODY, name)


def qpos0_x(sys, ps) -> jax.Array:
    """``data.qpos[0]``: the root's x slide (HalfCheetah, Hopper, Walker2d, Swimmer in SG)."""
    return ps.q[0]


def torso_xy(sys, ps) -> jax.Array:
    """``get_body_com('torso')[:2]`` = ``data.xpos`` of the torso (Ant in SG)."""
    return ps.xpos[_body_id(sys, "torso"), :2]


def mass_center_xy(sys, ps) -> jax.Array:
    """Gymnasium humanoid_v4 ``mass_center``: mass-weighted ``xipos`` of all bodies (Humanoid in SG)."""
    mass = sys.body_mass
    return (jp.sum(mass[:, None] * ps.xipos, axis=0) / jp.sum(mass))[:2]


def ant_fell(sys, ps) -> jax.Array:
    """Negation of Gymnasium Ant-v4 ``is_healthy``: finite state and 0.2 <= qpos[2] <= 1.0."""
    z = ps.q[2]
    finite = jp.all(jp.isfinite(ps.q)) & jp.all(jp.isfinite(ps.qd))
    return ~(finite & (z >= 0.2) & (z <= 1.0))


def walker2d_fell(sys, ps) -> jax.Array:
    """Negation of Gymnasium Walker2d-v4 ``is_healthy``: 0.8 < z < 2.0 and -1 < angle < 1.

    Gymnasium's ``qpos[1]`` is the torso height (its rootz has ``ref=1.25``); Brax's
    walker2d.xml drops that ref, so the height here is ``q[1]`` plus the torso body's z.
    """
    z = ps.q[1] + sys.mj_model.body_pos[_body_id(sys, "torso"), 2]
    angle = ps.q[2]
    return ~((z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0))


class SafeLocomotion(Wrapper):
    """Adds ``info["cost"]`` and ``info["velocity"]`` to a Brax locomotion env.

    Args:
      env: the Brax env (MJX backend).
      position_fn: where the measured velocity comes from (see ``PositionFn``).
      velocity_threshold: velocity task: cost 1 where ``velocity > velocity_threshold``.
      fall_fn: fall task instead: cost 1 and ``done`` 1 where ``fall_fn`` holds after the step.
    """

    def __init__(
        self,
        env: Env,
        position_fn: PositionFn,
        *,
        velocity_threshold: Optional[float] = None,
        fall_fn: Optional[FallFn] = None,
    ):
        if (velocity_threshold is None) == (fall_fn is None):
            raise ValueError("give exactly one of velocity_threshold and fall_fn")
        super().__init__(env)
        self.position_fn = position_fn
        self.velocity_threshold = velocity_threshold
        self.fall_fn = fall_fn

    @functools.cached_property
    def observation_size(self) -> int:
        """From the traced shape: Brax's ``PipelineEnv`` runs an eager MJX reset (~30 s on CPU)."""
        return jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs.shape[-1]

    def reset(self, rng: jax.Array) -> State:
        state = self.env.reset(rng)
        zero = jp.zeros_like(state.reward, dtype=jp.float32)
        return state.replace(info={**state.info, "cost": zero, "velocity": zero})

    def step(self, state: State, action: jax.Array) -> State:
        sys = self.env.unwrapped.sys
        before = self.position_fn(sys, state.pipeline_state)
        state = self.env.step(state, action)
        after = self.position_fn(sys, state.pipeline_state)
        v = (after - before) / self.env.unwrapped.dt
        velocity = v if v.ndim == 0 else jp.sqrt(jp.sum(jp.square(v)))
        if self.fall_fn is None:
            cost = (velocity > self.velocity_threshold).astype(jp.float32)
            done = state.done
        else:
            cost = self.fall_fn(sys, state.pipeline_state).astype(jp.float32)
            done = cost.astype(state.done.dtype)
        info = {**state.info, "cost": cost, "velocity": velocity.astype(jp.float32)}
        return state.replace(done=done, info=info)


# Safety-Gymnasium v1 thresholds, each from
# safety_gymnasium/tasks/safe_velocity/<file>: ``self._velocity_threshold``.
_VELOCITY_TASKS = {
    # name: (Brax env class, position source, threshold, SG file, what the velocity is)
    "SafetyAntVelocity": (ant.Ant, torso_xy, 2.6222,
                          "safety_ant_velocity_v1.py", "planar speed of the torso"),
    "SafetyHalfCheetahVelocity": (half_cheetah.Halfcheetah, qpos0_x, 3.2096,
                                  "safety_half_cheetah_velocity_v1.py", "signed x-velocity"),
    "SafetyHopperVelocity": (hopper.Hopper, qpos0_x, 0.7402,
                             "safety_hopper_velocity_v1.py", "signed x-velocity"),
    "SafetyHumanoidVelocity": (humanoid.Humanoid, mass_center_xy, 1.4149,
                               "safety_humanoid_velocity_v1.py",
                               "planar speed of the whole-body centre of mass"),
    # Swimmer v1 overrides v0's step: cost = float(x_velocity > threshold) on the SIGNED
    # x-velocity of qpos[0] (v0 used the planar speed of qpos[0:2]).
    "SafetySwimmerVelocity": (Swimmer, qpos0_x, 0.2282,
                              "safety_swimmer_velocity_v1.py", "signed x-velocity"),
    "SafetyWalker2dVelocity": (walker2d.Walker2d, qpos0_x, 2.3415,
                               "safety_walker2d_velocity_v1.py", "signed x-velocity"),
}

# SafePO / OmniSafe's default cost limit for the velocity suite.
VELOCITY_COST_LIMIT = 25.0
# A fall task pays at most 1 per episode; the SHAPO paper's limit is unknown, so this allows
# falls in at most 20% of episodes.
FALL_COST_LIMIT = 0.2


def _factory(env_cls, position_fn, **cost_kwargs):
    """``factory(**kwargs)``: kwargs go to the Brax env class; the backend is always MJX
    (Brax's classes default to ``generalized``, and the position sources read MJX data)."""

    def factory(**kwargs) -> Env:
        backend = kwargs.pop("backend", "mjx")
        if backend != "mjx":
            raise ValueError(f"the locomotion tasks run on the mjx backend only, got backend={backend!r}")
        return SafeLocomotion(env_cls(backend="mjx", **kwargs), position_fn, **cost_kwargs)

    return factory


for _name, (_cls, _pos, _thr, _src, _what) in _VELOCITY_TASKS.items():
    register(
        _name,
        _factory(_cls, _pos, velocity_threshold=_thr),
        cost_limit=VELOCITY_COST_LIMIT,
        episode_length=1000,
        description=f"cost 1 per step where the {_what} exceeds {_thr} (Safety-Gymnasium {_src})",
    )

register(
    "SafetyAntFall",
    _factory(ant.Ant, torso_xy, fall_fn=ant_fell),
    cost_limit=FALL_COST_LIMIT,
    episode_length=1000,
    description="cost 1 on the step the Ant becomes unhealthy (torso z outside [0.2, 1]), which ends "
    "the episode; SHAPO's Ant-v4 task, limit 0.2 ours (paper's value unknown)",
)
register(
    "SafetyWalker2dFall",
    _factory(walker2d.Walker2d, qpos0_x, fall_fn=walker2d_fell),
    cost_limit=FALL_COST_LIMIT,
    episode_length=1000,
    description="cost 1 on the step the Walker2d falls (height outside (0.8, 2), |angle| >= 1), which "
    "ends the episode; SHAPO's Walker2d-v4 task, limit 0.2 ours (paper's value unknown)",
)
