"""Per-filter quality, measured on the saved uint8 PNGs read back from disk.

For each rendered filter: its mean activation on its own image (`activation`); the highest
activation of that filter over a reference set of natural-photo crops (`natural_max`) and the
ratio of the two; and whether its image is the strongest stimulus for it among every image
rendered for the layer (`best_stimulus`). A ratio against gray noise would flatter filters that
are nearly silent on gray; natural crops are the yardstick a reader has in mind.

Robustness: the filter's mean activation over `ROBUSTNESS_VIEWS` random views of its image
(olah2017's jitter, scale and rotation ranges, the edge repeated outside, the same seeded views
for every image) relative to its activation on the image itself (`robustness`: 1 when the
pattern survives being moved, turned and rescaled), and that view activation's ratio to the
best natural crop (`ratio_to_natural_views`).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import io
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from render.classes import class_name
from render.errors import UserError
from render.files import read_png, write_atomic
from render.models.network import Network
from render.transforms import RandomAffine

log = logging.getLogger("render")
CROP = 128
SHIPPED_CROPS = os.path.join(os.path.dirname(__file__), "data", "reference_crops.jpg")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ROBUSTNESS_VIEWS = 4  # metrics.views: 8 halves the spread of the score at twice the cost
# olah2017's ranges (conf/style/olah2017.yaml), output the image's size: pad = jitter / 2
ROBUSTNESS_AFFINE = RandomAffine(pad=4, jitter=8, scale=0.1, rotate=10.0, fill="edge")


def _crops_of(photo: np.ndarray, short_sides=(160, 320)) -> list[np.ndarray]:
    """CROP-sized tiles of a photo resized to each short side: what a filter sees at 2 scales."""
    crops = []
    image = Image.fromarray(photo)
    for short in short_sides:
        scale = short / min(image.size)
        width, height = round(image.size[0] * scale), round(image.size[1] * scale)
        pixels = np.asarray(image.resize((width, height), Image.LANCZOS))
        for y in np.linspace(0, height - CROP, max(1, round(height / CROP))).astype(int):
            for x in np.linspace(0, width - CROP, max(1, round(width / CROP))).astype(int):
                crops.append(pixels[y : y + CROP, x : x + CROP])
    return crops


def reference_crops(folder: str | None = None) -> np.ndarray:
    """(N, 128, 128, 3) uint8 crops: the shipped set (public-domain and CC0 photos from
    scikit-image's sample data), or crops of every photo in `folder`."""
    if folder is None:
        sheet = np.asarray(Image.open(SHIPPED_CROPS).convert("RGB"))
        tiles = sheet.reshape(sheet.shape[0] // CROP, CROP, sheet.shape[1] // CROP, CROP, 3)
        tiles = tiles.transpose(0, 2, 1, 3, 4).reshape(-1, CROP, CROP, 3)
        return tiles[tiles.reshape(len(tiles), -1).max(axis=1) > 16]  # empty cells are black
    paths = sorted(
        p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(PHOTO_SUFFIXES)
    )
    crops = []
    for path in paths:
        try:
            with Image.open(path) as img:
                photo = np.asarray(img.convert("RGB"))
        except OSError:
            continue
        if min(photo.shape[:2]) >= 64:
            crops += _crops_of(photo)
    if not crops:
        raise UserError(f"no usable photo (64 px or more) in {folder}: check metrics.reference")
    return np.stack(crops)


def _chunked(fn, *arrays, chunk: int) -> np.ndarray:
    """fn over `arrays` in chunks of one shape (the last padded with copies of its last row),
    so one compiled program serves every chunk; rows concatenated, padding dropped."""
    rows, count = [], len(arrays[0])
    for first in range(0, count, chunk):
        parts = [np.asarray(a[first : first + chunk]) for a in arrays]
        short = chunk - len(parts[0])
        if short and count > chunk:
            parts = [np.concatenate([p, np.repeat(p[-1:], short, axis=0)]) for p in parts]
        values = fn(jnp.asarray(parts[0], jnp.float32), *map(jnp.asarray, parts[1:]))
        rows.append(np.asarray(values)[: chunk - short])
    return np.concatenate(rows)


def _options(compiler_options: dict | None) -> tuple:
    """Compiler options as a hashable key of the program caches below."""
    return tuple(sorted((compiler_options or {}).items()))


@functools.lru_cache(maxsize=32)
def _channel_means_program(network: Network, layer: str, options: tuple):
    """One compiled program per (network, layer, compiler options), the weights an argument: a
    program that closed over them would hold them as constants, compiled (and folded) anew
    each call."""

    def forward(params, x):
        y = network.features(params, network.convention.to_input(x), layer)
        return y.reshape(y.shape[0], -1, y.shape[-1]).mean(axis=1)  # dense layers: as they are

    return jax.jit(forward, compiler_options=dict(options) or None)


def channel_means(
    params,
    network: Network,
    layer: str,
    images_uint8: np.ndarray,
    chunk: int = 16,
    compiler_options: dict | None = None,
) -> np.ndarray:
    """(N, C) spatial mean of every channel of `layer` for uint8 RGB images of one size
    (for a dense layer, its outputs). `compiler_options`: those the render's plan chose
    (autotune's kernel library)."""
    forward = _channel_means_program(network, layer, _options(compiler_options))
    return _chunked(lambda x: forward(params, x), images_uint8, chunk=chunk)


def natural_maxima(
    params,
    network: Network,
    layer: str,
    crops: np.ndarray,
    cache_dir: str | None = None,
    compiler_options: dict | None = None,
) -> np.ndarray:
    """(C,) each channel's highest mean activation over the crops. The same for every run of
    a layer with these weights and crops, so it is kept in `<cache_dir>/metrics/` by a digest
    of all three (not of the compiler options: kernel libraries differ only in rounding)."""
    digest = hashlib.sha256(f"{network.name}|{layer}|{crops.shape}".encode())
    for leaf in jax.tree_util.tree_leaves(params):
        digest.update(np.asarray(leaf).tobytes())
    digest.update(np.ascontiguousarray(crops).tobytes())
    path = None
    if cache_dir:
        path = os.path.join(os.path.expanduser(cache_dir), "metrics", digest.hexdigest()[:24])
        path += ".npy"
        if os.path.exists(path):
            try:
                return np.load(path)
            except (OSError, ValueError):
                pass  # damaged: computed again
    maxima = channel_means(params, network, layer, crops, compiler_options=compiler_options)
    maxima = maxima.max(axis=0)
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, maxima)
        write_atomic(path, buffer.getvalue())
    return maxima


def random_views(images: np.ndarray, views: int = ROBUSTNESS_VIEWS, seed: int = 0) -> jax.Array:
    """(N * views, H, W, 3) float RGB: `views` random affine views of each RGB image (the same
    draws for every image, image-major)."""
    return _views_program(views, seed)(jnp.asarray(images, jnp.float32))


@functools.lru_cache(maxsize=8)
def _views_program(views: int, seed: int):
    def program(images):
        keys = jax.random.split(jax.random.key(seed), views)
        draws = jax.vmap(ROBUSTNESS_AFFINE.draw)(keys)
        one = jax.vmap(ROBUSTNESS_AFFINE.apply_one, in_axes=(None, 0))  # one image, every draw
        return jax.vmap(one, in_axes=(0, None))(images, draws).reshape(-1, *images.shape[1:])

    return jax.jit(program)


@functools.lru_cache(maxsize=32)
def _own_channel_program(network: Network, layer: str, options: tuple):
    def forward(params, x, c):
        y = network.features(params, network.convention.to_input(x), layer, channels=c)
        return y.reshape(y.shape[0], -1).mean(axis=1)

    return jax.jit(forward, compiler_options=dict(options) or None)


def own_channel_means(
    params,
    network: Network,
    layer: str,
    images,
    channels: np.ndarray,
    chunk: int = 16,
    compiler_options: dict | None = None,
) -> np.ndarray:
    """(N,) spatial mean of channel channels[n] of `layer` for RGB images (N, H, W, 3): only
    each image's own channel is computed."""
    forward = _own_channel_program(network, layer, _options(compiler_options))
    channels = np.asarray(channels, np.int32)
    return _chunked(lambda x, c: forward(params, x, c), images, channels, chunk=chunk)


def view_activations(
    params,
    network: Network,
    layer: str,
    images: np.ndarray,
    channels,
    views=ROBUSTNESS_VIEWS,
    compiler_options: dict | None = None,
) -> np.ndarray:
    """(N,) each image's channel's mean activation averaged over its random views."""
    seen = random_views(images, views)
    repeated = np.repeat(channels, views)
    per_view = own_channel_means(
        params, network, layer, seen, repeated, compiler_options=compiler_options
    )
    return per_view.reshape(len(images), views).mean(axis=1)


def measure(
    folder: str,
    records: dict,
    params,
    network: Network,
    layer: str,
    crops: np.ndarray,
    cache_dir: str | None = None,
    views: int = ROBUSTNESS_VIEWS,
    compiler_options: dict | None = None,
) -> dict:
    """The records with each ok filter's metrics added, from the PNGs in `folder`."""
    ok = [k for k, r in records.items() if r["status"] == "ok"]
    pngs = {k: read_png(os.path.join(folder, records[k]["file"])) for k in ok}
    ok = [k for k in ok if pngs[k] is not None]
    if not ok:
        return records
    images = np.stack([pngs[k][0] for k in ok])
    options = {"compiler_options": compiler_options}
    on_renders = channel_means(params, network, layer, images, **options)  # (image, channel)
    on_crops = natural_maxima(params, network, layer, crops, cache_dir, **options)  # (channel,)
    strongest = on_renders.argmax(axis=0)  # per channel: which rendered image excites it most
    channels = np.asarray([int(k) for k in ok], np.int32)
    on_views = None
    if views:
        on_views = view_activations(params, network, layer, images, channels, views, **options)
    for row, k in enumerate(ok):
        channel = int(k)
        activation = float(on_renders[row, channel])
        natural = float(on_crops[channel])
        viewed = float(on_views[row]) if on_views is not None else None
        records[k] |= {
            "activation": activation,
            "natural_max": natural,
            "ratio_to_natural": activation / natural if natural > 0 else None,
            "beats_natural": activation > natural,
            "best_stimulus": bool(strongest[channel] == row),
            "robustness": viewed / activation if viewed is not None and activation > 0 else None,
            "ratio_to_natural_views": viewed / natural
            if viewed is not None and natural > 0
            else None,
        }
    return records


def measure_job(job, params, records: dict, compiler_options: dict | None = None) -> None:
    """Measure every rendered filter of a job's folder (see measure), logging a summary;
    `compiler_options`: the render's measured kernel library, where it had one. The network
    keeps its plain `lax.conv` forms: other forms compile 1.5-2 s longer per program and save
    under 10% of a forward pass."""
    reference = job.metrics.get("reference")
    crops = reference_crops(os.path.expanduser(reference) if reference else None)
    start = time.perf_counter()
    views = job.metrics.get("views", ROBUSTNESS_VIEWS)
    measure(
        job.out_dir,
        records,
        params,
        job.network,
        job.layer.name,
        crops,
        job.cache_dir,
        views,
        compiler_options,
    )
    ok = [r for r in records.values() if r["status"] == "ok" and "beats_natural" in r]
    if ok:
        log.info(
            "%s: %d of %d images beat every natural crop, %d are their filter's best stimulus "
            "(measured in %.1f s)",
            job.layer.name,
            sum(r["beats_natural"] for r in ok),
            len(ok),
            sum(r["best_stimulus"] for r in ok),
            time.perf_counter() - start,
        )


def measure_classes(job, params, records: dict, compiler_options: dict | None = None) -> None:
    """Each class image's logit and softmax probability, on the PNG read back from disk."""
    network = job.network
    ok = [k for k, r in records.items() if r["status"] == "ok"]
    pngs = {k: read_png(os.path.join(job.out_dir, records[k]["file"])) for k in ok}
    ok = [k for k in ok if pngs[k] is not None]
    for k in records:
        records[k]["class_name"] = class_name(int(k), network.labels)
    if not ok:
        return
    images = np.stack([pngs[k][0] for k in ok])
    logits = channel_means(params, network, network.head, images, compiler_options=compiler_options)
    probabilities = np.asarray(jax.nn.softmax(logits, axis=-1))
    for row, k in enumerate(ok):
        records[k] |= {
            "logit": float(logits[row, int(k)]),
            "probability": float(probabilities[row, int(k)]),
            "top_class": int(logits[row].argmax()),
        }
