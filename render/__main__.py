"""python -m render layer=conv5_2 filters=0-511 (see conf/config.yaml for every setting)."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from render.cli import (
    CONF_DIR,
    CONFIG_NAME,
    check_command,
    debug_requested,
    fail,
    quote_index_lists,
)
from render.errors import UserError
from render.settings import register_resolvers

log = logging.getLogger("render")


@hydra.main(config_path=CONF_DIR, config_name=CONFIG_NAME, version_base="1.3")
def task(cfg: DictConfig) -> None:
    from render.gallery import write_gallery
    from render.model_io import enable_compilation_cache, load_params
    from render.run import render_layer
    from render.settings import make_job

    logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing is not news
    try:
        enable_compilation_cache(cfg.cache_dir)
        job = make_job(cfg)
        params = load_params(job.weights_path, need_top=False)
        render_layer(job, params, OmegaConf.to_container(cfg, resolve=True))
        if job.output["gallery"]:
            log.info("gallery: %s", write_gallery(job.output["root"])[-1])
    except UserError as err:
        log.error("%s", err)
        fail(err, cfg.debug)
    except KeyboardInterrupt:
        log.warning("interrupted: finished batches are saved; run the same command to resume")
        sys.exit(130)


def main() -> None:
    register_resolvers()
    argv = quote_index_lists(sys.argv[1:])
    sys.argv[1:] = argv
    try:
        check_command(argv)
    except UserError as err:
        fail(err, debug_requested(argv))
    except KeyboardInterrupt:
        sys.exit(130)
    task()


if __name__ == "__main__":
    main()
