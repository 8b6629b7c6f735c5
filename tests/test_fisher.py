"""Tests for shapo_jax.fisher: conjugate gradient and KL Fisher-vector products."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.flatten_util import ravel_pytree

from shapo_jax import fisher


def _spd_matrix(size, seed=0, min_eigenvalue=0.5):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(size, size)))
    eigenvalues = np.linspace(min_eigenvalue, 3.0, size)
    return (basis * eigenvalues) @ basis.T


def _example_tree(seed=1):
    rng = np.random.default_rng(seed)
    return {"a": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(2, 2)), jnp.float32)}


def _matrix_product_on_tree(matrix, template):
    _, unravel = ravel_pytree(template)
    matrix = jnp.asarray(matrix, jnp.float32)
    return lambda tree: unravel(matrix @ ravel_pytree(tree)[0])


class ConjugateGradientTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(
        # Textbook CG: n steps solve an n x n system to float32 precision.
        dict(eps=0.0, relative_tolerance=1e-6),
        # SafePO's eps = 1e-6 in the denominators biases the solve slightly.
        dict(eps=1e-6, relative_tolerance=2e-4),
    )
    def test_matches_linear_solve_on_a_pytree(self, eps, relative_tolerance):
        b = _example_tree()
        matrix = _spd_matrix(7)
        matvec = _matrix_product_on_tree(matrix, b)

        solve = self.variant(
            lambda rhs: fisher.conjugate_gradient(matvec, rhs, 7, eps=eps))
        x = solve(b)

        expected = np.linalg.solve(matrix, np.asarray(ravel_pytree(b)[0]))
        error = np.linalg.norm(ravel_pytree(x)[0] - expected)
        self.assertLess(error, relative_tolerance * np.linalg.norm(expected))
        chex.assert_trees_all_equal_shapes_and_dtypes(x, b)

    def test_few_iterations_match_a_reference_loop(self):
        """Unconverged CG equals SafePO's loop (with its eps = 1e-6), step for step."""
        matrix = _spd_matrix(6, seed=3)
        rhs = np.random.default_rng(4).normal(size=6)

        def safepo_reference(iters, eps=1e-6, residual_tol=1e-10):
            x = np.zeros_like(rhs)
            r = rhs.copy()
            p = r.copy()
            r_dot_r = r @ r
            for _ in range(iters):
                z = matrix @ p
                alpha = r_dot_r / (p @ z + eps)
                x += alpha * p
                r -= alpha * z
                new_r_dot_r = r @ r
                if np.sqrt(new_r_dot_r) < residual_tol:
                    break
                p = r + new_r_dot_r / (r_dot_r + eps) * p
                r_dot_r = new_r_dot_r
            return x

        matvec = lambda v: jnp.asarray(matrix, jnp.float32) @ v
        for iters in (1, 2, 3):
            x = fisher.conjugate_gradient(matvec, jnp.asarray(rhs, jnp.float32),
                                          iters)
            np.testing.assert_allclose(x, safepo_reference(iters), rtol=1e-4,
                                       atol=1e-6)

    def test_extra_iterations_after_convergence_change_nothing(self):
        matrix = _spd_matrix(5, seed=2)
        rhs = jnp.asarray(np.random.default_rng(5).normal(size=5), jnp.float32)
        matvec = lambda v: jnp.asarray(matrix, jnp.float32) @ v

        converged = fisher.conjugate_gradient(matvec, rhs, 8, residual_tol=1e-3)
        many_more = fisher.conjugate_gradient(matvec, rhs, 60, residual_tol=1e-3)

        chex.assert_tree_all_finite(many_more)
        np.testing.assert_array_equal(converged, many_more)
        np.testing.assert_allclose(
            many_more, np.linalg.solve(matrix, rhs), rtol=1e-3, atol=1e-3)

    @parameterized.parameters(
        dict(eps=0.0, residual_tol=0.0),
        dict(eps=0.0, residual_tol=1e-10),
        dict(eps=1e-6, residual_tol=0.0),
    )
    def test_exact_convergence_gives_no_nan(self, eps, residual_tol):
        """Identity: the residual is exactly 0 after one step; 0/0 must not appear."""
        rhs = jnp.asarray([1.0, -2.0, 0.5])
        x = fisher.conjugate_gradient(lambda v: v, rhs, 10,
                                      residual_tol=residual_tol, eps=eps)
        chex.assert_tree_all_finite(x)
        np.testing.assert_allclose(x, rhs, rtol=1e-5)

    @parameterized.parameters(dict(eps=0.0), dict(eps=1e-6))
    def test_zero_right_hand_side_gives_zero(self, eps):
        b = jax.tree.map(jnp.zeros_like, _example_tree())
        matvec = _matrix_product_on_tree(_spd_matrix(7), b)
        x = fisher.conjugate_gradient(matvec, b, 10, eps=eps)
        chex.assert_trees_all_equal(x, b)

    def test_vmap_over_right_hand_sides(self):
        matrix = _spd_matrix(4, seed=6)
        rhs = jnp.asarray(np.random.default_rng(7).normal(size=(5, 4)), jnp.float32)
        rhs = rhs.at[2].set(0.0)  # one batch element converges immediately
        matvec = lambda v: jnp.asarray(matrix, jnp.float32) @ v

        solve = jax.jit(jax.vmap(lambda b: fisher.conjugate_gradient(matvec, b, 8)))
        x = solve(rhs)

        chex.assert_tree_all_finite(x)
        np.testing.assert_allclose(x, np.linalg.solve(matrix, rhs.T).T, rtol=1e-3,
                                   atol=1e-4)

    @parameterized.parameters(0, -1, 2.0, True)
    def test_rejects_bad_iteration_counts(self, iters):
        with self.assertRaisesRegex(ValueError, "iters"):
            fisher.conjugate_gradient(lambda v: v, jnp.ones(2), iters)


