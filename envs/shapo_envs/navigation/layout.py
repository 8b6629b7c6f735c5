"""Jittable random layouts, as Safety-Gymnasium's ``RandomGenerator`` draws them.

SG utils/random_generator.py places the agent and then every object in turn; each one is
drawn uniformly in the placement extents shrunk by its own keepout (``constrain_placement``)
and rejected while it lies closer than ``keepout_other + margin + keepout_self`` to anything
placed before it (``sample_layout``: up to 100 draws per object). If one object fails, the
whole layout is started again (``build_layout``: up to 10000 layouts).

Here every object draws ``num_candidates`` (100, as SG) candidates at once and keeps the
first valid one, which is the same distribution as SG's sequential draws. Whole layouts are
drawn ``batch`` (8) at a time in parallel, in a ``while_loop`` that stops at the first complete
one or after SG's 10000 layouts, which is SG's restart (Button1 needs ~50 layouts on average:
only ~2% of them place every gremlin). If all 10000 fail (SG raises ``ResamplingError``),
``ok`` is False and the last attempt is returned with some keepouts violated.

New goals (SG ``sample_goal_position``, up to 10000 draws, then the episode ends) draw
``num_candidates`` candidates against the current positions of everything else; when none
is valid the caller ends the episode, as SG does with ``terminate_resample_failure``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NUM_CANDIDATES = 100  # SG utils/random_generator.py sample_layout: 100 draws per object
MAX_LAYOUTS = 10000  # SG utils/random_generator.py build_layout: up to 10000 layouts
BATCH = 8  # ours: layouts drawn in parallel per loop iteration
GOAL_CANDIDATES = 256  # ours: candidates per new goal (SG: up to 10000 sequential)
MARGIN = 0.0  # SG bases/underlying.py PlacementsConf.margin


def _draw(key, n, keepout, extents):
    """``n`` uniform points in the extents shrunk by ``keepout`` (SG ``draw_placement``)."""
    xmin, ymin, xmax, ymax = extents
    lo = jnp.stack([xmin + keepout, ymin + keepout])
    hi = jnp.stack([xmax - keepout, ymax - keepout])
    return jax.random.uniform(key, (n, 2), minval=lo, maxval=hi)


def _first_valid(candidates, keepout, others_xy, others_keepout, others_mask):
    """First candidate clear of every masked other; (xy, found)."""
    dist = jnp.linalg.norm(candidates[:, None, :] - others_xy[None, :, :], axis=-1)
    clear = (dist >= others_keepout[None, :] + MARGIN + keepout) | ~others_mask[None, :]
    valid = jnp.all(clear, axis=1)
    return candidates[jnp.argmax(valid)], jnp.any(valid)


def _one_layout(key, keepouts, extents, num_candidates):
    n = keepouts.shape[0]
    keys = jax.random.split(key, n)

    def place(i, carry):
        xy, ok = carry
        candidates = _draw(keys[i], num_candidates, keepouts[i], extents)
        placed = jnp.arange(n) < i
        found_xy, found = _first_valid(candidates, keepouts[i], xy, keepouts, placed)
        return xy.at[i].set(found_xy), ok & found

    return jax.lax.fori_loop(0, n, place, (jnp.zeros((n, 2)), jnp.array(True)))


def sample_layout(key, keepouts, extents, num_candidates=NUM_CANDIDATES, batch=BATCH, max_layouts=MAX_LAYOUTS):
    """Positions ``[n, 2]`` of objects with ``keepouts`` ``[n]``, placed in order; and ``ok``."""
    keepouts = jnp.asarray(keepouts, jnp.float32)

    def attempt(carry):
        i, key, _, _ = carry
        key, sub = jax.random.split(key)
        xys, oks = jax.vmap(lambda k: _one_layout(k, keepouts, extents, num_candidates))(
            jax.random.split(sub, batch))
        first = jnp.argmax(oks)
        return i + 1, key, xys[first], oks[first]

    def again(carry):
        i, _, _, ok = carry
        return ~ok & (i * batch < max_layouts)

    _, _, xy, ok = jax.lax.while_loop(again, attempt, attempt((0, key, None, None)))
    return xy, ok


def sample_goal(key, keepout, others_xy, others_keepout, extents, num_candidates=GOAL_CANDIDATES):
    """A new goal clear of ``others_xy`` (current positions of all but the goal); (xy, ok)."""
    candidates = _draw(key, num_candidates, keepout, extents)
    mask = jnp.ones(others_xy.shape[0], bool)
    return _first_valid(candidates, keepout, others_xy, jnp.asarray(others_keepout), mask)


def min_clearance(xy, keepouts):
    """Smallest ``dist - keepout_i - keepout_j`` over pairs (>= 0 for a valid layout)."""
    keepouts = jnp.asarray(keepouts)
    dist = jnp.linalg.norm(xy[:, None] - xy[None, :], axis=-1)
    gap = dist - keepouts[:, None] - keepouts[None, :]
    return jnp.min(jnp.where(jnp.eye(xy.shape[0], dtype=bool), jnp.inf, gap))
