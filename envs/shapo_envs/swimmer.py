"""Swimmer on the MJX backend, following Gymnasium's Swimmer-v4.

Brax's ``brax.envs.swimmer.Swimmer`` accepts only the ``generalized`` backend, so this is a
``PipelineEnv`` of its own on ``assets/swimmer.xml`` (Gymnasium's physics: RK4, inertia-box
fluid drag, which MJX implements). Reward, observation and reset noise are Swimmer-v4's
(gymnasium/envs/mujoco/swimmer_v4.py): ``reward = 1.0 * x_velocity - 1e-4 * ||a||^2`` with
``x_velocity`` from ``qpos[0]``, ``obs = (qpos[2:], qvel)``, frame_skip 4, uniform noise of
scale 0.1 on qpos and qvel. Swimmer never terminates. As in Swimmer-v4, the action is taken
as it comes: the control cost is charged on it, and MuJoCo (here MJX's actuation) clamps the
control to the motors' ``ctrlrange`` [-1, 1] (``ctrllimited`` in the XML).
"""

from __future__ import annotations

from pathlib import Path

import jax
from brax.envs.base import PipelineEnv, State
from brax.io import mjcf
from jax import numpy as jp

_XML = Path(__file__).parent / "assets" / "swimmer.xml"


class Swimmer(PipelineEnv):
    """Gymnasium Swimmer-v4 dynamics, reward and observation on MJX."""

    def __init__(
        self,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 1e-4,
        reset_noise_scale: float = 0.1,
        backend: str = "mjx",
        **kwargs,
    ):
        if backend != "mjx":
            raise ValueError(f"this Swimmer is written for the mjx backend, got {backend!r}")
        sys = mjcf.load(_XML)
        kwargs.setdefault("n_frames", 4)  # Swimmer-v4's frame_skip
        super().__init__(sys=sys, backend=backend, **kwargs)
        self._forward_reward_weight = forward_reward_weight
        self._ctrl_cost_weight = ctrl_cost_weight
        self._reset_noise_scale = reset_noise_scale

    def reset(self, rng: jax.Array) -> State:
        rng1, rng2 = jax.random.split(rng)
        s = self._reset_noise_scale
        q = self.sys.init_q + jax.random.uniform(rng1, (self.sys.q_size(),), minval=-s, maxval=s)
        qd = jax.random.uniform(rng2, (self.sys.qd_size(),), minval=-s, maxval=s)
        pipeline_state = self.pipeline_init(q, qd)
        zero = jp.zeros(())
        metrics = {
            k: zero
            for k in ("reward_fwd", "reward_ctrl", "x_position", "y_position",
                      "distance_from_origin", "x_velocity", "y_velocity", "forward_reward")
        }
        return State(pipeline_state, self._get_obs(pipeline_state), zero, zero, metrics)

    def step(self, state: State, action: jax.Array) -> State:
        ps0 = state.pipeline_state
        ps = self.pipeline_step(ps0, action)
        xy = ps.q[:2]
        xy_velocity = (xy - ps0.q[:2]) / self.dt
        forward_reward = self._forward_reward_weight * xy_velocity[0]
        ctrl_cost = self._ctrl_cost_weight * jp.sum(jp.square(action))
        state.metrics.update(
            reward_fwd=forward_reward,
            reward_ctrl=-ctrl_cost,
            x_position=xy[0],
            y_position=xy[1],
            distance_from_origin=jp.linalg.norm(xy),
            x_velocity=xy_velocity[0],
            y_velocity=xy_velocity[1],
            forward_reward=forward_reward,
        )
        return state.replace(
            pipeline_state=ps, obs=self._get_obs(ps), reward=forward_reward - ctrl_cost
        )

    def _get_obs(self, pipeline_state) -> jax.Array:
        return jp.concatenate([pipeline_state.q[2:], pipeline_state.qd])