# A tiny Gaussian policy: linear mean, state-independent log standard deviation.
OBSERVATIONS = jnp.asarray(
    np.random.default_rng(11).normal(size=(16, 3)), jnp.float32)


def _gaussian_params(seed=12):
    rng = np.random.default_rng(seed)
    return {"weights": jnp.asarray(0.3 * rng.normal(size=(3, 2)), jnp.float32),
            "bias": jnp.asarray(0.1 * rng.normal(size=(2,)), jnp.float32),
            "log_std": jnp.asarray([-0.3, 0.2], jnp.float32)}


def _mean_and_log_std(params):
    return OBSERVATIONS @ params["weights"] + params["bias"], params["log_std"]


def _mean_gaussian_kl(frozen_params, params):
    """SafePO convention: mean over the batch and the action dimensions."""
    old_mean, old_log_std = _mean_and_log_std(frozen_params)
    mean, log_std = _mean_and_log_std(params)
    kl = (log_std - old_log_std
          + (jnp.exp(2 * old_log_std) + (old_mean - mean)**2)
          / (2 * jnp.exp(2 * log_std)) - 0.5)
    return jnp.mean(kl)


def _analytic_gaussian_fisher_product(params, vector):
    """F v for the mean KL above: mean-parameter block J^T J / σ², and 2 for log σ."""
    num_states, action_dim = OBSERVATIONS.shape[0], params["bias"].shape[0]
    precision = jnp.exp(-2 * params["log_std"])
    mean_change = OBSERVATIONS @ vector["weights"] + vector["bias"]
    weighted = mean_change * precision / (num_states * action_dim)
    return {"weights": OBSERVATIONS.T @ weighted,
            "bias": jnp.sum(weighted, axis=0),
            "log_std": 2.0 * vector["log_std"] / action_dim}


class HvpOfKlTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.params = _gaussian_params()
        frozen = jax.lax.stop_gradient(self.params)
        self.kl_fn = lambda params: _mean_gaussian_kl(frozen, params)
        self.vector = jax.tree.map(
            lambda leaf: jnp.linspace(-1.0, 1.0, leaf.size).reshape(leaf.shape),
            self.params)

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_explicit_hessian(self):
        flat_params, unravel = ravel_pytree(self.params)
        hessian = jax.jit(jax.hessian(
            lambda flat: self.kl_fn(unravel(flat))))(flat_params)

        fvp = self.variant(
            lambda params, vector: fisher.hvp_of_kl(self.kl_fn, params)(vector))
        product = fvp(self.params, self.vector)

        np.testing.assert_allclose(
            ravel_pytree(product)[0], hessian @ ravel_pytree(self.vector)[0],
            rtol=1e-5, atol=1e-6)

    def test_matches_analytic_gaussian_fisher(self):
        product = fisher.hvp_of_kl(self.kl_fn, self.params)(self.vector)
        chex.assert_trees_all_close(
            product, _analytic_gaussian_fisher_product(self.params, self.vector),
            rtol=1e-5, atol=1e-6)

    def test_is_undamped_and_linear(self):
        fvp = fisher.hvp_of_kl(self.kl_fn, self.params)
        zero = jax.tree.map(jnp.zeros_like, self.params)
        chex.assert_trees_all_close(fvp(zero), zero)
        doubled = fvp(fisher.tree_scale(2.0, self.vector))
        chex.assert_trees_all_close(
            doubled, fisher.tree_scale(2.0, fvp(self.vector)), rtol=1e-6)

    def test_cg_with_fisher_product_solves_damped_system(self):
        damping = 0.1

        @jax.jit
        def solve(params, b):
            fvp = fisher.hvp_of_kl(self.kl_fn, params)
            damped = lambda v: fisher.tree_add_scaled(fvp(v), damping, v)
            return fisher.conjugate_gradient(damped, b, 10, eps=0.0)

        x = solve(self.params, self.vector)

        flat_params, unravel = ravel_pytree(self.params)
        hessian = jax.jit(jax.hessian(
            lambda flat: self.kl_fn(unravel(flat))))(flat_params)
        expected = np.linalg.solve(
            np.asarray(hessian) + damping * np.eye(flat_params.size),
            np.asarray(ravel_pytree(self.vector)[0]))
        np.testing.assert_allclose(ravel_pytree(x)[0], expected, rtol=1e-4,
                                   atol=1e-5)


