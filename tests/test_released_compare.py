"""benchmarks/released_code: parsing the released code's logs and the side-by-side statistics,
on synthetic inputs (the released code itself is not needed)."""

from __future__ import annotations

import collections
import csv
import importlib.util
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASED_CODE = os.path.join(ROOT, "benchmarks", "released_code")


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"released_code_{name}", os.path.join(RELEASED_CODE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = load("run")
compare = load("compare")


def running_means(values, window=50):
    """What the released script stores at each episode end: np.mean of a deque(maxlen=50)."""
    last = collections.deque(maxlen=window)
    means = []
    for value in values:
        last.append(value)
        means.append(float(np.mean(last)))
    return means


def test_episodes_recovered_from_running_means():
    values = np.random.default_rng(0).normal(5.0, 3.0, size=230).tolist()
    recovered = run.episodes_from_running_means(running_means(values))
    np.testing.assert_allclose(recovered, values, rtol=0, atol=1e-9)


def fake_released_run(run_dir, seed, epochs=4, per_epoch=20):
    """A released run's progress.csv and the launcher's episodes.csv; returns its episodes."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(2.0, 1.0, size=epochs * per_epoch).tolist()
    costs = rng.integers(0, 40, size=epochs * per_epoch).astype(float).tolist()
    totals = np.cumsum(costs).tolist()
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "episodes.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["total_cost", "ep_ret_last50", "ep_cost_last50", "time"])
        for row in zip(totals, running_means(returns), running_means(costs)):
            writer.writerow(list(row) + [0.0])
    log_dir = os.path.join(run_dir, "logs", "base", "SafetyPointButton1-v0", "trpo_pid", "dummy-0")
    os.makedirs(log_dir)
    with open(os.path.join(log_dir, "progress.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Metrics/EpRet", "Metrics/EpCost", "Metrics/TotalCost", "Train/Epoch", "Train/TotalSteps",
                         "Train/LagragianMultiplier", "Time/Total"])
        for epoch in range(1, epochs + 1):
            chunk = slice((epoch - 1) * per_epoch, epoch * per_epoch)
            writer.writerow([np.mean(running_means(returns)[chunk]), np.mean(running_means(costs)[chunk]),
                             np.mean(totals[chunk]), epoch, epoch * 20000, 0.1, 40.0])
    return returns, costs


def test_parse_run_matches_episodes(tmp_path):
    returns, costs = fake_released_run(str(tmp_path / "base_seed0"), seed=1)
    curve = run.parse_run(str(tmp_path / "base_seed0"))
    assert curve["env_steps"] == [20000, 40000, 60000, 80000]
    np.testing.assert_allclose(curve["episode_return"], np.reshape(returns, (4, 20)).mean(axis=1), atol=1e-9)
    np.testing.assert_allclose(curve["episode_cost"], np.reshape(costs, (4, 20)).mean(axis=1), atol=1e-9)
    np.testing.assert_allclose(curve["cumulative_cost"], np.cumsum(costs)[19::20])
    assert curve["checks"]["max_abs_error_logged_total_cost"] < 1e-9
    assert curve["checks"]["max_abs_error_recovered_cost"] < 1e-9


def write_ours(run_dir, curves):
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "metrics.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["update", "seed", "env_steps", "episode_return", "episode_cost", "total_cost", "multiplier"])
        for seed, (ret, cost) in enumerate(curves):
            for update, (r, c) in enumerate(zip(ret, cost)):
                writer.writerow([update, seed, (update + 1) * 20000, r, c, np.sum(cost[: update + 1]) * 20, 0.0])
        f.write("9,0,200000,1.0\n")  # a line cut short by a run still writing: skipped


def write_released(path, curves):
    runs = []
    for arm in ("base", "shapo"):
        for seed, (ret, cost) in enumerate(curves[arm]):
            steps = [(i + 1) * 20000 for i in range(len(ret))]
            runs.append({"arm": arm, "seed": seed, "finished": True, "command": f"python trpo_pid.py {arm}",
                         "curve": {"env_steps": steps, "episode_return": ret, "episode_cost": cost,
                                   "cumulative_cost": (np.cumsum(cost) * 20).tolist()}})
    runs.append({"arm": "base", "seed": 9, "finished": False, "command": "x", "curve": {}})  # not started: ignored
    with open(path, "w") as f:
        json.dump({"commit": "1bb7704", "runs": runs}, f)


def test_compare_statistics_and_plot(tmp_path):
    rng = np.random.default_rng(2)
    ours = {arm: [(rng.normal(3, 1, 5).tolist(), rng.normal(20, 4, 5).tolist()) for _ in range(3)]
            for arm in ("base", "shapo")}
    # Released base: ours shifted by far more than the seed spread; released SHAPO: ours exactly.
    released = {"base": [([r + 100 for r in ret], cost) for ret, cost in ours["base"]], "shapo": ours["shapo"]}
    for arm in ("base", "shapo"):
        write_ours(str(tmp_path / "ours" / arm), ours[arm])
    write_released(str(tmp_path / "released.json"), released)
    out_json, out_png = str(tmp_path / "cmp.json"), str(tmp_path / "cmp.png")
    assert compare.main(["--released", str(tmp_path / "released.json"), "--ours-dir", str(tmp_path / "ours"),
                         "--json", out_json, "--png", out_png]) == 0
    with open(out_json) as f:
        result = json.load(f)
    base = result["arms"]["base"]
    finals = [np.mean(ret[-2:]) for ret, _ in ours["base"]]
    assert base["ours"]["final_return"]["mean"] == pytest.approx(np.mean(finals))
    assert base["ours"]["final_return"]["std"] == pytest.approx(np.std(finals, ddof=1))
    totals = [np.sum(cost) * 20 for _, cost in ours["base"]]
    assert base["ours"]["total_cost"]["per_seed"] == pytest.approx(totals)
    assert base["released"]["final_return"]["mean"] == pytest.approx(np.mean(finals) + 100)
    assert base["agreement"]["final_return"]["difference"] == pytest.approx(-100)
    assert not base["agreement"]["final_return"]["within_seed_spread"]
    assert base["agreement"]["final_cost"]["within_seed_spread"]
    assert result["arms"]["shapo"]["agreement"]["total_cost"]["difference"] == pytest.approx(0)
    assert result["arms"]["shapo"]["agreement"]["total_cost"]["within_seed_spread"]
    assert result["released_commands"] == ["python trpo_pid.py base", "python trpo_pid.py shapo", "x"]
    assert os.path.getsize(out_png) > 10_000


def test_compare_names_missing_run(tmp_path):
    write_released(str(tmp_path / "released.json"), {"base": [], "shapo": []})
    with pytest.raises(SystemExit, match="--ours-dir: no metrics.csv with a complete row"):
        compare.main(["--released", str(tmp_path / "released.json"), "--ours-dir", str(tmp_path / "none")])


def test_compare_at_common_horizon(tmp_path):
    """A run still going (released base seed 1 has 3 of 5 updates) sets where both sides are compared."""
    rng = np.random.default_rng(3)
    ours = {arm: [(rng.normal(3, 1, 5).tolist(), rng.normal(20, 4, 5).tolist()) for _ in range(2)]
            for arm in ("base", "shapo")}
    released = {"base": [ours["base"][0], (ours["base"][1][0][:3], ours["base"][1][1][:3])], "shapo": ours["shapo"]}
    for arm in ("base", "shapo"):
        write_ours(str(tmp_path / "ours" / arm), ours[arm])
    write_released(str(tmp_path / "released.json"), released)
    out_json = str(tmp_path / "cmp.json")
    compare.main(["--released", str(tmp_path / "released.json"), "--ours-dir", str(tmp_path / "ours"),
                  "--json", out_json, "--png", str(tmp_path / "cmp.png"), "--final-updates", "1"])
    with open(out_json) as f:
        result = json.load(f)
    assert result["compared_at_env_steps"] == 60000
    shapo = result["arms"]["shapo"]["ours"]
    assert shapo["env_steps"] == 60000
    assert shapo["final_cost"]["per_seed"] == pytest.approx([cost[2] for _, cost in ours["shapo"]])
    assert shapo["total_cost"]["per_seed"] == pytest.approx([np.sum(cost[:3]) * 20 for _, cost in ours["shapo"]])


def test_compare_with_an_arm_of_ours_missing(tmp_path, capsys):
    rng = np.random.default_rng(4)
    curves = [(rng.normal(3, 1, 3).tolist(), rng.normal(20, 4, 3).tolist()) for _ in range(2)]
    write_ours(str(tmp_path / "ours" / "base"), curves)
    write_released(str(tmp_path / "released.json"), {"base": curves, "shapo": curves})
    out_json = str(tmp_path / "cmp.json")
    compare.main(["--released", str(tmp_path / "released.json"), "--ours-dir", str(tmp_path / "ours"),
                  "--json", out_json, "--png", str(tmp_path / "cmp.png")])
    assert "no shapo run of ours yet" in capsys.readouterr().out
    with open(out_json) as f:
        arms = json.load(f)["arms"]
    assert set(arms["shapo"]) == {"released"} and "agreement" in arms["base"]
