"""Tests for shapo_jax.sharpness.sharpness_aware against NumPy references."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from jax.flatten_util import ravel_pytree

from shapo_jax import fisher
from shapo_jax.sharpness import SharpnessAwareState, sharpness_aware

# ----------------------------------------------------------------------------
# A quadratic loss L(θ) = ½ θᵀHθ - cᵀθ + ¼ Σ θ⁴ on a two-leaf pytree. The quartic
# term makes the gradient non-linear, so evaluating it at the wrong point shows.
# Its gradient Hθ - c + θ³ is written out by hand for the references.
# ----------------------------------------------------------------------------

SIZE = 7
_RNG = np.random.default_rng(0)
_BASIS, _ = np.linalg.qr(_RNG.normal(size=(SIZE, SIZE)))
HESSIAN = (_BASIS * np.linspace(0.5, 3.0, SIZE)) @ _BASIS.T
LINEAR = _RNG.normal(size=SIZE)
FISHER = (lambda a: a @ a.T / SIZE + 0.05 * np.eye(SIZE))(
    _RNG.normal(size=(SIZE, SIZE)))


def _params(seed=1):
    rng = np.random.default_rng(seed)
    return {"a": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(2, 2)), jnp.float32)}


_, UNRAVEL = ravel_pytree(_params())


def _flat(tree):
    return np.asarray(ravel_pytree(tree)[0], np.float64)


def _loss(params):
    theta = ravel_pytree(params)[0]
    hessian = jnp.asarray(HESSIAN, jnp.float32)
    return (0.5 * theta @ hessian @ theta - jnp.asarray(LINEAR, jnp.float32) @ theta
            + 0.25 * jnp.sum(theta**4))


GRAD_FN = jax.jit(jax.grad(_loss))


def _reference_gradient(theta):
    return HESSIAN @ theta - LINEAR + theta**3


def _fisher_product(vector):
    return UNRAVEL(jnp.asarray(FISHER, jnp.float32) @ ravel_pytree(vector)[0])


def _update(transform, params, **extra_args):
    grads = GRAD_FN(params)
    return transform.update(grads, transform.init(params), params,
                            grad_fn=GRAD_FN, **extra_args)


def _reference_euclidean(params, rho):
    theta = _flat(params)
    gradient = _reference_gradient(theta)
    perturbation = rho * gradient / np.linalg.norm(gradient)
    return perturbation, _reference_gradient(theta + perturbation)


def _reference_fisher(params, rho, damping, scale=1.0):
    """Explicit solve; normaliser xᵀF̃x as in the released code."""
    theta = _flat(params)
    gradient = _reference_gradient(theta)
    damped = FISHER + damping * np.eye(SIZE)
    direction = np.linalg.solve(damped, gradient)
    perturbation = scale * rho * direction / np.sqrt(
        direction @ damped @ direction + 1e-8)
    cosine = direction @ gradient / (
        np.linalg.norm(direction) * np.linalg.norm(gradient))
    return perturbation, _reference_gradient(theta + perturbation), cosine


class EuclideanTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0.05, 0.5)
    def test_matches_two_pass_reference(self, rho):
        params = _params()
        transform = sharpness_aware(rho)
        updates, state = self.variant(
            lambda params: _update(transform, params))(params)

        perturbation, expected = _reference_euclidean(params, rho)
        np.testing.assert_allclose(_flat(updates), expected, rtol=1e-5, atol=1e-5)
        self.assertIsInstance(state, SharpnessAwareState)
        np.testing.assert_allclose(state.perturbation_norm,
                                   np.linalg.norm(perturbation), rtol=1e-5)
        np.testing.assert_allclose(state.cosine, 1.0, rtol=1e-6)
        self.assertEqual(float(state.scale), 1.0)
        self.assertEqual(float(state.kl), -1.0)  # not measured without kl_fn

    def test_kl_is_measured_but_not_used_for_backtracking(self):
        params = _params()
        kl_fn = lambda perturbed: 1e3 * jnp.sum(
            (ravel_pytree(perturbed)[0] - ravel_pytree(params)[0])**2)
        updates, state = _update(sharpness_aware(0.1), params, kl_fn=kl_fn)

        _, expected = _reference_euclidean(params, 0.1)
        np.testing.assert_allclose(_flat(updates), expected, rtol=1e-5, atol=1e-5)
        self.assertEqual(float(state.scale), 1.0)
        np.testing.assert_allclose(state.kl, 1e3 * 0.1**2, rtol=1e-4)

    def test_ignores_fisher_product_and_unrelated_extra_args(self):
        params = _params()
        plain, _ = _update(sharpness_aware(0.1), params)
        with_extras, _ = _update(sharpness_aware(0.1), params,
                                 fvp_fn=_fisher_product, value=3.0)
        chex.assert_trees_all_equal(plain, with_extras)


class FisherTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(
        dict(rho=0.05, damping=0.1),
        dict(rho=0.3, damping=0.0),
    )
    def test_matches_explicit_matrix_solve(self, rho, damping):
        params = _params()
        transform = sharpness_aware(rho, geometry="fisher", damping=damping,
                                    cg_iters=SIZE)
        updates, state = self.variant(lambda params: _update(
            transform, params, fvp_fn=_fisher_product))(params)

        perturbation, expected, cosine = _reference_fisher(params, rho, damping)
        np.testing.assert_allclose(_flat(updates), expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(state.perturbation_norm,
                                   np.linalg.norm(perturbation), rtol=1e-3)
        np.testing.assert_allclose(state.cosine, cosine, rtol=1e-4)
        self.assertEqual(float(state.scale), 1.0)
        self.assertEqual(float(state.kl), -1.0)

    def test_perturbation_has_fisher_norm_rho(self):
        """‖ε‖_F̃ = ρ (up to the 1e-8): the defining property of the Fisher ball."""
        params = _params()
        rho, damping = 0.2, 0.1
        updates, state = _update(
            sharpness_aware(rho, geometry="fisher", damping=damping, cg_iters=SIZE),
            params, fvp_fn=_fisher_product)
        del updates
        perturbation, _, _ = _reference_fisher(params, rho, damping)
        damped = FISHER + damping * np.eye(SIZE)
        np.testing.assert_allclose(
            np.sqrt(perturbation @ damped @ perturbation), rho, rtol=1e-6)
        np.testing.assert_allclose(state.perturbation_norm,
                                   np.linalg.norm(perturbation), rtol=1e-3)

    def test_rho_and_target_kl_spellings_agree(self):
        params = _params()
        target_kl = 1e-3
        by_rho = _update(
            sharpness_aware(math.sqrt(2 * target_kl), geometry="fisher"), params,
            fvp_fn=_fisher_product)
        by_kl = _update(sharpness_aware(geometry="fisher", target_kl=target_kl),
                        params, fvp_fn=_fisher_product)
        chex.assert_trees_all_close(by_rho, by_kl, rtol=1e-6, atol=1e-7)

    def test_paper_default_radius(self):
        """δ = 1e-5 (README runs) gives ρ = sqrt(2e-5) ≈ 4.47e-3 in Fisher norm."""
        params = _params()
        _, state = _update(sharpness_aware(geometry="fisher", target_kl=1e-5),
                           params, fvp_fn=_fisher_product)
        perturbation, _, _ = _reference_fisher(params, math.sqrt(2e-5), 0.1)
        np.testing.assert_allclose(state.perturbation_norm,
                                   np.linalg.norm(perturbation), rtol=2e-3)


# A kl_fn with known values: KL(θ) = c ‖θ - θ₀‖². With F = I and no damping,
# ‖ε‖ ≈ ρ, so KL(θ₀ + s ε) ≈ c s² ρ², and with δ = ρ²/2 the first accepted
# scale is the first s with s² <= 1 / (2c).
def _distance_kl(params, coefficient):
    center = ravel_pytree(params)[0]
    return lambda perturbed: coefficient * jnp.sum(
        (ravel_pytree(perturbed)[0] - center)**2)


def _identity_fisher(vector):
    return vector


class BacktrackingTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(
        # 1 / (2c) = 0.3: 0.8**2 = 0.64 fails (0.41 > 0.3), 0.8**3 passes (0.26).
        dict(coefficient=1 / 0.6, expected_scale=0.8**3),
        dict(coefficient=0.4, expected_scale=1.0),
        # 1 / (2c) = 0.02: 0.8**9 = 0.134 still fails (0.018 ≈ boundary avoided).
        dict(coefficient=30.0, expected_scale=0.1),
    )
    def test_accepts_first_scale_within_delta(self, coefficient, expected_scale):
        params = _params()
        rho = 0.2
        transform = sharpness_aware(rho, geometry="fisher", damping=0.0)
        kl_fn = _distance_kl(params, coefficient)
        updates, state = self.variant(lambda params: _update(
            transform, params, fvp_fn=_identity_fisher, kl_fn=kl_fn))(params)

        theta = _flat(params)
        gradient = _reference_gradient(theta)
        perturbation = expected_scale * rho * gradient / np.sqrt(
            gradient @ gradient + 1e-8)
        np.testing.assert_allclose(state.scale, expected_scale, rtol=1e-6)
        np.testing.assert_allclose(
            state.kl, coefficient * perturbation @ perturbation, rtol=1e-4)
        np.testing.assert_allclose(state.perturbation_norm,
                                   np.linalg.norm(perturbation), rtol=1e-5)
        np.testing.assert_allclose(
            _flat(updates), _reference_gradient(theta + perturbation), rtol=1e-5,
            atol=1e-5)

    def test_falls_back_to_a_tenth_without_check(self):
        params = _params()
        transform = sharpness_aware(geometry="fisher", target_kl=1e-5)
        updates, state = _update(transform, params, fvp_fn=_fisher_product,
                                 kl_fn=lambda perturbed: jnp.asarray(1e3))
        np.testing.assert_allclose(state.scale, 0.1, rtol=1e-7)
        self.assertEqual(float(state.kl), 1e3)
        perturbation, expected, _ = _reference_fisher(
            params, math.sqrt(2e-5), 0.1, scale=0.1)
        np.testing.assert_allclose(_flat(updates), expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(state.perturbation_norm,
                                   np.linalg.norm(perturbation), rtol=2e-3)

    def test_delta_is_target_kl(self):
        """With target_kl, δ is the given KL; scale 0.8 passes iff KL(0.8ε) <= δ."""
        params = _params()
        target_kl = 0.02
        rho = math.sqrt(2 * target_kl)
        # KL(s ε) = c s² ρ²; choose c so that s = 1 fails and s = 0.8 passes.
        coefficient = target_kl / (0.9**2 * rho**2)
        _, state = _update(
            sharpness_aware(geometry="fisher", target_kl=target_kl, damping=0.0),
            params, fvp_fn=_identity_fisher,
            kl_fn=_distance_kl(params, coefficient))
        np.testing.assert_allclose(state.scale, 0.8, rtol=1e-6)
        self.assertLessEqual(float(state.kl), target_kl)


class ZeroRadiusAndZeroGradientTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(
        dict(geometry="euclidean", radius=dict(rho=0.0)),
        dict(geometry="fisher", radius=dict(rho=0.0)),
        dict(geometry="fisher", radius=dict(target_kl=0.0)),
    )
    def test_zero_radius_returns_gradient_bit_for_bit(self, geometry, radius):
        params = _params()
        grads = GRAD_FN(params)
        transform = sharpness_aware(geometry=geometry, **radius)
        kl_fn = _distance_kl(params, 1.0)
        updates, state = self.variant(lambda grads, params: transform.update(
            grads, transform.init(params), params, grad_fn=GRAD_FN,
            fvp_fn=_fisher_product, kl_fn=kl_fn))(grads, params)
        chex.assert_trees_all_equal(updates, grads)
        self.assertEqual(float(state.perturbation_norm), 0.0)
        chex.assert_tree_all_finite(state)

    def test_traced_zero_radius_returns_gradient_bit_for_bit(self):
        params = _params()
        grads = GRAD_FN(params)

        @jax.jit
        def step(rho, grads, params):
            transform = sharpness_aware(rho, geometry="fisher")
            return transform.update(grads, transform.init(params), params,
                                    grad_fn=GRAD_FN, fvp_fn=_fisher_product)

        updates, _ = step(jnp.asarray(0.0), grads, params)
        chex.assert_trees_all_equal(updates, grads)
        perturbed, _ = step(jnp.asarray(0.1), grads, params)
        self.assertGreater(
            float(jnp.max(jnp.abs(_flat(perturbed) - _flat(grads)))), 1e-3)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("euclidean", "fisher")
    def test_zero_gradient_gives_no_nan(self, geometry):
        # ½‖θ - θ₀‖² at θ₀: the gradient is exactly zero.
        center = _params()
        grad_fn = jax.grad(lambda params: 0.5 * jnp.sum(
            (ravel_pytree(params)[0] - ravel_pytree(center)[0])**2))
        transform = sharpness_aware(0.1, geometry=geometry)
        updates, state = self.variant(lambda params: transform.update(
            grad_fn(params), transform.init(params), params, grad_fn=grad_fn,
            fvp_fn=_fisher_product, kl_fn=_distance_kl(params, 1.0)))(center)
        chex.assert_tree_all_finite((updates, state))
        chex.assert_trees_all_equal(updates, grad_fn(center))
        self.assertEqual(float(state.perturbation_norm), 0.0)
        self.assertEqual(float(state.cosine), 0.0)


class VmapTest(parameterized.TestCase):

    def test_vmap_over_params_and_rho_with_backtracking(self):
        """One transform per batch element; each matches its own unbatched call."""
        batch = [_params(seed) for seed in range(4)]
        params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *batch)
        rhos = jnp.asarray([0.0, 0.05, 0.2, 0.4])
        coefficients = jnp.asarray([1.0, 1 / 0.6, 0.4, 30.0])

        def step(params, rho, coefficient):
            transform = sharpness_aware(rho, geometry="fisher", damping=0.1)
            grads = GRAD_FN(params)
            updates, state = transform.update(
                grads, transform.init(params), params, grad_fn=GRAD_FN,
                fvp_fn=_fisher_product, kl_fn=_distance_kl(params, coefficient))
            return grads, updates, state

        batched_grads, batched_updates, batched_state = jax.jit(jax.vmap(step))(
            params, rhos, coefficients)

        for index, single_params in enumerate(batch):
            _, updates, state = step(single_params, float(rhos[index]),
                                     float(coefficients[index]))
            chex.assert_trees_all_close(
                jax.tree.map(lambda leaf: leaf[index], batched_updates), updates,
                rtol=1e-5, atol=1e-6)
            chex.assert_trees_all_close(
                jax.tree.map(lambda leaf: leaf[index], batched_state), state,
                rtol=1e-5, atol=1e-6)
        # Different elements accepted different backtracking scales.
        self.assertGreater(len(set(np.round(np.asarray(batched_state.scale[1:]), 4).tolist())), 1)
        # rho = 0 in the batch: the gradient comes back untouched.
        chex.assert_trees_all_equal(
            jax.tree.map(lambda leaf: leaf[0], batched_updates),
            jax.tree.map(lambda leaf: leaf[0], batched_grads))

    def test_vmap_over_rho_only_euclidean(self):
        params = _params()
        grads = GRAD_FN(params)

        def step(rho):
            transform = sharpness_aware(rho)
            return transform.update(grads, transform.init(params), params,
                                    grad_fn=GRAD_FN)[0]

        rhos = jnp.asarray([0.05, 0.5])
        batched = jax.vmap(step)(rhos)
        for index, rho in enumerate([0.05, 0.5]):
            _, expected = _reference_euclidean(params, rho)
            np.testing.assert_allclose(
                _flat(jax.tree.map(lambda leaf: leaf[index], batched)), expected,
                rtol=1e-5, atol=1e-5)


class ChainTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_chain_with_sgd_is_minus_lr_times_perturbed_gradient(self):
        params = _params()
        learning_rate = 0.1
        optimizer = optax.chain(sharpness_aware(0.05), optax.sgd(learning_rate))
        state = optimizer.init(params)
        updates, new_state = self.variant(lambda grads, state, params: optimizer.update(
            grads, state, params, grad_fn=GRAD_FN))(GRAD_FN(params), state, params)

        _, perturbed_gradient = _reference_euclidean(params, 0.05)
        np.testing.assert_allclose(_flat(updates),
                                   -learning_rate * perturbed_gradient, rtol=1e-5,
                                   atol=1e-6)
        self.assertIsInstance(new_state[0], SharpnessAwareState)

    def test_chain_with_adam_applies_adam_to_perturbed_gradient(self):
        params = _params()
        optimizer = optax.chain(
            sharpness_aware(geometry="fisher", target_kl=1e-3),
            optax.adam(1e-2))
        updates, _ = optimizer.update(
            GRAD_FN(params), optimizer.init(params), params, grad_fn=GRAD_FN,
            fvp_fn=_fisher_product, kl_fn=_distance_kl(params, 1.0))

        _, perturbed_gradient, _ = _reference_fisher(params, math.sqrt(2e-3), 0.1)
        adam = optax.adam(1e-2)
        expected, _ = adam.update(UNRAVEL(jnp.asarray(perturbed_gradient,
                                                      jnp.float32)),
                                  adam.init(params), params)
        chex.assert_trees_all_close(updates, expected, rtol=1e-3, atol=1e-6)

    def test_several_steps_under_scan(self):
        """State keeps its structure and dtypes across steps (lax.scan carry)."""
        optimizer = optax.chain(
            sharpness_aware(0.05, geometry="fisher"), optax.adam(1e-2))

        def train_step(carry, _):
            params, state = carry
            updates, state = optimizer.update(
                GRAD_FN(params), state, params, grad_fn=GRAD_FN,
                fvp_fn=_fisher_product, kl_fn=_distance_kl(params, 1.0))
            return (optax.apply_updates(params, updates), state), _loss(params)

        params = _params()
        (final_params, final_state), losses = jax.jit(
            lambda params: jax.lax.scan(train_step, (params, optimizer.init(params)),
                                        length=20))(params)
        chex.assert_tree_all_finite((final_params, final_state))
        self.assertLess(float(losses[-1]), float(losses[0]))
        chex.assert_trees_all_equal_structs(final_state, optimizer.init(params))


# A tiny Gaussian policy (linear mean, state-independent log std) with the
# PPO/TRPO surrogate loss -mean(ratio * advantage), as SHAPO uses it.
_POLICY_RNG = np.random.default_rng(21)
OBSERVATIONS = jnp.asarray(_POLICY_RNG.normal(size=(32, 3)), jnp.float32)
ADVANTAGES = jnp.asarray(_POLICY_RNG.normal(size=(32,)), jnp.float32)
POLICY_PARAMS = {
    "weights": jnp.asarray(0.3 * _POLICY_RNG.normal(size=(3, 2)), jnp.float32),
    "bias": jnp.asarray([0.1, -0.2], jnp.float32),
    "log_std": jnp.asarray([-0.5, 0.0], jnp.float32),
}


def _distribution(params):
    return OBSERVATIONS @ params["weights"] + params["bias"], params["log_std"]


def _log_prob(params, actions):
    mean, log_std = _distribution(params)
    return jnp.sum(-0.5 * ((actions - mean) / jnp.exp(log_std))**2 - log_std
                   - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


ACTIONS = _distribution(POLICY_PARAMS)[0] + jnp.exp(
    POLICY_PARAMS["log_std"]) * jnp.asarray(
        _POLICY_RNG.normal(size=(32, 2)), jnp.float32)
OLD_LOG_PROBS = _log_prob(POLICY_PARAMS, ACTIONS)


def _surrogate_loss(params):
    ratio = jnp.exp(_log_prob(params, ACTIONS) - OLD_LOG_PROBS)
    return -jnp.mean(ratio * ADVANTAGES)


def _mean_kl(params):
    """KL(π_old ‖ π_θ), mean over batch and action dims (SafePO convention)."""
    old_mean, old_log_std = _distribution(POLICY_PARAMS)
    mean, log_std = _distribution(params)
    return jnp.mean(log_std - old_log_std
                    + (jnp.exp(2 * old_log_std) + (old_mean - mean)**2)
                    / (2 * jnp.exp(2 * log_std)) - 0.5)


class RealisticGaussianPolicyTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_hvp_of_kl_pipeline_matches_explicit_fisher(self):
        params, target_kl, damping = POLICY_PARAMS, 1e-3, 0.1
        grad_fn = jax.jit(jax.grad(_surrogate_loss))
        transform = sharpness_aware(geometry="fisher", target_kl=target_kl,
                                    damping=damping)

        def step(params):
            return transform.update(
                grad_fn(params), transform.init(params), params, grad_fn=grad_fn,
                fvp_fn=fisher.hvp_of_kl(_mean_kl, params), kl_fn=_mean_kl)

        updates, state = self.variant(step)(params)

        # Reference: the Fisher as the explicit Hessian of the KL, a dense solve.
        flat_params, unravel = ravel_pytree(params)
        fisher_matrix = np.asarray(
            jax.jit(jax.hessian(lambda flat: _mean_kl(unravel(flat))))(
                flat_params),
            np.float64)
        gradient = _flat(grad_fn(params))
        damped = fisher_matrix + damping * np.eye(flat_params.size)
        direction = np.linalg.solve(damped, gradient)
        perturbation = math.sqrt(2 * target_kl) * direction / np.sqrt(
            direction @ damped @ direction + 1e-8)
        expected = grad_fn(unravel(jnp.asarray(
            _flat(params) + perturbation, jnp.float32)))

        chex.assert_trees_all_close(updates, expected, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(state.perturbation_norm,
                                   np.linalg.norm(perturbation), rtol=1e-3)
        np.testing.assert_allclose(
            state.cosine,
            direction @ gradient / np.linalg.norm(direction) / np.linalg.norm(
                gradient), rtol=1e-4)
        # The damped quadratic model over-estimates the KL, so s = 1 is accepted
        # and the measured KL is just below δ.
        self.assertEqual(float(state.scale), 1.0)
        self.assertLessEqual(float(state.kl), target_kl)
        np.testing.assert_allclose(
            state.kl, 0.5 * perturbation @ fisher_matrix @ perturbation, rtol=0.05)
        # The perturbed gradient differs from the plain one.
        self.assertGreater(np.linalg.norm(_flat(updates) - gradient),
                           1e-3 * np.linalg.norm(gradient))

    @parameterized.parameters(1e-3, 1e-5)
    def test_gauss_newton_fisher_pipeline_matches_the_kl_hvp_one(self, target_kl):
        """The algorithms' F v (J^T M J v, fisher.gaussian_fisher) gives the same SHAPO
        gradient and diagnostics as the Hessian of the KL, to round-off."""
        params = POLICY_PARAMS
        grad_fn = jax.grad(_surrogate_loss)
        transform = sharpness_aware(geometry="fisher", target_kl=target_kl)

        @jax.jit
        def step(params):
            gauss_newton = fisher.gaussian_fisher(_distribution, params)
            old_mean, old_log_std = gauss_newton.mean, gauss_newton.log_std

            def kl_from_linearisation(p):
                mean, log_std = _distribution(p)
                return jnp.mean(log_std - old_log_std
                                + (jnp.exp(2 * old_log_std) + (old_mean - mean)**2)
                                / (2 * jnp.exp(2 * log_std)) - 0.5)

            run = lambda fvp_fn, kl_fn: transform.update(
                grad_fn(params), transform.init(params), params, grad_fn=grad_fn,
                fvp_fn=fvp_fn, kl_fn=kl_fn)
            return (run(gauss_newton.fisher_vector_product, kl_from_linearisation),
                    run(fisher.hvp_of_kl(_mean_kl, params), _mean_kl))

        (updates, state), (expected_updates, expected_state) = step(params)
        chex.assert_trees_all_close(updates, expected_updates, rtol=1e-5, atol=1e-7)
        for name in ("perturbation_norm", "kl", "cosine"):
            np.testing.assert_allclose(getattr(state, name),
                                       getattr(expected_state, name), rtol=1e-4)
        self.assertEqual(float(state.scale), float(expected_state.scale))


class ValidationTest(parameterized.TestCase):

    def test_both_or_neither_radius(self):
        with self.assertRaisesRegex(ValueError, "rho.*target_kl"):
            sharpness_aware(0.1, geometry="fisher", target_kl=1e-3)
        with self.assertRaisesRegex(ValueError, "rho.*target_kl"):
            sharpness_aware(geometry="fisher")
        with self.assertRaisesRegex(ValueError, "rho.*target_kl"):
            sharpness_aware()

    def test_target_kl_rejected_in_euclidean_geometry(self):
        with self.assertRaisesRegex(ValueError, "target_kl"):
            sharpness_aware(target_kl=1e-3)
        with self.assertRaisesRegex(ValueError, "target_kl"):
            sharpness_aware(0.1, geometry="euclidean", target_kl=1e-3)

    def test_unknown_geometry_lists_valid_ones(self):
        with self.assertRaisesRegex(ValueError, "geometry.*euclidean.*fisher"):
            sharpness_aware(0.1, geometry="riemannian")

    @parameterized.parameters(-0.1, float("nan"), float("inf"), "big")
    def test_invalid_rho(self, rho):
        with self.assertRaisesRegex(ValueError, "rho"):
            sharpness_aware(rho)

    def test_non_scalar_rho(self):
        with self.assertRaisesRegex(ValueError, "rho"):
            sharpness_aware(jnp.asarray([0.1, 0.2]))

    @parameterized.parameters(-1e-3, float("nan"))
    def test_invalid_target_kl(self, target_kl):
        with self.assertRaisesRegex(ValueError, "target_kl"):
            sharpness_aware(geometry="fisher", target_kl=target_kl)

    @parameterized.parameters(0, -3, 2.5, True)
    def test_invalid_cg_iters(self, cg_iters):
        with self.assertRaisesRegex(ValueError, "cg_iters"):
            sharpness_aware(0.1, geometry="fisher", cg_iters=cg_iters)

    @parameterized.parameters(-0.1, float("nan"))
    def test_invalid_damping(self, damping):
        with self.assertRaisesRegex(ValueError, "damping"):
            sharpness_aware(0.1, geometry="fisher", damping=damping)

    def test_fisher_update_requires_fvp_fn(self):
        with self.assertRaisesRegex(ValueError, "fvp_fn.*geometry='fisher'"):
            _update(sharpness_aware(0.1, geometry="fisher"), _params())

    def test_kl_fn_must_return_a_scalar(self):
        params = _params()
        with self.assertRaisesRegex(ValueError, "kl_fn"):
            _update(sharpness_aware(0.1, geometry="fisher"), params,
                    fvp_fn=_fisher_product, kl_fn=lambda p: jnp.zeros(3))

    def test_update_requires_grad_fn_and_params(self):
        transform = sharpness_aware(0.1)
        params = _params()
        with self.assertRaisesRegex(ValueError, "grad_fn"):
            transform.update(GRAD_FN(params), transform.init(params), params)
        with self.assertRaisesRegex(ValueError, "params"):
            transform.update(GRAD_FN(params), transform.init(params), None,
                             grad_fn=GRAD_FN)

    def test_init_is_zeros(self):
        state = sharpness_aware(0.1).init(_params())
        chex.assert_trees_all_equal(
            state, SharpnessAwareState(*[jnp.zeros([], jnp.float32)] * 4))


if __name__ == "__main__":
    pytest.main([__file__])