class ConjugateGradientWithProductTest(parameterized.TestCase):

    @parameterized.parameters(1, 3, 10)
    def test_solution_is_conjugate_gradients_and_product_is_matvec(self, iters):
        matrix = _spd_matrix(9, seed=3, min_eigenvalue=0.1)
        b = _example_tree(4)
        b = {"a": b["a"], "b": b["b"], "c": jnp.asarray([0.5, -1.0], jnp.float32)}
        matvec = _matrix_product_on_tree(matrix, b)
        x, product = jax.jit(
            lambda b: fisher.conjugate_gradient_with_product(matvec, b, iters))(b)
        # Same loop as conjugate_gradient, so the same x bit for bit; A x from the
        # residual equals one more product to float32 round-off, solved or not.
        expected_x = jax.jit(lambda b: fisher.conjugate_gradient(matvec, b, iters))(b)
        chex.assert_trees_all_equal(x, expected_x)
        chex.assert_trees_all_close(product, matvec(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fisher.tree_vdot(x, product),
                                   fisher.tree_vdot(x, matvec(x)), rtol=1e-6)

    def test_zero_right_hand_side(self):
        zero = jax.tree.map(jnp.zeros_like, _example_tree())
        x, product = fisher.conjugate_gradient_with_product(lambda v: v, zero, 5)
        chex.assert_trees_all_equal(x, zero)
        chex.assert_trees_all_equal(product, zero)


def _tanh_policy(seed=5, num_states=64, observation_size=4, action_size=3):
    """A 16-16 tanh Gaussian policy with a state-independent, broadcast log σ (as ours)."""
    from shapo_jax.networks import GaussianActor

    actor = GaussianActor((16, 16), action_size)
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    observation = jax.random.normal(keys[0], (num_states, observation_size))
    params = actor.init(keys[1], observation[:1])
    # Move off the initialisation (tiny output layer, log σ = 0) so every block matters.
    params = jax.tree.map(
        lambda leaf, noise: leaf + 0.3 * noise,
        params, _normal_like(params, keys[2]))
    return actor, params, observation


def _normal_like(tree, key):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)])


