"""Interruption, resume, concurrent runs and numerical faults lose nothing and reuse nothing bad."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures import fixture_params, write_keras
from test_render import job_for

from render.errors import UserError
from render.networks import load_params
from render.run import render_layer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLOW = ["layer=conv3_1", "filters=0-7", "size=48", "steps=150", "batch_size=1", "progress=false"]


def cli(weights, root, *extra):
    env = dict(os.environ, PYTHONPATH=REPO)
    args = [
        sys.executable,
        "-m",
        "render",
        f"weights={weights}",
        f"output.root={root}",
        *SLOW,
        *extra,
    ]
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def results(root):
    """Every image and the per-filter metadata of the one run folder below root."""
    (folder,) = Path(root).glob("*/*/")
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".png"}
    meta = json.loads((folder / "metadata.json").read_text())
    return files, meta["filters"], sorted(p.name for p in folder.iterdir())


def wait_for_pngs(root, count, process):
    while process.poll() is None:
        if len(list(Path(root).glob("*/*/block3_conv1_*.png"))) >= count:
            return True
        time.sleep(0.01)
    return False


@pytest.fixture(scope="module")
def uninterrupted(weight_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("whole")
    process = cli(weight_files["keras_notop"], root)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    return results(root)


@pytest.mark.parametrize("after", [0, 1, 4])
def test_sigkill_then_resume_equals_uninterrupted_run(weight_files, tmp_path, uninterrupted, after):
    process = cli(weight_files["keras_notop"], tmp_path)
    assert wait_for_pngs(tmp_path, after, process), "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    resumed = cli(weight_files["keras_notop"], tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    files, records, names = results(tmp_path)
    assert files == uninterrupted[0]  # byte for byte
    assert records == uninterrupted[1]
    assert not [n for n in names if n.endswith(".tmp")]


def test_ctrl_c_stops_cleanly_and_resumes(weight_files, tmp_path, uninterrupted):
    process = cli(weight_files["keras_notop"], tmp_path)
    assert wait_for_pngs(tmp_path, 2, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    out = process.stdout.read()
    assert "interrupted: finished batches are saved; run the same command to resume" in out
    assert "Traceback" not in process.stderr.read()
    files, records, _ = results(tmp_path)
    assert set(files) == {records[k]["file"] for k in records if records[k]["file"]}
    resumed = cli(weight_files["keras_notop"], tmp_path)
    assert resumed.wait(timeout=600) == 0
    assert results(tmp_path)[0] == uninterrupted[0]


@pytest.fixture(scope="module")
def loaded(weight_files):
    return load_params(weight_files["keras_notop"])


def test_second_run_on_same_folder_is_refused(weight_files, loaded, tmp_path):
    job = job_for(weight_files, tmp_path, "filters=0")
    os.makedirs(job.out_dir)
    with open(os.path.join(job.out_dir, ".lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(
            UserError, match=f"another render is writing {job.out_dir}: wait for it"
        ):
            render_layer(job, loaded, {})
    assert sorted(os.listdir(job.out_dir)) == [".lock"]


def test_corrupt_metadata_and_foreign_png_are_rendered_again(weight_files, loaded, tmp_path):
    job = job_for(weight_files, tmp_path, "filters=0-3")
    render_layer(job, loaded, {})
    folder = Path(job.out_dir)
    originals = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    (folder / "metadata.json").write_text('{"key": "')  # cut short
    meta = render_layer(job, loaded, {})
    assert sorted(meta["filters"]) == ["0", "1", "2", "3"]
    assert {p.name: p.read_bytes() for p in folder.glob("*.png")} == originals
    # a PNG of another configuration (another seed) under this run's file name
    other = job_for(weight_files, tmp_path, "filters=1", "seed=7")
    render_layer(other, loaded, {})
    foreign = Path(other.out_dir) / "block2_conv1_0001.png"
    (folder / "block2_conv1_0001.png").write_bytes(foreign.read_bytes())
    render_layer(job, loaded, {})
    assert (folder / "block2_conv1_0001.png").read_bytes() == originals["block2_conv1_0001.png"]


def test_nonfinite_filter_is_flagged_and_the_batch_completes(tmp_path):
    params = {k: dict(v) for k, v in fixture_params().items() if k.startswith("block")}
    bias = params["block2_conv1"]["bias"].copy()
    bias[3] = float("nan")
    params["block2_conv1"]["bias"] = bias
    path = tmp_path / "nan.h5"
    write_keras(path, params)
    job = job_for({"keras_notop": str(path)}, tmp_path / "out", "filters=0-7", "batch_size=8")
    meta = render_layer(job, load_params(str(path)), {})
    statuses = {k: r["status"] for k, r in meta["filters"].items()}
    assert statuses.pop("3") == "nonfinite"
    assert set(statuses.values()) == {"ok"}
    assert not (Path(job.out_dir) / "block2_conv1_0003.png").exists()


def test_auto_batch_halves_when_device_memory_runs_out(
    weight_files, loaded, tmp_path, monkeypatch, caplog
):
    """batch_size=auto never fails for memory: a batch too large is halved and compiled again."""
    import jax

    import render.run as run_module

    real = run_module.compile_ascent
    sizes = []

    def tight_memory(objective, style, size, steps, loop, params, targets, keys, *more, **options):
        ascent = real(objective, style, size, steps, loop, params, targets, keys, *more, **options)
        sizes.append(len(targets))
        if len(targets) > 2:

            def run(*args):
                raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating")

            ascent.run = run
        return ascent

    monkeypatch.setattr(run_module, "compile_ascent", tight_memory)
    monkeypatch.setattr(run_module, "auto_batch_size", lambda *args: 8)
    job = job_for(weight_files, tmp_path, "filters=0-7", "autotune=false")
    with caplog.at_level("WARNING", logger="render"):
        meta = render_layer(job, loaded, {})
    assert sizes == [8, 4, 2]
    assert sorted(meta["filters"]) == [str(k) for k in range(8)]
    assert "out of device memory: batch size 2 from now on" in caplog.text


def test_disk_full_mid_run_stops_cleanly_and_resumes(weight_files, loaded, tmp_path, monkeypatch):
    import errno

    import render.files as files_module

    job = job_for(weight_files, tmp_path, "filters=0-7", "batch_size=2", "metrics.measure=false")
    real_fsync, calls = files_module.os.fsync, []

    def filling_disk(fd):
        calls.append(fd)
        if len(calls) >= 5:  # the disk is full from the fifth file on
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files_module.os, "fsync", filling_disk)
    with pytest.raises(
        UserError,
        match="disk full while writing .*: free some space and run the same command again to resume",
    ):
        render_layer(job, loaded, {})
    monkeypatch.undo()
    folder = Path(job.out_dir)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    meta = json.loads((folder / "metadata.json").read_text())  # complete, parseable
    for record in meta["filters"].values():
        assert record["file"] is None or (folder / record["file"]).exists()
    resumed = render_layer(job, loaded, {})
    clean = job_for(
        weight_files, tmp_path / "clean", "filters=0-7", "batch_size=2", "metrics.measure=false"
    )
    render_layer(clean, loaded, {})
    assert (
        resumed["filters"]
        == json.loads((Path(clean.out_dir) / "metadata.json").read_text())["filters"]
    )
    for png in Path(clean.out_dir).glob("*_0*.png"):
        assert (folder / png.name).read_bytes() == png.read_bytes()
