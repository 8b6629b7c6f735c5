"""The trainer: ``make_train(config) -> train(key)``, the whole run as one pure function.

One update is a sequence of small pure functions, in the order the data flows:
``collect`` a rollout (``rollout.py``), fold its finished episodes into the
``episode_statistics``, compute reward and cost ``advantages`` (``advantages.py``),
``update_multiplier`` (``multipliers.py``), take the algorithm's ``policy_step``
(``algorithms/``; the actor's gradient optionally through the SHAPO ``sharpness_aware``
transform), fit the critics, ``advance_normalizer``, ``keep_last_finite``, and emit
``update_metrics``. Each takes the run's static ``Pieces`` first; ``make_trainer`` only
builds those and wires the functions. ``train`` scans the update ``num_updates`` times, so
``jax.jit(jax.vmap(train))(keys)`` trains many seeds in a single compiled program; nothing
per env step returns to Python.

``TrainState`` nests what the learner learns, what the env runner carries and the episode
statistics, so sharding (``distributed.py``) and checkpoints address subtrees.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

import shapo_envs  # before Brax: it silences MJX's optional-backend notice
from brax.envs.base import Env, State
from brax.training.acme import running_statistics

from shapo_jax import advantages as gae
from shapo_jax import normalization
from shapo_jax import batching
from shapo_jax.algorithms import Algorithm, Constraint, get_algorithm
from shapo_jax.algorithms.critics import fit_critics
from shapo_jax.config import CostLimit, TrainConfig, physics_options, resolve
from shapo_jax.losses import PolicyBatch
from shapo_jax.networks import Critic, GaussianActor, gaussian_log_prob
from shapo_jax.rollout import CostWindow, EpisodeTracker, FinishedEpisodes, Transition, collect_rollout

Metrics = dict[str, jax.Array]
ProgressFn = Callable[[Metrics], None]


class Learner(NamedTuple):
    """What the updates learn: networks, their optimizer states, the multiplier, the statistics."""

    actor_params: Any
    critic_params: Any  # {"reward": ..., "cost": ...}
    actor_optimizer_state: Any  # the algorithm's policy-step state (PolicyStep.init)
    critic_optimizer_state: optax.OptState
    multiplier_state: Any  # LagrangeState or PIDState; .multiplier is lambda ([m] for m constraints)
    # Brax's RunningStatisticsState (--observation-normalization update) or Gymnasium's
    # normalization.RunningMeanStd (step), which has then seen the current env states' obs
    normalizer: Any


class EnvRunner(NamedTuple):
    """The vectorised envs between updates; every leaf has a leading [num_envs] axis."""

    env_state: State
    initial_env_state: State  # where an env restarts when its episode ends
    tracker: EpisodeTracker  # the episode in progress in each env


class EpisodeStatistics(NamedTuple):
    """What the finished episodes said so far (per seed, no env axis; the costs [m] for m > 1
    constraints)."""

    episode_return: jax.Array  # mean return of the latest finished episodes
    episode_cost: jax.Array  # mean cost of the latest finished episodes
    constraint_cost: jax.Array  # the constraint signal of the latest update (see --cost-window)
    cost_window: CostWindow  # the last --cost-window episode costs (size 0 when 0)
    total_cost: jax.Array  # cost paid during all of training so far


class TrainState(NamedTuple):
    """Everything one seed's training carries from update to update."""

    learner: Learner
    runner: EnvRunner
    episodes: EpisodeStatistics
    env_steps: jax.Array
    update: jax.Array
    failed_update: jax.Array  # -1, or the first update whose result was not finite
    seed_key: jax.Array  # the key train() was called with, to tell seeds apart in metrics
    rho: jax.Array  # SHAPO radius of this run (a leaf, so runs can be vmapped over radii)
    key: jax.Array


