"""Per-host choices: measured once, cached by host key, honoured by the renderer."""

import os

import pytest

from render import autotune
from render.files import read_json, write_json
from render.models.vgg import VGGNetwork

NETWORK = VGGNetwork(width_divisor=16)
LAYER = next(layer for layer in NETWORK.layers if layer.name == "block2_conv1")


class Timer:
    """A stand-in for timing ascents: batch 2 is fastest, the plain forms slower, and XLA's
    own kernels (`xla_penalty` seconds) slower than the default library unless told."""

    def __init__(self, xla_penalty=0.25):
        self.calls = []
        self.xla_penalty = xla_penalty

    def __call__(self, network, batch, options):
        self.calls.append((dict(network.forms), batch))
        plain = all(form == "conv" for form in dict(network.forms).values())
        xla = options == autotune.LIBRARIES["xla"]
        seconds = {1: 3.0, 2: 1.0, 4: 2.0}[batch] + (0.5 if plain else 0.0)
        return seconds + (self.xla_penalty if xla else 0.0)


@pytest.fixture
def fake_forms(monkeypatch):
    """Form timings by rule, not by clock: winograd wins wherever the map is at least 16 px."""
    measured = []

    def time_form(shape, form, precision):
        measured.append(shape)
        fast = "winograd" if shape[1] >= 16 else "im2col"
        return 1.0 if form == fast else 2.0

    monkeypatch.setattr(autotune, "time_form", time_form)
    return measured


CURRENT_HOST = {"key": "host A"}


def plan(cache, timer, host="host A", **options):
    CURRENT_HOST["key"] = host
    return autotune.plan_render(NETWORK, LAYER, 32, 8, "chollet2016 fp32", timer, cache, **options)


@pytest.fixture(autouse=True)
def chosen_host(monkeypatch):
    monkeypatch.setattr(autotune, "host_key", lambda: CURRENT_HOST["key"])


def test_first_use_measures_and_a_second_run_reads_the_cache(tmp_path, fake_forms):
    timer = Timer()
    network, first = plan(str(tmp_path), timer)
    assert first.source == "measured" and first.batch == 2 and first.library == "default"
    # the guess (2 at stride 2) and its neighbours, then at the winner: the plain forms, and
    # both with XLA's own kernels
    assert [batch for _, batch in timer.calls] == [1, 2, 4, 2, 2, 2]
    assert first.compiler_options == {}
    assert dict(network.forms) == {
        "block1_conv1": "winograd",
        "block1_conv2": "winograd",
        "block2_conv1": "winograd",
    }
    # every form of every convolution shape once, the target computing the batch's channels
    assert sorted(set(fake_forms)) == [(2, 16, 16, 4, 2), (2, 32, 32, 3, 4), (2, 32, 32, 4, 4)]
    assert len(fake_forms) == 3 * len(autotune.FORMS)
    shapes, calls = len(fake_forms), len(timer.calls)
    again, second = plan(str(tmp_path), timer)
    assert second.source == "cached" and second.batch == 2 and again.forms == network.forms
    assert len(fake_forms) == shapes and len(timer.calls) == calls  # nothing measured again
    saved = read_json(autotune.cache_file(str(tmp_path), "host A"))
    assert saved["host"] == "host A" and len(saved["plans"]) == 1
    assert second.record()["per_filter_s"]["batch 2, all conv"] == 1.5
    assert second.record()["per_filter_s"]["batch 2, all conv, xla kernels"] == 1.75


def test_the_faster_library_is_kept_and_its_options_reach_the_compiler(tmp_path, fake_forms):
    network, chosen = plan(str(tmp_path), Timer(xla_penalty=-0.5))
    assert chosen.library == "xla" and chosen.record()["library"] == "xla"
    assert chosen.compiler_options == {"xla_cpu_experimental_ynn_fusion_type": ""}
    assert set(dict(network.forms).values()) == {"winograd"}  # forms and library together
    _, again = plan(str(tmp_path), Timer())
    assert again.source == "cached" and again.library == "xla"


def test_a_plan_saved_without_a_library_is_measured_again(tmp_path, fake_forms):
    plan(str(tmp_path), Timer())
    path = autotune.cache_file(str(tmp_path), "host A")
    saved = read_json(path)
    for entry in saved["plans"].values():
        del entry["library"]
    write_json(path, saved)
    _, chosen = plan(str(tmp_path), Timer())
    assert chosen.source == "measured" and chosen.library == "default"


def test_another_host_measures_anew(tmp_path, fake_forms):
    plan(str(tmp_path), Timer())
    timer = Timer()
    _, other = plan(str(tmp_path), timer, host="host B")
    assert other.source == "measured" and timer.calls
    assert autotune.cache_file(str(tmp_path), "host A") != autotune.cache_file(
        str(tmp_path), "host B"
    )


