"""Environment stepping inside ``lax.scan``: one compiled unroll of vmapped envs.

Episodes are tracked here, not by env wrappers, so any registered Brax ``Env`` with a
``cost`` in ``state.info`` works unwrapped. An episode ends when the env says ``done``
(termination) or after ``episode_length`` steps (truncation); the true last observation
is kept in the transition for bootstrapping before the env is reset. Resets return the
env to the initial state drawn for it at the start of training, as Brax's
``AutoResetWrapper`` does, which keeps resets as cheap as a select.

The env gets the policy's action as sampled, unclipped: each env clips where its original
does (Gymnasium's MuJoCo v4 tasks charge control cost on the raw action and MuJoCo clamps
the control to its range; Safety-Gymnasium's builder and Playground clip the action).

Two things of the released code's (``--preset paper``) can ride along the scan: Gymnasium's
per-step observation statistics (``normalization.py``), in which case the transitions hold
normalised observations, and the window of the seed's last K episode costs behind its
``EpCost`` constraint signal (``CostWindow``).

A task with m constraints reports ``info["cost"]`` of shape [m] per env; then every cost
here (transitions, trackers, sums, the window) carries a trailing axis of m, and
``cost_limit`` is an [m] array. A scalar cost keeps the one-constraint shapes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

import shapo_envs  # noqa: F401  before Brax: it silences MJX's optional-backend notice
from brax.envs.base import Env, State

from shapo_jax import normalization
from shapo_jax.batching import select_envs, vmap_envs
from shapo_jax.normalization import RunningMeanStd


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
    def zeros(cls, num_envs: int, num_constraints: int = 1) -> "EpisodeTracker":
        zero = jnp.zeros((num_envs,), jnp.float32)
        cost = zero if num_constraints == 1 else jnp.zeros((num_envs, num_constraints), jnp.float32)
        return cls(zero, cost, jnp.zeros((num_envs,), jnp.int32))


class FinishedEpisodes(NamedTuple):
    """Sums over the episodes that ended during one rollout."""

    count: jax.Array
    return_sum: jax.Array
    cost_sum: jax.Array
    length_sum: jax.Array
    violations: jax.Array  # episodes whose cost exceeded the cost limit (per constraint)
    window_cost_sum: jax.Array  # over the episode ends: the cost window's mean just after each (0 without one)
    any_violations: jax.Array  # episodes over at least one limit (with one constraint: violations)

    @classmethod
    def zeros(cls, num_constraints: int = 1) -> "FinishedEpisodes":
        zero = jnp.zeros((), jnp.float32)
        if num_constraints == 1:
            return cls(zero, zero, zero, zero, zero, zero, zero)
        costs = jnp.zeros((num_constraints,), jnp.float32)
        return cls(zero, zero, costs, zero, costs, costs, zero)


class CostWindow(NamedTuple):
    """The costs of a seed's last K finished episodes, oldest first (the released code's
    ``cost_deque = deque(maxlen=50)``), and how many of the K entries are filled."""

    costs: jax.Array  # [K], or [K, m] for m constraints (one window each, filled alike)
    count: jax.Array

    @classmethod
    def zeros(cls, size: int, num_constraints: int = 1) -> "CostWindow":
        shape = (size,) if num_constraints == 1 else (size, num_constraints)
        return cls(jnp.zeros(shape, jnp.float32), jnp.zeros((), jnp.int32))


def append_episode_costs(window: CostWindow, costs: jax.Array, ended: jax.Array) -> tuple[CostWindow, jax.Array]:
    """Appends the costs of the envs whose episode ``ended`` [num_envs] this step, in env order
    as the released code's loop over envs does, and returns the new window and the sum, over
    those episodes, of the window's mean just after each was appended (each is one
    ``logger.store(EpCost=np.mean(cost_deque))``). Vectorised: the window followed by the new
    costs is one sequence, whose prefix sums give each appended episode's window sum."""
    size, num_envs = window.costs.shape[0], costs.shape[0]
    ended = ended > 0
    rank = jnp.cumsum(ended) - 1  # position of each ending env among this step's ends
    appended = ended.sum()
    new = jnp.zeros((num_envs,), jnp.float32).at[jnp.where(ended, rank, num_envs)].set(costs, mode="drop")
    sequence = jnp.concatenate([window.costs, new])
    prefix = jnp.concatenate([jnp.zeros((1,), jnp.float32), jnp.cumsum(sequence)])
    j = jnp.arange(num_envs)
    filled = jnp.minimum(window.count + j + 1, size)
    last = size + j + 1  # one past the j-th appended cost
    means = (prefix[last] - prefix[last - filled]) / filled
    mean_sum = jnp.sum(jnp.where(j < appended, means, 0.0))
    costs = jax.lax.dynamic_slice(sequence, (appended,), (size,))
    return CostWindow(costs, jnp.minimum(window.count + appended, size).astype(jnp.int32)), mean_sum


def append_constraint_costs(window: CostWindow, costs: jax.Array, ended: jax.Array) -> tuple[CostWindow, jax.Array]:
    """``append_episode_costs`` for costs [num_envs] or, per constraint, [num_envs, m]
    (the window [K, m] and the sum returned [m])."""
    if costs.ndim == 1:
        return append_episode_costs(window, costs, ended)
    append = lambda window_costs, constraint_costs: append_episode_costs(
        CostWindow(window_costs, window.count), constraint_costs, ended)
    windows, sums = jax.vmap(append, in_axes=(1, 1), out_axes=(CostWindow(1, 0), 0))(window.costs, costs)
    return CostWindow(windows.costs, windows.count[0]), sums


