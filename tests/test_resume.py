"""Pixels never depend on what was already on disk: a resumed run renders the missing filters
with the batch shape of a fresh run, so every PNG is byte-identical to the fresh run's."""

import os
from pathlib import Path

from test_cli import files_below, run_cli


def test_deleted_or_truncated_pngs_render_again_byte_identical(weight_files, tmp_path):
    args = [
        f"weights={weight_files['keras_notop']}",
        "layer=block5_conv2",
        "filters=0-3",
        "size=32",
        "steps=3",
        f"output.root={tmp_path}",
        "progress=false",
        "output.gallery=false",
    ]
    assert run_cli(*args).returncode == 0
    pngs = {
        f: Path(f).read_bytes()
        for f in files_below(tmp_path)
        if os.path.basename(f).startswith("block5_conv2_")
    }
    assert len(pngs) >= 3
    deleted, truncated = sorted(pngs)[0], sorted(pngs)[-1]
    os.remove(deleted)
    with open(truncated, "r+b") as handle:
        handle.truncate(100)
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "filters to render" in again.stdout and "2 of 4 filters already rendered" in again.stdout
    for path, data in pngs.items():
        assert Path(path).read_bytes() == data, path


def test_unreadable_metadata_is_said_and_the_run_rebuilt(weight_files, tmp_path):
    args = [
        f"weights={weight_files['keras_notop']}",
        "layer=block1_conv1",
        "filters=0-1",
        "size=16",
        "steps=2",
        f"output.root={tmp_path}",
        "progress=false",
        "output.gallery=false",
    ]
    assert run_cli(*args).returncode == 0
    (meta,) = [f for f in files_below(tmp_path) if f.endswith("metadata.json")]
    with open(meta, "w") as handle:
        handle.write('{"filters": ')
    again = run_cli(*args)
    assert again.returncode == 0
    assert f"{meta} is unreadable (damaged or not written by render): ignored" in again.stdout
