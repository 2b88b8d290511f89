"""Every setting of `python -m render`, typed, in one table: its kind, allowed values or range,
and one line of doc.

The values themselves live where Hydra reads them, in conf/ (config.yaml and the groups' YAML):
that is what users edit and what run keys hash. This table is the rest: `check` validates a
composed config against it (one line per bad value, the same line whatever the command), `--help`
is generated from it (render/cli.py), and `style.*` options a style's YAML leaves out take their
`unset` value here (render/styles.py). tests/test_schema.py holds it to conf/: every key of every
YAML is declared here exactly once, and the reverse.

Pure Python (no JAX, no OmegaConf): it runs before anything heavy is imported. Rules between
settings (size against a layer's stride, octaves against size, crops against transforms, ...)
are code, where the settings meet (render/settings.py, render/styles.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from render.errors import UserError

REQUIRED = object()  # `unset` of a setting a style must give (no value when left out)


@dataclass(frozen=True)
class Setting:
    key: str  # dotted, as on the command line: size, output.dpi, style.transforms.pad
    kind: str  # int, float, bool, choice, text, rgb, mapping or any
    doc: str  # one line, shown by --help
    low: float | None = None  # int and float: the range, both ends included ...
    high: float | None = None
    open_low: bool = False  # ... except low when this is set: (low, high]
    choices: tuple[str, ...] = ()  # choice: the accepted values (compared as text)
    words: tuple[str, ...] = ()  # also accepted, e.g. ("auto",)
    null: bool = False  # null (None) accepted
    say: str = ""  # what the error message says to use, when not generated from the above
    unset: object = None  # style.*: the value when a style's YAML leaves the setting out

    @property
    def required(self) -> bool:
        return self.unset is REQUIRED

    def hint(self) -> str:
        """What to use instead of a bad value: the end of the one-line error."""
        if self.say:
            return self.say
        if self.kind in ("int", "float") and self.low is None:
            return "a whole number" if self.kind == "int" else "a number"
        if self.kind == "int":
            if self.high is None:
                return f"a whole number >= {self.low}"
            return f"a whole number from {self.low} to {self.high}"
        if self.kind == "float":
            if self.high is None:
                return f"a number {'>' if self.open_low else '>='} {self.low:g}"
            if self.open_low:
                return f"a number in ({self.low:g}, {self.high:g}]"
            return f"a number from {self.low:g} to {self.high:g}"
        if self.kind == "choice":
            return either(self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "rgb":
            return "three whole numbers from 0 to 255, e.g. [255, 255, 255]"
        if self.kind == "mapping":
            return "a mapping, e.g. {block4_conv1: 1.0}"
        return "one value (a name, number or path)"

    def accepted(self) -> str:
        """What the setting accepts, in a few characters (--help): 8..4096, true|false, ..."""
        text = ""
        if self.kind in ("int", "float"):
            show = str if self.kind == "int" else (lambda x: f"{x:g}")
            if self.low is None:
                text = "a whole number" if self.kind == "int" else "a number"
            elif self.high is None:
                text = f"{'>' if self.open_low else '>='} {show(self.low)}"
            elif self.open_low:
                text = f"({show(self.low)}, {show(self.high)}]"
            else:
                text = f"{show(self.low)}..{show(self.high)}"
        elif self.kind in ("choice", "bool"):
            text = "|".join(self.choices or ("true", "false"))
        elif self.kind in ("rgb", "mapping"):
            text = "[R, G, B]" if self.kind == "rgb" else "{key: value}"
        if not text:
            return ""
        return "|".join((*self.words, text, *(("null",) if self.null else ())))

    def accepts(self, value) -> bool:
        if value is None:
            return self.null
        if isinstance(value, str) and value in self.words:
            return True
        if self.kind == "any":
            return True
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            text = str(value).lower() if isinstance(value, bool) else str(value)
            return isinstance(value, str | int | float) and text in self.choices
        if self.kind == "text":
            return isinstance(value, str | int | float) and not isinstance(value, bool)
        if self.kind == "mapping":
            return isinstance(value, Mapping)
        if self.kind == "rgb":
            return (
                isinstance(value, Sequence)
                and not isinstance(value, str)
                and len(value) == 3
                and all(_whole(v) and 0 <= v <= 255 for v in value)
            )
        if self.kind == "int":
            return _whole(value) and self._in_range(value)
        if self.kind == "float":
            number = isinstance(value, int | float) and not isinstance(value, bool)
            return number and math.isfinite(value) and self._in_range(value)
        raise ValueError(f"{self.key}: unknown kind {self.kind}")

    def _in_range(self, value) -> bool:
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def problem(self, value) -> str | None:
        """The one-line error for `value`, or None when it is accepted."""
        if self.accepts(value):
            return None
        return f"{self.key}={value} is invalid: use {self.hint()}"


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def either(options) -> str:
    """a, b or c"""
    options = [str(option) for option in options]
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


def _style(key: str, kind: str, low, high, doc: str, unset) -> Setting:
    """A style option with a range; its message states the range as check_style always has."""
    return Setting(key, kind, doc, low, high, say=f"a number from {low} to {high}", unset=unset)


# Namespaces: a mapping of settings, never a value of its own (a config group where one exists).
SECTIONS = {
    "model": (
        "the network: model=vgg16 (default), vgg19, keras (a model file) or flax (your module)"
    ),
    "style": (
        "how images start, change and are shown: style=chollet2016 (default), olah2017, "
        "olah2017_256 or fel2023; any style can switch any option on"
    ),
    "output": "atlas.png, best.png, labels, PDFs and the gallery",
    "metrics": "per-filter quality, measured on the saved PNGs (see render/metrics.py)",
    "distributed": (
        "several processes render one layer together (each every n-th filter; see README)"
    ),
    "examples": (
        "dataset examples: each filter's top photos and patches (python -m render.examples)"
    ),
    "dream": (
        "objective=dream (the classic recipe: octaves, detail re-injection, normalized steps)"
    ),
}
# Sections whose values are checked elsewhere for now: dream.* by render/dream.py (check_settings)
# while deep dream moves onto the main engine; their types here are what --help says.
CHECKED_ELSEWHERE = ("dream",)

SETTINGS: tuple[Setting, ...] = (
    # -- top level (conf/config.yaml; steps and step_size come with each style) --
    Setting(
        "objective",
        "choice",
        "filters (of `layer`), class (logits of `classes`), dream (photos in `image`)",
        choices=("filters", "class", "dream"),
    ),
    Setting("layer", "text", "Keras name (block5_conv2) or the 2016 post's alias (conv5_2)"),
    Setting("filters", "any", "0-511, 0,5,9-12 or all"),
    Setting(
        "classes",
        "any",
        'objective=class: indices, ranges, names or wnids: 65, 0-999, "sea snake", [65, magpie]',
    ),
    Setting(
        "class_output",
        "choice",
        "objective=class: maximize the pre-softmax logit, or the softmax probability",
        choices=("logit", "softmax"),
    ),
    Setting(
        "weights",
        "text",
        "model=vgg16/vgg19: imagenet (official Keras file, cached), random (seeded smoke test) "
        "or a .h5 path",
    ),
    Setting(
        "size",
        "int",
        "image side in pixels; auto: 128, or 224 for objective=class",
        8,
        4096,
        words=("auto",),
    ),
    Setting("steps", "int", "ascent steps per image", 1, 100_000),
    Setting(
        "step_size",
        "float",
        "the step: caffe pixel units along the RMS-normalized gradient (normalized_sgd), else the "
        "optimizer's learning rate",
        0.0,
        1e4,
        open_low=True,
    ),
    Setting(
        "seed", "int", "each filter's start depends only on (seed, layer, filter)", 0, 2**31 - 1
    ),
    Setting(
        "batch_size",
        "int",
        "images per compiled batch: auto (from backend, layer and memory) or a number",
        1,
        65_536,
        words=("auto",),
    ),
    Setting(
        "autotune",
        "choice",
        "convolution forms and batch size measured on this host, cached per host: auto (runs of "
        "at least 2560 filter-steps on CPU), true (any run) or false (the built-in defaults)",
        choices=("auto", "true", "false"),
    ),
    Setting(
        "loop",
        "choice",
        "where the step loop runs: auto (measured per backend), python or device",
        choices=("auto", "python", "device"),
    ),
    Setting(
        "precision",
        "choice",
        "fp32, tf32 (GPU matmul units) or bf16 (bf16 operands, fp32 accumulation; faster on CPU)",
        choices=("fp32", "tf32", "bf16"),
        say="fp32, tf32, bf16",
    ),
    Setting("progress", "bool", "progress bar with filters/s and ETA"),
    Setting("debug", "bool", "show full Python tracebacks instead of one-line errors"),
    Setting("cache_dir", "text", "downloaded weights and XLA's persistent compilation cache"),
    Setting(
        "weights_url",
        "text",
        "where weights=imagenet downloads Keras' official files from (per model)",
    ),
    Setting("image", "text", "objective=dream: a photo, a folder of photos or a glob", null=True),
    Setting(
        "objectives",
        "any",
        'expressions, one image each: \'["block4_conv3:12", "0.5*block5_conv1:7@center - '
        'block4_conv3:30", "class:sea snake"]\' (render/expressions.py)',
        null=True,
    ),
    Setting(
        "interpolate",
        "any",
        "two expressions: `frames` blends (1-t)*a + t*b from one shared start, in one batch: "
        '\'["block4_conv3:12", "block4_conv3:30"]\'',
        null=True,
    ),
    Setting("frames", "int", "interpolate: images from the first objective to the second", 2, 1024),
    Setting(
        "interpolate_alignment",
        "float",
        "interpolate: weight of the alignment of neighbouring frames' activations (0: off)",
        0.0,
        1e6,
    ),
    Setting(
        "init",
        "text",
        "a photo to start from instead of noise (any objective, filters too)",
        null=True,
    ),
    Setting(
        "init_weight",
        "float",
        "pull back towards the init photo: L2 penalty in 0-1 pixel units (0: none)",
        0.0,
        1e9,
    ),
    Setting(
        "caricature",
        "text",
        "a photo: maximize the agreement of `layer`'s activations with the photo's own (Lucid's "
        "caricature), from the photo",
        null=True,
    ),
    Setting(
        "caricature_cosine",
        "float",
        "caricature: weight the dot product by cosine ** this power (0: the plain dot product)",
        0.0,
        100.0,
    ),
    # -- metrics.* --
    Setting(
        "metrics.measure",
        "bool",
        "activation, ratio to the best natural-photo crop, best stimulus of the layer",
    ),
    Setting(
        "metrics.reference",
        "text",
        "a folder of your own photos for the natural crops (null: the shipped set)",
        null=True,
    ),
    Setting(
        "metrics.views",
        "int",
        "random views of each image for its robustness score (0: no robustness score)",
        0,
        64,
    ),
    # -- distributed.* --
    Setting(
        "distributed.coordinator",
        "text",
        "host:port of process 0 (null: one process), or auto on SLURM / Open MPI",
        null=True,
    ),
    Setting("distributed.processes", "int", "how many processes in all", 1, 65_536),
    Setting("distributed.process_id", "int", "this process's number, 0..processes-1", 0, 65_535),
    # -- examples.* --
    Setting(
        "examples.photos",
        "text",
        "a folder of photos to rank after rendering (null: none; render.examples defaults to the "
        "shipped ones)",
        null=True,
    ),
    Setting("examples.k", "int", "photos and patches kept per filter", 1, 100_000),
    Setting("examples.batch", "int", "photos per compiled batch", 1, 100_000),
    Setting(
        "examples.size", "int", "photo side (null: the model's input size)", 1, 100_000, null=True
    ),
    Setting("examples.every", "int", "batches between saves of the resumable state", 1, 100_000),
    # -- dream.* (checked by render/dream.py for now: see CHECKED_ELSEWHERE) --
    Setting(
        "dream.layers",
        "mapping",
        "{layer: weight} of mean squared activations; null: {block4_conv1: 1.0, block3_conv3: 0.5}",
        null=True,
    ),
    Setting(
        "dream.filters",
        "mapping",
        "e.g. {block5_conv1: [3, 7]}: maximize single filters instead of whole layers",
        null=True,
    ),
    Setting("dream.octaves", "int", "scales, smallest first", 1),
    Setting("dream.octave_scale", "float", "size ratio between octaves", 1.0, open_low=True),
    Setting("dream.steps", "int", "ascent steps per octave", 0),
    Setting(
        "dream.step_size",
        "float",
        "in [-1, 1] image units; 0.01 (the Keras example) is garish on VGG16",
        0.0,
        open_low=True,
    ),
    Setting(
        "dream.max_loss",
        "float",
        "stop an octave once the loss exceeds this (null: never)",
        null=True,
    ),
    Setting("dream.jitter", "int", "random shift per step, pixels", 0),
    Setting(
        "dream.max_side",
        "int",
        "shrink larger photos to this side first (null: keep their size)",
        8,
        null=True,
    ),
    # -- model.* (conf/model/*.yaml) --
    Setting(
        "model.name",
        "choice",
        "which network: vgg16, vgg19, keras or flax (set by model=...)",
        choices=("vgg16", "vgg19", "keras", "flax"),
        say="vgg16, vgg19, keras, flax",
        unset=REQUIRED,
    ),
    Setting(
        "model.preprocess",
        "choice",
        "caffe (BGR minus the mean pixel), tf (-1..1), torch or unit (RGB/255), as the model was "
        "trained (model=keras: required)",
        choices=("caffe", "tf", "torch", "unit"),
        null=True,
        say="caffe, tf, torch or unit (RGB/255)",
    ),
    Setting(
        "model.labels",
        "text",
        "a file of class names, one per line (null: ImageNet's for 1000 classes, else indices)",
        null=True,
    ),
    Setting(
        "model.file",
        "text",
        "model=keras: the .keras or .h5 file saved by model.save(...)",
        null=True,
    ),
    Setting(
        "model.backend",
        "choice",
        "model=keras: auto (a plain chain of layers runs as compiled JAX, anything else through "
        "Keras), chain or keras",
        choices=("auto", "chain", "keras"),
    ),
    Setting(
        "model.factory",
        "text",
        "model=flax: pkg.module:function returning (module, params, layer names)",
        null=True,
    ),
    Setting(
        "model.input_size",
        "int",
        "model=flax: the side the module expects (size=auto renders at it)",
        8,
        4096,
    ),
    # -- output.* (conf/output/default.yaml) --
    Setting(
        "output.root",
        "text",
        "every run gets a folder below this one, named after what changes the images",
    ),
    Setting("output.margin", "int", "pixels between atlas tiles", 0, 1000),
    Setting(
        "output.cols", "int", "atlas columns; null makes a near-square grid", 1, 100_000, null=True
    ),
    Setting(
        "output.background",
        "rgb",
        "RGB of empty tiles (dead filters), and of the margins unless margin_color",
    ),
    Setting(
        "output.margin_color",
        "rgb",
        "RGB of the margins, label strips and title; null: background",
        null=True,
    ),
    Setting(
        "output.best_n",
        "int",
        "tiles in best.png: the filters with the highest final loss",
        1,
        100_000,
    ),
    Setting("output.best_cols", "int", "columns of best.png", 1, 100_000),
    Setting(
        "output.best_by",
        "choice",
        "what ranks best.png: loss_end, activation or ratio_to_natural",
        choices=("loss_end", "activation", "ratio_to_natural"),
    ),
    Setting("output.labels", "bool", "a label under each tile"),
    Setting(
        "output.label_kind",
        "choice",
        "what labels say: index, loss, both or objective (objectives= runs)",
        choices=("index", "loss", "both", "objective"),
    ),
    Setting("output.label_color", "rgb", "RGB of the labels and the title"),
    Setting(
        "output.font_size",
        "int",
        "label height in pixels; null: tile size / 8 (at least 10)",
        1,
        1000,
        null=True,
    ),
    Setting("output.title", "text", "a title above atlas.png and best.png", null=True),
    Setting(
        "output.scale",
        "int",
        "integer tile enlargement without blur (nearest neighbour), for print",
        1,
        16,
    ),
    Setting(
        "output.dpi",
        "int",
        "resolution stored in the PNGs and used for the PDF page size",
        10,
        4800,
        null=True,
    ),
    Setting("output.pdf", "bool", "also write atlas.pdf and best.pdf"),
    Setting(
        "output.gallery", "bool", "write index.html pages (per run, and an overview in output.root)"
    ),
    Setting(
        "output.examples",
        "bool",
        "a row of each filter's top photo patches under its tile (from render.examples)",
    ),
    Setting(
        "output.alpha",
        "bool",
        "styles with a transparency map (style=fel2023): also write <name>_rgba.png, the image "
        "with the map as alpha",
    ),
    # -- style.* (conf/style/*.yaml; `unset`: the value when a style leaves the option out) --
    Setting(
        "style.name",
        "text",
        "the style's name, which starts its run folders (chollet2016-128px-...)",
        unset=REQUIRED,
    ),
    Setting(
        "style.parameterization",
        "choice",
        "pixels (caffe-space pixels), fourier (decorrelated colour, 1/f prior) or maco (fixed "
        "spectrum)",
        choices=("pixels", "fourier", "maco"),
        unset=REQUIRED,
    ),
    _style(
        "style.gray", "float", 0.0, 255.0, "pixels: start at this gray level (0-255) ...", 128.0
    ),
    _style("style.noise", "float", 0.0, 255.0, "... plus uniform noise in [0, noise)", 20.0),
    _style("style.decay", "float", 0.0, 10.0, "fourier: frequency-decay power of the prior", 1.0),
    _style("style.init_std", "float", 0.0, 100.0, "fourier: scale of the random start", 0.01),
    Setting(
        "style.spectrum",
        "text",
        "maco: shipped (the reference photos' spectrum), a folder of photos, or a .npy",
        null=True,
    ),
    Setting(
        "style.optimizer",
        "choice",
        "normalized_sgd (g / rms(g), the 2016 step), normalized_by_mean_abs (g / mean(|g|), the "
        "Keras deep dream step), adam or nadam (optax)",
        choices=("normalized_sgd", "normalized_by_mean_abs", "adam", "nadam"),
        unset=REQUIRED,
    ),
    Setting(
        "style.display",
        "choice",
        "2016 (center, std 0.1, clip) or direct (the image as optimized)",
        choices=("2016", "direct"),
        unset="2016",
    ),
    Setting(
        "style.transforms",
        "mapping",
        "random pad/jitter/scale/rotate per image and step (null: none; see style=olah2017)",
        null=True,
    ),
    _style(
        "style.transforms.pad", "int", 0, 256, "gray border the view may reach into (pixels)", 0
    ),
    _style("style.transforms.jitter", "int", 0, 256, "random shift, pixels each way", 0),
    _style(
        "style.transforms.scale", "float", 0.0, 0.9, "random zoom in [1 - scale, 1 + scale]", 0.0
    ),
    _style(
        "style.transforms.rotate", "float", 0.0, 180.0, "random rotation, degrees each way", 0.0
    ),
    _style("style.tv_weight", "float", 0.0, 1e6, "total-variation penalty (0-1 pixel units)", 0.0),
    _style("style.l2_weight", "float", 0.0, 1e6, "L2 penalty on pixel values", 0.0),
    _style("style.blur_every", "int", 0, 10**6, "blur the image every N steps (0: never)", 0),
    _style("style.blur_sigma", "float", 0.1, 10.0, "Gaussian blur width in pixels", 0.5),
    _style(
        "style.redirect_steps",
        "int",
        0,
        10**6,
        "redirected-ReLU gradient for the first N steps (revives dead filters)",
        0,
    ),
    _style(
        "style.octaves",
        "int",
        1,
        8,
        "render at `octaves` sizes, smallest first, each octave_scale larger",
        1,
    ),
    _style("style.octave_scale", "float", 1.0, 4.0, "size ratio between octaves", 1.5),
    _style(
        "style.diversity",
        "int",
        1,
        64,
        "images per filter, side by side in its PNG, pushed apart (1: off)",
        1,
    ),
    _style(
        "style.diversity_weight",
        "float",
        0.0,
        1e6,
        "weight of their mean Gram-matrix correlation (activations are ~10-1000)",
        100.0,
    ),
    Setting(
        "style.lr_schedule",
        "choice",
        "constant, cosine or linear: the rate's decay over each octave's steps",
        choices=("constant", "cosine", "linear"),
        unset="constant",
    ),
    _style(
        "style.lr_final",
        "float",
        0.0,
        1.0,
        "cosine/linear: the last step's multiple of step_size",
        0.0,
    ),
    _style(
        "style.crops",
        "int",
        0,
        256,
        "random crops scored per image and step (0: none; MACO's views, the paper: 32)",
        0,
    ),
    _style(
        "style.crop_max",
        "float",
        0.05,
        1.0,
        "mean crop side at the first step, a fraction of the image side ...",
        1.0,
    ),
    _style(
        "style.crop_min",
        "float",
        0.05,
        1.0,
        "... shrinking linearly to this at the last step",
        0.5,
    ),
    _style(
        "style.crop_noise",
        "float",
        0.0,
        10.0,
        "noise on each crop: std in half the pixel range",
        0.08,
    ),
    Setting(
        "style.transparency",
        "bool",
        "accumulate |d objective / d image|: saved as <name>_alpha.png",
        unset=False,
    ),
)

BY_KEY = {setting.key: setting for setting in SETTINGS}


def setting(key: str) -> Setting:
    return BY_KEY[key]


def choices(key: str) -> tuple[str, ...]:
    return BY_KEY[key].choices


def children(key: str) -> list[Setting]:
    """The settings one level below `key` ("" for the top level), in table order."""
    depth = key.count(".") + 1 if key else 0
    prefix = f"{key}." if key else ""
    return [s for s in SETTINGS if s.key.startswith(prefix) and s.key.count(".") == depth]


def unknown(key: str) -> str:
    return f"unknown setting '{key}': see python -m render --help for the settings"


def problems(tree: Mapping, prefix: str = "") -> Iterator[str]:
    """The one-line error of every bad value in `tree` (a plain dict of settings, e.g. a composed
    config as a container, or the `style` node with prefix "style."), in the tree's order."""
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if key in SECTIONS:
            if not isinstance(value, Mapping):
                yield f"{key}={value} is invalid: use {key}.KEY=VALUE for its settings"
            elif key not in CHECKED_ELSEWHERE:
                yield from problems(value, f"{key}.")
            continue
        found = BY_KEY.get(key)
        if found is None:
            yield unknown(key)
            continue
        problem = found.problem(value)
        if problem:
            yield problem
        elif isinstance(value, Mapping) and children(key):
            yield from problems(value, f"{key}.")
    section = prefix.rstrip(".")
    for required in children(section) if section in SECTIONS else []:
        if required.required and required.key.rpartition(".")[2] not in tree:
            yield required.problem(None)


def first_problem(tree: Mapping, prefix: str = "") -> str | None:
    return next(problems(tree, prefix), None)


def check(tree: dict) -> None:
    """UserError with the first bad value of a composed config (a plain dict)."""
    problem = first_problem(tree)
    if problem:
        raise UserError(problem)


def filled(tree: Mapping | None, section: str) -> dict:
    """`tree` (a section's settings) with every setting it leaves out at its `unset` value,
    nested mappings included: what a style means by the options its YAML does not name."""
    tree = dict(tree or {})
    for item in children(section):
        name = item.key.rpartition(".")[2]
        value = tree.get(name, None if item.required else item.unset)
        if isinstance(value, Mapping) and children(item.key):
            value = filled(value, item.key)
        tree[name] = value
    return tree