class TrainOutput(NamedTuple):
    state: TrainState
    metrics: Metrics  # each leaf stacked over updates: [num_updates]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trainer:
    """The pieces of ``train``, for callers that drive updates themselves (benchmarks, resume)."""

    config: TrainConfig  # resolved (config.resolve): no field left at "the task's own"
    env: Env
    cost_limit: CostLimit  # config.cost_limit: a float, or a tuple of m floats for a task with m constraints
    episode_length: int  # config.episode_length
    init: Callable[..., TrainState]  # init(key, rho=None)
    # act(actor_params, normalizer, observation, key) -> (sampled action, its log-prob, mean action),
    # actions unclipped (the env step clips them)
    act: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]
    update: Callable[[TrainState], tuple[TrainState, Metrics]]
    train: Callable[..., TrainOutput]  # train(key, rho=None)
    # update with the state's own radius state.rho (traced), as train(key, rho) steps: drives
    # runs of several radii in one program update by update (benchmarks/paper.py's checkpoints)
    update_at_own_radius: Optional[Callable[[TrainState], tuple[TrainState, Metrics]]] = None
    # env-state leaves the batch of envs shares (Pieces.shared_env_leaves), for state_shardings
    shared_env_leaves: Any = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pieces:
    """The static parts of a run, which the update's functions close over (nothing traced)."""

    config: TrainConfig  # resolved (config.resolve): preset applied, validated, task defaults filled
    env: Env
    algorithm: Algorithm
    actor: GaussianActor
    critic: Critic
    critic_optimizer: optax.GradientTransformation
    cost_limit: CostLimit  # config.cost_limit: a float (one constraint) or m floats
    episode_length: int  # config.episode_length
    redraw_resets: bool  # config.redraw_resets
    # leaves of a batch of env states that all its envs share (batching.shared_leaves; MJX Warp's
    # contact list), or None: every leaf has an env axis
    shared_env_leaves: Any = None

    def vmap_envs(self, fn: Callable) -> Callable:
        """``fn`` over the batch of envs (batching.vmap_envs)."""
        return batching.vmap_envs(fn, self.shared_env_leaves)

    @property
    def num_constraints(self) -> int:
        """m; with m = 1 costs carry no constraint axis, so the program is the one-constraint one."""
        return len(self.cost_limit) if isinstance(self.cost_limit, tuple) else 1

    @property
    def limit(self):
        """The cost limit as the program uses it: a Python float, or an [m] float32 array."""
        return jnp.asarray(self.cost_limit, jnp.float32) if self.num_constraints > 1 else self.cost_limit

    @property
    def per_step(self) -> bool:
        """Per-step statistics (Gymnasium's NormalizeObservation): the rollout normalises and
        stores normalised observations, so the update must not normalise them again."""
        return self.config.normalize_observations and self.config.observation_normalization == "step"


def make_pieces(config: TrainConfig, env: Optional[Env] = None) -> Pieces:
    """Resolves ``config`` (``config.resolve``: preset, validation, task defaults) and builds
    the run's static parts."""
    config = resolve(config)
    # only an MJX implementation other than JAX's shares leaves across a batch (Warp), so a task we
    # build on JAX's skips the search (it traces reset twice); an env passed in may be anything
    if env is None:
        env = shapo_envs.make_env(config.env, **physics_options(config))
        shared = None if config.physics_impl == "jax" else batching.shared_leaves(env.reset, jax.random.PRNGKey(0))
    else:
        shared = batching.shared_leaves(env.reset, jax.random.PRNGKey(0))
    critic_optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.critic_learning_rate)
    )
    return Pieces(
        config=config,
        env=env,
        algorithm=get_algorithm(config.algo),
        actor=GaussianActor(config.hidden_sizes, env.action_size, config.initialization),
        critic=Critic(config.hidden_sizes, config.initialization),
        critic_optimizer=critic_optimizer,
        cost_limit=config.cost_limit,
        episode_length=config.episode_length,
        redraw_resets=config.redraw_resets,
        shared_env_leaves=shared,
    )


# --- Acting -------------------------------------------------------------------------------


def normalize(pieces: Pieces, normalizer, observation):
    if not pieces.config.normalize_observations:
        return observation
    if pieces.per_step:
        return normalization.normalize(normalizer, observation)
    return running_statistics.normalize(observation, normalizer)


def sample(pieces: Pieces, actor_params, normalized_observation, key):
    mean, log_std = pieces.actor.apply(actor_params, normalized_observation)
    action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return action, gaussian_log_prob(mean, log_std, action), mean


def act(pieces: Pieces, actor_params, normalizer, observation, key):
    """A sample of the Gaussian policy on normalised observations, its log-prob, and the mean."""
    return sample(pieces, actor_params, normalize(pieces, normalizer, observation), key)


