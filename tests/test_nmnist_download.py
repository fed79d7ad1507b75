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
    """Serves fixed bytes on 127.0.0.1, honouring ``Range: bytes=N-``; records what it saw."""

    def __init__(self, files: dict[str, bytes], cut_after: int | None = None):
        self.files, self.ranges, self.cut_after = files, [], cut_after
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                chunk = body[start:]
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


def test_a_connection_cut_midway_is_resumed_by_the_next_attempt(tmp_path, archives):
    body = archives["Test.zip"]
    server = Server({"/test": body}, cut_after=500)
    try:
        target = tmp_path / "Test.zip"
        with pytest.raises(RunError):
            download(f"{server.url}/test", md5(body), target, quiet=True)
        assert (tmp_path / "Test.zip.part").stat().st_size == 500
        download(f"{server.url}/test", md5(body), target, quiet=True)
        assert target.read_bytes() == body and server.ranges[-1] == "bytes=500-"
    finally:
        server.close()


def test_an_md5_mismatch_is_refused_and_the_file_removed(tmp_path, archives):
    server = Server({"/train": archives["Train.zip"]})
    try:
        cache = tmp_path / "cache"
        with pytest.raises(RunError, match="md5"):
            download(f"{server.url}/train", "f" * 32, cache / "Train.zip", quiet=True)
        assert not any(cache.iterdir())
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
