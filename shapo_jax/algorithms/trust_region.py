"""Trust-region policy steps: TRPO (for TRPO-Lag, TRPO-PID, CRPO) and CPO.

Each step works on the whole update's batch, as the paper's released code does (SafePO's
``trpo.py``, ``trpo_pid.py``, ``cpo.py``, ``crpo.py``). The Fisher-vector product is the
Hessian of the mean KL (over batch and action dimensions) at the current parameters, formed
as ``J^T M J v`` from the network linearised once (``fisher.gaussian_fisher``; equal to the
KL's Hessian-vector product to round-off); it is returned undamped and damped once here,
where systems are solved. ``x^T F~ x`` is read off CG's residual rather than from one more
product, and each line-search candidate costs one forward pass for everything it checks.
With SHAPO, the gradient is replaced by the ``sharpness_aware`` gradient at the perturbed
parameters, and the transform gets this same Fisher-vector product; the line search and
every KL check stay at the unperturbed parameters (montrealrobotics/shapo@1bb7704
safepo/single_agent/trpo_pid.py ``main`` and shapo.py ``compute_shapo_gradients_actor``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from shapo_jax.algorithms.base import ActorApply, Constraint, PolicyStep, make_sharpness
from shapo_jax.config import TrainConfig
from shapo_jax.diagnostics import sharpness_diagnostics
from shapo_jax.fisher import conjugate_gradient_with_product, gaussian_fisher, tree_add_scaled, tree_scale, tree_vdot
from shapo_jax.losses import PolicyBatch
from shapo_jax.networks import gaussian_kl, gaussian_log_prob

CPO_EPSILON = 1e-8  # SafePO cpo.py's EPS in the dual solve
LINE_SEARCH_DECAY = 0.8  # SafePO: step_frac *= 0.8


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrustRegionConfig:
    max_kl: float  # trust-region size delta (paper: 0.01)
    cg_iters: int  # CG iterations of the step (paper: 15)
    damping: float  # added to the Fisher in the solve (paper: 0.1)
    line_search_steps: int  # tries, each 0.8 times the last (paper: 15)

    @classmethod
    def of(cls, config: TrainConfig) -> "TrustRegionConfig":
        return cls(max_kl=config.trust_region_kl, cg_iters=config.trust_region_cg_iters, damping=config.cg_damping,
                   line_search_steps=config.line_search_steps)


def surrogate_loss(actor_apply, params, batch: PolicyBatch) -> jax.Array:
    """L(theta) = -mean(pi_theta(a|s) / pi_old(a|s) * A), the TRPO surrogate as a loss."""
    return surrogate_of_outputs(*actor_apply(params, batch.observation), batch)


def surrogate_of_outputs(mean: jax.Array, log_std: jax.Array, batch: PolicyBatch) -> jax.Array:
    """The surrogate loss from the policy's outputs on ``batch.observation`` (no forward pass)."""
    ratio = jnp.exp(gaussian_log_prob(mean, log_std, batch.action) - batch.old_log_prob)
    return -jnp.mean(ratio * batch.advantage)


def sharpness_gradient(
    sharpness: Optional[optax.GradientTransformationExtraArgs],
    sharpness_state,
    loss_fn: Callable[[Any], jax.Array],
    params,
    fvp_fn,
    kl_fn,
):
    """grad L(theta), or with SHAPO grad L(theta + eps) for the eps that worsens L."""
    grad_fn = jax.grad(loss_fn)
    grads = grad_fn(params)
    if sharpness is None:
        return grads, sharpness_state
    return sharpness.update(grads, sharpness_state, params, grad_fn=grad_fn, fvp_fn=fvp_fn, kl_fn=kl_fn)


def line_search(accept: Callable[[Any], jax.Array], params, step, num_steps: int) -> jax.Array:
    """The first of 1, 0.8, 0.8^2, ... (``num_steps`` tries) with ``accept(params + s step)``; 0 if none.

    A ``lax.while_loop``, so it stops at the first accepted scale and batches under vmap.
    """

    def candidate(k):
        return LINE_SEARCH_DECAY ** k.astype(jnp.float32)

    def keep_searching(carry):
        k, accepted = carry
        return (k < num_steps) & ~accepted

    def try_next(carry):
        k, _ = carry
        accepted = accept(tree_add_scaled(params, candidate(k), step))
        return jnp.where(accepted, k, k + 1), accepted

    k, accepted = jax.lax.while_loop(keep_searching, try_next, (jnp.zeros((), jnp.int32), jnp.asarray(False)))
    return jnp.where(accepted, candidate(k), 0.0)