def policy_for(pieces: Pieces, learner: Learner):
    if pieces.per_step:  # the rollout hands the policy observations it normalised
        return lambda observation, key: sample(pieces, learner.actor_params, observation, key)[:2]
    return lambda observation, key: act(pieces, learner.actor_params, learner.normalizer, observation, key)[:2]


# --- Initial state ------------------------------------------------------------------------


def init_normalizer(pieces: Pieces, env_state: State, key: jax.Array):
    """Brax's empty statistics; per step, Gymnasium's after the released code's two resets of
    its vector env (seeded in its env factory, then again in ``main``), the second being the
    env states training starts from."""
    observation_size = pieces.env.observation_size
    if not pieces.per_step:
        return running_statistics.init_state(jnp.zeros((observation_size,), jnp.float32))
    first_reset = pieces.vmap_envs(pieces.env.reset)(jax.random.split(key, pieces.config.num_envs))
    statistics = normalization.update(normalization.RunningMeanStd.zeros(observation_size), first_reset.obs)
    return normalization.update(statistics, env_state.obs)


def cost_critic_apply(pieces: Pieces) -> Callable[[Any, jax.Array], jax.Array]:
    """V_c(s): the cost critic's values, [..., m] for m > 1 constraints (one critic each,
    their params stacked on a leading axis)."""
    if pieces.num_constraints == 1:
        return pieces.critic.apply
    return jax.vmap(pieces.critic.apply, in_axes=(0, None), out_axes=-1)


def init_cost_critic(pieces: Pieces, key: jax.Array, dummy: jax.Array):
    if pieces.num_constraints == 1:
        return pieces.critic.init(key, dummy)
    return jax.vmap(pieces.critic.init, in_axes=(0, None))(jax.random.split(key, pieces.num_constraints), dummy)


def init_multiplier(pieces: Pieces):
    """The multiplier rule's state; for m > 1 constraints, m independent states stacked."""
    rule = pieces.algorithm.multiplier
    if pieces.num_constraints == 1:
        return rule.init(pieces.config)
    return jax.vmap(lambda _: rule.init(pieces.config))(jnp.arange(pieces.num_constraints))


def init(pieces: Pieces, seed_key: jax.Array, rho: Optional[jax.Array] = None) -> TrainState:
    config = pieces.config
    actor_key, reward_key, cost_key, env_key, key = jax.random.split(seed_key, 5)
    normalizer_key = jax.random.fold_in(env_key, 1)
    dummy = jnp.zeros((1, pieces.env.observation_size))
    actor_params = pieces.actor.init(actor_key, dummy)
    critic_params = {"reward": pieces.critic.init(reward_key, dummy), "cost": init_cost_critic(pieces, cost_key, dummy)}
    env_state = pieces.vmap_envs(pieces.env.reset)(jax.random.split(env_key, config.num_envs))
    zero = jnp.zeros((), jnp.float32)
    m = pieces.num_constraints
    cost_zero = zero if m == 1 else jnp.zeros((m,), jnp.float32)
    learner = Learner(
        actor_params=actor_params,
        critic_params=critic_params,
        actor_optimizer_state=pieces.algorithm.make_policy_step(config, pieces.actor.apply, 0.0).init(actor_params),
        critic_optimizer_state=pieces.critic_optimizer.init(critic_params),
        multiplier_state=init_multiplier(pieces),
        normalizer=init_normalizer(pieces, env_state, normalizer_key),
    )
    return TrainState(
        learner=learner,
        runner=EnvRunner(env_state, env_state, EpisodeTracker.zeros(config.num_envs, m)),
        episodes=EpisodeStatistics(zero, cost_zero, cost_zero, CostWindow.zeros(config.cost_window, m), cost_zero),
        env_steps=jnp.zeros((), jnp.int32),
        update=jnp.zeros((), jnp.int32),
        failed_update=jnp.full((), -1, jnp.int32),
        seed_key=key_data(seed_key),
        rho=jnp.asarray(config.perturbation_radius if rho is None else rho, jnp.float32),
        key=key,
    )


# --- One update, step by step -------------------------------------------------------------


