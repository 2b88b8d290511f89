import numpy as np
import pytest
from PIL import Image

from render.errors import UserError
from render.metrics import channel_means, measure, reference_crops
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
