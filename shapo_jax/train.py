"""The trainer: ``make_train(config) -> train(key)``, the whole run as one pure function.

Reading top to bottom follows the data of one update: collect a rollout (``rollout.py``),
compute reward and cost advantages (``advantages.py``), update the Lagrange multiplier
(``multipliers.py``), take the policy step of the algorithm (``algorithms/``) with the
actor's gradient optionally passed through the SHAPO ``sharpness_aware`` transform, fit
the critics, update the observation statistics, and emit metrics. ``train`` scans that
update ``num_updates`` times, so ``jax.jit(jax.vmap(train))(keys)`` trains many seeds in a
single compiled program; nothing per env step returns to Python.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

import shapo_envs  # before Brax: it silences MJX's optional-backend notice
from brax.envs.base import Env, State
from brax.training.acme import running_statistics

from shapo_jax import advantages as gae
from shapo_jax import normalization
from shapo_jax.algorithms import Algorithm, Constraint, get_algorithm
from shapo_jax.algorithms.critics import fit_critics
from shapo_jax.config import TrainConfig, apply_preset, validate
from shapo_jax.losses import PolicyBatch
from shapo_jax.networks import Critic, GaussianActor, gaussian_log_prob
from shapo_jax.rollout import CostWindow, EpisodeTracker, Transition, collect_rollout
from shapo_jax.sharpness import sharpness_aware

Metrics = dict[str, jax.Array]
ProgressFn = Callable[[Metrics], None]


class TrainState(NamedTuple):
    """Everything one seed's training carries from update to update."""

    actor_params: Any
    critic_params: Any  # {"reward": ..., "cost": ...}
    actor_optimizer_state: optax.OptState
    critic_optimizer_state: optax.OptState
    multiplier_state: Any  # LagrangeState or PIDState; .multiplier is lambda
    # Brax's RunningStatisticsState (--observation-normalization update) or Gymnasium's
    # normalization.RunningMeanStd (step), which has then seen the current env_state.obs
    normalizer: Any
    env_state: State
    initial_env_state: State
    tracker: EpisodeTracker
    episode_return: jax.Array  # mean return of the latest finished episodes
    episode_cost: jax.Array  # mean cost of the latest finished episodes
    constraint_cost: jax.Array  # the constraint signal of the latest update (see --cost-window)
    cost_window: CostWindow  # the last --cost-window episode costs (size 0 when 0)
    total_cost: jax.Array  # cost paid during all of training so far
    env_steps: jax.Array
    update: jax.Array
    failed_update: jax.Array  # -1, or the first update whose result was not finite
    seed_key: jax.Array  # the key train() was called with, to tell seeds apart in metrics
    rho: jax.Array  # SHAPO radius of this run (a leaf, so runs can be vmapped over radii)
    key: jax.Array


class TrainOutput(NamedTuple):
    state: TrainState
    metrics: Metrics  # each leaf stacked over updates: [num_updates]


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The pieces of ``train``, for callers that drive updates themselves (benchmarks, resume)."""

    config: TrainConfig
    env: Env
    cost_limit: float
    episode_length: int
    init: Callable[..., TrainState]  # init(key, rho=None)
    # act(actor_params, normalizer, observation, key) -> (sampled action, its log-prob, mean action),
    # actions unclipped (the env step clips them)
    act: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]
    update: Callable[[TrainState], tuple[TrainState, Metrics]]
    train: Callable[..., TrainOutput]  # train(key, rho=None)
    # update with the state's own radius state.rho (traced), as train(key, rho) steps: drives
    # runs of several radii in one program update by update (benchmarks/paper.py's checkpoints)
    update_at_own_radius: Optional[Callable[[TrainState], tuple[TrainState, Metrics]]] = None


def resolve_task(config: TrainConfig) -> tuple[float, int]:
    """The cost limit and episode length: the flags if given, else the task's defaults."""
    spec = shapo_envs.get_spec(config.env)
    cost_limit = spec.cost_limit if config.cost_limit is None else config.cost_limit
    episode_length = spec.episode_length if config.episode_length is None else config.episode_length
    return float(cost_limit), int(episode_length)


def resolve_redraw_resets(config: TrainConfig) -> bool:
    """``--redraw-resets`` if given, else the task's default."""
    if config.redraw_resets is not None:
        return bool(config.redraw_resets)
    return shapo_envs.get_spec(config.env).redraw_resets


