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
