"""Compare styles on the same filters: render what is missing, measure, print one table.

    python -m render.compare --layers block3_conv1,block4_conv3,block5_conv2 --filters 0-31 \\
        --styles "chollet2016;olah2017 steps=128" -- weights=/tmp/real-vgg16/vgg16_notop_keras.h5

Styles are separated by ';', each optionally followed by settings of its own; everything after
`--` is passed to `python -m render` for every style (any of its settings). Per layer and
style: filters whose image beats every natural-photo crop, the median ratio to the best crop,
filters whose image is their strongest stimulus among the layer's renders, dead filters, and
rendering time per filter.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

from render.cli import compose_config, fail
from render.errors import UserError
from render.files import read_json, write_json
from render.settings import make_job, register_resolvers


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
    if all("activation" in r for r in records.values() if r["status"] == "ok"):
        return
    from render.metrics import measure, reference_crops
    from render.networks import load_network

    params = load_network(cfg).params
    reference = job.metrics.get("reference")
    measure(
        job.out_dir,
        records,
        params,
        job.network,
        job.layer.name,
        reference_crops(os.path.expanduser(reference) if reference else None),
    )
    write_json(os.path.join(job.out_dir, "metadata.json"), meta)


def table_row(job, meta: dict) -> dict:
    records = [meta["filters"][str(k)] for k in job.filters if str(k) in meta["filters"]]
    ok = [r for r in records if r["status"] == "ok"]
    ratios = [r["ratio_to_natural"] for r in ok if r.get("ratio_to_natural") is not None]
    return {
        "layer": job.layer.name,
        "style": job.style["name"],
        "filters": len(records),
        "beats_all_natural": sum(r.get("beats_natural", False) for r in ok) / max(1, len(records)),
        "median_ratio": statistics.median(ratios) if ratios else None,
        "best_stimulus": sum(r.get("best_stimulus", False) for r in ok) / max(1, len(records)),
        "dead": sum(r["status"] == "dead" for r in records),
        "seconds_per_filter": seconds_per_filter(meta, job.out_dir),
        "folder": job.out_dir,
    }


def print_table(rows: list[dict]) -> None:
    print(
        f"{'layer':<14}{'style':<13}{'filters':>8}{'beat all crops':>15}{'median ratio':>13}"
        f"{'best stimulus':>14}{'dead':>6}{'s/filter':>10}"
    )
    for r in rows:
        ratio = f"{r['median_ratio']:.2f}" if r["median_ratio"] is not None else "-"
        secs = f"{r['seconds_per_filter']:.2f}" if r["seconds_per_filter"] is not None else "-"
        print(
            f"{r['layer']:<14}{r['style']:<13}{r['filters']:>8}{r['beats_all_natural']:>15.0%}"
            f"{ratio:>13}{r['best_stimulus']:>14.0%}{r['dead']:>6}{secs:>10}"
        )


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
    args = parser.parse_args(own)
    layers = args.layers.split(",")
    own_settings = {s.split()[0]: s.split()[1:] for s in args.styles.split(";") if s.strip()}
    styles = list(own_settings)
    try:
        jobs = {
            (layer, style): run_folder_job(layer, style, args.filters, own_settings[style] + extra)
            for style in styles
            for layer in layers
        }
        for style in [] if args.no_render else styles:  # resumes: renders only what is missing
            command = [
                sys.executable,
                "-m",
                "render",
                "-m",
                f"style={style}",
                f"layer={','.join(layers)}",
                f"filters='{args.filters}'",
                *own_settings[style],
                *extra,
            ]
            if subprocess.run(command).returncode != 0:
                raise UserError(f"rendering style {style} failed: see its messages above")
        rows = []
        for (layer, style), (cfg, job) in sorted(
            jobs.items(), key=lambda item: (layers.index(item[0][0]), styles.index(item[0][1]))
        ):
            meta = read_json(os.path.join(job.out_dir, "metadata.json"))
            if not meta:
                raise UserError(
                    f"no results for {layer} with style {style} in {job.out_dir}: drop --no-render"
                )
            ensure_metrics(cfg, job, meta)
            rows.append(table_row(job, meta))
    except UserError as err:
        fail(err, False)
    print_table(rows)
    if args.json:
        write_json(args.json, rows)
    print(json.dumps({"folders": [r["folder"] for r in rows]}))


if __name__ == "__main__":
    main()
