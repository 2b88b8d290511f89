"""Analyses of a finished render run: `python -m render.analyze twins RUN_FOLDER`.

twins: pairs of filters whose images are the same pattern rotated by 90, 180 or 270 degrees
(with --mirror also mirrored), as noted for VGG16 in the 2016 Keras blog post. Each pair is
compared under every transform with two translation- and contrast-invariant similarities:

- shift: the maximum over all circular shifts of the normalized cross-correlation of the two
  grayscale images (zero mean, unit norm), computed with the FFT. It is near 1 for an exact
  copy, rotated, shifted and contrast-scaled, and sees every transform apart, but it stays near
  noise level for two renders of the same texture, whose stripes never line up everywhere.
- texture: the cosine similarity of a phase-free texture signature: the anisotropic part of the
  band-passed amplitude spectrum (each ring of equal frequency minus its mean: the orientation
  of the stripes at each scale, blind to position; an isotropic texture leaves only speckle,
  so two of them score low) plus the polarity of the gradient directions (which side of a ridge
  is light), which the spectrum cannot see. It finds the typical VGG twin, stripes at right
  angles with different wiggles. For a texture that looks the same upside down (plain stripes)
  rot180 equals the identity and rot90 equals rot270, so such a pair is reported under either.

A pair (a, b), a < b, is a twin when for one of the two similarities some transform T of a
(b looks like T applied to a) scores at least the threshold and beats the identity by a margin;
the best such transform is reported, with the identity's score under the same similarity.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from render.errors import UserError, run_tool
from render.files import read_png, write_atomic, write_png
from render.runs import METADATA, read_metadata
from render.tiles import stitch

PROG = "render.analyze"
DEFAULT_THRESHOLD = 0.6
MARGIN = 0.05  # how much a transform must beat the identity by
SIZE = 64  # images are compared at this size (box-downsampled; rot90 commutes with it)
CROP = 1 / 16  # border cropped on each side: renders often carry edge artifacts
LOW_CUT = 2.0  # cycles per image: slower gradients (vignettes, colour casts) are left out
BINS = 32  # gradient-direction bins over 360 degrees (a multiple of 4: rot90 = 8 bins)
POLARITY_WEIGHT = 1.0
CHUNK = 1024  # pairs per batch of inverse FFTs

Transform = Callable[[np.ndarray], np.ndarray]
ROTATIONS: dict[str, Transform] = {
    "identity": lambda x: x,
    "rot90": lambda x: np.rot90(x, 1),
    "rot180": lambda x: np.rot90(x, 2),
    "rot270": lambda x: np.rot90(x, 3),
}
MIRRORS: dict[str, Transform] = {
    "flipH": lambda x: x[:, ::-1],
    "flipH+rot90": lambda x: np.rot90(x[:, ::-1], 1),
    "flipH+rot180": lambda x: np.rot90(x[:, ::-1], 2),
    "flipH+rot270": lambda x: np.rot90(x[:, ::-1], 3),
}
TRANSFORMS: dict[str, Transform] = {**ROTATIONS, **MIRRORS}


@dataclass(frozen=True)
class Twin:
    """Image b looks like `transform` applied to image a (up to shift and contrast)."""

    filter_a: int
    filter_b: int
    transform: str
    score: float
    identity_score: float
    measure: str  # "shift" (same pattern) or "texture" (same texture statistics)


def transform_image(image: np.ndarray, name: str, inverse: bool = False) -> np.ndarray:
    """`image` (H, W[, C]) under a transform of TRANSFORMS (CCW rotations, flipH = left-right)."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}: use one of {', '.join(TRANSFORMS)}")
    if not inverse:
        return np.ascontiguousarray(TRANSFORMS[name](image))
    k = int(name.rsplit("rot", 1)[1]) // 90 if "rot" in name else 0
    out = np.rot90(image, -k)
    return np.ascontiguousarray(out[:, ::-1] if name.startswith("flip") else out)


