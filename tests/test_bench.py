import json
import os

import pytest

from render.bench import benchmark, main, step_flops
from render.models.layers import CONV_LAYERS, VGG19_BLOCKS, get_layer, vgg_table

os.environ["KERAS_BACKEND"] = "jax"  # before anything imports keras


def error(capsys) -> str:
    """What a tool printed on stderr: its one-line error."""
    return capsys.readouterr().err.strip()


def test_flop_count_matches_the_whole_network_figure():
    """4,224 filters, 128 px, 20 steps: the whole network's 1.26 PFLOP."""
    total = sum(step_flops(layer, 128) * 20 * layer.channels for layer in CONV_LAYERS)
    assert total == pytest.approx(1.262e15, rel=1e-3)
    # block1_conv2: conv1_1 + conv1_2 at 128 px, forward and backward
    assert step_flops(get_layer("conv1_2"), 128) == 2 * 2 * 128 * 128 * 9 * (3 * 64 + 64 * 64)
    assert step_flops(get_layer("conv1_2"), 128, 1) < step_flops(get_layer("conv1_2"), 128) / 15


def test_flop_count_follows_vgg19s_own_table():
    """VGG19's 16 convolutions at 224 px: 19.5 G multiply-adds forward."""
    table = vgg_table(VGG19_BLOCKS)
    last = [layer for layer in table if layer.kind == "conv"][-1]
    assert last.name == "block5_conv4"
    assert step_flops(last, 224, table=table) / 4 == pytest.approx(19.5e9, rel=2e-3)


def test_benchmark_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    benchmark(
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
            "--precision",
            "fp32,bf16",
            "--json",
            str(out),
            "--cache-dir",
            str(tmp_path),
        ]
    )
    printed = capsys.readouterr().out
    assert "fp32: matmul ceiling" in printed and "bf16: matmul ceiling" in printed
    assert "total fp32: 6 filters" in printed and "total bf16: 6 filters" in printed
    rows = json.loads(out.read_text())
    assert [(r["layer"], r["precision"]) for r in rows] == [
        ("block1_conv1", "fp32"),
        ("block2_conv1", "fp32"),
        ("block1_conv1", "bf16"),
        ("block2_conv1", "bf16"),
    ]
    for r in rows:
        assert r["batch"] == 2 and r["loop"] == "python" and r["filters_per_s"] > 0
        assert r["fraction_of_ceiling"] == pytest.approx(r["nominal_gflops"] / r["ceiling_gflops"])
        assert r["autotune"]["source"] == "measured" and r["autotune"]["batch"] == 2
        assert set(r["autotune"]["forms"].values()) <= {"conv", "shifted", "im2col", "winograd"}
    for r in rows:  # each layer's first-use cost, as printed
        assert f"kernels (measured in {r['autotune']['measured_s']:.1f} s)" in printed
    assert printed.count("kernels (measured in ") == 4


FAKE_PEER = """#!/usr/bin/env python3
import json, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
print("tensorflow says hello")
print(json.dumps({"peer": "fake 1.0", "layer": args["--layers"], "batch": 8,
                  "filters": int(args["--filters"]), "filters_per_s": 0.5, "gflop_per_s": 1.0,
                  "compile_s": 0.1}))
"""


