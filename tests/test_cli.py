"""The command line: a real run, resume, sweeps, and one clear line for every bad input."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fixtures import fixture_params, write_keras

import render.files
from render.__main__ import main
from render.errors import UserError
from render.files import read_png, write_atomic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, **env_vars):
    env = dict(os.environ, PYTHONPATH=REPO, **env_vars)
    return subprocess.run(
        [sys.executable, "-m", "render", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )


def files_below(folder):
    return sorted(os.path.join(d, f) for d, _, names in os.walk(folder) for f in names)


def test_real_run_writes_images_metadata_hydra_files_and_resumes(weight_files, tmp_path):
    args = [
        f"weights={weight_files['keras_notop']}",
        f"output.root={tmp_path}",
        "layer=conv2_1",
        "filters=0,5,6-7",
        "size=32",
        "steps=5",
        "progress=false",
    ]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    (folder,) = [
        os.path.join(tmp_path, "block2_conv1", d) for d in os.listdir(tmp_path / "block2_conv1")
    ]
    names = set(os.listdir(folder))
    assert {f"block2_conv1_{k:04d}.png" for k in (0, 5, 6, 7)} <= names
    assert {"metadata.json", "atlas.png", "best.png", "render.log", ".hydra"} <= names
    assert "compiled in" in first.stdout
    second = run_cli(*args)
    assert second.returncode == 0
    assert "4 of 4 filters already rendered" in second.stdout
    assert "filters to render" not in second.stdout


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=submitit_local"]])
def test_multirun_gives_each_layer_its_own_folder(weight_files, tmp_path, launcher):
    """Hydra's basic launcher, and the SLURM launch path (hydra-submitit-launcher) run locally."""
    result = run_cli(
        "-m",
        *launcher,
        "layer=conv1_1,conv2_1",
        "filters=0-1",
        "size=16",
        "steps=2",
        f"weights={weight_files['keras_notop']}",
        f"output.root={tmp_path}",
        "progress=false",
    )
    assert result.returncode == 0, result.stderr
    for layer in ("block1_conv1", "block2_conv1"):
        (folder,) = (tmp_path / layer).iterdir()
        assert (folder / f"{layer}_0001.png").exists() and (folder / "metadata.json").exists()
    # the sweep's callback leaves the whole-network figure and the gallery in place
    overview = read_png(str(tmp_path / "overview.png"))[0]
    assert overview.shape[0] > 2 * 16  # a row per layer
    assert "block2_conv1" in (tmp_path / "index.html").read_text()


def test_bad_input_in_a_real_process_is_one_line(tmp_path):
    result = run_cli("layer=conv9_1", f"output.root={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "render: error: unknown layer 'conv9_1': did you mean conv5_1 or conv4_1 or conv3_1? "
        "valid layers are block1_conv1..block5_conv3 (aliases conv1_1..conv5_3), fc1, fc2, "
        "predictions"
    ]
    assert "Traceback" not in result.stderr and os.listdir(tmp_path) == []


def test_help_lists_settings():
    result = run_cli("--help")
    assert result.returncode == 0
    for key in ("layer:", "filters:", "size:", "steps:", "step_size:", "batch_size:", "style:"):
        assert key in result.stdout


def _bad_weights(tmp_path, kind):
    path = tmp_path / f"{kind}.h5"
    params = {k: v for k, v in fixture_params().items() if k.startswith("block")}
    if kind == "vgg19":
        write_keras(path, params, extra_layers={"block3_conv4": params["block3_conv3"]})
    elif kind == "shape":
        params["block4_conv1"] = {
            "kernel": params["block4_conv1"]["kernel"][..., :3],
            "bias": params["block4_conv1"]["bias"][:3],
        }
        write_keras(path, params)
    elif kind == "truncated":
        write_keras(path, params)
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "text":
        path.write_text("hello")
    return str(path)


