"""shapo-eval on a saved run: per-seed return and cost of both policies, the JSON report, errors."""

import json
import math
import os
import subprocess
import sys

import pytest

from compile_options import quick_compile_flags
from shapo_jax import evaluate

RUN_ARGS = ["--env", "PointHazard", "--num-envs", "8", "--unroll-length", "16", "--num-minibatches", "2",
            "--update-epochs", "1", "--num-seeds", "2", "--episode-length", "8", "--total-steps", "256",
            "--checkpoint-every", "128", "--no-progress"]


def train(tmp_path_factory, out, args=RUN_ARGS):
    """shapo-train in a subprocess: XLA's quick compile, and the session's shared
    compilation cache (every run here has the same shapes: one compile)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path_factory.getbasetemp() / "xdg_cache"),
           "XLA_FLAGS": quick_compile_flags()}
    result = subprocess.run([sys.executable, "-m", "shapo_jax.cli", *args, "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A 2-update, 2-seed run with checkpoints at steps 128 and 256."""
    out = tmp_path_factory.mktemp("eval") / "run"
    train(tmp_path_factory, out)
    return out


# The same run without --checkpoint-every: only its final policy is saved.
PLAIN_ARGS = RUN_ARGS[:RUN_ARGS.index("--checkpoint-every")] + ["--no-progress"]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, saved_run):
    out = tmp_path_factory.mktemp("eval") / "plain"
    train(tmp_path_factory, out, PLAIN_ARGS)
    return out


def test_eval_reports_finite_return_and_cost_per_seed_for_both_policies(saved_run, capsys):
    assert evaluate.main(["--run", str(saved_run), "--episodes", "3"]) == 0
    report_path = saved_run / "eval_256.json"
    with open(report_path) as f:
        report = json.load(f)
    assert report["step"] == 256 and report["episodes_per_seed"] == 3 and report["env"] == "PointHazard"
    for policy in ("deterministic", "stochastic"):
        part = report[policy]
        assert set(part) == {"episode_return", "episode_cost", "mean_return", "mean_cost"}
        assert len(part["episode_return"]) == len(part["episode_cost"]) == 2
        values = part["episode_return"] + part["episode_cost"] + [part["mean_return"], part["mean_cost"]]
        assert all(isinstance(x, float) and math.isfinite(x) for x in values)
        assert all(c >= 0 for c in part["episode_cost"])
    assert report["deterministic"] != report["stochastic"]
    assert "deterministic" in capsys.readouterr().out


def test_eval_of_an_earlier_step_and_of_a_missing_one(saved_run, tmp_path, capsys):
    earlier = evaluate.evaluate_run(str(saved_run), num_episodes=2, step=128)
    assert earlier["step"] == 128
    assert evaluate.main(["--run", str(saved_run), "--step", "999", "--json", str(tmp_path / "x.json")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("shapo-eval: error: --step 999") and "128, 256" in error


def test_eval_errors_are_one_line(saved_run, tmp_path, capsys):
    assert evaluate.main(["--run", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err
    assert evaluate.main(["--run", str(saved_run), "--episodes", "1", "--json", str(tmp_path / "r.json"),
                          "--video", str(tmp_path / "v.mp4")]) == 2
    assert "no renderer" in capsys.readouterr().err  # PointHazard is pure JAX


def test_every_run_saves_its_final_policy_for_shapo_eval(plain_run, saved_run, capsys):
    """Without --checkpoint-every, shapo-eval runs on the final policy.npz: the actor and the
    observation statistics of the final state, equal to the final checkpoint's."""
    import jax
    import numpy as np

    from shapo_jax.checkpoint import POLICY_FILE, policy_of
    from shapo_jax.train import make_trainer

    assert not (plain_run / "checkpoints").exists()
    assert os.path.getsize(plain_run / POLICY_FILE) < 100_000  # small: no env states, no optimizer
    assert evaluate.main(["--run", str(plain_run), "--episodes", "2"]) == 0
    assert "step 256" in capsys.readouterr().out
    with open(plain_run / "eval_256.json") as f:
        assert len(json.load(f)["deterministic"]["episode_return"]) == 2

    trainer = make_trainer(evaluate.load_config(str(saved_run)))
    policy, step = evaluate.load_policy(str(saved_run), trainer, None)  # policy.npz and checkpoint 256
    states, _ = evaluate.load_state(str(saved_run), trainer, 256)
    assert step == 256 and isinstance(policy.normalizer.mean, np.ndarray)  # read from policy.npz
    for a, b in zip(jax.tree.leaves(policy), jax.tree.leaves(policy_of(states))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    same_run = [np.load(d / POLICY_FILE) for d in (saved_run, plain_run)]  # same flags and seed
    for name in same_run[0].files:
        np.testing.assert_array_equal(same_run[0][name], same_run[1][name])


def test_the_same_command_again_starts_afresh_and_replaces_the_files(plain_run, tmp_path_factory):
    events_before = os.listdir(plain_run / "tensorboard")
    (plain_run / "eval_1.json").write_text("{}")
    result = train(tmp_path_factory, plain_run, PLAIN_ARGS)
    lines = [line for line in result.stdout.splitlines() if "earlier run" in line]
    assert len(lines) == 1 and "starting afresh" in lines[0] and str(plain_run) in lines[0]
    assert not (plain_run / "eval_1.json").exists()  # the earlier run's evaluations are gone
    assert len(os.listdir(plain_run / "tensorboard")) == 1 and os.listdir(plain_run / "tensorboard") != events_before
    with open(plain_run / "metrics.csv") as f:
        assert len(f.read().splitlines()) == 1 + 2 * 2  # this run's rows only
    assert not [name for name in os.listdir(plain_run) if name.endswith(".tmp")]


def test_eval_of_a_run_without_policy_nor_checkpoint(saved_run, tmp_path, capsys):
    (tmp_path / "config.json").write_bytes((saved_run / "config.json").read_bytes())  # a run killed early
    assert evaluate.main(["--run", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "policy.npz" in error and "--checkpoint-every" in error
    (tmp_path / "policy.npz").write_bytes(b"not a zip file")
    assert evaluate.main(["--run", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "policy.npz cannot be read" in error


def test_write_video_falls_back_to_png_frames_when_no_mp4_encoder_is_installed(tmp_path, monkeypatch):
    """imageio installed without ffmpeg refuses .mp4 (ValueError): PNG frames instead, and the hint."""
    import types

    import numpy as np
    from PIL import Image

    def no_backend(path, frames, fps):
        raise ValueError(f"Could not find a backend to open `{path}` with iomode `wI`")

    monkeypatch.setitem(sys.modules, "imageio", types.SimpleNamespace(mimwrite=no_backend))
    monkeypatch.setitem(sys.modules, "mediapy", None)  # import fails
    frames = np.zeros((3, 6, 8, 3), np.uint8)
    frames[1, :, :, 1] = 255
    message = evaluate.write_video(str(tmp_path / "v.mp4"), frames, fps=50)
    assert "imageio[ffmpeg]" in message and "3 PNG frames" in message
    written = sorted(os.listdir(tmp_path / "v_frames"))
    assert written == ["00000.png", "00001.png", "00002.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "v_frames" / "00001.png")), frames[1])
