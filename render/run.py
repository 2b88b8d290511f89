"""Render one layer: resume what exists, render the rest in compiled batches, stitch atlases."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
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

from render import __version__, algebra
from render.ascent import anchor_penalty, compile_ascent, image_keys
from render.autotune import (
    AUTOTUNE_MIN_WORK,
    TUNE_STEPS,
    on_cpu,
    plan_render,
    recorded_options,
    seconds_per_filter,
    workload_key,
)
from render.batching import (
    auto_batch_size,
    default_loop,
    fit_batch,
    padded,
    replicate_over_devices,
    split_over_devices,
)
from render.display import to_uint8
from render.distributed import my_share
from render.errors import UserError
from render.figures import compose_figure, loss_label, output_figure, save_figure, write_atlases
from render.files import read_png, write_png
from render.metrics import measure_classes, measure_job
from render.objectives import at_input_size, caricature, for_job
from render.runs import SCHEMA_VERSION, png_name, read_metadata, write_metadata
from render.settings import DreamJob, Job, ObjectivesJob
from render.styles import build_style

log = logging.getLogger("render")


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
    """Refuse a second run writing into the same folder at the same time (the processes of
    one distributed run each hold their own)."""
    name = ".lock" if jax.process_count() == 1 else f".lock.{jax.process_index()}"
    with open(os.path.join(folder, name), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another render is writing {folder}: wait for it to finish, or use another "
                "output.root"
            ) from None
        yield


@contextmanager
def records_lock(folder: str, shared: bool):
    """Hold metadata.json for one read-merge-write while other processes of a distributed run
    write it too (a no-op for a single process)."""
    if not shared:
        yield
        return
    with open(os.path.join(folder, ".metadata.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def merged(folder: str, meta: dict, mine: set[str] | None) -> dict:
    """`meta` with the records other processes wrote to disk meanwhile (ours kept for `mine`);
    `meta` itself for a single process."""
    if mine is None:
        return meta
    disk = read_metadata(folder, warn=False)
    if disk is None or disk.get("key") != meta["key"]:
        return meta
    ours = {k: r for k, r in meta["filters"].items() if k in mine}
    return meta | {"filters": disk["filters"] | ours}


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


def filter_record(job: Job, k: int, images, losses_start, losses_end, alpha=None) -> dict:
    """Save one rendered filter (unless it is dead or non-finite) and describe it.

    `images` (D, H, W, 3) are the filter's D diverse images (D = 1 without diversity), saved
    side by side in one PNG; its losses are their means. `alpha` (D, H, W): the style's
    accumulated input-gradient map (style.transparency), saved beside it as <name>_alpha.png
    (and with output.alpha as the alpha of <name>_rgba.png).
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
    if alpha is not None:  # before the image: a saved image means its map is saved too
        from render.styles import transparency_map

        mask = np.concatenate([transparency_map(a) for a in alpha], axis=1)
        write_png(os.path.join(job.out_dir, name[:-4] + "_alpha.png"), mask, text)
        if job.output.get("alpha"):
            rgba = np.concatenate([strip, mask[..., None]], axis=-1)
            write_png(os.path.join(job.out_dir, name[:-4] + "_rgba.png"), rgba, text)
    write_png(os.path.join(job.out_dir, name), strip, text)
    return record | {"status": "ok", "file": name}


