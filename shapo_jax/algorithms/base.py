"""What every algorithm's policy step looks like from the trainer.

An algorithm's ``make_policy_step(config, actor_apply, rho)`` returns a ``PolicyStep``:
``init(params)`` builds the step's state (an optimizer state, or SHAPO's state), and
``step(params, state, batch, constraint, key) -> (params, state, diagnostics)`` takes one
update's step. The signature is the same for all seven, so the trainer calls it without
knowing which algorithm runs; a step ignores the arguments it has no use for.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import optax

from shapo_jax.config import TrainConfig
from shapo_jax.losses import PolicyBatch
from shapo_jax.sharpness import sharpness_aware

Params = Any
ActorApply = Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]  # -> (mean, log_std)


class Constraint(NamedTuple):
    """The cost constraint as a policy step sees it (CPO uses it; the others ignore it)."""

    cost_advantage: jax.Array  # centred A_c per sample of the flat batch, [batch]
    value: jax.Array  # c = constraint signal - cost limit (> 0: violated)


class PolicyStep(NamedTuple):
    init: Callable[[Params], Any]  # init(params) -> the step's state
    # step(params, state, batch, constraint, key) -> (params, state, diagnostics); the
    # diagnostics include sharpness_diagnostics' keys (zeros without SHAPO)
    step: Callable[[Params, Any, PolicyBatch, Constraint, jax.Array], tuple[Params, Any, dict[str, jax.Array]]]


MakePolicyStep = Callable[[TrainConfig, ActorApply, Any], PolicyStep]  # (config, actor_apply, rho)


def make_sharpness(config: TrainConfig, rho) -> Optional[optax.GradientTransformationExtraArgs]:
    """The SHAPO transform when the config turns it on, else None.

    ``rho`` may be traced (a radius per vmapped run); a target KL delta arrives as
    ``rho = sqrt(2 delta)``, which the transform turns back into delta for backtracking.
    """
    if not config.uses_sharpness:
        return None
    return sharpness_aware(rho, geometry=config.geometry, cg_iters=config.cg_iters, damping=config.cg_damping)
