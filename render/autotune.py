"""Per-host choices, measured on first use and cached: each convolution's form and the batch size.

Which convolution form (models/lowering.py) and which batch size run fastest depends on the host
(vector width, matmul units, cache sizes) and the shape, so the renderer measures them on the
machine it runs on, as cuDNN and XLA autotune on GPUs: first every form of each convolution shape
of the network cut at the layer, in isolation (forward and input gradient); then whole ascent
steps at a few batch sizes with the winning forms; last, at the chosen batch, the plain `conv`
form, and both again with XLA's own CPU kernels in place of the YNNPACK library it sends
convolutions, dots and reductions to by default (`LIBRARIES`: a compiler option per program),
keeping whichever runs the network fastest as a whole (a form that wins alone can lose among
its neighbours; which library wins depends on the host). Results are kept in
`<cache_dir>/autotune/`, beside XLA's compilation cache, in one file per host key (CPU model,
vector extensions, jax version): a second run of the same shape measures nothing, another host
measures anew. Accelerators keep XLA's own convolution autotuning and the memory-sized batch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import jax
import jax.numpy as jnp
import numpy as np

from render.batching import auto_batch_size, fit_batch
from render.files import write_json
from render.models.layers import output_size
from render.models.lowering import FORMS, conv3x3
from render.models.network import Layer, Network
from render.models.vgg import PRECISIONS

log = logging.getLogger("render")
FORM_REPEATS = 3  # timed calls per form and shape, after one untimed; the fastest counts
STEP_REPEATS = 2  # timed ascents per batch candidate, after one untimed
TUNE_STEPS = 3  # steps per timed ascent
# autotune=auto measures for runs of at least this many filter-steps (128 filters at 20 steps):
# measuring costs what rendering 20-90 of the layer's filters does, and saves 10-25% of every
# filter rendered after it on the host; a smaller run would mostly wait for the measurement
AUTOTUNE_MIN_WORK = 2560
# compiler options per program: jax's defaults, or XLA's own kernels instead of YNNPACK fusions
LIBRARIES = {"default": {}, "xla": {"xla_cpu_experimental_ynn_fusion_type": ""}}
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class Plan:
    """What was chosen for one layer's render, and what it rests on."""

    batch: int
    forms: tuple[tuple[str, str], ...]  # (conv layer, form); empty: the network's defaults
    library: str  # a LIBRARIES key: the compiler options of every program of the render
    host: str
    source: str  # "measured" now, "cached" from an earlier run, or "defaults" (not measured)
    measured_s: float  # seconds spent measuring in this process
    per_filter_s: dict[str, float]  # candidate -> measured seconds per filter

    def record(self) -> dict:
        return {
            "batch": self.batch,
            "forms": dict(self.forms),
            "library": self.library,
            "host": self.host,
            "source": self.source,
            "measured_s": round(self.measured_s, 2),
            "per_filter_s": self.per_filter_s,
        }

    @property
    def compiler_options(self) -> dict:
        return LIBRARIES[self.library]


@functools.cache
def available(library: str) -> bool:
    """Whether this jax's CPU compiler takes the library's options (flags come and go)."""
    try:
        jax.jit(lambda x: x + 1).lower(jnp.zeros(2)).compile(compiler_options=LIBRARIES[library])
    except Exception:  # an unknown option: XLA's own error type, not a Python one
        return False
    return True


def recorded_options(record: dict | None) -> dict | None:
    """The compiler options of a plan recorded in a layer's metadata, where it was made on this
    host (a resumed run with nothing left to render still measures with the render's library)."""
    if not record or record.get("host") != host_key() or record.get("library") not in LIBRARIES:
        return None
    return LIBRARIES[record["library"]] if available(record["library"]) else None


def seconds_per_filter(run: Callable[[], object], batch: int) -> float:
    """The fastest of STEP_REPEATS timed calls of `run` (after an untimed one), per image."""
    jax.block_until_ready(run())
    best = float("inf")
    for _ in range(STEP_REPEATS):
        start = time.perf_counter()
        jax.block_until_ready(run())
        best = min(best, time.perf_counter() - start)
    return best / batch


