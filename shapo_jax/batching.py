"""``flat_vmap``: a ``jax.vmap`` that an outer ``vmap`` folds into instead of nesting.

The trainer vmaps a whole run over seeds, so the env step inside it, itself vmapped over envs,
is batched twice: [seeds, envs, ...]. On jax 0.10.2's CPU backend an MJX step batched that
way ran 2.6x slower than the same step batched once (SafetyHopperVelocity, 64 envs x 64 steps,
one seed: 16.5 s against 6.4 s; on jax 0.9.2 0.98x), which made a PPO-Lag iteration 2.6x its
env-only rollout (``benchmarks/results/throughput_cpu_quick_before_flat_vmap.json``). Stepping the same envs as
one flat batch [seeds * envs, ...] computes the same thing per env, once per env, with one
batch axis.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def flat_vmap(fn: Callable) -> Callable:
    """``jax.vmap(fn)`` over the leading axis of every argument; when it is vmapped again (any
    number of times, e.g. over seeds), the outer axes are merged into that one batch axis,
    ``fn`` runs once on the flat batch and its outputs are split back.

    Arguments an outer vmap does not batch are broadcast along its axis first. ``fn`` must
    treat batch entries independently (an env step or reset does): merging axes changes only
    how the work is batched, not what each entry computes. Not differentiable (custom_vmap).
    """
    batched = jax.vmap(fn)

    @jax.custom_batching.custom_vmap
    def apply(*args):
        return batched(*args)

    @apply.def_vmap
    def _fold_outer_axis(axis_size, in_batched, *args):
        def merge(x, is_batched):
            x = x if is_batched else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x))
            return x.reshape((axis_size * x.shape[1],) + x.shape[2:])

        flat = jax.tree.map(merge, list(args), list(in_batched))
        out = apply(*flat)
        out = jax.tree.map(lambda y: y.reshape((axis_size, y.shape[0] // axis_size) + y.shape[1:]), out)
        return out, jax.tree.map(lambda _: True, out)

    return apply
