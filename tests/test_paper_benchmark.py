"""benchmarks/paper.py: bad input in one line before compiling, the outputs of a quick grid, resume,
the fall tasks' cost limit, and the base arm of the one-program comparison being the base algorithm."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from compile_options import QUICK_COMPILE
from shapo_jax import TrainConfig, make_train, seed_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
# The pipeline on the pure-JAX PointHazard (compiles in seconds); the issue's own --quick command
# on SafetyPointGoal1 is the slow test at the end.
QUICK_POINT_HAZARD = ["--quick", "--tasks", "PointHazard", "--no-compilation-cache"]
# The same with a checkpoint after every update, and without the progress bar, whose host callback
# keeps a program out of the persistent compilation cache: the interruption test reuses the program.
CHECKPOINTED = QUICK_POINT_HAZARD + ["--checkpoint-every", "2000", "--no-progress"]


def load():
    """Imports benchmarks/paper.py as a module (the scripts are not a package)."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location("benchmarks_paper", os.path.join(BENCHMARKS, "paper.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


paper = load()


def run_main(argv):
    """(exit code, stdout, stderr) of paper.main(argv)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = paper.main(argv)
    return code, out.getvalue(), err.getvalue()


def must_not_train(*args, **kwargs):
    raise AssertionError("nothing may be compiled or trained here")


def test_help():
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(io.StringIO()) as out:
        paper.build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0 and "--total-steps" in out.getvalue()


@pytest.mark.parametrize("argv,flag,says", [
    (["--tasks", "SafetyPointGoal1", "NoSuchTask"], "--tasks", "unknown task 'NoSuchTask'"),
    (["--algos", "trpo_pid", "ppo_lag"], "--algos", "unknown algorithm 'ppo_lag'"),
    (["--total-steps", "19999"], "--total-steps", "less than one update (20,000 env steps"),
    (["--quick", "--total-steps", "1000"], "--total-steps", "less than one update (2,000 env steps"),
    (["--total-steps", "30000"], "--total-steps", "multiple of one update's 20,000"),
    (["--seeds", "1"], "--seeds", "at least 2 seeds"),
    (["--checkpoint-every", "30000"], "--checkpoint-every", "multiple of one update's 20,000"),
    (["--total-steps", "100000", "--checkpoint-every", "40000"], "--checkpoint-every", "must divide --total-steps"),
    (["--final-window", "0"], "--final-window", "(0, 1]"),
    (["--perturbation-target-kl", "-1"], "--perturbation-target-kl", "> 0"),
])
def test_bad_input_is_one_line_naming_the_flag_before_compiling(argv, flag, says, tmp_path, monkeypatch):
    monkeypatch.setattr(paper, "run_cell", must_not_train)
    out = tmp_path / "out"
    code, stdout, stderr = run_main(argv + ["--out", str(out)])
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert lines[0].startswith(f"paper.py: error: {flag}: ") and says in lines[0]
    assert stdout == "" and not out.exists()


def test_malformed_flag_is_one_line():
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()) as err:
        paper.build_parser().parse_args(["--seeds", "two"])
    assert exit_info.value.code == 2
    assert err.getvalue() == "paper.py: error: argument --seeds: invalid int value: 'two'\n"


def test_out_that_is_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(paper, "run_cell", must_not_train)
    target = tmp_path / "file"
    target.write_text("")
    code, _, stderr = run_main(QUICK_POINT_HAZARD + ["--out", str(target)])
    assert code == 2 and stderr.strip() == f"paper.py: error: --out: {target} exists and is not a directory"


def test_bad_input_from_the_command_line_exits_2_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "paper.py"), "--algos", "sac",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("paper.py: error: --algos: unknown algorithm 'sac'")


def test_fall_tasks_keep_their_own_cost_limit():
    from shapo_jax.config import resolve

    grid = paper.resolve(paper.build_parser().parse_args([]))
    assert grid.tasks == paper.PAPER_TASKS and grid.algos == ("trpo_pid", "cpo", "crpo")
    navigation = paper.cell_config(grid, "SafetyPointGoal1", "cpo")
    assert resolve(navigation).cost_limit == 10.0  # the paper preset's
    assert navigation.geometry == "fisher" and navigation.perturbation_target_kl == 1e-5
    assert (navigation.steps_per_update, navigation.total_steps) == (20_000, 10_000_000)
    for task in paper.FALL_TASKS:
        import shapo_envs

        assert resolve(paper.cell_config(grid, task, "trpo_pid")).cost_limit == shapo_envs.get_spec(task).cost_limit < 1


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    code, stdout, stderr = run_main(CHECKPOINTED + ["--out", str(out)])
    assert code == 0, stderr
    return out, stdout, stderr


def test_quick_grid_writes_paper_json_with_statistics(quick):
    out, stdout, _ = quick
    with open(out / "paper.json") as f:
        report = json.load(f)
    assert report["grid"]["seeds_per_arm"] == 2 and report["grid"]["num_updates"] == 3
    cell = report["results"]["PointHazard"]["trpo_pid"]
    assert cell["cost_limit"] == 10.0 and cell["seeds_per_arm"] == 2
    assert cell["base"]["rho"] == 0.0 and cell["shapo"]["rho"] == pytest.approx(math.sqrt(2e-5))
    for metric in paper.METRICS:
        base, shapo, difference = cell["base"][metric], cell["shapo"][metric], cell["shapo_minus_base"][metric]
        for arm in (base, shapo):
            assert len(arm["per_seed"]) == 2
            assert arm["mean"] == pytest.approx(np.mean(arm["per_seed"]))
            assert arm["std"] == pytest.approx(np.std(arm["per_seed"], ddof=1))
        assert difference["mean"] == pytest.approx(shapo["mean"] - base["mean"])
        low, high = difference["ci95"]
        assert low <= difference["mean"] <= high
        assert 0.0 <= difference["p_value"] <= 1.0
    assert "SHAPO - base [95% CI]" in stdout and "PointHazard | trpo_pid | total cost" in stdout


def test_quick_grid_final_figures_come_from_the_curves(quick):
    out, _, _ = quick
    with open(out / "cells" / "PointHazard__trpo_pid.json") as f:
        cell = json.load(f)
    with open(out / "paper.json") as f:
        summary = json.load(f)["results"]["PointHazard"]["trpo_pid"]
    assert summary["curves"] == "cells/PointHazard__trpo_pid.json"
    assert cell["final_window_updates"] == 1  # 10% of 3 updates, at least one
    for arm in paper.ARMS:
        runs = cell["arms"][arm]["runs"]
        for run in runs:
            curves = run["curves"]
            assert curves["env_steps"] == [2000, 4000, 6000]
            assert run["final_return"] == pytest.approx(curves["episode_return"][-1], abs=1e-4)
            assert run["final_cost"] == pytest.approx(curves["episode_cost"][-1], abs=1e-4)
            assert run["total_cost"] == pytest.approx(curves["total_cost"][-1], abs=1e-3)
            assert np.all(np.diff(curves["total_cost"]) >= 0)  # cumulative
        assert summary[arm]["total_cost"]["per_seed"] == [run["total_cost"] for run in runs]
    # the same keys in both arms: same starting policy, so the first update's rollouts are equal
    base, shapo = cell["arms"]["base"]["runs"], cell["arms"]["shapo"]["runs"]
    assert [r["curves"]["episode_return"][0] for r in base] == [r["curves"]["episode_return"][0] for r in shapo]


def test_quick_grid_writes_curves_csv_table_and_png(quick):
    out, _, _ = quick
    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 3  # arms x seeds x updates
    assert {(r["arm"], r["seed"]) for r in rows} == {(a, s) for a in ("base", "shapo") for s in ("0", "1")}
    assert set(rows[0]) >= {"task", "algo", "env_steps", "episode_return", "episode_cost", "total_cost"}
    table = (out / "table.md").read_text().splitlines()
    assert len(table) == 2 + 3 and table[2].startswith("| PointHazard | trpo_pid | final return |")
    png = out / "PointHazard.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_progress_bar_counts_updates_over_all_runs():
    """The trainer calls progress_fn once per run per update; the bar moves once per update."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        bar = paper.Progress("task algo", 3, 2, enabled=True)
        for update in range(3):
            for rho, ret in ((0.0, 1.0), (0.0, 3.0), (0.1, 5.0), (0.1, 7.0)):
                bar({"rho": np.float32(rho), "episode_return": np.float32(ret + update)})
            assert bar.bar.n == update + 1
        bar.close()
    assert "3/3" in err.getvalue() and "return base=4.00" in err.getvalue() and "return SHAPO=8.00" in err.getvalue()