def test_plain_forms_are_kept_when_the_network_runs_faster_that_way(tmp_path, fake_forms):
    def timer(network, batch, options):
        plain = all(form == "conv" for form in dict(network.forms).values())
        return 1.0 if plain else 2.0

    network, chosen = plan(str(tmp_path), timer)
    assert set(dict(network.forms).values()) == {"conv"}
    assert chosen.record()["forms"]["block2_conv1"] == "conv"


def test_a_given_batch_is_kept_and_only_forms_are_measured(tmp_path, fake_forms):
    timer = Timer()
    _, chosen = plan(str(tmp_path), timer, batch=4)
    assert chosen.batch == 4 and {batch for _, batch in timer.calls} == {4}


def test_without_measuring_a_cache_miss_falls_back_to_the_defaults(tmp_path, fake_forms):
    timer = Timer()
    network, chosen = plan(str(tmp_path), timer, measure=False)
    assert chosen.source == "defaults" and network.forms == () and not timer.calls
    assert chosen.batch == 2  # the built-in table's batch at stride 2
    assert not (tmp_path / "autotune").exists()


def test_a_damaged_cache_is_measured_again(tmp_path, fake_forms):
    path = autotune.cache_file(str(tmp_path), "host A")
    (tmp_path / "autotune").mkdir()
    with open(path, "w") as file:
        file.write("{not json")
    _, chosen = plan(str(tmp_path), Timer())
    assert chosen.source == "measured"
    assert read_json(path)["host"] == "host A"


def test_the_host_key_names_the_cpu_and_jax(monkeypatch):
    import jax

    monkeypatch.undo()
    key = autotune.host_key()
    assert key.endswith(f"jax {jax.__version__}") and "device(s)" in key
    assert f"{os.cpu_count()} CPU threads" in key


def test_a_render_records_its_plan_and_a_second_run_measures_nothing(
    weight_files, tmp_path, monkeypatch
):
    from test_render import job_for

    from render import run
    from render.networks import load_params
    from render.run import render_layer

    measured_with = []
    measure_job = run.measure_job
    monkeypatch.setattr(
        run,
        "measure_job",
        lambda job, params, records, options: (
            measured_with.append(options) or measure_job(job, params, records, options)
        ),
    )
    loaded = load_params(weight_files["keras_notop"])
    cache = f"cache_dir={tmp_path / 'cache'}"
    first = job_for(weight_files, tmp_path / "a", "autotune=true", cache, "filters=0-3", "steps=3")
    meta = render_layer(first, loaded, {})
    record = meta["autotune"]
    # the metrics run with the render's kernel library
    assert measured_with == [autotune.LIBRARIES[record["library"]]]
    assert record["source"] == "measured" and record["batch"] in (1, 2, 4)
    assert set(record["forms"]) == {"block1_conv1", "block1_conv2", "block2_conv1"}
    assert set(record["forms"].values()) <= set(autotune.FORMS)
    assert read_json(f"{first.out_dir}/metadata.json")["autotune"] == record

    monkeypatch.setattr(autotune, "time_form", lambda *args: pytest.fail("measured again"))
    second = job_for(weight_files, tmp_path / "b", "autotune=true", cache, "filters=0-3", "steps=3")
    again = render_layer(second, loaded, {})["autotune"]
    assert again["source"] == "cached" and again["forms"] == record["forms"]
    off = job_for(weight_files, tmp_path / "c", "autotune=false", cache, "filters=0-3", "steps=3")
    assert "autotune" not in render_layer(off, loaded, {})
    # a resumed run with nothing left to render measures with the library its plan recorded
    render_layer(first, loaded, {})
    library = autotune.LIBRARIES[record["library"]]
    assert measured_with == [library, library, None, library]


def test_auto_measures_only_runs_large_enough_to_repay_it(
    weight_files, tmp_path, monkeypatch, caplog
):
    from test_render import job_for

    from render import run

    asked = []

    def plan_render(network, *args):
        asked.append(args[-1])
        return network, autotune.Plan(2, (), "default", "host A", "defaults", 0.0, {})

    monkeypatch.setattr(run, "plan_render", plan_render)
    job = job_for(weight_files, tmp_path, "steps=20", f"cache_dir={tmp_path}")
    with caplog.at_level("INFO", logger="render"):
        run.tuned_network(job, 16, None)  # 320 filter-steps
    assert asked == [False]
    assert (
        f"{job.layer.name}: built-in choices: 320 filter-steps are too few to repay measuring "
        "this host (autotune=auto measures from 2560; autotune=true measures now)"
    ) in caplog.messages
    caplog.clear()
    with caplog.at_level("INFO", logger="render"):
        run.tuned_network(job, 128, None)
    assert asked == [False, True]
    assert not any("too few to repay" in message for message in caplog.messages)
    forced = job_for(weight_files, tmp_path, "steps=20", "autotune=true")
    run.tuned_network(forced, 16, None)
    assert asked == [False, True, True]
