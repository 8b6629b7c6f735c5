"""The public import is light: the transform loads without MuJoCo, MJX, Brax or flax."""

import subprocess
import sys

HEAVY = ("mujoco", "brax", "flax", "shapo_envs")


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_import_shapo_jax_and_the_transform_load_no_simulator():
    loaded = _modules_after("import shapo_jax\nfrom shapo_jax import sharpness_aware, TrainConfig")
    assert "optax" in loaded and not loaded.intersection(HEAVY), sorted(loaded.intersection(HEAVY))


def test_trainer_and_tasks_load_on_first_use():
    loaded = _modules_after("import shapo_jax\nshapo_jax.make_train\nassert 'PointHazard' in shapo_jax.list_envs()")
    assert {"brax", "mujoco", "shapo_envs"} <= loaded


def test_public_names_resolve_and_unknown_names_fail():
    import shapo_jax

    for name in shapo_jax.__all__:
        assert getattr(shapo_jax, name) is not None
    assert set(shapo_jax.__all__) <= set(dir(shapo_jax))
    try:
        shapo_jax.no_such_name
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("an unknown attribute must raise AttributeError")


def test_cpu_flags_keep_the_users_own_setting():
    from shapo_jax.xla_flags import CPU_FLAGS, with_cpu_flags

    assert with_cpu_flags("") == " ".join(f"--{name}={value}" for name, value in CPU_FLAGS.items())
    mine = "--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"
    flags = with_cpu_flags(mine).split()
    assert flags[:2] == mine.split()
    assert flags[2:] == ["--xla_cpu_enable_concurrency_optimized_scheduler=false"]
    assert with_cpu_flags(with_cpu_flags("")) == with_cpu_flags("")


def test_importing_the_tasks_alone_turns_off_ynnpack_fusions():
    """jaxlib 0.10 fuses reductions into YNNPACK calls that ran MJX 3-4x slower on CPU; importing
    shapo_envs (without shapo_jax) must turn them off before the first computation."""
    import os

    probe = ("import shapo_envs, jax, jax.numpy as jnp\n"
             "x = jnp.ones((64, 38))\n"
             "f = jax.jit(lambda x: jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 38), (1, 1), 'VALID'))\n"
             "print('ynn_fusion' in f.lower(x).compile().as_text())")
    environment = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    environment["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environment)
    assert result.stdout.split()[-1] == "False", result.stdout
