"""The mean magnitude spectrum of natural photos: MACO's fixed Fourier magnitude (Fel et al. 2023).

The spectrum is estimated per colour channel in the decorrelated basis of olah2017 (pixels in
0-1 times the inverse of `COLOR_BASIS.T`), as the mean |rfft2| over a set of photos, then
resampled to any image size in cycles per pixel (natural images' 1/f spectrum is the same
curve at every size). `render/data/spectrum_decorrelated.npy` is the one computed from the
shipped reference crops (see `render.metrics.reference_crops`); `style.spectrum=folder/`
computes it from your own photos instead.

    python -m render.spectrum [folder] [out.npy]   # (re)compute a spectrum file
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np

from render.parameterizations import COLOR_BASIS

SHIPPED = os.path.join(os.path.dirname(__file__), "data", "spectrum_decorrelated.npy")
_DECORRELATE = np.linalg.inv(COLOR_BASIS.T.astype(np.float64))


def estimate(images: np.ndarray) -> np.ndarray:
    """(H, W//2+1, 3) mean magnitude of the rfft2 of RGB images (N, H, W, 3) (uint8 or 0-255),
    each channel in the decorrelated colour basis."""
    images = np.asarray(images, np.float64)
    total = np.zeros((images.shape[1], images.shape[2] // 2 + 1, 3))
    for image in images:  # one at a time: memory stays flat for many photos
        decorrelated = (image / 255.0) @ _DECORRELATE
        total += np.abs(np.fft.rfft2(decorrelated, axes=(0, 1)))
    return (total / len(images)).astype(np.float32)


def from_photos(folder: str | None = None) -> np.ndarray:
    """The spectrum of the 128 px crops of every photo in `folder` (the crops the metrics use),
    or of the shipped reference crops."""
    from render.metrics import reference_crops

    return estimate(reference_crops(folder))


def _interp_axis(values: np.ndarray, source: np.ndarray, target: np.ndarray, axis: int):
    """Linear interpolation of `values` along `axis` from sorted coordinates `source` to
    `target` (clamped at the ends)."""
    moved = np.moveaxis(values, axis, 0)
    flat = moved.reshape(len(source), -1)
    out = np.stack([np.interp(target, source, column) for column in flat.T], axis=1)
    return np.moveaxis(out.reshape(len(target), *moved.shape[1:]), 0, axis)


def resample(magnitude: np.ndarray, size: int) -> np.ndarray:
    """A (m, m//2+1, C) rfft2 magnitude as the (size, size//2+1, C) one, bilinear in cycles per
    pixel (rows are unwrapped from FFT order first, so negative frequencies stay apart)."""
    m = magnitude.shape[0]
    if m == size:
        return magnitude.astype(np.float32)
    rows = np.fft.fftshift(np.fft.fftfreq(m))
    shifted = np.fft.fftshift(magnitude.astype(np.float64), axes=0)
    out = _interp_axis(shifted, rows, np.fft.fftfreq(size), axis=0)
    return _interp_axis(out, np.fft.rfftfreq(m), np.fft.rfftfreq(size), axis=1).astype(np.float32)


def hermitian_columns(size: int) -> list[int]:
    """rfft2 columns whose values pair up within the column (kx = 0, and kx = size/2 if even)."""
    return [0, size // 2] if size % 2 == 0 else [0]


def fixed_magnitude(magnitude: np.ndarray, size: int) -> np.ndarray:
    """The magnitude MACO holds fixed at `size`: resampled, symmetric where a real image's
    spectrum must be, no mean (DC 0: the image is centred on mid-gray), and scaled so that the
    image it gives has unit standard deviation whatever the phase (Parseval)."""
    out = resample(magnitude, size).astype(np.float64)
    mirror = (-np.arange(size)) % size
    for col in hermitian_columns(size):
        out[:, col] = (out[:, col] + out[mirror, col]) / 2
    out[0, 0] = 0.0
    signal = np.fft.irfft2(out, s=(size, size), axes=(0, 1))  # zero phase: one real image
    return (out / (signal.std() + 1e-12)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def load(spec: str | None = None) -> np.ndarray:
    """The raw spectrum: the shipped one (None or "shipped"), a .npy file, or the spectrum of a
    folder of photos."""
    if spec in (None, "shipped"):
        return np.load(SHIPPED)
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        return from_photos(path)
    return np.load(path)


def check_spectrum(spec) -> str | None:
    """What is wrong with a style.spectrum value, or None."""
    if spec in (None, "shipped"):
        return None
    path = os.path.expanduser(str(spec))
    if os.path.isdir(path):
        return None
    if os.path.isfile(path) and path.endswith(".npy"):
        try:
            shape = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError):
            shape = ()
        if len(shape) == 3 and shape[2] == 3 and shape[1] == shape[0] // 2 + 1:
            return None
        return f"style.spectrum={spec} is not an (H, H//2+1, 3) magnitude spectrum"
    return (
        f"style.spectrum={spec} is invalid: use shipped, a folder of photos or a .npy file "
        "written by python -m render.spectrum"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else None
    out = argv[1] if len(argv) > 1 else SHIPPED
    spectrum = from_photos(folder)
    np.save(out, spectrum)
    print(f"{out}: {spectrum.shape} mean magnitude spectrum")


if __name__ == "__main__":
    main()