def test_rerun_resumes_finished_cells_and_refuses_other_settings(quick, monkeypatch):
    out, _, _ = quick
    monkeypatch.setattr(paper, "run_cell", must_not_train)
    before = (out / "paper.json").read_text()
    code, stdout, _ = run_main(CHECKPOINTED + ["--out", str(out)])
    assert code == 0 and "PointHazard trpo_pid: done earlier" in stdout
    assert json.loads((out / "paper.json").read_text())["results"] == json.loads(before)["results"]
    code, _, stderr = run_main(CHECKPOINTED + ["--out", str(out), "--seed", "1"])
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("paper.py: error: --out: ") and "other settings (seed)" in stderr


TINY = dict(env="PointHazard", num_envs=8, unroll_length=16, num_minibatches=2, update_epochs=1, total_steps=8 * 16 * 2)


def compare_base_arm(algo: str):
    """The script's program (seeds x {rho 0, Fisher target KL 1e-5}, rho traced) against the base
    algorithm compiled on its own: the rho = 0 runs are the base runs up to float32 round-off (two
    programs that XLA compiles apart: <= 7e-8 on jax 0.9.2, <= 2e-6 on jax 0.10.2 after 2 updates),
    the SHAPO runs differ far beyond it (~1e-3)."""
    keys = seed_keys(0, 2)
    radius = math.sqrt(2 * 1e-5)
    shapo = make_train(TrainConfig(**TINY, algo=algo, geometry="fisher", perturbation_target_kl=1e-5))
    swept = jax.jit(jax.vmap(shapo), compiler_options=QUICK_COMPILE)(
        jnp.concatenate([keys, keys]), jnp.asarray([0.0, 0.0, radius, radius]))
    base = jax.jit(jax.vmap(make_train(TrainConfig(**TINY, algo=algo))), compiler_options=QUICK_COMPILE)(keys)
    pairs = list(zip(jax.tree.leaves(swept.state.learner.actor_params), jax.tree.leaves(base.state.learner.actor_params)))
    base_gap = max(float(np.max(np.abs(np.asarray(a)[:2] - np.asarray(b)))) for a, b in pairs)
    shapo_gap = max(float(np.max(np.abs(np.asarray(a)[2:] - np.asarray(b)))) for a, b in pairs)
    assert base_gap <= 1e-5, base_gap
    assert shapo_gap > 20 * max(base_gap, 1e-7), (shapo_gap, base_gap)
    assert np.all(np.asarray(swept.metrics["perturbation_norm"])[:2] == 0)
    assert np.all(np.asarray(swept.metrics["perturbation_norm"])[2:] > 0)


