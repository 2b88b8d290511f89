from pathlib import Path

import pytest

import render
from render.classes import ClassInfo, class_name, load_classes, parse_classes
from render.errors import UserError

TSV = Path(render.__file__).parent / "data" / "imagenet_classes.tsv"


def test_tsv_has_1000_rows_in_keras_order():
    lines = TSV.read_text("utf-8").splitlines()
    assert lines[0] == "index\twnid\tname"
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 1000
    assert [int(r[0]) for r in rows] == list(range(1000))
    assert len({r[1] for r in rows}) == 1000
    assert all(r[1].startswith("n") and len(r[1]) == 9 for r in rows)
    assert all(r[2] and "_" not in r[2] and r[2] == r[2].strip() for r in rows)


@pytest.mark.parametrize(
    ("index", "wnid", "name"),
    [
        (0, "n01440764", "tench"),
        (18, "n01582220", "magpie"),
        (65, "n01751748", "sea snake"),
        (999, "n15075141", "toilet tissue"),
    ],
)
def test_anchors(index, wnid, name):
    assert load_classes()[index] == ClassInfo(index, wnid, name)
    assert class_name(index) == name


def test_load_classes_is_cached_and_safe_to_mutate():
    first = load_classes()
    first.clear()
    assert len(load_classes()) == 1000


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (65, [65]),
        ("65", [65]),
        ("0-999", list(range(1000))),
        ("all", list(range(1000))),
        ("65,18,100-102", [18, 65, 100, 101, 102]),
        ([65, 18, "100-102"], [18, 65, 100, 101, 102]),
        (["65", "18"], [18, 65]),
        ("sea snake", [65]),
        ("Sea_Snake", [65]),
        ("  SEA   snake ", [65]),
        ("n01751748", [65]),
        ("N01751748", [65]),
        (["sea snake", 18], [18, 65]),
        ("sea snake,18,n01440764", [0, 18, 65]),
        ([65, "1-2", "tench", "n15075141"], [0, 1, 2, 65, 999]),
        (["magpie", "all"], list(range(1000))),
        ("great white", [2]),  # a unique substring
        ("tiger", [292]),  # an exact name wins over 'tiger shark', 'tiger cat', ...
        ("Cardigan", [264]),  # the corgi; exact case settles a tie
        ("cardigan", [474]),  # the sweater
        ("toilet_tissue", [999]),
    ],
)
def test_parse_classes(spec, expected):
    assert parse_classes(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "sea snek",
            "unknown class 'sea snek': did you mean sea snake, sea anemone, seashore?",
        ),
        (
            ["sea snek", 18],
            "unknown class 'sea snek': did you mean sea snake, sea anemone, seashore?",
        ),
        (
            "zzzqqq",
            "unknown class 'zzzqqq': give a class name, a wnid such as n01440764, or indices like 0-999",
        ),
        ("n00000000", "unknown class 'n00000000': no ImageNet-1k class has this wnid"),
        (
            "terrier",
            "class 'terrier' matches 19 classes: toy terrier (158), Staffordshire bullterrier (179), "
            "American Staffordshire terrier (180), Bedlington terrier (181), Border terrier (182), "
            "Kerry blue terrier (183), Irish terrier (184), Norfolk terrier (185), ...; "
            "give the full name or the index",
        ),
        (
            "crane",
            "class 'crane' matches 2 classes: crane (134), crane (517); give the full name or the index",
        ),
        (
            "CARDIGAN",
            "class 'CARDIGAN' matches 2 classes: Cardigan (264), cardigan (474); give the full name or the index",
        ),
        ("1000", "classes: index 1000 is out of range: valid classes are 0-999"),
        (1000, "classes: index 1000 is out of range: valid classes are 0-999"),
        (["tench", "990-1000"], "classes: index 1000 is out of range: valid classes are 0-999"),
        (
            "5-",
            "classes: cannot read '5-' in '5-': use indices and ranges like 0-511, 0,5,9-12 or all",
        ),
        ("3-1", "classes: range '3-1' runs backwards: write 1-3"),
        (True, "classes=True is not a set of indices: use e.g. classes=0-7 or all"),
        ([True], "classes: True in [True] is not a class: use e.g. 65"),
    ],
)
def test_parse_classes_errors(spec, message):
    with pytest.raises(UserError) as info:
        parse_classes(spec)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_class_name_out_of_range():
    with pytest.raises(
        UserError, match=r"^classes: index 1000 is out of range: valid classes are 0-999$"
    ):
        class_name(1000)
    with pytest.raises(UserError, match="index -1 is out of range"):
        class_name(-1)


def test_own_labels_take_names_indices_and_all():
    labels = ("glioma", "meningioma", "notumor", "pituitary")
    assert parse_classes("all", labels, 4) == [0, 1, 2, 3]
    assert parse_classes("all", None, 4) == [0, 1, 2, 3]
    assert parse_classes(["pituitary", 0], labels, 4) == [0, 3]
    assert parse_classes("Glioma,2", labels, 4) == [0, 2]
    assert parse_classes("1-2", None, 4) == [1, 2]
