"""The notebook API: render filters into arrays, load a model, lay images out on a grid.

    import render
    images = render.visualize(layer="block3_conv1", filters=[0, 1, 2, 3])
    render.atlas(images, labels=[0, 1, 2, 3])

`visualize` runs exactly what `python -m render` runs: its keyword arguments become the same
settings, the images go to the same run folder below an output root, and the arrays returned
are read back from the saved PNGs, so they equal the command line's images pixel for pixel.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

API_FOLDER = "api"  # the default output root, below cache_dir (~/.cache/render)
IndexSet = int | str | Sequence[int | str]


def visualize(
    layer: str = "block3_conv1",
    filters: IndexSet = (0, 1, 2, 3),
    weights: str | os.PathLike | None = None,
    style: str = "chollet2016",
    steps: int | None = None,
    size: int | None = None,
    seed: int = 0,
    model: str | Mapping | None = None,
    output_root: str | os.PathLike | None = None,
    **settings,
) -> np.ndarray:
    """Render filters of a layer; uint8 images (N, H, W, 3), one per filter in the given order.

    Arguments are the command line's settings (`python -m render --help` lists them): None
    keeps the configured default, `model` is a name or a dict of model settings with a "name",
    and any other setting goes in `settings`, nested as the config nests it
    (`output={"labels": True}`, `metrics={"measure": False}`). Unlike the command line, the
    progress bar and the HTML gallery are off unless asked for (`progress=True`,
    `output={"gallery": True}`).

    Runs go to `output_root` (default: `<cache_dir>/api`, i.e. ~/.cache/render/api), one folder
    per configuration as on the command line, so a repeated call reads the saved images back
    at once. A dead filter (its activation never left zero) has no image: it comes back black,
    with a warning. Bad settings raise ValueError with the command line's one-line message.

    Example:
        >>> images = render.visualize(layer="block5_conv2", filters=[2, 3], steps=40)
        >>> images.shape
        (2, 128, 128, 3)
        >>> render.visualize(model={"name": "keras", "file": "m.keras", "preprocess": "unit"},
        ...                  layer="conv2d_1", filters="0-15", output={"gallery": True})
    """
    from omegaconf import OmegaConf

    from render.errors import UserError
    from render.files import read_png
    from render.gallery import write_gallery
    from render.model_io import enable_compilation_cache
    from render.networks import load_network
    from render.run import render_layer, render_objectives
    from render.settings import Job, ObjectivesJob, prepare

    chosen = {"layer": layer, "filters": filters, "weights": weights, "style": style}
    chosen |= {"steps": steps, "size": size, "seed": seed}
    given = {key: value for key, value in chosen.items() if value is not None}
    overrides = model_overrides(model) + to_overrides(given) + to_overrides(settings)
    keys = {override.split("=", 1)[0] for override in overrides}
    overrides += [
        o for o in ("progress=false", "output.gallery=false") if o.split("=")[0] not in keys
    ]
    try:
        cfg = compose(overrides)
        if output_root is not None:
            cfg.output.root = os.fspath(output_root)
        elif "output.root" not in keys:
            cfg.output.root = os.path.join(cfg.cache_dir, API_FOLDER)
        cfg.output.root = os.path.abspath(os.path.expanduser(cfg.output.root))
        job = prepare(cfg)
        if not isinstance(job, Job | ObjectivesJob):
            raise UserError(
                "visualize renders filters, classes and objectives: run objective=dream with "
                "python -m render"
            )
        enable_compilation_cache(cfg.cache_dir)
        expressions = isinstance(job, ObjectivesJob)
        need_top = job.need_top if expressions else job.objective == "class"
        params = load_network(cfg, need_top=need_top).params
        draw = render_objectives if expressions else render_layer
        meta = draw(job, params, OmegaConf.to_container(cfg, resolve=True))
        if job.output["gallery"]:
            write_gallery(job.output["root"])
    except UserError as err:
        raise ValueError(str(err)) from None
    records = meta["filters"]
    if expressions:  # one image per expression, in the order given
        order = list(range(len(job.expressions)))
    elif job.objective == "filters":
        order = requested_order(filters, job.filters)
    else:
        order = job.filters
    images = {}
    for k in order:
        record = records[str(k)]
        if record["status"] == "ok":
            images[k] = read_png(os.path.join(job.out_dir, record["file"]))[0]
    empty = [k for k in order if k not in images]
    if empty:
        warnings.warn(
            f"{job.layer.name}: no image for {'images' if expressions else 'filters'} {empty} "
            "(their activation never left zero, or the ascent diverged); they are black",
            RuntimeWarning,
            stacklevel=2,
        )
    side, copies = job.size, job.style.get("diversity") or 1  # diverse images lie side by side
    shape = next(iter(images.values())).shape if images else (side, side * copies, 3)
    black = np.zeros(shape, np.uint8)
    return np.stack([images.get(k, black) for k in order])


def load_model(
    model: str | Mapping = "vgg16",
    weights: str | os.PathLike = "imagenet",
    top: bool = False,
    **options,
):
    """(network, params) of a model, as the command line loads it for `model=` and `weights=`.

    `options` are model settings (`file`, `preprocess`, `labels`, ...); `top=True` also loads
    the dense head (for class logits). The network's `features(params, images, layer)` gives a
    layer's activations.

    Example:
        >>> network, params = render.load_model("vgg16", weights="random")
        >>> [layer.name for layer in network.layers][:2]
        ['block1_conv1', 'block1_conv2']
        >>> network, params = render.load_model("keras", file="m.keras", preprocess="unit")
    """
    from render.errors import UserError
    from render.networks import load_network

    spec = {"name": model} if isinstance(model, str) else dict(model)
    overrides = model_overrides(spec | options) + to_overrides({"weights": weights})
    try:
        loaded = load_network(compose(overrides), need_top=top)
    except UserError as err:
        raise ValueError(str(err)) from None
    return loaded.network, loaded.params


def atlas(
    images: np.ndarray | Sequence[np.ndarray | None],
    cols: int | None = None,
    labels: Sequence[object] | None = None,
    margin: int = 2,
    scale: int = 1,
    background: tuple[int, int, int] = (0, 0, 0),
) -> Image.Image:
    """Images (H, W, 3) uint8 on a near-square grid (or `cols` columns), for a notebook cell.

    `labels` puts a line of text under each image; `scale` enlarges each pixel to a block;
    None in `images` leaves an empty cell. Save it with `.save("figure.png")`.

    Example:
        >>> images = render.visualize(layer="block2_conv1", filters=range(8))
        >>> render.atlas(images, cols=4, labels=range(8), scale=2)
    """
    from render.figures import compose_figure

    tiles = [None if image is None else np.asarray(image) for image in images]
    if not any(tile is not None for tile in tiles):
        raise ValueError("atlas needs at least one image")
    for tile in tiles:
        if tile is not None and (tile.dtype != np.uint8 or tile.ndim != 3 or tile.shape[2] != 3):
            raise ValueError(f"atlas takes (H, W, 3) uint8 images, got {tile.dtype} {tile.shape}")
    height = next(tile.shape[0] for tile in tiles if tile is not None)
    texts = None if labels is None else [str(label) for label in labels]
    figure = compose_figure(
        tiles,
        texts,
        cols,
        margin,
        background,
        scale=scale,
        font_size=max(10, height * scale // 8),  # as the command line's atlases label tiles
    )
    return Image.fromarray(figure)


def compose(overrides: list[str]):
    """The config the command line composes for these overrides (raises UserError)."""
    from render.cli import compose_config
    from render.settings import register_resolvers

    register_resolvers()
    return compose_config(overrides)


def model_overrides(model: str | Mapping | None) -> list[str]:
    """`model=NAME` (a config group choice) and `model.KEY=VALUE` for the other settings."""
    if model is None:
        return []
    if isinstance(model, str):
        return [f"model={model}"]
    options = dict(model)
    if "name" not in options:
        raise ValueError(f"model={options} needs a 'name', e.g. {{'name': 'keras', ...}}")
    return [f"model={options.pop('name')}"] + to_overrides({"model": options})


def to_overrides(settings: Mapping, prefix: str = "") -> list[str]:
    """Hydra overrides for settings; nested mappings become dotted keys (output.labels=true)."""
    overrides = []
    for key, value in settings.items():
        if isinstance(value, Mapping) and value:
            overrides += to_overrides(value, f"{prefix}{key}.")
        else:
            overrides.append(f"{prefix}{key}={hydra_value(value)}")
    return overrides


def hydra_value(value) -> str:
    """A Python value in Hydra's override grammar; strings are always quoted, so that "1" or
    "true" stay strings and commas or spaces in paths need no care."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | np.integer | np.floating):
        return repr(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str | os.PathLike):
        # inside quotes, only backslashes before a quote (or the end) are escapes
        text = re.sub(
            r"(\\*)('|$)", lambda m: m[1] * 2 + ("\\" + m[2] if m[2] else ""), os.fspath(value)
        )
        return f"'{text}'"
    if isinstance(value, Sequence | np.ndarray):
        return "[" + ",".join(hydra_value(item) for item in value) + "]"
    raise ValueError(f"cannot pass {value!r} ({type(value).__name__}) as a setting")


def requested_order(filters: IndexSet, indices: list[int]) -> list[int]:
    """The filters in the order the caller listed them (the run keeps them sorted)."""
    if isinstance(filters, bool) or not isinstance(filters, Sequence | np.ndarray):
        return indices
    if isinstance(filters, str) or not all(isinstance(k, int | np.integer) for k in filters):
        return indices  # ranges such as "0-7" or "all" name a sorted set
    return [int(k) for k in filters]