def test_benchmark_runs_the_peer_beside_each_layer_and_prints_the_ratio(tmp_path, capsys):
    peer = tmp_path / "peer"
    peer.write_text(FAKE_PEER)
    peer.chmod(0o755)
    out = tmp_path / "bench.json"
    argv = ["--layers", "block1_conv1,block2_conv1", "--filters", "2", "--size", "16"]
    argv += ["--steps", "2", "--repeats", "1", "--autotune", "false", "--json", str(out)]
    benchmark([*argv, "--peer", str(peer), "--end-to-end", "--cache-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())
    for row in rows:
        assert row["peer"]["peer"] == "fake 1.0" and row["peer"]["layer"] == row["layer"]
        assert row["ratio_to_peer"] == pytest.approx(row["filters_per_s"] / 0.5)
        assert f"render / peer {row['ratio_to_peer']:.2f}x" in printed
        assert row["main_command_s"] > 0 and row["peer"]["process_s"] > 0
        assert row["ratio_to_peer_process"] == pytest.approx(
            row["peer"]["process_s"] / row["main_command_s"]
        )
        phases = row["main_command_phases_s"]
        assert set(phases) == {"measuring", "compiling", "rendering", "metrics", "atlases"}
        assert phases["rendering"] > 0 and sum(phases.values()) < row["main_command_s"]
    assert printed.count("whole process: python -m render") == 2
    assert printed.count("startup and the rest") == 2
    assert "host: " in printed and rows[0]["host"] == rows[1]["host"]


def test_benchmark_rejects_an_unknown_precision_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--precision", "fp32,fp16"])
    assert exit.value.code == 2
    assert error(capsys) == "render.bench: error: --precision fp16: use one of fp32, tf32, bf16"


def test_device_check_compares_each_precision_with_cpu_fp32(capsys, monkeypatch):
    from render import devicecheck

    argv = ["--layers", "block1_conv2,conv2_1", "--size", "16", "--filters", "2"]
    with pytest.raises(SystemExit) as exit:
        devicecheck.main([*argv, "--precision", "fp32,bf16"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert exit.value.code == 0
    assert [row[:2] for row in rows] == [
        ["block1_conv2", "fp32"],
        ["block1_conv2", "bf16"],
        ["block2_conv1", "fp32"],
        ["block2_conv1", "bf16"],
    ]
    for _, precision, value_error, grad_error, _, verdict in rows:
        # here the device is the CPU itself: fp32 is the reference, bf16 only rounds
        expected_zero = precision == "fp32"
        assert (float(value_error) == 0) == expected_zero and (
            float(grad_error) == 0
        ) == expected_zero
        assert verdict == "ok"
    monkeypatch.setitem(devicecheck.LIMITS, "bf16", 1e-6)
    with pytest.raises(SystemExit) as exit:
        devicecheck.main([*argv, "--precision", "bf16"])
    assert exit.value.code == 1 and "OVER THE LIMIT" in capsys.readouterr().out


def test_gpu_check_script_runs_every_stage_in_a_dry_run(tmp_path):
    """The prepared GPU script, shrunk to seconds on the CPU: the files it brings back."""
    import os
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = os.environ | {"LAYERS": "block1_conv1", "FILTERS": "2", "SIZE": "16", "STEPS": "2"}
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", "render/gpu_check.sh", str(out)], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "bench-bf16.json",
        "bench-fp32.json",
        "bench-strategy.json",
        "bench-tf32.json",
        "conv5_2_atlas.png",
        "log.txt",
    ]
    for precision in ("bf16", "tf32", "fp32"):
        rows = json.loads((out / f"bench-{precision}.json").read_text())
        assert [(r["layer"], r["precision"], r["filters"]) for r in rows] == [
            ("block1_conv1", precision, 2)
        ]
        assert f"== bench-{precision}: exit 0" in result.stdout
    strategies = json.loads((out / "bench-strategy.json").read_text())
    assert [(r["loop"], r["precision"]) for r in strategies] == [
        ("python", "bf16"),
        ("device", "bf16"),
        ("python", "bf16"),
        ("device", "bf16"),
    ]
    assert "== render: exit 0" in result.stdout and "== devicecheck: exit" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loop", "gpu"], "--loop gpu: use one of auto, python, device"),
        (["--batch", "4,0"], "--batch 0: use auto or positive whole numbers"),
        (["--layers", "conv9_1"], "conv9_1"),
        (["--model", "resnet50"], "--model resnet50: use one of vgg16, vgg19, keras"),
        (["--model", "keras"], "--model keras needs --model-file PATH"),
        (["--preprocess", "tf"], "--preprocess is for --model keras"),
        (["--model", "keras", "--model-file", "/no/such.keras"], "no such file"),
        (["--filters", "65", "--layers", "block1_conv1"], "block1_conv1 has 64 filters"),
        (["--steps", "0"], "--steps 0: use a positive whole number"),
        (["--peer", "/no/such/peer"], "--peer /no/such/peer: no such file"),
        (["--end-to-end"], "--end-to-end compares with the peer: add --peer"),
        (["--autotune", "maybe"], "--autotune maybe: use true or false"),
    ],
)
def test_benchmark_rejects_bad_options_in_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(args)
    text = error(capsys)
    assert exit.value.code == 2 and text.startswith("render.bench: error: ") and message in text


def test_device_check_without_a_cpu_backend_says_how_to_get_one(monkeypatch, capsys):
    import jax

    from render import devicecheck

    def no_cpu(backend=None):
        raise RuntimeError("Unknown backend cpu")

    monkeypatch.setattr(jax, "devices", no_cpu)
    with pytest.raises(SystemExit) as exit:
        devicecheck.main(["--layers", "conv1_1"])
    assert exit.value.code == 2 and error(capsys) == (
        "render.devicecheck: error: no CPU backend for the reference: add cpu to JAX_PLATFORMS"
    )


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory):
    """A tiny plain chain of layers, built and saved by Keras."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv1"),
            layers.MaxPooling2D(2, name="block1_pool"),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="block2_conv1"),
        ]
    )
    path = tmp_path_factory.mktemp("chain") / "tiny.keras"
    model.save(path)
    return str(path)


@pytest.mark.parametrize("backend", ["chain", "keras"])
def test_benchmark_runs_a_keras_file_through_the_network_interface(
    chain_file, backend, tmp_path, capsys
):
    out = tmp_path / "bench.json"
    argv = ["--model", "keras", "--model-file", chain_file, "--preprocess", "unit"]
    argv += ["--keras-backend", backend, "--layers", "block1_conv1,block2_conv1"]
    argv += ["--filters", "3", "--size", "16", "--steps", "2", "--repeats", "1", "--json", str(out)]
    benchmark([*argv, "--autotune", "false"])
    printed = capsys.readouterr().out
    assert "model: keras:tiny.keras; FLOPs by XLA's cost analysis" in printed
    assert "total fp32: 6 filters" in printed
    rows = json.loads(out.read_text())
    assert [r["layer"] for r in rows] == ["block1_conv1", "block2_conv1"]
    for r in rows:
        assert (r["model"], r["network"], r["keras_backend"]) == (
            "keras",
            "keras:tiny.keras",
            backend,
        )
        assert r["model_file"] == chain_file and r["preprocess"] == "unit"
        assert r["filters_per_s"] > 0 and r["flops_source"] == "xla"
        assert r["channel_selection"] == (backend == "chain")
        assert r["nominal_gflops"] > 0 and r["executed_gflops"] > 0
    # block1_conv1 renders one image per batch, so no padding: the chain computes 1 of its 8
    # channels, Keras all of them
    first = rows[0]
    if backend == "chain":
        assert first["executed_gflops"] < 0.9 * first["nominal_gflops"]
    else:
        assert first["executed_gflops"] == pytest.approx(first["nominal_gflops"], rel=1e-2)


def test_benchmark_on_a_keras_file_refuses_vgg_precisions(chain_file, capsys):
    argv = ["--model", "keras", "--model-file", chain_file, "--preprocess", "unit"]
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--precision", "bf16"])
    assert exit.value.code == 2 and error(capsys) == (
        "render.bench: error: --precision bf16: use fp32 with --model keras (tf32 and bf16 are VGG's)"
    )
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--layers", "block1_pool,block9_conv1"])
    assert error(capsys).startswith("render.bench: error: unknown layer 'block9_conv1'")
