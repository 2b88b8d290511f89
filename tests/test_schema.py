"""The settings table (render/schema.py) against conf/: every key declared once, both ways; its
checks, --help, and the sweep jobs and the one check per job that the command line builds on it."""

import os
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from render import schema
from render.cli import CONF_DIR, compose_config, help_text, job_overrides
from render.settings import register_resolvers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conf_files():
    """(path relative to conf/, the package its keys land in) of every YAML in conf/."""
    for folder, _, names in sorted(os.walk(CONF_DIR)):
        for name in sorted(names):
            if name.endswith(".yaml"):
                path = os.path.relpath(os.path.join(folder, name), CONF_DIR)
                group = os.path.dirname(path).replace(os.sep, ".")
                with open(os.path.join(CONF_DIR, path), encoding="utf-8") as f:
                    text = f.read()
                yield path, "" if "@package _global_" in text else group, text


def flat(tree, prefix=""):
    for name, value in tree.items():
        yield f"{prefix}{name}", value
        if isinstance(value, dict):
            yield from flat(value, f"{prefix}{name}.")


def conf_keys():
    """{dotted key: [(file, value)]} of every setting written in conf/: Hydra's own (hydra.*,
    the groups' defaults lists) left out."""
    keys = {}
    for path, package, text in conf_files():
        tree = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
        tree.pop("defaults", None)
        for part in reversed(package.split(".") if package else []):
            tree = {part: tree}
        for key, value in flat(tree):
            if not key.startswith("hydra"):
                keys.setdefault(key, []).append((path, value))
    return keys


def test_every_key_in_conf_is_declared_exactly_once_and_the_reverse():
    assert len({s.key for s in schema.SETTINGS}) == len(schema.SETTINGS), "declared twice"
    keys = conf_keys()
    sections = {key for key in keys if key in schema.SECTIONS}
    assert sections == set(schema.SECTIONS)
    assert set(keys) - sections == set(schema.BY_KEY)
    for key in sections:  # a section only ever holds settings
        assert all(isinstance(value, dict) for _, value in keys[key]), key


def test_shipped_values_pass_their_checks():
    for key, places in conf_keys().items():
        if key not in schema.SECTIONS:
            for path, value in places:
                if not (isinstance(value, str) and "${" in value):
                    assert schema.BY_KEY[key].accepts(value), (path, key, value)


@pytest.mark.parametrize("style", ["chollet2016", "olah2017", "olah2017_256", "fel2023"])
@pytest.mark.parametrize("model", ["vgg16", "vgg19", "keras", "flax"])
def test_each_composition_passes_the_table(style, model):
    register_resolvers()
    cfg = compose_config([f"style={style}", f"model={model}"])
    assert schema.first_problem(OmegaConf.to_container(cfg, resolve=True)) is None
    options = schema.filled(OmegaConf.to_container(cfg.style), "style")  # what a style leaves out
    assert set(options) == {s.key.split(".")[1] for s in schema.children("style")}


def test_styles_name_what_they_must_and_the_rest_have_a_value_when_left_out():
    for setting in schema.children("style"):
        key = setting.key.split(".", 1)[1]
        styles = [p for p, _, _ in conf_files() if p.startswith("style")]
        if setting.required:
            for path in styles:
                assert key in OmegaConf.load(os.path.join(CONF_DIR, path)).style, (path, key)
        else:
            assert setting.unset is None or setting.accepts(setting.unset), setting.key


