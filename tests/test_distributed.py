"""Two processes joined by jax.distributed (coordinator on 127.0.0.1) render one layer's filters
between them: the same PNGs as one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from test_cli import REPO, files_below

from render.files import read_json


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_render_the_same_pngs_as_one(weight_files, tmp_path):
    common = [
        f"weights={weight_files['keras_notop']}",
        "layer=block2_conv1",
        "filters=0-7",
        "size=32",
        "steps=3",
        "progress=false",
        "output.gallery=false",
    ]
    env = dict(os.environ, PYTHONPATH=REPO)
    port = free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "render", *common, f"output.root={tmp_path / 'two'}"]
            + [f"distributed.coordinator=127.0.0.1:{port}", "distributed.processes=2"]
            + [f"distributed.process_id={i}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], logs
    for log in logs:
        assert "4 filters to render" in log  # each process took its half
    one = subprocess.run(
        [sys.executable, "-m", "render", *common, f"output.root={tmp_path / 'one'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr

    def pngs(root):
        return {
            os.path.basename(f): Path(f).read_bytes()
            for f in files_below(root)
            if f.endswith(".png") and os.path.basename(f).startswith("block2_conv1_")
        }

    two_pngs, one_pngs = pngs(tmp_path / "two"), pngs(tmp_path / "one")
    assert len(one_pngs) >= 6 and two_pngs == one_pngs
    (meta,) = [f for f in files_below(tmp_path / "two") if f.endswith("metadata.json")]
    records = read_json(meta)["filters"]
    assert sorted(records, key=int) == [str(k) for k in range(8)]  # both halves, one file
    assert all("activation" in r for r in records.values() if r["status"] == "ok")
