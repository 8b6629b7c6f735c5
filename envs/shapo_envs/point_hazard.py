"""PointHazard: a pure-JAX point mass that must reach a goal past a circular hazard.

A tiny safe-RL task for trying the library without MJX and for fast learning tests. The
shortest way to the goal crosses the hazard, so an unconstrained agent pays cost and a
constrained one must learn to go around it. It follows Brax's ``Env``/``State`` API and
puts ``cost`` in ``state.info`` like every registered task.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State

from shapo_envs.registry import register

# Geometry of the arena (unitless). The straight line from start to goal crosses the
# hazard; the detour around it is ~12% longer.
START = (-1.0, 0.0)
GOAL = (1.0, 0.0)
HAZARD_CENTRE = (0.0, 0.0)
HAZARD_RADIUS = 0.5
GOAL_RADIUS = 0.1
START_NOISE = 0.1  # start position drawn uniformly in START +- START_NOISE per axis
ARENA_HALF_WIDTH = 1.5  # walls: the position is clipped to the square [-1.5, 1.5]^2

# Dynamics: a damped point mass; speed saturates at MAX_SPEED * DT per step.
DT = 0.1
VELOCITY_DECAY = 0.75
MAX_SPEED = 1.0

# Reward: progress towards the goal, a small time penalty, and a bonus for reaching it.
PROGRESS_SCALE = 10.0
TIME_PENALTY = 0.1
GOAL_BONUS = 10.0


class PointHazard(Env):
    """Point mass in the plane; action = acceleration command in [-1, 1]^2.

    Observation (8): position, velocity, goal minus position, position minus hazard centre.
    Reward: ``PROGRESS_SCALE * (previous distance - distance) - TIME_PENALTY`` plus
    ``GOAL_BONUS`` on reaching the goal, which terminates the episode.
    Cost: 1 for every step that ends inside the hazard, else 0.
    """

    def __init__(self, hazard_radius: float = HAZARD_RADIUS):
        self._hazard_radius = hazard_radius

    @property
    def observation_size(self) -> int:
        return 8

    @property
    def action_size(self) -> int:
        return 2

    @property
    def backend(self) -> str:
        return "jax"

    def reset(self, rng: jax.Array) -> State:
        position = jnp.asarray(START) + jax.random.uniform(
            rng, (2,), minval=-START_NOISE, maxval=START_NOISE
        )
        velocity = jnp.zeros(2)
        zero = jnp.zeros(())
        info = {"cost": zero, "position": position, "velocity": velocity}
        return State(
            pipeline_state=None,
            obs=self._observation(position, velocity),
            reward=zero,
            done=zero,
            metrics={},
            info=info,
        )

    def step(self, state: State, action: jax.Array) -> State:
        position, velocity = state.info["position"], state.info["velocity"]
        action = jnp.clip(action, -1.0, 1.0)
        velocity = VELOCITY_DECAY * velocity + (1.0 - VELOCITY_DECAY) * MAX_SPEED * action
        new_position = jnp.clip(position + DT * velocity, -ARENA_HALF_WIDTH, ARENA_HALF_WIDTH)
        goal = jnp.asarray(GOAL)
        distance_before = jnp.linalg.norm(goal - position)
        distance_after = jnp.linalg.norm(goal - new_position)
        reached = distance_after < GOAL_RADIUS
        reward = (
            PROGRESS_SCALE * (distance_before - distance_after)
            - TIME_PENALTY
            + GOAL_BONUS * reached
        )
        cost = self.hazard_cost(new_position)
        info = {"cost": cost, "position": new_position, "velocity": velocity}
        return state.replace(
            obs=self._observation(new_position, velocity),
            reward=reward.astype(jnp.float32),
            done=reached.astype(jnp.float32),
            info=info,
        )

    def hazard_cost(self, position: jax.Array) -> jax.Array:
        """1.0 inside the hazard disc, else 0.0."""
        inside = jnp.linalg.norm(position - jnp.asarray(HAZARD_CENTRE)) < self._hazard_radius
        return inside.astype(jnp.float32)

    def _observation(self, position: jax.Array, velocity: jax.Array) -> jax.Array:
        return jnp.concatenate(
            [position, velocity, jnp.asarray(GOAL) - position, position - jnp.asarray(HAZARD_CENTRE)]
        )


register(
    "PointHazard",
    PointHazard,
    cost_limit=2.0,
    episode_length=60,
    description="pure-JAX point mass; cost 1 per step inside the hazard disc between start and goal",
)


# PointHazard2: a second, smaller hazard below the first, with its own limit. The short
# path crosses the first; a detour below the first skirts the second, one above is free.
SECOND_HAZARD_CENTRE = (0.0, -0.7)
SECOND_HAZARD_RADIUS = 0.3
HAZARD_LIMITS = (2.0, 1.0)  # per-episode cost limits of the first and the second hazard


class PointHazard2(PointHazard):
    """PointHazard with two hazard discs and a cost per disc: two constraints.

    Observation (10): PointHazard's, then position minus the second hazard's centre.
    Cost: ``[inside the first hazard, inside the second]``, each 1.0 or 0.0 per step (shape
    [2], so the trainer tracks, limits and prices each constraint on its own).
    """

    def __init__(self, hazard_radius: float = HAZARD_RADIUS, second_hazard_radius: float = SECOND_HAZARD_RADIUS):
        super().__init__(hazard_radius)
        self._second_hazard_radius = second_hazard_radius

    @property
    def observation_size(self) -> int:
        return 10

    def reset(self, rng: jax.Array) -> State:
        state = super().reset(rng)
        info = {**state.info, "cost": jnp.zeros((2,))}
        return state.replace(obs=self._observation(info["position"], info["velocity"]), info=info)

    def hazard_cost(self, position: jax.Array) -> jax.Array:
        """[1.0 inside the first hazard, 1.0 inside the second], else 0.0 each."""
        second = jnp.linalg.norm(position - jnp.asarray(SECOND_HAZARD_CENTRE)) < self._second_hazard_radius
        return jnp.stack([super().hazard_cost(position), second.astype(jnp.float32)])

    def _observation(self, position: jax.Array, velocity: jax.Array) -> jax.Array:
        return jnp.concatenate([super()._observation(position, velocity),
                                position - jnp.asarray(SECOND_HAZARD_CENTRE)])


register(
    "PointHazard2",
    PointHazard2,
    cost_limit=HAZARD_LIMITS,
    episode_length=60,
    description="PointHazard with a second hazard disc below the first; cost [in first, in second], two limits",
)
