"""The run folder contract: today's and earlier metadata.json files, finding runs, names."""

import json
import logging

from render.runs import (
    SCHEMA_VERSION,
    find_runs,
    layer_order,
    png_name,
    read_metadata,
    write_metadata,
)

# a metadata.json as render wrote it before models could be chosen (schema 1), trimmed
SCHEMA_1 = {
    "filters": {
        "0": {
            "activation": 1593.83,
            "beats_natural": True,
            "best_stimulus": True,
            "file": "block3_conv1_0000.png",
            "filter": 0,
            "loss_end": 627.51,
            "loss_start": 62.94,
            "natural_max": 618.72,
            "ratio_to_natural": 2.58,
            "seed": 0,
            "status": "ok",
        }
    },
    "key": "234e2cbf0a1b",
    "layer": "block3_conv1",
    "settings": {"layer": "conv3_1", "size": 64},
    "timing": {"filters": 4, "seconds": 2.1},
    "versions": {"render": "0.1.0"},
}


def test_schema_1_files_read_as_vgg16_runs_of_the_current_schema(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps(SCHEMA_1))
    meta = read_metadata(str(tmp_path))
    assert meta["schema"] == SCHEMA_VERSION == 2
    assert (meta["model"], meta["layer_index"]) == ("vgg16", 4)
    assert meta["filters"] == SCHEMA_1["filters"]
    classes = SCHEMA_1 | {"layer": "predictions"}
    (tmp_path / "metadata.json").write_text(json.dumps(classes))
    assert read_metadata(str(tmp_path))["layer_index"] == 15


def test_written_files_carry_the_schema_and_read_back_unchanged(tmp_path):
    meta = SCHEMA_1 | {"model": "vgg19", "layer_index": 7}
    write_metadata(str(tmp_path), meta)
    on_disk = json.loads((tmp_path / "metadata.json").read_text())
    assert on_disk["schema"] == 2
    assert read_metadata(str(tmp_path)) == on_disk


def test_unreadable_metadata_is_said_in_the_log(tmp_path, caplog):
    assert read_metadata(str(tmp_path)) is None  # none at all: nothing to say
    (tmp_path / "metadata.json").write_text('{"filters": {"0": ')  # cut mid-write
    with caplog.at_level(logging.WARNING, logger="render"):
        assert read_metadata(str(tmp_path)) is None
    assert f"{tmp_path / 'metadata.json'} is unreadable" in caplog.text
    (tmp_path / "metadata.json").write_text(json.dumps(SCHEMA_1 | {"schema": 99}))
    assert read_metadata(str(tmp_path)) is None


def test_runs_are_found_at_any_depth_and_ordered_by_the_network(tmp_path):
    for path, meta in (
        ("block5_conv2/a", {}),
        ("vgg19/block5_conv4/b", {"model": "vgg19", "layer_index": 15}),
        ("block1_conv1/c", {}),
    ):
        (tmp_path / path).mkdir(parents=True)
        write_metadata(str(tmp_path / path), SCHEMA_1 | meta)
    (tmp_path / "block1_conv1" / "c" / "examples").mkdir()
    found = find_runs(str(tmp_path))
    assert [f.removeprefix(str(tmp_path) + "/") for f in found] == [
        "block1_conv1/c",
        "block5_conv2/a",
        "vgg19/block5_conv4/b",
    ]
    assert sorted(["fc1", "block5_conv3", "block1_conv2"], key=layer_order) == [
        "block1_conv2",
        "block5_conv3",
        "fc1",
    ]
    assert png_name("block5_conv2", 7) == "block5_conv2_0007.png"
