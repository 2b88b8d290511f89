"""Hydra callbacks: after a sweep, the whole-network figure and the gallery are brought up to date,
so `python -m render -m sweep=conv_layers` ends with the paper figure in place."""

from __future__ import annotations

import logging

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("render")


class SweepFigures(Callback):
    """on_multirun_end: <output.root>/overview.png (the best filters of every layer, one row
    each, as python -m render.overview writes it) and the HTML gallery."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from render.errors import UserError
        from render.gallery import write_gallery
        from render.overview import build, parse_args

        root = str(config.output.root)
        try:
            log.info("overview: %s", build(parse_args([root, "--labels"])))
        except UserError as err:  # e.g. every filter of the sweep was dead
            log.warning("no overview figure: %s", err)
        if config.output.gallery:
            log.info("gallery: %s", write_gallery(root)[-1])