def find_twins(
    images: dict[int, np.ndarray],
    mirror: bool = False,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    margin: float = MARGIN,
    size: int = SIZE,
) -> list[Twin]:
    """Rotation (and with `mirror` reflection) twins among `images`, best score first.

    `images` maps filter index to an (H, W, 3) or (H, W) image; non-square images are cropped
    to their central square, and constant images never pair. See the module docstring.
    """
    keys = sorted(images)
    if len(keys) < 2:
        return []
    names = list(TRANSFORMS if mirror else ROTATIONS)
    x = _prepare([images[k] for k in keys], size)
    shifted = {t: _transform_batch(x, t) for t in names}
    n = len(keys)
    rows, cols = np.triu_indices(n, 1)

    texture = {t: _texture_features(shifted[t]) for t in names}
    tex = np.stack([(texture[t] @ texture["identity"].T)[rows, cols] for t in names])

    spectra = {t: np.fft.rfft2(shifted[t]) for t in names}
    bound = _shift_bound(spectra, names, rows, cols)  # shift score <= bound (Cauchy-Schwarz)
    shift = np.full_like(tex, -np.inf)
    todo = np.flatnonzero(bound[1:].max(axis=0) >= threshold)
    for start in range(0, len(todo), CHUNK):
        sel = todo[start : start + CHUNK]
        b = np.conj(spectra["identity"][cols[sel]])
        for i, t in enumerate(names):
            corr = np.fft.irfft2(spectra[t][rows[sel]] * b, s=x.shape[1:])
            shift[i, sel] = corr.max(axis=(1, 2))

    twins = []
    for measure, scores in (("shift", shift), ("texture", tex)):
        best = scores[1:].argmax(axis=0) + 1
        top = np.take_along_axis(scores, best[None], axis=0)[0]
        ident = scores[0]
        for p in np.flatnonzero((top >= threshold) & (top > ident + margin)):
            a, b, t = keys[rows[p]], keys[cols[p]], names[best[p]]
            twins.append(Twin(a, b, t, float(top[p]), float(ident[p]), measure))
    chosen: dict[tuple[int, int], Twin] = {}
    for twin in twins:  # shift first: on a tie, the exact-pattern match is kept
        pair = (twin.filter_a, twin.filter_b)
        if pair not in chosen or twin.score > chosen[pair].score:
            chosen[pair] = twin
    return sorted(chosen.values(), key=lambda t: (-t.score, t.filter_a, t.filter_b))


