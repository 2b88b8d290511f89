import numpy as np
import pytest

from render.errors import UserError
from render.ranges import parse_indices
from render.tiles import best_order, grid_shape, stitch


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0-3", [0, 1, 2, 3]),
        ("0,5,9-12", [0, 5, 9, 10, 11, 12]),
        ("all", list(range(16))),
        (7, [7]),
        ([0, 5, "9-10"], [0, 5, 9, 10]),
        ("3,1,3", [1, 3]),
        (" 2 - 2 ".replace(" ", ""), [2]),
    ],
)
def test_parse_indices(spec, expected):
    assert parse_indices(spec, 16) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("5-2", "filters: range '5-2' runs backwards: write 2-5"),
        (
            "a-b",
            "filters: cannot read 'a-b' in 'a-b': use indices and ranges like 0-511, 0,5,9-12 or all",
        ),
        ("--1", "filters: cannot read '--1' in '--1'"),
        ("", "filters: cannot read '' in ''"),
        ("0-16", "filters: index 16 is out of range: valid filters are 0-15"),
        ("1,,2", "filters: cannot read '' in '1,,2'"),
        (True, "filters=True is not a set of indices"),
    ],
)
def test_parse_indices_errors(spec, message):
    with pytest.raises(UserError) as err:
        parse_indices(spec, 16)
    assert str(err.value).startswith(message)


def test_grid_shape_is_near_square():
    assert grid_shape(64) == (8, 8)
    assert grid_shape(10) == (3, 4)
    assert grid_shape(1) == (1, 1)
    assert grid_shape(10, cols=5) == (2, 5)


def test_stitch_geometry_and_placement():
    tiles = [np.full((4, 6, 3), 10 * (i + 1), np.uint8) for i in range(5)]
    tiles[3] = None
    canvas = stitch(tiles, cols=3, margin=2, background=(1, 2, 3))
    assert canvas.shape == (2 * 4 + 3 * 2, 3 * 6 + 4 * 2, 3)
    assert (canvas[2:6, 2:8] == 10).all()  # tile 0, top left
    assert (canvas[2:6, 18:24] == 30).all()  # tile 2, top right
    assert (canvas[8:12, 2:8] == (1, 2, 3)).all()  # tile 3 is empty
    assert (canvas[8:12, 10:16] == 50).all()  # tile 4
    assert (canvas[0, 0] == (1, 2, 3)).all()


def test_best_order_sorts_by_loss_and_drops_zero():
    losses = {0: 1.0, 1: 0.0, 2: 5.0, 3: 3.0, 4: 5.0}
    assert best_order(losses, 10) == [2, 4, 3, 0]
    assert best_order(losses, 2) == [2, 4]
    assert best_order({0: -2.0, 1: 0.0, 2: -1.0}, 10) == [2, 0]  # class logits may be negative
