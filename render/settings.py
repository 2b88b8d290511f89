"""From a composed Hydra config to a checked Job: every bad value fails here, before any file.

Each setting's type and range is in the settings table (render/schema.py), checked by
`check_config`; the rules between settings (size against the layer, classes against the head,
photos on disk, ...) are here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from render import algebra, schema
from render.ascent import LOOPS
from render.classes import parse_classes
from render.dream import (
    DEFAULT_LAYERS,
    DreamSettings,
    check_settings,
    expand_inputs,
    objective_terms,
    read_photo,
)
from render.errors import UserError
from render.expressions import ExpressionError, parse_for
from render.models.layers import vgg_table
from render.models.network import Layer, Network, UnknownLayerError, conv_layer, find_layer
from render.models.vgg import ARCHITECTURES, PRECISIONS, VGGNetwork
from render.networks import file_identity, load_network, model_folder, model_identity, read_labels
from render.ranges import parse_indices
from render.styles import check_style


def check_config(cfg: DictConfig, expressions: bool = False) -> None:
    """Every setting against its type and range in the settings table (render/schema.py)."""
    _label_kind(cfg.output, expressions)
    schema.check(OmegaConf.to_container(cfg, resolve=True))


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
    autotune: str  # "auto", "true" or "false" (render/autotune.py)
    cache_dir: str  # where measured per-host choices are kept (and XLA's cache)
    precision: str
    style: dict
    out_dir: str
    key: str
    output: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    objective: str = "filters"  # or "class"
    class_output: str = "logit"  # class objective: the logit, or the softmax probability
    progress: bool = True
    init: str | None = None  # a photo to start from instead of noise (absolute path)
    init_weight: float = 0.0  # L2 pull back towards the init photo, in 0-1 pixel units

    @property
    def channels(self) -> int:
        return self.layer.channels

    @property
    def need_top(self) -> bool:
        return self.objective == "class"


def _size(size) -> int:
    """The image side (size=auto as image_size derives it), in the table's range."""
    problem = schema.setting("size").problem(size)
    if problem:
        raise UserError(problem)
    return size


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


OBJECTIVE_KINDS = ("objectives", "interpolate", "caricature")  # runs of objective expressions
EXAMPLE_PAIR = 'interpolate=\'["block4_conv3:12", "block4_conv3:30"]\''


def objectives_kind(cfg: DictConfig) -> str | None:
    """Which of objectives=, interpolate= and caricature= the command sets (None: none)."""
    chosen = [kind for kind in OBJECTIVE_KINDS if cfg.get(kind) is not None]
    if len(chosen) > 1:
        raise UserError(f"{chosen[0]}= and {chosen[1]}= cannot be combined: give one of them")
    return chosen[0] if chosen else None


def expression_texts(cfg: DictConfig, kind: str) -> list[str]:
    """The expressions of objectives= or interpolate= as strings ([] for caricature=)."""
    if kind == "caricature":
        return []
    value = cfg[kind]
    items = [value] if isinstance(value, str | int | float) else list(value)
    texts = [str(item) for item in items]
    if not texts:
        raise UserError(f"{kind}= is empty: give a list of objectives, e.g. {EXAMPLE_PAIR}")
    if kind == "interpolate" and len(texts) != 2:
        raise UserError(f"interpolate= takes two objectives, not {len(texts)}: e.g. {EXAMPLE_PAIR}")
    return texts


def parse_expressions(network: Network, texts: list[str]) -> list[algebra.Objective]:
    """Each expression as an objective of `network`; a malformed one is a one-line UserError
    (the ExpressionError's message)."""
    objectives = []
    for text in texts:
        try:
            objective = parse_for(network, text)
        except ExpressionError as err:
            raise UserError(str(err)) from None
        for term in objective.terms:
            layer = find_layer(network.layers, term.layer_read) if term.layer_read else None
            if layer is not None and not layer.visualizable:
                raise UserError(
                    f'objective "{text}": layer {layer.name} cannot be visualized (it has no '
                    "units of its own): use a conv or dense layer"
                )
            if isinstance(term, algebra.Neuron) and layer is not None and layer.kind != "conv":
                raise UserError(
                    f'objective "{text}": {layer.name} is fully connected: a neuron (@) needs '
                    f"a spatial layer; write {layer.name}:K for its unit K"
                )
        objectives.append(objective)
    return objectives


def layers_read(network: Network, objectives: list[algebra.Objective]) -> list[Layer]:
    """The layers the objectives read, in network order."""
    names = set().union(*(objective.reads for objective in objectives))
    return sorted((find_layer(network.layers, name) for name in names), key=lambda x: x.index)


