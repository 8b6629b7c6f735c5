"""Property tests (hypothesis) for the invariants of the sharpness transform and of GAE.

tests/test_sharpness.py and tests/test_advantages.py check these functions against
references on hand-picked cases; here hypothesis draws the inputs. The transform's
invariants: the Euclidean perturbation has norm rho, the Fisher one has damped Fisher norm
rho before backtracking (whatever the number of CG iterations) and backtracking takes the first
scale within the KL radius, the cosine diagnostic lies in [-1, 1], and rho = 0 returns the
incoming gradient bit for bit. GAE's: a rollout split in two
gives the advantages of the whole (the second part exactly; the first part up to the
carried-over term, exactly at an episode end).

Each function under test is jitted once at module level with the drawn quantities as traced
arguments, so compilation does not dominate; ``derandomize=True`` makes every run draw the same
examples, so CI is reproducible.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shapo_jax.advantages import generalized_advantage_estimation
from shapo_jax.sharpness import sharpness_aware

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None, print_blob=True)

SIZE = 6  # parameters, as a two-leaf pytree: {"a": [2], "b": [2, 2]}


def to_tree(flat):
    flat = jnp.asarray(flat, jnp.float32)
    return {"a": flat[:2], "b": flat[2:].reshape(2, 2)}


def to_flat(tree):
    return np.concatenate([np.asarray(tree["a"], np.float64).ravel(), np.asarray(tree["b"], np.float64).ravel()])


def evaluation_point(theta):
    """A ``grad_fn`` that returns where it was evaluated: at ``params = 0`` the transform's output
    is then its perturbation ``s eps`` itself, exactly (it never checks that grad_fn is a
    gradient, and 0 + eps rounds to eps)."""
    return theta


@functools.partial(jax.jit, static_argnames=("geometry", "cg_iters"))
def perturbation(gradient, params, rho, fisher_matrix, damping, geometry, cg_iters=SIZE):
    """(s eps, state) of one ``sharpness_aware`` update, without ``kl_fn`` (no backtracking)."""
    transform = sharpness_aware(rho, geometry=geometry, cg_iters=cg_iters, damping=damping)

    def fisher_vector_product(vector):
        return to_tree(fisher_matrix @ to_flat_jnp(vector))

    return transform.update(gradient, transform.init(params), params, grad_fn=evaluation_point,
                            fvp_fn=fisher_vector_product)


def to_flat_jnp(tree):
    return jnp.concatenate([tree["a"].ravel(), tree["b"].ravel()])


def vectors(min_norm=0.0):
    finite = st.floats(-100.0, 100.0, allow_nan=False, width=32)
    return hnp.arrays(np.float64, SIZE, elements=finite).filter(lambda v: np.linalg.norm(v) >= min_norm)


@st.composite
def fisher_matrices(draw):
    """A PSD Fisher A A^T with eigenvalues from 0 to ~10 (possibly singular)."""
    rank = draw(st.integers(1, SIZE))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.floats(0.01, 3.0))
    factor = np.random.default_rng(seed).normal(size=(SIZE, rank)) * scale / np.sqrt(rank)
    return factor @ factor.T


radii = st.floats(1e-3, 10.0)
dampings = st.floats(0.05, 1.0)
NO_FISHER = np.zeros((SIZE, SIZE))
ZERO = to_tree(np.zeros(SIZE))


@SETTINGS
@given(gradient=vectors(min_norm=1e-3), rho=radii)
def test_euclidean_perturbation_has_norm_rho_along_the_gradient(gradient, rho):
    applied, state = perturbation(to_tree(gradient), ZERO, rho, NO_FISHER, 0.1, "euclidean")
    applied = to_flat(applied)
    np.testing.assert_allclose(np.linalg.norm(applied), rho, rtol=1e-5)
    np.testing.assert_allclose(float(state.perturbation_norm), rho, rtol=1e-5)
    gradient32 = to_flat(to_tree(gradient))
    np.testing.assert_allclose(applied, rho * gradient32 / np.linalg.norm(gradient32), rtol=1e-4,
                               atol=1e-5 * rho)
    assert float(state.scale) == 1.0


@SETTINGS
@given(gradient=vectors(min_norm=1e-2), rho=radii, fisher=fisher_matrices(), damping=dampings,
       cg_iters=st.sampled_from([1, 3, SIZE]))
def test_fisher_perturbation_has_damped_fisher_norm_rho_before_backtracking(gradient, rho, fisher, damping, cg_iters):
    """eps^T (F + lambda I) eps = rho^2 x^T F~ x / (x^T F~ x + 1e-8) = rho^2 for any CG iterate x."""
    fisher32 = np.asarray(jnp.asarray(fisher, jnp.float32), np.float64)
    applied, state = perturbation(to_tree(gradient), ZERO, rho, jnp.asarray(fisher, jnp.float32), damping, "fisher",
                                  cg_iters)
    eps = to_flat(applied)
    damped = fisher32 + np.float64(np.float32(damping)) * np.eye(SIZE)
    np.testing.assert_allclose(np.sqrt(eps @ damped @ eps), rho, rtol=1e-3)
    np.testing.assert_allclose(float(state.perturbation_norm), np.linalg.norm(eps), rtol=1e-5)
    assert float(state.scale) == 1.0


@jax.jit
def backtracked(gradient, rho, fisher_matrix, kl_multiple):
    """(s eps, state) of a Fisher update at params = 0 that backtracks against the KL
    q x 1/2 theta^T F~ theta: q times the quadratic model, so q s^2 delta at s eps."""
    damped = fisher_matrix + 0.1 * jnp.eye(SIZE)
    transform = sharpness_aware(rho, geometry="fisher", cg_iters=SIZE, damping=0.1)
    return transform.update(gradient, transform.init(ZERO), ZERO, grad_fn=evaluation_point,
                            fvp_fn=lambda vector: to_tree(fisher_matrix @ to_flat_jnp(vector)),
                            kl_fn=lambda theta: kl_multiple * 0.5 * to_flat_jnp(theta) @ damped @ to_flat_jnp(theta))


@SETTINGS
@given(gradient=vectors(min_norm=1e-2), rho=radii, fisher=fisher_matrices(),
       kl_multiple=st.floats(-1.0, 7.0).map(lambda exponent: 2.0**exponent))
def test_backtracking_accepts_the_first_scale_within_the_kl_radius_else_a_tenth(gradient, rho, fisher, kl_multiple):
    """s is the first of 1, 0.8, ..., 0.8^9 with KL(s eps) <= delta = rho^2 / 2, or 0.1 unchecked."""
    fisher32 = jnp.asarray(fisher, jnp.float32)
    applied, state = backtracked(to_tree(gradient), rho, fisher32, kl_multiple)
    scale = float(state.scale)
    unscaled = to_flat(applied) / scale
    damped = np.asarray(fisher32, np.float64) + np.float64(np.float32(0.1)) * np.eye(SIZE)
    kl = lambda eps: float(np.float32(kl_multiple)) * 0.5 * eps @ damped @ eps  # noqa: E731
    delta = rho**2 / 2
    candidates = [0.8**k for k in range(10)]
    kls = [kl(c * unscaled) for c in candidates]
    assume(all(abs(value - delta) > 1e-3 * delta for value in kls))  # no float32 near-ties
    expected = next((c for c, value in zip(candidates, kls) if value <= delta), 0.1)
    np.testing.assert_allclose(scale, expected, rtol=1e-6)
    np.testing.assert_allclose(float(state.kl), kl(to_flat(applied)), rtol=1e-3)
    if expected != 0.1:
        assert float(state.kl) <= delta * (1 + 1e-5)


@SETTINGS
@given(gradient=vectors(), rho=st.floats(0.0, 10.0), fisher=fisher_matrices(), damping=dampings,
       geometry=st.sampled_from(["euclidean", "fisher"]), cg_iters=st.sampled_from([1, 3, SIZE]))
def test_cosine_lies_in_minus_one_to_one(gradient, rho, fisher, damping, geometry, cg_iters):
    _, state = perturbation(to_tree(gradient), ZERO, rho, jnp.asarray(fisher, jnp.float32), damping,
                            geometry, cg_iters)
    cosine = float(state.cosine)
    assert -1.0 <= cosine <= 1.0, cosine
    if geometry == "euclidean" and np.any(to_flat(to_tree(gradient)) != 0):
        np.testing.assert_allclose(cosine, 1.0, rtol=1e-6)


@SETTINGS
@given(gradient=vectors(), params=vectors(), fisher=fisher_matrices(), damping=dampings,
       geometry=st.sampled_from(["euclidean", "fisher"]), cg_iters=st.sampled_from([1, SIZE]))
def test_zero_radius_returns_the_gradient_bit_for_bit(gradient, params, fisher, damping, geometry, cg_iters):
    """Even though grad_fn returns something else entirely (its evaluation point)."""
    updates, state = perturbation(to_tree(gradient), to_tree(params), 0.0, jnp.asarray(fisher, jnp.float32), damping,
                                  geometry, cg_iters)
    for ours, incoming in zip(jax.tree.leaves(updates), jax.tree.leaves(to_tree(gradient))):
        assert ours.dtype == incoming.dtype
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(incoming))
    assert float(state.perturbation_norm) == 0.0


# ----------------------------------------------------------------------------------------
# GAE: a rollout split in two.
# ----------------------------------------------------------------------------------------

STEPS, ENVS = 12, 3
gae = jax.jit(generalized_advantage_estimation)


@st.composite
def rollouts(draw):
    values = hnp.arrays(np.float64, (STEPS, ENVS), elements=st.floats(-10.0, 10.0, width=32))
    flags = hnp.arrays(np.bool_, (STEPS, ENVS))
    rewards, value, next_value = draw(values), draw(values), draw(values)
    terminated, truncated = draw(flags), draw(flags)
    episode_end = terminated | truncated
    return tuple(jnp.asarray(x, jnp.float32) for x in (rewards, value, next_value, terminated, episode_end))


@SETTINGS
@given(rollout=rollouts(), split=st.integers(1, STEPS - 1), gamma=st.floats(0.0, 1.0), gae_lambda=st.floats(0.0, 1.0))
def test_gae_of_a_rollout_split_in_two_is_the_gae_of_the_whole(rollout, split, gamma, gae_lambda):
    """Second part: the same advantages as in the whole. First part: A_t(whole) =
    A_t(first) + prod_{j=t}^{split-1} gamma lambda (1 - end_j) A_split(whole), the term the
    first part cannot see; it vanishes, and the parts agree exactly, where an episode ends at
    split - 1."""
    advantages, targets = gae(*rollout, gamma, gae_lambda)
    first, first_targets = gae(*(x[:split] for x in rollout), gamma, gae_lambda)
    second, second_targets = gae(*(x[split:] for x in rollout), gamma, gae_lambda)
    np.testing.assert_allclose(second, advantages[split:], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(second_targets, targets[split:], rtol=1e-6, atol=1e-5)

    continues = np.float64(gamma) * np.float64(gae_lambda) * (1.0 - np.asarray(rollout[4][:split], np.float64))
    carried = np.cumprod(continues[::-1], axis=0)[::-1] * np.asarray(advantages[split], np.float64)
    scale = 1.0 + np.abs(np.asarray(advantages, np.float64)).max()
    np.testing.assert_allclose(np.asarray(first, np.float64) + carried, advantages[:split], rtol=1e-5,
                               atol=1e-5 * scale)
    ended = np.asarray(rollout[4][split - 1], bool)
    np.testing.assert_allclose(np.asarray(first)[:, ended], np.asarray(advantages)[:split, ended], rtol=1e-6,
                               atol=1e-6 * scale)
    np.testing.assert_allclose(np.asarray(first_targets)[:, ended], np.asarray(targets)[:split, ended], rtol=1e-6,
                               atol=1e-6 * scale)
