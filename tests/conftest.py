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
