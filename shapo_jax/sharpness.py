"""The SHAPO sharpness-aware gradient as an optax transformation.

This module knows nothing of reinforcement learning: it takes a gradient, a way
to evaluate that gradient elsewhere, and (for the Fisher geometry) a
Fisher-vector product and a KL, and returns the gradient at the worst nearby
parameters. The algorithms feed it a policy loss; ``optax.chain`` feeds its
output to the base optimiser.
"""

import math
from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

from shapo_jax import fisher

PyTree = Any

GEOMETRIES = ("euclidean", "fisher")

# Backtracking of the Fisher perturbation, as in SHAPO's released code
# (montrealrobotics/shapo@1bb7704 shapo.py ``compute_kl_constrained_perturbation``): scales 1,
# 0.8, ..., 0.8**9; the first whose mean
# KL is within the radius is accepted, otherwise 0.1 is used without a check.
BACKTRACK_FACTOR = 0.8
MAX_BACKTRACKS = 10
FALLBACK_SCALE = 0.1

# Added to x^T F~ x before the square root (montrealrobotics/shapo@1bb7704 shapo.py
# ``compute_natural_gradient_direction``).
FISHER_NORM_EPSILON = 1e-8

# Value of `SharpnessAwareState.kl` when no `kl_fn` was given. A KL is never
# negative, so this cannot be mistaken for a measurement, and unlike NaN it
# keeps logged means and finiteness checks usable.
KL_NOT_MEASURED = -1.0


class SharpnessAwareState(NamedTuple):
    """Diagnostics of the last :func:`sharpness_aware` update (float32 scalars).

    Attributes:
      perturbation_norm: Euclidean norm ``‖s ε‖₂`` of the perturbation actually
        applied (after backtracking).
      kl: mean KL ``kl_fn(params + s ε)`` at the applied perturbation, or
        ``KL_NOT_MEASURED`` (-1) when no ``kl_fn`` was given. 0 after ``init``.
      scale: accepted backtracking scale ``s`` (1 without backtracking; 0.1 when
        the fallback was used).
      cosine: cosine between the ascent direction ``x`` and the gradient ``g``:
        ``cos(F̃⁻¹ g, g)`` for the Fisher geometry, 1 for the Euclidean one (0
        when ``g = 0``). The paper logs it next to ``‖ε‖``.
    """

    perturbation_norm: jax.Array
    kl: jax.Array
    scale: jax.Array
    cosine: jax.Array