class GaussianFisherTest(parameterized.TestCase):
    """``gaussian_fisher`` (J^T M J v) against the KL's Hessian: equal to round-off."""

    def setUp(self):
        super().setUp()
        self.params = _gaussian_params()
        self.vector = jax.tree.map(
            lambda leaf: jnp.linspace(-1.0, 1.0, leaf.size).reshape(leaf.shape),
            self.params)

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_explicit_hessian_of_the_mean_kl(self):
        frozen = jax.lax.stop_gradient(self.params)
        flat_params, unravel = ravel_pytree(self.params)
        hessian = jax.jit(jax.hessian(
            lambda flat: _mean_gaussian_kl(frozen, unravel(flat))))(flat_params)
        product = self.variant(
            lambda params, vector: fisher.gaussian_fisher(
                _mean_and_log_std, params).fisher_vector_product(vector))(
                    self.params, self.vector)
        np.testing.assert_allclose(
            ravel_pytree(product)[0], hessian @ ravel_pytree(self.vector)[0],
            rtol=1e-5, atol=1e-6)

    def test_matches_analytic_gaussian_fisher(self):
        product = fisher.gaussian_fisher(
            _mean_and_log_std, self.params).fisher_vector_product(self.vector)
        chex.assert_trees_all_close(
            product, _analytic_gaussian_fisher_product(self.params, self.vector),
            rtol=1e-5, atol=1e-6)

    def test_returns_the_outputs_at_the_point(self):
        result = fisher.gaussian_fisher(_mean_and_log_std, self.params)
        mean, log_std = _mean_and_log_std(self.params)
        chex.assert_trees_all_close(result.mean, mean, rtol=1e-6)
        chex.assert_trees_all_equal(result.log_std,
                                    jnp.broadcast_to(log_std, mean.shape))

    def test_is_undamped_and_linear(self):
        fvp = fisher.gaussian_fisher(_mean_and_log_std, self.params).fisher_vector_product
        zero = jax.tree.map(jnp.zeros_like, self.params)
        chex.assert_trees_all_close(fvp(zero), zero)
        chex.assert_trees_all_close(
            fvp(fisher.tree_scale(2.0, self.vector)),
            fisher.tree_scale(2.0, fvp(self.vector)), rtol=1e-6)

    @parameterized.parameters(0, 1, 2)
    def test_matches_kl_hvp_on_a_tanh_policy(self, seed):
        from shapo_jax.losses import mean_policy_kl

        actor, params, observation = _tanh_policy(seed)
        vector = _normal_like(params, jax.random.PRNGKey(100 + seed))
        kl = lambda p: mean_policy_kl(actor.apply, params, p, observation)

        @jax.jit
        def products(params, vector):
            gauss_newton = fisher.gaussian_fisher(
                lambda p: actor.apply(p, observation), params)
            return (gauss_newton.fisher_vector_product(vector),
                    fisher.hvp_of_kl(kl, params)(vector))

        gauss_newton, hessian = products(params, vector)
        chex.assert_trees_all_close(gauss_newton, hessian, rtol=1e-4, atol=1e-6)
        # And against the dense Hessian of the KL, in float64 terms of the flat vector.
        flat_params, unravel = ravel_pytree(params)
        dense = jax.jit(jax.hessian(lambda flat: kl(unravel(flat))))(flat_params)
        np.testing.assert_allclose(
            ravel_pytree(gauss_newton)[0],
            np.asarray(dense, np.float64) @ np.asarray(ravel_pytree(vector)[0], np.float64),
            rtol=1e-3, atol=1e-6)

    def test_cg_solutions_agree_with_the_kl_hvp(self):
        from shapo_jax.losses import mean_policy_kl

        actor, params, observation = _tanh_policy(7)
        b = _normal_like(params, jax.random.PRNGKey(8))
        kl = lambda p: mean_policy_kl(actor.apply, params, p, observation)

        def solve(fvp):
            damped = lambda v: fisher.tree_add_scaled(fvp(v), 0.1, v)
            return fisher.conjugate_gradient(damped, b, 10)

        gauss_newton = jax.jit(lambda p: solve(fisher.gaussian_fisher(
            lambda q: actor.apply(q, observation), p).fisher_vector_product))(params)
        hessian = jax.jit(lambda p: solve(fisher.hvp_of_kl(kl, p)))(params)
        chex.assert_trees_all_close(gauss_newton, hessian, rtol=1e-4, atol=1e-6)

    def test_vmap_over_parameters(self):
        actor, params, observation = _tanh_policy(3)
        stacked = jax.tree.map(lambda x: jnp.stack([x, 1.1 * x]), params)
        vector = _normal_like(params, jax.random.PRNGKey(9))
        batched = jax.vmap(lambda p: fisher.gaussian_fisher(
            lambda q: actor.apply(q, observation), p).fisher_vector_product(vector))(stacked)
        for index in range(2):
            single = fisher.gaussian_fisher(
                lambda q: actor.apply(q, observation),
                jax.tree.map(lambda x: x[index], stacked)).fisher_vector_product(vector)
            chex.assert_trees_all_close(
                jax.tree.map(lambda x: x[index], batched), single, rtol=1e-5, atol=1e-7)


class TreeHelpersTest(parameterized.TestCase):

    def test_vdot_norm_axpy(self):
        x = _example_tree(1)
        y = _example_tree(2)
        flat_x, flat_y = ravel_pytree(x)[0], ravel_pytree(y)[0]
        np.testing.assert_allclose(fisher.tree_vdot(x, y), flat_x @ flat_y,
                                   rtol=1e-6)
        np.testing.assert_allclose(fisher.tree_l2_norm(x),
                                   np.linalg.norm(flat_x), rtol=1e-6)
        np.testing.assert_allclose(
            ravel_pytree(fisher.tree_add_scaled(x, 0.5, y))[0],
            flat_x + 0.5 * flat_y, rtol=1e-6)

    def test_safe_divide(self):
        result = fisher.safe_divide(jnp.asarray([1.0, 0.0]),
                                    jnp.asarray([2.0, 0.0]))
        np.testing.assert_array_equal(result, [0.5, 0.0])


if __name__ == "__main__":
    pytest.main([__file__])
