"""Navigation frames: what is drawn beyond the physics model (hazards, goal, cost), checked from a
known state without OpenGL; headless rendering and ``shapo-eval --video`` under ``-m slow``."""

import os
import subprocess
import sys
import textwrap
import types

import mujoco
import numpy as np
import pytest

from shapo_envs.navigation import render
from shapo_envs.navigation.env import NavigationEnv


def known_frame(env, cost=0.0, timer=0):
    """A frame with the agent at the origin and every object on a line, 0.5 m apart."""
    slots = 1 + sum(o.num for o in env.spec.objects)
    layout = np.stack([0.5 * np.arange(slots), -np.arange(slots) / 10.0], -1).astype(np.float32)
    return render.Frame(np.asarray(env.mj_model.qpos0), np.zeros((env.mj_model.nmocap, 3)),
                        np.tile([1.0, 0, 0, 0], (env.mj_model.nmocap, 1)), layout, np.array([1.25, -0.75]),
                        timer, cost, cost, 3)


def test_hazards_and_goal_are_drawn_where_the_state_puts_them_and_the_halo_only_on_a_costly_step():
    env = NavigationEnv("Point", "Goal", 1)
    frame = known_frame(env)
    items = render.decorations(env, frame, np.array([0.1, 0.2]))
    cylinder = int(mujoco.mjtGeom.mjGEOM_CYLINDER)
    hazards = [d for d in items if d.rgba == render.HAZARD_RGBA]
    assert len(hazards) == 8 and len(items) == 9  # 8 hazards (SG GoalLevel1), the goal; no halo
    # hazard slots come after the agent (slot 0) and the goal (slot 1): x = 0.5 * slot
    np.testing.assert_allclose([d.pos for d in hazards], [(0.5 * s, -s / 10, 0.02) for s in range(2, 10)], atol=1e-6)
    assert all(d.kind == cylinder and d.size == (0.2, 0.01, 0.0) for d in hazards)  # SG hazards.py
    (goal,) = [d for d in items if d.rgba == render.GOAL_RGBA]
    assert goal.kind == cylinder and goal.size == (0.3, 0.15, 0.0)  # SG goal.py: [size, size / 2]
    np.testing.assert_allclose(goal.pos, (1.25, -0.75, 0.16))  # the goal of the state, not the layout's slot

    costly = render.decorations(env, frame._replace(cost=1.0), np.array([0.1, 0.2]))
    (halo,) = [d for d in costly if d.rgba == render.HALO_RGBA]
    assert len(costly) == 10 and halo.pos == (0.1, 0.2, 0.1) and halo.size == (render.HALO_RADIUS,) * 3


def test_button_task_colours_the_robot_on_costly_steps_and_greys_buttons_while_the_timer_runs():
    env = NavigationEnv("Point", "Button", 1)
    m = env.mj_model
    geom = lambda name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)  # noqa: E731
    agent, arrow, floor = geom("agent"), geom("pointarrow"), geom("floor")
    buttons = [geom(f"button{i}") for i in range(4)]

    calm = render.colour_overrides(env, known_frame(env))
    assert calm == {floor: render.FLOOR_RGBA}
    costly = render.colour_overrides(env, known_frame(env, cost=1.0, timer=5))
    assert costly[agent] == costly[arrow] == render.COST_RGBA
    assert all(costly[b] == render.HIDDEN_BUTTON_RGBA for b in buttons)
    assert set(costly) == {floor, agent, arrow, *buttons}
    # Button's goal is drawn SG's Goal(size=2 * buttons.size) at the goal button; no hazards at level 0
    level0 = NavigationEnv("Point", "Button", 0)
    assert [d.size for d in render.decorations(level0, known_frame(level0), np.zeros(2))] == [(0.2, 0.1, 0.0)]