def _full_vgg(cfg: DictConfig) -> VGGNetwork:
    """The configured VGG at full width, with its class names: for checks before any weights."""
    return VGGNetwork(cfg.model.name, labels=read_labels(cfg.model.labels) or ())


def _reads_dense(cfg: DictConfig, kind: str) -> bool:
    """Whether the expressions read a fully connected layer (the head among them): checked on
    the VGG table at full width, so nothing waits for weights."""
    if kind == "caricature":
        return False
    network = _full_vgg(cfg) if cfg.model.name in ARCHITECTURES else _network(cfg)
    read = layers_read(network, parse_expressions(network, expression_texts(cfg, kind)))
    return any(layer.kind == "dense" for layer in read)


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
    kind = objectives_kind(cfg)
    if cfg.model.name in ARCHITECTURES and kind is not None:  # expressions: 224 for the head
        return 224 if _reads_dense(cfg, kind) else 128
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
    kind = objectives_kind(cfg)
    if kind is not None:
        layer = kind
    else:
        layer = "predictions" if cfg.objective == "class" else layer_name(cfg)
    settings = {
        "layer": layer,
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
            if kind is None:
                settings["layer"] = layer_name(cfg) if cfg.objective != "class" else "head"
            settings.pop("weights")
    if kind == "objectives":  # the expressions as given, in order
        settings["objectives"] = expression_texts(cfg, kind)
    elif kind == "interpolate":
        settings["interpolate"] = expression_texts(cfg, kind)
        settings |= {"frames": cfg.frames, "alignment": cfg.interpolate_alignment}
    elif kind == "caricature":
        settings["caricature"] = file_identity(str(cfg.caricature))
        settings |= {"caricature_layer": layer_name(cfg), "cosine": cfg.caricature_cosine}
    if cfg.init is not None:  # runs without a photo keep the keys they had before photos
        settings |= {"init": file_identity(str(cfg.init))}
    if cfg.init is not None or kind == "caricature":
        settings |= {"init_weight": cfg.init_weight}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def dream_key(cfg: DictConfig) -> str:
    """Hash of what changes a dream's pixels: the weights, precision and dream.* settings (and
    the model, other than VGG16: VGG16 dreams keep their keys)."""
    settings = {
        "weights": weights_id(str(cfg.weights)),
        "precision": cfg.precision,
        "dream": OmegaConf.to_container(cfg.dream, resolve=True),
    }
    if model_identity(cfg) is not None:
        settings["model"] = model_identity(cfg)
        if cfg.model.name in ("keras", "flax"):
            settings.pop("weights")
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def run_dir(cfg: DictConfig) -> str:
    """The run's folder below output.root, e.g. block5_conv2/chollet2016-128px-seed0-1a2b3c4d."""
    if cfg.objective == "dream":
        layers = "+".join(
            str(name) for name in cfg.dream.layers or cfg.dream.filters or ["default"]
        )
        return f"dream/{layers}-{dream_key(cfg)[:8]}"
    try:
        kind = objectives_kind(cfg)
    except UserError:
        kind = None  # never used: validation refuses the run first
    if kind is not None:
        try:
            key, size, model = run_key(cfg)[:8], image_size(cfg), model_folder(cfg)
        except (UnknownLayerError, UserError):
            key, size, model = "none", cfg.size, None  # never used, as below
        folder = f"{kind}/{cfg.style.name}-{size}px-seed{cfg.seed}-{key}"
        return f"{model}/{folder}" if model else folder
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


def _label_kind(output: DictConfig, expressions: bool) -> None:
    """output.label_kind=objective labels expression runs only."""
    kinds = schema.choices("output.label_kind")
    if not expressions:
        kinds = tuple(kind for kind in kinds if kind != "objective")
    if output.label_kind not in kinds:
        note = " (objective is for objectives= runs)" if output.label_kind == "objective" else ""
        raise UserError(
            f"output.label_kind={output.label_kind} is invalid: use {schema.either(kinds)}{note}"
        )


def _check_output(output: DictConfig, expressions: bool = False) -> None:
    """output.* against the settings table (for runs that do not check every setting)."""
    _label_kind(output, expressions)
    schema.check({"output": OmegaConf.to_container(output, resolve=True)})


def shared_settings(cfg: DictConfig) -> dict:
    """The checked settings every render job carries the same way."""
    return {
        "steps": cfg.steps,
        "step_size": float(cfg.step_size),
        "seed": cfg.seed,
        "batch_size": None if cfg.batch_size == "auto" else cfg.batch_size,
        "loop": cfg.loop,
        "autotune": str(cfg.autotune).lower(),
        "cache_dir": cfg.cache_dir,
        "precision": cfg.precision,
        "out_dir": os.path.join(cfg.output.root, run_dir(cfg)),
        "key": run_key(cfg),
        "output": OmegaConf.to_container(cfg.output, resolve=True),
    }


def make_job(cfg: DictConfig) -> Job:
    """Check every setting; fetch and inspect the weights (shapes only)."""
    check_config(cfg)
    is_class = cfg.objective == "class"
    if cfg.model.name in ARCHITECTURES and not is_class:  # a typo must not wait for a download
        try:
            conv_layer(vgg_table(ARCHITECTURES[cfg.model.name]), cfg.layer, "filter rendering")
        except UnknownLayerError as err:
            raise UserError(str(err)) from None
    size = image_size(cfg)
    if is_class and cfg.model.name in ARCHITECTURES and size != 224:
        raise UserError(
            "objective=class needs size=224 (the fully connected top's input) or size=auto"
        )
    size = _size(size)
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
    reference = cfg.metrics.reference
    if reference is not None and not os.path.isdir(os.path.expanduser(str(reference))):
        raise UserError(f"metrics.reference={reference} is not a folder: give a folder of photos")
    _writable_root(cfg.output.root)
    init, init_weight = _init_photo(cfg)
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
        style=style,
        **shared_settings(cfg),
        metrics=OmegaConf.to_container(cfg.metrics, resolve=True),
        objective=cfg.objective,
        class_output=cfg.class_output,
        progress=bool(cfg.progress),
        init=init,
        init_weight=init_weight,
    )


