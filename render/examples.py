"""Dataset examples: the photos and patches that excite each filter most.

`collect` streams photos through one compiled function per layer and keeps, per filter, the k
photos with the highest spatial-mean activation and the k photos whose single strongest map
position is highest, with that position's receptive field (the patch). Dense layers (a class
head) rank photos only. Memory stays bounded whatever the number of photos (`TopK`).

python -m render.examples PHOTOS_FOLDER layer=block5_conv2 filters=0-63 writes examples.json
and thumbnails into the run folder of the same render command, where the gallery and the atlas
(output.examples=true) show them. Without a folder it uses the shipped reference photos. A
state file makes the command resumable: rerun it to continue.

examples.json:

    {"layer": "block5_conv2", "model": "vgg16", "size": 224, "photos_seen": 35,
     "unreadable": [path, ...],
     "filters": {"12": {
        "photos": [{"file": path, "activation": 3.2, "png": "examples/..."}, ...],
        "patches": [{"file": path, "box": [x0, y0, x1, y1], "position": [y, x],
                     "activation": 9.1, "png": "examples/..."}, ...]}}}

Lists are best first. Boxes are in pixels of the photo resized and centre-cropped to `size`;
dense layers have no "patches".
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from render.errors import UserError
from render.files import read_json, write_atomic, write_json, write_png
from render.metrics import PHOTO_SUFFIXES, SHIPPED_CROPS, reference_crops
from render.models.network import Layer, Network
from render.runs import EXAMPLES, METADATA

STATE = "examples_state.npz"
FOLDER = "examples"  # PNGs, inside the run folder
THUMBNAIL = 96  # photo PNG side
PATCH = 64  # patch PNG side
PATCH_FILL = (128, 128, 128)  # receptive field outside the photo
WRITERS = 8  # threads writing PNGs
SHIPPED = os.path.basename(SHIPPED_CROPS)  # names of the shipped photos: reference_crops.jpg#3

Photo = np.ndarray | None  # uint8 (H, W, 3); None: unreadable


class TopK:
    """The k largest values per channel so far, best first; ties go to the lower id.

    Slots never filled hold -inf and id -1. NaN counts as -inf.
    """

    def __init__(self, channels: int, k: int) -> None:
        self.values = np.full((channels, k), -np.inf, np.float32)
        self.ids = np.full((channels, k), -1, np.int64)

    @classmethod
    def from_arrays(cls, values: np.ndarray, ids: np.ndarray) -> TopK:
        top = cls(*values.shape)
        top.values, top.ids = np.asarray(values, np.float32), np.asarray(ids, np.int64)
        return top

    def update(self, values: np.ndarray, ids: np.ndarray) -> None:
        """Merge values (B, C) of items ids (B,), or one id per item and channel (B, C)."""
        values = np.asarray(values, np.float32)
        ids = np.asarray(ids, np.int64)
        ids = np.broadcast_to(ids[:, None] if ids.ndim == 1 else ids, values.shape)
        merged = np.concatenate([self.values, values.T], axis=1)
        merged_ids = np.concatenate([self.ids, ids.T], axis=1)
        merged = np.where(np.isnan(merged), -np.inf, merged)
        rank_ids = np.where(merged_ids < 0, np.iinfo(np.int64).max, merged_ids)
        order = np.lexsort((rank_ids, -merged), axis=-1)[:, : self.values.shape[1]]
        self.values = np.take_along_axis(merged, order, axis=1)
        self.ids = np.take_along_axis(merged_ids, order, axis=1)


@dataclass
class State:
    """Everything collected so far: enough to continue with the photos after the first `seen`."""

    photos: TopK
    patches: TopK | None  # None for dense layers
    seen: int = 0  # photos consumed from the stream, unreadable ones included
    names: dict[int, str] = field(default_factory=dict)  # stream index -> photo id, as ranked
    unreadable: list[str] = field(default_factory=list)
    key: str = ""  # what the state was collected for (see state_key)


def new_state(layer: Layer, count: int, k: int, key: str = "") -> State:
    patches = TopK(count, k) if layer.kind == "conv" else None
    return State(TopK(count, k), patches, key=key)


def find_layer(network: Network, name: str) -> Layer:
    """A layer of the network by name or alias."""
    key = str(name).strip()
    for layer in network.layers:
        if key in (layer.name, layer.alias):
            return layer
    names = [layer.name for layer in network.layers if layer.visualizable]
    near = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    raise UserError(f"{network.name} has no layer '{key}': {hint}its layers are {', '.join(names)}")


def fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """The photo resized (short side to `side`) and centre-cropped to side x side."""
    image = Image.fromarray(np.asarray(rgb, np.uint8)).convert("RGB")
    return np.asarray(ImageOps.fit(image, (side, side), Image.BICUBIC))


def read_photo(path: str, side: int | None = None) -> Photo:
    """A photo file as RGB uint8, None when it cannot be read. With `side`, JPEGs are decoded
    at the smallest scale that still covers side x side (much faster for large photos)."""
    try:
        with Image.open(path) as image:
            if side:
                image.draft("RGB", (side, side))
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _map_shape(network: Network, params, layer: Layer, side: int) -> tuple[int, ...]:
    """Shape of one image's output at `layer`: (H', W', C) or (C,)."""
    images = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
    return jax.eval_shape(lambda p, x: network.features(p, x, layer.name), params, images).shape[1:]


