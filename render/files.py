"""Atomic file writes (temporary name in the same folder, then rename) and PNG metadata."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile

import numpy as np
from PIL import Image, PngImagePlugin

from render.errors import UserError


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` so that a reader or a crash only ever sees the whole file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from colleagues
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _remove_quietly(tmp)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"disk full while writing {path}: free some space and run the same command "
                "again to resume"
            ) from None
        raise UserError(f"cannot write {path} ({err.strerror}): check the folder") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def png_bytes(
    image: np.ndarray, text: dict[str, str] | None = None, dpi: int | None = None
) -> bytes:
    """Encode an (H, W, 3) uint8 image as PNG with tEXt metadata."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, str(value))
    buffer = io.BytesIO()
    extra = {"dpi": (dpi, dpi)} if dpi else {}
    Image.fromarray(image).save(buffer, format="PNG", pnginfo=info, **extra)
    return buffer.getvalue()


def write_png(path: str, image: np.ndarray, text: dict[str, str] | None = None, dpi=None) -> None:
    write_atomic(path, png_bytes(image, text, dpi))


def read_png(path: str) -> tuple[np.ndarray, dict[str, str]] | None:
    """The image and its text metadata, or None when the file is missing or damaged."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB")), dict(img.text)
    except (OSError, SyntaxError, ValueError):
        return None


def write_json(path: str, obj) -> None:
    write_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: str):
    """The parsed file, or None when it is missing or not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
