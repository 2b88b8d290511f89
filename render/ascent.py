"""The compiled core: gradient ascent on a batch of images, one target per image.

A step renders each image from its parameters, shows the network a randomly transformed view
(per image), and updates the parameters with the style's optax rule; regularizers and the
early redirected-ReLU gradient are part of the same compiled step. The loop over steps either
lives inside the compiled program (`device`) or calls one compiled step per step from Python
(`python`): on XLA:CPU convolutions inside a compiled loop run 2.5-3x slower, on GPU the
in-graph loop wins. Octaves (render small, upscale, continue) chain one compiled ascent per
size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from render.objectives import Objective
from render.styles import Style

LOOPS = ("python", "device")


def image_keys(seed: int, stream: int, targets: jax.Array, copies: int = 1) -> jax.Array:
    """One key per image from (seed, stream, target, copy) alone: never from the batch around
    it. With copies > 1, targets come in runs of `copies` images of one target (diversity)."""
    base = jax.random.fold_in(jax.random.key(seed), stream)
    keys = jax.vmap(lambda t: jax.random.fold_in(base, t))(targets)
    if copies == 1:
        return keys
    copy = jnp.tile(jnp.arange(copies), len(targets) // copies)
    return jax.vmap(lambda k, c: jnp.where(c == 0, k, jax.random.fold_in(k, c)))(keys, copy)


def diversity_penalty(features: jax.Array, copies: int) -> jax.Array:
    """Per image: mean cosine similarity of its Gram matrix to those of the other images of its
    filter (runs of `copies` images), as in Lucid's diversity objective."""
    flat = features.reshape(features.shape[0], -1, features.shape[-1])
    gram = jnp.einsum("bpc,bpd->bcd", flat, flat).reshape(features.shape[0], -1) / flat.shape[1]
    gram = gram - gram.mean(axis=1, keepdims=True)  # post-ReLU Grams share a large positive mean
    gram = gram / (jnp.linalg.norm(gram, axis=1, keepdims=True) + 1e-8)
    groups = gram.reshape(-1, copies, gram.shape[-1])
    similarity = jnp.einsum("gic,gjc->gij", groups, groups)
    others = (similarity.sum(axis=2) - jnp.einsum("gii->gi", similarity)) / (copies - 1)
    return others.reshape(-1)


def gaussian_blur(images: jax.Array, sigma: float) -> jax.Array:
    """Separable 5-tap Gaussian blur of (B, H, W, C) images, edges replicated."""
    taps = jnp.exp(-0.5 * (jnp.arange(-2, 3) / sigma) ** 2)
    taps = taps / taps.sum()
    for axis in (1, 2):
        padded = jnp.pad(images, [(2, 2) if a == axis else (0, 0) for a in range(4)], "edge")
        size = images.shape[axis]
        images = sum(
            taps[i] * jax.lax.slice_in_dim(padded, i, i + size, axis=axis) for i in range(5)
        )
    return images


def penalties(style: Style, images: jax.Array) -> jax.Array:
    """Total variation and L2 of each image (B,), in 0-1 pixel units (about the input's zero)."""
    scale = jnp.asarray(style.parameterization.convention.scale, jnp.float32)
    x = images / (255.0 * scale)
    total = jnp.zeros(images.shape[0])
    if style.tv_weight:
        tv = jnp.abs(jnp.diff(x, axis=1)).mean(axis=(1, 2, 3))
        tv = tv + jnp.abs(jnp.diff(x, axis=2)).mean(axis=(1, 2, 3))
        total = total + style.tv_weight * tv
    if style.l2_weight:
        total = total + style.l2_weight * jnp.square(x).mean(axis=(1, 2, 3))
    return total


def make_step(objective: Objective, style: Style, features: Callable | None = None) -> Callable:
    """step(params, (param, opt_state), targets, keys, i) -> (new state, loss per image).

    `features(params, images)` feeds the diversity penalty when style.diversity > 1.
    """
    to_input = style.parameterization.to_input

    def step(params, state, targets, keys, i):
        param, opt_state = state

        def negative_total(param):
            images = to_input(param)
            view = images
            if style.transform is not None:
                view = style.transform(images, jax.vmap(lambda k: jax.random.fold_in(k, i))(keys))
            redirect = (
                (i < style.redirect_steps).astype(jnp.float32) if style.redirect_steps else None
            )
            losses = objective(params, view, targets, redirect)
            penalty = penalties(style, images)
            if style.diversity > 1:
                similarity = diversity_penalty(features(params, view), style.diversity)
                penalty = penalty + style.diversity_weight * similarity
            return -(losses - penalty).sum(), losses

        grads, losses = jax.grad(negative_total, has_aux=True)(param)
        updates, opt_state = style.optimizer.update(grads, opt_state, param)
        param = optax.apply_updates(param, updates)
        if style.blur_every:
            blur = lambda p: style.parameterization.from_input(  # noqa: E731
                gaussian_blur(to_input(p), style.blur_sigma)
            )
            param = jax.lax.cond((i + 1) % style.blur_every == 0, blur, lambda p: p, param)
        return (param, opt_state), losses

    return step


