"""Render one layer: resume what exists, render the rest in compiled batches, stitch atlases."""

from __future__ import annotations

import fcntl
import logging
import os
import platform
import signal
import threading
import time
from contextlib import contextmanager

import jax
import numpy as np
from tqdm import tqdm

from render import __version__
from render.ascent import compile_ascent, image_keys
from render.batching import (
    auto_batch_size,
    default_loop,
    fit_batch,
    padded,
    replicate_over_devices,
    split_over_devices,
)
from render.display import to_uint8
from render.errors import UserError
from render.figures import write_atlases
from render.files import read_json, read_png, write_json, write_png
from render.metrics import measure_classes, measure_job
from render.objectives import for_job
from render.settings import Job
from render.styles import build_style

log = logging.getLogger("render")
METADATA = "metadata.json"


def png_name(layer: str, index: int) -> str:
    return f"{layer}_{index:04d}.png"


def versions() -> dict[str, str]:
    import flax
    import jaxlib

    return {
        "render": __version__,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.local_devices()[0].device_kind),
    }


@contextmanager
def interrupts_deferred():
    """Hold Ctrl-C until a batch's images and metadata are all written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


@contextmanager
def folder_lock(folder: str):
    """Refuse a second run writing into the same folder at the same time."""
    with open(os.path.join(folder, ".lock"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another render is writing {folder}: wait for it to finish, or use another "
                "output.root"
            ) from None
        yield


def finished_filters(job: Job, records: dict) -> set[int]:
    """Filters whose record and PNG are complete and belong to this configuration."""
    done = set()
    for k in job.filters:
        record = records.get(str(k))
        if record is None:
            continue
        if record["status"] != "ok":
            done.add(k)  # dead or non-finite: deterministic, rendering again gives the same
            continue
        png = read_png(os.path.join(job.out_dir, record["file"]))
        if png and png[1].get("render:key") == job.key and png[1].get("render:filter") == str(k):
            done.add(k)
    return done


def filter_record(job: Job, k: int, images, losses_start, losses_end) -> dict:
    """Save one rendered filter (unless it is dead or non-finite) and describe it.

    `images` (D, H, W, 3) are the filter's D diverse images (D = 1 without diversity), saved
    side by side in one PNG; its losses are their means.
    """
    loss_start, loss_end = np.mean(losses_start), np.mean(losses_end)
    record = {
        "filter": k,
        "seed": job.seed,
        "loss_start": float(loss_start),
        "loss_end": float(loss_end),
        "file": None,
    }
    if len(images) > 1:
        record["losses_end"] = [float(v) for v in losses_end]
    if not (np.isfinite(losses_end).all() and np.isfinite(images).all()):
        return record | {"status": "nonfinite"}
    if job.objective == "filters" and loss_end == 0:
        return record | {"status": "dead"}  # a ReLU channel that never fired: no image to show
    name = png_name(job.layer.name, k)
    text = {
        "render:key": job.key,
        "render:layer": job.layer.name,
        "render:filter": str(k),
        "render:loss": f"{loss_end:.6g}",
        "Software": f"render {__version__}",
    }
    convention = job.network.convention
    strip = np.concatenate(
        [to_uint8(image, job.style["display"], convention) for image in images], axis=1
    )
    write_png(os.path.join(job.out_dir, name), strip, text)
    return record | {"status": "ok", "file": name}


def remove_stale_temporaries(folder: str) -> None:
    """Temporary files of a run that was killed mid-write (see files.write_atomic)."""
    for name in os.listdir(folder):
        if name.startswith(".") and name.endswith(".tmp"):
            os.remove(os.path.join(folder, name))


def render_layer(job: Job, params, settings: dict) -> dict:
    """Render every missing filter of the job; returns the metadata written."""
    os.makedirs(job.out_dir, exist_ok=True)
    with folder_lock(job.out_dir):
        remove_stale_temporaries(job.out_dir)
        meta_path = os.path.join(job.out_dir, METADATA)
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("key") != job.key:
            meta = {"key": job.key, "layer": job.layer.name, "filters": {}}
        meta |= {"settings": settings, "versions": versions()}
        meta |= {"model": job.network.name, "layer_index": job.layer.index}
        records = meta["filters"]
        done = finished_filters(job, records)
        todo = [k for k in job.filters if k not in done]
        if done:
            log.info(
                "%d of %d filters already rendered in %s", len(done), len(job.filters), job.out_dir
            )
        if todo:
            _render(job, params, todo, meta, meta_path, len(done))
        if job.objective == "class":
            measure_classes(job, params, records)
        elif job.metrics.get("measure"):
            measure_job(job, params, records)
        write_json(meta_path, meta)
        write_atlases(job, records)
        dead = sorted(int(k) for k, r in records.items() if r["status"] == "dead")
        if dead:
            log.info("dead filters (activation stayed at zero, no image): %s", dead)
        return meta


def _render(job: Job, params, todo: list[int], meta: dict, meta_path: str, done: int) -> None:
    # the batch shape of a fresh run, even when resuming a few filters: XLA's arithmetic may
    # differ between batch shapes, and pixels must not depend on what was already on disk
    network, wanted = job.network, len(job.filters)
    batch = fit_batch(
        job.batch_size or auto_batch_size(network, job.layer, job.size, wanted), wanted
    )
    loop = job.loop if job.loop != "auto" else default_loop(jax.default_backend())
    objective = for_job(network, job.objective, job.layer.name, job.class_output)
    style = build_style(job.style, job.step_size, network.convention)
    params = replicate_over_devices(params)
    copies = style.diversity

    def batch_of(chunk, batch):
        targets = split_over_devices(np.repeat(padded(chunk, batch), copies))
        return targets, image_keys(job.seed, job.layer.index, targets, copies)

    features = None
    if copies > 1:  # diversity compares the images' features one layer below the target
        below = [
            layer.name
            for layer in network.layers[: job.layer.index]
            if layer.visualizable and layer.kind == "conv"
        ]
        if not below:
            features = lambda params, images: images  # noqa: E731
        else:
            features = lambda params, images: network.features(params, images, below[-1])  # noqa: E731

    def compiled(batch):
        targets, keys = batch_of(todo[:batch], batch)
        ascent = compile_ascent(
            objective, style, job.size, job.steps, loop, params, targets, keys, features
        )
        log.info(
            "%s: %d filters to render, batch %d on %d device(s), loop %s; compiled in %.1f s",
            job.layer.name,
            len(todo),
            batch,
            jax.local_device_count(),
            loop,
            ascent.compile_seconds,
        )
        return ascent

    ascent, devices = None, jax.local_device_count()
    bar = tqdm(
        total=len(job.filters),
        initial=done,
        unit="filter",
        disable=not job.progress,
        desc=job.layer.name,
        dynamic_ncols=True,
    )
    begin, rendered = time.perf_counter(), 0
    try:
        first = 0
        while first < len(todo):
            chunk = todo[first : first + batch]
            batch_start = time.perf_counter()
            try:
                ascent = ascent or compiled(batch)
                images, loss_start, loss_end = ascent.run(params, *batch_of(chunk, batch))
                images, loss_start, loss_end = map(np.asarray, (images, loss_start, loss_end))
            except jax.errors.JaxRuntimeError as err:
                if "RESOURCE_EXHAUSTED" not in str(err) or job.batch_size or batch <= devices:
                    raise
                batch, ascent = fit_batch(batch // 2, len(todo)), None  # auto: never run out
                log.warning("out of device memory: batch size %d from now on", batch)
                continue
            first += len(chunk)
            with interrupts_deferred():
                for i, k in enumerate(chunk):
                    group = slice(i * copies, (i + 1) * copies)
                    meta["filters"][str(k)] = filter_record(
                        job, k, images[group], loss_start[group], loss_end[group]
                    )
                timing = meta.setdefault("timing", {"filters": 0, "seconds": 0.0})
                timing["filters"] += len(chunk)
                timing["seconds"] += time.perf_counter() - batch_start
                write_json(meta_path, meta)
            rendered += len(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()
        seconds = time.perf_counter() - begin
        if rendered:
            log.info(
                "%s: rendered %d filters in %.1f s (%.2f filters/s after compilation)",
                job.layer.name,
                rendered,
                seconds,
                rendered / seconds,
            )
