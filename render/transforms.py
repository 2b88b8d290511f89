"""Transformation robustness: a random affine view of each image at every step.

One resampling per image combines Lucid's standard chain (pad, jitter, scale, rotate, jitter):
pixels outside the image read as mid-gray. Each image draws its own transform.
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
        channels = [
            map_coordinates(image[..., c] - gray[c], [src_y, src_x], order=1, cval=0.0) + gray[c]
            for c in range(3)
        ]
        return jnp.stack(channels, axis=-1)

    def __call__(self, images: jax.Array, keys: jax.Array) -> jax.Array:
        draws = jax.vmap(self.draw)(keys)
        return jax.vmap(self.apply_one)(images, draws)
