"""Rotation twins: synthetic images with known answers, and `render.analyze twins` on a run."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from render import analyze
from render.analyze import MIRRORS, TRANSFORMS, Twin, align_back, find_twins, transform_image
from render.files import read_png

SIZE = 96
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def exit_code(argv) -> int:
    """python -m render.analyze's exit status for `argv` (the tools' one exit rule)."""
    with pytest.raises(SystemExit) as exit_info:
        analyze.main(argv)
    return exit_info.value.code


def rgb(gray: np.ndarray) -> np.ndarray:
    g = np.asarray(gray, float)
    g = (g - g.min()) / (np.ptp(g) + 1e-12)
    return np.repeat((g * 200 + 20).astype(np.uint8)[..., None], 3, axis=2)


def sawtooth(theta: float = 30.0, period: float = 9.0) -> np.ndarray:
    """Stripes with a ramp profile: light on one side of each ridge, like VGG's embossed ones."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    t = np.deg2rad(theta)
    return rgb(((np.cos(t) * x + np.sin(t) * y) / period) % 1.0)


def sine(theta: float = 30.0, period: float = 9.0) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    t = np.deg2rad(theta)
    return rgb(np.sin(2 * np.pi * (np.cos(t) * x + np.sin(t) * y) / period))


def texture(seed: int = 1, theta: float | None = None) -> np.ndarray:
    """Periodic smooth random texture, isotropic or with wiggly stripes at angle theta."""
    f = np.fft.fftfreq(SIZE)
    fy, fx = f[:, None], f[None, :]
    r = np.hypot(fy, fx)
    weight = np.exp(-((r - 0.08) ** 2) / (2 * 0.03**2))
    if theta is not None:
        t = np.deg2rad(theta)
        weight *= ((fx * np.cos(t) + fy * np.sin(t)) / np.maximum(r, 1e-9)) ** 8
    noise = np.random.default_rng(seed).normal(size=(SIZE, SIZE))
    return rgb(np.real(np.fft.ifft2(np.fft.fft2(noise) * weight)))


def oriented(seed: int = 2, theta: float = 20.0) -> np.ndarray:
    return texture(seed, theta)


def letter() -> np.ndarray:
    """An F with a grey patch: no rotational symmetry."""
    g = np.zeros((SIZE, SIZE))
    c = SIZE // 2
    g[c - 24 : c + 24, c - 18 : c - 10] = 1
    g[c - 24 : c - 16, c - 10 : c + 16] = 1
    g[c - 4 : c + 4, c - 10 : c + 6] = 1
    g[c + 10 : c + 20, c + 8 : c + 22] = 0.6
    return rgb(g)


def vary(image: np.ndarray, shift=(9, -11), scale=0.5, offset=40) -> np.ndarray:
    """Circularly shifted and contrast-scaled copy, as uint8."""
    out = np.roll(image, shift, axis=(0, 1)).astype(float) * scale + offset
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def only(twins: list[Twin]) -> Twin:
    assert len(twins) == 1, twins
    return twins[0]


MAKERS = {"sawtooth": sawtooth, "letter": letter, "texture": texture, "oriented": oriented}


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_rotated_shifted_rescaled_copy_is_a_twin_with_the_right_transform(make, k):
    a = make()
    twin = only(find_twins({0: a, 1: vary(np.rot90(a, k))}))
    assert (twin.filter_a, twin.filter_b, twin.transform) == (0, 1, f"rot{90 * k}")
    assert twin.score >= analyze.DEFAULT_THRESHOLD
    assert twin.score > twin.identity_score + analyze.MARGIN


def test_transform_is_how_the_higher_filter_looks_relative_to_the_lower():
    a = letter()
    assert only(find_twins({7: vary(np.rot90(a)), 3: a})).transform == "rot90"
    twin = only(find_twins({3: vary(np.rot90(a)), 7: a}))
    assert (twin.filter_a, twin.filter_b, twin.transform) == (3, 7, "rot270")


def test_different_textures_with_stripes_at_right_angles_are_twins():
    twin = only(find_twins({4: texture(3, theta=10), 9: texture(4, theta=100)}))
    assert (twin.filter_a, twin.filter_b, twin.measure) == (4, 9, "texture")
    assert twin.transform in ("rot90", "rot270")  # plain stripes: the two look the same
    assert twin.score > 0.9 and twin.identity_score < 0


