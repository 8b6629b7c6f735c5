"""MJX locomotion tasks: Safety-Gymnasium's velocity suite (v1) and SHAPO's fall tasks.

Each task is a Gymnasium-v4 locomotion env on MJX (``shapo_envs.gymnasium_v4``; Swimmer in
``shapo_envs.swimmer``) wrapped by ``SafeLocomotion``, which measures a velocity from the
pipeline states before and after ``step`` (``(after - before) / env.dt``, as Safety-Gymnasium
computes it) and writes ``info["cost"]`` and ``info["velocity"]`` (float32, shaped like the
reward, zero after ``reset``). The env's own metrics are kept.

Why Gymnasium's v4 models: the SHAPO paper's fall tasks are Gymnasium's ``Ant-v4`` and
``Walker2d-v4``, and Safety-Gymnasium's velocity tasks are the v4 envs plus a cost whose
thresholds were calibrated on those models. Brax's own MJX models (used here before) differ in
contact settings, masses, reward terms and observations (its Ant started at z 0.55, not 0.75),
so neither costs nor returns were comparable. The v4 envs get the action unclipped, as
Gymnasium does: the control cost is charged on it and MuJoCo clamps the control.
Humanoid-v4's XML asks for the PGS solver, which MJX lacks; its env runs Newton instead
(``gymnasium_v4.Humanoid``).

Velocity tasks (Safety-Gymnasium ``safety_gymnasium/tasks/safe_velocity/safety_*_velocity_v1.py``):
``cost = 1.0 if velocity > threshold else 0.0``; the episode ends where the v4 env terminates.
Fall tasks (SHAPO's Ant-v4 / Walker2d-v4 runs with ``cost = terminated``): ``cost = done = 1.0``
on the step the robot leaves Gymnasium-v4's healthy range (the env's own termination).

Position sources mirror Gymnasium/Safety-Gymnasium exactly. ``qpos`` is the state after the
last physics substep; ``xpos``/``xipos`` come from the forward pass at the start of that
substep (``mj_step`` and ``mjx.step`` both run kinematics before integrating; under RK4, of its
last stage), which is what Gymnasium's ``get_body_com`` and ``mass_center`` read too.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import mujoco
from brax.envs.base import Env, State, Wrapper
from jax import numpy as jp

from shapo_envs.gymnasium_v4 import Ant, HalfCheetah, Hopper, Humanoid, Walker2d, mass_center_xy
from shapo_envs.registry import register
from shapo_envs.swimmer import Swimmer

# (system, pipeline_state) -> position; velocity = (pos_after - pos_before) / dt, then the
# signed x component (1-D position) or the planar speed ||v_xy|| (2-D position).
PositionFn = Callable[[object, object], jax.Array]


def _body_id(sys, name: str) -> int:
    return mujoco.mj_name2id(sys.mj_model, mujoco.mjtObj.mjOBJ_BODY, name)


def qpos0_x(sys, ps) -> jax.Array:
    """``data.qpos[0]``: the root's x slide (HalfCheetah, Hopper, Walker2d, Swimmer in SG)."""
    return ps.q[0]


def torso_xy(sys, ps) -> jax.Array:
    """``get_body_com('torso')[:2]`` = ``data.xpos`` of the torso (Ant in SG)."""
    return ps.xpos[_body_id(sys, "torso"), :2]


class SafeLocomotion(Wrapper):
    """Adds ``info["cost"]`` and ``info["velocity"]`` to a locomotion env.

    Args:
      env: the env (MJX backend).
      position_fn: where the measured velocity comes from (see ``PositionFn``).
      velocity_threshold: velocity task: cost 1 where ``velocity > velocity_threshold``.
      fall: fall task instead: cost 1 on the step the env terminates (``done``), i.e. where
        the robot leaves its healthy range.
    """

    def __init__(
        self,
        env: Env,
        position_fn: PositionFn,
        *,
        velocity_threshold: Optional[float] = None,
        fall: bool = False,
    ):
        if (velocity_threshold is None) != fall:
            raise ValueError("give exactly one of velocity_threshold and fall=True")
        super().__init__(env)
        self.position_fn = position_fn
        self.velocity_threshold = velocity_threshold
        self.fall = fall

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
        if self.fall:
            cost = state.done.astype(jp.float32)
        else:
            cost = (velocity > self.velocity_threshold).astype(jp.float32)
        info = {**state.info, "cost": cost, "velocity": velocity.astype(jp.float32)}
        return state.replace(info=info)