def cpu_model() -> str:
    """The CPU's model name and family/model numbers, from /proc/cpuinfo where there is one."""
    info = {}
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    present = ",".join(flag for flag in CPU_FLAGS if flag in flags)
    return (
        f"{info.get('model name', platform.machine())} (family {info.get('cpu family', '?')} "
        f"model {info.get('model', '?')}; {present or 'no wide vectors'})"
    )


def host_key() -> str:
    """What the measured choices hold for: the device (CPU model and extensions) and jax."""
    device = jax.local_devices()[0]
    what = cpu_model() if device.platform == "cpu" else device.device_kind
    threads = os.cpu_count() if device.platform == "cpu" else None
    cores = f", {threads} CPU threads" if threads else ""
    return f"{what}{cores}, {jax.local_device_count()} device(s), jax {jax.__version__}"


def workload_key(style: dict, precision: str, objective: str = "filters") -> str:
    """What besides the network, layer and size shapes a step's cost: the style's settings,
    the precision and the objective (the renderer and the benchmark share one key)."""
    text = json.dumps([style, precision, objective], sort_keys=True, default=str)
    return (
        f"{style.get('name', 'style')} {precision} {hashlib.sha256(text.encode()).hexdigest()[:12]}"
    )


def cache_file(cache_dir: str, host: str) -> str:
    digest = hashlib.sha256(host.encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser(cache_dir), "autotune", f"{digest}.json")


class Store:
    """The measured choices of one host, read from and written back to its cache file."""

    def __init__(self, cache_dir: str | None, host: str) -> None:
        self.host = host
        self.path = cache_file(cache_dir, host) if cache_dir else None
        self.data = {"host": host, "shapes": {}, "plans": {}}
        if self.path and os.path.exists(self.path):
            try:
                with open(self.path) as file:
                    loaded = json.load(file)
                if loaded.get("host") == host:
                    self.data = loaded
            except (OSError, ValueError):
                pass  # a damaged cache is measured again

    def save(self) -> None:
        if self.path:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_json(self.path, self.data)


def conv_shapes(network: Network, layer: Layer, size: int, batch: int) -> dict[str, tuple]:
    """{conv layer: (N, H, W, Cin, Cout)} of every 3x3 convolution of the network cut at
    `layer`; the target computes only min(batch, channels) channels."""
    shapes, in_channels = {}, 3
    for item in network.layers[: layer.index + 1]:
        if item.kind != "conv":
            continue
        side = output_size(item, size)
        out = min(batch, item.channels) if item.index == layer.index else item.channels
        shapes[item.name] = (batch, side, side, in_channels, out)
        in_channels = item.channels
    return shapes


def time_form(shape: tuple, form: str, precision: str) -> float:
    """Fastest of FORM_REPEATS calls of one convolution's forward and input gradient."""
    n, h, w, cin, cout = shape
    dtype, lax_precision = PRECISIONS[precision]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, h, w, cin)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin), jnp.float32)
    weight = jnp.asarray(rng.standard_normal((n, h, w, cout)), jnp.float32)
    # every array an argument: a constant kernel would be transformed (or worse) at compile time
    gradient = jax.jit(
        jax.grad(lambda x, k, w: jnp.vdot(conv3x3(x, k, form, dtype, lax_precision), w))
    )
    gradient(x, kernel, weight).block_until_ready()
    best = float("inf")
    for _ in range(FORM_REPEATS):
        start = time.perf_counter()
        gradient(x, kernel, weight).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return best


def best_forms(shapes: dict[str, tuple], precision: str, store: Store) -> dict[str, str]:
    """{conv layer: fastest form} for its shape, measuring shapes the store has not seen."""
    chosen = {}
    for name, shape in shapes.items():
        key = f"{','.join(map(str, shape))},{precision}"
        if key not in store.data["shapes"]:
            seconds = {form: time_form(shape, form, precision) for form in FORMS}
            store.data["shapes"][key] = {form: round(s, 6) for form, s in seconds.items()}
        seconds = store.data["shapes"][key]
        chosen[name] = min(seconds, key=seconds.get)
    return chosen