def comments(path):
    """{dotted key: its comment} of a YAML file that writes each key on a line of its own (up
    to Hydra's own settings)."""
    with open(os.path.join(CONF_DIR, path), encoding="utf-8") as f:
        text = f.read().split("\nhydra:")[0]
    found, stack = {}, []
    for line in text.splitlines():
        match = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):(.*?)(?:\s+#\s?(.*))?$", line)
        if match:
            indent, name, _, comment = match.groups()
            stack = [item for item in stack if item[0] < len(indent)] + [(len(indent), name)]
            found[".".join(name for _, name in stack)] = comment
    return found


@pytest.mark.parametrize(
    ("path", "prefix"), [("config.yaml", ""), ("output/default.yaml", "output.")]
)
def test_yaml_comments_are_the_tables_docs(path, prefix):
    """Files that state each setting once say what the table says (group options such as the
    styles comment on their own values)."""
    for key, comment in comments(path).items():
        key = prefix + key
        if key == "defaults":
            continue
        doc = schema.SECTIONS.get(key) or schema.BY_KEY[key].doc
        assert comment == doc, key


def test_help_is_generated_from_the_table():
    text = help_text()
    lines = text.splitlines()
    for setting in schema.SETTINGS:
        (line,) = [x for x in lines if re.match(rf"  {re.escape(setting.key)}(:|  #)", x)]
        assert f"  # {setting.doc}" in line, line
        assert setting.accepted() in line
    for section, doc in schema.SECTIONS.items():
        assert f"{section}.*: {doc}" in lines
    assert "  style.crops: 0  # " in text and "(style=fel2023: 1)" in text  # left out, and set
    assert "  style: chollet2016*, fel2023, olah2017, olah2017_256" in lines


def test_choices_are_what_the_code_dispatches_on():
    from render.ascent import LOOPS
    from render.models.network import CONVENTIONS
    from render.models.vgg import PRECISIONS
    from render.networks import MODELS
    from render.styles import LR_SCHEDULES, OPTIMIZERS

    assert schema.choices("loop") == ("auto", *LOOPS)
    assert schema.choices("precision") == tuple(PRECISIONS)
    assert schema.choices("model.name") == MODELS
    assert set(schema.choices("model.preprocess")) == set(CONVENTIONS)
    assert set(schema.choices("style.optimizer")) == set(OPTIMIZERS)
    assert schema.choices("style.lr_schedule") == LR_SCHEDULES


def style(**options):
    """A style node with what every style names, and `options`."""
    return {"style": {"name": "x", "parameterization": "pixels", "optimizer": "adam"} | options}


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"size": 0}, "size=0 is invalid: use a whole number from 8 to 4096"),
        ({"size": True}, "size=True is invalid: use a whole number from 8 to 4096"),
        ({"size": "auto", "batch_size": "auto"}, None),
        ({"step_size": float("nan")}, "step_size=nan is invalid: use a number in (0, 10000]"),
        ({"init_weight": -1}, "init_weight=-1 is invalid: use a number from 0 to 1e+09"),
        ({"frames": 1}, "frames=1 is invalid: use a whole number from 2 to 1024"),
        ({"progress": "yes"}, "progress=yes is invalid: use true or false"),
        ({"output": {"dpi": 5}}, "output.dpi=5 is invalid: use a whole number from 10 to 4800"),
        ({"output": {"dpi": None, "cols": None}}, None),
        ({"output": {"background": [0, 0]}}, "output.background=[0, 0] is invalid: use three"),
        ({"output": {"scale": 0}}, "output.scale=0 is invalid: use a whole number from 1 to 16"),
        ({"model": {"name": "vgg16", "preprocess": "bgr"}}, "model.preprocess=bgr is invalid"),
        ({"model": {"preprocess": "unit"}}, "model.name=None is invalid: use vgg16, vgg19"),
        (style(transforms={"pad": -1}), "style.transforms.pad=-1 is invalid"),
        (style(octaves=1.5), "style.octaves=1.5 is invalid: use a number from 1 to 8"),
        (style(display=2016, transforms=None, crops=0), None),
        ({"style": {"name": "x", "optimizer": "adam"}}, "style.parameterization=None is invalid"),
        ({"colour": "red"}, "unknown setting 'colour': see python -m render --help"),
        (style(colour=1), "unknown setting 'style.colour'"),
        ({"examples": {"k": 0}}, "examples.k=0 is invalid: use a whole number from 1 to 100000"),
        ({"dream": {"octaves": 0, "anything": 1}}, None),  # render/dream.py checks dream.*
    ],
)
def test_one_line_per_bad_value(tree, message):
    problem = schema.first_problem(tree)
    assert problem == message if message is None else problem.startswith(message), problem


def test_the_schema_imports_neither_jax_nor_omegaconf():
    code = "import sys, render.schema; print(sorted({'jax', 'omegaconf'} & set(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.strip() == "[]", result.stderr


SWEEPS = [
    ["layer=conv1_1,conv2_1", "steps=2,3", "size=16"],
    ["sweep=conv_layers", "filters=0-5"],
    ["sweep=conv_layers", "layer=conv1_1,conv3_1"],
    ["steps=range(1,4)", "seed=1,2", "steps=7,8"],
    ["sweep=all", "layer=conv1_1"],
    ["+foo=1,2", "style=olah2017,chollet2016", "seed=choice(3,4)"],
    ["~dream.jitter", "seed=1,2"],
]


@pytest.mark.parametrize("overrides", SWEEPS)
def test_sweep_jobs_are_those_of_hydras_basic_sweeper(overrides):
    """The public override parser gives the jobs, in the order, of Hydra's basic sweeper (its
    private split_arguments, compared here only)."""
    basic = pytest.importorskip("hydra._internal.core_plugins.basic_sweeper")
    from hydra.core.override_parser.overrides_parser import OverridesParser

    register_resolvers()
    jobs = job_overrides(overrides, multirun=True)
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    params = compose_config(fixed, hydra_config=True).hydra.sweeper.get("params") or {}
    parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + overrides)
    (expected,) = basic.BasicSweeper.split_arguments(parsed, None)
    assert jobs == expected


def test_a_sweep_of_a_continuous_range_is_one_line():
    from render.errors import UserError

    with pytest.raises(UserError, match=r"^steps=interval\(1,4\): a sweep takes lists"):
        job_overrides(["steps=interval(1,4)"], multirun=True)


COUNT_CHECKS = """
import sys
import render.settings
from render.__main__ import main

calls, real = [], render.settings._prepare
render.settings._prepare = lambda cfg: calls.append(cfg.steps) or real(cfg)
sys.argv = ["render", *sys.argv[1:]]
try:
    main()
finally:
    print("checked:", sorted(calls), "kept:", len(render.settings._CHECKED))
"""


def test_each_job_is_checked_once_per_process(weight_files, tmp_path):
    """The command checks every job before Hydra makes a folder; the Hydra task (here in the
    same process: the basic launcher) reuses that check instead of checking again."""
    args = ["-m", "steps=1,2", "layer=conv2_1", "filters=0", "size=16", "progress=false"]
    args += [f"weights={weight_files['keras_notop']}", f"output.root={tmp_path}"]
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run(
        [sys.executable, "-c", COUNT_CHECKS, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "checked: [1, 2] kept: 0" in result.stdout
    assert len(list((tmp_path / "block2_conv1").iterdir())) == 2
