"""The notebook API: the command line's pixels as arrays, its errors as ValueError, a grid."""

import os
import subprocess
import sys

import numpy as np
import pytest
from test_cli import REPO, run_cli

import render
from render.api import compose, to_overrides
from render.figures import label_height
from render.files import read_png

LAYER = "block2_conv1"  # 8 filters in the fixture weights; filter 2 is dead by construction


def test_visualize_returns_the_command_lines_pixels_in_the_given_order(weight_files, tmp_path):
    weights = weight_files["keras_notop"]
    images = render.visualize(
        layer=LAYER, filters=[0, 1, 3], weights=weights, size=32, steps=3, output_root=tmp_path
    )
    cli_root = tmp_path / "cli"
    result = run_cli(
        f"weights={weights}",
        f"layer={LAYER}",
        "filters=0,1,3",
        "size=32",
        "steps=3",
        f"output.root={cli_root}",
        "progress=false",
    )
    assert result.returncode == 0, result.stderr
    (folder,) = (cli_root / LAYER).iterdir()
    assert [d.name for d in (tmp_path / LAYER).iterdir()] == [folder.name]  # the same run key
    assert images.dtype == np.uint8 and images.shape == (3, 32, 32, 3)
    for image, k in zip(images, [0, 1, 3], strict=True):
        np.testing.assert_array_equal(image, read_png(folder / f"{LAYER}_{k:04d}.png")[0])

    again = render.visualize(
        layer=LAYER, filters=[3, 0], weights=weights, size=32, steps=3, output_root=tmp_path
    )
    np.testing.assert_array_equal(again, images[[2, 0]])  # read back, in the order asked for

    with pytest.warns(RuntimeWarning, match=r"no image for filters \[2\]"):
        dead = render.visualize(
            layer=LAYER, filters=[2, 0], weights=weights, size=32, steps=3, output_root=tmp_path
        )
    assert not dead[0].any() and dead[1].any()


def test_bad_settings_raise_the_command_lines_one_line_message(tmp_path):
    with pytest.raises(ValueError) as raised:
        render.visualize(layer="block9_conv1", weights="random", output_root=tmp_path)
    result = run_cli("layer=block9_conv1", "weights=random", f"output.root={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"render: error: {raised.value}"
    assert "unknown layer 'block9_conv1'" in str(raised.value)
    with pytest.raises(ValueError, match="unknown setting 'no_such'"):
        render.visualize(weights="random", no_such=1, output_root=tmp_path)
    assert os.listdir(tmp_path) == []


def test_settings_keep_their_types_and_text_through_the_overrides():
    path = "/data/a b,c'd\\"
    cfg = compose(
        to_overrides(
            {
                "weights": path,
                "seed": 3,
                "step_size": 0.5,
                "filters": range(3),
                "output": {"labels": True, "background": (1, 2, 3), "title": "1"},
            }
        )
    )
    assert cfg.weights == path and cfg.seed == 3 and cfg.step_size == 0.5
    assert list(cfg.filters) == [0, 1, 2] and cfg.output.labels is True
    assert list(cfg.output.background) == [1, 2, 3] and cfg.output.title == "1"


def test_load_model_reads_the_weights(weight_files):
    network, params = render.load_model("vgg16", weights=weight_files["keras_notop"])
    assert network.layers[0].name == "block1_conv1"
    assert params["params"]["block1_conv1"]["kernel"].shape == (3, 3, 3, 4)  # width / 16
    with pytest.raises(ValueError, match="model=keras needs model.file"):
        render.load_model("keras", preprocess="unit")


def test_atlas_is_a_pil_image_of_the_grid():
    images = np.full((5, 8, 10, 3), 200, np.uint8)
    grid = render.atlas(images, cols=3, margin=2, scale=2)
    assert grid.size == (3 * 20 + 4 * 2, 2 * 16 + 3 * 2)  # (width, height)
    assert np.asarray(grid)[2, 2].tolist() == [200, 200, 200]
    labelled = render.atlas(list(images[:3]) + [None], labels=range(4), margin=2)
    assert labelled.size == (2 * 10 + 3 * 2, 2 * (8 + label_height(10)) + 3 * 2)
    with pytest.raises(ValueError, match="uint8"):
        render.atlas(images.astype(np.float32))


def test_importing_render_is_cheap_and_atlas_stays_the_function():
    code = (
        "import sys, render; assert 'jax' not in sys.modules and 'hydra' not in sys.modules; "
        "import render.figures; from render.tiles import stitch; "
        "assert callable(render.atlas) and render.atlas.__module__ == 'render.api'"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_visualize_renders_objective_expressions_as_the_command_line_does(weight_files, tmp_path):
    expressions = ["block2_conv1:1", "block2_conv1:1 + block2_conv1:3@center"]
    weights = weight_files["keras_notop"]
    images = render.visualize(
        objectives=expressions, weights=weights, size=32, steps=2, output_root=tmp_path / "api"
    )
    quoted = ", ".join(f'"{e}"' for e in expressions)
    result = run_cli(
        f"objectives=[{quoted}]",
        f"weights={weights}",
        "size=32",
        "steps=2",
        f"output.root={tmp_path / 'cli'}",
        "progress=false",
        "output.gallery=false",
    )
    assert result.returncode == 0, result.stderr
    (run,) = os.listdir(tmp_path / "cli" / "objectives")
    folder = tmp_path / "cli" / "objectives" / run
    cli = [read_png(str(folder / f"objective_{i:04d}.png"))[0] for i in range(2)]
    assert images.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(images, np.stack(cli))