def add_timing(meta: dict, count: int, seconds: float) -> None:
    """Count a finished batch in the run's timing (images and seconds of rendering)."""
    timing = meta.setdefault("timing", {"filters": 0, "seconds": 0.0})
    timing["filters"] += count
    timing["seconds"] += seconds


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
        meta = read_metadata(job.out_dir)
        if meta is None or meta.get("key") != job.key:
            meta = {"key": job.key, "layer": job.layer.name, "filters": {}}
        meta |= {"settings": settings, "versions": versions()}
        meta |= {
            "schema": SCHEMA_VERSION,
            "model": job.network.name,
            "layer_index": job.layer.index,
        }
        if job.init is not None:
            meta |= {"init": job.init, "init_weight": job.init_weight}
        records = meta["filters"]
        done = finished_filters(job, records)
        todo = my_share([k for k in job.filters if k not in done])
        mine = {str(k) for k in todo} if jax.process_count() > 1 else None
        if done:
            log.info(
                "%d of %d filters already rendered in %s", len(done), len(job.filters), job.out_dir
            )
        phases = {"measuring": 0.0, "compiling": 0.0, "rendering": 0.0}
        options = recorded_options(meta.get("autotune"))  # the render's kernel library
        if todo:
            phases, options = _render(job, params, todo, meta, len(done), mine)
        with records_lock(job.out_dir, mine is not None):  # metrics and atlases see every record
            meta = merged(job.out_dir, meta, mine)
            records = meta["filters"]
            begin = time.perf_counter()
            if job.objective == "class":
                measure_classes(job, params, records, options)
            elif job.metrics.get("measure"):
                measure_job(job, params, records, options)
            phases["metrics"] = time.perf_counter() - begin
            begin = time.perf_counter()
            write_atlases(job, records)
            phases["atlases"] = time.perf_counter() - begin
            meta["phases_s"] = {name: round(seconds, 3) for name, seconds in phases.items()}
            write_metadata(job.out_dir, meta)
        log.info(
            "%s: %.1f s in this process: %s",
            job.layer.name,
            sum(phases.values()),
            ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items()),
        )
        dead = sorted(int(k) for k, r in records.items() if r["status"] == "dead")
        if dead:
            log.info("dead filters (activation stayed at zero, no image): %s", dead)
        return meta


def tuned_network(job: Job, filters: int, time_per_filter) -> tuple:
    """The job's network with this host's measured convolution forms, and the plan behind them
    (None with autotune=false). autotune=auto measures on a cache miss only for runs large
    enough to repay it; smaller ones use the cached choices or the defaults."""
    if job.autotune == "false":
        return job.network, None
    measure = job.autotune == "true" or filters * job.steps >= AUTOTUNE_MIN_WORK
    network, plan = plan_render(
        job.network,
        job.layer,
        job.size,
        filters,
        workload_key(job.style, job.precision, job.objective),
        time_per_filter,
        job.cache_dir,
        job.batch_size,
        measure,
    )
    if plan.source == "defaults" and not measure and on_cpu():
        log.info(
            "%s: built-in choices: %d filter-steps are too few to repay measuring this host "
            "(autotune=auto measures from %d; autotune=true measures now)",
            job.layer.name,
            filters * job.steps,
            AUTOTUNE_MIN_WORK,
        )
    return network, plan