BAD_INPUTS = {
    "unknown layer": (["layer=block6_conv1"], "unknown layer 'block6_conv1': did you mean"),
    "dense layer": (
        ["layer=fc1"],
        "layer fc1 is fully connected: filter rendering takes a conv layer (block1_conv1..block5_conv3)",
    ),
    "no spatial map": (
        ["layer=conv5_1", "size=8"],
        "size=8 leaves no spatial map at block5_conv1 (it sees 1/16 of the image): use size>=16",
    ),
    "filter out of range": (
        ["filters=0-8"],
        "filters: index 8 is out of range: valid filters are 0-7",
    ),
    "backwards range": (["filters=5-2"], "filters: range '5-2' runs backwards: write 2-5"),
    "letters": (["filters=a-b"], "filters: cannot read 'a-b' in 'a-b'"),
    "double minus": (["filters=--1"], "filters: cannot read '--1' in '--1'"),
    "empty filters": (["filters=''"], "filters: cannot read '' in ''"),
    "size zero": (["size=0"], "size=0 is invalid: use a whole number from 8 to 4096"),
    "size negative": (["size=-64"], "size=-64 is invalid: use a whole number from 8 to 4096"),
    "size absurd": (["size=100000"], "size=100000 is invalid: use a whole number from 8 to 4096"),
    "size text": (["size=big"], "size=big is invalid: use a whole number from 8 to 4096"),
    "steps zero": (["steps=0"], "steps=0 is invalid: use a whole number from 1 to 100000"),
    "step size zero": (["step_size=0"], "step_size=0 is invalid: use a number in (0, 10000]"),
    "step size negative": (
        ["step_size=-1.5"],
        "step_size=-1.5 is invalid: use a number in (0, 10000]",
    ),
    "step size absurd": (
        ["step_size=1e9"],
        "step_size=1000000000.0 is invalid: use a number in (0, 10000]",
    ),
    "batch size zero": (
        ["batch_size=0"],
        "batch_size=0 is invalid: use a whole number from 1 to 65536",
    ),
    "batch size text": (
        ["batch_size=many"],
        "batch_size=many is invalid: use a whole number from 1 to 65536",
    ),
    "loop": (["loop=gpu"], "loop=gpu is invalid: use auto, python or device"),
    "precision": (["precision=fp8"], "precision=fp8 is invalid: use fp32, tf32, bf16"),
    "unknown style": (["style=lucid9"], "unknown style 'lucid9': choose one of chollet2016"),
    "unknown setting": (
        ["colour=red"],
        "unknown setting 'colour': see python -m render --help for the settings",
    ),
    "missing weights": (
        ["weights=/nonexistent/vgg16.h5"],
        "weights file not found: /nonexistent/vgg16.h5 (pass weights=imagenet",
    ),
    "sweep with a bad value": (
        ["-m", "steps=5,0"],
        "steps=0 is invalid: use a whole number from 1 to 100000",
    ),
    "sweep config with a bad filter": (
        ["-m", "sweep=conv_layers", "filters=0-5"],
        "filters: index 5 is out of range: valid filters are 0-3",
    ),
}
BAD_INPUTS |= {
    "dream without image": (
        ["objective=dream"],
        "objective=dream needs image=path/to/photo.jpg (a file, folder or glob)",
    ),
    "dream missing photo": (
        ["objective=dream", "image=/nonexistent/cat.jpg"],
        "no such file or folder: /nonexistent/cat.jpg",
    ),
    "unknown objective": (
        ["objective=poetry"],
        "objective=poetry is invalid: use filters, class or dream",
    ),
}
BAD_WEIGHTS = {
    "vgg19": "has layer 'block3_conv4', which VGG16 does not: VGG19 weights? use model=vgg19",
    "shape": "layer block4_conv1 has kernel shape (3, 3, 16, 3), VGG16 needs (3, 3, 16, 32)",
    "truncated": "truncated or damaged",
    "text": "is not an HDF5 file: expected Keras VGG16 weights (.h5)",
}


