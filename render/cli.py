"""Command-line plumbing around Hydra: one-line errors, and checking every job before any file.

Hydra creates a run's folder (with its log and config) before the task starts, so bad input
is caught first here: each job of the command (each sweep combination) is composed with
Hydra's compose API and checked, and the weights are fetched, before Hydra runs at all.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import sys
import traceback

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
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


def help_text() -> str:
    """--help: the settings with their one-line descriptions, as the config files state them."""
    with open(os.path.join(CONF_DIR, f"{CONFIG_NAME}.yaml"), encoding="utf-8") as f:
        main = f.read().split("\nhydra:")[0]
    parts = [main.rstrip()]
    for group in ("model", "style", "output", "sweep"):
        folder = os.path.join(CONF_DIR, group)
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read().replace("# @package _global_\n", "").rstrip()
            parts.append(f"# --- {group}={name.removesuffix('.yaml')} ---\n{text}")
    parts.append(
        "# More: python -m render --cfg job (the composed settings), --hydra-help (Hydra's "
        "flags),\n# render/BENCHMARKS.md (speed), README.md (outputs, styles, clusters)."
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


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job the command will run."""
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
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except HydraException as err:
        raise UserError(_hydra_message(err)) from None


def check_command(argv: list[str]) -> None:
    """Compose and check every job of the command; raises UserError on the first bad one."""
    from render.settings import prepare

    overrides, multirun, info = split_command(argv)
    if info:
        return
    from render.distributed import join

    for overrides_of_job in job_overrides(overrides, multirun):
        own = [o for o in overrides_of_job if not o.lstrip("+~").startswith("hydra")]
        cfg = compose_config(own)
        join(cfg)  # before JAX does anything: models may be built while checking
        prepare(cfg)
