"""Navigation tasks on MJX against Safety-Gymnasium itself: per-episode statistics under a random policy.

The MJX ports are tuned for speed (contact pairs, planar joints, solver settings); whatever is
changed, a random policy must still see the same world as in Safety-Gymnasium 1.0.0. The
reference numbers are measured in SG by ``benchmarks/cpu_peer/fidelity.py`` (fixture
``tests/fixtures/safety_gymnasium_navigation.json``: i.i.d. uniform actions in [-1, 1], 1000-step
episodes, SG builder.py). Here the env as ``shapo_envs.make_env`` builds it runs the same kind of
policy: E envs (one reset key each) vmapped, 1000 steps in one jitted ``lax.scan``, an env masked
out after its ``done`` (SG ends the episode on resample failure the same way). Per episode: mean
reward per step, mean |reward| per step (the dense reward is the change of distance to the goal,
so its absolute value measures how fast the robot moves: the most physics-sensitive of the four),
mean cost per step (``info["cost"]``, SG's 0/1 indicator) and whether any step cost. Each is
compared as ``|mean_mjx - mean_sg| <= K_SIGMA * sqrt(se_mjx^2 + se_sg^2)`` (plus a per-task
relative tolerance only where a documented port difference demands one; none so far).

Default run: SafetyPointGoal1 and SafetyPointButton1 (the paper's tasks), ~2 min on a loaded
2-core CPU (compiling dominates); the other 16 under ``-m slow`` (2-12 min each there; Car tasks
step ~10x slower, so they use fewer envs). What 4 sigma can see at these sizes (PointGoal1): a
~20% change in |reward| per step (how fast the robot moves), but only a ~150% change in cost per
step and ~0.27 in the cost-episode rate: costs under a random policy are rare and heavy-tailed.
"""

from __future__ import annotations

import json
import math
import os

import jax
import numpy as np
import pytest
from jax import numpy as jp

import shapo_envs
from shapo_envs.navigation import NAMES

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "safety_gymnasium_navigation.json")
EPISODE = 1000  # SG bases/base_task.py BaseTask.num_steps
K_SIGMA = 4.0  # ~6e-5 two-sided false-alarm rate per statistic if both sides are Gaussian
MEAN_SE_FLOOR = 1e-6  # a statistic that is constant on both sides (level-0 cost: all 0) has SE 0
STATS = ("reward_per_step", "abs_reward_per_step", "cost_per_step", "cost_episode_rate")
DEFAULT = ("SafetyPointGoal1", "SafetyPointButton1")
# Envs per task: the MJX side's standard error at or below SG's (fixture: 100 episodes for the
# paper tasks, 10-20 otherwise). Compiling dominates (~1 min a Point task, more for Car/Push on a
# loaded 2-core CPU), so envs are cheap for Point; Car steps ~10x slower, hence 16.
NUM_ENVS = {name: (64 if name in DEFAULT else 32 if "Point" in name else 16) for name in NAMES}
# Per-task relative tolerances (fraction of |mean_sg|), each justified by a measurement and a
# documented difference of the port; empty while every task passes at K_SIGMA alone.
REL_TOL: dict[tuple[str, str], float] = {}


# ----------------------------------------------------------------------------- pure helpers
def episode_sums(reward, cost, done):
    """Per-env episode sums from (T, E) per-step arrays: steps up to and including the first
    ``done`` count (SG returns that step's reward and cost, then the episode is over)."""
    reward, cost, done = (np.asarray(a, np.float64) for a in (reward, cost, done))
    alive = (np.cumsum(done, axis=0) - done) == 0  # no done strictly before this step
    return {"steps": alive.sum(0).astype(np.int64), "reward_sum": (reward * alive).sum(0),
            "abs_reward_sum": (np.abs(reward) * alive).sum(0), "cost_sum": (cost * alive).sum(0),
            "any_cost": ((cost > 0) & alive).any(0)}


def summarize(steps, reward_sum, abs_reward_sum, cost_sum, any_cost):
    """Mean and SE over episodes, as benchmarks/cpu_peer/fidelity.py ``summarize`` (kept in step):
    per-step means are per episode first (SE ddof=1); the rate's SE is binomial sqrt(p(1-p)/n)."""
    steps = np.asarray(steps, np.float64)
    n = len(steps)
    out = {"episodes": n, "mean_steps": float(steps.mean())}
    for name, total in (("reward_per_step", reward_sum), ("abs_reward_per_step", abs_reward_sum),
                        ("cost_per_step", cost_sum)):
        x = np.asarray(total, np.float64) / steps
        out[name] = float(x.mean())
        out[name + "_se"] = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    p = float(np.mean(any_cost))
    out["cost_episode_rate"], out["cost_episode_rate_se"] = p, math.sqrt(p * (1 - p) / n)
    return out