def on_cpu() -> bool:
    """Whether this process renders on a CPU (accelerators keep XLA's own autotuning)."""
    return jax.local_devices()[0].platform == "cpu"


def tunable(network: Network) -> bool:
    """Convolution forms apply to networks built from models/lowering.py (a `forms` field)."""
    return "forms" in {field.name for field in fields(network)}


def plan_render(
    network: Network,
    layer: Layer,
    size: int,
    filters: int,
    workload: str,
    time_per_filter: Callable[[Network, int, dict], float],
    cache_dir: str | None,
    batch: int | None = None,
    measure: bool = True,
) -> tuple[Network, Plan]:
    """The network with its measured convolution forms, and the batch to render with (`batch`
    when given: then only the forms are chosen). `workload` names what else shapes the timing
    (style, precision); `time_per_filter(network, batch, compiler_options)` times a short
    ascent. Without `measure`, a choice not in the cache falls back to the defaults."""
    host = host_key()
    guess = fit_batch(batch or auto_batch_size(network, layer, size, filters), filters)
    if not on_cpu():
        return network, Plan(guess, (), "default", host, "defaults", 0.0, {})
    store = Store(cache_dir, host)
    key = f"{network.name}|{layer.name}|{size}|{workload}|batch {batch or 'auto'}"
    saved, source, measured = store.data["plans"].get(key), "cached", 0.0
    if saved is not None and saved.get("library") not in LIBRARIES:
        saved = None  # chosen before libraries were measured, or a library since removed
    if saved is None and not measure:
        return network, Plan(guess, (), "default", host, "defaults", 0.0, {})
    if saved is None:
        start = time.perf_counter()
        saved = _measure(network, layer, size, filters, guess, time_per_filter, store, batch)
        store.data["plans"][key] = saved
        store.save()
        source, measured = "measured", time.perf_counter() - start
        log.info("%s: measured this host's choices in %.1f s (%s)", layer.name, measured, host)
    forms = tuple(sorted(saved["forms"].items()))
    tuned = replace(network, forms=forms) if forms else network
    chosen = fit_batch(saved["batch"], filters)
    library = saved["library"]
    plan = Plan(chosen, forms, library, host, source, measured, saved["per_filter_s"])
    log.info(
        "%s: batch %d, %s kernels, convolution forms %s (%s)",
        layer.name,
        plan.batch,
        library,
        ", ".join(f"{name} {form}" for name, form in forms) or "default",
        source,
    )
    return tuned, plan


def _measure(network, layer, size, filters, guess, time_per_filter, store, batch) -> dict:
    around = (guess // 2, guess, guess * 2)
    candidates = [guess] if batch else sorted({fit_batch(b, filters) for b in around})
    forms = {}
    if tunable(network):
        precision = getattr(network, "precision", "fp32")
        forms = best_forms(conv_shapes(network, layer, size, guess), precision, store)
    with_forms = replace(network, forms=tuple(sorted(forms.items()))) if forms else network
    default = LIBRARIES["default"]
    per_filter = {f"batch {b}": time_per_filter(with_forms, b, default) for b in candidates}
    chosen = min(candidates, key=lambda b: per_filter[f"batch {b}"])
    # at the chosen batch: the measured forms and plain lax.conv, with each library
    variants = {f"batch {chosen}": (forms, "default")}
    plain = {name: "conv" for name in forms}
    if forms and forms != plain:
        variants[f"batch {chosen}, all conv"] = (plain, "default")
    for label, (these, _) in list(variants.items()):
        variants[f"{label}, xla kernels"] = (these, "xla")
    for label, (these, library) in variants.items():
        if label in per_filter or not available(library):
            continue
        candidate = replace(network, forms=tuple(sorted(these.items()))) if these else network
        per_filter[label] = time_per_filter(candidate, chosen, LIBRARIES[library])
    best = min((label for label in variants if label in per_filter), key=per_filter.get)
    forms, library = variants[best]
    return {
        "batch": chosen,
        "forms": forms,
        "library": library,
        "per_filter_s": {k: round(v, 5) for k, v in per_filter.items()},
    }
