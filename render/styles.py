"""Styles: a named choice of parameterization, transforms, update rule and regularizers.

A style is plain data built from the `style` config group; every option is a config key, and
any style can switch any option on.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from render.models.network import CONVENTIONS, Convention
from render.parameterizations import FourierColor, Maco, Pixels
from render.transforms import RandomAffine, RandomCrops


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
    "nadam": optax.nadam,  # Adam with Nesterov momentum (MACO's optimizer)
}
LR_SCHEDULES = ("constant", "cosine", "linear")


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
    transform: RandomAffine | RandomCrops | None
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
    transparency: bool = False  # accumulate |d objective / d image| per image (MACO's alpha)
    lr_schedule: str = "constant"  # constant, cosine or linear decay over each octave's steps
    lr_final: float = 0.0  # the decay's last multiple of step_size

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
    elif cfg["parameterization"] == "maco":
        spectrum = cfg.get("spectrum")
        parameterization = Maco(None if spectrum in (None, "shipped") else spectrum, convention)
    else:
        parameterization = FourierColor(
            cfg.get("decay", 1.0), cfg.get("init_std", 0.01), convention
        )
    transform = None
    if cfg.get("transforms"):
        t = cfg["transforms"]
        transform = RandomAffine(t["pad"], t["jitter"], t["scale"], t["rotate"], convention)
    if cfg.get("crops"):
        transform = RandomCrops(
            crops=cfg["crops"],
            crop_max=cfg.get("crop_max", 1.0),
            crop_min=cfg.get("crop_min", 0.5),
            noise=cfg.get("crop_noise", 0.08),
            convention=convention,
        )
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
        transparency=bool(cfg.get("transparency", False)),
        lr_schedule=cfg.get("lr_schedule", "constant"),
        lr_final=cfg.get("lr_final", 0.0),
    )


def check_style(cfg: dict, size: int, min_size: int) -> str | None:
    """What is wrong with a style node (one line naming the key and the fix), or None."""
    choices = {
        "parameterization": ("pixels", "fourier", "maco"),
        "optimizer": tuple(OPTIMIZERS),
        "display": ("2016", "direct"),
        "lr_schedule": LR_SCHEDULES,
    }
    defaults = {"lr_schedule": "constant"}
    for key, allowed in choices.items():
        value = cfg.get(key, defaults.get(key))
        if str(value) not in allowed:
            return f"style.{key}={value} is invalid: use {', '.join(allowed[:-1])} or {allowed[-1]}"
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
        "lr_final": (0.0, 1.0),
        "crops": (0, 256),
        "crop_max": (0.05, 1.0),
        "crop_min": (0.05, 1.0),
        "crop_noise": (0.0, 10.0),
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
    if not isinstance(cfg.get("transparency", False), bool):
        return f"style.transparency={cfg.get('transparency')} is invalid: use true or false"
    if cfg.get("crops", 0) and cfg.get("transforms"):
        return "style.crops and style.transforms are two kinds of views: set one of them to null/0"
    if cfg.get("crops", 0) > 1 and cfg.get("diversity", 1) > 1:
        return "style.diversity compares one view per image: use style.crops=1 with it"
    if cfg.get("crop_min", 0.5) > cfg.get("crop_max", 1.0):
        return "style.crop_min is larger than style.crop_max: crops shrink over the run"
    if cfg.get("parameterization") == "maco":
        if cfg.get("octaves", 1) != 1 or cfg.get("blur_every", 0):
            return (
                "parameterization maco keeps its magnitude fixed, so it cannot take an image "
                "back (octaves, blur): use style.octaves=1 and style.blur_every=0"
            )
        from render.spectrum import check_spectrum

        problem = check_spectrum(cfg.get("spectrum"))
        if problem:
            return problem
    smallest = round(size / cfg.get("octave_scale", 1.5) ** (cfg.get("octaves", 1) - 1))
    if smallest < min_size:
        return (
            f"the smallest octave ({smallest} px) leaves no spatial map at this layer: use fewer "
            f"style.octaves or size>={min_size}"
        )
    return None
