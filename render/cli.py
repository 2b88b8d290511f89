"""Command-line plumbing around Hydra: one-line errors, and checking every job before any file.

Hydra creates a run's folder (with its log and config) before the task starts, so bad input
is caught first here: each job of the command (each sweep combination, enumerated as Hydra's
basic sweeper does, with its public override parser) is composed with Hydra's compose API and
checked, and the weights are fetched, before Hydra runs at all. The checked jobs are kept for
the Hydra task of the same process (render.settings.prepare), so each is checked once.
"""

from __future__ import annotations

import importlib.resources
import itertools
import os
import re
import sys
import traceback

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from render.errors import UserError

# conf/ ships inside the package as render.conf (see pyproject.toml), from a wheel or a checkout
CONF_DIR = str(importlib.resources.files("render.conf"))
CONFIG_NAME = "config"
INFO_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--version",
    "--shell-completion",
    "-sc",
    "--resolve",
}
VALUE_FLAGS = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--cfg",
    "-c",
    "--package",
    "-p",
}
INDEX_KEYS = ("filters", "classes")


GROUPS = ("model", "style", "output", "sweep", "hydra/launcher")  # config groups in conf/


def _yaml(value) -> str:
    """A value as the YAML (and the command line) writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _flat(tree: dict, prefix: str = "") -> dict:
    """{dotted key: value} of a nested config, mappings included (and their contents)."""
    flat = {}
    for name, value in tree.items():
        flat[f"{prefix}{name}"] = value
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{name}.")
    return flat


def group_options(group: str) -> dict[str, tuple[str, dict]]:
    """{option: (the first sentence of its opening comment, {dotted key: value} as it lands in
    the composed config)} of a config group."""
    from omegaconf import OmegaConf

    folder = os.path.join(CONF_DIR, group)
    options = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            text = f.read()
        about = []  # the opening comment up to its first example or sentence end
        for line in text.splitlines():
            if not line.startswith("#") or line.startswith(("#   ", "# @package")):
                if about or not line.startswith("# @package"):
                    break
                continue
            about.append(line[1:].strip())
        about = re.split(r"(?<=[a-z0-9)\]])\.\s+(?=[A-Z])", " ".join(about))[0]
        tree = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
        tree.pop("defaults", None)
        if "@package _global_" not in text:
            for part in reversed(group.split("/")):
                tree = {part: tree}
        options[name.removesuffix(".yaml")] = (about.rstrip(":"), _flat(tree))
    return options


def help_text() -> str:
    """--help, generated from the settings table (render/schema.py): every setting with its
    default as conf/ composes it, its one-line description and what it accepts, grouped by
    section; the values other options of a group give it; then the groups and their options."""
    from omegaconf import OmegaConf

    from render import schema

    main = OmegaConf.load(os.path.join(CONF_DIR, f"{CONFIG_NAME}.yaml"))
    listed = OmegaConf.to_container(main.defaults)
    chosen = {k: v for item in listed if isinstance(item, dict) for k, v in item.items()}
    composed = OmegaConf.to_container(compose_config([]), resolve=False)
    composed["style"] = schema.filled(composed["style"], "style")  # what the style leaves out
    defaults = _flat(composed)
    others: dict[str, list[str]] = {}  # key -> "group=option: value" of the other options
    options = {group: group_options(group) for group in GROUPS}
    for group in ("model", "style"):
        for option, (_, values) in options[group].items():
            for key, value in values.items():
                differs = key not in defaults or defaults[key] != value
                if (
                    option not in (chosen.get(group), value)
                    and not isinstance(value, dict)
                    and differs
                ):
                    others.setdefault(key, []).append(f"{group}={option}: {_yaml(value)}")

    def line(setting: schema.Setting) -> str:
        value = f": {_yaml(defaults[setting.key])}" if setting.key in defaults else ""
        accepted = setting.accepted()
        text = f"  {setting.key}{value}  # {setting.doc}" + (f" [{accepted}]" if accepted else "")
        if setting.key in others:
            text += f" ({', '.join(others[setting.key])})"
        return text

    parts = [main.hydra.help.header.rstrip()]
    top = [s for s in schema.SETTINGS if "." not in s.key]
    parts.append(
        "Settings (change any with key=value; `key: default  # what it does [accepted]`):\n"
        + "\n".join(line(s) for s in top)
    )
    for section, about in schema.SECTIONS.items():
        rows = [s for s in schema.SETTINGS if s.key.startswith(f"{section}.")]
        parts.append(f"{section}.*: {about}\n" + "\n".join(line(s) for s in rows))
    groups = ["Groups (choose with group=option; * the default):"]
    for group in GROUPS:
        names = [f"{o}*" if o == chosen.get(group) else o for o in options[group]]
        groups.append(f"  {group}: {', '.join(names)}")
        groups += [
            f"    {o}: {about}" if about else f"    {o}" for o, (about, _) in options[group].items()
        ]
    parts.append("\n".join(groups))
    parts.append(main.hydra.help.footer.rstrip())
    parts.append(
        "More: python -m render --cfg job (the composed settings), --hydra-help (Hydra's flags),\n"
        "render/BENCHMARKS.md (speed), README.md (outputs, styles, clusters)."
    )
    return "\n\n".join(parts) + "\n"


def debug_requested(argv: list[str]) -> bool:
    return any(re.fullmatch(r"\+*debug=(true|True|1)", arg) for arg in argv)


def fail(err: BaseException, debug: bool) -> None:
    """Print one line (or the whole traceback with debug=true) and exit non-zero."""
    if debug:
        traceback.print_exception(err)
    print(f"render: error: {err}", file=sys.stderr)
    sys.exit(2)


def quote_index_lists(argv: list[str]) -> list[str]:
    """Without -m, `filters=0,5,9-12` means one set of filters, not a sweep: quote it for Hydra."""
    if "-m" in argv or "--multirun" in argv:
        return argv
    pattern = re.compile(rf"^({'|'.join(INDEX_KEYS)})=([^'\"\[].*,.*)$")
    return [pattern.sub(r"\1='\2'", arg) for arg in argv]


def split_command(argv: list[str]) -> tuple[list[str], bool, bool]:
    """(overrides, multirun, information only) of a Hydra command line."""
    overrides, multirun, info = [], False, False
    args = iter(argv)
    for arg in args:
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg.split("=")[0] in INFO_FLAGS:
            info = True
            if arg in VALUE_FLAGS:
                next(args, None)
        elif arg.startswith("-"):
            if arg in VALUE_FLAGS:
                next(args, None)
        else:
            overrides.append(arg)
    return overrides, multirun, info


def _hydra_message(err: Exception) -> str:
    if isinstance(err, MissingConfigException) and err.options:
        group = os.path.dirname(err.missing_cfg_file or "") or "option"
        name = os.path.basename(err.missing_cfg_file or "")
        return f"unknown {group} '{name}': choose one of {', '.join(sorted(err.options))}"
    text = str(err)
    match = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Key '([^']+)' is not in struct", text
    )
    if match:
        return f"unknown setting '{match[1]}': see python -m render --help for the settings"
    return text.strip().splitlines()[0]


def compose_config(overrides: list[str], hydra_config: bool = False):
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=hydra_config)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise UserError(_hydra_message(err)) from None


def sweep_choices(overrides: list[Override]) -> dict[str, list[str]]:
    """Each key's overrides, one per value it takes, in the order of Hydra's basic sweeper: keys
    in order of first mention (a later override of a key replaces its values in place)."""
    choices: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise UserError(
                f"{override.input_line}: a sweep takes lists, choice() or range(), not "
                f"{override.value_type.name.lower()}"
            )
    return choices


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job the command will run: with -m, the sweep config's
    hydra.sweeper.params first, then the command's overrides, every combination in turn."""
    if not multirun:
        return [overrides]
    parser = OverridesParser.create()
    try:
        fixed = [
            o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()
        ]
        cfg = compose_config(fixed, hydra_config=True)
        params = cfg.hydra.sweeper.get("params") or {}
        parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + overrides)
        return [list(job) for job in itertools.product(*sweep_choices(parsed).values())]
    except HydraException as err:
        raise UserError(_hydra_message(err)) from None


def check_command(argv: list[str]) -> None:
    """Compose and check every job of the command; raises UserError on the first bad one."""
    from render.settings import check

    overrides, multirun, info = split_command(argv)
    if info:
        return
    from render.distributed import join

    for overrides_of_job in job_overrides(overrides, multirun):
        own = [o for o in overrides_of_job if not o.lstrip("+~").startswith("hydra")]
        cfg = compose_config(own)
        join(cfg)  # before JAX does anything: models may be built while checking
        check(cfg)  # kept for the Hydra task's prepare of the same config