class TrustRegionGeometry(NamedTuple):
    """The KL and damped Fisher at the current parameters, shared by SHAPO and the step."""

    kl: Callable[[Any], jax.Array]  # theta -> mean KL(pi_current || pi_theta)
    fisher_vector_product: Callable[[Any], Any]  # undamped F v
    damped_fisher_vector_product: Callable[[Any], Any]  # (F + damping I) v
    outputs: tuple[jax.Array, jax.Array]  # (mean, log_std) of pi_current on the batch
    kl_of_outputs: Callable[..., jax.Array]  # (mean, log_std) -> mean KL(pi_current || N(mean, std))


def geometry_at(actor_apply, params, observation: jax.Array, damping: float) -> TrustRegionGeometry:
    """The policy's KL and Fisher at ``params`` on ``observation``, linearised once.

    The KL is ``losses.mean_policy_kl``'s (mean over batch and action dimensions, as
    montrealrobotics/shapo@1bb7704 shapo.py ``fvp``), with the reference distribution taken from
    the linearisation instead
    of a forward pass per call; its Hessian at ``params`` is ``fisher.gaussian_fisher``'s.
    """
    distribution = lambda p: actor_apply(p, observation)
    fisher = gaussian_fisher(distribution, params)
    reference = jax.lax.stop_gradient((fisher.mean, fisher.log_std))
    kl_of_outputs = lambda mean, log_std: gaussian_kl(*reference, mean, log_std).mean()
    kl = lambda p: kl_of_outputs(*distribution(p))
    fvp = fisher.fisher_vector_product
    damped = lambda v: tree_add_scaled(fvp(v), damping, v)
    return TrustRegionGeometry(kl, fvp, damped, reference, kl_of_outputs)


def trpo_step(
    config: TrustRegionConfig,
    actor_apply,
    sharpness,
    params,
    sharpness_state,
    batch: PolicyBatch,
):
    """One TRPO step (Schulman et al. 2015) on the surrogate of ``batch.advantage``.

    x = CG(F~, -g);  step = sqrt(2 delta / x^T F~ x) x;  line search on s in {0.8^k}:
    accept when the surrogate loss at theta + s step is finite and no worse than at theta
    and the mean KL is within delta; no step if nothing is accepted (SafePO trpo.py).
    """
    geometry = geometry_at(actor_apply, params, batch.observation, config.damping)
    loss = lambda p: surrogate_loss(actor_apply, p, batch)
    gradient, sharpness_state = sharpness_gradient(
        sharpness, sharpness_state, loss, params, geometry.fisher_vector_product, geometry.kl
    )
    direction, damped_direction = conjugate_gradient_with_product(
        geometry.damped_fisher_vector_product, tree_scale(-1.0, gradient), config.cg_iters
    )
    x_f_x = tree_vdot(direction, damped_direction)
    step = tree_scale(jnp.sqrt(2.0 * config.max_kl / (x_f_x + 1e-8)), direction)
    loss_before = surrogate_of_outputs(*geometry.outputs, batch)

    def loss_and_kl(candidate):  # one forward pass for both
        outputs = actor_apply(candidate, batch.observation)
        return surrogate_of_outputs(*outputs, batch), geometry.kl_of_outputs(*outputs)

    def accept(candidate):
        loss_after, kl = loss_and_kl(candidate)
        return jnp.isfinite(loss_after) & (loss_before - loss_after >= 0) & (kl <= config.max_kl)

    scale = line_search(accept, params, step, config.line_search_steps)
    new_params = tree_add_scaled(params, scale, step)
    loss_after, kl_after = loss_and_kl(new_params)
    diagnostics = {
        "actor_loss": loss_before,
        "policy_kl": kl_after,
        "line_search_scale": scale,
        "surrogate_improvement": loss_before - loss_after,
    }
    return new_params, sharpness_state, diagnostics


class CPODirection(NamedTuple):
    step: Any  # the step before the line search
    optim_case: jax.Array  # SafePO's case: 0 infeasible recovery ... 4 cost gradient ~ 0
    multiplier: jax.Array  # lambda* of the dual
    cost_multiplier: jax.Array  # nu* of the dual


