"""Styles: a named choice of parameterization, transforms, update rule and regularizers.

A style is plain data built from the `style` config group; every option is a config key, and
any style can switch any option on. Each option's type, range and the value it takes when a
style's YAML leaves it out are in the settings table (render/schema.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from render import schema
from render.models.network import CONVENTIONS, Convention
from render.parameterizations import FourierColor, Maco, Pixels
from render.transforms import RandomAffine, RandomCrops, RandomRoll


def normalize_by_rms(eps: float = 1e-5) -> optax.GradientTransformation:
    """Divide each image's gradient by its RMS: g / (sqrt(mean(g^2)) + eps), as in 2016."""

    def update(updates, state, params=None):
        def per_image(g):
            axes = tuple(range(1, g.ndim))
            return g / (jnp.sqrt(jnp.mean(jnp.square(g), axis=axes, keepdims=True)) + eps)

        return jax.tree.map(per_image, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def normalize_by_mean_abs(eps: float = 1e-7) -> optax.GradientTransformation:
    """Divide each image's gradient by its mean absolute value: g / max(mean(|g|), eps), as
    the Keras deep dream example (2016) does."""

    def update(updates, state, params=None):
        def per_image(g):
            axes = tuple(range(1, g.ndim))
            return g / jnp.maximum(jnp.mean(jnp.abs(g), axis=axes, keepdims=True), eps)

        return jax.tree.map(per_image, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


OPTIMIZERS = {
    "normalized_sgd": lambda lr: optax.chain(normalize_by_rms(), optax.sgd(lr)),
    "normalized_by_mean_abs": lambda lr: optax.chain(normalize_by_mean_abs(), optax.sgd(lr)),
    "adam": optax.adam,
    "nadam": optax.nadam,  # Adam with Nesterov momentum (MACO's optimizer)
}
LR_SCHEDULES = schema.choices("style.lr_schedule")  # constant, cosine, linear
UNSET = schema.filled({}, "style")  # each option as a style that leaves it out has it


def lr_factor(schedule: str, fraction, final: float = 0.0):
    """The learning rate's multiple at run progress `fraction` (0 first step, 1 last): 1, or a
    cosine or linear decay from 1 to `final`. Every update rule here (normalized SGD, Adam,
    NAdam) is linear in its learning rate, so scaling the update is scaling the rate."""
    if schedule == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))
    if schedule == "linear":
        return 1.0 - (1.0 - final) * fraction
    return 1.0


def transparency_map(accumulated: np.ndarray) -> np.ndarray:
    """(H, W) uint8 0-255 of an accumulated |d objective / d image| map (MACO's transparency):
    min-max normalized per image (all 0 when the map is flat)."""
    a = np.asarray(accumulated, np.float64)
    span = a.max() - a.min()
    if not np.isfinite(span) or span <= 0:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - a.min()) / span * 255.0).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class Style:
    name: str
    parameterization: Pixels | FourierColor | Maco
    transform: RandomAffine | RandomCrops | RandomRoll | None
    optimizer: optax.GradientTransformation
    display: str  # "2016" (center, std 0.1, clip) or "direct" (the image as it is)
    tv_weight: float = UNSET["tv_weight"]
    l2_weight: float = UNSET["l2_weight"]
    blur_every: int = UNSET["blur_every"]
    blur_sigma: float = UNSET["blur_sigma"]
    redirect_steps: int = UNSET["redirect_steps"]
    octaves: int = UNSET["octaves"]
    octave_scale: float = UNSET["octave_scale"]
    diversity: int = UNSET["diversity"]  # images per filter, pushed apart by their similarity
    diversity_weight: float = UNSET["diversity_weight"]
    transparency: bool = UNSET["transparency"]  # accumulate |d objective / d image| (MACO)
    lr_schedule: str = UNSET["lr_schedule"]  # constant, cosine or linear, over each octave
    lr_final: float = UNSET["lr_final"]  # the decay's last multiple of step_size

    def octave_plan(self, size: int, steps: int) -> list[tuple[int, int]]:
        """(size, steps) of each octave, smallest first; the last is the requested size."""
        sizes = [round(size / self.octave_scale**i) for i in reversed(range(self.octaves))]
        counts = [steps // self.octaves] * self.octaves
        counts[-1] += steps - sum(counts)
        return list(zip(sizes, counts, strict=True))


def build_style(
    cfg: dict, step_size: float, convention: Convention = CONVENTIONS["caffe"]
) -> Style:
    """The Style named by a `style` config node (see conf/style/*.yaml), for a network whose
    input follows `convention`. Options the node leaves out take their `unset` value."""
    o = schema.filled(cfg, "style")
    if o["parameterization"] == "pixels":
        parameterization = Pixels(o["gray"], o["noise"], convention)
    elif o["parameterization"] == "maco":
        spectrum = o["spectrum"]
        parameterization = Maco(None if spectrum in (None, "shipped") else spectrum, convention)
    else:
        parameterization = FourierColor(o["decay"], o["init_std"], convention)
    transform = None
    if o["transforms"]:
        t = o["transforms"]
        transform = RandomAffine(t["pad"], t["jitter"], t["scale"], t["rotate"], convention)
    if o["crops"]:
        transform = RandomCrops(
            crops=o["crops"],
            crop_max=o["crop_max"],
            crop_min=o["crop_min"],
            noise=o["crop_noise"],
            convention=convention,
        )
    return Style(
        name=o["name"],
        parameterization=parameterization,
        transform=transform,
        optimizer=OPTIMIZERS[o["optimizer"]](step_size),
        display=o["display"],
        tv_weight=o["tv_weight"],
        l2_weight=o["l2_weight"],
        blur_every=o["blur_every"],
        blur_sigma=o["blur_sigma"],
        redirect_steps=o["redirect_steps"],
        octaves=o["octaves"],
        octave_scale=o["octave_scale"],
        diversity=o["diversity"],
        diversity_weight=o["diversity_weight"],
        transparency=bool(o["transparency"]),
        lr_schedule=o["lr_schedule"],
        lr_final=o["lr_final"],
    )


def check_style(cfg: dict, size: int, min_size: int) -> str | None:
    """What is wrong with a style node (one line naming the key and the fix), or None: each
    option against the settings table, then the rules between options and the image size."""
    problem = schema.first_problem(cfg, "style.")
    if problem:
        return problem
    o = schema.filled(cfg, "style")
    if o["crops"] and o["transforms"]:
        return "style.crops and style.transforms are two kinds of views: set one of them to null/0"
    if o["crops"] > 1 and o["diversity"] > 1:
        return "style.diversity compares one view per image: use style.crops=1 with it"
    if o["crop_min"] > o["crop_max"]:
        return "style.crop_min is larger than style.crop_max: crops shrink over the run"
    if o["parameterization"] == "maco":
        if o["octaves"] != 1 or o["blur_every"]:
            return (
                "parameterization maco keeps its magnitude fixed, so it cannot take an image "
                "back (octaves, blur): use style.octaves=1 and style.blur_every=0"
            )
        from render.spectrum import check_spectrum

        problem = check_spectrum(o["spectrum"])
        if problem:
            return problem
    smallest = round(size / o["octave_scale"] ** (o["octaves"] - 1))
    if smallest < min_size:
        return (
            f"the smallest octave ({smallest} px) leaves no spatial map at this layer: use fewer "
            f"style.octaves or size>={min_size}"
        )
    return None
