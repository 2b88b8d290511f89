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
    help_text,
    quote_index_lists,
)
from render.errors import UserError
from render.settings import register_resolvers

log = logging.getLogger("render")


@hydra.main(config_path=CONF_DIR, config_name=CONFIG_NAME, version_base="1.3")
def task(cfg: DictConfig) -> None:
    from render.distributed import join
    from render.gallery import write_gallery
    from render.model_io import enable_compilation_cache
    from render.networks import load_network
    from render.run import render_layer, render_objectives
    from render.settings import DreamJob, ObjectivesJob, prepare

    logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing is not news
    try:
        join(cfg)  # a job launched in a process of its own (e.g. on SLURM)
        enable_compilation_cache(cfg.cache_dir)
        job = prepare(cfg)
        need_top = getattr(job, "need_top", False)  # class objectives, expressions reading the top
        params = load_network(cfg, need_top=need_top).params
        if isinstance(job, DreamJob):
            failed = dream_photos(job, params, OmegaConf.to_container(cfg, resolve=True))
            if job.output["gallery"]:
                log.info("gallery: %s", write_gallery(job.output["root"])[-1])
            if failed:
                sys.exit(1)
            return
        if isinstance(job, ObjectivesJob):
            render_objectives(job, params, OmegaConf.to_container(cfg, resolve=True))
        else:
            render_layer(job, params, OmegaConf.to_container(cfg, resolve=True))
        examples = cfg.examples.photos is not None and not isinstance(job, ObjectivesJob)
        if examples:  # the photos that drive each filter, beside it
            from hydra.core.hydra_config import HydraConfig

            from render.examples import run

            log.info("examples: %s", run(list(HydraConfig.get().overrides.task)))
        if job.output["gallery"]:
            log.info("gallery: %s", write_gallery(job.output["root"])[-1])
    except UserError as err:
        log.error("%s", err)
        fail(err, cfg.debug)
    except KeyboardInterrupt:
        log.warning("interrupted: finished batches are saved; run the same command to resume")
        sys.exit(130)


def dream_photos(job, params, settings: dict | None = None) -> int:
    """Dream every photo of the job into its run folder (resuming; see run.render_dreams);
    returns how many failed (each said in one line)."""
    from render.run import render_dreams

    results = render_dreams(job, params, settings or {})
    for path, error in results:
        if error:
            log.error("render: error: %s", error)
        else:
            log.info("dreamed %s", path)
    log.info(
        "%d of %d photos dreamed into %s",
        sum(e is None for _, e in results),
        len(results),
        job.out_dir,
    )
    return sum(e is not None for _, e in results)


def main() -> None:
    register_resolvers()
    argv = quote_index_lists(sys.argv[1:])
    sys.argv[1:] = argv
    if "--help" in argv or "-h" in argv:
        print(help_text(), end="")
        return
    try:
        check_command(argv)
    except UserError as err:
        fail(err, debug_requested(argv))
    except KeyboardInterrupt:
        sys.exit(130)
    try:
        task()
    except ValueError as err:  # Hydra's own command-line checks, e.g. --cfg together with -m
        fail(err, debug_requested(argv))


if __name__ == "__main__":
    main()
