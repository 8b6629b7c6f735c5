"""Fisher-vector products from a KL divergence, and conjugate gradient on pytrees.

Natural-gradient methods (TRPO, CPO, and SHAPO's Fisher perturbation) need
``F⁻¹ g`` where ``F`` is the Fisher information of the policy. ``F`` is never
formed: its product with a vector is the Hessian-vector product of a mean KL
(Schulman et al. 2015, "Trust Region Policy Optimization", appendix C), and the
linear system is solved by a fixed number of conjugate-gradient iterations.

Everything here works on pytrees of arrays, runs under ``jit`` and ``vmap``,
and imports only JAX.
"""

from typing import Any, Callable

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
    x, *_ = jax.lax.fori_loop(0, iters, body, carry)
    return x


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
    unperturbed parameters in SHAPO, paper.md section 2 step 5).

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