class Collected(NamedTuple):
    runner: EnvRunner
    transitions: Transition  # time-major [unroll_length, num_envs, ...]
    finished: FinishedEpisodes
    observation_statistics: Any  # per step: the statistics after the rollout, else None
    cost_window: Optional[CostWindow]  # with --cost-window: the window after the rollout


def collect(pieces: Pieces, state: TrainState, key: jax.Array) -> Collected:
    """num_envs x unroll_length steps with the current stochastic policy. Envs whose episode
    ends restart from initial_env_state, drawn anew here if asked (one reset per env per
    update, instead of one per env step)."""
    config = pieces.config
    initial_env_state = state.runner.initial_env_state
    if pieces.redraw_resets:
        reset_keys = jax.random.split(jax.random.fold_in(key, 1), config.num_envs)
        initial_env_state = pieces.vmap_envs(pieces.env.reset)(reset_keys)
    rollout = collect_rollout(
        pieces.env, policy_for(pieces, state.learner), state.runner.env_state,
        initial_env_state, state.runner.tracker, key, config.unroll_length, pieces.episode_length, pieces.limit,
        observation_statistics=state.learner.normalizer if pieces.per_step else None,
        cost_window=state.episodes.cost_window if config.cost_window else None,
        shared=pieces.shared_env_leaves,
    )
    runner = EnvRunner(rollout.env_state, initial_env_state, rollout.tracker)
    return Collected(runner, rollout.transitions, rollout.finished, rollout.observation_statistics, rollout.cost_window)


def constraint_signal(pieces: Pieces, episodes: EpisodeStatistics, finished: FinishedEpisodes, episode_cost):
    """The cost the multiplier, CPO's constraint value and CRPO's switch see, and whether the
    multiplier moves this update (None: always).

    --cost-window 0: this update's mean episode cost (the previous one if none ended).
    K > 0 (per constraint), the released code's ``logger.get_stats("Metrics/EpCost")`` (trpo_pid.py, cpo.py,
    crpo.py @1bb7704): the mean, over this update's episode ends, of the mean cost of the last
    K episodes at each end; 0.0 while the logger has no EpCost column, i.e. until an update
    begins with an episode finished; and NaN when none ends in the update, on which its PID
    keeps its state (here every multiplier does, and CPO/CRPO keep the previous signal).
    """
    if not pieces.config.cost_window:
        return episode_cost, None
    any_finished = finished.count > 0
    seen_before = episodes.cost_window.count > 0
    window_mean = finished.window_cost_sum / jnp.maximum(finished.count, 1.0)
    signal = jnp.where(seen_before, jnp.where(any_finished, window_mean, episodes.constraint_cost), 0.0)
    return signal, any_finished | ~seen_before


def sum_over_steps(pieces: Pieces, cost: jax.Array) -> jax.Array:
    """Sum over time and envs ([T, N] or [T, N, m] -> [] or [m])."""
    return cost.sum() if pieces.num_constraints == 1 else cost.sum(axis=(0, 1))


def episode_statistics(pieces: Pieces, episodes: EpisodeStatistics, collected: Collected):
    """The statistics after this rollout, and whether the multiplier moves (None: always)."""
    finished = collected.finished
    any_finished = finished.count > 0
    safe_count = jnp.maximum(finished.count, 1.0)
    episode_return = jnp.where(any_finished, finished.return_sum / safe_count, episodes.episode_return)
    episode_cost = jnp.where(any_finished, finished.cost_sum / safe_count, episodes.episode_cost)
    constraint_cost, multiplier_moves = constraint_signal(pieces, episodes, finished, episode_cost)
    new = EpisodeStatistics(
        episode_return=episode_return,
        episode_cost=episode_cost,
        constraint_cost=constraint_cost,
        cost_window=episodes.cost_window if collected.cost_window is None else collected.cost_window,
        total_cost=episodes.total_cost + sum_over_steps(pieces, collected.transitions.cost),
    )
    return new, multiplier_moves


class Advantages(NamedTuple):
    observation: jax.Array  # normalised, [T, num_envs, obs]
    reward_advantage: jax.Array  # raw GAE, [T, num_envs]
    reward_target: jax.Array
    cost_advantage: jax.Array  # [T, num_envs], or [T, num_envs, m] for m constraints (GAE per constraint)
    cost_target: jax.Array