def _scorer(network: Network, layer: Layer, filters: list[int]) -> Callable:
    """The layer's compiled function: uint8 images -> per filter mean, max and argmax position."""
    chosen = jnp.asarray(filters)

    def score(params, pixels):
        inputs = network.convention.to_input(pixels.astype(jnp.float32))
        out = jnp.take(network.features(params, inputs, layer.name), chosen, axis=-1)
        if out.ndim == 2:  # dense: the value itself
            return out, out, jnp.zeros(out.shape, jnp.int32)
        flat = out.reshape(out.shape[0], -1, out.shape[-1])
        return flat.mean(axis=1), flat.max(axis=1), flat.argmax(axis=1)

    return jax.jit(score)


@dataclass
class _Batch:
    pixels: np.ndarray  # (batch, side, side, 3), padded
    indices: list[int]  # stream index of each readable photo
    names: list[str]
    unreadable: list[str]
    end: int  # stream index after the batch


def _batches(photos: Iterable[tuple[str, Photo]], start: int, side: int, size: int) -> Iterator:
    pixels, indices, names, unreadable = [], [], [], []
    position = start
    for position, (name, rgb) in enumerate(photos, start=start):
        if rgb is None:
            unreadable.append(str(name))
        else:
            pixels.append(fit(rgb, side))
            indices.append(position)
            names.append(str(name))
        if len(pixels) == size:
            yield _Batch(np.stack(pixels), indices, names, unreadable, position + 1)
            pixels, indices, names, unreadable = [], [], [], []
    if pixels or unreadable:
        stack = np.zeros((size, side, side, 3), np.uint8)  # one shape: one compilation
        if pixels:
            stack[: len(pixels)] = pixels
        yield _Batch(stack, indices, names, unreadable, position + 1)


def collect(
    network: Network,
    params,
    photos: Iterable[tuple[str, Photo]],
    layer: str | Layer,
    filters: list[int],
    k: int = 9,
    batch: int = 8,
    size: int | None = None,
    *,
    state: State | None = None,
    checkpoint: Callable[[State], None] | None = None,
    every: int = 50,
    bar: tqdm | None = None,
) -> dict:
    """Top-k photos and patches per filter of `layer` over `photos` ((id, rgb or None) pairs);
    returns the examples.json dict (module docstring). Unreadable photos (rgb None) are listed.

    `state` continues an earlier collection (the stream then starts after its `seen` photos)
    and is updated in place; `checkpoint(state)` runs every `every` batches and at the end.
    """
    layer = layer if isinstance(layer, Layer) else find_layer(network, layer)
    side = size or network.input_size
    shape = _map_shape(network, params, layer, side)
    for f in filters:
        if not 0 <= f < shape[-1]:
            raise UserError(f"filter {f} is out of range: {layer.name} has {shape[-1]} filters")
    state = state or new_state(layer, len(filters), k)
    positions = shape[0] * shape[1] if len(shape) == 3 else 1
    score = _scorer(network, layer, filters)
    params = jax.device_put(params)

    def merge(item: _Batch, outputs) -> None:
        count = len(item.indices)
        means, maxima, where = (np.asarray(o)[:count] for o in outputs)
        ids = np.asarray(item.indices, np.int64)
        state.photos.update(means, ids)
        if state.patches is not None:
            state.patches.update(maxima, ids[:, None] * positions + where)
        state.names.update(zip(item.indices, item.names, strict=True))
        state.unreadable += item.unreadable
        state.seen = item.end
        _forget_unranked(state, positions)
        if bar is not None:
            bar.update(count + len(item.unreadable))

    pending, done = None, 0
    for item in _batches(photos, state.seen, side, batch):
        outputs = score(params, item.pixels)  # dispatched: the next batch is read meanwhile
        if pending:
            merge(*pending)
            done += 1
            if checkpoint and done % every == 0:
                checkpoint(state)
        pending = (item, outputs)
    if pending:
        merge(*pending)
    if checkpoint:
        checkpoint(state)
    return examples_dict(state, network, layer, filters, side, positions, shape)


