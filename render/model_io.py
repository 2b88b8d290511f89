"""Weights to device-ready params, and XLA's persistent compilation cache."""

from __future__ import annotations

import logging
import os

import jax

from render.errors import UserError
from render.models.weights import WeightsError, load_weights, random_params

log = logging.getLogger("render")


def load_params(weights_path: str | None, need_top: bool = False) -> dict:
    """Params on the default device; seeded random ones (and a warning) when no path."""
    if weights_path is None:
        log.warning("weights=random: seeded random weights, a smoke test, not a result")
        return jax.device_put(random_params(seed=0, top=need_top))
    try:
        params, info = load_weights(weights_path, need_top=need_top)
    except WeightsError as err:
        raise UserError(str(err)) from None
    log.info("weights: %s (%s layout)", weights_path, info.layout)
    return jax.device_put(params)


def enable_compilation_cache(cache_dir: str) -> None:
    """Reuse compiled programs across runs and sweep jobs (a warm start skips compilation)."""
    path = os.path.join(os.path.expanduser(cache_dir), "xla")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
