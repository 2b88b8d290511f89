"""Compare styles on the same filters: quality, robustness and cost in one table.

    python -m render.compare --layers block3_conv1,block4_conv3,block5_conv2 --filters 0-31 \\
        --styles "chollet2016;olah2017;olah2017_256;fel2023" \\
        -- weights=/tmp/real-vgg16/vgg16_notop_keras.h5

Styles are separated by ';', each optionally followed by settings of its own ("olah2017
steps=64"; the whole text labels its rows); everything after `--` is passed to `python -m
render` for every style (any of its settings). Per layer and style: steps and rendering seconds
per filter (the cost), filters whose image beats every natural-photo crop, the median ratio to
the best crop, filters whose image is their strongest stimulus among the layer's renders, dead
filters, and the median robustness (activation on random views of the image over the image's
own) with the median ratio to the best crop under those views.

`--trace` renders in this process instead (nothing is written to the run folders) and reads
each run's own intermediate images every `--every` steps: per filter, the first step at which
its image beats every natural crop and the first at which its ratio reaches `--ratio`; the table
adds their medians in steps and seconds (over the filters that get there, whose share is in
brackets), and `--json` keeps every filter's trajectory. For a style whose schedule depends on
the run's length (a learning-rate decay, MACO's shrinking crops), an intermediate image is that
run's, not what a shorter run would give. The final images are written as PNGs under
`--trace-dir` for side-by-side figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

from render.cli import compose_config, fail
from render.errors import UserError
from render.files import write_json
from render.runs import read_metadata, write_metadata
from render.settings import make_job, register_resolvers


def parse_styles(text: str) -> list[tuple[str, str, list[str]]]:
    """(label, style, settings) of each ';'-separated style ("olah2017 steps=64")."""
    specs = [" ".join(s.split()) for s in text.split(";") if s.strip()]
    if len(set(specs)) != len(specs):
        raise UserError(f"--styles names a style twice: {text}")
    return [(spec, spec.split()[0], spec.split()[1:]) for spec in specs]


def run_folder_job(layer: str, style: str, filters: str, extra: list[str]):
    """(composed settings, checked job) of one render command."""
    register_resolvers()
    cfg = compose_config([f"style={style}", f"layer={layer}", f"filters={filters}", *extra])
    return cfg, make_job(cfg)


def seconds_per_filter(meta: dict, folder: str) -> float | None:
    timing = meta.get("timing")
    if timing and timing["filters"]:
        return timing["seconds"] / timing["filters"]
    try:  # runs from before timing was recorded: their log says it
        with open(os.path.join(folder, "render.log"), encoding="utf-8") as log:
            found = re.findall(r"rendered (\d+) filters in ([\d.]+) s", log.read())
    except OSError:
        return None
    count = sum(int(n) for n, _ in found)
    return sum(float(s) for _, s in found) / count if count else None


def ensure_metrics(cfg, job, meta: dict) -> None:
    """Measure records that predate the metrics (written back to metadata.json)."""
    records = meta["filters"]
    wanted = ("activation", "robustness")
    if all(all(w in r for w in wanted) for r in records.values() if r["status"] == "ok"):
        return
    from render.autotune import recorded_options
    from render.metrics import measure_job
    from render.networks import load_network

    params = load_network(cfg).params
    measure_job(job, params, records, recorded_options(meta.get("autotune")))
    write_metadata(job.out_dir, meta)


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def table_row(job, meta: dict, label: str | None = None) -> dict:
    records = [meta["filters"][str(k)] for k in job.filters if str(k) in meta["filters"]]
    ok = [r for r in records if r["status"] == "ok"]
    count = max(1, len(records))
    return {
        "layer": job.layer.name,
        "style": label or job.style["name"],
        "filters": len(records),
        "steps": job.steps,
        "beats_all_natural": sum(r.get("beats_natural", False) for r in ok) / count,
        "median_ratio": _median([r.get("ratio_to_natural") for r in ok]),
        "best_stimulus": sum(r.get("best_stimulus", False) for r in ok) / count,
        "dead": sum(r["status"] == "dead" for r in records),
        "robustness": _median([r.get("robustness") for r in ok]),
        "ratio_views": _median([r.get("ratio_to_natural_views") for r in ok]),
        "seconds_per_filter": seconds_per_filter(meta, job.out_dir),
        "folder": job.out_dir,
    }


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    width = max([13] + [len(r["style"]) + 2 for r in rows])
    trace = any("steps_to_beat" in r for r in rows)
    head = (
        f"{'layer':<14}{'style':<{width}}{'filters':>8}{'steps':>7}{'s/filter':>10}"
        f"{'beat all crops':>15}{'median ratio':>13}{'best stimulus':>14}{'dead':>6}"
        f"{'robustness':>11}{'ratio (views)':>14}"
    )
    if trace:  # medians over the filters that get there (their share in brackets)
        head += f"{'steps to beat':>20}{'s to beat':>10}{'steps to ratio':>21}{'s to ratio':>11}"
    print(head)
    for r in rows:
        line = (
            f"{r['layer']:<14}{r['style']:<{width}}{r['filters']:>8}{r['steps']:>7}"
            f"{_number(r['seconds_per_filter'], '.2f'):>10}{r['beats_all_natural']:>15.0%}"
            f"{_number(r['median_ratio'], '.2f'):>13}{r['best_stimulus']:>14.0%}{r['dead']:>6}"
            f"{_number(r['robustness'], '.2f'):>11}{_number(r['ratio_views'], '.2f'):>14}"
        )
        if trace:
            beat = f"{_number(r.get('steps_to_beat'), '.0f')} ({r.get('reached_beat', 0):.0%})"
            ratio = f"{_number(r.get('steps_to_ratio'), '.0f')} ({r.get('reached_ratio', 0):.0%})"
            line += (
                f"{beat:>20}{_number(r.get('seconds_to_beat'), '.2f'):>10}"
                f"{ratio:>21}{_number(r.get('seconds_to_ratio'), '.2f'):>11}"
            )
        print(line)


def first_step(trajectory: list[tuple[int, float | None]], goal: float) -> int | None:
    """The first recorded step whose ratio to the best natural crop exceeds `goal`."""
    return next((s for s, ratio in trajectory if ratio is not None and ratio > goal), None)


def trace_job(cfg, job, label: str, every: int, goal: float, out_root: str | None) -> dict:
    """Render the job's filters in this process, measuring each run's images every `every`
    steps; the table row with time-to-quality, and every filter's trajectory."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from render.ascent import compile_ascent, image_keys
    from render.batching import auto_batch_size, default_loop, fit_batch, padded
    from render.display import to_uint8
    from render.files import write_png
    from render.metrics import channel_means, natural_maxima, own_channel_means, reference_crops
    from render.networks import load_network
    from render.objectives import for_job
    from render.styles import build_style

    if job.objective != "filters":
        raise UserError("--trace measures filter renders: use objective=filters")
    network, layer = job.network, job.layer.name
    style = build_style(job.style, job.step_size, network.convention)
    if style.diversity > 1:
        raise UserError("--trace renders one image per filter: use style.diversity=1")
    params = load_network(cfg).params
    reference = job.metrics.get("reference")
    crops = reference_crops(os.path.expanduser(reference) if reference else None)
    natural = natural_maxima(params, network, layer, crops, job.cache_dir)
    objective = for_job(network, job.objective, layer, job.class_output)
    wanted = len(job.filters)
    batch = job.batch_size or auto_batch_size(network, job.layer, job.size, wanted)
    batch = fit_batch(batch, wanted)
    if jax.local_device_count() > 1 or default_loop(jax.default_backend()) != "python":
        raise UserError("--trace reads each step's images in the Python step loop: run it on CPU")
    trajectories: dict[int, list] = {k: [] for k in job.filters}
    finals, losses = {}, {}
    render_seconds = measure_seconds = compile_seconds = 0.0
    ascent = None
    for first in range(0, wanted, batch):
        chunk = job.filters[first : first + batch]
        targets = padded(chunk, batch)
        keys = image_keys(job.seed, job.layer.index, jnp.asarray(targets))
        if ascent is None:
            ascent = compile_ascent(
                objective, style, job.size, job.steps, "python", params, targets, keys
            )
            compile_seconds = ascent.compile_seconds

        def observe(step, images, chunk=chunk, targets=targets):
            nonlocal measure_seconds
            images = jax.block_until_ready(images)  # the wait for the steps is render time
            begin = time.perf_counter()
            pixels = np.stack(
                [to_uint8(x, job.style["display"], network.convention) for x in np.asarray(images)]
            )
            acts = own_channel_means(params, network, layer, pixels, targets)
            for i, k in enumerate(chunk):
                ratio = float(acts[i] / natural[k]) if natural[k] > 0 else None
                trajectories[k].append((step, ratio))
                if step == job.steps:
                    finals[k] = pixels[i]
            measure_seconds += time.perf_counter() - begin

        begin, before = time.perf_counter(), measure_seconds
        _, _, end, *_ = jax.block_until_ready(
            ascent.run(params, targets, keys, observe=observe, every=every)
        )
        render_seconds += time.perf_counter() - begin - (measure_seconds - before)
        for i, k in enumerate(chunk):
            losses[k] = float(np.asarray(end)[i])
    per_filter = render_seconds / wanted
    meta = {"filters": {}, "timing": {"filters": wanted, "seconds": render_seconds}}
    live = [k for k in job.filters if losses[k] > 0 and np.isfinite(losses[k])]
    folder = None
    if out_root:
        slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", label)
        folder = os.path.join(out_root, layer, slug)
        os.makedirs(folder, exist_ok=True)
    if live:
        from render.metrics import ROBUSTNESS_VIEWS, view_activations

        images = np.stack([finals[k] for k in live])
        on_renders = channel_means(params, network, layer, images)
        strongest = on_renders.argmax(axis=0)
        channels = np.asarray(live, np.int32)
        views = max(1, job.metrics.get("views", ROBUSTNESS_VIEWS))
        on_views = view_activations(params, network, layer, images, channels, views)
    for k in job.filters:
        record = {"filter": k, "status": "ok" if k in live else "dead", "loss_end": losses[k]}
        if k in live:
            row = live.index(k)
            activation, nat = float(on_renders[row, k]), float(natural[k])
            record |= {
                "activation": activation,
                "natural_max": nat,
                "ratio_to_natural": activation / nat if nat > 0 else None,
                "beats_natural": activation > nat,
                "best_stimulus": bool(strongest[k] == row),
                "robustness": float(on_views[row]) / activation if activation > 0 else None,
                "ratio_to_natural_views": float(on_views[row]) / nat if nat > 0 else None,
                "step_beats_natural": first_step(trajectories[k], 1.0),
                "step_reaches_ratio": first_step(trajectories[k], goal),
            }
            if folder:
                record["file"] = f"{layer}_{k:04d}.png"
                write_png(os.path.join(folder, record["file"]), finals[k])
        record["trajectory"] = trajectories[k]
        meta["filters"][str(k)] = record
    row = table_row(job, meta, label)
    beat = [meta["filters"][str(k)].get("step_beats_natural") for k in job.filters]
    reach = [meta["filters"][str(k)].get("step_reaches_ratio") for k in job.filters]
    per_step = per_filter / job.steps
    row |= {  # medians over the filters that get there; `reached_*`: their share of all
        "seconds_per_filter": per_filter,
        "compile_seconds": compile_seconds,
        "steps_to_beat": _median(beat),
        "seconds_to_beat": None if _median(beat) is None else _median(beat) * per_step,
        "reached_beat": sum(s is not None for s in beat) / len(beat),
        "steps_to_ratio": _median(reach),
        "seconds_to_ratio": None if _median(reach) is None else _median(reach) * per_step,
        "reached_ratio": sum(s is not None for s in reach) / len(reach),
        "ratio_goal": goal,
        "every": every,
        "folder": folder,
        "trace": {k: meta["filters"][k] for k in meta["filters"]},
    }
    if folder:
        write_json(os.path.join(folder, "trace.json"), row)
    return row


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    own, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(
        prog="python -m render.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--layers", default="block3_conv1,block4_conv3,block5_conv2")
    parser.add_argument("--filters", default="0-31")
    parser.add_argument(
        "--styles",
        default="chollet2016;olah2017",
        help="';'-separated styles, each with optional settings: 'olah2017 steps=128'",
    )
    parser.add_argument("--no-render", action="store_true", help="only measure what exists")
    parser.add_argument("--json", help="also write the table to this file")
    parser.add_argument(
        "--trace", action="store_true", help="time to quality from each run's own images"
    )
    parser.add_argument("--every", type=int, default=16, help="--trace: steps between checks")
    parser.add_argument(
        "--ratio", type=float, default=30.0, help="--trace: the ratio to the best crop to reach"
    )
    parser.add_argument(
        "--trace-dir", default="outputs/traces", help="--trace: where final images go ('' none)"
    )
    args = parser.parse_args(own)
    layers = args.layers.split(",")
    try:
        if args.every < 1:
            raise UserError(f"--every={args.every} is invalid: use a whole number >= 1")
        specs = parse_styles(args.styles)
        jobs = {
            (layer, label): run_folder_job(layer, style, args.filters, settings + extra)
            for label, style, settings in specs
            for layer in layers
        }
        order = {label: i for i, (label, _, _) in enumerate(specs)}
        for label, style, settings in [] if args.no_render or args.trace else specs:
            command = [
                sys.executable,
                "-m",
                "render",
                "-m",
                f"style={style}",
                f"layer={','.join(layers)}",
                f"filters='{args.filters}'",
                *settings,
                *extra,
            ]
            if subprocess.run(command).returncode != 0:  # resumes: renders only what is missing
                raise UserError(f"rendering style {label} failed: see its messages above")
        rows = []
        for (layer, label), (cfg, job) in sorted(
            jobs.items(), key=lambda item: (layers.index(item[0][0]), order[item[0][1]])
        ):
            if args.trace:
                row = trace_job(cfg, job, label, args.every, args.ratio, args.trace_dir or None)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
                continue
            meta = read_metadata(job.out_dir)
            if not meta:
                raise UserError(
                    f"no results for {layer} with style {label} in {job.out_dir}: drop --no-render"
                )
            ensure_metrics(cfg, job, meta)
            rows.append(table_row(job, meta, label))
    except UserError as err:
        fail(err, False)
    print_table(rows)
    if args.json:
        write_json(args.json, rows)
    print(json.dumps({"folders": [r["folder"] for r in rows]}))


if __name__ == "__main__":
    main()