def _photo_path(cfg: DictConfig, key: str) -> str:
    """The photo a setting names, as an absolute path, read once to check it."""
    spec = str(cfg[key])
    path = os.path.abspath(os.path.expanduser(spec))
    try:
        read_photo(path)
    except UserError as err:
        raise UserError(f"{key}={spec}: {err}") from None
    return path


def _init_photo(cfg: DictConfig) -> tuple[str | None, float]:
    """init= (a photo to start from, or None) and init_weight, checked."""
    return (None if cfg.init is None else _photo_path(cfg, "init")), float(cfg.init_weight)


@dataclass(frozen=True)
class ObjectivesJob:
    """A run of objective expressions (objectives=), an interpolation between two
    (interpolate=) or a caricature of a photo (caricature=): one image per objective."""

    kind: str  # "objectives", "interpolate" or "caricature"
    network: Network
    layer: Layer  # the deepest layer read
    expressions: list[str]  # what each image maximizes, in order (its record's `objective`)
    objectives: list  # render.algebra objectives, one per image ([] for a caricature)
    weights_path: str | None
    need_top: bool  # an expression reads the dense top
    size: int
    steps: int
    step_size: float
    seed: int
    batch_size: int | None
    loop: str
    autotune: str
    cache_dir: str
    precision: str
    style: dict
    out_dir: str
    key: str
    output: dict = field(default_factory=dict)
    progress: bool = True
    init: str | None = None  # the photo to start from (a caricature's own photo)
    init_weight: float = 0.0
    sources: list[str] = field(default_factory=list)  # interpolate: the two expressions
    frames: int = 0
    alignment: float = 0.0  # interpolate: weight of the alignment of neighbouring frames
    cosine: float = 0.0  # caricature: cosine power

    @property
    def objective(self) -> str:
        return self.kind


def _caricature_layer(network: Network, name: str) -> Layer:
    try:
        return conv_layer(network.layers, name, "caricature")
    except UnknownLayerError as err:
        raise UserError(str(err)) from None