def cpo_direction(
    reward_gradient,
    cost_gradient,
    constraint_value: jax.Array,
    damped_fisher_vector_product,
    max_kl: float,
    cg_iters: int,
) -> CPODirection:
    """The CPO step (Achiam et al. 2017, eqs. 10-13), with SafePO's cases and line search.

    Solves max_x g^T x  s.t.  1/2 x^T F~ x <= delta,  c + b^T x <= 0  through its dual, with
    x = F~^-1 g, p = F~^-1 b, q = g^T x, r = -g^T p, s = b^T p, A = q - r^2/s, B = 2 delta - c^2/s:
      case 4 (b ~ 0, c < 0) and 3 (c < 0, B < 0): the TRPO step sqrt(2 delta / x^T F~ x) x;
      cases 2 (c < 0, B >= 0) and 1 (c >= 0, B >= 0): (x - nu* p) / lambda*;
      case 0 (c >= 0, B < 0, infeasible): recovery -sqrt(2 delta / s) p, purely reducing cost.

    r is taken with the *loss* gradient -g, as in Achiam's reference implementation, whose
    dual formulas (nu* = (lambda* c - r)+ / s and the intervals r/c) are written for it.
    SafePO's cpo.py, which the paper's code forks, plugs in r = g^T p with the ascent g
    instead; in cases 1-2 its step can then break the linearised constraint. This one
    solves the QP (tested against a QP solver).

    Args:
      reward_gradient: g, gradient of the reward objective mean(ratio A_r) (ascent).
      cost_gradient: b, gradient of the cost surrogate mean(ratio A_c).
      constraint_value: c = mean episode cost - cost limit.
    """
    eps = CPO_EPSILON
    g, b, c, delta = reward_gradient, cost_gradient, constraint_value, max_kl
    x, damped_x = conjugate_gradient_with_product(damped_fisher_vector_product, g, cg_iters)
    q = tree_vdot(x, damped_x)  # x^T F~ x, equal to g^T x at convergence
    p, _ = conjugate_gradient_with_product(damped_fisher_vector_product, b, cg_iters)
    r = -tree_vdot(g, p)  # with the loss gradient -g (see the docstring)
    s = tree_vdot(b, p)
    safe_s = jnp.where(s == 0, eps, s)
    a_value = q - r**2 / safe_s
    b_value = 2.0 * delta - c**2 / safe_s

    cost_gradient_vanishes = (tree_vdot(b, b) <= 1e-6) & (c < 0)
    optim_case = jnp.select(
        [cost_gradient_vanishes, (c < 0) & (b_value < 0), (c < 0) & (b_value >= 0), (c >= 0) & (b_value >= 0)],
        [4, 3, 2, 1],
        default=0,
    )

    # Cases 1-2: the better of the two dual candidates, each projected on its interval.
    safe_c = jnp.where(c == 0, eps, c)
    r_over_c = r / safe_c
    lambda_a = jnp.sqrt(jnp.maximum(a_value / jnp.where(b_value == 0, eps, b_value), 0.0))
    lambda_b = jnp.sqrt(q / (2.0 * delta))
    project = lambda t, low, high: jnp.maximum(low, jnp.minimum(t, high))
    lambda_a_star = jnp.where(c < 0, project(lambda_a, 0.0, r_over_c), project(lambda_a, r_over_c, jnp.inf))
    lambda_b_star = jnp.where(c < 0, project(lambda_b, r_over_c, jnp.inf), project(lambda_b, 0.0, r_over_c))
    f_a = lambda lam: -0.5 * (a_value / (lam + eps) + b_value * lam) - r * c / (s + eps)
    f_b = lambda lam: -0.5 * (q / (lam + eps) + 2.0 * delta * lam)
    lambda_star = jnp.where(f_a(lambda_a_star) >= f_b(lambda_b_star), lambda_a_star, lambda_b_star)
    nu_star = jnp.maximum(lambda_star * c - r, 0.0) / (s + eps)

    trpo_scale = jnp.sqrt(2.0 * delta / (q + 1e-8))
    recovery_nu = jnp.sqrt(2.0 * delta / (s + eps))
    is_trpo = optim_case >= 3
    is_dual = (optim_case == 1) | (optim_case == 2)
    x_coefficient = jnp.where(is_trpo, trpo_scale, jnp.where(is_dual, 1.0 / (lambda_star + eps), 0.0))
    p_coefficient = jnp.where(is_trpo, 0.0, jnp.where(is_dual, -nu_star / (lambda_star + eps), -recovery_nu))
    step = jax.tree.map(lambda xi, pi: x_coefficient * xi + p_coefficient * pi, x, p)
    multiplier = jnp.where(is_trpo, 1.0 / trpo_scale, jnp.where(is_dual, lambda_star, 0.0))
    cost_multiplier = jnp.where(is_trpo, 0.0, jnp.where(is_dual, nu_star, recovery_nu))
    return CPODirection(step, optim_case, multiplier, cost_multiplier)