@dataclass
class Ascent:
    """Compiled ascents for one batch shape: run(params, targets, keys) -> result."""

    run: Callable
    compile_seconds: float
    loop: str
    memory_bytes: int  # the largest compiled program's peak device memory, by XLA's analysis


def peak_bytes(compiled) -> int:
    """Device memory a compiled program needs at its peak (arguments, outputs, temporaries)."""
    try:
        stats = compiled.memory_analysis()
    except NotImplementedError:
        stats = None
    if stats is None:  # a backend without the analysis
        return 0
    peak = getattr(stats, "peak_memory_in_bytes", 0)
    sizes = ("argument", "output", "temp", "generated_code")
    return peak or sum(getattr(stats, f"{size}_size_in_bytes", 0) for size in sizes)


def compile_ascent(
    objective: Objective,
    style: Style,
    size: int,
    steps: int,
    loop: str,
    params,
    targets: jax.Array,
    keys: jax.Array,
    features: Callable | None = None,
) -> Ascent:
    """Compile every octave's ascent for batches shaped like `targets`.

    run() returns (final network-input images, loss per image at the start, loss at the end);
    the losses are the objective on the untransformed image.
    """
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, not {loop!r}")
    donate = (1,)  # the image state: its buffers are reused for the next step's
    step = make_step(objective, style, features)
    par = style.parameterization
    start = time.perf_counter()
    plan = style.octave_plan(size, steps)

    def fresh(param):
        return (param, style.optimizer.init(param))

    # compiled ahead of time on concrete examples, so the programs take the inputs' shardings
    init = jax.jit(lambda keys: par.init(keys, plan[0][0])).lower(keys).compile()
    param = init(keys)
    stages, programs = [], []
    for octave, (_, octave_steps) in enumerate(plan):
        begin = jax.jit(fresh).lower(param).compile()
        if loop == "python":
            one = jax.jit(step, donate_argnums=donate)
            one = one.lower(params, begin(param), targets, keys, 0).compile()
            programs.append(one)

            def run_octave(params, param, targets, keys, one=one, begin=begin, n=octave_steps):
                state, first = one(params, begin(param), targets, keys, 0)
                for i in range(1, n):
                    state, _ = one(params, state, targets, keys, i)
                return state[0], first

        else:

            def all_steps(params, param, targets, keys, n=octave_steps):
                state, first = step(params, fresh(param), targets, keys, 0)
                body = lambda i, s: step(params, s, targets, keys, i)[0]  # noqa: E731
                state = jax.lax.fori_loop(1, n, body, state)
                return state[0], first

            run_octave = jax.jit(all_steps, donate_argnums=donate)
            run_octave = run_octave.lower(params, param, targets, keys).compile()
            programs.append(run_octave)
        resize = None
        if octave + 1 < len(plan):
            next_size = plan[octave + 1][0]

            def grow(param, next_size=next_size):
                images = par.to_input(param)
                shape = (images.shape[0], next_size, next_size, 3)
                return par.from_input(jax.image.resize(images, shape, "linear"))

            resize = jax.jit(grow).lower(param).compile()
            param = resize(param)
        stages.append((run_octave, resize))
    final_images = jax.jit(par.to_input).lower(param).compile()
    final_loss = jax.jit(objective).lower(params, final_images(param), targets).compile()
    compile_seconds = time.perf_counter() - start

    def run(params, targets, keys):
        param, first = init(keys), None
        for run_octave, resize in stages:
            param, losses = run_octave(params, param, targets, keys)
            first = losses if first is None else first
            if resize is not None:
                param = resize(param)
        images = final_images(param)
        return images, first, final_loss(params, images, targets)

    return Ascent(run, compile_seconds, loop, max(map(peak_bytes, programs)))