def make_objectives_job(cfg: DictConfig, kind: str) -> ObjectivesJob:
    """Check an objectives=, interpolate= or caricature= command: expressions first (on the VGG
    table at full width, before any weights), then every setting, then the weights' shapes."""
    from render.objectives import interpolation

    if cfg.objective != "filters":
        raise UserError(f"{kind}= sets its own objectives: leave out objective={cfg.objective}")
    texts = expression_texts(cfg, kind)
    vgg = cfg.model.name in ARCHITECTURES
    if vgg:  # names, channel ranges and class names: a typo must not wait for a download
        full = _full_vgg(cfg)
        if kind == "caricature":
            _caricature_layer(full, cfg.layer)
        else:
            parse_expressions(full, texts)
    check_config(cfg, expressions=True)
    reads_dense = _reads_dense(cfg, kind)
    size = image_size(cfg)
    if reads_dense and vgg and size != 224:
        raise UserError(
            f"{kind}= reading the fully connected top (class:, fc1, fc2) needs size=224 (the "
            "top's input) or size=auto"
        )
    size = _size(size)
    _writable_root(cfg.output.root)
    init, init_weight = _init_photo(cfg)
    frames, alignment, cosine = 0, 0.0, 0.0
    if kind == "caricature":
        if init is not None:
            raise UserError("caricature= starts from its own photo: leave out init=")
        init = _photo_path(cfg, "caricature")
        cosine = float(cfg.caricature_cosine)
    if kind == "interpolate":
        frames, alignment = cfg.frames, float(cfg.interpolate_alignment)
    loaded = load_network(cfg, need_top=reads_dense, read=False)
    network = loaded.network
    if kind == "caricature":
        layer = _caricature_layer(network, cfg.layer)
        read, objectives = [layer], []
        expressions = [f"caricature({layer.name}) of {os.path.basename(init)}"]
    else:
        objectives = parse_expressions(network, texts)
        read = layers_read(network, objectives)
        layer, expressions = read[-1], list(texts)
        if kind == "interpolate":
            objectives, expressions = interpolation(*objectives, *texts, frames, alignment, layer)
    if reads_dense and not vgg and network.fixed_size and size != network.input_size:
        raise UserError(
            f"{kind}= reading the head needs size={network.input_size} (the input size "
            f"{network.name}'s head was built for) or size=auto"
        )
    spatial = [item for item in read if item.kind == "conv"]
    coarsest = max(spatial, key=lambda x: x.stride, default=None)
    stride = coarsest.stride if coarsest is not None else 1
    if size < stride:
        raise UserError(
            f"size={size} leaves no spatial map at {coarsest.name} (it sees 1/{stride} of "
            f"the image): use size>={stride}"
        )
    style = OmegaConf.to_container(cfg.style, resolve=True)
    problem = check_style(style, size, stride)
    if reads_dense and style.get("octaves", 1) != 1:
        problem = f"{kind}= reading the fully connected top renders at 1 size: use style.octaves=1"
    if style.get("diversity", 1) != 1:
        problem = f"style.diversity is for filter runs: use style.diversity=1 with {kind}="
    if problem:
        raise UserError(problem)
    return ObjectivesJob(
        kind=kind,
        network=network,
        layer=layer,
        expressions=expressions,
        objectives=objectives,
        weights_path=loaded.weights_path,
        need_top=reads_dense,
        size=size,
        style=style,
        **shared_settings(cfg),
        progress=bool(cfg.progress),
        init=init,
        init_weight=init_weight,
        sources=texts if kind == "interpolate" else [],
        frames=frames,
        alignment=alignment,
        cosine=cosine,
    )


@dataclass(frozen=True)
class DreamJob:
    settings: DreamSettings
    photos: list[str]
    network: Network
    precision: str
    max_side: int | None
    out_dir: str
    key: str = ""  # dream_key: a PNG carrying it was dreamed with these settings (resume)
    output: dict = field(default_factory=dict)
    loop: str = "auto"  # "auto", "python" or "device": where the engine's step loop runs
    progress: bool = True


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
    if cfg.loop not in ("auto",) + LOOPS:
        raise UserError(f"loop={cfg.loop} is invalid: use auto, python or device")
    _check_output(cfg.output)
    _writable_root(cfg.output.root)
    check_settings(settings)
    if cfg.model.name in ARCHITECTURES:  # names and full-width filter ranges, before any download
        objective_terms(settings, VGGNetwork(cfg.model.name))
    network = _network(cfg)
    objective_terms(settings, network)
    out_dir = os.path.join(cfg.output.root, run_dir(cfg))
    return DreamJob(
        settings,
        photos,
        network,
        cfg.precision,
        max_side,
        out_dir,
        key=dream_key(cfg),
        output=OmegaConf.to_container(cfg.output, resolve=True),
        loop=cfg.loop,
        progress=bool(cfg.progress),
    )


_CHECKED: dict[str, Job | DreamJob | ObjectivesJob] = {}  # by check, for prepare


def _config_key(cfg: DictConfig) -> str:
    """The resolved config as text: what a checked job is kept under."""
    return json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)


def check(cfg: DictConfig) -> None:
    """prepare() a job before Hydra launches it (UserError on bad input), keeping the checked
    job for prepare() of the same config in this process: the Hydra task does not check again."""
    _CHECKED[_config_key(cfg)] = _prepare(cfg)


def prepare(cfg: DictConfig) -> Job | DreamJob | ObjectivesJob:
    """The checked job of a composed config, whatever its objective (the one `check` kept)."""
    job = _CHECKED.pop(_config_key(cfg), None)
    return job if job is not None else _prepare(cfg)


def _prepare(cfg: DictConfig) -> Job | DreamJob | ObjectivesJob:
    kind = objectives_kind(cfg)
    if kind is not None:
        return make_objectives_job(cfg, kind)
    if cfg.objective == "dream":
        if cfg.init is not None:
            raise UserError("init= is for rendered objectives: objective=dream starts from image=")
        check_config(cfg)
        return make_dream_job(cfg)
    return make_job(cfg)  # refuses any other objective (the settings table)