@pytest.mark.parametrize("make", [*MAKERS.values(), sine], ids=[*MAKERS, "sine"])
def test_a_shifted_copy_is_not_a_rotation_twin(make):
    assert find_twins({0: make(), 1: vary(make())}) == []


def test_plain_stripes_turned_upside_down_are_only_shifted_not_twins():
    assert find_twins({0: sine(), 1: vary(np.rot90(sine(), 2))}) == []


def test_unrelated_textures_are_not_twins():
    images = {i: texture(seed=10 + i) for i in range(4)}
    images |= {4: oriented(20, theta=10), 5: oriented(21, theta=45), 6: sawtooth(75)}
    assert find_twins(images) == []
    near = find_twins(images, threshold=-1, margin=-2)  # every pair, whatever its score
    assert len(near) == 21 and max(t.score for t in near) < analyze.DEFAULT_THRESHOLD


@pytest.mark.parametrize("name", MIRRORS)
@pytest.mark.parametrize(
    "make", [sawtooth, texture, oriented], ids=["sawtooth", "texture", "oriented"]
)
def test_mirrored_copies_are_found_only_with_mirror(make, name):
    a = make()
    images = {0: a, 1: vary(TRANSFORMS[name](a))}
    assert find_twins(images) == []
    assert only(find_twins(images, mirror=True)).transform == name


def test_too_few_and_constant_images_give_no_twins():
    assert find_twins({}) == []
    assert find_twins({0: letter()}) == []
    flat = np.full((SIZE, SIZE, 3), 90, np.uint8)
    assert find_twins({0: flat, 1: flat.copy(), 2: letter()}, threshold=-1, margin=0) == []


def test_many_images_at_once_in_small_chunks(monkeypatch):
    bases = [sawtooth(20), letter(), oriented(5, theta=70), texture(6)]
    images = {2 * i: b for i, b in enumerate(bases)}
    images |= {2 * i + 1: vary(np.rot90(b, 1 + i % 3)) for i, b in enumerate(bases)}
    expected = {(0, 1, "rot90"), (2, 3, "rot180"), (4, 5, "rot270"), (6, 7, "rot90")}
    whole = find_twins(images)
    assert {(t.filter_a, t.filter_b, t.transform) for t in whole} == expected
    assert [t.score for t in whole] == sorted((t.score for t in whole), reverse=True)
    monkeypatch.setattr(analyze, "CHUNK", 3)
    chunked = find_twins(images)
    assert [(t.filter_a, t.filter_b, t.transform) for t in chunked] == [
        (t.filter_a, t.filter_b, t.transform) for t in whole
    ]
    assert np.allclose([t.score for t in chunked], [t.score for t in whole], atol=1e-5)


def test_non_square_and_gray_images_are_accepted():
    a = letter()[..., 0]
    wide = np.pad(a, ((0, 0), (10, 10)), mode="edge")
    assert only(find_twins({0: wide, 1: np.rot90(a, 3)})).transform == "rot270"


def test_transforms_and_their_inverses():
    x = np.arange(4 * 4 * 3).reshape(4, 4, 3)
    assert np.array_equal(transform_image(x, "rot90"), np.rot90(x))
    assert np.array_equal(transform_image(x, "flipH"), x[:, ::-1])
    assert np.array_equal(transform_image(x, "flipH+rot270"), np.rot90(x[:, ::-1], 3))
    for name in TRANSFORMS:
        assert np.array_equal(transform_image(transform_image(x, name), name, inverse=True), x)
    with pytest.raises(ValueError, match="unknown transform 'rot45'"):
        transform_image(x, "rot45")


@pytest.mark.parametrize("name", ["rot270", "flipH+rot90"])
def test_align_back_undoes_the_transform_and_the_shift(name):
    a = texture(8)
    b = np.roll(transform_image(a, name), (7, -12), axis=(0, 1))
    assert np.array_equal(align_back(a, b, name), a)


# --- the command on a run folder ---------------------------------------------------------------


def make_run(tmp_path, images: dict[int, np.ndarray | None], layer="block3_conv1") -> str:
    folder = tmp_path / "outputs" / layer / "run-1"
    folder.mkdir(parents=True)
    filters = {}
    for index, image in images.items():
        name = f"{layer}_{index:04d}.png" if image is not None else None
        if image is not None:
            Image.fromarray(image).save(folder / name)
        status = "ok" if image is not None else "dead"
        filters[str(index)] = {"filter": index, "file": name, "status": status, "loss_end": 1.0}
    (folder / "metadata.json").write_text(json.dumps({"layer": layer, "filters": filters}))
    return str(folder)