# Safety-Gymnasium v1 thresholds, each from
# safety_gymnasium/tasks/safe_velocity/<file>: ``self._velocity_threshold``.
_VELOCITY_TASKS = {
    # name: (env class, position source, threshold, SG file, what the velocity is)
    "SafetyAntVelocity": (Ant, torso_xy, 2.6222,
                          "safety_ant_velocity_v1.py", "planar speed of the torso"),
    "SafetyHalfCheetahVelocity": (HalfCheetah, qpos0_x, 3.2096,
                                  "safety_half_cheetah_velocity_v1.py", "signed x-velocity"),
    "SafetyHopperVelocity": (Hopper, qpos0_x, 0.7402,
                             "safety_hopper_velocity_v1.py", "signed x-velocity"),
    # Humanoid: humanoid_v4.mass_center (gymnasium_v4.mass_center_xy), as SG reads it.
    "SafetyHumanoidVelocity": (Humanoid, mass_center_xy, 1.4149,
                               "safety_humanoid_velocity_v1.py",
                               "planar speed of the whole-body centre of mass"),
    # Swimmer v1 overrides v0's step: cost = float(x_velocity > threshold) on the SIGNED
    # x-velocity of qpos[0] (v0 used the planar speed of qpos[0:2]).
    "SafetySwimmerVelocity": (Swimmer, qpos0_x, 0.2282,
                              "safety_swimmer_velocity_v1.py", "signed x-velocity"),
    "SafetyWalker2dVelocity": (Walker2d, qpos0_x, 2.3415,
                               "safety_walker2d_velocity_v1.py", "signed x-velocity"),
}

# SafePO / OmniSafe's default cost limit for the velocity suite.
VELOCITY_COST_LIMIT = 25.0
# A fall task pays at most 1 per episode; the SHAPO paper's limit is unknown, so this allows
# falls in at most 20% of episodes.
FALL_COST_LIMIT = 0.2


def _factory(env_cls, position_fn, **cost_kwargs):
    """``factory(**kwargs)``: kwargs go to the env class; the backend is always MJX (the
    position sources read MJX data)."""

    def factory(**kwargs) -> Env:
        backend = kwargs.pop("backend", "mjx")
        if backend != "mjx":
            raise ValueError(f"the locomotion tasks run on the mjx backend only, got backend={backend!r}")
        return SafeLocomotion(env_cls(backend="mjx", **kwargs), position_fn, **cost_kwargs)

    return factory


# Gymnasium's v4 env under each task (model, reset, reward, termination); Humanoid's solver is
# Newton, not the XML's PGS (MJX has no PGS).
_MODEL = {"SafetyAntVelocity": "Gymnasium's Ant-v4", "SafetyHalfCheetahVelocity": "Gymnasium's HalfCheetah-v4",
          "SafetyHopperVelocity": "Gymnasium's Hopper-v4",
          "SafetyHumanoidVelocity": "Gymnasium's Humanoid-v4 (Newton solver, not PGS)",
          "SafetySwimmerVelocity": "Gymnasium's Swimmer-v4", "SafetyWalker2dVelocity": "Gymnasium's Walker2d-v4"}

# Every locomotion task redraws its reset states (v4's noisy reset, a fresh key) once per update,
# for every env of the batch: an episode that ends restarts from a state drawn for that update,
# not from one drawn once per env at the start of training (Brax's auto-reset). Gymnasium draws
# one per episode; one per update costs one batched reset per update instead of one per step.
for _name, (_cls, _pos, _thr, _src, _what) in _VELOCITY_TASKS.items():
    register(
        _name,
        _factory(_cls, _pos, velocity_threshold=_thr),
        cost_limit=VELOCITY_COST_LIMIT,
        episode_length=1000,
        description=f"cost 1 per step where the {_what} exceeds {_thr} (Safety-Gymnasium {_src}); "
        f"{_MODEL[_name]} model",
        redraw_resets=True,
    )

register(
    "SafetyAntFall",
    _factory(Ant, torso_xy, fall=True),
    cost_limit=FALL_COST_LIMIT,
    episode_length=1000,
    description="cost 1 on the step Gymnasium's Ant-v4 terminates (unhealthy: torso z outside [0.2, 1] or a "
    "non-finite state), which ends the episode; SHAPO's Ant-v4 task, limit 0.2 ours (paper's value unknown)",
    redraw_resets=True,
)
register(
    "SafetyWalker2dFall",
    _factory(Walker2d, qpos0_x, fall=True),
    cost_limit=FALL_COST_LIMIT,
    episode_length=1000,
    description="cost 1 on the step Gymnasium's Walker2d-v4 terminates (torso height outside (0.8, 2) or "
    "|angle| >= 1), which ends the episode; SHAPO's Walker2d-v4 task, limit 0.2 ours (paper's value unknown)",
    redraw_resets=True,
)