def test_base_arm_of_the_one_program_is_the_base_algorithm():
    compare_base_arm("trpo_pid")


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["cpo", "crpo"])
def test_base_arm_is_the_base_algorithm_for_cpo_and_crpo(algo):
    compare_base_arm(algo)


@pytest.mark.slow
def test_issue_quick_command_on_safety_point_goal1(tmp_path):
    """The issue's check: ``benchmarks/paper.py --quick --out DIR`` (SafetyPointGoal1, trpo_pid, 2 seeds
    per arm, 3 updates of 20 envs x 100 steps) writes DIR/paper.json and a PNG in DIR."""
    out = tmp_path / "quick"
    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "paper.py"), "--quick", "--out", str(out),
                             "--no-compilation-cache"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out / "paper.json") as f:
        cell = json.load(f)["results"]["SafetyPointGoal1"]["trpo_pid"]
    for metric in paper.METRICS:
        for arm in paper.ARMS:
            assert len(cell[arm][metric]["per_seed"]) == 2 and math.isfinite(cell[arm][metric]["mean"])
        low, high = cell["shapo_minus_base"][metric]["ci95"]
        assert low <= cell["shapo_minus_base"][metric]["mean"] <= high
        assert 0 <= cell["shapo_minus_base"][metric]["p_value"] <= 1
    assert (out / "SafetyPointGoal1.png").is_file() and (out / "curves.csv").is_file()
    assert "3/3" in result.stderr  # the progress bar, fed by the trainer's progress_fn, reached the end


def fake_run_cell(config, grid, settings, progress, partial):
    """A cell as run_cell returns it, with made-up curves (no compiling): rising return, falling cost."""
    rng = np.random.default_rng(abs(hash((config.env, config.algo))) % 2**32)
    steps = [(u + 1) * config.steps_per_update for u in range(config.num_updates)]
    arms = {}
    for index, arm in enumerate(paper.ARMS):
        runs = []
        for seed in range(grid.seeds):
            ret = np.cumsum(rng.uniform(0, 1, len(steps))) + index
            cost = rng.uniform(0, 20, len(steps)) - 2 * index
            total = np.cumsum(np.maximum(cost, 0) * 10)
            runs.append({"seed": seed, "final_return": float(ret[-1]), "final_cost": float(cost[-1]),
                         "total_cost": float(total[-1]), "failed_update": -1,
                         "curves": {"env_steps": steps, "episode_return": ret.tolist(), "episode_cost": cost.tolist(),
                                    "total_cost": total.tolist()}})
        arms[arm] = {"rho": [0.0, settings["rho"]["shapo"]][index], "runs": runs}
    return {"task": config.env, "algo": config.algo, "settings": settings, "cost_limit": settings["resolved_cost_limit"],
            "num_updates": config.num_updates, "final_window_updates": 1, "compile_s": 0.0, "run_s": 1.0,
            "env_steps_per_s": 1.0, "arms": arms}


