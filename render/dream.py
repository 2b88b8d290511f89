"""Deep dream on photos: amplify what chosen layers (or filters) of a network see in a photo.

The recipe of the Keras example deep_dream.py (2016), run by the one compiled engine of every
render (render.ascent.compile_ascent): the photo in the network's input space (a Pixels
parameterization starting from it), ascended at successive octaves from the smallest shape
(original / octave_scale**i) up to the original size; each step follows the gradient
normalized by its mean absolute value (styles.OPTIMIZERS["normalized_by_mean_abs"]), an
optional jitter rolls the photo by a random whole number of pixels (transforms.RandomRoll),
an octave stops early once the loss exceeds `max_loss`, and between octaves the dreamed image
is upscaled and the detail lost by downscaling the photo is injected back. A dream is a batch
of one photo, at its own height and width.

The objective (render.algebra) is, summed over the chosen layers, weight * layer_l2(layer), the
mean square of the post-ReLU activation, or weight * the mean of channel_l2 over the chosen
filters. The network runs only up to the deepest chosen layer, once per step for all layers.
The engine is compiled once per octave shape and reused across octaves and photos of that
shape.

`step_size` is in the Keras example's units, where the image spans [-1, 1]: a step moves an
average pixel by step_size * 127.5 levels of 0-255 (0.01 -> about 1.3 levels).

Defaults were tuned by eye on real ImageNet weights (a 300x200 cat photo). The example's step
of 0.01 saturates VGG16 dreams into neon, 0.0025 keeps the photo recognizable. The loss has no
ceiling by default: in caffe space VGG16's mean squared activations on a photo are already
1e3-1e5 before any step (it depends on the layer), so the example's max_loss of 10 would stop
every octave at once; pass a ceiling suited to your layers (dream() reports the losses).
"""

from __future__ import annotations

import functools
import glob
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from render import algebra
from render.ascent import Ascent, compile_ascent, image_keys
from render.batching import default_loop
from render.display import to_uint8
from render.errors import UserError
from render.models.network import Layer, Network, UnknownLayerError, conv_layer
from render.parameterizations import Pixels
from render.styles import OPTIMIZERS, Style
from render.transforms import RandomRoll

log = logging.getLogger("render")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PIXEL_SCALE = 127.5  # pixel levels per unit of step_size (the Keras example's [-1, 1])
SEED = 0  # of the jitter's rolls: every photo and octave draws its own from (SEED, octave)
CACHED_ASCENTS = 16  # compiled ascents kept (one per octave shape and step count)
# VGG16's counterpart of the Keras example's "mixed" layers: eyes and swirls, photo still clear
DEFAULT_LAYERS = {"block4_conv1": 1.0, "block3_conv3": 0.5}


@dataclass(frozen=True)
class DreamSettings:
    """What to amplify and how hard; see the module docstring for the recipe."""

    layers: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LAYERS))
    filters: dict[str, list[int]] | None = None  # layer -> filters maximized instead of it all
    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 20  # per octave
    step_size: float = 0.0025  # Keras units (x127.5 levels); the example's 0.01 is garish here
    max_loss: float | None = None  # an octave stops once the loss exceeds this (None: never)
    jitter: int = 0  # random shift of up to this many pixels per step (0: none)


# (layer name, weight, filters or None): the objective in a hashable form, for jit caching
Term = tuple[str, float, tuple[int, ...] | None]


def objective_terms(settings: DreamSettings, network: Network) -> tuple[Term, ...]:
    """Resolve layer names and aliases, check weights and filters; ordered by depth.

    A layer named only in `filters` gets weight 1.0. Raises UserError on bad input.
    """
    weights: dict[str, float] = {}
    chosen: dict[str, tuple[int, ...]] = {}
    for source, items in (("layers", settings.layers), ("filters", settings.filters or {})):
        for name, value in items.items():
            layer = _conv_layer(network, name)
            if source == "layers":
                if layer.name in weights:
                    raise UserError(f"layer {layer.name} is given twice in layers: keep one")
                try:
                    weights[layer.name] = float(value)
                except (TypeError, ValueError):
                    raise UserError(
                        f"the weight of layer {name} must be a number, not {value!r}"
                    ) from None
            else:
                if layer.name in chosen:
                    raise UserError(f"layer {layer.name} is given twice in filters: keep one")
                chosen[layer.name] = _check_filters(layer, value)
    if not weights and not chosen:
        raise UserError("no layer to dream with: set layers, e.g. {block5_conv1: 1.0}")
    index = {layer.name: layer.index for layer in network.layers}
    names = sorted(set(weights) | set(chosen), key=index.__getitem__)
    return tuple((n, weights.get(n, 1.0), chosen.get(n)) for n in names)