def test_frames_of_reads_each_step_and_sums_the_episode_cost():
    t, nq, nmocap = 4, 3, 2
    data = types.SimpleNamespace(qpos=np.arange(t * nq).reshape(t, nq), mocap_pos=np.zeros((t, nmocap, 3)),
                                 mocap_quat=np.ones((t, nmocap, 4)))
    info = {"cost": np.array([0.0, 1.0, 0.0, 1.0]), "layout": np.zeros((t, 5, 2)),
            "goal": np.arange(2 * t).reshape(t, 2), "timer": np.array([0, 10, 9, 8])}
    frames = render.frames_of(types.SimpleNamespace(pipeline_state=data, info=info))
    assert [f.episode_cost for f in frames] == [0.0, 1.0, 1.0, 2.0]
    assert [f.step for f in frames] == [0, 1, 2, 3] and [f.timer for f in frames] == [0, 10, 9, 8]
    np.testing.assert_array_equal(frames[2].qpos, [6, 7, 8])
    np.testing.assert_array_equal(frames[3].goal, [6, 7])
    del info["timer"]  # Goal and Push tasks have none
    assert all(f.timer == 0 for f in render.frames_of(types.SimpleNamespace(pipeline_state=data, info=info)))
    # a Split task's per-kind indicators: a step costs where any kind does
    info["cost"] = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    split = render.frames_of(types.SimpleNamespace(pipeline_state=data, info=info))
    assert [f.cost for f in split] == [0.0, 1.0, 1.0, 0.0] and [f.episode_cost for f in split] == [0.0, 1.0, 2.0, 2.0]


# ---------------------------------------------------------------------------------- OpenGL
def gl_backend():
    """The first headless OpenGL backend MuJoCo can render with here (a subprocess each, since
    MuJoCo picks its backend when first imported), or None."""
    probe = "import mujoco; mujoco.Renderer(mujoco.MjModel.from_xml_string('<mujoco/>'), 8, 8).close()"
    for backend in ([os.environ["MUJOCO_GL"]] if "MUJOCO_GL" in os.environ else ["egl", "osmesa"]):
        result = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "MUJOCO_GL": backend},
                                capture_output=True, timeout=120)
        if result.returncode == 0:
            return backend
    return None


@pytest.fixture(scope="module")
def headless_gl():
    backend = gl_backend()
    if backend is None:
        pytest.skip("no headless OpenGL: MuJoCo opens neither EGL (libegl1) nor OSMesa (libosmesa6)")
    return backend


RENDER_SCRIPT = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    from shapo_envs.navigation import render
    from shapo_envs.navigation.env import NavigationEnv

    env = NavigationEnv("Point", "Goal", 1)
    state = jax.jit(env.reset)(jax.random.PRNGKey(3))
    states = jax.tree.map(lambda x: np.stack([np.asarray(x)] * 2), state)
    frames = render.frames_of(states)
    frames[1] = frames[1]._replace(cost=1.0, episode_cost=1.0)  # the same state, as a costly step
    np.save(sys.argv[1], render.render(env, frames, 120, 160))
""")


def colour_pixels(image, channel):
    """Pixels where ``channel`` (0 red, 1 green, 2 blue) stands out from the other two."""
    image = image.astype(int)
    others = np.delete(image, channel, axis=-1)
    return int(np.sum((image[..., channel] > 150) & np.all(others < 110, axis=-1)))


@pytest.mark.slow
def test_frames_render_headless_with_goal_hazards_and_a_red_costly_robot(headless_gl, tmp_path):
    path = tmp_path / "frames.npy"
    result = subprocess.run([sys.executable, "-c", RENDER_SCRIPT, str(path)], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "MUJOCO_GL": headless_gl, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-2000:]
    frames = np.load(path)
    assert frames.shape == (2, 120, 160, 3) and frames.dtype == np.uint8
    calm, costly = frames
    assert calm.std() > 20  # not blank
    assert colour_pixels(calm, 1) > 50 and colour_pixels(calm, 2) > 50  # the goal (green), hazards (blue)
    assert colour_pixels(costly, 0) > colour_pixels(calm, 0) + 20  # the robot and its halo turn red


@pytest.mark.slow
def test_shapo_eval_video_of_a_navigation_run(headless_gl, tmp_path_factory):
    from PIL import Image

    from test_evaluate import train

    out = tmp_path_factory.mktemp("nav_video") / "run"
    train(tmp_path_factory, out, ["--env", "SafetyPointGoal1", "--num-envs", "2", "--unroll-length", "8",
                                  "--num-minibatches", "1", "--update-epochs", "1", "--num-seeds", "1",
                                  "--episode-length", "8", "--total-steps", "16", "--no-progress"])
    video = out / "episode.gif"
    result = subprocess.run([sys.executable, "-m", "shapo_jax.evaluate", "--run", str(out), "--episodes", "1",
                             "--video", str(video)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "MUJOCO_GL": headless_gl, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"to {video}" in result.stdout
    gif = Image.open(video)
    assert gif.n_frames == 9 and gif.size == (320, 240)  # the reset state and 8 steps
    first = np.asarray(gif.convert("RGB"))
    assert first.std() > 20 and colour_pixels(first, 1) > 50  # the goal is drawn