def read_rows(folder: str) -> list[dict[str, str]]:
    with open(os.path.join(folder, "twins.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_twins_command_writes_csv_figure_and_summary(tmp_path, capsys):
    base = sawtooth()
    images = {0: base, 1: texture(3), 2: vary(np.rot90(base)), 3: None, 4: oriented(5, 40)}
    folder = make_run(tmp_path, images)
    assert exit_code(["twins", folder]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "block3_conv1: 2 of 4 filters (50.0%) have a rotation twin above 0.60"
    assert out[1].split()[:3] == ["0", "2", "rot90"]
    rows = read_rows(folder)
    assert [(r["filter_a"], r["filter_b"], r["transform"]) for r in rows] == [("0", "2", "rot90")]
    assert list(rows[0]) == [
        "filter_a",
        "filter_b",
        "transform",
        "score",
        "identity_score",
        "measure",
    ]
    assert float(rows[0]["score"]) > float(rows[0]["identity_score"]) + 0.05
    figure, text = read_png(os.path.join(folder, "twins.png"))
    margin = SIZE // 16
    assert figure.shape == (SIZE + 2 * margin, 3 * SIZE + 4 * margin, 3)
    assert text["pairs"] == "0-2:rot90" and text["layer"] == "block3_conv1"
    assert np.array_equal(figure[margin : margin + SIZE, margin : margin + SIZE], base)
    assert not [f for f in os.listdir(folder) if f.endswith(".tmp")]


def test_twins_command_threshold_top_and_mirror(tmp_path, capsys):
    base, other = sawtooth(), oriented(6, theta=10)
    images = {0: base, 1: vary(np.rot90(base, 3)), 2: other, 3: vary(other[:, ::-1])}
    folder = make_run(tmp_path, images, layer="block2_conv2")
    assert exit_code(["twins", folder, "--top", "0"]) == 0
    assert [r["filter_b"] for r in read_rows(folder)] == ["1"]
    assert not os.path.exists(os.path.join(folder, "twins.png"))
    assert exit_code(["twins", folder, "--mirror", "--top", "1"]) == 0
    assert {(r["filter_a"], r["transform"]) for r in read_rows(folder)} == {
        ("0", "rot270"),
        ("2", "flipH"),
    }
    assert read_png(os.path.join(folder, "twins.png"))[0].shape[0] == SIZE + 2 * (SIZE // 16)
    assert exit_code(["twins", folder, "--threshold", "0.999"]) == 0
    assert read_rows(folder) == []
    assert not os.path.exists(os.path.join(folder, "twins.png"))  # no stale figure
    out = capsys.readouterr().out
    assert "block2_conv2: 4 of 4 filters (100.0%) have a rotation or mirror twin above 0.60" in out
    assert "block2_conv2: 0 of 4 filters (0.0%) have a rotation twin above 1.00" in out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such folder: "),
        ("no_metadata", "no metadata.json in "),
        ("damaged", "is damaged or has no 'filters' table: render the run again"),
        ("one_image", "1 filter image(s) in "),
    ],
)
def test_twins_command_errors_are_one_line(tmp_path, capsys, case, message):
    if case == "missing":
        folder = str(tmp_path / "nowhere")
    elif case == "no_metadata":
        folder = str(tmp_path)
    else:
        folder = make_run(tmp_path, {0: letter(), 1: None})
        if case == "damaged":
            with open(os.path.join(folder, "metadata.json"), "w") as f:
                f.write("{not json")
    assert exit_code(["twins", folder]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("render.analyze: error: ")
    assert message in lines[0]


def test_bad_options_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as err:
        analyze.main(["twins", "x", "--threshold", "2"])
    assert err.value.code == 2
    assert "render.analyze: error: --threshold 2 is outside -1..1" in capsys.readouterr().err


def test_module_runs_and_fails_cleanly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "render.analyze", "twins", str(tmp_path / "nowhere")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"render.analyze: error: no such folder: {tmp_path / 'nowhere'}: give the folder of one "
        "render run, <root>/<layer>/<run>/"
    ]
