"""XLA compile options the tests share, with the timings that chose them.

At test sizes (a few envs, a few steps) compiling costs more than running, and XLA's CPU
backend spends most of a compile in LLVM's optimisation passes. Nothing a test checks
depends on those passes: every result is compared within round-off or against itself.
"""

from __future__ import annotations

import os

# The quick compile: backend optimisation level 0 with LLVM's expensive passes off. For the
# smoke tests and tiny trainers it compiled about twice as fast as the default.
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

# For a test that runs long enough for the code's speed to count: the vase push (48 x 80 env
# steps) compiled and ran in 35 s at O1; QUICK_COMPILE ran it in 139 s, O1 with the expensive
# passes off in 124 s.
LONG_RUN_COMPILE = {"xla_backend_optimization_level": 1}


def quick_compile_flags() -> str:
    """``XLA_FLAGS`` for a subprocess (``shapo-train`` and friends): the caller's flags plus
    QUICK_COMPILE, written as flags (``--xla_backend_optimization_level=0 ...``)."""
    quick = " ".join(f"--{name}={str(value).lower()}" for name, value in QUICK_COMPILE.items())
    return (os.environ.get("XLA_FLAGS", "") + " " + quick).strip()
