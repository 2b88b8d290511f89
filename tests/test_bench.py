import json

import pytest

from models.layers import CONV_LAYERS, get_layer
from render.bench import main, step_flops


def test_flop_count_matches_the_whole_network_figure():
    """4,224 filters, 128 px, 20 steps: the throughput issue's 1.26 PFLOP."""
    total = sum(step_flops(layer, 128) * 20 * layer.channels for layer in CONV_LAYERS)
    assert total == pytest.approx(1.262e15, rel=1e-3)
    # block1_conv2: conv1_1 + conv1_2 at 128 px, forward and backward
    assert step_flops(get_layer("conv1_2"), 128) == 2 * 2 * 128 * 128 * 9 * (3 * 64 + 64 * 64)
    assert step_flops(get_layer("conv1_2"), 128, 1) < step_flops(get_layer("conv1_2"), 128) / 15


def test_benchmark_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(
        [
            "--layers",
            "block1_conv1,block2_conv1",
            "--filters",
            "3",
            "--size",
            "16",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--batch",
            "2",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "matmul ceiling" in printed and "total: 6 filters" in printed
    rows = json.loads(out.read_text())
    assert [r["layer"] for r in rows] == ["block1_conv1", "block2_conv1"]
    for r in rows:
        assert r["batch"] == 2 and r["loop"] == "python" and r["filters_per_s"] > 0
        assert r["fraction_of_ceiling"] == pytest.approx(r["nominal_gflops"] / r["ceiling_gflops"])