def _conv_layer(network: Network, name: str) -> Layer:
    try:
        return conv_layer(network.layers, name, "deep dream")
    except UnknownLayerError as err:
        raise UserError(str(err)) from None


def _check_filters(layer: Layer, value) -> tuple[int, ...]:
    width = layer.channels
    values = [value] if isinstance(value, int) else list(value or [])
    if not values:
        raise UserError(f"filters of {layer.name} is empty: list filter numbers, e.g. [12, 40]")
    try:
        filters = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise UserError(f"filters of {layer.name} must be integers, not {value!r}") from None
    bad = [f for f in filters if not 0 <= f < width]
    if bad:
        raise UserError(
            f"filter {bad[0]} is out of range for {layer.name}: it has filters 0..{width - 1}"
        )
    return filters


def deepest_stride(settings: DreamSettings, network: Network) -> int:
    strides = {layer.name: layer.stride for layer in network.layers}
    return max(strides[name] for name, _, _ in objective_terms(settings, network))


def octave_shapes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """The ascent shapes, smallest first, ending at (height, width) (Keras: int(dim / s**i))."""
    return [
        (int(height / scale**i), int(width / scale**i)) if i else (height, width)
        for i in reversed(range(octaves))
    ]


def minimum_side(settings: DreamSettings, network: Network) -> int:
    """The smallest photo side whose smallest octave still gives a 1x1 deepest map."""
    stride = deepest_stride(settings, network)
    shrink = settings.octave_scale ** (settings.octaves - 1)
    side = max(stride, math.floor(stride * shrink))
    while int(side / shrink) < stride and settings.octaves > 1:
        side += 1
    return side


def check_settings(settings: DreamSettings) -> None:
    if not isinstance(settings.octaves, int) or settings.octaves < 1:
        raise UserError(f"octaves must be a whole number >= 1, not {settings.octaves!r}")
    if not _number(settings.octave_scale) or not settings.octave_scale > 1.0:
        raise UserError(f"octave_scale must be > 1 (e.g. 1.4), not {settings.octave_scale!r}")
    if not isinstance(settings.steps, int) or settings.steps < 0:
        raise UserError(f"steps must be a whole number >= 0, not {settings.steps!r}")
    if not isinstance(settings.jitter, int) or settings.jitter < 0:
        raise UserError(f"jitter must be a whole number of pixels >= 0, not {settings.jitter!r}")
    if not _number(settings.step_size) or not settings.step_size > 0:
        raise UserError(f"step_size must be a number > 0 (e.g. 0.0025), not {settings.step_size!r}")
    if settings.max_loss is not None and not _number(settings.max_loss):
        raise UserError(f"max_loss must be a number or null, not {settings.max_loss!r}")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_photo_size(
    height: int, width: int, settings: DreamSettings, name: str, network: Network
) -> None:
    """UserError when the smallest octave would leave no map at the deepest chosen layer."""
    need = minimum_side(settings, network)
    if min(height, width) < need:
        raise UserError(
            f"{name} is too small ({width}x{height}): with these layers and "
            f"{settings.octaves} octaves each side needs at least {need} px; use a larger "
            "photo, fewer octaves or shallower layers"
        )


# ---- the recipe, on the engine ---------------------------------------------------------------


def dream_objective_of(terms: tuple[Term, ...]) -> algebra.Objective:
    """The dream loss as a render.algebra objective: weight * layer_l2 per layer, or for
    chosen filters weight * their mean channel_l2 (the mean square over those channels)."""
    parts = []
    for name, weight, filters in terms:
        if filters is None:
            parts.append(algebra.layer_l2(name) * weight)
        else:
            share = weight / len(filters)
            parts += [algebra.channel_l2(name, k) * share for k in filters]
    return sum(parts)