class Rollout(NamedTuple):
    """What ``collect_rollout`` returns; the last two are None unless passed in."""

    env_state: State
    tracker: EpisodeTracker
    transitions: Transition  # time-major [unroll_length, num_envs, ...]
    finished: FinishedEpisodes
    observation_statistics: Optional[RunningMeanStd]  # including the final env_state's observations
    cost_window: Optional[CostWindow]


PolicyFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
"""policy(observation [num_envs, obs], key) -> (action, log_prob)."""


def reset_where(episode_end: jax.Array, initial_state: State, state: State, shared: Optional[Any] = None) -> State:
    """Per env: the initial state where the episode ended, else the current one. Leaves all
    envs share (``shared``, batching.py: Warp's contact list) stay the current ones."""
    return select_envs(episode_end, initial_state, state, shared)


def collect_rollout(
    env: Env,
    policy: PolicyFn,
    env_state: State,
    initial_state: State,
    tracker: EpisodeTracker,
    key: jax.Array,
    unroll_length: int,
    episode_length: int,
    cost_limit: float | jax.Array = float("inf"),
    observation_statistics: Optional[RunningMeanStd] = None,
    cost_window: Optional[CostWindow] = None,
    shared: Optional[Any] = None,
) -> Rollout:
    """Steps ``num_envs`` envs for ``unroll_length`` steps; returns time-major transitions.

    With ``observation_statistics`` (which must already include ``env_state.obs``, as
    Gymnasium's wrapper has seen the batch it returned last), the policy acts on normalised
    observations, each step's returned batch (after resets) updates the statistics before it
    is normalised, and the transitions store normalised observations; ``next_observation``
    at an episode end is the true last observation normalised with that step's statistics
    (the released code bootstraps time-outs on the raw one, a bug not copied here).
    With ``cost_window``, each episode end appends its cost to it (``append_episode_costs``).
    ``shared`` marks the env state's leaves that the whole batch shares (``batching.shared_leaves``).
    ``cost_limit`` is an [m] array when the env's cost has m constraints.
    """
    step_fn = vmap_envs(env.step, shared)  # one flat batch under the trainer's vmap over seeds, unless shared (batching.py)
    normalize = (lambda statistics, observation: observation) if observation_statistics is None else normalization.normalize

    def one_step(carry, step_key):
        state, tracker, finished, statistics, window = carry
        observation = normalize(statistics, state.obs)
        action, log_prob = policy(observation, step_key)
        next_state = step_fn(state, action)
        reward = next_state.reward.astype(jnp.float32)
        cost = next_state.info["cost"].astype(jnp.float32)
        termination = next_state.done.astype(jnp.float32)
        length = tracker.length + 1
        truncation = (length >= episode_length) & (termination == 0)
        episode_end = jnp.maximum(termination, truncation.astype(jnp.float32))

        episode_return = tracker.episode_return + reward
        episode_cost = tracker.episode_cost + cost
        window_cost = jnp.zeros(cost.shape[1:], jnp.float32)
        if window is not None:
            window, window_cost = append_constraint_costs(window, episode_cost, episode_end)
        if cost.ndim == 1:
            violations = finished.violations + (episode_end * (episode_cost > cost_limit)).sum()
            finished = FinishedEpisodes(
                finished.count + episode_end.sum(),
                finished.return_sum + (episode_end * episode_return).sum(),
                finished.cost_sum + (episode_end * episode_cost).sum(),
                finished.length_sum + (episode_end * length).sum(),
                violations,
                finished.window_cost_sum + window_cost,
                violations,
            )
            cost_keep = keep = 1.0 - episode_end
        else:  # [num_envs, m]: sums per constraint
            ended = episode_end[:, None]
            over = episode_cost > cost_limit
            finished = FinishedEpisodes(
                finished.count + episode_end.sum(),
                finished.return_sum + (episode_end * episode_return).sum(),
                finished.cost_sum + (ended * episode_cost).sum(axis=0),
                finished.length_sum + (episode_end * length).sum(),
                finished.violations + (ended * over).sum(axis=0),
                finished.window_cost_sum + window_cost,
                finished.any_violations + (episode_end * over.any(axis=-1)).sum(),
            )
            keep = 1.0 - episode_end
            cost_keep = keep[:, None]
        tracker = EpisodeTracker(
            episode_return * keep, episode_cost * cost_keep, jnp.where(episode_end > 0, 0, length)
        )
        after_reset = reset_where(episode_end > 0, initial_state, next_state, shared)
        if statistics is not None:
            statistics = normalization.update(statistics, after_reset.obs)
        transition = Transition(
            observation=observation,
            action=action,
            log_prob=log_prob,
            reward=reward,
            cost=cost,
            next_observation=normalize(statistics, next_state.obs),
            termination=termination,
            episode_end=episode_end,
        )
        return (after_reset, tracker, finished, statistics, window), transition

    keys = jax.random.split(key, unroll_length)
    num_constraints = 1 if tracker.episode_cost.ndim == 1 else tracker.episode_cost.shape[-1]
    carry = (env_state, tracker, FinishedEpisodes.zeros(num_constraints), observation_statistics, cost_window)
    (env_state, tracker, finished, observation_statistics, cost_window), transitions = jax.lax.scan(one_step, carry, keys)
    return Rollout(env_state, tracker, transitions, finished, observation_statistics, cost_window)
