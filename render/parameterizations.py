"""Image parameterizations: what the optimizer changes, and how it becomes a network input.

Each maps a batch of parameters to network-input images (B, H, W, 3) through the network's
input convention, and back, so octaves and blurring can move between sizes and spaces:
`to_input(from_input(x)) == x`. Styles optimize RGB pixels; the convention maps them.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from render.models.network import CONVENTIONS, Convention

# Lucid's square root of ImageNet's RGB colour correlation (via SVD), columns scaled to max 1:
# parameterizing in this basis decorrelates colour, so steps move along natural colour axes.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_BASIS = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))


@dataclass(frozen=True)
class Pixels:
    """The 2016 post's parameterization: pixels, from gray + noise.

    param is the network input in units of one pixel level (input / the convention's scale), so
    a step of 1 moves a pixel by one level whatever the convention (for caffe, param == input).
    """

    gray: float = 128.0
    noise: float = 20.0
    convention: Convention = CONVENTIONS["caffe"]

    def _scale(self) -> jax.Array:
        return jnp.asarray(self.convention.scale, jnp.float32)

    def init(self, keys: jax.Array, size: int) -> jax.Array:
        def one(key):
            return self.gray + self.noise * jax.random.uniform(key, (size, size, 3), jnp.float32)

        return self.convention.to_input(jax.vmap(one)(keys)) / self._scale()

    def to_input(self, param: jax.Array) -> jax.Array:
        return param * self._scale()

    def from_input(self, images: jax.Array) -> jax.Array:
        return images / self._scale()


def _frequency_scale(size: int, decay: float) -> jax.Array:
    """1/f^decay amplitude per rfft2 frequency (Lucid's prior: natural images' spectrum)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return jnp.asarray(1.0 / np.maximum(freqs, 1.0 / size) ** decay * size, jnp.float32)


@dataclass(frozen=True)
class FourierColor:
    """Lucid/Distill 2017: a decorrelated-colour image in the Fourier domain, then a sigmoid.

    param: (B, 2, H, W//2+1, 3) real and imaginary parts of the scaled spectrum.
    """

    decay: float = 1.0  # frequency-decay power of the prior
    init_std: float = 0.01
    convention: Convention = CONVENTIONS["caffe"]

    def init(self, keys: jax.Array, size: int) -> jax.Array:
        shape = (2, size, size // 2 + 1, 3)
        return jax.vmap(lambda k: self.init_std * jax.random.normal(k, shape, jnp.float32))(keys)

    def _logits(self, param: jax.Array) -> jax.Array:
        size = param.shape[2]
        spectrum = (param[:, 0] + 1j * param[:, 1]) * _frequency_scale(size, self.decay)[..., None]
        decorrelated = jnp.fft.irfft2(spectrum, s=(size, size), axes=(1, 2)) / 4.0
        return decorrelated @ jnp.asarray(COLOR_BASIS.T)

    def to_rgb01(self, param: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(self._logits(param))

    def to_input(self, param: jax.Array) -> jax.Array:
        return self.convention.to_input(255.0 * self.to_rgb01(param))

    def from_input(self, images: jax.Array) -> jax.Array:
        size = images.shape[1]
        rgb01 = jnp.clip(self.convention.to_rgb(images) / 255.0, 1e-4, 1 - 1e-4)
        logits = jnp.log(rgb01) - jnp.log1p(-rgb01)
        decorrelated = logits @ jnp.asarray(np.linalg.inv(COLOR_BASIS.T)) * 4.0
        spectrum = jnp.fft.rfft2(decorrelated, axes=(1, 2))
        spectrum = spectrum / _frequency_scale(size, self.decay)[..., None]
        return jnp.stack([spectrum.real, spectrum.imag], axis=1).astype(jnp.float32)
