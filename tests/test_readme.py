"""The README and docs/ run as written: every block of commands and code, the README first and
then each page of docs/ in ``PAGES`` order, top to bottom, in one folder holding only a copy of
configs/ (as a checkout does), on small inputs
(HOME points at a folder holding a small NMNIST and ImageNet). The blocks that name an
``s3://`` URL run against a local S3 server whose bucket ``my-bucket`` holds those inputs, and
their Dask scheduler is a ``LocalCluster`` whose workers share no folder with the blocks."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO
from imagenet_synth import PHOTOS, photo, save
from nmnist_synth import make_tree as nmnist_tree
from s3server import s3  # noqa: F401  (the `store` below asks for it by name)

SKIP = "<!-- not run by tests/test_readme.py"
# A block after this line is a file the next blocks use (a test file for pytest): it is saved
# under that name in the folder the blocks run in, not run itself.
WRITTEN = re.compile(r"^<!-- written to (\S+) by tests/test_readme.py")
# The docs pages in the order their blocks run (later pages read what earlier ones made).
PAGES = ["yinyang.md", "2nmnist.md", "es-imagenet.md", "usage.md", "format.md", "cluster.md",
         "reliability.md", "exactness.md", "performance.md", "plugins.md", "ci.md",
         "webdataset.md"]
# What cannot run here, and what runs instead: no network (the NMNIST download), and the
# set-up command that made the environment these tests run in.
INSTEAD = [
    (re.compile(r"^make run\b.*$", re.M), "neurodata yinyang --config configs/yinyang.yaml"),
    (re.compile(r"^\. \.venv/bin/activate$", re.M), "true"),
    (re.compile(r"--download( --cache \S+)?"), "--nmnist-root ~/datasets/NMNIST"),
]
# A block naming this runs against the store: a bucket on a local S3 server, and a Dask cluster
# whose address replaces the docs' example one.
STORE = re.compile(r"\bs3://")
SCHEDULER = re.compile(r"tcp://10\.1\.2\.3:37219")
# What the store's blocks need beyond the package (all in the dev extra).
STORE_NEEDS = ("moto", "s3fs", "distributed")


def blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, code, line) of every fenced block of sh or python not marked as not run;
    the language of one marked as written to a file is ``file:<name>``."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^```(\w*)$", lines[i])
        if not match:
            i += 1
            continue
        end = lines.index("```", i + 1)
        marked = i > 0 and lines[i - 1].startswith(SKIP)
        written = WRITTEN.match(lines[i - 1]) if i > 0 else None
        if written:
            out.append((f"file:{written.group(1)}", "\n".join(lines[i + 1:end]) + "\n", i + 1))
        elif match.group(1) in ("sh", "python") and not marked:
            out.append((match.group(1), "\n".join(lines[i + 1:end]), i + 1))
        i = end + 1
    return out


def home(root: Path) -> Path:
    """~/datasets/NMNIST, ~/datasets/imagenet (train/<wnid>/ and a flat ILSVRC val/), and
    ~/imagenet, small."""
    nmnist_tree(root / "datasets" / "NMNIST", {"train": 3, "test": 2})
    imagenet = root / "datasets" / "imagenet"
    for k, name in enumerate(PHOTOS[:6]):
        wnid = ("n01440764", "n01443537")[k % 2]
        save(photo(name).convert("RGB"), imagenet / "train" / wnid / f"{wnid}_{k}.JPEG")
    for k, name in enumerate(PHOTOS[6:9]):
        save(photo(name).convert("RGB"), imagenet / "val" / f"ILSVRC2012_val_{k + 1:08d}.JPEG")
    (root / "imagenet").symlink_to(imagenet)
    return root


@contextlib.contextmanager
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, home: Path,
          workers: Path) -> Iterator[str]:
    """The bucket ``my-bucket`` on the local S3 server (``s3``: its endpoint and credentials are
    then in os.environ), holding HOME's NMNIST and ImageNet at ``NMNIST/`` and ``imagenet/``, and
    a LocalCluster started in ``workers`` with its own local_directory: the store is all its
    workers share with the blocks. Gives the scheduler's address."""
    import distributed

    client = request.getfixturevalue("s3").client()
    client.create_bucket(Bucket="my-bucket")
    for name in ("NMNIST", "imagenet"):
        tree = home / "datasets" / name
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                client.put_object(Bucket="my-bucket", Body=path.read_bytes(),
                                  Key=f"{name}/{path.relative_to(tree).as_posix()}")
    workers.mkdir()
    with monkeypatch.context() as m:  # the workers' processes start in their own folder
        m.chdir(workers)
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=50, local_directory=str(workers))
    with cluster:
        yield cluster.scheduler_address


def test_every_page_is_run():
    assert sorted(p.name for p in (REPO / "docs").glob("*.md")) == sorted(PAGES)


def test_the_readme_is_short():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_every_block_of_the_readme_and_docs_runs_in_order(tmp_path, request, monkeypatch):
    sources = [REPO / "README.md"] + [REPO / "docs" / page for page in PAGES]
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(REPO / "configs", work / "configs")  # as in a checkout: the quick start's
    root = home(tmp_path / "home")
    missing = [m for m in STORE_NEEDS if importlib.util.find_spec(m) is None]
    ran = {"sh": 0, "python": 0, "store": 0, "cluster": 0}
    every = [(src, *block) for src in sources
             for block in blocks(src.read_text(encoding="utf-8"))]
    with contextlib.ExitStack() as stack:
        scheduler = "" if missing else stack.enter_context(
            store(request, monkeypatch, root, tmp_path / "workers"))
        env = {**os.environ, "HOME": str(root),  # with the store's AWS_* once it is started
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for src, language, code, line in every:
            if language.startswith("file:"):
                (work / language[len("file:"):]).write_text(code, encoding="utf-8")
                continue
            on_store = bool(STORE.search(code))
            if on_store and missing:
                continue  # moto, s3fs and distributed are in the dev set-up
            if language == "python":
                needs = [m for m in ("torch", "tonic")
                         if re.search(rf"^import {m}\b|^from {m}\b", code, re.M)]
                if any(importlib.util.find_spec(m) is None for m in needs):
                    continue  # torch and tonic are in the dev set-up; elsewhere these wait
                done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env,
                                      capture_output=True, text=True)
            else:
                ran["cluster"] += bool(SCHEDULER.search(code))
                for pattern, instead in [*INSTEAD, (SCHEDULER, scheduler)]:
                    code = pattern.sub(instead, code)
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=work,
                                      env=env, capture_output=True, text=True)
            where = f"{src.relative_to(REPO)} line {line}"
            assert done.returncode == 0, f"{where}:\n{code}\n{done.stdout}{done.stderr}"
            ran[language] += 1
            ran["store"] += on_store
    assert ran["sh"] >= 6 and ran["python"] >= 7, ran
    torch = importlib.util.find_spec("torch") is not None
    if not missing:  # a run on the cluster, one from the store into it, and (torch) the stream
        assert ran["store"] >= 2 + torch and ran["cluster"] >= 1, ran
        assert not (work / "s3:").exists()  # the URLs went to the store, not to a local folder
    if missing:
        pytest.skip(f"the object store's blocks wait for {', '.join(missing)} (make test "
                    "installs them)")
    if not torch:
        pytest.skip("the PyTorch blocks wait for torch (make test installs it)")
