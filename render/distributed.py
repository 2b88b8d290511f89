"""Several processes render one layer together: jax.distributed joins them, and each renders
every n-th missing filter into the shared run folder (see render.run)."""

from __future__ import annotations

import jax
from omegaconf import DictConfig

from render.errors import UserError

_joined = False


def join(cfg: DictConfig) -> None:
    """Join the other processes when `distributed.coordinator` is set (once per process):
    host:port of process 0 with `processes` and `process_id`, or `auto` to let JAX read them
    from the cluster (SLURM, Open MPI)."""
    global _joined
    settings = cfg.distributed
    if _joined or settings.coordinator is None:
        return
    try:
        if settings.coordinator == "auto":
            jax.distributed.initialize()
        else:
            processes, process = settings.processes, settings.process_id
            if not (isinstance(processes, int) and isinstance(process, int)):
                raise ValueError("distributed.processes and process_id must be whole numbers")
            if not 0 <= process < processes:
                raise ValueError(f"process_id={process} is not one of 0..{processes - 1}")
            jax.distributed.initialize(str(settings.coordinator), processes, process)
    except (RuntimeError, ValueError) as err:
        raise UserError(f"distributed: cannot join the other processes ({err})") from None
    _joined = True


def my_share(items: list) -> list:
    """This process's part of `items`: every n-th, starting at its index."""
    return items[jax.process_index() :: jax.process_count()]