def _se(summary, stat):
    """The SE used in the comparison, never 0: a rate of 0 or 1 has binomial SE 0, so the rate
    uses the rule-of-succession p~ = (k + 1) / (n + 2) inside sqrt(p~(1 - p~) / n) (one episode's
    worth of doubt); the per-step means get the absolute floor MEAN_SE_FLOOR."""
    if stat == "cost_episode_rate":
        n = summary["episodes"]
        p = (summary[stat] * n + 1) / (n + 2)
        return math.sqrt(p * (1 - p) / n)
    return max(summary[stat + "_se"], MEAN_SE_FLOOR)


def compare(mjx, sg, k_sigma=K_SIGMA, rel_tol=None):
    """Per statistic: (ok, line with both sides' numbers). ``rel_tol``: {stat: fraction of |sg|}."""
    rows = {}
    for stat in STATS:
        se_m, se_s = _se(mjx, stat), _se(sg, stat)
        rel = (rel_tol or {}).get(stat, 0.0)
        bound = k_sigma * math.hypot(se_m, se_s) + rel * abs(sg[stat])
        diff = abs(mjx[stat] - sg[stat])
        ok = diff <= bound
        rows[stat] = (ok, f"{stat}: mjx {mjx[stat]:.5f} (se {se_m:.5f}, n={mjx['episodes']}) vs sg {sg[stat]:.5f} "
                          f"(se {se_s:.5f}, n={sg['episodes']}): |diff| {diff:.5f} {'<=' if ok else '>'} bound {bound:.5f}"
                          f" = {k_sigma:g} sigma" + (f" + {rel:g} * |sg|" if rel else ""))
    return rows


# ----------------------------------------------------------------------------- MJX rollout
def mjx_rollout(name, num_envs, seed=0, steps=EPISODE):
    """Per-step (T, E) reward, cost and done of E envs under i.i.d. uniform actions in [-1, 1]."""
    env = shapo_envs.make_env(name)
    reset_key, act_key = jax.random.split(jax.random.PRNGKey(seed))

    @jax.jit  # full XLA optimisation: at level 0 compiling is 3x faster but stepping ~10x slower
    def run(reset_keys, act_key):
        state = jax.vmap(env.reset)(reset_keys)

        def body(state, t):
            action = jax.random.uniform(jax.random.fold_in(act_key, t), (num_envs, env.action_size),
                                        minval=-1.0, maxval=1.0)
            state = jax.vmap(env.step)(state, action)
            return state, (state.reward, state.info["cost"], state.done)

        return jax.lax.scan(body, state, jp.arange(steps))[1]

    return jax.device_get(run(jax.random.split(reset_key, num_envs), act_key))


def _fixture():
    with open(FIXTURE) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- tests
