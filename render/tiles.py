"""Stitch tiles into grids: every filter in index order, or the best ones by loss."""

from __future__ import annotations

import math

import numpy as np


def grid_shape(count: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding `count` tiles, or with `cols` columns."""
    cols = cols or max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / cols)), cols


def stitch(
    tiles: list[np.ndarray | None],
    cols: int | None = None,
    margin: int = 5,
    background: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Tiles (H, W, 3) uint8 in row-major order; None leaves its cell empty."""
    height, width = next(t.shape[:2] for t in tiles if t is not None)
    rows, cols = grid_shape(len(tiles), cols)
    canvas = np.empty(
        (rows * height + (rows + 1) * margin, cols * width + (cols + 1) * margin, 3), np.uint8
    )
    canvas[:] = background
    for i, tile in enumerate(tiles):
        if tile is None:
            continue
        r, c = divmod(i, cols)
        y, x = margin + r * (height + margin), margin + c * (width + margin)
        canvas[y : y + height, x : x + width] = tile
    return canvas


def best_order(losses: dict[int, float], count: int) -> list[int]:
    """The `count` indices with the highest loss, highest first; a loss of exactly zero (a ReLU
    channel that never fired) never qualifies, a negative one (a class logit) may."""
    alive = [k for k, loss in losses.items() if loss != 0]
    return sorted(alive, key=lambda k: (-losses[k], k))[:count]
