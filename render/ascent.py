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
from render.styles import Style, lr_factor

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


def make_step(
    objective: Objective,
    style: Style,
    features: Callable | None = None,
    penalty: Callable | None = None,
    steps: int = 1,
) -> Callable:
    """step(params, (param, opt_state), targets, keys, i) -> (new state, loss per image).

    `features(params, images)` feeds the diversity penalty when style.diversity > 1;
    `penalty(images)` (B,), on the untransformed images, is subtracted from the objective.
    `steps` is the length of this ascent: the transform and the learning-rate schedule see the
    progress i / (steps - 1) (0 at the first step, 1 at the last). A transform may return
    several views per image (image-major): an image's loss is the mean over its views. With
    style.transparency the state carries a third element, |d total / d image| summed over
    channels and steps, (B, H, W).
    """
    to_input = style.parameterization.to_input

    def step(params, state, targets, keys, i):
        param, opt_state, *accumulated = state
        i = jnp.asarray(i)  # the device loop's first step passes a plain 0
        fraction = i / max(steps - 1, 1)

        def negative_total_of(images):
            view = images
            if style.transform is not None:
                step_keys = jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)
                view = style.transform(images, step_keys, fraction)
            views = view.shape[0] // images.shape[0]
            redirect = (
                (i < style.redirect_steps).astype(jnp.float32) if style.redirect_steps else None
            )
            if views == 1:
                losses = objective(params, view, targets, redirect)
            else:  # several views per image: each scored for its image's target, then averaged
                losses = objective(params, view, jnp.repeat(targets, views), redirect)
                losses = losses.reshape(-1, views).mean(axis=1)
            total_penalty = penalties(style, images)
            if penalty is not None:
                total_penalty = total_penalty + penalty(images)
            if style.diversity > 1:
                similarity = diversity_penalty(features(params, view), style.diversity)
                total_penalty = total_penalty + style.diversity_weight * similarity
            return -(losses - total_penalty).sum(), losses

        if style.transparency:  # the image's own gradient too: one backward pass, split
            images, pullback = jax.vjp(to_input, param)
            image_grads, losses = jax.grad(negative_total_of, has_aux=True)(images)
            (grads,) = pullback(image_grads)
            accumulated = [accumulated[0] + jnp.abs(image_grads).sum(axis=-1)]
        else:
            negative_total = lambda param: negative_total_of(to_input(param))  # noqa: E731
            grads, losses = jax.grad(negative_total, has_aux=True)(param)
        updates, opt_state = style.optimizer.update(grads, opt_state, param)
        if style.lr_schedule != "constant":
            factor = lr_factor(style.lr_schedule, fraction, style.lr_final)
            updates = jax.tree.map(lambda u: u * factor, updates)
        param = optax.apply_updates(param, updates)
        if style.blur_every:
            blur = lambda p: style.parameterization.from_input(  # noqa: E731
                gaussian_blur(to_input(p), style.blur_sigma)
            )
            param = jax.lax.cond((i + 1) % style.blur_every == 0, blur, lambda p: p, param)
        return (param, opt_state, *accumulated), losses

    return step


