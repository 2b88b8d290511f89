"""Transformation robustness: random views of each image at every step.

`RandomAffine` (olah2017): one resampling per image combines Lucid's standard chain (pad,
jitter, scale, rotate, jitter); pixels outside the image read as mid-gray (or repeat the edge).
`RandomCrops` (fel2023, MACO): several random square crops per image, each resized to the image
size, whose size shrinks over the run, plus noise. `RandomRoll` (deep dream): a random
whole-pixel roll with wrap-around. Each image draws its own transforms.

A transform is called as `transform(images, keys, fraction)`: `fraction` is the run's progress
(0 at the first step, 1 at the last); it may return several views per image, image-major
(B * views, H', W', 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from render.models.network import CONVENTIONS, Convention


@dataclass(frozen=True)
class RandomAffine:
    pad: int = 12  # gray border the view may reach into
    jitter: int = 8  # pixels of random shift, each way
    scale: float = 0.1  # random zoom in [1 - scale, 1 + scale]
    rotate: float = 10.0  # random rotation in [-rotate, rotate] degrees
    convention: Convention = CONVENTIONS["caffe"]  # of the images: where mid-gray lies
    fill: str = "gray"  # outside the image: "gray" (mid-gray) or "edge" (the nearest pixel)

    def output_size(self, size: int) -> int:
        return size + 2 * self.pad - self.jitter

    def draw(self, key: jax.Array) -> jax.Array:
        """(dy, dx, zoom, angle in radians) for one image."""
        k1, k2, k3 = jax.random.split(key, 3)
        shift = jax.random.randint(k1, (2,), -self.jitter, self.jitter + 1).astype(jnp.float32)
        zoom = jax.random.uniform(k2, (), minval=1 - self.scale, maxval=1 + self.scale)
        angle = jnp.deg2rad(jax.random.uniform(k3, (), minval=-self.rotate, maxval=self.rotate))
        return jnp.concatenate([shift, zoom[None], angle[None]])

    def apply_one(self, image: jax.Array, draw: jax.Array) -> jax.Array:
        """Resample one network-input image (H, W, 3) through the transform `draw`."""
        size, out = image.shape[0], self.output_size(image.shape[0])
        gray = self.convention.to_input(jnp.full((3,), 127.5, jnp.float32))
        centre_out, centre_in = (out - 1) / 2, (size - 1) / 2
        ys, xs = jnp.meshgrid(
            jnp.arange(out) - centre_out, jnp.arange(out) - centre_out, indexing="ij"
        )
        cos, sin = jnp.cos(draw[3]), jnp.sin(draw[3])
        src_y = (cos * ys - sin * xs) / draw[2] + centre_in + draw[0]
        src_x = (sin * ys + cos * xs) / draw[2] + centre_in + draw[1]
        if self.fill == "edge":
            channels = [
                map_coordinates(image[..., c], [src_y, src_x], order=1, mode="nearest")
                for c in range(3)
            ]
            return jnp.stack(channels, axis=-1)
        channels = [
            map_coordinates(image[..., c] - gray[c], [src_y, src_x], order=1, cval=0.0) + gray[c]
            for c in range(3)
        ]
        return jnp.stack(channels, axis=-1)

    def __call__(self, images: jax.Array, keys: jax.Array, fraction=None) -> jax.Array:
        draws = jax.vmap(self.draw)(keys)
        return jax.vmap(self.apply_one)(images, draws)


@dataclass(frozen=True)
class RandomCrops:
    """MACO's views (Fel et al. 2023): per image and step, `crops` random square crops, each
    resized (bilinear) to the image size, plus Gaussian and uniform noise.

    A crop's side is drawn around `crop_size(fraction)` (a fraction of the image side, linear
    from crop_max at the first step to crop_min at the last; std size_std, clipped to
    [0.05, 1]), its centre around the image centre (std centre_std of the side); the part of a
    crop outside the image reads as mid-gray.
    """

    crops: int = 4
    crop_max: float = 1.0
    crop_min: float = 0.5
    noise: float = 0.08  # noise std in half the pixel range (the paper's -1..1 inputs)
    centre_std: float = 0.15
    size_std: float = 0.05
    convention: Convention = CONVENTIONS["caffe"]

    def output_size(self, size: int) -> int:
        return size

    def crop_size(self, fraction) -> jax.Array:
        """The mean crop side (a fraction of the image side) at run progress `fraction`."""
        fraction = jnp.clip(jnp.asarray(fraction, jnp.float32), 0.0, 1.0)
        return self.crop_max + (self.crop_min - self.crop_max) * fraction

    def draw(self, key: jax.Array, mean_size) -> jax.Array:
        """(crops, 3): centre y, centre x and side of each crop, in fractions of the image."""
        k1, k2 = jax.random.split(key)
        centres = 0.5 + self.centre_std * jax.random.normal(k1, (self.crops, 2))
        sides = jnp.clip(mean_size + self.size_std * jax.random.normal(k2, (self.crops,)), 0.05, 1)
        return jnp.concatenate([centres, sides[:, None]], axis=1)

    def crop_one(self, image: jax.Array, box: jax.Array) -> jax.Array:
        """One crop of a network-input image (H, W, 3), resized to (H, W, 3)."""
        size = image.shape[0]
        gray = self.convention.to_input(jnp.full((3,), 127.5, jnp.float32))
        steps = jnp.arange(size, dtype=jnp.float32) / max(size - 1, 1)
        ys = (box[0] + box[2] * (steps - 0.5)) * (size - 1)
        xs = (box[1] + box[2] * (steps - 0.5)) * (size - 1)
        src_y, src_x = jnp.meshgrid(ys, xs, indexing="ij")
        channels = [
            map_coordinates(image[..., c] - gray[c], [src_y, src_x], order=1, cval=0.0) + gray[c]
            for c in range(3)
        ]
        return jnp.stack(channels, axis=-1)

    def views_of(self, image: jax.Array, key: jax.Array, mean_size) -> jax.Array:
        k_boxes, k_normal, k_uniform = jax.random.split(key, 3)
        boxes = self.draw(k_boxes, mean_size)
        views = jax.vmap(lambda box: self.crop_one(image, box))(boxes)
        if self.noise:
            scale = jnp.asarray(self.convention.scale, jnp.float32) * (127.5 * self.noise)
            views = views + scale * jax.random.normal(k_normal, views.shape)
            uniform = jax.random.uniform(k_uniform, views.shape, minval=-0.5, maxval=0.5)
            views = views + scale * uniform
        return views

    def __call__(self, images: jax.Array, keys: jax.Array, fraction=0.0) -> jax.Array:
        mean_size = self.crop_size(0.0 if fraction is None else fraction)
        views = jax.vmap(lambda image, key: self.views_of(image, key, mean_size))(images, keys)
        return views.reshape(-1, *views.shape[2:])


@dataclass(frozen=True)
class RandomRoll:
    """Deep dream's jitter: each image rolled (shifted with wrap-around) by a random whole number
    of pixels in [-jitter, jitter] along each axis, drawn per image and step. The roll's
    gradient rolls back, so the update lands in the image's own frame."""

    jitter: int = 0

    def output_size(self, size: int) -> int:
        return size

    def __call__(self, images: jax.Array, keys: jax.Array, fraction=None) -> jax.Array:
        def one(image, key):
            shift = jax.random.randint(key, (2,), -self.jitter, self.jitter + 1)
            return jnp.roll(image, shift, axis=(0, 1))

        return jax.vmap(one)(images, keys)
