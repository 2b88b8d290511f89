"""XLA's persistent compilation cache."""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger("render")


def enable_compilation_cache(cache_dir: str) -> None:
    """Reuse compiled programs across runs and sweep jobs (a warm start skips compilation)."""
    path = os.path.join(os.path.expanduser(cache_dir), "xla")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