def run_main(monkeypatch, capsys, args):
    monkeypatch.setattr(sys, "argv", ["render", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_nonzero_no_files(case, weight_files, tmp_path, monkeypatch, capsys):
    args, message = BAD_INPUTS[case]
    flags = [a for a in args if a.startswith("-")]
    base = [f"weights={weight_files['keras_notop']}", f"output.root={tmp_path}"]
    if "sweep=conv_layers" not in args:
        base.append("layer=conv2_1")
    code, err = run_main(monkeypatch, capsys, flags + base + [a for a in args if a not in flags])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("render: error: " + message), err
    assert files_below(tmp_path) == []


@pytest.mark.parametrize("kind", sorted(BAD_WEIGHTS))
def test_bad_weights_one_line_nonzero_no_files(kind, tmp_path, monkeypatch, capsys):
    path = _bad_weights(tmp_path, kind)
    out = tmp_path / "out"
    out.mkdir()
    code, err = run_main(monkeypatch, capsys, [f"weights={path}", f"output.root={out}"])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"render: error: {path}") and BAD_WEIGHTS[kind] in err, err
    assert files_below(out) == []


def test_output_folder_not_writable(weight_files, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, err = run_main(
        monkeypatch,
        capsys,
        [f"weights={weight_files['keras_notop']}", f"output.root={blocker}/out"],
    )
    assert code == 2
    assert (
        err
        == f"render: error: output folder {blocker}/out is not writable: choose another with output.root=\n"
    )


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    code, err = run_main(
        monkeypatch, capsys, ["layer=nope", "debug=true", f"output.root={tmp_path}"]
    )
    assert code == 2 and "Traceback" in err and err.strip().endswith("predictions")


def test_disk_full_leaves_no_partial_file(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(render.files.os, "fsync", no_space)
    target = tmp_path / "image.png"
    with pytest.raises(
        UserError,
        match="disk full while writing .*image.png: free some space and run the same command again to resume",
    ):
        write_atomic(str(target), b"x" * 1000)
    assert os.listdir(tmp_path) == []


def test_dream_folder_writes_good_photos_and_names_bad_ones(weight_files, tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    gradient = np.linspace(0, 255, 48 * 40 * 3).reshape(40, 48, 3).astype(np.uint8)
    Image.fromarray(gradient).save(photos / "good.png")
    (photos / "bad.jpg").write_text("not a photo")
    args = [
        "objective=dream",
        f"image={photos}",
        "dream.layers={block2_conv1: 1.0}",
        "dream.octaves=2",
        "dream.steps=3",
        f"weights={weight_files['keras_notop']}",
        f"output.root={tmp_path / 'out'}",
        "progress=false",
    ]
    result = run_cli(*args)
    assert result.returncode == 1
    (dreamed,) = (tmp_path / "out").glob("dream/*/good_dream.png")
    assert Image.open(dreamed).size == (48, 40)
    assert "bad.jpg" in result.stdout and "1 of 2 photos dreamed" in result.stdout
    folder = dreamed.parent
    meta = json.loads((folder / "metadata.json").read_text())
    statuses = {os.path.basename(r["source"]): r["status"] for r in meta["filters"].values()}
    assert statuses == {"bad.jpg": "error", "good.png": "ok"}
    assert {"atlas.png", "index.html", "render.log"} <= set(os.listdir(folder))
    assert (tmp_path / "out" / "index.html").exists()
    written = dreamed.stat().st_mtime_ns
    again = run_cli(*args)  # the same command: the good photo is done, the bad one still bad
    assert again.returncode == 1 and "1 of 2 photos already dreamed" in again.stdout
    assert dreamed.stat().st_mtime_ns == written


def test_compare_styles_renders_measures_and_prints_the_table(weight_files, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    table = tmp_path / "table.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "render.compare",
            "--layers",
            "block2_conv1,block3_conv1",
            "--filters",
            "0-3",
            "--json",
            str(table),
            "--",
            f"weights={weight_files['keras_notop']}",
            "size=32",
            "steps=4",
            f"output.root={tmp_path}",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "beat all crops" in result.stdout
    rows = json.loads(table.read_text())
    assert [(r["layer"], r["style"]) for r in rows] == [
        ("block2_conv1", "chollet2016"),
        ("block2_conv1", "olah2017"),
        ("block3_conv1", "chollet2016"),
        ("block3_conv1", "olah2017"),
    ]
    assert all(r["filters"] == 4 and 0 <= r["best_stimulus"] <= 1 for r in rows)
    assert rows[0]["dead"] == 1  # the fixture's dead filter 2 of block2_conv1