def _render(
    job: Job,
    params,
    todo: list[int],
    meta: dict,
    done: int,
    mine: set[str] | None = None,
) -> tuple[dict[str, float], dict | None]:
    """Render `todo` into the job's folder; returns the seconds spent measuring this host's
    choices, compiling and rendering, and the compiler options it ran with."""
    # the batch shape of a fresh run, even when resuming a few filters: XLA's arithmetic may
    # differ between batch shapes, and pixels must not depend on what was already on disk
    wanted = len(job.filters)
    loop = job.loop if job.loop != "auto" else default_loop(jax.default_backend())
    style = build_style(job.style, job.step_size, job.network.convention)
    params = replicate_over_devices(params)
    copies = style.diversity

    def batch_of(chunk, batch):
        targets = split_over_devices(np.repeat(padded(chunk, batch), copies))
        return targets, image_keys(job.seed, job.layer.index, targets, copies)

    features = None
    if copies > 1:  # diversity compares the images' features one layer below the target
        below = [
            layer.name
            for layer in job.network.layers[: job.layer.index]
            if layer.visualizable and layer.kind == "conv"
        ]
        if not below:
            features = lambda params, images: images  # noqa: E731
        else:
            features = lambda params, images: job.network.features(params, images, below[-1])  # noqa: E731

    def time_per_filter(candidate, batch, compiler_options):
        targets, keys = batch_of(todo[:batch], batch)
        candidate_objective = for_job(candidate, job.objective, job.layer.name, job.class_output)
        ascent = compile_ascent(
            candidate_objective,
            style,
            job.size,
            TUNE_STEPS,
            loop,
            params,
            targets,
            keys,
            features,
            **photo_start(job, len(targets)),
            compiler_options=compiler_options,
        )
        return seconds_per_filter(lambda: ascent.run(params, targets, keys), batch)

    network, plan = tuned_network(job, wanted, time_per_filter)
    if plan is not None:
        meta["autotune"] = plan.record()
    batch = (
        plan.batch
        if plan
        else fit_batch(
            job.batch_size or auto_batch_size(network, job.layer, job.size, wanted), wanted
        )
    )
    objective = for_job(network, job.objective, job.layer.name, job.class_output)

    def compiled(batch):
        targets, keys = batch_of(todo[:batch], batch)
        extra = photo_start(job, len(targets))  # {} without init=: the call stays as it was
        options = plan.compiler_options if plan else None
        ascent = compile_ascent(
            objective,
            style,
            job.size,
            job.steps,
            loop,
            params,
            targets,
            keys,
            features,
            **extra,
            compiler_options=options,
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

    phases = {"measuring": plan.measured_s if plan else 0.0, "compiling": 0.0, "rendering": 0.0}
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
                if ascent is None:
                    ascent = compiled(batch)
                    phases["compiling"] += ascent.compile_seconds
                images, loss_start, loss_end, *alpha = ascent.run(params, *batch_of(chunk, batch))
                alpha = np.asarray(alpha[0]) if alpha else None
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
                        job,
                        k,
                        images[group],
                        loss_start[group],
                        loss_end[group],
                        None if alpha is None else alpha[group],
                    )
                add_timing(meta, len(chunk), time.perf_counter() - batch_start)
                with records_lock(job.out_dir, mine is not None):
                    write_metadata(job.out_dir, merged(job.out_dir, meta, mine))
            rendered += len(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()
        phases["rendering"] = time.perf_counter() - begin - phases["compiling"]
        if rendered:
            log.info(
                "%s: rendered %d filters in %.1f s (%.2f filters/s after compilation)",
                job.layer.name,
                rendered,
                phases["rendering"],
                rendered / phases["rendering"],
            )
    return phases, plan.compiler_options if plan else None


# ---- photos as a start ---------------------------------------------------------------------


def photo_input(path: str, size: int, convention) -> np.ndarray:
    """A photo as a (size, size, 3) network input: its centred square, resized (Lanczos)."""
    from PIL import Image, ImageOps

    from render.dream import read_photo

    square = ImageOps.fit(Image.fromarray(read_photo(path)), (size, size), Image.Resampling.LANCZOS)
    return convention.to_input(np.asarray(square, np.float32))


def photo_start(job, batch: int) -> dict:
    """compile_ascent's `start` (and `penalty`, with init_weight) for a job that starts from a
    photo (init=, or a caricature's photo); {} for one that starts from noise."""
    if job.init is None:
        return {}
    convention = job.network.convention
    photo = photo_input(job.init, job.size, convention)
    start = np.ascontiguousarray(np.broadcast_to(photo, (batch, *photo.shape)))
    extra = {"start": split_over_devices(start)}
    if job.init_weight:
        extra["penalty"] = anchor_penalty(photo, job.init_weight, convention)
    return extra


# ---- objective expressions: objectives=, interpolate=, caricature= -------------------------

OBJECTIVE_STREAM = 1 << 20  # the key stream of expression starts (filters use the layer index)
PNG_PREFIX = {"objectives": "objective", "interpolate": "frame", "caricature": "caricature"}
STRIP = "interpolation.png"


def objective_png_name(job: ObjectivesJob, index: int) -> str:
    return f"{PNG_PREFIX[job.kind]}_{index:04d}.png"


def start_number(text: str) -> int:
    """A start's key from its expression alone: the same expression starts from the same
    image in any list, batch or position."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def finished_objectives(job: ObjectivesJob, records: dict) -> set[int]:
    """Images whose record and PNG are complete and belong to this configuration."""
    done = set()
    for i, text in enumerate(job.expressions):
        record = records.get(str(i))
        if not isinstance(record, dict) or record.get("objective") != text:
            continue
        if record.get("status") != "ok":
            done.add(i)  # dead or non-finite: deterministic
            continue
        png = read_png(os.path.join(job.out_dir, record.get("file") or ""))
        if png and png[1].get("render:key") == job.key and png[1].get("render:index") == str(i):
            done.add(i)
    return done


def _can_be_dead(objective, network) -> bool:
    """A zero loss means a ReLU channel that never fired only for a lone channel term (not a
    class logit, a neuron or a sum)."""
    if objective is None or len(objective.terms) != 1:
        return False
    term = objective.terms[0]
    return type(term) is algebra.Channel and term.layer != network.head


def objective_record(
    job: ObjectivesJob, index: int, objective, image, loss_start: float, loss_end: float
) -> dict:
    """Save one rendered objective (unless dead or non-finite) and describe it."""
    text = job.expressions[index]
    record = {
        "filter": index,  # the gallery's tile number
        "objective": text,
        "seed": job.seed,
        "loss_start": float(loss_start),
        "loss_end": float(loss_end),
        "file": None,
    }
    if not (np.isfinite(loss_end) and np.isfinite(image).all()):
        return record | {"status": "nonfinite"}
    if _can_be_dead(objective, job.network) and loss_end == 0:
        weight = float(np.asarray(objective.weights[0]))
        if weight > 0 or loss_start == 0:  # the channel's activation stayed exactly 0
            return record | {"status": "dead"}
    name = objective_png_name(job, index)
    tags = {
        "render:key": job.key,
        "render:objective": text,
        "render:index": str(index),
        "render:loss": f"{loss_end:.6g}",
        "Software": f"render {__version__}",
    }
    pixels = to_uint8(image, job.style["display"], job.network.convention)
    write_png(os.path.join(job.out_dir, name), pixels, tags)
    return record | {"status": "ok", "file": name}


def render_objectives(job: ObjectivesJob, params, settings: dict) -> dict:
    """Render every missing image of an objectives, interpolate or caricature job; returns the
    metadata written."""
    os.makedirs(job.out_dir, exist_ok=True)
    with folder_lock(job.out_dir):
        remove_stale_temporaries(job.out_dir)
        meta = read_metadata(job.out_dir)
        if (
            not isinstance(meta, dict)
            or meta.get("key") != job.key
            or not isinstance(meta.get("filters"), dict)
        ):
            meta = {"key": job.key, "filters": {}}
        meta |= {"kind": job.kind, "objectives": job.expressions, "layer": job.layer.name}
        meta |= {"settings": settings, "versions": versions()}
        meta |= {
            "schema": SCHEMA_VERSION,
            "model": job.network.name,
            "layer_index": job.layer.index,
            "size": job.size,
        }
        if job.init is not None:
            photo = "caricature" if job.kind == "caricature" else "init"
            meta |= {photo: job.init, "init_weight": job.init_weight}
        if job.kind == "caricature":
            meta["cosine"] = job.cosine
        if job.kind == "interpolate":
            meta |= {"interpolate": job.sources, "frames": job.frames}
            meta["alignment"] = job.alignment
        records = meta["filters"]
        for stale in set(records) - {str(i) for i in range(len(job.expressions))}:
            del records[stale]
        done = finished_objectives(job, records)
        if job.kind == "interpolate" and len(done) < len(job.expressions):
            done = set()  # the frames are one batch: all of them or none
        todo = [i for i in range(len(job.expressions)) if i not in done]
        if done:
            log.info(
                "%d of %d objectives already rendered in %s",
                len(done),
                len(job.expressions),
                job.out_dir,
            )
        if todo:
            _render_objectives(job, params, todo, meta, len(done))
        write_metadata(job.out_dir, meta)
        write_objective_atlas(job, records)
        if job.kind == "interpolate":
            write_strip(job, records)
        return meta


def _render_objectives(job: ObjectivesJob, params, todo: list[int], meta: dict, done: int) -> None:
    network = job.network
    loop = job.loop if job.loop != "auto" else default_loop(jax.default_backend())
    style = build_style(job.style, job.step_size, network.convention)
    params = replicate_over_devices(params)
    objectives = job.objectives
    if job.kind == "caricature":
        photo = photo_input(job.init, job.size, network.convention)
        objectives = [caricature(network, params, photo, job.layer.name, job.cosine)]
    if job.kind == "objectives":
        numbers = [start_number(text) for text in job.expressions]
    else:  # one shared start: every frame of an interpolation begins from the same image
        numbers = [start_number(f"{job.kind}:{'|'.join(job.sources)}")] * len(objectives)
    devices, wanted = jax.local_device_count(), set(todo)
    bar = tqdm(
        total=len(job.expressions),
        initial=done,
        unit="objective",
        disable=not job.progress,
        desc=job.kind,
        dynamic_ncols=True,
    )
    begin, rendered = time.perf_counter(), 0
    try:
        for indices, stacked in algebra.group(objectives):
            chunks = [j for j, i in enumerate(indices) if i in wanted]  # entries of the stack
            if not chunks:
                continue
            deepest = max(
                (next(x for x in network.layers if x.name == name) for name in stacked.reads),
                key=lambda x: x.index,
            )
            if job.kind == "interpolate":  # one batch, in order: the alignment spans it
                batch = fit_batch(len(indices), len(indices))
            else:  # a fresh run's batch shape, even when resuming a few
                batch = fit_batch(
                    job.batch_size or auto_batch_size(network, deepest, job.size, len(indices)),
                    len(indices),
                )
            loss = algebra.as_loss(stacked, network)
            if any(layer == network.head for layer in stacked.reads):
                loss = at_input_size(loss, network)

            def batch_of(chunk, batch, indices=indices):
                targets = padded(chunk, batch)
                starts = np.asarray([numbers[indices[t]] for t in targets], np.int32)
                keys = image_keys(job.seed, OBJECTIVE_STREAM, split_over_devices(starts))
                return split_over_devices(targets), keys

            def compiled(batch, chunks=chunks, loss=loss, batch_of=batch_of, indices=indices):
                targets, keys = batch_of(chunks[:batch], batch)
                extra = photo_start(job, len(targets))
                ascent = compile_ascent(
                    loss, style, job.size, job.steps, loop, params, targets, keys, **extra
                )
                log.info(
                    "%s: %d of %d objectives of one structure to render, batch %d on %d "
                    "device(s), loop %s; compiled in %.1f s",
                    job.kind,
                    len(chunks),
                    len(indices),
                    batch,
                    devices,
                    loop,
                    ascent.compile_seconds,
                )
                return ascent

            ascent, first = None, 0
            while first < len(chunks):
                chunk = chunks[first : first + batch]
                batch_start = time.perf_counter()
                try:
                    ascent = ascent or compiled(batch)
                    result = ascent.run(params, *batch_of(chunk, batch))
                    images, loss_start, loss_end = map(np.asarray, result[:3])
                except jax.errors.JaxRuntimeError as err:
                    if (
                        "RESOURCE_EXHAUSTED" not in str(err)
                        or job.batch_size
                        or batch <= devices
                        or job.kind == "interpolate"
                    ):
                        raise
                    batch, ascent = fit_batch(batch // 2, len(chunks)), None
                    log.warning("out of device memory: batch size %d from now on", batch)
                    continue
                first += len(chunk)
                with interrupts_deferred():
                    for row, j in enumerate(chunk):
                        i = indices[j]
                        meta["filters"][str(i)] = objective_record(
                            job, i, objectives[i], images[row], loss_start[row], loss_end[row]
                        )
                    add_timing(meta, len(chunk), time.perf_counter() - batch_start)
                    write_metadata(job.out_dir, meta)
                rendered += len(chunk)
                bar.update(len(chunk))
    finally:
        bar.close()
        seconds = time.perf_counter() - begin
        if rendered:
            log.info(
                "%s: rendered %d objectives in %.1f s (%.2f objectives/s after compilation)",
                job.kind,
                rendered,
                seconds,
                rendered / seconds,
            )


def objective_labels(job: ObjectivesJob, records: dict, kind: str) -> list[str]:
    """Under each tile: the expression (label_kind objective or index), its final loss
    (loss) or both."""
    labels = []
    for i, text in enumerate(job.expressions):
        record = records.get(str(i)) or {}
        loss = loss_label(record["loss_end"]) if "loss_end" in record else ""
        labels.append(
            loss if kind == "loss" else f"{text}: {loss}" if kind == "both" and loss else text
        )
    return labels


def _tiles(job: ObjectivesJob, records: dict) -> list:
    tiles = []
    for i in range(len(job.expressions)):
        file = (records.get(str(i)) or {}).get("file")
        png = read_png(os.path.join(job.out_dir, file)) if file else None
        tiles.append(png[0] if png else None)
    return tiles


def write_objective_atlas(job: ObjectivesJob, records: dict) -> None:
    """atlas.png: every image in the order given, labelled by expression with output.labels."""
    tiles = _tiles(job, records)
    if not any(tile is not None for tile in tiles):
        log.warning("no objective produced an image; no atlas written")
        return
    out = job.output
    labels = objective_labels(job, records, out["label_kind"]) if out["labels"] else None
    figure = output_figure(tiles, labels, out["cols"], out, job.size)
    save_figure(os.path.join(job.out_dir, "atlas.png"), figure, out["dpi"])
    if out["pdf"]:
        save_figure(os.path.join(job.out_dir, "atlas.pdf"), figure, out["dpi"])


def write_strip(job: ObjectivesJob, records: dict) -> None:
    """interpolation.png: the frames side by side, first to last (an empty cell for a frame
    without an image)."""
    tiles = _tiles(job, records)
    shape = next((tile.shape for tile in tiles if tile is not None), None)
    if shape is None:
        return
    blank = np.zeros(shape, np.uint8)
    blank[:] = job.output["background"]
    strip = np.concatenate([blank if tile is None else tile for tile in tiles], axis=1)
    text = {"render:key": job.key, "render:interpolate": " -> ".join(job.sources)}
    write_png(os.path.join(job.out_dir, STRIP), strip, text)


# ---- deep dream: objective=dream image=... -------------------------------------------------

DREAM_TILE = 512  # atlas.png of a dream run: each photo shrunk to fit this side


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def dream_record(job: DreamJob, number: int, path: str, name: str, image, losses: dict) -> dict:
    """Save one dreamed photo (unless its ascent went non-finite) and describe it: its source,
    PNG, loss at the start of the first octave and the end of the last, and per octave its
    shape, start and end loss and the steps taken."""
    from render.networks import file_identity

    octaves = [
        {"shape": list(shape), "loss_start": _finite(a), "loss_end": _finite(b), "steps": n}
        for shape, a, b, n in zip(
            losses["shape"], losses["start"], losses["end"], losses["steps"], strict=True
        )
    ]
    record = {
        "filter": number,  # the gallery's tile number: the photo's place in this folder
        "source": os.path.abspath(path),
        "source_id": file_identity(path),
        "loss_start": float(losses["start"][0]),
        "loss_end": float(losses["end"][-1]),
        "octaves": octaves,
        "size": [int(image.shape[0]), int(image.shape[1])],
        "file": None,
    }
    if not np.isfinite([losses["start"] + losses["end"]]).all():
        return record | {"status": "nonfinite"}
    tags = {
        "render:key": job.key,
        "render:source": record["source"],
        "render:loss": f"{record['loss_end']:.6g}",
        "Software": f"render {__version__}",
    }
    write_png(os.path.join(job.out_dir, name), image, tags)
    return record | {"status": "ok", "file": name}


def dream_done(job: DreamJob, record: dict | None, path: str) -> bool:
    """Whether a photo's record and PNG are complete for this configuration and this very file
    (its path, size and date); a photo that failed to read is tried again."""
    from render.networks import file_identity

    if not isinstance(record, dict) or record.get("source_id") != file_identity(path):
        return False
    if record.get("status") == "nonfinite":
        return True  # deterministic: dreaming it again gives the same
    if record.get("status") != "ok":
        return False
    png = read_png(os.path.join(job.out_dir, record.get("file") or ""))
    source = os.path.abspath(path)
    return (
        bool(png) and png[1].get("render:key") == job.key and png[1].get("render:source") == source
    )


def render_dreams(job: DreamJob, params, settings: dict) -> list[tuple[str, str | None]]:
    """Dream every photo of the job into its run folder; (path, one-line error or None) per
    photo, in order. A bad photo is its error and the others still complete.

    The folder is that of the dream settings: photos dreamed by other commands with the same
    settings stay, each one record of metadata.json (keyed by its number in the folder) and
    one PNG. A photo whose record and PNG are complete (same run key, same file) is skipped, so
    the same command again does nothing; metadata.json is written after every photo, and
    atlas.png shows every dreamed photo of the folder.
    """
    from render.dream import dream, output_names, read_photo

    os.makedirs(job.out_dir, exist_ok=True)
    with folder_lock(job.out_dir):
        remove_stale_temporaries(job.out_dir)
        meta = read_metadata(job.out_dir)
        if meta is None or meta.get("key") != job.key:
            meta = {"key": job.key, "filters": {}}
        options = dataclasses.asdict(job.settings) | {"max_side": job.max_side}
        meta |= {"kind": "dream", "layer": "dream", "dream": options}
        meta |= {"settings": settings, "versions": versions()}
        meta |= {"schema": SCHEMA_VERSION, "model": job.network.name}
        records = {k: r for k, r in meta["filters"].items() if isinstance(r, dict) and k.isdigit()}
        meta["filters"] = records
        number_of = {r.get("source"): int(k) for k, r in records.items()}
        sources = [os.path.abspath(path) for path in job.photos]
        numbers, next_free = [], max(map(int, records), default=-1) + 1
        for source in sources:  # a photo keeps its number; a new one takes the next
            if source not in number_of:
                number_of[source], next_free = next_free, next_free + 1
            numbers.append(number_of[source])
        names = {n: (records.get(str(n)) or {}).get("file") for n in numbers}
        taken = [r["file"] for r in records.values() if r.get("file")]
        fresh = [s for s, n in zip(sources, numbers, strict=True) if not names[n]]
        fresh_names = output_names(fresh, taken)
        names |= {number_of[s]: name for s, name in zip(fresh, fresh_names, strict=True)}
        todo = [
            i
            for i, (path, n) in enumerate(zip(job.photos, numbers, strict=True))
            if not dream_done(job, records.get(str(n)), path)
        ]
        done = len(job.photos) - len(todo)
        if done:
            log.info("%d of %d photos already dreamed in %s", done, len(job.photos), job.out_dir)
        errors: dict[int, str] = {}
        bar = tqdm(
            total=len(job.photos),
            initial=done,
            unit="photo",
            disable=not job.progress,
            desc="dream",
            dynamic_ncols=True,
        )
        try:
            for i in todo:
                path, n, begin = job.photos[i], numbers[i], time.perf_counter()
                try:
                    photo = read_photo(path, job.settings, job.max_side, job.network)
                    image, losses = dream(params, job.network, photo, job.settings, job.loop)
                except UserError as err:
                    errors[i] = str(err)
                    record = {"filter": n, "source": sources[i], "file": None}
                    record |= {"status": "error", "error": errors[i]}
                else:
                    with interrupts_deferred():
                        record = dream_record(job, n, path, names[n], image, losses)
                    if record["status"] != "ok":
                        errors[i] = (
                            f"dreaming {path} diverged (non-finite loss): use a smaller "
                            "dream.step_size"
                        )
                with interrupts_deferred():
                    records[str(n)] = record
                    timing = meta.setdefault("timing", {"filters": 0, "seconds": 0.0})
                    timing["filters"] += 1
                    timing["seconds"] += time.perf_counter() - begin
                    write_metadata(job.out_dir, meta)
                bar.update(1)
        finally:
            bar.close()
        write_metadata(job.out_dir, meta)
        write_dream_atlas(job, records)
    return [(path, errors.get(i)) for i, path in enumerate(job.photos)]


def write_dream_atlas(job: DreamJob, records: dict) -> None:
    """atlas.png: every dreamed photo of the folder in number order, each shrunk to fit
    DREAM_TILE px and centred in a cell as large as the largest (labels: the photo's name)."""
    from PIL import Image

    shown = []
    for k in sorted(records, key=int):
        record = records[k]
        png = read_png(os.path.join(job.out_dir, record["file"])) if record.get("file") else None
        if png is not None:
            image = Image.fromarray(png[0])
            image.thumbnail((DREAM_TILE, DREAM_TILE), Image.Resampling.LANCZOS)
            shown.append((record, np.asarray(image)))
    if not shown:
        log.warning("no photo was dreamed; no atlas written")
        return
    out = job.output
    background = tuple(out.get("background", (0, 0, 0)))
    height = max(tile.shape[0] for _, tile in shown)
    width = max(tile.shape[1] for _, tile in shown)
    tiles = []
    for _, tile in shown:
        cell = np.empty((height, width, 3), np.uint8)
        cell[:] = background
        y, x = (height - tile.shape[0]) // 2, (width - tile.shape[1]) // 2
        cell[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        tiles.append(cell)
    labels = None
    if out.get("labels"):
        kind = out.get("label_kind", "index")
        labels = []
        for record, _ in shown:
            name = os.path.basename(record["source"])
            loss = loss_label(record["loss_end"])
            labels.append(loss if kind == "loss" else f"{name}: {loss}" if kind == "both" else name)
    scale = out.get("scale", 1)
    figure = compose_figure(
        tiles,
        labels,
        out.get("cols"),
        out.get("margin", 5),
        background,
        tuple(out["margin_color"]) if out.get("margin_color") else None,
        out.get("title"),
        scale,
        tuple(out.get("label_color", (255, 255, 255))),
        out.get("font_size") or max(10, height * scale // 8),
    )
    save_figure(os.path.join(job.out_dir, "atlas.png"), figure, out.get("dpi"))
    if out.get("pdf"):
        save_figure(os.path.join(job.out_dir, "atlas.pdf"), figure, out.get("dpi"))