def cpo_step(
    config: TrustRegionConfig,
    actor_apply,
    sharpness,
    params,
    sharpness_states,
    batch: PolicyBatch,
    cost_advantage: jax.Array,
    constraint_value: jax.Array,
):
    """One CPO step; with SHAPO, two perturbations as the paper's code takes them.

    The reward gradient is taken where the reward surrogate is worst (perturbing along its
    loss -mean(ratio A_r)); the cost gradient where the cost surrogate mean(ratio A_c) is
    highest (perturbing along it as a loss). Line search (SafePO cpo.py): accept when
    finite, the reward surrogate does not get worse (cases 2-4 only), the cost surrogate
    rises by at most max(-c, 0), and the mean KL is within delta.
    """
    geometry = geometry_at(actor_apply, params, batch.observation, config.damping)
    reward_loss = lambda p: surrogate_loss(actor_apply, p, batch)
    cost_batch = batch._replace(advantage=cost_advantage)
    cost_surrogate = lambda p: -surrogate_loss(actor_apply, p, cost_batch)
    reward_state, cost_state = sharpness_states
    reward_loss_gradient, reward_state = sharpness_gradient(
        sharpness, reward_state, reward_loss, params, geometry.fisher_vector_product, geometry.kl
    )
    cost_gradient, cost_state = sharpness_gradient(
        sharpness, cost_state, cost_surrogate, params, geometry.fisher_vector_product, geometry.kl
    )
    solution = cpo_direction(
        tree_scale(-1.0, reward_loss_gradient), cost_gradient, constraint_value,
        geometry.damped_fisher_vector_product, config.max_kl, config.cg_iters,
    )

    def losses_and_kl(outputs):  # reward loss, cost surrogate and KL from one forward pass
        return (surrogate_of_outputs(*outputs, batch), -surrogate_of_outputs(*outputs, cost_batch),
                geometry.kl_of_outputs(*outputs))

    reward_loss_before, cost_before, _ = losses_and_kl(geometry.outputs)

    def accept(candidate):
        reward_loss_after, cost_after, kl = losses_and_kl(actor_apply(candidate, batch.observation))
        finite = jnp.isfinite(reward_loss_after) & jnp.isfinite(cost_after)
        reward_ok = (solution.optim_case <= 1) | (reward_loss_before - reward_loss_after >= 0)
        cost_ok = cost_after - cost_before <= jnp.maximum(-constraint_value, 0.0)
        return finite & reward_ok & cost_ok & (kl <= config.max_kl)

    scale = line_search(accept, params, solution.step, config.line_search_steps)
    new_params = tree_add_scaled(params, scale, solution.step)
    reward_loss_after, _, kl_after = losses_and_kl(actor_apply(new_params, batch.observation))
    diagnostics = {
        "actor_loss": reward_loss_before,
        "policy_kl": kl_after,
        "line_search_scale": scale,
        "surrogate_improvement": reward_loss_before - reward_loss_after,
        "cpo_case": solution.optim_case.astype(jnp.float32),
        "cpo_lambda": solution.multiplier,
        "cpo_nu": solution.cost_multiplier,
    }
    return new_params, (reward_state, cost_state), diagnostics


def trpo_policy_step(config: TrainConfig, actor_apply: ActorApply, rho) -> PolicyStep:
    """TRPO-Lag, TRPO-PID and CRPO: one TRPO step; the state is SHAPO's (``()`` without it)."""
    settings = TrustRegionConfig.of(config)
    sharpness = make_sharpness(config, rho)

    def init(params):
        return () if sharpness is None else sharpness.init(params)

    def step(params, sharpness_state, batch: PolicyBatch, constraint: Constraint, key: jax.Array):
        del constraint, key  # the multiplier or CRPO's switch is already in batch.advantage
        params, sharpness_state, diagnostics = trpo_step(
            settings, actor_apply, sharpness, params, sharpness_state, batch)
        return params, sharpness_state, {**sharpness_diagnostics(sharpness_state), **diagnostics}

    return PolicyStep(init, step)


def cpo_policy_step(config: TrainConfig, actor_apply: ActorApply, rho) -> PolicyStep:
    """CPO: the state is one SHAPO state per perturbation (reward, cost); diagnostics: the reward one's."""
    settings = TrustRegionConfig.of(config)
    sharpness = make_sharpness(config, rho)

    def init(params):
        state = () if sharpness is None else sharpness.init(params)
        return state, state

    def step(params, sharpness_states, batch: PolicyBatch, constraint: Constraint, key: jax.Array):
        del key
        params, sharpness_states, diagnostics = cpo_step(
            settings, actor_apply, sharpness, params, sharpness_states, batch,
            constraint.cost_advantage, constraint.value,
        )
        return params, sharpness_states, {**sharpness_diagnostics(sharpness_states), **diagnostics}

    return PolicyStep(init, step)