def dream_style(settings: DreamSettings, network: Network) -> Style:
    """The engine's style of a dream: pixels in the network's input space (started from the
    photo), optionally rolled by up to `jitter` pixels per step, each step the gradient over
    its mean absolute value times step_size * 127.5 pixel levels; no penalty, shown as is."""
    convention = network.convention
    return Style(
        name="dream",
        parameterization=Pixels(convention=convention),
        transform=RandomRoll(settings.jitter) if settings.jitter else None,
        optimizer=OPTIMIZERS["normalized_by_mean_abs"](settings.step_size * PIXEL_SCALE),
        display="direct",
    )


@functools.lru_cache(maxsize=32)
def _loss(network: Network, terms: tuple[Term, ...]):
    """jitted (params, images (B, H, W, 3)) -> the dream loss per image; one per shape."""
    objective = dream_objective_of(terms)
    return jax.jit(lambda params, images: algebra.evaluate(network, params, objective, images))


_ascents: dict[tuple, Ascent] = {}


def _ascent(params, network, terms, settings, loop, start, steps, keys) -> Ascent:
    """The engine compiled for one octave shape and step count (cached: photos and octaves
    of one shape share it; run(start=...) takes each one's image)."""
    shape = tuple(start.shape[1:3])
    cache_key = (network, terms, settings.step_size, settings.jitter, shape, steps, loop)
    if cache_key not in _ascents:
        if len(_ascents) >= CACHED_ASCENTS:
            _ascents.pop(next(iter(_ascents)))
        loss = algebra.as_loss(dream_objective_of(terms), network)
        style = dream_style(settings, network)
        targets = jnp.zeros(1, jnp.int32)
        ascent = compile_ascent(loss, style, shape, steps, loop, params, targets, keys, start=start)
        log.debug(
            "dream: %dx%d, %d steps, compiled in %.1f s", *shape, steps, ascent.compile_seconds
        )
        _ascents[cache_key] = ascent
    return _ascents[cache_key]


def _octave(params, network, terms, settings, loop, image, keys):
    """One octave's ascent of `image` (H, W, 3): (image, start loss, end loss, steps taken)."""
    targets = jnp.zeros(1, jnp.int32)
    start = image[None]
    if settings.steps == 0:
        value = float(_loss(network, terms)(params, start)[0])
        return image, value, value, 0
    if settings.max_loss is None:  # every step in one run of the engine
        ascent = _ascent(params, network, terms, settings, loop, start, settings.steps, keys)
        images, first, last = ascent.run(params, targets, keys, start=start)
        return images[0], float(first[0]), float(last[0]), settings.steps
    # a ceiling: one step per run, checked in between; a step that would start above the
    # ceiling is not taken (the Keras example's order), so the octave ends on the image that
    # first exceeded it
    ascent = _ascent(params, network, terms, settings, loop, start, 1, keys)
    begin = end = None
    for i in range(settings.steps):
        step_keys = jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys)
        images, first, last = ascent.run(params, targets, step_keys, start=start)
        value = float(first[0])
        begin = value if begin is None else begin
        if value > settings.max_loss:
            return start[0], begin, value, i
        start, end = images, float(last[0])
    return start[0], begin, end, settings.steps


def _resize(image: jax.Array, shape: tuple[int, int]) -> jax.Array:
    if image.shape[:2] == shape:
        return image
    return _resize_jit(image, shape)


@functools.partial(jax.jit, static_argnames="shape")
def _resize_jit(image: jax.Array, shape: tuple[int, int]) -> jax.Array:
    return jax.image.resize(image, shape + image.shape[2:], method="linear")


def _as_rgb(photo: np.ndarray) -> np.ndarray:
    photo = np.asarray(photo)
    if photo.ndim == 2:
        photo = np.stack([photo] * 3, axis=-1)
    if photo.ndim != 3 or photo.shape[-1] not in (3, 4):
        raise UserError(f"expected an RGB photo shaped (H, W, 3), got shape {photo.shape}")
    return photo[..., :3].astype(np.float32)