def advantages(pieces: Pieces, learner: Learner, transitions: Transition) -> Advantages:
    """Reward and cost advantages and value targets (GAE, truncations bootstrapped), time-major."""
    config = pieces.config
    if pieces.per_step:  # normalised in the rollout, each with its step's statistics
        observation, next_observation = transitions.observation, transitions.next_observation
    else:
        observation = normalize(pieces, learner.normalizer, transitions.observation)
        next_observation = normalize(pieces, learner.normalizer, transitions.next_observation)

    def for_signal(apply, critic_params, signal):
        values = apply(critic_params, observation)
        next_values = apply(critic_params, next_observation)
        termination, episode_end = transitions.termination, transitions.episode_end
        if signal.ndim > termination.ndim:  # [T, N, m]: the same episode boundaries for each constraint
            termination, episode_end = termination[..., None], episode_end[..., None]
        return gae.generalized_advantage_estimation(
            signal, values, next_values, termination, episode_end, config.gamma, config.gae_lambda,
        )

    reward_advantage, reward_target = for_signal(pieces.critic.apply, learner.critic_params["reward"], transitions.reward)
    cost_advantage, cost_target = for_signal(cost_critic_apply(pieces), learner.critic_params["cost"], transitions.cost)
    return Advantages(observation, reward_advantage, reward_target, cost_advantage, cost_target)


def update_multiplier(pieces: Pieces, multiplier_state, constraint_cost, moves: Optional[jax.Array]):
    """The multiplier rule on the constraint signal, first (as the paper's code does); held
    where ``moves`` is False. With m constraints, the rule updates each constraint's
    multiplier from its own signal and limit, independently (vmapped)."""
    rule = pieces.algorithm.multiplier
    if pieces.num_constraints == 1:
        new = rule.update(multiplier_state, constraint_cost, pieces.cost_limit, pieces.config)
    else:
        new = jax.vmap(lambda state, cost, limit: rule.update(state, cost, limit, pieces.config))(
            multiplier_state, constraint_cost, pieces.limit)
    if moves is None:
        return new
    return jax.tree.map(lambda updated, old: jnp.where(moves, updated, old), new, multiplier_state)


def flat(x: jax.Array) -> jax.Array:
    """[T, N, ...] -> [T*N, ...]."""
    return x.reshape((-1,) + x.shape[2:])


def policy_step(pieces: Pieces, learner: Learner, collected: Collected, estimates: Advantages,
                multiplier, constraint_cost, rho, key):
    """The algorithm's objective and policy step (SHAPO inside it); returns the new actor
    params, its step state, the diagnostics and the flat batch."""
    if pieces.num_constraints == 1:
        cost_advantage = gae.center(estimates.cost_advantage)
    else:  # each constraint's advantage centred on its own mean
        cost_advantage = gae.center(estimates.cost_advantage, axis=(0, 1))
    reward_advantage = gae.standardize(estimates.reward_advantage)
    advantage = pieces.algorithm.objective(
        reward_advantage, cost_advantage, multiplier, constraint_cost, pieces.limit, pieces.config)
    transitions = collected.transitions
    batch = PolicyBatch(
        flat(estimates.observation), flat(transitions.action), flat(transitions.log_prob), flat(advantage))
    constraint = Constraint(flat(cost_advantage), constraint_cost - pieces.limit)
    step = pieces.algorithm.make_policy_step(pieces.config, pieces.actor.apply, rho).step
    actor_params, actor_state, diagnostics = step(
        learner.actor_params, learner.actor_optimizer_state, batch, constraint, key)
    return actor_params, actor_state, diagnostics, batch


def fit_critics_of(pieces: Pieces, learner: Learner, batch: PolicyBatch, estimates: Advantages, key):
    config = pieces.config
    return fit_critics(
        pieces.critic.apply, pieces.critic_optimizer, learner.critic_params, learner.critic_optimizer_state,
        batch.observation, flat(estimates.reward_target), flat(estimates.cost_target), key,
        config.update_epochs, config.num_minibatches, config.critic_l2,
        cost_apply=None if pieces.num_constraints == 1 else cost_critic_apply(pieces),
    )


def advance_normalizer(pieces: Pieces, normalizer, collected: Collected):
    """Observation statistics, updated after the update that used them (per step: in the
    rollout, already)."""
    if pieces.per_step:
        return collected.observation_statistics
    if pieces.config.normalize_observations:
        return running_statistics.update(normalizer, collected.transitions.observation)
    return normalizer


