"""Algorithms: each is a multiplier rule, an objective, and a policy step.

The rollout, advantages, critic fitting and the SHAPO transform are shared
(``shapo_jax.train``). What differs between the seven algorithms fits in this table; the
trainer only calls its functions (``algorithms.base.PolicyStep``: ``init(params)`` and
``step(params, state, batch, constraint, key)``), never asks which algorithm runs. A new
algorithm is a policy step in its own module (or one of these) and a row below.

| algo     | multiplier        | advantage the policy ascends            | policy step          |
|----------|-------------------|-----------------------------------------|----------------------|
| ppo      | none (0)          | A_r                                     | PPO clip, minibatches |
| ppo_lag  | Lagrange (Adam)   | (A_r - lambda A_c) / (1 + lambda)        | PPO clip             |
| ppo_pid  | PID               | (A_r - lambda A_c) / (1 + lambda)        | PPO clip             |
| trpo_lag | Lagrange (Adam)   | (A_r - lambda A_c) / (1 + lambda)        | TRPO, full batch     |
| trpo_pid | PID               | (A_r - lambda A_c) / (1 + lambda)        | TRPO (paper: PIDLag) |
| cpo      | none (dual solve) | A_r and A_c separately                  | CPO                  |
| crpo     | none (switch)     | -A_c if J_c > limit + distance, else A_r | TRPO                 |

With m constraints (a task whose cost has m entries) each multiplier rule runs once per
constraint, the Lagrangian advantage is (A_r - sum_i lambda_i A_c,i) / (1 + sum_i lambda_i),
CRPO reduces the most violated constraint, and CPO is refused (``config.resolve``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from shapo_jax import multipliers
from shapo_jax.algorithms.base import Constraint, MakePolicyStep, PolicyStep
from shapo_jax.algorithms.ppo import ppo_policy_step
from shapo_jax.algorithms.trust_region import cpo_policy_step, trpo_policy_step
from shapo_jax.config import ALGORITHMS, TrainConfig

MultiplierState = multipliers.LagrangeState | multipliers.PIDState


class MultiplierRule(NamedTuple):
    init: Callable[[TrainConfig], MultiplierState]
    update: Callable[[MultiplierState, jax.Array, float, TrainConfig], MultiplierState]


class Algorithm(NamedTuple):
    name: str
    multiplier: MultiplierRule
    # (standardised A_r, centred A_c, lambda, mean episode cost, cost limit, config) -> A
    objective: Callable[..., jax.Array]
    # (config, actor_apply, rho) -> PolicyStep; rho may be traced
    make_policy_step: MakePolicyStep
    reference: str


NO_MULTIPLIER = MultiplierRule(
    init=lambda config: multipliers.lagrange_init(0.0, config.multiplier_learning_rate),
    update=lambda state, cost, limit, config: state,
)
LAGRANGE = MultiplierRule(
    init=lambda config: multipliers.lagrange_init(config.multiplier_init, config.multiplier_learning_rate),
    update=lambda state, cost, limit, config: multipliers.lagrange_update(
        state, cost, limit, config.multiplier_learning_rate
    ),
)
PID = MultiplierRule(
    init=lambda config: multipliers.pid_init(config.multiplier_init, config.pid_d_delay),
    update=lambda state, cost, limit, config: multipliers.pid_update(
        state, cost, limit, config.pid_kp, config.pid_ki, config.pid_kd, initial_multiplier=config.multiplier_init
    ),
)


def reward_only(reward_advantage, cost_advantage, multiplier, episode_cost, cost_limit, config):
    return reward_advantage


def lagrangian(reward_advantage, cost_advantage, multiplier, episode_cost, cost_limit, config):
    return multipliers.lagrangian_advantage(reward_advantage, cost_advantage, multiplier)


def crpo_switch(reward_advantage, cost_advantage, multiplier, episode_cost, cost_limit, config):
    """CRPO (Xu et al. 2021): reduce cost while the constraint is violated, else ascend reward.

    The paper's code uses -lambda_c A_c with lambda_c = 1 on the violating side. With m
    constraints (``episode_cost``, ``cost_limit`` [m], ``cost_advantage`` [..., m]) it
    reduces the most violated one, the largest ``episode_cost_i - cost_limit_i``, as CRPO's
    rule picks any violated constraint (Xu et al. 2021, Alg. 1).
    """
    if jnp.ndim(episode_cost) == 0:
        violated = episode_cost > cost_limit + config.crpo_distance
        return jnp.where(violated, -cost_advantage, reward_advantage)
    excess = episode_cost - cost_limit
    worst = jnp.argmax(excess)
    violated = excess[worst] > config.crpo_distance
    return jnp.where(violated, -jnp.take(cost_advantage, worst, axis=-1), reward_advantage)


__all__ = ["Algorithm", "Constraint", "MultiplierRule", "PolicyStep", "get_algorithm"]

_ALGORITHMS = {
    a.name: a
    for a in (
        Algorithm(name="ppo", multiplier=NO_MULTIPLIER, objective=reward_only, make_policy_step=ppo_policy_step,
                  reference="Schulman et al. 2017 (cost only logged)"),
        Algorithm(name="ppo_lag", multiplier=LAGRANGE, objective=lagrangian, make_policy_step=ppo_policy_step,
                  reference="Ray et al. 2019; SafePO ppo_lag (our SHAPO extension)"),
        Algorithm(name="ppo_pid", multiplier=PID, objective=lagrangian, make_policy_step=ppo_policy_step,
                  reference="Stooke et al. 2020 PID multiplier on PPO"),
        Algorithm(name="trpo_lag", multiplier=LAGRANGE, objective=lagrangian, make_policy_step=trpo_policy_step,
                  reference="Ray et al. 2019; SafePO trpo_lag"),
        Algorithm(name="trpo_pid", multiplier=PID, objective=lagrangian, make_policy_step=trpo_policy_step,
                  reference="Stooke et al. 2020; the paper's PIDLag"),
        Algorithm(name="cpo", multiplier=NO_MULTIPLIER, objective=reward_only, make_policy_step=cpo_policy_step,
                  reference="Achiam et al. 2017; the paper's CPO"),
        Algorithm(name="crpo", multiplier=NO_MULTIPLIER, objective=crpo_switch, make_policy_step=trpo_policy_step,
                  reference="Xu et al. 2021; the paper's CRPO"),
    )
}
assert tuple(sorted(_ALGORITHMS)) == tuple(sorted(ALGORITHMS))


def get_algorithm(name: str) -> Algorithm:
    try:
        return _ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; valid: {', '.join(sorted(_ALGORITHMS))}") from None
