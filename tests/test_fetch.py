"""--data-url: an archive of images downloaded once, unpacked safely, refused in one sentence when it cannot be had.

Nothing here touches the network: archives are served from file:// addresses and from an HTTP server on 127.0.0.1.
"""

import http.server
import io
import json
import socket
import tarfile
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from latentlab import fetch
from latentlab.cli import main
from latentlab.errors import InputError
from latentlab.fetch import cached_folder, fetch_images
from latentlab.sources import FolderCrops

TINY_RUN = ["--steps", "2", "--batch-size", "2", "--crop", "16", "--block-out-channels", "8,16", "--norm-num-groups",
            "4", "--eval-every", "1000", "--eval-size", "32", "--threads", "1"]


def _png(colour=(30, 160, 90), side=40) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), colour, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _leftovers(cache) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_an_archive_is_unpacked_once_and_only_its_images_land_flat_in_the_cache(tmp_path):
    archive = _zip(tmp_path / "photos.zip", {"set/a.png": _png(), "set/deeper/b.PNG": _png((200, 40, 40)),
                                            "../../escape.png": _png(), "/abs/root.png": _png(), "readme.txt": b"hi",
                                            "set/notes.md": b"#"})
    cache, said = tmp_path / "cache", []
    folder = fetch_images(archive.as_uri(), cache, say=said.append)
    assert folder == cached_folder(archive.as_uri(), cache) and folder.parent == cache
    assert sorted(p.name for p in folder.iterdir()) == [
        "000000-a.png", "000001-b.PNG", "000002-escape.png", "000003-root.png"]  # flat names: nothing escapes
    assert _leftovers(cache) == [folder.name]  # no partial download or unpacking folder is left
    assert not (tmp_path / "escape.png").exists() and not (tmp_path.parent / "escape.png").exists()
    assert said[0].startswith("downloaded 0.0 MB from file://") and said[1] == f"unpacked 4 images into {folder}"
    assert FolderCrops(folder, 16, 4).found == 4
    archive.unlink()  # the second time nothing is downloaded
    assert fetch_images(archive.as_uri(), cache, say=said.append) == folder and len(said) == 2


def test_a_tar_archive_unpacks_regular_image_files_and_never_follows_a_link(tmp_path):
    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in {"x/one.jpg": _png(), "x/two.png": _png((10, 10, 200))}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("x/passwd.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    folder = fetch_images(archive.as_uri(), tmp_path / "cache", say=lambda line: None)
    assert sorted(p.name for p in folder.iterdir()) == ["000000-one.jpg", "000001-two.png"]
    assert not any(p.is_symlink() for p in folder.iterdir())


@pytest.fixture
def server(tmp_path):
    """an HTTP server on 127.0.0.1 serving tmp_path/site"""
    site = tmp_path / "site"
    site.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(site), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_an_archive_is_downloaded_over_http_and_a_missing_one_is_named_in_one_sentence(tmp_path, server):
    site, address = server
    _zip(site / "photos.zip", {"a.png": _png(), "b.png": _png((0, 0, 255))})
    folder = fetch_images(f"{address}/photos.zip", tmp_path / "cache", say=lambda line: None)
    assert len(list(folder.iterdir())) == 2
    with pytest.raises(InputError) as err:
        fetch_images(f"{address}/gone.zip", tmp_path / "cache", say=lambda line: None)
    assert f"{address}/gone.zip answered HTTP 404" in str(err.value) and "--data FOLDER" in str(err.value)
    assert _leftovers(tmp_path / "cache") == [folder.name]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the with ends: a connection there is refused


@pytest.mark.parametrize("case", ["unreachable", "not an archive", "no images", "damaged", "not a url"])
def test_what_cannot_be_trained_on_is_refused_in_one_sentence_and_leaves_nothing(case, tmp_path):
    cache = tmp_path / "cache"
    if case == "unreachable":
        url, words = f"http://127.0.0.1:{_closed_port()}/photos.zip", "could not download"
    elif case == "not an archive":
        (tmp_path / "one.png").write_bytes(_png())
        url, words = (tmp_path / "one.png").as_uri(), "is not a zip or tar archive"
    elif case == "no images":
        url, words = _zip(tmp_path / "docs.zip", {"a.txt": b"text", "b/c.pdf": b"%PDF"}).as_uri(), "holds no image files"
    elif case == "damaged":
        data = _zip(tmp_path / "whole.zip", {f"{i}.png": _png((i, 2 * i, 3 * i), 64) for i in range(20)}).read_bytes()
        broken = bytearray(data)
        broken[200:4000] = bytes(3800)  # the members' bytes are zeroed; the directory at the end still reads
        (tmp_path / "broken.zip").write_bytes(bytes(broken))
        url, words = (tmp_path / "broken.zip").as_uri(), "is damaged"
    else:
        url, words = str(tmp_path / "photos.zip"), "--data-url takes an http(s):// or file:// address"
    with pytest.raises(InputError) as err:
        fetch_images(url, cache, say=lambda line: None)
    message = str(err.value)
    assert words in message and "\n" not in message and message.endswith(".")
    assert _leftovers(cache) == []  # whole or not at all: no folder, no partial download


def test_train_vae_trains_on_an_archive_and_records_where_it_came_from(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch, "CACHE", tmp_path / "cache")
    url = _zip(tmp_path / "mine.zip", {f"p{i}.png": _png((40 * i, 200, 90)) for i in range(3)}).as_uri()
    out = tmp_path / "vae.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--data-url", url, "--augment", "0.5", "--out", str(out)]) == 0
    assert "unpacked 3 images into" in capsys.readouterr().err
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert f"--data-url {url}" in manifest["command"] and manifest["training"]["data_url"] == url
    assert f"FolderCrops({str(cached_folder(url))!r}" in manifest["data"]
    assert f"3 images from {cached_folder(url)}, unpacked from the archive at {url}" in manifest["data"]
    assert main(["train", "vae", *TINY_RUN, "--data-url", url, "--data", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--data and --data-url both name the photos to crop" in err and err.count("\n") == 1
    offline = f"http://127.0.0.1:{_closed_port()}/photos.zip"
    assert main(["train", "vae", *TINY_RUN, "--data-url", offline, "--out", str(tmp_path / "x" / "v.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not download" in err and "you may be offline" in err
    assert not (tmp_path / "x").exists()


def test_an_oversized_member_is_skipped_and_a_ctrl_c_leaves_nothing_behind(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "photos.zip", {"small.png": _png(side=8), "large.png": _png(side=400)})
    monkeypatch.setattr(fetch, "MAX_MEMBER_BYTES", len(_png(side=8)))  # the bar just above the small one
    folder = fetch_images(archive.as_uri(), tmp_path / "cache", say=lambda line: None)
    assert [p.name for p in folder.iterdir()] == ["000000-small.png"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch.urllib.request, "urlopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch_images(archive.as_uri(), tmp_path / "other-cache", say=lambda line: None)
    assert _leftovers(tmp_path / "other-cache") == []