def keep_last_finite(state: TrainState, new_state: TrainState, finite: jax.Array,
                     shared_env_leaves: Optional[Any] = None) -> TrainState:
    """Never continue silently on NaNs: keep the last finite state and record where it broke.
    (Env-state leaves the batch shares, ``shared_env_leaves``, are the physics' scratch space
    and come from ``new_state``, whole.)"""
    ok = finite & (state.failed_update < 0)
    failed_update = jnp.where((state.failed_update < 0) & ~finite, state.update + 1, state.failed_update)
    select = lambda old, new, shared=None: batching.select_envs(~ok, old, new, shared)
    old_runner, new_runner = state.runner, new_state.runner
    runner = EnvRunner(select(old_runner.env_state, new_runner.env_state, shared_env_leaves),
                       select(old_runner.initial_env_state, new_runner.initial_env_state, shared_env_leaves),
                       select(old_runner.tracker, new_runner.tracker))
    kept = select(state._replace(runner=None), new_state._replace(runner=None))
    return kept._replace(runner=runner, failed_update=failed_update)


def update_metrics(pieces: Pieces, state: TrainState, new_state: TrainState, episodes: EpisodeStatistics,
                   collected: Collected, multiplier, diagnostics: Metrics) -> Metrics:
    """The update's scalars: what was measured in its rollout, and the steps' diagnostics.

    With m > 1 constraints, ``episode_cost``, ``constraint_cost``, ``total_cost``,
    ``cost_limit``, ``multiplier`` and ``step_cost`` are sums over the constraints,
    ``violation_rate`` is the fraction of episodes over at least one limit, and each of
    them also comes per constraint as ``NAME_0`` ... ``NAME_{m-1}``.
    """
    finished, transitions = collected.finished, collected.transitions
    any_finished = finished.count > 0
    safe_count = jnp.maximum(finished.count, 1.0)
    several = pieces.num_constraints > 1
    metrics = {
        "update": new_state.update,
        "env_steps": new_state.env_steps,
        "episode_return": episodes.episode_return,
        "episode_cost": episodes.episode_cost,
        "constraint_cost": episodes.constraint_cost,
        "episodes_finished": finished.count,
        "episode_length": jnp.where(any_finished, finished.length_sum / safe_count, 0.0),
        "total_cost": new_state.episodes.total_cost,
        "cost_limit": pieces.limit if several else jnp.asarray(pieces.cost_limit, jnp.float32),
        "multiplier": multiplier,
        "rho": state.rho,
        "step_reward": transitions.reward.mean(),
        "step_cost": transitions.cost.mean(axis=(0, 1)) if several else transitions.cost.mean(),
        "failed_update": new_state.failed_update,
        "violation_rate": jnp.where(any_finished, finished.violations / safe_count, 0.0),
        **diagnostics,
    }
    if several:
        return per_constraint(metrics, violation_rate=jnp.where(any_finished, finished.any_violations / safe_count, 0.0))
    return metrics


PER_CONSTRAINT = ("episode_cost", "constraint_cost", "total_cost", "cost_limit", "multiplier", "step_cost",
                  "violation_rate")


def per_constraint(metrics: Metrics, violation_rate: jax.Array) -> Metrics:
    """Splits the [m] metrics into scalars ``NAME_i``, keeping ``NAME`` as their sum
    (``violation_rate``: the rate of episodes over at least one limit)."""
    out = {}
    for name, value in metrics.items():
        if name not in PER_CONSTRAINT:
            out[name] = value
            continue
        out[name] = violation_rate if name == "violation_rate" else value.sum()
        for i in range(value.shape[0]):
            out[f"{name}_{i}"] = value[i]
    return out