def make_trainer(config: TrainConfig, progress_fn: Optional[ProgressFn] = None, env: Optional[Env] = None) -> Trainer:
    """Builds the pure functions of a run; validates ``config`` first (nothing compiles here).

    Args:
      config: the run's settings.
      progress_fn: called on the host once per update per seed with scalar metrics
        (through ``jax.debug.callback``); ``metrics["seed_key"]`` tells seeds apart.
      env: an env to use instead of ``make_env(config.env)`` (its task defaults still
        come from the registry entry ``config.env``).
    """
    config = validate(apply_preset(config), shapo_envs.list_envs())
    cost_limit, episode_length = resolve_task(config)
    redraw_resets = resolve_redraw_resets(config)
    env = env if env is not None else shapo_envs.make_env(config.env)
    algorithm: Algorithm = get_algorithm(config.algo)

    actor = GaussianActor(config.hidden_sizes, env.action_size, config.initialization)
    critic = Critic(config.hidden_sizes, config.initialization)
    critic_optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.critic_learning_rate)
    )
    observation_size = env.observation_size
    num_envs, unroll_length = config.num_envs, config.unroll_length

    # Per-step statistics (Gymnasium's NormalizeObservation): the rollout normalises and
    # stores normalised observations, so the update must not normalise them again.
    per_step = config.normalize_observations and config.observation_normalization == "step"

    def normalize(normalizer, observation):
        if not config.normalize_observations:
            return observation
        if per_step:
            return normalization.normalize(normalizer, observation)
        return running_statistics.normalize(observation, normalizer)

    def init_normalizer(env_state: State, key: jax.Array):
        """Brax's empty statistics; per step, Gymnasium's after the released code's two
        resets of its vector env (seeded in its env factory, then again in ``main``), the
        second being the env states training starts from."""
        if not per_step:
            return running_statistics.init_state(jnp.zeros((observation_size,), jnp.float32))
        first_reset = jax.vmap(env.reset)(jax.random.split(key, num_envs))
        statistics = normalization.update(normalization.RunningMeanStd.zeros(observation_size), first_reset.obs)
        return normalization.update(statistics, env_state.obs)

    def init(seed_key: jax.Array, rho: Optional[jax.Array] = None) -> TrainState:
        actor_key, reward_key, cost_key, env_key, key = jax.random.split(seed_key, 5)
        normalizer_key = jax.random.fold_in(env_key, 1)
        dummy = jnp.zeros((1, observation_size))
        actor_params = actor.init(actor_key, dummy)
        critic_params = {"reward": critic.init(reward_key, dummy), "cost": critic.init(cost_key, dummy)}
        env_state = jax.vmap(env.reset)(jax.random.split(env_key, num_envs))
        zero = jnp.zeros((), jnp.float32)
        return TrainState(
            actor_params=actor_params,
            critic_params=critic_params,
            actor_optimizer_state=algorithm.make_policy_step(config, actor.apply, 0.0).init(actor_params),
            critic_optimizer_state=critic_optimizer.init(critic_params),
            multiplier_state=algorithm.multiplier.init(config),
            normalizer=init_normalizer(env_state, normalizer_key),
            env_state=env_state,
            initial_env_state=env_state,
            tracker=EpisodeTracker.zeros(num_envs),
            episode_return=zero,
            episode_cost=zero,
            constraint_cost=zero,
            cost_window=CostWindow.zeros(config.cost_window),
            total_cost=zero,
            env_steps=jnp.zeros((), jnp.int32),
            update=jnp.zeros((), jnp.int32),
            failed_update=jnp.full((), -1, jnp.int32),
            seed_key=key_data(seed_key),
            rho=jnp.asarray(config.perturbation_radius if rho is None else rho, jnp.float32),
            key=key,
        )

    def sample(actor_params, normalized_observation, key):
        mean, log_std = actor.apply(actor_params, normalized_observation)
        action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return action, gaussian_log_prob(mean, log_std, action), mean

    def act(actor_params, normalizer, observation, key):
        """A sample of the Gaussian policy on normalised observations, its log-prob, and the mean."""
        return sample(actor_params, normalize(normalizer, observation), key)

    def policy_for(actor_params, normalizer):
        if per_step:  # the rollout hands the policy observations it normalised
            return lambda observation, key: sample(actor_params, observation, key)[:2]
        return lambda observation, key: act(actor_params, normalizer, observation, key)[:2]

    def advantages_of(state: TrainState, transitions: Transition):
        """Reward and cost advantages and value targets, time-major [T, num_envs]."""
        if per_step:  # normalised in the rollout, each with its step's statistics
            observation, next_observation = transitions.observation, transitions.next_observation
        else:
            observation = normalize(state.normalizer, transitions.observation)
            next_observation = normalize(state.normalizer, transitions.next_observation)

        def for_signal(critic_params, signal):
            values = critic.apply(critic_params, observation)
            next_values = critic.apply(critic_params, next_observation)
            return gae.generalized_advantage_estimation(
                signal, values, next_values, transitions.termination, transitions.episode_end,
                config.gamma, config.gae_lambda,
            )

        reward_advantage, reward_target = for_signal(state.critic_params["reward"], transitions.reward)
        cost_advantage, cost_target = for_signal(state.critic_params["cost"], transitions.cost)
        return observation, reward_advantage, reward_target, cost_advantage, cost_target

    def constraint_signal(state: TrainState, finished, episode_cost):
        """The cost the multiplier, CPO's constraint value and CRPO's switch see, and whether
        the multiplier moves this update (None: always).

        --cost-window 0: this update's mean episode cost (the previous one if none ended).
        K > 0, the released code's ``logger.get_stats("Metrics/EpCost")`` (trpo_pid.py,
        cpo.py, crpo.py @1bb7704): the mean, over this update's episode ends, of the mean
        cost of the last K episodes at each end; 0.0 while the logger has no EpCost column,
        i.e. until an update begins with an episode finished; and NaN when none ends in the
        update, on which its PID keeps its state (here every multiplier does, and CPO/CRPO
        keep the previous signal).
        """
        if not config.cost_window:
            return episode_cost, None
        any_finished = finished.count > 0
        seen_before = state.cost_window.count > 0
        window_mean = finished.window_cost_sum / jnp.maximum(finished.count, 1.0)
        signal = jnp.where(seen_before, jnp.where(any_finished, window_mean, state.constraint_cost), 0.0)
        return signal, any_finished | ~seen_before

    def update_with_radius(state: TrainState, rho) -> tuple[TrainState, Metrics]:
        rollout_key, policy_key, next_key = jax.random.split(state.key, 3)

        # 1. Rollout: num_envs x unroll_length steps with the current stochastic policy. Envs
        #    whose episode ends restart from initial_env_state, drawn anew here if asked (one
        #    reset per env per update, instead of one per env step).
        initial_env_state = state.initial_env_state
        if redraw_resets:
            reset_keys = jax.random.split(jax.random.fold_in(rollout_key, 1), num_envs)
            initial_env_state = jax.vmap(env.reset)(reset_keys)
        rollout = collect_rollout(
            env, policy_for(state.actor_params, state.normalizer), state.env_state,
            initial_env_state, state.tracker, rollout_key, unroll_length, episode_length, cost_limit,
            observation_statistics=state.normalizer if per_step else None,
            cost_window=state.cost_window if config.cost_window else None,
        )
        env_state, tracker, transitions, finished = rollout[:4]
        any_finished = finished.count > 0
        safe_count = jnp.maximum(finished.count, 1.0)
        episode_return = jnp.where(any_finished, finished.return_sum / safe_count, state.episode_return)
        episode_cost = jnp.where(any_finished, finished.cost_sum / safe_count, state.episode_cost)
        constraint_cost, multiplier_moves = constraint_signal(state, finished, episode_cost)

        # 2. Advantages for reward and cost (GAE, truncations bootstrapped).
        observation, reward_advantage, reward_target, cost_advantage, cost_target = advantages_of(state, transitions)

        # 3. Multiplier first, from the constraint signal (as the paper's code does).
        multiplier_state = algorithm.multiplier.update(state.multiplier_state, constraint_cost, cost_limit, config)
        if multiplier_moves is not None:
            multiplier_state = jax.tree.map(
                lambda new, old: jnp.where(multiplier_moves, new, old), multiplier_state, state.multiplier_state)
        multiplier = multiplier_state.multiplier
        reward_advantage, cost_advantage = gae.standardize(reward_advantage), gae.center(cost_advantage)
        advantage = algorithm.objective(reward_advantage, cost_advantage, multiplier, constraint_cost, cost_limit, config)

        # 4. The algorithm's policy step (SHAPO inside it), then the critics.
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # [T, N, ...] -> [T*N, ...]
        batch = PolicyBatch(flat(observation), flat(transitions.action), flat(transitions.log_prob), flat(advantage))
        constraint = Constraint(flat(cost_advantage), constraint_cost - cost_limit)
        actor_params, actor_state, actor_diagnostics = algorithm.make_policy_step(config, actor.apply, rho).step(
            state.actor_params, state.actor_optimizer_state, batch, constraint, policy_key
        )
        critic_params, critic_state, critic_diagnostics = fit_critics(
            critic.apply, critic_optimizer, state.critic_params, state.critic_optimizer_state,
            batch.observation, flat(reward_target), flat(cost_target), policy_key,
            config.update_epochs, config.num_minibatches, config.critic_l2,
        )
        diagnostics = {**actor_diagnostics, **critic_diagnostics}

        # 5. Observation statistics, updated after the update that used them (per step: in
        #    the rollout, already).
        normalizer = rollout.observation_statistics if per_step else state.normalizer
        if config.normalize_observations and not per_step:
            normalizer = running_statistics.update(normalizer, transitions.observation)

        rollout_cost = transitions.cost.sum()
        new_state = state._replace(
            actor_params=actor_params,
            critic_params=critic_params,
            actor_optimizer_state=actor_state,
            critic_optimizer_state=critic_state,
            multiplier_state=multiplier_state,
            normalizer=normalizer,
            env_state=env_state,
            initial_env_state=initial_env_state,
            tracker=tracker,
            episode_return=episode_return,
            episode_cost=episode_cost,
            constraint_cost=constraint_cost,
            cost_window=state.cost_window if rollout.cost_window is None else rollout.cost_window,
            total_cost=state.total_cost + rollout_cost,
            env_steps=state.env_steps + num_envs * unroll_length,
            update=state.update + 1,
            key=next_key,
        )

        # 6. Never continue silently on NaNs: keep the last finite state and record where it broke.
        finite = all_finite((actor_params, critic_params, diagnostics, multiplier))
        ok = finite & (state.failed_update < 0)
        failed_update = jnp.where(
            (state.failed_update < 0) & ~finite, state.update + 1, state.failed_update
        )
        new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
        new_state = new_state._replace(failed_update=failed_update)

        metrics = {
            "update": new_state.update,
            "env_steps": new_state.env_steps,
            "episode_return": episode_return,
            "episode_cost": episode_cost,
            "constraint_cost": constraint_cost,
            "episodes_finished": finished.count,
            "episode_length": jnp.where(any_finished, finished.length_sum / safe_count, 0.0),
            "total_cost": new_state.total_cost,
            "cost_limit": jnp.asarray(cost_limit, jnp.float32),
            "multiplier": multiplier,
            "rho": state.rho,
            "step_reward": transitions.reward.mean(),
            "step_cost": transitions.cost.mean(),
            "failed_update": failed_update,
            "violation_rate": jnp.where(any_finished, finished.violations / safe_count, 0.0),
            **diagnostics,
        }
        if progress_fn is not None:
            jax.debug.callback(progress_fn, {**metrics, "seed_key": state.seed_key})
        return new_state, metrics

    def update(state: TrainState) -> tuple[TrainState, Metrics]:
        """One update with the config's radius as a compile-time constant, so that a zero
        radius compiles to exactly the base algorithm's program."""
        return update_with_radius(state, config.perturbation_radius)

    def update_at_own_radius(state: TrainState) -> tuple[TrainState, Metrics]:
        return update_with_radius(state, state.rho)

    def train(key: jax.Array, rho: Optional[jax.Array] = None) -> TrainOutput:
        """Trains one seed; ``rho`` overrides the config's radius (vmap over it for a sweep)."""
        state = init(key, rho)
        step = update if rho is None else update_at_own_radius
        state, metrics = jax.lax.scan(lambda s, _: step(s), state, None, config.num_updates)
        return TrainOutput(state, metrics)

    return Trainer(config, env, cost_limit, episode_length, init, act, update, train, update_at_own_radius)


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
