"""How the trainer batches envs: ``flat_vmap``, and envs whose batch shares leaves.

``flat_vmap`` is a ``jax.vmap`` that an outer ``vmap`` folds into instead of nesting. The
trainer vmaps a whole run over seeds, so the env step inside it, itself vmapped over envs,
is batched twice: [seeds, envs, ...]. On jax 0.10.2's CPU backend an MJX step batched that
way ran 2.6x slower than the same step batched once (SafetyHopperVelocity, 64 envs x 64 steps,
one seed: 16.5 s against 6.4 s; on jax 0.9.2 0.98x), which made a PPO-Lag iteration 2.6x its
env-only rollout (``benchmarks/results/throughput_cpu_quick_before_flat_vmap.json``). Stepping the same envs as
one flat batch [seeds * envs, ...] computes the same thing per env, once per env, with one
batch axis.

Shared leaves: MJX's Warp implementation keeps the contacts and constraint rows of *all*
worlds stepped together in one list (sized for ``max_worlds``), and ``jax.vmap`` leaves
those fields of a batch of ``mjx.Data`` unbatched: one array for the whole batch, with no
env or seed axis. Its batching rule merges nested batch axes itself, so such envs are
vmapped plainly (``vmap_envs``), and per-env selects (resets, the NaN guard) keep the shared
leaves whole, as MJX's ``Data.where`` does (``select_envs``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

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


def shared_leaves(reset: Callable[[jax.Array], Any], key: jax.Array) -> Optional[Any]:
    """Which leaves of a batch of env states all envs of the batch share: a tree of bools
    shaped like the state (True: shared), or None when every leaf is per env.

    Found abstractly (nothing compiles) from ``jax.vmap(reset)`` at batch sizes 1 and 2: a
    per-env leaf grows with the batch, a shared one (Warp's contact list) does not.
    """
    one, two = (jax.eval_shape(jax.vmap(reset), jax.random.split(key, n)) for n in (1, 2))
    shared = jax.tree.map(lambda a, b: a.shape == b.shape, one, two)
    return shared if any(jax.tree.leaves(shared)) else None


def vmap_envs(fn: Callable, shared: Optional[Any] = None) -> Callable:
    """The env batch's vmap: ``flat_vmap`` when every leaf is per env, else ``jax.vmap``
    (``flat_vmap`` would reshape the shared leaves; Warp's own rule flattens nested axes)."""
    return flat_vmap(fn) if shared is None else jax.vmap(fn)


def select_envs(mask: jax.Array, chosen: Any, latest: Any, shared: Optional[Any] = None) -> Any:
    """Per env, ``chosen`` where ``mask`` else ``latest``, leaf by leaf; ``mask`` is [num_envs]
    (or a scalar, for the whole batch). Shared leaves are taken from ``latest`` whole: they
    are the batch's scratch space (Warp's contacts, recomputed by every step)."""

    def select(chosen_leaf, latest_leaf):
        m = mask.reshape(mask.shape + (1,) * (jnp.ndim(latest_leaf) - mask.ndim))
        return jnp.where(m, chosen_leaf, latest_leaf)

    if shared is None:
        return jax.tree.map(select, chosen, latest)
    return jax.tree.map(lambda s, c, l: l if s else select(c, l), shared, chosen, latest)