def dream_objective(
    params, network: Network, photo_rgb: np.ndarray, settings: DreamSettings
) -> float:
    """The dream loss of an RGB 0-255 photo at its own size (what dream() raises)."""
    terms = objective_terms(settings, network)
    image = network.convention.to_input(jnp.asarray(_as_rgb(photo_rgb)))
    return float(_loss(network, terms)(params, image[None])[0])


def dream(
    params, network: Network, photo_rgb: np.ndarray, settings: DreamSettings, loop: str = "auto"
) -> tuple[np.ndarray, dict[str, list]]:
    """Dream on an (H, W, 3) RGB photo (uint8 or float in 0-255).

    Returns the dreamed photo (uint8 RGB, same H x W) and the losses: per octave, smallest
    first, "shape" (H, W), "start" and "end" loss and the "steps" taken. `loop`: where the
    engine's step loop runs (auto, python or device; see render.ascent).
    """
    check_settings(settings)
    terms = objective_terms(settings, network)
    rgb = _as_rgb(photo_rgb)
    height, width = rgb.shape[:2]
    check_photo_size(height, width, settings, "the photo", network)
    loop = default_loop(jax.default_backend()) if loop == "auto" else loop
    targets = jnp.zeros(1, jnp.int32)

    original = network.convention.to_input(jnp.asarray(rgb))
    shapes = octave_shapes(height, width, settings.octaves, settings.octave_scale)
    shrunk_original = _resize(original, shapes[0])
    image = shrunk_original
    losses: dict[str, list] = {"shape": [], "start": [], "end": [], "steps": []}
    for octave, shape in enumerate(shapes):
        image = _resize(image, shape)
        keys = image_keys(SEED, octave, targets)
        image, start, end, taken = _octave(params, network, terms, settings, loop, image, keys)
        # re-inject the detail that downscaling the photo lost (the Keras example's order)
        same_size_original = _resize(original, shape)
        image = image + same_size_original - _resize(shrunk_original, shape)
        shrunk_original = same_size_original
        losses["shape"].append(shape)
        losses["start"].append(start)
        losses["end"].append(end)
        losses["steps"].append(taken)
    return to_uint8(np.asarray(image), "direct", network.convention), losses


# ---- files ---------------------------------------------------------------------------------


def read_photo(
    path: str,
    settings: DreamSettings | None = None,
    max_side: int | None = None,
    network: Network | None = None,
) -> np.ndarray:
    """An (H, W, 3) uint8 RGB photo, EXIF-rotated; shrunk to max_side if given.

    With settings and network, a photo too small for its layers and octaves is a UserError.
    """
    if not os.path.exists(path):
        raise UserError(f"photo not found: {path}: check the path")
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder, not a photo: pass the folder as the input instead")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if max_side and max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            photo = np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image: pass a JPEG, PNG, BMP or WebP photo") from None
    except (OSError, SyntaxError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise UserError(
            f"cannot read photo {path} ({reason}): check that it is a complete, readable image"
        ) from None
    if settings is not None and network is not None:
        check_photo_size(photo.shape[0], photo.shape[1], settings, path, network)
    return photo


def expand_inputs(spec: str) -> list[str]:
    """A file, a folder (its photos, sorted, not recursive) or a glob pattern -> paths."""
    if os.path.isfile(spec):
        return [spec]
    if os.path.isdir(spec):
        found = sorted(
            os.path.join(spec, name)
            for name in os.listdir(spec)
            if name.lower().endswith(PHOTO_EXTENSIONS) and os.path.isfile(os.path.join(spec, name))
        )
        if not found:
            kinds = "/".join(PHOTO_EXTENSIONS)
            raise UserError(f"folder {spec} has no photos ({kinds}): pass another folder")
        return found
    if glob.has_magic(spec):
        found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not found:
            raise UserError(f"no file matches {spec}: check the pattern")
        return found
    raise UserError(f"no such file or folder: {spec}: check the path")


def output_names(paths: Sequence[str], taken: Sequence[str] = ()) -> list[str]:
    """`<stem>_dream.png` per input; a repeated stem (or a name in `taken`) gets _2, _3...
    in input order."""
    names, used = [], set(taken)
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        name, k = f"{stem}_dream.png", 2
        while name in used:
            name, k = f"{stem}_{k}_dream.png", k + 1
        used.add(name)
        names.append(name)
    return names
