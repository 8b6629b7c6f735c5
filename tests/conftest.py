"""Test-session settings: CPU only, and a persistent compilation cache shared by the tests.

Several tests compile the same program (determinism checks run a config twice); the cache
lets the second compile be a load. It lives in the pytest temp dir, so runs never share it.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    yield


# The files that took longest (worker-seconds in one run on a 2-core Xeon, 2026-12-01), handed
# out first. pytest-xdist gives whole files to workers in collection order (pyproject's addopts:
# --dist loadfile --no-loadscope-reorder); when test_train.py (~400 s) came last, one worker ran
# it alone for the suite's last five minutes.
LONGEST_FILES_FIRST = ("test_envs_locomotion.py", "test_train.py", "test_envs_navigation.py", "test_algorithms.py",
                       "test_nav_warp.py", "test_navigation_fidelity.py", "test_distributed.py", "test_nav_physics.py",
                       "test_checkpoint.py", "test_paper_benchmark.py", "test_config_cli.py", "test_benchmarks.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
