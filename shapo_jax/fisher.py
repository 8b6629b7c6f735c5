"""Fisher-vector products from a KL divergence, and conjugate gradient on pytrees.

Natural-gradient methods (TRPO, CPO, and SHAPO's Fisher perturbation) need
``F⁻¹ g`` where ``F`` is the Fisher information of the policy. ``F`` is never
formed: its product with a vector is the Hessian-vector product of a mean KL
(Schulman et al. 2015, "Trust Region Policy Optimization", appendix C;
:func:`hvp_of_kl`), or for a diagonal Gaussian policy the same product in
Gauss-Newton form ``Jᵀ M J v`` (:func:`gaussian_fisher`, which the algorithms
use: about 1.5x cheaper per product on a 64-64 policy), and the linear system is
solved by a fixed number of conjugate-gradient iterations.

Everything here works on pytrees of arrays, runs under ``jit`` and ``vmap``,
and imports only JAX.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


# ----------------------------------------------------------------------------
# Pytree arithmetic.
# ----------------------------------------------------------------------------


def tree_vdot(tree_x: PyTree, tree_y: PyTree) -> jax.Array:
    """Inner product ``<x, y>`` of two pytrees with the same structure.

    Written as an elementwise product and sum rather than ``jnp.vdot`` so that no
    reduced-precision matmul is used on accelerators.
    """
    products = jax.tree.map(lambda x, y: jnp.sum(x * y), tree_x, tree_y)
    return sum(jax.tree.leaves(products), jnp.zeros([]))


def tree_add_scaled(tree_x: PyTree, scale: jax.typing.ArrayLike,
                    tree_y: PyTree) -> PyTree:
    """``x + scale * y`` leaf by leaf (an "axpy" on pytrees)."""
    return jax.tree.map(lambda x, y: x + scale * y, tree_x, tree_y)


def tree_scale(scale: jax.typing.ArrayLike, tree: PyTree) -> PyTree:
    """``scale * tree`` leaf by leaf."""
    return jax.tree.map(lambda x: scale * x, tree)


def tree_l2_norm(tree: PyTree) -> jax.Array:
    """Global Euclidean norm over all leaves of a pytree."""
    return jnp.sqrt(tree_vdot(tree, tree))


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """``numerator / denominator``, and 0 where the denominator is 0 (no NaN)."""
    nonzero = denominator != 0
    return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1), 0)


# ----------------------------------------------------------------------------
# Conjugate gradient.
# ----------------------------------------------------------------------------


def conjugate_gradient(
    matvec: Callable[[PyTree], PyTree],
    b: PyTree,
    iters: int,
    residual_tol: float = 1e-10,
    eps: float = 1e-6,
) -> PyTree:
    """Approximately solves ``A x = b`` by ``iters`` conjugate-gradient steps.

    This is the conjugate gradient of SafePO (``safepo/common/utils.py``,
    ``conjugate_gradients``), which SHAPO's released code calls, written for
    pytrees and as a ``lax.fori_loop`` so that it compiles once and batches under
    ``vmap``. Starting from ``x = 0``, ``r = p = b``::

        z = A p
        alpha = r.r / (p.z + eps)
        x <- x + alpha p;   r <- r - alpha z
        stop if sqrt(r.r) < residual_tol
        p <- r + (r_new.r_new / (r.r + eps)) p

    SafePO breaks out of its loop once the residual *norm* ``sqrt(r.r)`` falls
    below ``residual_tol`` (after updating ``x`` in that iteration); here the
    loop always runs ``iters`` times and every later iteration leaves ``x``
    unchanged, so the result is the same. The ``eps`` in both denominators is
    SafePO's (1e-6). It biases ``alpha`` when ``p.A p`` is tiny, as in the
    released code; pass ``eps=0`` for textbook CG (division by zero is still
    guarded: a zero denominator gives a zero step, never NaN).

    Args:
      matvec: ``v -> A v`` for a symmetric positive-definite ``A``, on pytrees
        shaped like ``b``. Called exactly ``iters`` times.
      b: right-hand side, a pytree of arrays.
      iters: number of iterations (a Python int >= 1; SHAPO's perturbation uses
        10, SafePO's TRPO step 15).
      residual_tol: stop updating once ``sqrt(r.r) < residual_tol``.
      eps: added to the denominators of ``alpha`` and of the direction update.

    Returns:
      ``x`` with the structure of ``b``, approximately ``A⁻¹ b``.
    """
    x, _ = _conjugate_gradient_with_residual(matvec, b, iters, residual_tol, eps)
    return x


def conjugate_gradient_with_product(
    matvec: Callable[[PyTree], PyTree],
    b: PyTree,
    iters: int,
    residual_tol: float = 1e-10,
    eps: float = 1e-6,
) -> tuple[PyTree, PyTree]:
    """:func:`conjugate_gradient`'s ``x`` together with ``A x``, at no extra product.

    The released code normalises its steps by ``xᵀ A x`` computed with one more
    ``matvec`` after CG (SHAPO's ``compute_shapo_gradients_actor`` and SafePO's
    TRPO step: montrealrobotics/shapo@1bb7704 safepo/single_agent/shapo.py
    ``conjugate_gradients``). CG's residual recurrence ``r ← r − α A p``
    with ``x ← x + α p`` keeps ``r = b − A x`` for any step sizes ``α`` (SafePO's
    ``eps`` included), so ``A x = b − r`` is the same vector, without the pass
    through the network. The two agree to float32 round-off (about 1e-7
    relative for ``xᵀ A x`` on a 64-64 policy's Fisher), whereas ``gᵀ x`` would
    differ by the unconverged residual (about 3e-3 there).

    Returns:
      ``(x, A x)``, each with the structure of ``b``; ``matvec`` is called
      exactly ``iters`` times.
    """
    x, residual = _conjugate_gradient_with_residual(matvec, b, iters, residual_tol, eps)
    return x, jax.tree.map(jnp.subtract, b, residual)


def _conjugate_gradient_with_residual(matvec, b, iters, residual_tol, eps):
    """SafePO's CG loop (see :func:`conjugate_gradient`); returns ``(x, r)``."""
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be an int >= 1, got {iters!r}.")

    def body(_, carry):
        x, r, p, r_dot_r, done = carry
        z = matvec(p)
        step = jnp.where(done, 0.0, safe_divide(r_dot_r, tree_vdot(p, z) + eps))
        x = tree_add_scaled(x, step, p)
        r = tree_add_scaled(r, -step, z)
        new_r_dot_r = tree_vdot(r, r)
        done = done | (jnp.sqrt(new_r_dot_r) < residual_tol)
        momentum = safe_divide(new_r_dot_r, r_dot_r + eps)
        p = jax.tree.map(
            lambda p_old, r_new: jnp.where(done, p_old, r_new + momentum * p_old), p, r)
        r_dot_r = jnp.where(done, r_dot_r, new_r_dot_r)
        return x, r, p, r_dot_r, done

    x0 = jax.tree.map(jnp.zeros_like, b)
    r_dot_r0 = tree_vdot(b, b)
    carry = (x0, b, b, r_dot_r0, jnp.zeros(r_dot_r0.shape, bool))
    x, r, *_ = jax.lax.fori_loop(0, iters, body, carry)
    return x, r


# ----------------------------------------------------------------------------
# Fisher-vector product.
# ----------------------------------------------------------------------------


def hvp_of_kl(
    kl_fn_of_params: Callable[[PyTree], jax.Array],
    params: PyTree,
) -> Callable[[PyTree], PyTree]:
    """Fisher-vector product ``v -> F v`` as the Hessian-vector product of a KL.

    For a KL between a frozen policy ``π₀`` and ``π_θ``, the Hessian of
    ``θ -> KL(π₀ ‖ π_θ)`` at ``θ = θ₀`` is the Fisher information of ``π_θ₀``
    (Schulman et al. 2015, appendix C), so ``F v`` costs one forward-over-reverse
    pass and ``F`` is never formed. The product is evaluated at ``params`` (the
    unperturbed parameters in SHAPO: montrealrobotics/shapo@1bb7704 shapo.py
    ``compute_shapo_gradients_actor``).

    The linearisation of ``jax.grad(kl_fn_of_params)`` at ``params`` is computed
    once (``jax.linearize``, i.e. ``jax.jvp`` of ``jax.grad`` with its primal
    part shared), so each call in a conjugate-gradient loop costs only the
    tangent pass.

    The returned product is UNDAMPED; add ``damping * v`` once, where a system is
    solved. With SafePO's convention the KL is averaged over the batch *and* the
    action dimensions, which scales ``F`` (and what a KL radius means) by
    ``1 / action_dim`` compared with a per-state sum.

    Args:
      kl_fn_of_params: ``θ -> mean KL(π₀ ‖ π_θ)``, a scalar, where ``π₀`` is held
        fixed (e.g. computed from ``jax.lax.stop_gradient(params)`` or
        precomputed distribution parameters).
      params: the point ``θ₀`` at which the Fisher is taken.

    Returns:
      ``fvp(v) -> F v`` on pytrees shaped like ``params``.
    """
    _, fisher_vector_product = jax.linearize(jax.grad(kl_fn_of_params), params)
    return fisher_vector_product


class GaussianFisher(NamedTuple):
    """The Fisher of a diagonal Gaussian policy at ``θ₀``, linearised once.

    Attributes:
      fisher_vector_product: ``v -> F v``, UNDAMPED.
      mean: the policy's means at ``θ₀`` (the KL's reference distribution).
      log_std: its log standard deviations, broadcast to ``mean``'s shape.
    """

    fisher_vector_product: Callable[[PyTree], PyTree]
    mean: jax.Array
    log_std: jax.Array


def gaussian_fisher(
    distribution_fn: Callable[[PyTree], tuple[jax.Array, jax.Array]],
    params: PyTree,
) -> GaussianFisher:
    """Fisher-vector product of a diagonal Gaussian policy as ``Jᵀ M J v``.

    For ``KL(π_θ₀ ‖ π_θ)`` averaged over the batch and action dimensions
    (SafePO's convention, as in :func:`hvp_of_kl`'s callers), the Hessian at
    ``θ₀`` is ``Jᵀ M J`` exactly: ``J`` is the Jacobian of the outputs
    ``(μ, log σ)`` and ``M`` the Hessian of the KL in those outputs, diagonal
    with ``1/σ²`` for the means and 2 for the log standard deviations, divided
    by the number of (state, action dimension) pairs. The term
    ``Σ ∂KL/∂out · ∂²out/∂θ²`` that makes a Hessian differ from this
    Gauss-Newton form vanishes because ``∂KL/∂out = 0`` at ``θ₀`` (Martens
    2020, "New insights and perspectives on the natural gradient method",
    section 9.2; Schulman et al. 2015, appendix C). So this is the product
    :func:`hvp_of_kl` returns for that KL, to round-off.

    It is cheaper: the network is linearised once (``jax.linearize``; its
    transpose reuses the same residuals), and each product is one forward
    tangent pass and one backward pass through the network, without the
    second-order terms of a forward-over-reverse Hessian-vector product.

    Args:
      distribution_fn: ``θ -> (μ, log σ)`` on a fixed batch of states;
        ``log σ`` may be state-independent (broadcastable to ``μ``).
      params: the point ``θ₀``.

    Returns:
      A :class:`GaussianFisher`: the product and the outputs at ``θ₀``.
    """

    def outputs(p):
        mean, log_std = distribution_fn(p)
        return mean, jnp.broadcast_to(log_std, mean.shape)

    (mean, log_std), jacobian_product = jax.linearize(outputs, params)
    transposed_product = jax.linear_transpose(jacobian_product, params)
    count = mean.size
    mean_weight = jnp.exp(-2.0 * log_std) / count
    log_std_weight = jnp.asarray(2.0 / count, log_std.dtype)

    def fisher_vector_product(vector):
        mean_tangent, log_std_tangent = jacobian_product(vector)
        (product,) = transposed_product(
            (mean_weight * mean_tangent, log_std_weight * log_std_tangent))
        return product

    return GaussianFisher(fisher_vector_product, mean, log_std)
