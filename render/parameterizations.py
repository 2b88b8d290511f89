"""Image parameterizations: what the optimizer changes, and how it becomes a network input.

Each maps a batch of parameters to network-input images (B, H, W, 3) through the network's
input convention, and back, so octaves and blurring can move between sizes and spaces:
`to_input(from_input(x)) == x` (for MACO, whose magnitude is fixed, a projection instead).
Styles optimize RGB pixels; the convention maps them.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=32)
def _maco_magnitude(spectrum: str | None, size: int) -> np.ndarray:
    from render.spectrum import fixed_magnitude, load  # spectrum imports COLOR_BASIS from here

    return fixed_magnitude(load(spectrum), size)


def _odd_columns(phase: jax.Array, size: int) -> jax.Array:
    """The phase made odd in ky along the rfft2 columns that pair up within themselves (kx = 0
    and, for even sizes, kx = size/2), so magnitude * exp(i phase) is the spectrum of a real
    image: irfft2 then keeps the magnitude exactly (and self-paired frequencies get phase 0)."""
    from render.spectrum import hermitian_columns

    mirror = (-np.arange(size)) % size
    cols = np.asarray(hermitian_columns(size))
    own = phase[:, :, cols]
    return phase.at[:, :, cols].set((own - own[:, mirror]) / 2)


@dataclass(frozen=True)
class Maco:
    """Fel et al. 2023 (MACO): a fixed natural magnitude spectrum; only the phase is optimized.

    param: (B, H, W//2+1, 3) phases per rfft2 frequency and decorrelated colour channel. The
    decorrelated signal is irfft2(magnitude * exp(i phase)), the phase standardized per image
    first (as the paper's code does); `magnitude(size)` is the mean spectrum of natural photos
    (render/spectrum.py: no mean, unit-variance image), so the signal's |rfft2| is exactly that
    magnitude at every step. Colours are recorrelated as in olah2017, then a sigmoid.
    """

    spectrum: str | None = None  # None: the shipped spectrum; else a folder of photos or .npy
    convention: Convention = CONVENTIONS["caffe"]

    def magnitude(self, size: int) -> jax.Array:
        return jnp.asarray(_maco_magnitude(self.spectrum, size))

    def init(self, keys: jax.Array, size: int) -> jax.Array:
        shape = (size, size // 2 + 1, 3)
        return jax.vmap(lambda k: jax.random.normal(k, shape, jnp.float32))(keys)

    def phase(self, param: jax.Array) -> jax.Array:
        axes = (1, 2, 3)
        centred = param - param.mean(axis=axes, keepdims=True)
        standard = centred / (jnp.sqrt(jnp.mean(centred**2, axis=axes, keepdims=True)) + 1e-5)
        return _odd_columns(standard, param.shape[1])

    def spectrum_of(self, param: jax.Array) -> jax.Array:
        return self.magnitude(param.shape[1]) * jnp.exp(1j * self.phase(param))

    def signal(self, param: jax.Array) -> jax.Array:
        """(B, H, W, 3) decorrelated image before colour and sigmoid: unit variance, no mean."""
        size = param.shape[1]
        return jnp.fft.irfft2(self.spectrum_of(param), s=(size, size), axes=(1, 2))

    def to_rgb01(self, param: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(self.signal(param) @ jnp.asarray(COLOR_BASIS.T))

    def to_input(self, param: jax.Array) -> jax.Array:
        return self.convention.to_input(255.0 * self.to_rgb01(param))

    def from_input(self, images: jax.Array) -> jax.Array:
        """The phases of images (their magnitude is replaced by the fixed one: a projection)."""
        rgb01 = jnp.clip(self.convention.to_rgb(images) / 255.0, 1e-4, 1 - 1e-4)
        logits = jnp.log(rgb01) - jnp.log1p(-rgb01)
        decorrelated = logits @ jnp.asarray(np.linalg.inv(COLOR_BASIS.T))
        return jnp.angle(jnp.fft.rfft2(decorrelated, axes=(1, 2))).astype(jnp.float32)