def test_each_cell_is_kept_as_it_finishes_and_an_interrupted_grid_resumes(tmp_path, monkeypatch):
    """Two tasks x two algorithms, interrupted in the third cell: two cells and their outputs are
    on disk; the same command then trains only the last two, and the outputs hold all four in grid order."""
    argv = ["--quick", "--tasks", "PointHazard", "SafetyAntFall", "--algos", "trpo_pid", "cpo", "--seeds", "3",
            "--no-progress", "--no-compilation-cache", "--out", str(tmp_path)]
    trained = []

    def interrupted_in_the_third(config, grid, settings, progress, partial):
        if len(trained) == 2:
            raise KeyboardInterrupt
        trained.append((config.env, config.algo))
        return fake_run_cell(config, grid, settings, progress, partial)

    monkeypatch.setattr(paper, "run_cell", interrupted_in_the_third)
    code, _, stderr = run_main(argv)
    assert code == 130 and "interrupted in [3/4] SafetyAntFall trpo_pid; 2 cell(s) kept in" in stderr
    assert sorted(os.listdir(tmp_path / "cells")) == ["PointHazard__cpo.json", "PointHazard__trpo_pid.json"]
    with open(tmp_path / "paper.json") as f:
        assert set(json.load(f)["results"]["PointHazard"]) == {"trpo_pid", "cpo"}
    assert (tmp_path / "PointHazard.png").is_file() and not (tmp_path / "SafetyAntFall.png").exists()

    trained.clear()
    def recorded(config, grid, settings, progress, partial):
        trained.append((config.env, config.algo))
        return fake_run_cell(config, grid, settings, progress, partial)

    monkeypatch.setattr(paper, "run_cell", recorded)
    code, stdout, _ = run_main(argv)
    assert code == 0 and trained == [("SafetyAntFall", "trpo_pid"), ("SafetyAntFall", "cpo")]
    assert stdout.count("done earlier") == 2
    with open(tmp_path / "paper.json") as f:
        results = json.load(f)["results"]
    assert {task: set(algos) for task, algos in results.items()} == {
        "PointHazard": {"trpo_pid", "cpo"}, "SafetyAntFall": {"trpo_pid", "cpo"}}
    assert results["SafetyAntFall"]["cpo"]["cost_limit"] < 1 and results["PointHazard"]["cpo"]["cost_limit"] == 10
    table = (tmp_path / "table.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[:2] for row in table[::3]] == [
        ["| PointHazard", "trpo_pid"], ["| PointHazard", "cpo"], ["| SafetyAntFall", "trpo_pid"], ["| SafetyAntFall", "cpo"]]
    with open(tmp_path / "curves.csv") as f:
        assert sum(1 for _ in f) == 1 + 4 * 2 * 3 * 3  # header + cells x arms x seeds x updates
    for task in ("PointHazard", "SafetyAntFall"):
        assert (tmp_path / f"{task}.png").read_bytes()[:4] == b"\x89PNG"


def test_interrupted_cell_continues_from_its_checkpoint_bit_for_bit(quick, tmp_path, monkeypatch):
    whole, _, _ = quick  # the same command, never interrupted
    argv = CHECKPOINTED + ["--out"]
    assert not os.path.exists(paper.partial_dir(str(whole), "PointHazard", "trpo_pid"))

    cut = str(tmp_path / "cut")
    save_partial = paper.save_partial

    def stop_after_the_first_checkpoint(*args):
        save_partial(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(paper, "save_partial", stop_after_the_first_checkpoint)
    code, _, stderr = run_main(argv + [cut])
    partial = paper.partial_dir(cut, "PointHazard", "trpo_pid")
    assert code == 130 and "and this one up to its last checkpoint" in stderr
    assert os.listdir(os.path.join(partial, "checkpoints")) == ["2000"]  # after update 1 of 3
    assert not os.path.exists(paper.cell_path(cut, "PointHazard", "trpo_pid"))

    code, _, stderr = run_main(QUICK_POINT_HAZARD + ["--checkpoint-every", "0", "--out", cut])
    assert code == 2 and stderr.startswith(f"paper.py: error: --out: {partial} was trained with other settings "
                                           "(checkpoint_every)")

    monkeypatch.setattr(paper, "save_partial", save_partial)
    code, stdout, stderr = run_main(argv + [cut])
    assert code == 0, stderr
    assert "continuing from the checkpoint after update 1 of 3" in stdout and not os.path.exists(partial)
    cells = []
    for out in (str(whole), cut):
        with open(paper.cell_path(out, "PointHazard", "trpo_pid")) as f:
            cells.append(json.load(f)["arms"])
    assert cells[0] == cells[1]  # every curve and final figure, exactly
