"""Packaging: a wheel of the sources installs `render` alone and runs from any folder.

The slow check of the suite (about half a minute): it builds the wheel, installs it into a
fresh virtual environment that borrows the installed dependencies, and renders two filters
there with `python -m render` and with the `render` console script.
"""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from test_cli import REPO

pytestmark = pytest.mark.packaging

SOURCES = ("pyproject.toml", "README.md", "render", "models", "conf")
RUN = ["weights=random", "layer=conv1_1", "filters=0-1", "size=16", "steps=2", "progress=false"]


def run(*command, cwd):
    """A command outside the checkout: without PYTHONPATH, so imports come from the venv."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_wheel_installs_render_alone_and_runs_from_anywhere(tmp_path):
    # a copy of the sources, so the build's own files (build/, egg-info) stay out of the checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if os.path.isdir(os.path.join(REPO, name)):
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(os.path.join(REPO, name), source / name, ignore=ignore)
        else:
            shutil.copy(os.path.join(REPO, name), source / name)
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    run(*pip_wheel, "-w", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("render-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"render"}
    assert {"render/models/vgg.py", "render/conf/config.yaml", "render/api.py"} <= set(names)
    assert {"render/templates/run.html", "render/templates/gallery.css"} <= set(names)
    assert any(name.startswith("render/conf/style/") for name in names)
    assert any(name.startswith("render/data/") for name in names)

    # the venv borrows the installed dependencies; its own site-packages come first on the path,
    # before a development install of the checkout among the borrowed ones
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp_path)
    python, installed = venv / "bin" / "python", str(venv / "lib")
    pip_install = [python, "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall"]
    run(*pip_install, wheel, cwd=tmp_path)
    where = "import render.api, render.models, render.conf; print(render.api.__file__, "
    where += "render.models.__file__, render.conf.__file__)"
    for path in run(python, "-c", where, cwd=tmp_path).split():
        assert path.startswith(installed), path

    for name, command in (("module", [python, "-m", "render"]), ("script", [venv / "bin/render"])):
        out = tmp_path / "out" / name
        run(*command, *RUN, f"output.root={out}", cwd=tmp_path)
        (folder,) = (out / "block1_conv1").iterdir()
        assert {"block1_conv1_0000.png", "block1_conv1_0001.png"} <= set(os.listdir(folder))
