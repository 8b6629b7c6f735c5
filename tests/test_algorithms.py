"""The algorithm family: CPO's dual solve against a QP solver, TRPO's step, SHAPO inside each."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from compile_options import QUICK_COMPILE
from shapo_jax import TrainConfig, make_train, make_trainer, seed_keys
from shapo_jax.algorithms import trust_region
from shapo_jax.algorithms.trust_region import TrustRegionConfig, cpo_direction, line_search, surrogate_loss, trpo_step
from shapo_jax.fisher import conjugate_gradient, hvp_of_kl, tree_add_scaled, tree_scale, tree_vdot
from shapo_jax.losses import PolicyBatch, mean_policy_kl
from shapo_jax.networks import GaussianActor, gaussian_log_prob
from shapo_jax.sharpness import sharpness_aware

TINY = dict(env="PointHazard", num_envs=8, unroll_length=16, num_minibatches=2, update_epochs=1, total_steps=8 * 16 * 2)
DELTA = 0.01


# ---------------------------------------------------------------- CPO's dual solve vs a QP solver


def explicit_fisher(seed=0, n=4):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n))
    return m @ m.T / n + 0.5 * np.eye(n)


def solve_qp(g, b, c, fisher, delta):
    """max g.x  s.t.  1/2 x^T F x <= delta,  c + b.x <= 0, by SLSQP from a feasible start."""
    constraints = [
        {"type": "ineq", "fun": lambda x: delta - 0.5 * x @ fisher @ x, "jac": lambda x: -fisher @ x},
        {"type": "ineq", "fun": lambda x: -(c + b @ x), "jac": lambda x: -b},
    ]
    starts = [np.zeros_like(g), -np.sqrt(2 * delta / (b @ np.linalg.solve(fisher, b))) * np.linalg.solve(fisher, b)]
    best = None
    for start in starts:
        result = optimize.minimize(lambda x: -g @ x, start, jac=lambda x: -g, constraints=constraints,
                                   method="SLSQP", options={"ftol": 1e-12, "maxiter": 500})
        feasible = all(con["fun"](result.x) >= -1e-7 for con in constraints)
        if feasible and (best is None or g @ result.x > g @ best):
            best = result.x
    return best


def our_direction(g, b, c, fisher):
    fvp = lambda v: jnp.asarray(fisher, jnp.float32) @ v
    solve = jax.jit(lambda g, b, c: cpo_direction(g, b, c, fvp, DELTA, 10))
    solution = solve(jnp.asarray(g, jnp.float32), jnp.asarray(b, jnp.float32), jnp.asarray(c, jnp.float32))
    return np.asarray(solution.step), int(solution.optim_case)


@pytest.mark.parametrize(
    "c,expected_case",
    [(-0.5, 3), (-0.02, 2), (0.02, 1)],
    ids=["whole-region-feasible", "boundary-crosses-feasible-origin", "feasible-recovery"],
)
def test_cpo_step_solves_the_constrained_qp(c, expected_case):
    fisher = explicit_fisher()
    g = np.array([1.0, -0.5, 0.3, 0.8])
    b = np.array([0.6, 0.4, -0.2, 0.5])
    step, case = our_direction(g, b, c, fisher)
    assert case == expected_case
    reference = solve_qp(g, b, c, fisher, DELTA)
    np.testing.assert_allclose(step, reference, rtol=2e-3, atol=2e-4)
    assert 0.5 * step @ fisher @ step <= DELTA * 1.001
    assert c + b @ step <= 1e-4


def test_cpo_infeasible_case_takes_the_steepest_cost_descent_in_the_trust_region():
    fisher = explicit_fisher(1)
    g = np.array([1.0, -0.5, 0.3, 0.8])
    b = np.array([0.6, 0.4, -0.2, 0.5])
    c = 5.0  # the trust region cannot reach c + b.x <= 0
    step, case = our_direction(g, b, c, fisher)
    assert case == 0
    f_inv_b = np.linalg.solve(fisher, b)
    expected = -np.sqrt(2 * DELTA / (b @ f_inv_b)) * f_inv_b  # argmin b.x s.t. 1/2 x^T F x <= delta
    np.testing.assert_allclose(step, expected, rtol=1e-3, atol=1e-6)


def test_cpo_with_a_vanishing_cost_gradient_is_trpo():
    fisher = explicit_fisher(2)
    g = np.array([1.0, -0.5, 0.3, 0.8])
    step, case = our_direction(g, np.zeros(4), -1.0, fisher)
    assert case == 4
    x = np.linalg.solve(fisher, g)
    np.testing.assert_allclose(step, np.sqrt(2 * DELTA / (g @ x)) * x, rtol=1e-3)


# ---------------------------------------------------------------- TRPO on a tiny Gaussian policy


def tiny_policy_batch(seed=0, n=256):
    actor = GaussianActor((8,), 2)
    key_params, key_obs, key_noise, key_adv = jax.random.split(jax.random.PRNGKey(seed), 4)
    observation = jax.random.normal(key_obs, (n, 3))
    params = actor.init(key_params, observation[:1])
    mean, log_std = actor.apply(params, observation)
    action = mean + jnp.exp(log_std) * jax.random.normal(key_noise, mean.shape)
    batch = PolicyBatch(observation, action, gaussian_log_prob(mean, log_std, action),
                        jax.random.normal(key_adv, (n,)) + action[:, 0])
    return actor, params, batch


def test_trpo_step_stays_in_the_trust_region_and_improves_the_surrogate():
    actor, params, batch = tiny_policy_batch()
    config = TrustRegionConfig(max_kl=DELTA, cg_iters=15, damping=0.1, line_search_steps=15)
    new_params, _, diagnostics = jax.jit(lambda p: trpo_step(config, actor.apply, None, p, (), batch))(params)
    kl = mean_policy_kl(actor.apply, params, new_params, batch.observation)
    assert 0 < float(kl) <= DELTA
    before, after = surrogate_loss(actor.apply, params, batch), surrogate_loss(actor.apply, new_params, batch)
    assert float(after) < float(before)
    assert float(diagnostics["line_search_scale"]) > 0


def reference_trpo_step(config, actor, sharpness, sharpness_state, params, batch):
    """TRPO (+ SHAPO) written plainly: F v as the Hessian-vector product of mean_policy_kl, one
    more product for x^T F~ x, and a forward pass for every loss and KL
    (montrealrobotics/shapo@1bb7704 shapo.py ``compute_shapo_gradients_actor``)."""
    kl = lambda p: mean_policy_kl(actor.apply, params, p, batch.observation)
    fvp = hvp_of_kl(kl, params)
    damped = lambda v: tree_add_scaled(fvp(v), config.damping, v)
    loss = lambda p: surrogate_loss(actor.apply, p, batch)
    grad_fn = jax.grad(loss)
    gradient = grad_fn(params)
    if sharpness is not None:
        gradient, sharpness_state = sharpness.update(
            gradient, sharpness_state, params, grad_fn=grad_fn, fvp_fn=fvp, kl_fn=kl)
    direction = conjugate_gradient(damped, tree_scale(-1.0, gradient), config.cg_iters)
    step = tree_scale(jnp.sqrt(2.0 * config.max_kl / (tree_vdot(direction, damped(direction)) + 1e-8)), direction)
    loss_before = loss(params)
    accept = lambda c: jnp.isfinite(loss(c)) & (loss_before - loss(c) >= 0) & (kl(c) <= config.max_kl)
    scale = line_search(accept, params, step, config.line_search_steps)
    return tree_add_scaled(params, scale, step), sharpness_state, scale


@pytest.mark.parametrize("target_kl", [None, 1e-5, 1e-3])
def test_trpo_step_matches_the_plain_kl_hessian_step(target_kl):
    """The step's Gauss-Newton F v, CG-residual normaliser and shared forward passes change
    nothing but round-off, with and without Fisher SHAPO."""
    actor, params, batch = tiny_policy_batch(2)
    config = TrustRegionConfig(max_kl=DELTA, cg_iters=15, damping=0.1, line_search_steps=15)
    sharpness = None if target_kl is None else sharpness_aware(geometry="fisher", target_kl=target_kl)
    state = () if sharpness is None else sharpness.init(params)
    new_params, new_state, diagnostics = jax.jit(
        lambda p: trpo_step(config, actor.apply, sharpness, p, state, batch))(params)
    expected_params, expected_state, expected_scale = jax.jit(
        lambda p: reference_trpo_step(config, actor, sharpness, state, p, batch))(params)
    assert float(diagnostics["line_search_scale"]) == float(expected_scale) > 0
    for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(expected_params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(expected_state)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(
        diagnostics["policy_kl"], mean_policy_kl(actor.apply, params, new_params, batch.observation), rtol=1e-4)


def test_geometry_kl_and_fisher_are_the_mean_policy_kl_and_its_hessian():
    actor, params, batch = tiny_policy_batch(3)
    geometry = trust_region.geometry_at(actor.apply, params, batch.observation, damping=0.1)
    other = jax.tree.map(lambda x: x + 0.05, params)
    np.testing.assert_allclose(
        geometry.kl(other), mean_policy_kl(actor.apply, params, other, batch.observation), rtol=1e-6)
    vector = jax.tree.map(lambda x: jnp.cos(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape), params)
    hessian = hvp_of_kl(lambda p: mean_policy_kl(actor.apply, params, p, batch.observation), params)(vector)
    for a, b in zip(jax.tree.leaves(geometry.fisher_vector_product(vector)), jax.tree.leaves(hessian)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    damped = geometry.damped_fisher_vector_product(vector)
    for a, b, v in zip(jax.tree.leaves(damped), jax.tree.leaves(hessian), jax.tree.leaves(vector)):
        np.testing.assert_allclose(a, b + 0.1 * v, rtol=1e-4, atol=1e-7)


def test_line_search_takes_the_first_accepted_scale_or_none():
    params, step = jnp.zeros(2), jnp.ones(2)
    accept_small = lambda p: p[0] <= 0.8**3 + 1e-6
    np.testing.assert_allclose(line_search(accept_small, params, step, 15), 0.8**3, rtol=1e-6)
    assert float(line_search(lambda p: jnp.asarray(False), params, step, 15)) == 0.0


def test_shapo_cpo_takes_each_gradient_at_its_own_worst_point(monkeypatch):
    """Reward gradient at the point worsening the reward surrogate; cost gradient at the point
    increasing the cost surrogate (the paper's code's two perturbations)."""
    actor, params, batch = tiny_policy_batch(1)
    cost_advantage = batch.advantage[::-1]
    rho = 0.05
    captured = {}

    def spy(reward_gradient, cost_gradient, *args):
        captured.update(reward=reward_gradient, cost=cost_gradient)
        return real(reward_gradient, cost_gradient, *args)

    real = trust_region.cpo_direction
    monkeypatch.setattr(trust_region, "cpo_direction", spy)
    config = TrustRegionConfig(max_kl=DELTA, cg_iters=10, damping=0.1, line_search_steps=15)
    sharpness = sharpness_aware(rho)
    states = (sharpness.init(params), sharpness.init(params))
    trust_region.cpo_step(config, actor.apply, sharpness, params, states, batch, cost_advantage, jnp.asarray(-1.0))

    reward_loss = lambda p: surrogate_loss(actor.apply, p, batch)
    cost_surrogate = lambda p: -surrogate_loss(actor.apply, p, batch._replace(advantage=cost_advantage))

    def gradient_at_worst(f):
        g = jax.grad(f)(params)
        norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(g)))
        return jax.grad(f)(jax.tree.map(lambda p, gi: p + rho * gi / norm, params, g))

    expected_reward = jax.tree.map(lambda x: -x, gradient_at_worst(reward_loss))
    expected_cost = gradient_at_worst(cost_surrogate)
    for got, want in [(captured["reward"], expected_reward), (captured["cost"], expected_cost)]:
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- the trainer, every algorithm


@dataclasses.dataclass(frozen=True)
class SharpnessWithZeroRadius(TrainConfig):
    """Routes the actor gradient through sharpness_aware even though rho = 0."""

    @property
    def uses_sharpness(self) -> bool:
        return True


def train(config: TrainConfig, num_seeds: int = 2):
    program = jax.jit(jax.vmap(make_train(config)), compiler_options=QUICK_COMPILE)
    return jax.block_until_ready(program(seed_keys(0, num_seeds)))


@pytest.mark.parametrize("algo", ["trpo_pid", "cpo", "crpo"])
def test_zero_radius_shapo_is_the_base_trust_region_algorithm_bit_for_bit(algo):
    base = train(TrainConfig(**TINY, algo=algo, geometry="fisher"))
    shapo = train(SharpnessWithZeroRadius(**TINY, algo=algo, geometry="fisher"))
    for a, b in zip(jax.tree.leaves(base.state.learner.actor_params), jax.tree.leaves(shapo.state.learner.actor_params)):
        np.testing.assert_array_equal(a, b)


SHAPO_VARIANTS = {"none": {}, "euclidean": {"rho": 0.05}, "fisher": {"geometry": "fisher", "perturbation_target_kl": 1e-4}}
ALGORITHMS = ["ppo", "ppo_lag", "ppo_pid", "trpo_lag", "trpo_pid", "cpo", "crpo"]
# The default run covers every algorithm and every variant once; the full grid is slow.
COVERING = list(zip(ALGORITHMS, itertools.cycle(SHAPO_VARIANTS)))


def check_trains(algo: str, variant: str):
    config = TrainConfig(**TINY, algo=algo, **SHAPO_VARIANTS[variant])
    output = train(config)
    metrics = jax.tree.map(np.asarray, output.metrics)
    assert np.all(metrics["failed_update"] == -1)
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    initial = make_trainer(config).init(seed_keys(0, 2)[0]).learner.actor_params  # seed 0's starting actor
    moved = [not np.array_equal(a[0], b) for a, b in zip(jax.tree.leaves(output.state.learner.actor_params),
                                                          jax.tree.leaves(initial))]
    assert any(moved), "the policy step changed the actor"
    if variant != "none":
        assert np.all(metrics["perturbation_norm"] > 0)
    if algo in ("ppo_lag", "ppo_pid", "trpo_lag", "trpo_pid"):
        assert np.all(metrics["multiplier"] >= 0)


@pytest.mark.parametrize("algo,variant", COVERING)
def test_every_algorithm_trains_with_and_without_shapo(algo, variant):
    check_trains(algo, variant)


@pytest.mark.slow
@pytest.mark.parametrize("algo,variant", [p for p in itertools.product(ALGORITHMS, SHAPO_VARIANTS) if p not in COVERING])
def test_full_algorithm_by_shapo_grid(algo, variant):
    check_trains(algo, variant)


def test_paper_preset_fills_defaults_and_keeps_explicit_flags():
    from shapo_jax.config import apply_preset, validate

    paper = validate(apply_preset(TrainConfig(algo="trpo_pid", preset="paper")))
    assert (paper.num_envs * paper.unroll_length, paper.total_steps) == (20_000, 10_000_000)
    assert (paper.trust_region_kl, paper.gae_lambda, paper.cost_limit, paper.critic_l2) == (0.01, 0.95, 10.0, 0.001)
    assert (paper.pid_kp, paper.pid_ki, paper.pid_kd, paper.multiplier_init) == (0.1, 0.01, 0.01, 0.001)
    assert paper.geometry == "fisher" and paper.perturbation_target_kl == 1e-5
    assert abs(paper.perturbation_radius - (2 * 1e-5) ** 0.5) < 1e-12
    base = apply_preset(TrainConfig(algo="trpo_pid", preset="paper-base"))
    assert not base.uses_sharpness and base.trust_region_kl == 0.01
    explicit = apply_preset(TrainConfig(algo="trpo_pid", preset="paper", cost_limit=25.0, num_envs=40, unroll_length=500))
    assert (explicit.cost_limit, explicit.num_envs, explicit.unroll_length) == (25.0, 40, 500)
    euclidean = apply_preset(TrainConfig(algo="cpo", preset="paper", rho=0.05))
    assert euclidean.perturbation_target_kl is None and euclidean.rho == 0.05
