"""Styles: a named choice of parameterization, transforms, update rule and regularizers.

A style is plain data built from the `style` config group; every option is a config key, and
any style can switch any option on.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from render.models.network import CONVENTIONS, Convention
from render.parameterizations import FourierColor, Pixels
from render.transforms import RandomAffine


def normalize_by_rms(eps: float = 1e-5) -> optax.GradientTransformation:
    """Divide each image's gradient by its RMS: g / (sqrt(mean(g^2)) + eps), as in 2016."""

    def update(updates, state, params=None):
        def per_image(g):
            axes = tuple(range(1, g.ndim))
            return g / (jnp.sqrt(jnp.mean(jnp.square(g), axis=axes, keepdims=True)) + eps)

        return jax.tree.map(per_image, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


OPTIMIZERS = {
    "normalized_sgd": lambda lr: optax.chain(normalize_by_rms(), optax.sgd(lr)),
    "adam": optax.adam,
}


@dataclass(frozen=True, eq=False)
class Style:
    name: str
    parameterization: Pixels | FourierColor
    transform: RandomAffine | None
    optimizer: optax.GradientTransformation
    display: str  # "2016" (center, std 0.1, clip) or "direct" (the image as it is)
    tv_weight: float = 0.0
    l2_weight: float = 0.0
    blur_every: int = 0
    blur_sigma: float = 0.5
    redirect_steps: int = 0
    octaves: int = 1
    octave_scale: float = 1.5
    diversity: int = 1  # images per filter, pushed apart by their feature similarity
    diversity_weight: float = 100.0

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
    input follows `convention`."""
    if cfg["parameterization"] == "pixels":
        parameterization = Pixels(cfg.get("gray", 128.0), cfg.get("noise", 20.0), convention)
    else:
        parameterization = FourierColor(
            cfg.get("decay", 1.0), cfg.get("init_std", 0.01), convention
        )
    transform = None
    if cfg.get("transforms"):
        t = cfg["transforms"]
        transform = RandomAffine(t["pad"], t["jitter"], t["scale"], t["rotate"], convention)
    return Style(
        name=cfg["name"],
        parameterization=parameterization,
        transform=transform,
        optimizer=OPTIMIZERS[cfg["optimizer"]](step_size),
        display=cfg.get("display", "2016"),
        tv_weight=cfg.get("tv_weight", 0.0),
        l2_weight=cfg.get("l2_weight", 0.0),
        blur_every=cfg.get("blur_every", 0),
        blur_sigma=cfg.get("blur_sigma", 0.5),
        redirect_steps=cfg.get("redirect_steps", 0),
        octaves=cfg.get("octaves", 1),
        octave_scale=cfg.get("octave_scale", 1.5),
        diversity=cfg.get("diversity", 1),
        diversity_weight=cfg.get("diversity_weight", 100.0),
    )


def check_style(cfg: dict, size: int, min_size: int) -> str | None:
    """What is wrong with a style node (one line naming the key and the fix), or None."""
    choices = {
        "parameterization": ("pixels", "fourier"),
        "optimizer": tuple(OPTIMIZERS),
        "display": ("2016", "direct"),
    }
    for key, allowed in choices.items():
        if str(cfg.get(key)) not in allowed:
            return f"style.{key}={cfg.get(key)} is invalid: use {' or '.join(allowed)}"
    ranges = {
        "octaves": (1, 8),
        "octave_scale": (1.0, 4.0),
        "blur_every": (0, 10**6),
        "blur_sigma": (0.1, 10.0),
        "redirect_steps": (0, 10**6),
        "tv_weight": (0.0, 1e6),
        "diversity": (1, 64),
        "diversity_weight": (0.0, 1e6),
        "l2_weight": (0.0, 1e6),
    }
    transforms = cfg.get("transforms") or {}
    limits = {"pad": (0, 256), "jitter": (0, 256), "scale": (0.0, 0.9), "rotate": (0.0, 180.0)}
    checks = [(f"style.{k}", cfg.get(k, low), low, high) for k, (low, high) in ranges.items()]
    checks += [
        (f"style.transforms.{k}", transforms.get(k, low), low, high)
        for k, (low, high) in limits.items()
    ]
    for name, value, low, high in checks:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            return f"{name}={value} is invalid: use a number from {low} to {high}"
    smallest = round(size / cfg.get("octave_scale", 1.5) ** (cfg.get("octaves", 1) - 1))
    if smallest < min_size:
        return (
            f"the smallest octave ({smallest} px) leaves no spatial map at this layer: use fewer "
            f"style.octaves or size>={min_size}"
        )
    return None
