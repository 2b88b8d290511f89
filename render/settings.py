"""From a composed Hydra config to a checked Job: every bad value fails here, before any file."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from render.ascent import LOOPS
from render.classes import parse_classes
from render.dream import (
    DEFAULT_LAYERS,
    DreamSettings,
    check_settings,
    expand_inputs,
    objective_terms,
)
from render.errors import UserError
from render.models.download import imagenet_weights
from render.models.layers import TOP_INPUT_SIZE, Layer, UnknownLayerError, get_conv_layer, get_layer
from render.models.vgg import PRECISIONS
from render.models.weights import WeightsError, WeightsInfo, load_weights
from render.ranges import parse_indices
from render.styles import check_style

LIMITS = {  # key -> (lowest, highest) accepted
    "size": (8, 4096),
    "steps": (1, 100_000),
    "seed": (0, 2**31 - 1),
    "batch_size": (1, 65_536),
}
MAX_STEP_SIZE = 1e4


@dataclass(frozen=True)
class Job:
    layer: Layer
    filters: list[int]
    weights_path: str | None  # None for weights=random
    weights_info: WeightsInfo | None
    size: int
    steps: int
    step_size: float
    seed: int
    batch_size: int | None  # None: auto
    loop: str  # "auto", "python" or "device"
    precision: str
    style: dict
    out_dir: str
    key: str
    output: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    objective: str = "filters"  # or "class"
    class_output: str = "logit"  # class objective: the logit, or the softmax probability
    progress: bool = True

    @property
    def channels(self) -> int:
        divisor = self.weights_info.width_divisor if self.weights_info else 1
        return self.layer.channels // divisor


def _whole(cfg: DictConfig, key: str, value=None) -> int:
    value, (low, high) = cfg[key] if value is None else value, LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{key}={value} is invalid: use a whole number from {low} to {high}")
    return value


def _layer(cfg: DictConfig) -> Layer:
    if cfg.objective == "class":
        return get_layer("predictions")
    try:
        return get_conv_layer(cfg.layer, "filter rendering")
    except UnknownLayerError as err:
        raise UserError(str(err)) from None


def image_size(cfg: DictConfig):
    """size=auto is 224 for class objectives (the fully connected top's input), else 128."""
    if cfg.size != "auto":
        return cfg.size
    return TOP_INPUT_SIZE if cfg.objective == "class" else 128


def weights_id(spec: str) -> str:
    """What identifies the weights in the run key: a file by its path, size and date."""
    if spec in ("imagenet", "random"):
        return spec
    path = os.path.abspath(os.path.expanduser(spec))
    try:
        stat = os.stat(path)
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        return path


def run_key(cfg: DictConfig) -> str:
    """Hash of every setting that changes the images (not batch size, loop or output options)."""
    settings = {
        "layer": _layer(cfg).name,
        "weights": weights_id(str(cfg.weights)),
        "size": image_size(cfg),
        "steps": cfg.steps,
        "step_size": cfg.step_size,
        "seed": cfg.seed,
        "precision": cfg.precision,
        "style": OmegaConf.to_container(cfg.style, resolve=True),
    }
    if settings["style"].get("diversity", 1) == 1:  # off: runs from before it keep their keys
        settings["style"].pop("diversity", None)
        settings["style"].pop("diversity_weight", None)
    if cfg.objective == "class":  # filter runs keep the keys they had before classes existed
        settings |= {"objective": cfg.objective, "class_output": cfg.class_output}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def dream_key(cfg: DictConfig) -> str:
    settings = {
        "weights": weights_id(str(cfg.weights)),
        "precision": cfg.precision,
        "dream": OmegaConf.to_container(cfg.dream, resolve=True),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def run_dir(cfg: DictConfig) -> str:
    """The run's folder below output.root, e.g. block5_conv2/chollet2016-128px-seed0-1a2b3c4d."""
    if cfg.objective == "dream":
        layers = "+".join(
            str(name) for name in cfg.dream.layers or cfg.dream.filters or ["default"]
        )
        return f"dream/{layers}-{dream_key(cfg)[:8]}"
    try:
        layer = "classes" if cfg.objective == "class" else get_layer(cfg.layer).name
        key = run_key(cfg)[:8]
    except UnknownLayerError:
        layer, key = "unknown-layer", "none"  # never used: validation refuses the run first
    return f"{layer}/{cfg.style.name}-{image_size(cfg)}px-seed{cfg.seed}-{key}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("render_dir"):
        OmegaConf.register_new_resolver("render_dir", lambda *, _root_: run_dir(_root_))


def _writable_root(root: str) -> None:
    path = os.path.abspath(root)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"output folder {root} is not writable: choose another with output.root=")


def _check_output(output: DictConfig) -> None:
    if output.label_kind not in ("index", "loss", "both"):
        raise UserError(
            f"output.label_kind={output.label_kind} is invalid: use index, loss or both"
        )
    for key, low, high in (("scale", 1, 16), ("margin", 0, 1000), ("best_n", 1, 100_000)):
        value = output[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise UserError(
                f"output.{key}={value} is invalid: use a whole number from {low} to {high}"
            )
    if output.best_by not in ("loss_end", "activation", "ratio_to_natural"):
        raise UserError(
            f"output.best_by={output.best_by} is invalid: use loss_end, activation or "
            "ratio_to_natural"
        )
    if output.dpi is not None and (not isinstance(output.dpi, int) or not 10 <= output.dpi <= 4800):
        raise UserError(f"output.dpi={output.dpi} is invalid: use a whole number from 10 to 4800")


def weights_file(cfg: DictConfig, need_top: bool = False) -> str | None:
    """The weights file to load (downloading the official one if needed); None for random."""
    spec = str(cfg.weights)
    try:
        if spec == "random":
            return None
        if spec == "imagenet":
            return imagenet_weights(need_top, cfg.cache_dir, cfg.weights_url)
    except WeightsError as err:
        raise UserError(str(err)) from None
    return os.path.abspath(os.path.expanduser(spec))


def inspect_weights(
    cfg: DictConfig, need_top: bool = False
) -> tuple[str | None, WeightsInfo | None]:
    """The weights file (fetched if needed) and its checked shapes; (None, None) for random."""
    path = weights_file(cfg, need_top)
    if path is None:
        return None, None
    try:
        return path, load_weights(path, need_top=need_top, read=False)[1]
    except WeightsError as err:
        raise UserError(str(err)) from None


def make_job(cfg: DictConfig) -> Job:
    """Check every setting; fetch and inspect the weights (shapes only)."""
    layer = _layer(cfg)
    is_class = cfg.objective == "class"
    size = image_size(cfg)
    if size != TOP_INPUT_SIZE and is_class:
        raise UserError(
            f"objective=class needs size={TOP_INPUT_SIZE} (the fully connected top's input) "
            "or size=auto"
        )
    if cfg.class_output not in ("logit", "softmax"):
        raise UserError(f"class_output={cfg.class_output} is invalid: use logit or softmax")
    size = _whole(cfg, "size", size)
    steps, seed = _whole(cfg, "steps"), _whole(cfg, "seed")
    if size < layer.stride:
        raise UserError(
            f"size={size} leaves no spatial map at {layer.name} (it sees 1/{layer.stride} of "
            f"the image): use size>={layer.stride}"
        )
    style = OmegaConf.to_container(cfg.style, resolve=True)
    problem = check_style(style, size, layer.stride)
    if is_class and style.get("octaves", 1) != 1:
        problem = "objective=class renders at 224 px only: use style.octaves=1"
    if problem:
        raise UserError(problem)
    step_size = cfg.step_size
    if (
        isinstance(step_size, bool)
        or not isinstance(step_size, int | float)
        or not (math.isfinite(step_size) and 0 < step_size <= MAX_STEP_SIZE)
    ):
        raise UserError(f"step_size={step_size} is invalid: use a number in (0, {MAX_STEP_SIZE:g}]")
    batch_size = None if cfg.batch_size == "auto" else _whole(cfg, "batch_size")
    if cfg.loop not in ("auto",) + LOOPS:
        raise UserError(f"loop={cfg.loop} is invalid: use auto, python or device")
    if cfg.precision not in PRECISIONS:
        raise UserError(f"precision={cfg.precision} is invalid: use {', '.join(PRECISIONS)}")
    _check_output(cfg.output)
    reference = cfg.metrics.reference
    if reference is not None and not os.path.isdir(os.path.expanduser(str(reference))):
        raise UserError(f"metrics.reference={reference} is not a folder: give a folder of photos")
    _writable_root(cfg.output.root)
    # everything cheap first: a typo must not wait for a download
    full_width = str(cfg.weights) in ("imagenet", "random")
    if is_class:
        filters = parse_classes(cfg.classes)
    elif full_width:
        filters = parse_indices(cfg.filters, layer.channels)
    path, info = inspect_weights(cfg, need_top=is_class)
    if not is_class and not full_width:
        filters = parse_indices(cfg.filters, layer.channels // info.width_divisor)
    return Job(
        layer=layer,
        filters=filters,
        weights_path=path,
        weights_info=info,
        size=size,
        steps=steps,
        step_size=float(step_size),
        seed=seed,
        batch_size=batch_size,
        loop=cfg.loop,
        precision=cfg.precision,
        style=style,
        out_dir=os.path.join(cfg.output.root, run_dir(cfg)),
        key=run_key(cfg),
        output=OmegaConf.to_container(cfg.output, resolve=True),
        metrics=OmegaConf.to_container(cfg.metrics, resolve=True),
        objective=cfg.objective,
        class_output=cfg.class_output,
        progress=bool(cfg.progress),
    )


@dataclass(frozen=True)
class DreamJob:
    settings: DreamSettings
    photos: list[str]
    weights_path: str | None
    weights_info: WeightsInfo | None
    precision: str
    max_side: int | None
    out_dir: str


def make_dream_job(cfg: DictConfig) -> DreamJob:
    """Check a deep-dream command: photos, layers and their filters, weights, output."""
    if not cfg.image:
        raise UserError("objective=dream needs image=path/to/photo.jpg (a file, folder or glob)")
    photos = expand_inputs(str(cfg.image))
    options = OmegaConf.to_container(cfg.dream, resolve=True)
    max_side = options.pop("max_side")
    if options["layers"] is None:
        options["layers"] = {} if options["filters"] else dict(DEFAULT_LAYERS)
    if max_side is not None and (not isinstance(max_side, int) or max_side < 8):
        raise UserError(f"dream.max_side={max_side} is invalid: use a whole number >= 8 or null")
    try:
        settings = DreamSettings(**options)
    except TypeError as err:
        raise UserError(f"dream: {err}") from None
    if cfg.precision not in PRECISIONS:
        raise UserError(f"precision={cfg.precision} is invalid: use {', '.join(PRECISIONS)}")
    _writable_root(cfg.output.root)
    check_settings(settings)
    objective_terms(settings)  # names and full-width filter ranges, before any download
    path, info = inspect_weights(cfg)
    objective_terms(settings, info.width_divisor if info else 1)
    out_dir = os.path.join(cfg.output.root, run_dir(cfg))
    return DreamJob(settings, photos, path, info, cfg.precision, max_side, out_dir)


def prepare(cfg: DictConfig) -> Job | DreamJob:
    """The checked job of a composed config, whatever its objective."""
    if cfg.objective == "dream":
        return make_dream_job(cfg)
    if cfg.objective not in ("filters", "class"):
        raise UserError(f"objective={cfg.objective} is invalid: use filters, class or dream")
    return make_job(cfg)
