"""XLA CPU flags this package sets before JAX starts a backend (imported by ``shapo_jax`` and
``shapo_envs``, so before the first computation whichever is imported first).

A user's own setting of a flag in ``XLA_FLAGS`` wins: a flag already named there is left alone.
Both flags exist in jaxlib 0.9.2 to 0.12 (an unknown flag aborts XLA, so check before adding one).
Both are CPU-only: a GPU or TPU backend ignores them.
"""

import os

CPU_FLAGS = {
    # jax 0.10's CPU runtime deadlocks on our vmapped training programs (block_until_ready waits
    # forever at 0% CPU; found bisecting to vmapped inits with batched LAPACK QR, the orthogonal
    # initialiser) unless XLA's concurrency-optimized scheduler is off.
    "xla_cpu_enable_concurrency_optimized_scheduler": "false",
    # jaxlib 0.10 hands reductions (reduce-window, some dots) to YNNPACK fusions by default. On
    # MJX's batched small reductions they run 3-7x slower than XLA's own loops: a profile of
    # MJX's line search (Hopper-v4, 1024 envs) showed each `ynn_fusion` at 7 ms where jaxlib
    # 0.9.2's reduce-window took 1 ms. Empty = no YNNPACK fusions, jaxlib 0.9.2's behaviour.
    # Measured (env-only, 1024 envs, idle 2-core CPU, 2026-11-30; YNNPACK's reduce fusions on ->
    # off): Hopper-v4 775 -> 2,714 steps/s, SafetyPointGoal1 5,783 -> 10,029 (jax 0.9.2: 2,380 and
    # 11,077). benchmarks/README.md, benchmarks/results/env_throughput_ynn_{reduce,off}_cpu.json.
    "xla_cpu_experimental_ynn_fusion_type": "",
}


def with_cpu_flags(xla_flags: str) -> str:
    """``xla_flags`` plus each of ``CPU_FLAGS`` that it does not already name."""
    added = [f"--{name}={value}" for name, value in CPU_FLAGS.items() if name not in xla_flags]
    return " ".join([xla_flags.strip(), *added]).strip()


os.environ["XLA_FLAGS"] = with_cpu_flags(os.environ.get("XLA_FLAGS", ""))
