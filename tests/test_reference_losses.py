"""The Gaussian policy's densities and the pure losses against float64 references computed
another way: SciPy's normal density and numerical integration for the distribution, and a
NumPy loop-free re-derivation (with hand-written gradients) for the PPO clip, value and KL
losses. The losses run on a linear-Gaussian actor and a linear critic, whose gradients have
closed forms, so the autodiff gradients are checked as well as the values.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from shapo_jax.losses import PolicyBatch, mean_policy_kl, ppo_clip_loss, value_loss
from shapo_jax.networks import gaussian_entropy, gaussian_kl, gaussian_log_prob

BATCH, OBSERVATION_SIZE, ACTION_SIZE = 64, 5, 3


def f32(x):
    return jnp.asarray(x, jnp.float32)


def f64(x):
    return np.asarray(x, np.float64)


# ----------------------------------------------------------------------------------------
# Diagonal Gaussian: log-density, entropy and KL.
# ----------------------------------------------------------------------------------------

def random_gaussians(seed, shape=(BATCH, ACTION_SIZE)):
    rng = np.random.default_rng(seed)
    mean = rng.normal(scale=2.0, size=shape)
    log_std = rng.uniform(-2.0, 1.0, size=shape)
    action = mean + np.exp(log_std) * rng.normal(scale=1.5, size=shape)
    return mean, log_std, action


@pytest.mark.parametrize("seed", [0, 1])
def test_log_prob_is_scipy_normal_logpdf_summed_over_action_dimensions(seed):
    mean, log_std, action = random_gaussians(seed)
    expected = stats.norm.logpdf(action, loc=mean, scale=np.exp(log_std)).sum(axis=-1)
    ours = gaussian_log_prob(f32(mean), f32(log_std), f32(action))
    assert ours.shape == (BATCH,)
    np.testing.assert_allclose(f64(ours), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_entropy_is_scipy_normal_entropy_summed_over_action_dimensions(seed):
    _, log_std, _ = random_gaussians(seed)
    expected = stats.norm(scale=np.exp(log_std)).entropy().sum(axis=-1)
    ours = gaussian_entropy(f32(log_std))
    assert ours.shape == (BATCH,)
    np.testing.assert_allclose(f64(ours), expected, rtol=1e-5, atol=1e-5)


def reference_kl(mean_p, std_p, mean_q, std_q):
    """KL(p || q) of 1-D normals in the standard-deviation parameterisation."""
    return np.log(std_q / std_p) + (std_p**2 + (mean_p - mean_q) ** 2) / (2 * std_q**2) - 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_kl_matches_the_closed_form_per_action_dimension(seed):
    mean_p, log_std_p, _ = random_gaussians(seed)
    mean_q, log_std_q, _ = random_gaussians(seed + 10)
    expected = reference_kl(mean_p, np.exp(log_std_p), mean_q, np.exp(log_std_q))
    ours = gaussian_kl(f32(mean_p), f32(log_std_p), f32(mean_q), f32(log_std_q))
    assert ours.shape == (BATCH, ACTION_SIZE)  # per dimension, not summed
    np.testing.assert_allclose(f64(ours), expected, rtol=1e-4, atol=1e-5)
    assert np.all(f64(ours) >= -1e-6)
    same = gaussian_kl(f32(mean_p), f32(log_std_p), f32(mean_p), f32(log_std_p))
    np.testing.assert_array_equal(f64(same), 0.0)


@pytest.mark.parametrize("mean_p,std_p,mean_q,std_q", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -0.2, 1.3),
                                                      (1.5, 2.0, 0.0, 0.7), (-1.0, 0.2, -1.1, 0.25)])
def test_kl_and_entropy_match_numerical_integration(mean_p, std_p, mean_q, std_q):
    """Independent of any closed form: integrals of the SciPy densities."""
    p, q = stats.norm(mean_p, std_p), stats.norm(mean_q, std_q)
    bounds = (mean_p - 12 * std_p, mean_p + 12 * std_p)
    kl, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), *bounds, epsabs=1e-12)
    entropy, _ = integrate.quad(lambda x: -p.pdf(x) * p.logpdf(x), *bounds, epsabs=1e-12)
    ours_kl = gaussian_kl(f32([mean_p]), jnp.log(f32([std_p])), f32([mean_q]), jnp.log(f32([std_q])))
    np.testing.assert_allclose(float(ours_kl[0]), kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(gaussian_entropy(jnp.log(f32([std_p])))), entropy, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------
# A linear-Gaussian actor and a linear critic, whose gradients are written out by hand.
# ----------------------------------------------------------------------------------------

def linear_actor(params, observation):
    mean = observation @ params["weight"] + params["bias"]
    return mean, jnp.broadcast_to(params["log_std"], mean.shape)


def linear_critic(params, observation):
    return observation @ params["weight"] + params["bias"]


def actor_params(seed):
    rng = np.random.default_rng(seed)
    return {"weight": f32(rng.normal(scale=0.5, size=(OBSERVATION_SIZE, ACTION_SIZE))),
            "bias": f32(rng.normal(scale=0.3, size=ACTION_SIZE)),
            "log_std": f32(rng.uniform(-1.0, 0.5, size=ACTION_SIZE))}


def policy_batch(seed, params):
    """Actions drawn near the policy; old log-probs of a policy shifted a little, so that the
    ratios spread over both sides of the clip range; advantages of both signs."""
    rng = np.random.default_rng(seed)
    observation = rng.normal(size=(BATCH, OBSERVATION_SIZE))
    mean, log_std = (f64(x) for x in linear_actor(params, f32(observation)))
    action = mean + np.exp(log_std) * rng.normal(size=mean.shape)
    old_log_prob = stats.norm.logpdf(action, mean, np.exp(log_std)).sum(-1) + rng.normal(scale=0.4, size=BATCH)
    advantage = rng.normal(size=BATCH)
    return PolicyBatch(f32(observation), f32(action), f32(old_log_prob), f32(advantage))


def reference_ppo(params, batch, clip_epsilon, entropy_coefficient):
    """Loss, diagnostics and gradient of the PPO clip loss on the linear-Gaussian actor.

    Per sample, min(r A, clip(r) A) has gradient A r grad(log pi) where the unclipped term
    is the smaller one (or both are equal) and 0 where the clipped (constant) one is; with
    z = (a - mu) / sigma, grad_mu log pi = z / sigma and grad_{log sigma} log pi = z^2 - 1.
    """
    weight, bias, log_std = (f64(params[k]) for k in ("weight", "bias", "log_std"))
    observation, action, old_log_prob, advantage = (f64(x) for x in batch)
    mean = observation @ weight + bias
    std = np.exp(log_std)
    log_prob = stats.norm.logpdf(action, mean, std).sum(-1)
    ratio = np.exp(log_prob - old_log_prob)
    unclipped = ratio * advantage
    clipped = np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantage
    entropy = np.sum(0.5 + 0.5 * np.log(2 * np.pi) + log_std)  # the same for every sample
    loss = -np.mean(np.minimum(unclipped, clipped)) - entropy_coefficient * entropy
    diagnostics = {"actor_loss": loss, "entropy": entropy,
                   "approx_kl": np.mean(ratio - 1 - np.log(ratio)),
                   "clip_fraction": np.mean(np.abs(ratio - 1) > clip_epsilon)}
    active = (unclipped <= clipped).astype(np.float64)  # where the gradient flows
    z = (action - mean) / std
    weight_per_sample = -(active * advantage * ratio) / BATCH  # d loss / d log pi_i
    grad_mean = weight_per_sample[:, None] * z / std
    gradient = {"weight": observation.T @ grad_mean, "bias": grad_mean.sum(0),
                "log_std": (weight_per_sample[:, None] * (z**2 - 1)).sum(0) - entropy_coefficient}
    return loss, diagnostics, gradient


@pytest.mark.parametrize("seed,clip_epsilon,entropy_coefficient", [(0, 0.2, 0.0), (1, 0.1, 0.01), (2, 0.3, 0.5)])
def test_ppo_clip_loss_value_diagnostics_and_gradient_match_numpy(seed, clip_epsilon, entropy_coefficient):
    params = actor_params(seed)
    batch = policy_batch(seed + 100, params)
    expected_loss, expected_diagnostics, expected_gradient = reference_ppo(params, batch, clip_epsilon,
                                                                          entropy_coefficient)
    assert 0.1 < expected_diagnostics["clip_fraction"] < 0.9  # both branches of the min occur

    loss_fn = jax.jit(lambda p: ppo_clip_loss(linear_actor, p, batch, clip_epsilon, entropy_coefficient),)
    (loss, diagnostics), gradient = jax.value_and_grad(loss_fn, has_aux=True)(params)
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-5, atol=1e-6)
    for name, value in expected_diagnostics.items():
        np.testing.assert_allclose(float(diagnostics[name]), value, rtol=1e-5, atol=1e-6, err_msg=name)
    for name, value in expected_gradient.items():
        np.testing.assert_allclose(f64(gradient[name]), value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_ppo_clip_loss_at_the_old_policy_is_minus_the_mean_advantage():
    """ratio = 1 everywhere: no clipping, approx KL 0, loss -mean(A) - c_H H."""
    params = actor_params(3)
    batch = policy_batch(4, params)
    mean, log_std = linear_actor(params, batch.observation)
    batch = batch._replace(old_log_prob=gaussian_log_prob(mean, log_std, batch.action))
    loss, diagnostics = ppo_clip_loss(linear_actor, params, batch, 0.2, 0.1)
    entropy = np.sum(0.5 + 0.5 * np.log(2 * np.pi) + f64(params["log_std"]))
    np.testing.assert_allclose(float(loss), -np.mean(f64(batch.advantage)) - 0.1 * entropy, rtol=1e-5, atol=1e-6)
    assert float(diagnostics["clip_fraction"]) == 0.0
    assert abs(float(diagnostics["approx_kl"])) < 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_value_loss_and_gradient_match_numpy(seed):
    rng = np.random.default_rng(seed)
    params = {"weight": f32(rng.normal(size=OBSERVATION_SIZE)), "bias": f32(rng.normal())}
    observation = rng.normal(size=(BATCH, OBSERVATION_SIZE))
    targets = rng.normal(scale=3.0, size=BATCH)
    residual = observation @ f64(params["weight"]) + f64(params["bias"]) - targets
    loss, gradient = jax.value_and_grad(value_loss, argnums=1)(linear_critic, params, f32(observation), f32(targets))
    np.testing.assert_allclose(float(loss), np.mean(residual**2), rtol=1e-5)
    np.testing.assert_allclose(f64(gradient["weight"]), 2 * observation.T @ residual / BATCH, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(gradient["bias"]), 2 * residual.mean(), rtol=1e-4, atol=1e-6)


def test_mean_policy_kl_averages_over_batch_and_action_dimensions_and_stops_the_reference_gradient():
    reference, params = actor_params(5), actor_params(6)
    observation = f32(np.random.default_rng(7).normal(size=(BATCH, OBSERVATION_SIZE)))
    mean_ref, log_std_ref = (f64(x) for x in linear_actor(reference, observation))
    mean, log_std = (f64(x) for x in linear_actor(params, observation))
    expected = reference_kl(mean_ref, np.exp(log_std_ref), mean, np.exp(log_std)).mean()  # over BATCH x ACTION
    np.testing.assert_allclose(float(mean_policy_kl(linear_actor, reference, params, observation)), expected,
                               rtol=1e-5)
    assert float(mean_policy_kl(linear_actor, params, params, observation)) == 0.0
    reference_gradient = jax.grad(mean_policy_kl, argnums=1)(linear_actor, reference, params, observation)
    for leaf in jax.tree.leaves(reference_gradient):
        np.testing.assert_array_equal(f64(leaf), 0.0)
    # The gradient in the new parameters is the closed-form one of the mean KL: with
    # d = mu - mu_ref and s = sigma, d KL / d mu = d / s^2 and d KL / d log s = 1 - (s_ref^2 + d^2) / s^2.
    gradient = jax.grad(mean_policy_kl, argnums=2)(linear_actor, reference, params, observation)
    count = BATCH * ACTION_SIZE
    difference, variance = mean - mean_ref, np.exp(2 * log_std)
    grad_mean = difference / variance / count
    np.testing.assert_allclose(f64(gradient["bias"]), grad_mean.sum(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(f64(gradient["weight"]), f64(observation).T @ grad_mean, rtol=1e-4, atol=1e-7)
    grad_log_std = (1 - (np.exp(2 * log_std_ref) + difference**2) / variance).sum(0) / count
    np.testing.assert_allclose(f64(gradient["log_std"]), grad_log_std, rtol=1e-4, atol=1e-7)