def test_statistics_helpers_by_hand():
    """episode_sums / summarize / compare on a 4-step, 3-env example worked out by hand."""
    reward = np.array([[1.0, 0.0, 2.0], [1.0, -1.0, 2.0], [1.0, 0.0, 9.0], [1.0, -1.0, 9.0]])
    cost = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    done = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # env 2 ends at t=1
    sums = episode_sums(reward, cost, done)
    np.testing.assert_array_equal(sums["steps"], [4, 4, 2])
    np.testing.assert_allclose(sums["reward_sum"], [4.0, -2.0, 4.0])
    np.testing.assert_allclose(sums["abs_reward_sum"], [4.0, 2.0, 4.0])
    np.testing.assert_allclose(sums["cost_sum"], [0.0, 2.0, 0.0])  # env 2's costs came after its done
    np.testing.assert_array_equal(sums["any_cost"], [False, True, False])

    s = summarize(**sums)
    assert s["episodes"] == 3 and s["mean_steps"] == pytest.approx(10 / 3)
    # reward per step per episode: 1, -0.5, 2 -> mean 5/6, sd(ddof=1) = sqrt(((1/6)^2 + (4/3)^2 + (7/6)^2) / 2)
    assert s["reward_per_step"] == pytest.approx(5 / 6)
    assert s["reward_per_step_se"] == pytest.approx(math.sqrt((1 / 36 + 64 / 36 + 49 / 36) / 2) / math.sqrt(3))
    # |reward| per step per episode: 1, 0.5, 2 -> mean 7/6, sd = sqrt(((-1/6)^2 + (-2/3)^2 + (5/6)^2) / 2)
    assert s["abs_reward_per_step"] == pytest.approx(7 / 6)
    assert s["abs_reward_per_step_se"] == pytest.approx(math.sqrt((1 / 36 + 16 / 36 + 25 / 36) / 2) / math.sqrt(3))
    # cost per step per episode: 0, 0.5, 0 -> mean 1/6, sd = sqrt((1/36 + 1/9 + 1/36) / 2) = sqrt(1/12)
    assert s["cost_per_step"] == pytest.approx(1 / 6)
    assert s["cost_per_step_se"] == pytest.approx(math.sqrt(1 / 12) / math.sqrt(3))
    assert s["cost_episode_rate"] == pytest.approx(1 / 3)
    assert s["cost_episode_rate_se"] == pytest.approx(math.sqrt(2 / 9 / 3))

    # compare: a shift of 3.9 combined SEs passes, 4.1 fails; numbers of both sides are printed
    se = math.hypot(s["reward_per_step_se"], s["reward_per_step_se"])
    for shift, want in ((3.9, True), (4.1, False)):
        other = dict(s, reward_per_step=s["reward_per_step"] + shift * se)
        ok, line = compare(other, s)["reward_per_step"]
        assert ok is want and f"{other['reward_per_step']:.5f}" in line and f"{s['reward_per_step']:.5f}" in line
    # a relative tolerance widens the bound by rel * |sg|
    other = dict(s, reward_per_step=s["reward_per_step"] + 4.1 * se)
    assert compare(other, s, rel_tol={"reward_per_step": 0.5})["reward_per_step"][0]
    # zero variance on both sides: rates of 1 vs 1 pass, 1 vs 0 fail (rule-of-succession SE);
    # identical zero costs pass, a clear cost against none fails (floor, not a zero bound)
    ones = {"episodes": 30, "cost_episode_rate": 1.0, "cost_episode_rate_se": 0.0}
    zeros = {"episodes": 30, "cost_episode_rate": 0.0, "cost_episode_rate_se": 0.0}
    assert _se(ones, "cost_episode_rate") > 0
    base = {f"{stat}{se}": 0.0 for stat in STATS[:3] for se in ("", "_se")}
    assert all(ok for ok, _ in compare({**base, **ones}, {**base, **ones}).values())
    assert not compare({**base, **ones}, {**base, **zeros})["cost_episode_rate"][0]
    assert not compare({**base, **ones, "cost_per_step": 0.01}, {**base, **ones})["cost_per_step"][0]


def test_fixture_is_safety_gymnasium_and_complete():
    """The fixture comes from SG 1.0.0, holds all 18 tasks, and its summaries match its episodes."""
    fx = _fixture()
    assert fx["versions"]["safety-gymnasium"] == "1.0.0", fx["versions"]
    assert set(fx["tasks"]) == set(NAMES), sorted(set(NAMES) - set(fx["tasks"]))
    for name, row in fx["tasks"].items():
        again = summarize(**{k: row["episodes"][k] for k in ("steps", "reward_sum", "abs_reward_sum", "cost_sum", "any_cost")})
        for stat in STATS:
            assert again[stat] == pytest.approx(row["summary"][stat]), (name, stat)
        assert row["summary"]["mean_steps"] > 0.99 * EPISODE, (name, row["summary"]["mean_steps"])


def _check(name):
    sg = _fixture()["tasks"].get(name)
    assert sg is not None, f"{name} is not in {FIXTURE}; run benchmarks/cpu_peer/fidelity.py --tasks {name}"
    reward, cost, done = mjx_rollout(name, NUM_ENVS[name])
    mjx = summarize(**episode_sums(reward, cost, done))
    rel_tol = {stat: tol for (task, stat), tol in REL_TOL.items() if task == name}
    rows = compare(mjx, sg["summary"], rel_tol=rel_tol)
    report = f"{name} (MJX {NUM_ENVS[name]} envs x {EPISODE} steps, mean steps {mjx['mean_steps']:.1f}):\n  " + \
        "\n  ".join(line for _, line in rows.values())
    print(report)
    assert all(ok for ok, _ in rows.values()), report


@pytest.mark.parametrize("name", DEFAULT)
def test_matches_safety_gymnasium(name):
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n not in DEFAULT])
def test_matches_safety_gymnasium_slow(name):
    _check(name)