def _forget_unranked(state: State, positions: int) -> None:
    """Keep names only for photos still ranked: bounded memory for any number of photos."""
    ranked = set(state.photos.ids.ravel().tolist())
    if state.patches is not None:
        ranked |= set((state.patches.ids.ravel() // positions).tolist())
    state.names = {i: name for i, name in state.names.items() if i in ranked}


def png_name(layer: str, filter_: int, kind: str, rank: int) -> str:
    return f"{FOLDER}/{layer}_{filter_:04d}_{kind}{rank}.png"


def examples_dict(
    state: State,
    network: Network,
    layer: Layer,
    filters: list[int],
    side: int,
    positions: int,
    shape: tuple[int, ...],
) -> dict:
    """The examples.json content of a state."""
    out = {}
    for row, f in enumerate(filters):
        photos = [
            {
                "file": state.names[int(i)],
                "activation": float(v),
                "png": png_name(layer.name, f, "photo", rank),
            }
            for rank, (v, i) in enumerate(_filled(state.photos, row))
        ]
        out[str(f)] = {"photos": photos}
        if state.patches is None:
            continue
        patches = []
        for rank, (v, i) in enumerate(_filled(state.patches, row)):
            photo, where = divmod(int(i), positions)
            y, x = divmod(where, shape[1])
            patches.append(
                {
                    "file": state.names[photo],
                    "box": list(layer.box(y, x, (side, side))),
                    "position": [y, x],
                    "activation": float(v),
                    "png": png_name(layer.name, f, "patch", rank),
                }
            )
        out[str(f)]["patches"] = patches
    photos_seen = state.seen - len(state.unreadable)
    return {
        "layer": layer.name,
        "model": network.name,
        "size": side,
        "photos_seen": photos_seen,
        "unreadable": list(state.unreadable),
        "filters": out,
    }


def _filled(top: TopK, row: int) -> list[tuple[float, int]]:
    return [(v, i) for v, i in zip(top.values[row], top.ids[row], strict=True) if i >= 0]


def field_square(layer: Layer, y: int, x: int) -> tuple[int, int, int, int]:
    """The receptive field of position (y, x), not clipped to the image."""
    far = 1 << 30
    _, _, x1, y1 = layer.box(y, x, (far, far))
    return x1 - layer.field, y1 - layer.field, x1, y1


def patch_image(photo: np.ndarray, layer: Layer, y: int, x: int) -> np.ndarray:
    """The receptive field of (y, x) as a PATCH-sized square, gray where it leaves the photo."""
    x0, y0, x1, y1 = field_square(layer, y, x)
    square = Image.new("RGB", (x1 - x0, y1 - y0), PATCH_FILL)
    height, width = photo.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    square.paste(Image.fromarray(photo[cy0:cy1, cx0:cx1]), (cx0 - x0, cy0 - y0))
    method = Image.LANCZOS if layer.field >= PATCH else Image.NEAREST  # small fields: pixels
    return np.asarray(square.resize((PATCH, PATCH), method))


def write_examples(
    folder: str, examples: dict, layer: Layer, read: Callable[[str], Photo]
) -> list[str]:
    """Write the PNGs and examples.json (last) into `folder`; returns the photos that could
    not be read again (their PNGs are missing). PNGs that the folder's previous examples.json
    already lists for the same photo and place are kept as they are."""
    os.makedirs(os.path.join(folder, FOLDER), exist_ok=True)
    kept = _written(folder, examples)
    jobs: dict[str, list[dict]] = {}
    for record in examples["filters"].values():
        for entry in record["photos"] + record.get("patches", []):
            if kept.get(entry["png"]) != _identity(entry):
                jobs.setdefault(entry["file"], []).append(entry)
    side = examples["size"]

    def write(name: str) -> str | None:  # each photo read and resized once
        rgb = read(name)
        if rgb is None:
            return name
        photo = fit(rgb, side)
        for entry in jobs[name]:
            if "position" in entry:
                image = patch_image(photo, layer, *entry["position"])
            else:
                image = np.asarray(Image.fromarray(photo).resize((THUMBNAIL,) * 2, Image.LANCZOS))
            write_png(os.path.join(folder, entry["png"]), image)
        return None

    with ThreadPoolExecutor(WRITERS) as pool:  # each file is synced to disk: overlap the waits
        lost = [name for name in pool.map(write, jobs) if name is not None]
    write_json(os.path.join(folder, EXAMPLES), examples)
    return lost


def _identity(entry: dict) -> tuple:
    return entry["file"], entry.get("position")


def _written(folder: str, examples: dict) -> dict[str, tuple]:
    """png -> what it shows, for the PNGs of the folder's previous examples.json that exist."""
    old = read_json(os.path.join(folder, EXAMPLES))
    same = ("layer", "size")
    if not isinstance(old, dict) or any(old.get(k) != examples[k] for k in same):
        return {}
    return {
        entry["png"]: _identity(entry)
        for record in old.get("filters", {}).values()
        for entry in record.get("photos", []) + record.get("patches", [])
        if os.path.isfile(os.path.join(folder, entry["png"]))
    }


# --- resumable state ---------------------------------------------------------------------------


def state_key(layer: str, filters: list[int], k: int, side: int, names: list[str]) -> str:
    """What a state file belongs to: the same photos in the same order, layer, filters, k, side."""
    listing = hashlib.sha256("\n".join(names).encode()).hexdigest()
    settings = {"layer": layer, "filters": filters, "k": k, "size": side, "photos": listing}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def save_state(path: str, state: State) -> None:
    arrays = {
        "photo_values": state.photos.values,
        "photo_ids": state.photos.ids,
        "seen": np.int64(state.seen),
        "name_ids": np.asarray(list(state.names), np.int64),
        "names": np.asarray(list(state.names.values()), str),
        "unreadable": np.asarray(state.unreadable, str),
        "key": np.asarray(state.key),
    }
    if state.patches is not None:
        arrays |= {"patch_values": state.patches.values, "patch_ids": state.patches.ids}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def load_state(path: str, key: str) -> State | None:
    """The saved state when it exists and belongs to `key`; else None (start over)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["key"]) != key:
                return None
            patches = None
            if "patch_values" in saved:
                patches = TopK.from_arrays(saved["patch_values"], saved["patch_ids"])
            return State(
                photos=TopK.from_arrays(saved["photo_values"], saved["photo_ids"]),
                patches=patches,
                seen=int(saved["seen"]),
                names=dict(zip(saved["name_ids"].tolist(), saved["names"].tolist(), strict=True)),
                unreadable=saved["unreadable"].tolist(),
                key=key,
            )
    except (OSError, ValueError, KeyError):
        return None


# --- photo sets --------------------------------------------------------------------------------


def folder_photos(folder: str) -> list[str]:
    """Every photo file below `folder` (subfolders too), sorted."""
    if not os.path.isdir(folder):
        raise UserError(f"no such folder: {folder}: give a folder of photos")
    found = [
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(PHOTO_SUFFIXES) and not name.startswith(".")
    ]
    if not found:
        raise UserError(
            f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}: give a folder of photos"
        )
    return sorted(found)


def shipped_photos() -> tuple[list[str], Callable[[str], Photo]]:
    """(names, read) of the shipped reference photos."""
    crops = reference_crops()

    def read(name: str) -> Photo:
        return crops[int(name.rsplit("#", 1)[1])]

    return [f"{SHIPPED}#{i}" for i in range(len(crops))], read


# --- command line ------------------------------------------------------------------------------


def split_arguments(argv: list[str]) -> tuple[str | None, list[str]]:
    """(photo folder, overrides of the render settings, examples.* among them)."""
    folders = [a for a in argv if "=" not in a and not a.startswith("-")]
    if len(folders) > 1:
        raise UserError(f"one photo folder please, got {len(folders)}: {' '.join(folders)}")
    for arg in argv:
        if "=" not in arg and arg.startswith("-"):
            raise UserError(f"unknown option {arg}: give PHOTOS_FOLDER and key=value settings")
    return (folders[0] if folders else None), [a for a in argv if "=" in a]


def run(argv: list[str]) -> str:
    """The command: collect, write, and return the path of examples.json."""
    from omegaconf import OmegaConf, open_dict

    from render.cli import compose_config
    from render.networks import load_network
    from render.ranges import parse_indices
    from render.settings import check_config, run_dir

    folder, overrides = split_arguments(argv)
    cfg = compose_config(overrides)
    check_config(cfg)  # examples.* (k, batch, size, every) among them: see render/schema.py
    options = OmegaConf.to_container(cfg.examples, resolve=True)
    folder = folder or options["photos"]
    names = folder_photos(folder) if folder is not None else None  # before reading weights
    layer = find_layer(load_network(cfg, read=False).network, cfg.layer)
    loaded = load_network(cfg, need_top=layer.kind == "dense")
    network, params = loaded.network, loaded.params
    if not layer.visualizable:
        raise UserError(f"layer {layer.name} has no channels of its own: choose another layer")
    side = options["size"] or network.input_size
    if layer.kind == "dense" and side != network.input_size:
        raise UserError(f"{layer.name} needs {network.input_size} px photos: drop examples.size")
    if side < layer.stride:
        raise UserError(f"examples.size={side} leaves no map at {layer.name}: use {layer.stride}+")
    channels = _map_shape(network, params, layer, side)[-1]
    filters = parse_indices(cfg.filters, channels)
    if layer.name == network.head:
        with open_dict(cfg):
            cfg.objective = "class"  # the head's renders are class runs
    out_dir = os.path.join(cfg.output.root, run_dir(cfg))
    os.makedirs(out_dir, exist_ok=True)
    if names is None:
        names, read = shipped_photos()
    else:
        read = lambda name: read_photo(name, side)  # noqa: E731
    key = state_key(layer.name, filters, options["k"], side, names)
    state_path = os.path.join(out_dir, STATE)
    state = load_state(state_path, key) or new_state(layer, len(filters), options["k"], key)
    before = state.seen
    todo = names[before:]
    begin = time.perf_counter()
    with tqdm(
        total=len(names), initial=before, unit="photo", disable=not cfg.progress, desc=layer.name
    ) as bar:
        examples = collect(
            network,
            params,
            ((name, read(name)) for name in todo),
            layer,
            filters,
            options["k"],
            options["batch"],
            side,
            state=state,
            checkpoint=lambda s: save_state(state_path, s),
            every=options["every"],
            bar=bar,
        )
    seconds = time.perf_counter() - begin
    lost = write_examples(out_dir, examples, layer, read)
    if lost:
        print(
            f"render.examples: {len(lost)} ranked photos are gone: {lost[0]} ...", file=sys.stderr
        )
    _refresh_gallery(cfg, out_dir)
    rate = len(todo) / seconds if todo and seconds > 0 else 0.0
    print(
        f"{len(todo)} new photos ({before} done before, {len(state.unreadable)} unreadable) "
        f"in {seconds:.1f} s: {rate:.2f} photos/s"
    )
    return os.path.join(out_dir, EXAMPLES)


def _refresh_gallery(cfg, out_dir: str) -> None:
    """Rewrite the gallery pages when the run has been rendered, so they show the examples."""
    if not os.path.isfile(os.path.join(out_dir, METADATA)):
        print(
            f"render.examples: note: nothing rendered in {out_dir} yet; the settings of a render "
            "command (size, steps, style, ...) put the examples beside its images",
            file=sys.stderr,
        )
    elif cfg.output.get("gallery"):
        from render.gallery import write_gallery

        write_gallery(cfg.output.root)


def examples_help() -> str:
    """The examples.* settings: their defaults (conf/config.yaml) and docs (render/schema.py)."""
    from omegaconf import OmegaConf

    from render import schema
    from render.cli import CONF_DIR, CONFIG_NAME

    defaults = OmegaConf.load(os.path.join(CONF_DIR, f"{CONFIG_NAME}.yaml")).examples
    lines = [f"examples.*: {schema.SECTIONS['examples']}"]
    for item in schema.children("examples"):
        value = defaults[item.key.rpartition(".")[2]]
        lines.append(f"  {item.key}={'null' if value is None else value}  # {item.doc}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """python -m render.examples [PHOTOS_FOLDER] key=value ...; prints examples.json's path."""
    from render.cli import debug_requested, fail

    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(__doc__.split("\nexamples.json:")[0].strip())
        print(f"\n{examples_help()}")
        return
    try:
        print(run(argv))
    except UserError as err:
        fail(err, debug_requested(argv))


if __name__ == "__main__":
    main()
