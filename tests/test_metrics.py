import numpy as np
import pytest
from fixtures import fixture_params
from PIL import Image

from render.errors import UserError
from render.metrics import channel_means, measure, natural_maxima, reference_crops
from render.models.vgg import VGGNetwork


def test_shipped_reference_crops():
    crops = reference_crops()
    assert crops.shape[1:] == (128, 128, 3) and len(crops) >= 30
    assert crops.reshape(len(crops), -1).std(axis=1).min() > 10  # real photos, no empty cells


def test_reference_from_a_folder(tmp_path):
    photo = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not a photo")
    crops = reference_crops(str(tmp_path))
    assert crops.shape == (2 + 8, 128, 128, 3)  # 160 px short side: 1x2 tiles; 320 px: 2x4


def test_reference_folder_without_photos(tmp_path):
    with pytest.raises(
        UserError, match="no usable photo \\(64 px or more\\) in .*: check metrics.reference"
    ):
        reference_crops(str(tmp_path))


def test_measure_ratio_and_best_stimulus(params, tmp_path):
    """Two filters; filter 0's image is the crop that excites it most, so the ratio is 1."""
    model = VGGNetwork(width_divisor=16)
    p = {"params": params}
    crops = reference_crops()[:6]
    acts = channel_means(p, model, "block2_conv1", crops)
    pick = int(acts[:, 0].argmax())
    Image.fromarray(crops[pick]).save(tmp_path / "f0.png")
    Image.fromarray(crops[(pick + 1) % 6]).save(tmp_path / "f1.png")
    records = {
        "0": {"status": "ok", "file": "f0.png"},
        "1": {"status": "ok", "file": "f1.png"},
        "2": {"status": "dead", "file": None},
    }
    measure(str(tmp_path), records, p, model, "block2_conv1", crops)
    assert records["0"]["ratio_to_natural"] == pytest.approx(1.0, rel=1e-5)
    assert not records["0"]["beats_natural"]  # equal is not beating
    assert records["0"]["best_stimulus"] == bool(acts[pick, 0] >= acts[(pick + 1) % 6, 0])
    assert records["1"]["natural_max"] == pytest.approx(acts[:, 1].max(), rel=1e-5)
    assert records["1"]["best_stimulus"] == bool(acts[(pick + 1) % 6, 1] > acts[pick, 1])
    assert "activation" not in records["2"]


def test_metrics_with_the_render_s_kernel_library_equal_the_default(params, tmp_path):
    """Measuring with the library the render's plan chose gives the default library's values."""
    from render.autotune import LIBRARIES, available

    if not available("xla"):
        pytest.skip("this jax's CPU compiler has no choice of kernel library")
    model = VGGNetwork(width_divisor=16)
    crops = reference_crops()[:4]
    for k in range(3):
        Image.fromarray(crops[k]).save(tmp_path / f"f{k}.png")
    results = []
    for options in (None, LIBRARIES["xla"]):
        records = {str(k): {"status": "ok", "file": f"f{k}.png"} for k in range(3)}
        p = {"params": params}
        measure(str(tmp_path), records, p, model, "block2_conv1", crops, compiler_options=options)
        results.append(records)
    for default, xla in zip(results[0].values(), results[1].values(), strict=True):
        for name in ("activation", "natural_max", "robustness"):
            assert xla[name] == pytest.approx(default[name], rel=1e-4, abs=1e-6)
        assert xla["best_stimulus"] == default["best_stimulus"]
    # the options reach the compiler: one it does not know is refused
    records = {"0": {"status": "ok", "file": "f0.png"}}
    with pytest.raises(Exception, match="no_such_option"):
        measure(
            str(tmp_path),
            records,
            {"params": params},
            model,
            "block2_conv1",
            crops,
            compiler_options={"xla_no_such_option": "1"},
        )


def test_robustness_of_a_constant_image_is_one(params, tmp_path):
    """Every view of a constant image is the same image: robustness 1, and the views' ratio to
    the natural crops is the image's own."""
    model = VGGNetwork(width_divisor=16)
    p = {"params": params}
    crops = reference_crops()[:4]
    Image.fromarray(np.full((64, 64, 3), (180, 90, 40), np.uint8)).save(tmp_path / "c.png")
    records = {str(k): {"status": "ok", "file": "c.png"} for k in range(3)}
    measure(str(tmp_path), records, p, model, "block2_conv1", crops)
    for record in records.values():
        if record["activation"] > 0:
            assert record["robustness"] == pytest.approx(1.0, rel=1e-4)
            assert record["ratio_to_natural_views"] == pytest.approx(
                record["ratio_to_natural"], rel=1e-4
            )
    assert any(r["activation"] > 0 for r in records.values())


def test_natural_maxima_are_cached_by_weights_layer_and_crops(params, tmp_path, monkeypatch):
    """The crops' maxima are computed once per (weights, layer, crops) and read back after;
    other weights are another entry. Without views there is no robustness score."""
    from render import metrics

    model = VGGNetwork(width_divisor=16)
    crops = reference_crops()[:3]
    first = natural_maxima({"params": params}, model, "block2_conv1", crops, str(tmp_path))
    assert len(list((tmp_path / "metrics").iterdir())) == 1
    monkeypatch.setattr(metrics, "channel_means", lambda *args: pytest.fail("computed again"))
    again = natural_maxima({"params": params}, model, "block2_conv1", crops, str(tmp_path))
    np.testing.assert_array_equal(first, again)
    monkeypatch.undo()
    other = {"params": fixture_params(seed=7)}
    natural_maxima(other, model, "block2_conv1", crops, str(tmp_path))
    assert len(list((tmp_path / "metrics").iterdir())) == 2

    Image.fromarray(crops[0]).save(tmp_path / "f0.png")
    records = {"0": {"status": "ok", "file": "f0.png"}}
    measure(str(tmp_path), records, {"params": params}, model, "block2_conv1", crops, views=0)
    assert records["0"]["robustness"] is None and records["0"]["activation"] > 0


def test_robustness_views_move_a_pattern(params):
    """A pattern's views differ from it (jitter, scale, rotation), drawn alike for every image."""
    from render.metrics import ROBUSTNESS_VIEWS, random_views

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 32, 32, 3)).astype(np.uint8)
    views = np.asarray(random_views(images))
    assert views.shape == (2 * ROBUSTNESS_VIEWS, 32, 32, 3)
    assert np.abs(views[:ROBUSTNESS_VIEWS] - images[0]).mean(axis=(1, 2, 3)).min() > 5
    again = np.asarray(random_views(images[::-1]))
    np.testing.assert_allclose(again[:ROBUSTNESS_VIEWS], views[ROBUSTNESS_VIEWS:], atol=1e-3)
