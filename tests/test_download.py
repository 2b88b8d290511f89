"""The imagenet weights download, against a local HTTP server on 127.0.0.1."""

import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import render.models.download as download
from render.models.weights import WeightsError

PAYLOAD = os.urandom(200_000)
FNAME = download.KERAS_FILES["vgg16", False][0]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        mode = self.path.strip("/").split("/")[0]
        body = PAYLOAD if mode != "corrupt" else PAYLOAD[::-1]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut":  # the connection drops half way through
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An empty home (no ~/.keras) and the fixture payload's md5 as the official one."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    monkeypatch.setitem(download.KERAS_FILES, ("vgg16", False), (FNAME, md5))


def test_good_download_lands_in_cache(server, tmp_path):
    cache = tmp_path / "cache"
    path = download.imagenet_weights(False, str(cache), f"{server}/good")
    assert path == str(cache / FNAME)
    assert Path(path).read_bytes() == PAYLOAD
    # a second call uses the cache: the server is not needed any more
    assert download.imagenet_weights(False, str(cache), "http://127.0.0.1:9/none") == path


@pytest.mark.parametrize(
    ("mode", "message"),
    [("corrupt", "is corrupt (md5 mismatch)"), ("cut", "cannot download")],
)
def test_failed_download_leaves_nothing(server, tmp_path, mode, message):
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError) as err:
        download.imagenet_weights(False, str(cache), f"{server}/{mode}")
    assert message in str(err.value)
    assert f"download it yourself and place it at {cache / FNAME}" in str(err.value)
    assert not cache.exists() or os.listdir(cache) == []


def test_server_down(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    cache = tmp_path / "cache"
    with pytest.raises(
        WeightsError, match="cannot download http://127.0.0.1:.* \\(ConnectionError\\)"
    ):
        download.imagenet_weights(False, str(cache), f"http://127.0.0.1:{port}")
    assert not cache.exists() or os.listdir(cache) == []


def test_keras_models_folder_is_respected(tmp_path):
    keras = tmp_path / "home" / ".keras" / "models"
    keras.mkdir(parents=True)
    (keras / FNAME).write_bytes(PAYLOAD)
    assert download.imagenet_weights(False, str(tmp_path / "cache"), "http://127.0.0.1:9") == str(
        keras / FNAME
    )


def test_vgg19_files_use_their_own_names_and_checksums(server, tmp_path):
    """model=vgg19 fetches Keras' VGG19 files through the same code, checked by their md5."""
    cache = tmp_path / "cache"
    assert download.KERAS_FILES["vgg19", False] == (
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "253f8cb515780f3b799900260a226db6",
    )
    assert download.KERAS_FILES["vgg19", True][1] == "cbe5617147190e668d6c5d5026f83318"
    with pytest.raises(WeightsError, match="is corrupt \\(md5 mismatch\\)"):  # not the real file
        download.imagenet_weights(False, str(cache), f"{server}/good", "vgg19")
    assert not cache.exists() or os.listdir(cache) == []
