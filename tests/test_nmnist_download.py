"""--download against a loopback HTTP server: resume, md5 check, then a real run."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest
from nmnist_synth import make_tree, zip_tree

from neurodata_cli.datasets.two_nmnist import source
from neurodata_cli.datasets.two_nmnist.source import download
from neurodata_cli.errors import RunError


class Loopback:
    """An HTTP server of ``handler`` on 127.0.0.1, in a thread until ``close``."""

    def serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> str:
        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Server(Loopback):
    """Serves fixed bytes on 127.0.0.1, honouring ``Range: bytes=N-``; records what it saw.

    ``faults`` maps a path to what goes wrong there: ``("status", code)`` answers that status
    with no body, ``("html", None)`` a page with status 200, ``("redirect", path)`` a 302 to
    ``path``, ``("cut", n)`` a connection dropped at byte ``n`` of the file (every time), and
    ``("short", n)`` the first ``n`` bytes as if they were the whole file."""

    def __init__(self, files: dict[str, bytes], cut_after: int | None = None,
                 faults: dict[str, tuple] | None = None):
        self.files, self.ranges, self.cut_after = files, [], cut_after
        self.faults, self.seen = dict(faults or {}), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.seen.append(self.path)
                fault, arg = outer.faults.get(self.path, (None, None))
                if fault == "status":
                    self.send_response(arg)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "html":
                    page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", arg or "application/octet-stream")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if fault == "redirect":
                    self.send_response(302)
                    self.send_header("Location", arg)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if fault == "short":
                    body = body[:arg]
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                chunk = body[start:]
                if fault == "cut":
                    chunk = body[start:arg]
                if outer.cut_after is not None:  # drop the connection part-way, once
                    chunk, outer.cut_after = chunk[:outer.cut_after], None
                self.wfile.write(chunk)

            def log_message(self, *args):
                pass

        self.url = self.serve(Handler)


@pytest.fixture
def archives(tmp_path):
    tree = make_tree(tmp_path / "tree", {"train": 2, "test": 1}, seed=5)
    zips = zip_tree(tree, tmp_path / "zips")
    return {name: (zips / name).read_bytes() for name in ("Train.zip", "Test.zip")}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_a_partial_download_resumes_and_is_checked(tmp_path, archives):
    body = archives["Train.zip"]
    server = Server({"/train": body})
    try:
        target = tmp_path / "cache" / "Train.zip"
        target.parent.mkdir()
        (target.parent / "Train.zip.part").write_bytes(body[:1000])  # an earlier cut download
        download(f"{server.url}/train", md5(body), target, quiet=True)
        assert target.read_bytes() == body
        assert server.ranges == ["bytes=1000-"]
        download(f"{server.url}/train", md5(body), target, quiet=True)  # cached: no request
        assert len(server.ranges) == 1
    finally:
        server.close()


def test_a_connection_cut_midway_is_resumed_by_range(tmp_path, archives):
    body = archives["Test.zip"]
    server = Server({"/test": body}, cut_after=500)
    try:
        target = tmp_path / "Test.zip"
        download(f"{server.url}/test", md5(body), target, quiet=True)
        assert target.read_bytes() == body and server.ranges == [None, "bytes=500-"]
    finally:
        server.close()


def test_a_download_with_the_wrong_md5_is_kept_aside(tmp_path, archives):
    body = archives["Train.zip"]
    server = Server({"/train": body})
    try:
        cache = tmp_path / "cache"
        with pytest.raises(RunError, match="md5") as err:
            download(f"{server.url}/train", "f" * 32, cache / "Train.zip", quiet=True)
        aside = f"Train.zip.bad-md5-{md5(body)[:8]}"
        assert [p.name for p in cache.iterdir()] == [aside] and aside in str(err.value)
        assert (cache / aside).read_bytes() == body
    finally:
        server.close()


def test_the_users_file_with_a_wrong_md5_is_moved_aside_never_deleted(tmp_path, archives):
    body = archives["Train.zip"]
    server = Server({"/train": body})
    try:
        cache = tmp_path / "cache"
        cache.mkdir()
        mine = b"the user's own bytes"
        (cache / "Train.zip").write_bytes(mine)
        notes = []
        download(f"{server.url}/train", md5(body), cache / "Train.zip", quiet=True,
                 note=notes.append)
        aside = cache / f"Train.zip.bad-md5-{md5(mine)[:8]}"
        assert aside.read_bytes() == mine
        assert (cache / "Train.zip").read_bytes() == body
        assert len(notes) == 1 and aside.name in notes[0]
    finally:
        server.close()


# fault at the first URL -> a piece of how the error names it
FAULTS = {
    "404": (("status", 404), "HTTP 404"),
    "an empty 202": (("status", 202), "HTTP 202"),
    "an HTML page": (("html", "text/html; charset=utf-8"), "an HTML page"),
    "an HTML page served as a file": (("html", None), "an HTML page"),
    "a short body": (("short", 100), "not a zip archive"),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_an_answer_that_is_not_the_archive_is_named_and_the_next_url_tried(tmp_path, archives,
                                                                           case):
    body = archives["Train.zip"]
    fault, said = FAULTS[case]
    server = Server({"/bad": body, "/good": body}, faults={"/bad": fault})
    try:
        target = tmp_path / "cache" / "Train.zip"
        with pytest.raises(RunError) as err:  # the faulty URL alone
            download([f"{server.url}/bad"], md5(body), target, quiet=True)
        message = str(err.value)
        assert said in message and f"{server.url}/bad" in message and "\n" not in message
        assert not list(target.parent.iterdir())  # nothing that is not the archive is kept
        download([f"{server.url}/bad", f"{server.url}/good"], md5(body), target, quiet=True)
        assert target.read_bytes() == body and server.seen[-2:] == ["/bad", "/good"]
    finally:
        server.close()


def test_a_short_body_of_a_known_size_is_named(tmp_path, archives):
    body = archives["Train.zip"]
    server = Server({"/t": body}, faults={"/t": ("short", 100)})
    try:
        with pytest.raises(RunError, match=f"a body of 100 bytes where the archive has "
                                           f"{len(body)}"):
            download(f"{server.url}/t", md5(body), tmp_path / "Train.zip", quiet=True,
                     size=len(body))
    finally:
        server.close()


def test_a_redirect_is_followed_and_a_cut_resumes_at_the_next_url(tmp_path, archives):
    body = archives["Train.zip"]
    server = Server({"/a": body, "/b": body},
                    faults={"/a": ("cut", 700), "/r": ("redirect", "/b")})
    try:
        target = tmp_path / "Train.zip"
        # /a is cut at 700 bytes, and again when resumed (no progress): /r redirects to /b,
        # which serves the rest by Range.
        download([f"{server.url}/a", f"{server.url}/r"], md5(body), target, quiet=True)
        assert target.read_bytes() == body
        assert server.seen[-2:] == ["/r", "/b"] and server.ranges[-1] == "bytes=700-"
    finally:
        server.close()


def test_unreachable_url_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="download of"):
        download("http://127.0.0.1:9/none", "0" * 32, tmp_path / "x.zip", quiet=True, timeout=5)


def test_download_flag_end_to_end(run, tmp_path, archives):
    server = Server({"/train": archives["Train.zip"], "/test": archives["Test.zip"]})
    try:
        cfg = tmp_path / "dl.yaml"
        cfg.write_text(
            "download:\n"
            f"  train: {{url: '{server.url}/train', md5: {md5(archives['Train.zip'])}, "
            "file: Train.zip}\n"
            f"  test: {{url: '{server.url}/test', md5: {md5(archives['Test.zip'])}, "
            "file: Test.zip}\n")
        run("2nmnist", "--download", "--cache", tmp_path / "cache", "--config", cfg,
            "--format", "bin", "--out", tmp_path / "o", "--quiet")
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["Test.zip", "Train.zip"]
        assert run("verify", tmp_path / "o" / "2nmnist" / "2.1.0").exit_code == 0
        bad = tmp_path / "bad.yaml"
        bad.write_text(cfg.read_text().replace(md5(archives["Test.zip"]), "f" * 32))
        result = run("2nmnist", "--download", "--cache", tmp_path / "c2", "--config", bad,
                     "--split", "test", "--out", tmp_path / "o2", code=1)
        assert "md5" in result.output and not (tmp_path / "o2").exists()
        # A list of URLs in the config: the first is missing, the second serves it.
        listed = tmp_path / "list.yaml"
        listed.write_text(cfg.read_text().replace(
            f"url: '{server.url}/test'", f"url: ['{server.url}/gone', '{server.url}/test']"))
        # ... and a Test.zip of the user's with another md5 is moved aside, saying where.
        (tmp_path / "c3").mkdir()
        (tmp_path / "c3" / "Test.zip").write_bytes(b"mine")
        out = run("2nmnist", "--download", "--cache", tmp_path / "c3", "--config", listed,
                  "--split", "test", "--out", tmp_path / "o3", "--quiet").output
        assert (tmp_path / "c3" / "Test.zip").read_bytes() == archives["Test.zip"]
        aside = f"Test.zip.bad-md5-{md5(b'mine')[:8]}"
        assert (tmp_path / "c3" / aside).read_bytes() == b"mine"
        assert f"moved it to {aside}" in out
    finally:
        server.close()


class Endless(Loopback):
    """A URL that never ends: zeros until the client hangs up, with no Content-Length, or
    with ``announce`` as one (a server that claims a terabyte). It gives up after 64 MiB, so a
    client without a cap fails the test instead of filling the disk."""

    def __init__(self, announce: int | None = None):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                if announce is not None:
                    self.send_header("Content-Length", str(announce))
                self.end_headers()
                block = bytes(1 << 16)
                try:
                    for _ in range(1024):
                        self.wfile.write(block)
                except OSError:  # the client stopped reading and hung up
                    pass

            def log_message(self, *args):
                pass

        self.url = self.serve(Handler) + "/train"


@pytest.mark.parametrize("announce", [None, 10**12])
def test_a_download_that_never_ends_stops_at_the_archive_size(run, tmp_path, announce):
    server = Endless(announce)
    try:
        cfg = tmp_path / "dl.yaml"
        cfg.write_text(f"download:\n  train: {{url: '{server.url}', md5: {'f' * 32}, "
                       "file: Train.zip, bytes: 3000000}\n")
        result = run("2nmnist", "--download", "--cache", tmp_path / "cache", "--config", cfg,
                     "--split", "train", "--out", tmp_path / "o", code=1)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and server.url in lines[0] and "3000000 bytes" in lines[0]
        assert not list((tmp_path / "cache").iterdir())  # no archive, no part file
        assert not (tmp_path / "o").exists()
    finally:
        server.close()


def test_without_a_size_the_download_stops_at_the_default_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "MAX_DOWNLOAD_BYTES", 2 << 20)
    server = Endless()
    try:
        (tmp_path / "Train.zip.part").write_bytes(bytes(3 << 20))  # longer than any archive
        with pytest.raises(RunError, match="past 2097152 bytes"):
            download(server.url, "0" * 32, tmp_path / "Train.zip", quiet=True)
        assert not list(tmp_path.iterdir())
    finally:
        server.close()


def test_an_archive_of_the_expected_size_is_taken(tmp_path, archives):
    body = archives["Test.zip"]
    server = Server({"/test": body})
    try:
        target = tmp_path / "Test.zip"
        download(f"{server.url}/test", md5(body), target, quiet=True, size=len(body))
        assert target.read_bytes() == body
    finally:
        server.close()