def sharpness_aware(
    rho: Optional[chex.Numeric] = None,
    *,
    geometry: str = "euclidean",
    target_kl: Optional[chex.Numeric] = None,
    cg_iters: int = 10,
    damping: float = 0.1,
) -> optax.GradientTransformationExtraArgs:
    r"""Replaces a gradient by the gradient at the worst nearby parameters.

    SHAPO makes the policy gradient pessimistic about the actor's epistemic
    uncertainty: parameters within a small (Fisher or Euclidean) ball around the
    current ones are all plausible, so the gradient is taken at the point of that
    ball where the loss is largest. For a Lagrangian policy loss this is the
    nearby policy that is worst for reward and cost together, and the update that
    follows moves away from sharp regions where a small change of the policy
    makes it unsafe. The perturbation is used only to *evaluate* the gradient;
    the parameters themselves are not moved, so the transformation chains in
    front of any optimiser: ``optax.chain(sharpness_aware(...), optax.adam(lr))``.

    With ``g = ∇L(θ)`` the incoming gradient of a loss ``L`` to be minimised:

    * ``geometry="euclidean"`` (SAM, Foret et al. 2021, eq. 2):
      ``ε = ρ g / ‖g‖₂`` with the global L2 norm over the pytree (``ε = 0`` when
      ``g = 0``).
    * ``geometry="fisher"`` (Fisher SAM, Kim et al. 2022; SHAPO's released code,
      montrealrobotics/shapo@1bb7704 shapo.py ``compute_natural_gradient_direction``): ``x = (F
      + λI)⁻¹ g`` by ``cg_iters`` conjugate-gradient
      steps with damping ``λ``, and ``ε = ρ x / sqrt(xᵀ F̃ x + 1e-8)`` where
      ``F̃ = F + λI``. ``xᵀ F̃ x`` is the released code's normaliser
      (``ε = sqrt(2δ / (xᵀF̃x + 1e-8)) x``), not ``gᵀx``, which equals it only
      once CG has converged; ``F̃ x`` is taken from CG's residual, ``g − r``,
      which is the released code's extra Fisher-vector product to round-off. With
      ``ρ = sqrt(2δ)`` this is the step of KL size ``δ`` in the quadratic model
      ``KL ≈ ½ εᵀ F ε``. If ``kl_fn`` is given, ``ε`` is backtracked: the first
      of ``s = 1, 0.8, …, 0.8⁹`` with ``kl_fn(θ + s ε) ≤ δ`` is accepted, and
      ``s = 0.1`` is used unchecked if none is.

    The returned gradient is ``∇L(θ + s ε)``; with ``ρ = 0`` it is ``g`` itself,
    bit for bit, so SHAPO with a zero radius is the base algorithm.

    ``rho`` and ``target_kl`` may be traced JAX scalars (e.g. to ``vmap`` over
    radii for a Pareto sweep); Python numbers are validated here.

    Args:
      rho: perturbation radius ``ρ >= 0``: Euclidean norm of ``ε`` in the
        Euclidean geometry, Fisher norm ``sqrt(εᵀF̃ε)`` in the Fisher one.
      geometry: ``"euclidean"`` or ``"fisher"`` (the paper's).
      target_kl: the paper's ``δ`` (``--perturbation-target-kl``; its runs use
        1e-5), an alternative to ``rho`` for the Fisher geometry:
        ``ρ = sqrt(2δ)``. Give exactly one of ``rho`` and ``target_kl``.
      cg_iters: conjugate-gradient iterations for ``F̃⁻¹ g`` (paper: 10).
      damping: ``λ`` added to the Fisher, once, in the solve and the normaliser
        (paper: 0.1).

    Returns:
      An ``optax.GradientTransformationExtraArgs``. Its ``update(grads, state,
      params, *, grad_fn, fvp_fn=None, kl_fn=None, **extra_args)`` takes:

      * ``grads``: ``∇L(params)``;
      * ``params``: the current parameters (required);
      * ``grad_fn``: ``θ -> ∇L(θ)`` for the *same* loss (same batch, same
        advantages, same old log-probabilities), required;
      * ``fvp_fn``: ``v -> F v``, the UNDAMPED Fisher-vector product at
        ``params`` (e.g. ``shapo_jax.fisher.gaussian_fisher(...)
        .fisher_vector_product`` or :func:`shapo_jax.fisher.hvp_of_kl`), required for the
        Fisher geometry and ignored by the Euclidean one;
      * ``kl_fn``: optional ``θ -> mean KL(π_params ‖ π_θ)``. Fisher geometry:
        backtracks against ``δ`` (``target_kl``, or ``ρ²/2`` when the radius was
        given as ``rho``). Euclidean geometry: only measured and logged.

      Other extra args are ignored, so the transformation can share an
      ``optax.chain`` with transformations that need different ones. The new
      state is a :class:`SharpnessAwareState`.

    References:
      Foret et al., 2021. Sharpness-Aware Minimization for Efficiently Improving
      Generalization. ICLR. https://arxiv.org/abs/2010.01412

      Kim et al., 2022. Fisher SAM: Information Geometry and Sharpness Aware
      Minimisation. ICML. https://arxiv.org/abs/2206.04920

      Mani, Pequignot, Mai, Paull, 2026. Sharpness-Aware Policy Optimization for
      Safe Exploration (SHAPO). ICLR. https://arxiv.org/abs/2606.10228
    """
    radius, max_kl = _validate(rho, geometry, target_kl, cg_iters, damping)

    def init_fn(params):
        del params
        zero = jnp.zeros([], jnp.float32)
        return SharpnessAwareState(
            perturbation_norm=zero, kl=zero, scale=zero, cosine=zero)

    def update_fn(
        updates: optax.Updates,
        state: SharpnessAwareState,
        params: Optional[optax.Params] = None,
        *,
        grad_fn: Optional[Callable[[PyTree], PyTree]] = None,
        fvp_fn: Optional[Callable[[PyTree], PyTree]] = None,
        kl_fn: Optional[Callable[[PyTree], jax.Array]] = None,
        **extra_args,
    ):
        del state, extra_args
        if params is None:
            raise ValueError("sharpness_aware needs `params` in update().")
        if grad_fn is None:
            raise ValueError(
                "sharpness_aware needs the extra argument `grad_fn` (params -> "
                "gradient of the same loss) in update().")
        grads = updates

        if geometry == "fisher":
            if fvp_fn is None:
                raise ValueError(
                    "`fvp_fn` (the undamped Fisher-vector product v -> F v) is "
                    "required for geometry='fisher'.")
            direction, perturbation = _fisher_perturbation(
                grads, fvp_fn, radius, cg_iters, damping)
        else:
            direction = grads
            perturbation = _euclidean_perturbation(grads, radius)

        if kl_fn is None:
            scale = jnp.ones([], jnp.float32)
            kl = jnp.full([], KL_NOT_MEASURED, jnp.float32)
        elif geometry == "fisher":
            scale, kl = _backtrack(kl_fn, params, perturbation, max_kl)
        else:
            scale = jnp.ones([], jnp.float32)
            kl = kl_fn(_add_in_dtype_of(params, perturbation))
        perturbation = fisher.tree_scale(scale, perturbation)

        perturbed_grads = grad_fn(_add_in_dtype_of(params, perturbation))
        # With a zero radius the incoming gradient is returned untouched, so that
        # SHAPO with rho = 0 is the base algorithm bit for bit (tests/test_sharpness.py).
        new_updates = jax.tree.map(
            lambda perturbed, plain: jnp.where(
                radius > 0, perturbed.astype(plain.dtype), plain),
            perturbed_grads, grads)

        new_state = SharpnessAwareState(
            perturbation_norm=_float32(fisher.tree_l2_norm(perturbation)),
            kl=_float32(kl),
            scale=_float32(scale),
            cosine=_float32(_cosine(direction, grads)),
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _euclidean_perturbation(grads: PyTree, radius: chex.Numeric) -> PyTree:
    """SAM's ascent step ``ρ g / ‖g‖₂`` (Foret et al. 2021, eq. 2); 0 if g = 0.

    The research code ([R] sam.py) divides by ``‖g‖ + 1e-12``; dividing only
    where the norm is non-zero gives the same result without the bias.
    """
    coefficient = fisher.safe_divide(radius, fisher.tree_l2_norm(grads))
    return fisher.tree_scale(coefficient, grads)


def _fisher_perturbation(
    grads: PyTree,
    fvp_fn: Callable[[PyTree], PyTree],
    radius: chex.Numeric,
    cg_iters: int,
    damping: float,
) -> tuple[PyTree, PyTree]:
    """Fisher-SAM ascent step ``ρ x / sqrt(xᵀF̃x + 1e-8)``, ``x = CG(F̃, g)``.

    Follows SHAPO's released ``compute_shapo_gradients_actor`` and
    ``compute_natural_gradient_direction`` (montrealrobotics/shapo@1bb7704
    safepo/single_agent/shapo.py); damping is added here, once, to the undamped ``fvp_fn``. The
    released code's extra product ``F̃ x`` for the normaliser is read off CG's
    residual (``F̃ x = g − r``, equal to round-off), so ``fvp_fn`` is called
    ``cg_iters`` times.

    Returns:
      ``(x, ε)``: the ascent direction (for the cosine diagnostic) and ``ε``.
    """

    def damped_fvp(vector):
        return fisher.tree_add_scaled(fvp_fn(vector), damping, vector)

    direction, damped_product = fisher.conjugate_gradient_with_product(
        damped_fvp, grads, cg_iters)
    fisher_norm_squared = fisher.tree_vdot(direction, damped_product)
    coefficient = radius / jnp.sqrt(
        jnp.maximum(fisher_norm_squared, 0.0) + FISHER_NORM_EPSILON)
    return direction, fisher.tree_scale(coefficient, direction)


def _backtrack(
    kl_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    perturbation: PyTree,
    max_kl: chex.Numeric,
) -> tuple[jax.Array, jax.Array]:
    """First scale ``s`` in ``1, 0.8, …, 0.8⁹`` with ``kl_fn(θ + s ε) <= δ``.

    As in SHAPO's released code (montrealrobotics/shapo@1bb7704 shapo.py
    ``compute_kl_constrained_perturbation``), if none passes the
    scale is 0.1, accepted without a check. Written as a ``lax.while_loop`` over
    the candidate scales with the fallback as an eleventh, always-accepted
    candidate, so it stops at the first accepted scale, needs no Python control
    flow on traced values, and batches under ``vmap``.

    Returns:
      ``(s, kl_fn(θ + s ε))`` as scalars.
    """
    candidate_scales = jnp.asarray(
        [BACKTRACK_FACTOR**k for k in range(MAX_BACKTRACKS)] + [FALLBACK_SCALE],
        jnp.float32)
    kl_shape = jax.eval_shape(kl_fn, params)
    if kl_shape.shape != ():
        raise ValueError(
            f"kl_fn must return a scalar mean KL, got shape {kl_shape.shape}.")

    def kl_at(index):
        scale = candidate_scales[index]
        return kl_fn(_add_in_dtype_of(params, fisher.tree_scale(scale, perturbation)))

    def keep_searching(carry):
        index, accepted, _ = carry
        return ~accepted & (index <= MAX_BACKTRACKS)

    def try_next_scale(carry):
        index, _, _ = carry
        kl = kl_at(index)
        accepted = (kl <= max_kl) | (index == MAX_BACKTRACKS)
        return index + 1, accepted, kl

    initial = (jnp.zeros([], jnp.int32), jnp.zeros([], bool),
               jnp.zeros([], kl_shape.dtype))
    index, _, kl = jax.lax.while_loop(keep_searching, try_next_scale, initial)
    return candidate_scales[index - 1], kl


def _add_in_dtype_of(params: PyTree, perturbation: PyTree) -> PyTree:
    """``params + perturbation``, keeping the dtype of each parameter leaf."""
    return jax.tree.map(
        lambda param, delta: param + delta.astype(param.dtype), params,
        perturbation)


def _cosine(tree_x: PyTree, tree_y: PyTree) -> jax.Array:
    """``<x, y> / (‖x‖ ‖y‖)``, 0 when either is zero, clipped to [-1, 1] (rounding of the
    norms puts ``cos(g, g)`` at 1 + 1 ulp for some ``g``, e.g. ``g = (1, 1)`` in float32)."""
    norms = fisher.tree_l2_norm(tree_x) * fisher.tree_l2_norm(tree_y)
    return jnp.clip(fisher.safe_divide(fisher.tree_vdot(tree_x, tree_y), norms), -1.0, 1.0)


def _float32(value: jax.typing.ArrayLike) -> jax.Array:
    return jnp.asarray(value, jnp.float32)


def _validate(rho, geometry, target_kl, cg_iters, damping):
    """Checks the hyperparameters; returns ``(ρ, δ)``.

    ``δ`` is the KL bound for backtracking: ``target_kl``, or ``ρ²/2`` when the
    radius was given as ``rho`` (the inverse of ``ρ = sqrt(2δ)``).
    """
    if geometry not in GEOMETRIES:
        raise ValueError(
            f"geometry must be one of {GEOMETRIES}, got {geometry!r}.")
    if geometry == "euclidean" and target_kl is not None:
        raise ValueError(
            "target_kl is a KL radius and only defined for geometry='fisher'; "
            "give the Euclidean radius as rho.")
    if (rho is None) == (target_kl is None):
        raise ValueError(
            "Give exactly one of rho and target_kl (rho = sqrt(2 * target_kl)); "
            f"got rho={rho!r}, target_kl={target_kl!r}.")
    if isinstance(cg_iters, bool) or not isinstance(cg_iters, int) or cg_iters < 1:
        raise ValueError(f"cg_iters must be an int >= 1, got {cg_iters!r}.")
    _check_non_negative_scalar("damping", damping)
    if rho is not None:
        _check_non_negative_scalar("rho", rho)
        return rho, rho**2 / 2
    _check_non_negative_scalar("target_kl", target_kl)
    return (2 * target_kl)**0.5, target_kl


def _check_non_negative_scalar(name: str, value: Any) -> None:
    """Raises a ValueError naming ``name`` unless ``value`` is a finite scalar >= 0.

    Traced values are only checked for being scalars: their value is unknown
    until run time.
    """
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}.")
    if isinstance(value, jax.core.Tracer):
        return
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a number, got {value!r}.") from error
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}.")
