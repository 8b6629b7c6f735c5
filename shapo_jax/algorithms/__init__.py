"""Algorithms: what differs between them is the multiplier rule and the policy step.

The rollout, advantages, critic fitting and the SHAPO transform are shared
(``shapo_jax.train``); an ``Algorithm`` names how the Lagrange multiplier moves and how
reward and cost advantages combine into the one the policy step ascends.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from shapo_jax import multipliers
from shapo_jax.config import ALGORITHMS, TrainConfig
from shapo_jax.multipliers import LagrangeState


class Algorithm(NamedTuple):
    name: str
    init_multiplier: Callable[[TrainConfig], LagrangeState]
    update_multiplier: Callable[[LagrangeState, jax.Array, float, TrainConfig], LagrangeState]
    combine_advantages: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def _lagrange_init(config: TrainConfig) -> LagrangeState:
    return multipliers.lagrange_init(config.multiplier_init, config.multiplier_learning_rate)


def _lagrange_update(state, mean_episode_cost, cost_limit, config: TrainConfig) -> LagrangeState:
    return multipliers.lagrange_update(state, mean_episode_cost, cost_limit, config.multiplier_learning_rate)


def _zero_multiplier(config: TrainConfig) -> LagrangeState:
    """Unconstrained PPO: lambda is fixed at 0 and the cost is only logged."""
    return multipliers.lagrange_init(0.0, config.multiplier_learning_rate)


def _keep_multiplier(state, mean_episode_cost, cost_limit, config) -> LagrangeState:
    return state


def _reward_only(reward_advantage, cost_advantage, multiplier):
    return reward_advantage


PPO_LAG = Algorithm("ppo_lag", _lagrange_init, _lagrange_update, multipliers.lagrangian_advantage)
"""PPO-Lagrangian (Ray et al. 2019; SafePO's ppo_lag): our extension of SHAPO to PPO."""

PPO = Algorithm("ppo", _zero_multiplier, _keep_multiplier, _reward_only)
"""Unconstrained PPO (Schulman et al. 2017): the cost is logged, never optimised."""

_ALGORITHMS = {a.name: a for a in (PPO, PPO_LAG)}
assert tuple(sorted(_ALGORITHMS)) == tuple(sorted(ALGORITHMS))


def get_algorithm(name: str) -> Algorithm:
    try:
        return _ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; valid: {', '.join(sorted(_ALGORITHMS))}") from None