def _prepare(images: list[np.ndarray], size: int) -> np.ndarray:
    """(n, S, S) float32: gray, border cropped, downsampled, periodic, band-passed, unit norm."""
    grays = []
    for image in images:
        g = np.asarray(image, np.float32)
        if g.ndim == 3 and g.shape[2] >= 3:
            g = g[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        elif g.ndim == 3:
            g = g[..., 0]
        if g.ndim != 2 or min(g.shape) < 4:
            raise ValueError(f"expected (H, W) or (H, W, 3) images, got shape {np.shape(image)}")
        side = min(g.shape)
        top, left = (g.shape[0] - side) // 2, (g.shape[1] - side) // 2
        m = int(round(side * CROP))
        grays.append(g[top + m : top + side - m, left + m : left + side - m])
    side = min(size, min(g.shape[0] for g in grays))
    box = Image.Resampling.BOX  # area means (2x2 blocks at 128 -> 64): commutes with rot90
    x = np.stack(
        [
            g if len(g) == side else np.asarray(Image.fromarray(g).resize((side, side), box))
            for g in grays
        ]
    ).astype(np.float32)
    x = _periodic(x - x.mean(axis=(1, 2), keepdims=True))
    f = np.fft.rfft2(x)
    fy = np.fft.fftfreq(side)[:, None] * side
    fx = np.fft.rfftfreq(side)[None, :] * side
    f *= (1 - np.exp(-(fy**2 + fx**2) / (2 * LOW_CUT**2))).astype(np.float32)
    x = np.fft.irfft2(f, s=(side, side)).astype(np.float32)
    norm = np.sqrt((x * x).sum(axis=(1, 2), keepdims=True))
    return np.where(norm > 1e-6 * side, x / np.maximum(norm, 1e-30), 0).astype(np.float32)


def _periodic(u: np.ndarray) -> np.ndarray:
    """The periodic component of images (Moisan 2011): no seam when the image wraps around."""
    v = np.zeros_like(u)
    v[:, 0, :] += u[:, -1, :] - u[:, 0, :]
    v[:, -1, :] -= u[:, -1, :] - u[:, 0, :]
    v[:, :, 0] += u[:, :, -1] - u[:, :, 0]
    v[:, :, -1] -= u[:, :, -1] - u[:, :, 0]
    h, w = u.shape[1:]
    q = np.arange(h)[:, None]
    r = np.arange(w // 2 + 1)[None, :]
    den = 2 * np.cos(2 * np.pi * q / h) + 2 * np.cos(2 * np.pi * r / w) - 4
    den[0, 0] = 1
    smooth = np.fft.rfft2(v) / den
    smooth[:, 0, 0] = 0
    return (u - np.fft.irfft2(smooth, s=(h, w))).astype(np.float32)


def _transform_batch(x: np.ndarray, name: str) -> np.ndarray:
    return np.ascontiguousarray(np.stack([TRANSFORMS[name](im) for im in x]))


def _texture_features(x: np.ndarray) -> np.ndarray:
    """(n, D) unit rows: smoothed amplitude spectrum (Pearson-centred) and gradient polarity."""
    amp = np.abs(np.fft.fft2(x))
    for axis in (1, 2):
        amp = amp + np.roll(amp, 1, axis) + np.roll(amp, -1, axis)
    spec = amp.reshape(len(x), -1)
    spec = spec - _radial_mean(spec, x.shape[1])  # keep the anisotropic part: orientation
    spec /= np.maximum(np.linalg.norm(spec, axis=1, keepdims=True), 1e-30)

    gx = (np.roll(x, -1, 2) - np.roll(x, 1, 2)) / 2
    gy = (np.roll(x, -1, 1) - np.roll(x, 1, 1)) / 2
    mag = np.hypot(gx, gy).reshape(len(x), -1)
    pos = (np.arctan2(gy, gx).reshape(len(x), -1) / (2 * np.pi) * BINS) % BINS
    low = np.floor(pos).astype(np.int64)
    frac = pos - low
    offset = (np.arange(len(x)) * BINS)[:, None]
    hist = np.bincount((offset + low % BINS).ravel(), (mag * (1 - frac)).ravel(), len(x) * BINS)
    hist += np.bincount((offset + (low + 1) % BINS).ravel(), (mag * frac).ravel(), len(x) * BINS)
    hist = hist.reshape(len(x), BINS)
    odd = (hist - np.roll(hist, BINS // 2, axis=1)) / 2  # flips sign under rot180
    odd /= np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-30)

    features = np.concatenate([spec, POLARITY_WEIGHT * odd], axis=1)
    norm = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norm, 1e-30)).astype(np.float32)


def _radial_mean(spec: np.ndarray, side: int) -> np.ndarray:
    """Each flattened (n, side*side) spectrum's mean over rings of equal frequency radius."""
    f = np.fft.fftfreq(side) * side
    ring = np.rint(np.hypot(f[:, None], f[None, :])).astype(np.int64).ravel()
    rings = int(ring.max()) + 1
    labels = (np.arange(len(spec))[:, None] * rings + ring[None, :]).ravel()
    sums = np.bincount(labels, spec.ravel(), len(spec) * rings).reshape(len(spec), rings)
    return (sums / np.bincount(ring, minlength=rings))[:, ring]


def _shift_bound(
    spectra: dict[str, np.ndarray], names: list[str], rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Per transform and pair, sum |A||B| / S^2 >= the shift score (the images have unit norm)."""
    side = next(iter(spectra.values())).shape[1]
    weight = np.full(side // 2 + 1, 2.0, np.float32)  # rfft columns stand for two, except
    weight[0] = 1
    if side % 2 == 0:
        weight[-1] = 1
    n = len(spectra["identity"])
    base = (np.abs(spectra["identity"]) * np.sqrt(weight)).reshape(n, -1)
    out = []
    for t in names:
        amp = (np.abs(spectra[t]) * np.sqrt(weight)).reshape(base.shape)
        out.append(((amp @ base.T) / side**2)[rows, cols])
    return np.stack(out) + 1e-4


# --- command line -------------------------------------------------------------------------


def load_run(folder: str) -> tuple[str, dict[int, np.ndarray]]:
    """(layer name, filter index -> RGB image) of a run folder; UserError when unusable."""
    if not os.path.isdir(folder):
        raise UserError(
            f"no such folder: {folder}: give the folder of one render run, <root>/<layer>/<run>/"
        )
    meta_path = os.path.join(folder, METADATA)
    if not os.path.exists(meta_path):
        raise UserError(
            f"no {METADATA} in {folder}: give the folder of one render run, "
            "<root>/<layer>/<run>/, where the filter images are"
        )
    meta = read_metadata(folder, warn=False)
    if meta is None:
        raise UserError(f"{meta_path} is damaged or has no 'filters' table: render the run again")
    layer = str(meta.get("layer") or os.path.basename(os.path.dirname(os.path.abspath(folder))))
    images: dict[int, np.ndarray] = {}
    for key, entry in meta["filters"].items():
        if not isinstance(entry, dict) or not entry.get("file"):
            continue
        try:
            index = int(entry.get("filter", key))
        except (TypeError, ValueError):
            continue
        loaded = read_png(os.path.join(folder, str(entry["file"])))
        if loaded is None:
            print(
                f"{PROG}: warning: skipping filter {index}: cannot read {entry['file']}",
                file=sys.stderr,
            )
            continue
        images[index] = loaded[0]
    if len(images) < 2:
        raise UserError(
            f"{len(images)} filter image(s) in {folder}: "
            "need at least 2 rendered filters to compare"
        )
    return layer, images


def twins_csv(twins: list[Twin]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filter_a", "filter_b", "transform", "score", "identity_score", "measure"])
    for t in twins:
        writer.writerow(
            [
                t.filter_a,
                t.filter_b,
                t.transform,
                f"{t.score:.4f}",
                f"{t.identity_score:.4f}",
                t.measure,
            ]
        )
    return buffer.getvalue().encode()


def align_back(a: np.ndarray, b: np.ndarray, transform: str, shift: bool = True) -> np.ndarray:
    """Image b with `transform` undone and (with `shift`) rolled to line up best with a."""
    back = transform_image(b, transform, inverse=True)
    if not shift:
        return back
    ga, gb = (np.asarray(im, np.float32) for im in (a, back))
    ga, gb = (g.mean(axis=2) if g.ndim == 3 else g for g in (ga, gb))
    if ga.shape != gb.shape:
        return back
    ga, gb = ga - ga.mean(), gb - gb.mean()
    corr = np.fft.irfft2(np.fft.rfft2(ga) * np.conj(np.fft.rfft2(gb)), s=ga.shape)
    dy, dx = np.unravel_index(int(corr.argmax()), corr.shape)
    return np.roll(back, (int(dy), int(dx)), axis=(0, 1))


def twins_figure(images: dict[int, np.ndarray], twins: list[Twin]) -> np.ndarray:
    """One row per pair: image a, image b, and b transformed back and shifted onto a."""
    first = images[twins[0].filter_a]
    height, width = first.shape[:2]

    def fit(im: np.ndarray) -> np.ndarray:
        im = np.asarray(im, np.uint8)
        if im.shape[:2] != (height, width):
            im = np.asarray(Image.fromarray(im).resize((width, height)))
        return im

    tiles = []
    for t in twins:
        a, b = fit(images[t.filter_a]), fit(images[t.filter_b])
        back = align_back(a, b, t.transform, shift=t.measure == "shift")  # textures: no seams
        tiles += [a, b, fit(back)]
    return stitch(tiles, cols=3, margin=max(2, width // 16), background=(255, 255, 255))


def run_twins(folder: str, threshold: float, mirror: bool, top: int) -> None:
    layer, images = load_run(folder)
    twins = find_twins(images, mirror=mirror, threshold=threshold)
    paired = {k for t in twins for k in (t.filter_a, t.filter_b)}
    kind = "rotation or mirror twin" if mirror else "rotation twin"
    print(
        f"{layer}: {len(paired)} of {len(images)} filters ({100 * len(paired) / len(images):.1f}%) "
        f"have a {kind} above {threshold:.2f}"
    )
    for t in twins[:top]:
        print(
            f"  {t.filter_a:>4} {t.filter_b:>4}  {t.transform:<13} {t.score:.3f}  "
            f"(identity {t.identity_score:.3f}, {t.measure})"
        )
    if len(twins) > top:
        print(f"  ... {len(twins) - top} more in twins.csv")
    write_atomic(os.path.join(folder, "twins.csv"), twins_csv(twins))
    figure = os.path.join(folder, "twins.png")
    if twins and top > 0:
        text = {
            "layer": layer,
            "threshold": f"{threshold:g}",
            "mirror": str(mirror),
            "rows": "image a | image b | b transformed back onto a",
            "pairs": " ".join(f"{t.filter_a}-{t.filter_b}:{t.transform}" for t in twins[:top]),
        }
        write_png(figure, twins_figure(images, twins[:top]), text)
        print(f"wrote twins.csv ({len(twins)} pairs) and twins.png (top {min(top, len(twins))})")
    else:
        try:  # a stale figure from an earlier run would mislead
            os.remove(figure)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise UserError(f"cannot remove the old {figure} ({err.strerror})") from None
        why = "without pairs" if not twins else "with --top 0"
        print(f"wrote twins.csv ({len(twins)} pairs); no twins.png {why}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Analyses of a finished render run.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    twins = commands.add_parser(
        "twins",
        help="pairs of filters whose images are rotated copies of each other",
        description="Find pairs of filters whose images are the same pattern rotated by 90, 180 "
        "or 270 degrees (with --mirror also mirrored), robust to shift and contrast. Writes "
        "twins.csv (all pairs, best first) and twins.png (the best --top pairs: image a, "
        "image b, b turned back onto a) into RUN_FOLDER.",
    )
    twins.add_argument("folder", metavar="RUN_FOLDER", help="<root>/<layer>/<run>/ of a render")
    twins.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="lowest similarity of a twin, -1..1 (default %(default)s)",
    )
    twins.add_argument("--mirror", action="store_true", help="also mirrored (flipped) twins")
    twins.add_argument(
        "--top",
        type=int,
        default=16,
        help="pairs printed and drawn in twins.png (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if not -1 <= args.threshold <= 1:
        parser.error(f"--threshold {args.threshold:g} is outside -1..1: try 0.6")
    if args.top < 0:
        parser.error(f"--top {args.top} is negative: give a count like 16")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_tool(PROG, lambda: run_twins(args.folder, args.threshold, args.mirror, args.top) and 0)


if __name__ == "__main__":
    main()
