"""The compiled core: gradient ascent on a batch of images, one target per image.

The update is an optax transformation, so a style can swap the 2016 normalized-gradient step
for Adam without touching the loop. The loop over steps either lives inside the compiled
program (`device`) or calls one compiled step per step from Python (`python`): on XLA:CPU
convolutions inside a compiled loop run 2.5-3x slower, on GPU the in-graph loop wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from models.preprocess import caffe_preprocess
from render.objectives import Objective

LOOPS = ("python", "device")


def normalize_by_rms(eps: float = 1e-5) -> optax.GradientTransformation:
    """Divide each image's gradient by its RMS: g / (sqrt(mean(g^2)) + eps), as in 2016."""

    def update(updates, state, params=None):
        def per_image(g):
            axes = tuple(range(1, g.ndim))
            return g / (jnp.sqrt(jnp.mean(jnp.square(g), axis=axes, keepdims=True)) + eps)

        return jax.tree.map(per_image, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def chollet2016_optimizer(step_size: float) -> optax.GradientTransformation:
    return optax.chain(normalize_by_rms(), optax.sgd(step_size))


def initial_images(
    seed: int, stream: int, targets: jax.Array, size: int, gray: float, noise: float
) -> jax.Array:
    """Gray plus uniform noise in [0, noise) per pixel, in caffe space, one image per target.

    Each image's noise depends only on (seed, stream, target): never on the batch around it.
    """

    def one(target):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), stream), target)
        return gray + noise * jax.random.uniform(key, (size, size, 3), jnp.float32)

    return caffe_preprocess(jax.vmap(one)(targets))


@dataclass
class Ascent:
    """A compiled ascent for one batch shape: run(params, images, targets) -> result."""

    run: Callable
    compile_seconds: float
    loop: str


def compile_ascent(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    steps: int,
    loop: str,
    params,
    images: jax.Array,
    targets: jax.Array,
) -> Ascent:
    """Compile `steps` of ascent for batches shaped like (images, targets).

    The result of run() is (final images, loss per image at the start, loss at the end).
    """
    donate = (1,) if jax.default_backend() != "cpu" else ()  # CPU cannot reuse donated buffers

    def step(params, state, targets):
        images, opt_state = state

        def negative_total(images):
            losses = objective(params, images, targets)
            return -losses.sum(), losses

        grads, losses = jax.grad(negative_total, has_aux=True)(images)
        updates, opt_state = optimizer.update(grads, opt_state, images)
        return (optax.apply_updates(images, updates), opt_state), losses

    start = time.perf_counter()
    state = (images, optimizer.init(images))
    final_loss = jax.jit(objective).lower(params, images, targets).compile()
    if loop == "python":
        step_c = jax.jit(step, donate_argnums=donate).lower(params, state, targets).compile()

        def run(params, images, targets):
            state, start_loss = step_c(params, (images, optimizer.init(images)), targets)
            for _ in range(steps - 1):
                state, _ = step_c(params, state, targets)
            return state[0], start_loss, final_loss(params, state[0], targets)

    elif loop == "device":

        def all_steps(params, images, targets):
            state, start_loss = step(params, (images, optimizer.init(images)), targets)
            state = jax.lax.fori_loop(1, steps, lambda i, s: step(params, s, targets)[0], state)
            return state[0], start_loss

        steps_c = jax.jit(all_steps, donate_argnums=donate).lower(params, images, targets)
        steps_c = steps_c.compile()

        def run(params, images, targets):
            images, start_loss = steps_c(params, images, targets)
            return images, start_loss, final_loss(params, images, targets)

    else:
        raise ValueError(f"loop must be one of {LOOPS}, not {loop!r}")
    return Ascent(run, time.perf_counter() - start, loop)
