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
from render.models.layers import vgg_table
from render.models.network import Layer, Network, UnknownLayerError, conv_layer, find_layer
from render.models.vgg import ARCHITECTURES, PRECISIONS, VGGNetwork
from render.networks import file_identity, load_network, model_folder, model_identity
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
    network: Network
    layer: Layer
    filters: list[int]
    weights_path: str | None  # VGG weights file; None for weights=random and other models
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
        return self.layer.channels


def _whole(cfg: DictConfig, key: str, value=None) -> int:
    value, (low, high) = cfg[key] if value is None else value, LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{key}={value} is invalid: use a whole number from {low} to {high}")
    return value


def _layer(cfg: DictConfig, network: Network) -> Layer:
    if cfg.objective == "class":
        if network.head is None:
            raise UserError(
                f"objective=class needs a model with a dense head: {network.name} has none"
            )
        return find_layer(network.layers, network.head)
    try:
        return conv_layer(network.layers, cfg.layer, "filter rendering")
    except UnknownLayerError as err:
        raise UserError(str(err)) from None


def _network(cfg: DictConfig) -> Network:
    """The configured network without its weights read (VGG: shapes checked only)."""
    return load_network(cfg, need_top=cfg.objective == "class", read=False).network


def layer_name(cfg: DictConfig) -> str:
    """The canonical name of `layer` (a 2016 alias named as Keras names it)."""
    if cfg.objective == "class":
        return "classes"
    if cfg.model.name in ARCHITECTURES:
        return find_layer(vgg_table(ARCHITECTURES[cfg.model.name]), cfg.layer).name
    return find_layer(_network(cfg).layers, cfg.layer).name


def image_size(cfg: DictConfig):
    """size=auto: the head's input for class objectives (224 for VGG), else VGG's 128 or the
    model's own input size."""
    if cfg.size != "auto":
        return cfg.size
    if cfg.model.name in ARCHITECTURES:
        return 224 if cfg.objective == "class" else 128
    return _network(cfg).input_size


def weights_id(spec: str) -> str:
    """What identifies the weights in the run key: a file by its path, size and date."""
    if spec in ("imagenet", "random"):
        return spec
    return file_identity(spec)


def run_key(cfg: DictConfig) -> str:
    """Hash of every setting that changes the images (not batch size, loop or output options)."""
    settings = {
        "layer": "predictions" if cfg.objective == "class" else layer_name(cfg),
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
    if model_identity(cfg) is not None:  # vgg16 runs keep the keys they had before models
        settings["model"] = model_identity(cfg)
        if cfg.model.name in ("keras", "flax"):
            settings["layer"] = layer_name(cfg) if cfg.objective != "class" else "head"
            settings.pop("weights")
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
        layer, key, size = layer_name(cfg), run_key(cfg)[:8], image_size(cfg)
        model = model_folder(cfg)
    except (UnknownLayerError, UserError):
        # never used: validation refuses the run first
        layer, key, size, model = "unknown-layer", "none", cfg.size, None
    folder = f"{layer}/{cfg.style.name}-{size}px-seed{cfg.seed}-{key}"
    return f"{model}/{folder}" if model else folder


def sweep_layers(cfg: DictConfig) -> str:
    """The model's own conv layers, in its order, as a Hydra sweep (sweep=all)."""
    layers = _network(cfg).layers if cfg.model.name not in ARCHITECTURES else None
    layers = layers or VGGNetwork(cfg.model.name).layers
    return ",".join(layer.name for layer in layers if layer.visualizable and layer.kind == "conv")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("render_dir"):
        OmegaConf.register_new_resolver("render_dir", lambda *, _root_: run_dir(_root_))
        OmegaConf.register_new_resolver("render_layers", lambda *, _root_: sweep_layers(_root_))


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


def make_job(cfg: DictConfig) -> Job:
    """Check every setting; fetch and inspect the weights (shapes only)."""
    is_class = cfg.objective == "class"
    if cfg.model.name in ARCHITECTURES and not is_class:  # a typo must not wait for a download
        try:
            conv_layer(vgg_table(ARCHITECTURES[cfg.model.name]), cfg.layer, "filter rendering")
        except UnknownLayerError as err:
            raise UserError(str(err)) from None
    if cfg.precision not in PRECISIONS:
        raise UserError(f"precision={cfg.precision} is invalid: use {', '.join(PRECISIONS)}")
    size = image_size(cfg)
    if is_class and cfg.model.name in ARCHITECTURES and size != 224:
        raise UserError(
            "objective=class needs size=224 (the fully connected top's input) or size=auto"
        )
    if cfg.class_output not in ("logit", "softmax"):
        raise UserError(f"class_output={cfg.class_output} is invalid: use logit or softmax")
    size = _whole(cfg, "size", size)
    steps, seed = _whole(cfg, "steps"), _whole(cfg, "seed")
    network = None if cfg.model.name in ARCHITECTURES else _network(cfg)
    if network is not None and is_class and network.fixed_size and size != network.input_size:
        raise UserError(
            f"objective=class needs size={network.input_size} (the input size {network.name}'s "
            "head was built for) or size=auto"
        )
    layer = _layer(cfg, network or VGGNetwork(cfg.model.name))
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
    _check_output(cfg.output)
    reference = cfg.metrics.reference
    if reference is not None and not os.path.isdir(os.path.expanduser(str(reference))):
        raise UserError(f"metrics.reference={reference} is not a folder: give a folder of photos")
    _writable_root(cfg.output.root)
    # everything cheap first: a typo must not wait for a download
    full_width = network is not None or str(cfg.weights) in ("imagenet", "random")
    labels = () if network is None else network.labels
    if is_class:
        filters = parse_classes(cfg.classes, labels, layer.channels)
    elif full_width:
        filters = parse_indices(cfg.filters, layer.channels)
    loaded = load_network(cfg, need_top=is_class, read=False)
    network = loaded.network
    layer = _layer(cfg, network)
    if not is_class and not full_width:
        filters = parse_indices(cfg.filters, layer.channels)
    return Job(
        network=network,
        layer=layer,
        filters=filters,
        weights_path=loaded.weights_path,
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
    network: Network
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
    if cfg.model.name in ARCHITECTURES:  # names and full-width filter ranges, before any download
        objective_terms(settings, VGGNetwork(cfg.model.name))
    network = _network(cfg)
    objective_terms(settings, network)
    out_dir = os.path.join(cfg.output.root, run_dir(cfg))
    return DreamJob(settings, photos, network, cfg.precision, max_side, out_dir)


def prepare(cfg: DictConfig) -> Job | DreamJob:
    """The checked job of a composed config, whatever its objective."""
    if cfg.objective == "dream":
        return make_dream_job(cfg)
    if cfg.objective not in ("filters", "class"):
        raise UserError(f"objective={cfg.objective} is invalid: use filters, class or dream")
    return make_job(cfg)