def resize_images(images: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """(B, H, W, 3) images bilinearly resized to `shape`; unchanged when already that shape."""
    if tuple(images.shape) == tuple(shape):
        return images
    return jax.image.resize(images, shape, "linear")


def anchor_penalty(photo: jax.Array, weight: float, convention) -> Callable:
    """penalty(images) (B,): weight * the mean square difference to `photo` (H, W, 3; network
    input, resized to the images' size) in 0-1 pixel units: what pulls an ascent that starts
    from a photo back towards it."""
    scale = 255.0 * jnp.asarray(convention.scale, jnp.float32)

    def penalty(images):
        anchor = resize_images(jnp.asarray(photo, jnp.float32)[None], (1, *images.shape[1:]))
        return weight * jnp.square((images - anchor) / scale).mean(axis=(1, 2, 3))

    return penalty


def octave_shapes(style: Style, size, steps: int) -> list[tuple[tuple[int, int], int]]:
    """((height, width), steps) of each octave, smallest first: style.octave_plan applied to
    each side of `size` (an int: a square; or (height, width))."""
    height, width = (size, size) if isinstance(size, int) else size
    rows, cols = style.octave_plan(height, steps), style.octave_plan(width, steps)
    return [((h, w), n) for (h, n), (w, _) in zip(rows, cols, strict=True)]


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
    size: int | tuple[int, int],
    steps: int,
    loop: str,
    params,
    targets: jax.Array,
    keys: jax.Array,
    features: Callable | None = None,
    start: jax.Array | None = None,
    penalty: Callable | None = None,
    compiler_options: dict | None = None,
) -> Ascent:
    """Compile every octave's ascent for batches shaped like `targets`.

    run() returns (final network-input images, loss per image at the start, loss at the end):
    both losses are the objective (without penalties) on the untransformed image at the final
    size, by the same compiled function; the start is the initial image, upscaled to the final
    size when octaves are used. `size` is a side, or (height, width) for images that are not
    square (those need `start`: the parameterizations draw square random starts). `start`
    (B, height, width, 3) network-input images replace the random start (resized to the first
    octave; the batch's keys still draw the transforms), and run(start=...) takes another
    start of the same shape through the same compiled programs; `penalty(images)` (B,) is
    subtracted from the objective at every step (see make_step). With style.transparency run()
    returns a fourth element: |d total / d image| per pixel, summed over channels and steps,
    (B, height, width) (MACO's transparency map). `compiler_options` go to XLA for every
    program (render/autotune.py's LIBRARIES).
    """
    options = compiler_options or None
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, not {loop!r}")
    donate = (1,)  # the image state: its buffers are reused for the next step's
    par = style.parameterization
    begun = time.perf_counter()
    plan = octave_shapes(style, size, steps)
    (first_h, first_w), (height, width) = plan[0][0], plan[-1][0]

    def fresh(param, carried=()):
        return (param, style.optimizer.init(param), *carried)

    # compiled ahead of time on concrete examples, so the programs take the inputs' shardings
    from_start = None
    if start is None:
        if first_h != first_w:
            raise ValueError(f"a {height}x{width} ascent needs start= images (not square)")
        init = jax.jit(lambda keys: par.init(keys, first_h)).lower(keys).compile(options)
    else:
        first_shape = (start.shape[0], first_h, first_w, 3)
        from_start = jax.jit(lambda start: par.from_input(resize_images(start, first_shape)))
        from_start = from_start.lower(start).compile(options)
        init = lambda keys, given=start: from_start(given)  # noqa: E731

    def initial_images(param):  # the start as the network sees it at the final size
        images = par.to_input(param)
        return resize_images(images, (images.shape[0], height, width, 3))

    param = init(keys)
    start_images = jax.jit(initial_images).lower(param).compile(options)
    # style.transparency: |d total / d image| per pixel, carried through the steps (and octaves)
    carried = (jnp.zeros((len(targets), first_h, first_w)),) if style.transparency else ()
    to_images = jax.jit(par.to_input)  # for run(observe=...): compiled on first use
    stages, programs = [], []
    for octave, (_, octave_steps) in enumerate(plan):
        step = make_step(objective, style, features, penalty, octave_steps)
        begin = jax.jit(fresh).lower(param, carried).compile(options)
        if loop == "python":
            one = jax.jit(step, donate_argnums=donate)
            one = one.lower(params, begin(param, carried), targets, keys, 0).compile(options)
            programs.append(one)

            def run_octave(
                params, param, targets, keys, carried, watch, one=one, begin=begin, n=octave_steps
            ):
                state, first = one(params, begin(param, carried), targets, keys, 0)
                watch(1, state[0])
                for i in range(1, n):
                    state, _ = one(params, state, targets, keys, i)
                    watch(i + 1, state[0])
                return state[0], first, state[2:]

        else:

            def all_steps(params, param, targets, keys, carried, n=octave_steps, step=step):
                state, first = step(params, fresh(param, carried), targets, keys, 0)
                body = lambda i, s: step(params, s, targets, keys, i)[0]  # noqa: E731
                state = jax.lax.fori_loop(1, n, body, state)
                return state[0], first, state[2:]

            device_octave = jax.jit(all_steps, donate_argnums=donate)
            device_octave = device_octave.lower(params, param, targets, keys, carried).compile(
                options
            )
            programs.append(device_octave)

            def run_octave(params, param, targets, keys, carried, watch, program=device_octave):
                return program(params, param, targets, keys, carried)

        resize = None
        if octave + 1 < len(plan):
            next_size = plan[octave + 1][0]

            def grow(param, next_size=next_size):
                images = par.to_input(param)
                shape = (images.shape[0], *next_size, 3)
                return par.from_input(jax.image.resize(images, shape, "linear"))

            resize = jax.jit(grow).lower(param).compile(options)
            param = resize(param)
            if carried:  # the accumulated map follows the image to the next size
                shape = (len(targets), *next_size)
                carried = (jax.image.resize(carried[0], shape, "linear"),)
        stages.append((run_octave, resize, octave_steps))
    final_images = jax.jit(par.to_input).lower(param).compile(options)
    final_loss = jax.jit(objective).lower(params, final_images(param), targets).compile(options)
    compile_seconds = time.perf_counter() - begun

    grow_map = jax.jit(
        lambda a, hw: jax.image.resize(a, (a.shape[0], *hw), "linear"), static_argnums=1
    )

    def run(params, targets, keys, observe: Callable | None = None, every: int = 1, start=None):
        """observe(steps done, network-input images) is called after every `every` steps and
        after the last (loop=python only): the run's own intermediate images. `start`: other
        start images shaped like the compiled ones (an ascent compiled with start= only)."""
        if observe is not None and loop != "python":
            raise ValueError("run(observe=...) needs loop='python'")
        if start is not None and from_start is None:
            raise ValueError("run(start=...) needs an ascent compiled with start=")
        param = init(keys) if start is None else init(keys, start)
        first = final_loss(params, start_images(param), targets)
        if loop == "device":  # its first program donates `param`: read it first
            first = jax.block_until_ready(first)
        carried = (jnp.zeros((len(targets), first_h, first_w)),) if style.transparency else ()
        done = 0
        for octave, (run_octave, resize, n) in enumerate(stages):

            def watch(count, param, done=done):
                if observe is not None and ((done + count) % every == 0 or done + count == steps):
                    observe(done + count, to_images(param))

            param, _, carried = run_octave(params, param, targets, keys, carried, watch)
            done += n
            if resize is not None:
                param = resize(param)
                carried = tuple(grow_map(a, plan[octave + 1][0]) for a in carried)
        images = final_images(param)
        result = (images, first, final_loss(params, images, targets))
        return (*result, carried[0]) if style.transparency else result

    return Ascent(run, compile_seconds, loop, max(map(peak_bytes, programs)))
