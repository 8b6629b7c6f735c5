"""Environment stepping inside ``lax.scan``: one compiled unroll of vmapped envs.

Episodes are tracked here, not by env wrappers, so any registered Brax ``Env`` with a
``cost`` in ``state.info`` works unwrapped. An episode ends when the env says ``done``
(termination) or after ``episode_length`` steps (truncation); the true last observation
is kept in the transition for bootstrapping before the env is reset. Resets return the
env to the initial state drawn for it at the start of training, as Brax's
``AutoResetWrapper`` does, which keeps resets as cheap as a select.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State


class Transition(NamedTuple):
    """One step of every env (leading axis: env); stacked over time by the rollout."""

    observation: jax.Array
    action: jax.Array
    log_prob: jax.Array
    reward: jax.Array
    cost: jax.Array
    next_observation: jax.Array
    termination: jax.Array
    episode_end: jax.Array


class EpisodeTracker(NamedTuple):
    """Running sums of the episode in progress in each env."""

    episode_return: jax.Array
    episode_cost: jax.Array
    length: jax.Array

    @classmethod
    def zeros(cls, num_envs: int) -> "EpisodeTracker":
        zero = jnp.zeros((num_envs,), jnp.float32)
        return cls(zero, zero, jnp.zeros((num_envs,), jnp.int32))


class FinishedEpisodes(NamedTuple):
    """Sums over the episodes that ended during one rollout."""

    count: jax.Array
    return_sum: jax.Array
    cost_sum: jax.Array
    length_sum: jax.Array
    violations: jax.Array  # episodes whose cost exceeded the cost limit

    @classmethod
    def zeros(cls) -> "FinishedEpisodes":
        zero = jnp.zeros((), jnp.float32)
        return cls(zero, zero, zero, zero, zero)


PolicyFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
"""policy(observation [num_envs, obs], key) -> (action, log_prob)."""


def reset_where(episode_end: jax.Array, initial_state: State, state: State) -> State:
    """Per env: the initial state where the episode ended, else the current one."""

    def select(initial, current):
        mask = episode_end.reshape(episode_end.shape + (1,) * (current.ndim - 1))
        return jnp.where(mask, initial, current)

    return jax.tree.map(select, initial_state, state)


def collect_rollout(
    env: Env,
    policy: PolicyFn,
    env_state: State,
    initial_state: State,
    tracker: EpisodeTracker,
    key: jax.Array,
    unroll_length: int,
    episode_length: int,
    cost_limit: float = float("inf"),
) -> tuple[State, EpisodeTracker, Transition, FinishedEpisodes]:
    """Steps ``num_envs`` envs for ``unroll_length`` steps; returns time-major transitions."""
    step_fn = jax.vmap(env.step)

    def one_step(carry, step_key):
        state, tracker, finished = carry
        action, log_prob = policy(state.obs, step_key)
        next_state = step_fn(state, jnp.clip(action, -1.0, 1.0))
        reward = next_state.reward.astype(jnp.float32)
        cost = next_state.info["cost"].astype(jnp.float32)
        termination = next_state.done.astype(jnp.float32)
        length = tracker.length + 1
        truncation = (length >= episode_length) & (termination == 0)
        episode_end = jnp.maximum(termination, truncation.astype(jnp.float32))

        episode_return = tracker.episode_return + reward
        episode_cost = tracker.episode_cost + cost
        finished = FinishedEpisodes(
            finished.count + episode_end.sum(),
            finished.return_sum + (episode_end * episode_return).sum(),
            finished.cost_sum + (episode_end * episode_cost).sum(),
            finished.length_sum + (episode_end * length).sum(),
            finished.violations + (episode_end * (episode_cost > cost_limit)).sum(),
        )
        keep = 1.0 - episode_end
        tracker = EpisodeTracker(
            episode_return * keep, episode_cost * keep, jnp.where(episode_end > 0, 0, length)
        )
        transition = Transition(
            observation=state.obs,
            action=action,
            log_prob=log_prob,
            reward=reward,
            cost=cost,
            next_observation=next_state.obs,
            termination=termination,
            episode_end=episode_end,
        )
        next_state = reset_where(episode_end > 0, initial_state, next_state)
        return (next_state, tracker, finished), transition

    keys = jax.random.split(key, unroll_length)
    (env_state, tracker, finished), transitions = jax.lax.scan(
        one_step, (env_state, tracker, FinishedEpisodes.zeros()), keys
    )
    return env_state, tracker, transitions, finished