def update(pieces: Pieces, state: TrainState, rho, progress_fn: Optional[ProgressFn] = None):
    """One update: collect, statistics, advantages, multiplier, policy step, critics,
    normaliser, keep-last-finite, metrics."""
    rollout_key, policy_key, next_key = jax.random.split(state.key, 3)
    collected = collect(pieces, state, rollout_key)
    episodes, multiplier_moves = episode_statistics(pieces, state.episodes, collected)
    estimates = advantages(pieces, state.learner, collected.transitions)
    multiplier_state = update_multiplier(
        pieces, state.learner.multiplier_state, episodes.constraint_cost, multiplier_moves)
    multiplier = multiplier_state.multiplier
    actor_params, actor_state, actor_diagnostics, batch = policy_step(
        pieces, state.learner, collected, estimates, multiplier, episodes.constraint_cost, rho, policy_key)
    critic_params, critic_state, critic_diagnostics = fit_critics_of(
        pieces, state.learner, batch, estimates, policy_key)
    diagnostics = {**actor_diagnostics, **critic_diagnostics}
    learner = Learner(
        actor_params=actor_params,
        critic_params=critic_params,
        actor_optimizer_state=actor_state,
        critic_optimizer_state=critic_state,
        multiplier_state=multiplier_state,
        normalizer=advance_normalizer(pieces, state.learner.normalizer, collected),
    )
    new_state = state._replace(
        learner=learner,
        runner=collected.runner,
        episodes=episodes,
        env_steps=state.env_steps + pieces.config.num_envs * pieces.config.unroll_length,
        update=state.update + 1,
        key=next_key,
    )
    finite = all_finite((actor_params, critic_params, diagnostics, multiplier))
    new_state = keep_last_finite(state, new_state, finite, pieces.shared_env_leaves)
    metrics = update_metrics(pieces, state, new_state, episodes, collected, multiplier, diagnostics)
    if progress_fn is not None:
        jax.debug.callback(progress_fn, {**metrics, "seed_key": state.seed_key})
    return new_state, metrics


def make_trainer(config: TrainConfig, progress_fn: Optional[ProgressFn] = None, env: Optional[Env] = None) -> Trainer:
    """Builds the pure functions of a run; resolves ``config`` first (``config.resolve``:
    preset, validation, task defaults; nothing compiles here), and ``Trainer.config`` is that
    resolved config.

    Args:
      config: the run's settings.
      progress_fn: called on the host once per update per seed with scalar metrics
        (through ``jax.debug.callback``); ``metrics["seed_key"]`` tells seeds apart.
      env: an env to use instead of ``make_env(config.env)`` (its task defaults still
        come from the registry entry ``config.env``); one whose batches share leaves, as an
        MJX Warp env's do, is found out and handled (batching.py), whatever ``physics_impl``.
    """
    pieces = make_pieces(config, env)
    config = pieces.config

    def update_at_config_radius(state: TrainState) -> tuple[TrainState, Metrics]:
        """One update with the config's radius as a compile-time constant, so that a zero
        radius compiles to exactly the base algorithm's program."""
        return update(pieces, state, config.perturbation_radius, progress_fn)

    def update_at_own_radius(state: TrainState) -> tuple[TrainState, Metrics]:
        return update(pieces, state, state.rho, progress_fn)

    def train(key: jax.Array, rho: Optional[jax.Array] = None) -> TrainOutput:
        """Trains one seed; ``rho`` overrides the config's radius (vmap over it for a sweep)."""
        state = init(pieces, key, rho)
        step = update_at_config_radius if rho is None else update_at_own_radius
        state, metrics = jax.lax.scan(lambda s, _: step(s), state, None, config.num_updates)
        return TrainOutput(state, metrics)

    return Trainer(
        config=config, env=pieces.env, cost_limit=pieces.cost_limit, episode_length=pieces.episode_length,
        init=functools.partial(init, pieces), act=functools.partial(act, pieces), update=update_at_config_radius,
        train=train, update_at_own_radius=update_at_own_radius, shared_env_leaves=pieces.shared_env_leaves,
    )


def make_train(config: TrainConfig, progress_fn: Optional[ProgressFn] = None, env: Optional[Env] = None) -> Callable[[jax.Array], TrainOutput]:
    """``train(key) -> TrainOutput``: a pure function; ``jax.jit(jax.vmap(train))(keys)`` for many seeds."""
    return make_trainer(config, progress_fn, env).train


def all_finite(tree) -> jax.Array:
    """True when every floating-point leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def key_data(key: jax.Array) -> jax.Array:
    """The raw uint32 data of a key, typed or raw."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """One key per seed, split from ``--seed``; the same seed gives the same keys."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)
