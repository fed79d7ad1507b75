"""Output folders in an object store (issue 26, items 1, 2 and 5), against a local S3 server:
the bytes of a local run, resume after kill -9, one writer per folder, verify of a URL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import s3server
from imagenet_synth import ilsvrc
from imagenet_synth import make_tree as imagenet_tree
from nmnist_synth import make_tree as nmnist_tree

pytest.importorskip("s3fs")
s3, bucket = s3server.s3, s3server.bucket  # the fixtures: a local S3 server, a fresh bucket
EXE = str(Path(sys.executable).with_name("neurodata"))
VERSIONS = {"yinyang": "1.0.0", "2nmnist": "2.1.0", "es-imagenet": "2.2.0"}


def fs():
    import fsspec

    store = fsspec.filesystem("s3")
    store.invalidate_cache()
    return store


def small(name: str, root: Path) -> list[str]:
    if name == "yinyang":
        (root / "yy.yaml").write_text("splits:\n" + "".join(
            f"  s{k}: {{size: 300, seed: {k}}}\n" for k in range(3)))
        return ["--config", str(root / "yy.yaml")]
    if name == "2nmnist":
        tree = nmnist_tree(root / "nmnist", {"train": 6, "test": 3})
        return ["--nmnist-root", str(tree), "--shard-size", "4"]
    imagenet_tree(root / "im", classes=2, per_class=3, photos=False)
    return ["--imagenet-root", str(root / "im"), "--shard-size", "2", "--min-events", "10"]


def sums(url_or_path: str | Path) -> bytes:
    if isinstance(url_or_path, Path):
        return (url_or_path / "SHA256SUMS").read_bytes()
    return fs().cat_file(url_or_path + "/SHA256SUMS")


@pytest.mark.parametrize("name", ["yinyang", "2nmnist", "es-imagenet"])
def test_a_run_into_s3_with_2_workers_gives_a_local_runs_bytes(run, tmp_path, bucket, name):
    args = small(name, tmp_path)
    run(name, *args, "--out", tmp_path / "local", "--workers", "2", "--quiet")
    url = f"s3://{bucket}/ds/{name}/{VERSIONS[name]}"
    result = run(name, *args, "--out", f"s3://{bucket}/ds", "--workers", "2")
    assert url in result.output
    assert sums(url) == sums(tmp_path / "local" / name / VERSIONS[name])
    assert "OK:" in run("verify", url).output
    # Nothing beside the folder: no stage, no lock.
    assert {p.split("/")[3] for p in fs().find(f"{bucket}/ds/{name}")} == {VERSIONS[name]}
    assert not fs().exists(f"{bucket}/ds/{name}/.{VERSIONS[name]}.lock")
    again = run(name, *args, "--out", f"s3://{bucket}/ds", "--workers", "2").output
    assert "reused" in again


def test_info_and_preview_read_a_folder_in_the_store(run, tmp_path, bucket):
    run("yinyang", "--size", "300", "--out", f"s3://{bucket}/ds", "--quiet")
    url = f"s3://{bucket}/ds/yinyang/1.0.0"
    assert "train (hdf5, 300 samples)" in run("info", url).output
    png = tmp_path / "p.png"
    assert run("preview", url, "-o", png).output.strip() == str(png)
    assert png.read_bytes().startswith(b"\x89PNG")


def test_info_of_a_root_in_the_store_lists_its_folders_as_locally(run, tmp_path, bucket):
    for out in (tmp_path, f"s3://{bucket}/ds"):
        run("yinyang", "--size", "10", "--out", out, "--quiet")
    local = run("info", tmp_path).output
    remote = run("info", f"s3://{bucket}/ds").output
    assert remote == local.replace(str(tmp_path), f"s3://{bucket}/ds")
    assert run("info", f"s3://{bucket}/ds/yinyang").output == remote
    assert "not a finished neurodata folder" in run("info", f"s3://{bucket}/none", code=1).output


def test_verify_names_a_flipped_byte_in_a_stored_object(run, bucket):
    run("yinyang", "--size", "300", "--out", f"s3://{bucket}/ds", "--quiet")
    key = f"{bucket}/ds/yinyang/1.0.0/yinyang-train-00000-of-00001.h5"
    data = bytearray(fs().cat_file(key))
    data[len(data) // 2] ^= 1
    fs().pipe_file(key, bytes(data))
    result = run("verify", f"s3://{bucket}/ds/yinyang/1.0.0", code=1)
    assert "altered: yinyang-train-00000-of-00001.h5" in result.output
    # A rerun of the config checks sizes; --verify hashes, and names the object too.
    out = run("yinyang", "--size", "300", "--out", f"s3://{bucket}/ds", "--verify", code=1)
    assert "yinyang-train-00000-of-00001.h5 is altered" in out.output


def test_a_url_where_only_local_paths_work_is_refused_in_one_line(run, tmp_path, monkeypatch):
    """Never a local folder named ``s3:`` that a user would take for the bucket."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    for args in (["yinyang", "--config", "s3://bucket/c.yaml", "--out", "folder"],
                 ["preview", "folder", "-o", "s3://bucket/p.png"],
                 ["export", "folder", "spikingjelly", "--to", "s3://bucket/sj"],
                 ["export", "s3://bucket/ds/yinyang/1.0.0", "spikingjelly", "--to", "x"],
                 ["key", "yinyang", "--config", "s3://bucket/c.yaml"]):
        result = run(*args, code=2)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "a URL is not supported here" in lines[0], result.output
    assert sorted(os.listdir(tmp_path)) == ["folder"]
    assert not os.listdir(tmp_path / "folder")


def test_a_url_of_an_unknown_scheme_is_one_line(run, tmp_path):
    result = run("yinyang", "--size", "10", "--out", "nosuchscheme://b/x", code=2)
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "nosuchscheme://b/x" in result.output


# ---- one writer per folder ------------------------------------------------------------------

def lock_key(bucket: str) -> str:
    return f"{bucket}/ds/yinyang/.1.0.0.lock"


def test_a_held_lock_makes_a_second_run_refuse_and_write_nothing(run, bucket):
    held = {"run": "other", "host": "elsewhere", "pid": 1, "time": time.time()}
    fs().pipe_file(lock_key(bucket), json.dumps(held).encode())
    result = run("yinyang", "--size", "300", "--out", f"s3://{bucket}/ds", "--wait", "0",
                 code=1)
    assert "another neurodata run (pid 1 on elsewhere" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert fs().find(bucket) == [lock_key(bucket)]  # nothing written


def test_a_lease_not_renewed_is_broken(run, bucket):
    """A run killed on another machine: its lock expires (NEURODATA_LEASE seconds)."""
    held = {"run": "other", "host": "elsewhere", "pid": 1, "time": time.time() - 1000}
    fs().pipe_file(lock_key(bucket), json.dumps(held).encode())
    run("yinyang", "--size", "300", "--out", f"s3://{bucket}/ds", "--wait", "0")
    assert fs().exists(f"{bucket}/ds/yinyang/1.0.0/SHA256SUMS")
    assert not fs().exists(lock_key(bucket))


def test_two_runs_on_one_prefix_at_once_build_it_once(bucket, tmp_path):
    cmd = [EXE, "yinyang", "--config", str(tmp_path / "yy.yaml"), "--out",
           f"s3://{bucket}/ds", "--workers", "1"]
    (tmp_path / "yy.yaml").write_text("splits:\n" + "".join(
        f"  s{k}: {{size: 20000, seed: {k}}}\n" for k in range(6)))
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    built = [o for o, _ in outs if "reused" not in o]
    assert len(built) == 1, outs  # the other waited, then reused it


# ---- kill -9 of the client, then resume -------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with the client")
def test_kill_9_of_the_client_then_resume_gives_a_local_runs_bytes(run, tmp_path, bucket):
    for k in range(16):
        from imagenet_synth import save, synthetic

        save(synthetic(k, (300, 220)), tmp_path / "im" / "train" / f"n{k % 2:08d}" /
             f"img{k:03d}.JPEG")
    args = ["--imagenet-root", str(tmp_path / "im"), "--shard-size", "1", "--min-events", "10"]
    run("es-imagenet", *args, "--out", tmp_path / "local", "--workers", "2", "--quiet")
    url = f"s3://{bucket}/ds"
    stage = f"{bucket}/ds/es-imagenet/.2.2.0.train.partial/.neurodata/shards"
    proc = subprocess.Popen([EXE, "es-imagenet", *args, "--out", url, "--workers", "2",
                             "--quiet"])
    deadline = time.monotonic() + 60
    records: list[str] = []
    while time.monotonic() < deadline and proc.poll() is None and len(records) < 2:
        records = fs().find(stage)
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not fs().exists(f"{bucket}/ds/es-imagenet/2.2.0/SHA256SUMS")
    kept = fs().find(stage)
    # A shard whose stored file no longer matches its record's digest is built again.
    first = json.loads(fs().cat_file(kept[0]))["files"][0]["path"]
    where = f"{bucket}/ds/es-imagenet/.2.2.0.train.partial/{first}"
    data = bytearray(fs().cat_file(where))
    data[-100] ^= 1
    fs().pipe_file(where, bytes(data))
    result = run("es-imagenet", *args, "--out", url, "--workers", "2")
    assert f"{len(kept) - 1} shards resumed" in result.output
    # The killed client's lock names a process of this host that is gone: broken at once,
    # without waiting out its lease.
    assert "broke the stale lock" in result.output
    assert sums(f"{url}/es-imagenet/2.2.0") == sums(tmp_path / "local" / "es-imagenet" / "2.2.0")



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with the client")
@pytest.mark.parametrize("place", ["local", "store"])
def test_a_client_killed_after_its_scan_reuses_the_index_it_kept_in_the_store(run, tmp_path,
                                                                              bucket, place):
    """The index of the tars goes into the stage: a client run again fetches it instead of
    reading the archive through (a real train tar in a store: 147 GB), unless the archive was
    rewritten since (a local tar's time, a stored one's ETag). The tell-tale: a tar whose
    end-of-archive marker is overwritten: a scan refuses it, the members' reads never look
    there. Only a local tar can be so changed and keep its stamp (a store's ETag is its MD5)."""
    from imagenet_synth import _tar, jpeg_bytes, synthetic

    tars = tmp_path / "tars"
    tars.mkdir()
    tar = tars / "ILSVRC2012_img_train.tar"
    tar.write_bytes(_tar({f"n{c:08d}.tar": _tar({
        f"n{c:08d}_{i}.JPEG": jpeg_bytes(synthetic(8 * c + i, (240, 180))) for i in range(4)})
        for c in range(2)}))
    args = ["--imagenet-root", str(tars), "--shard-size", "1", "--min-events", "10"]
    run("es-imagenet", *args, "--out", tmp_path / "local", "--quiet")
    stored = f"{bucket}/imagenet/{tar.name}"
    if place == "store":
        args[1] = f"s3://{bucket}/imagenet"
        fs().put_file(str(tar), stored)
    url = f"s3://{bucket}/ds"
    stage = f"{bucket}/ds/es-imagenet/.2.2.0.train.partial/.neurodata"
    proc = subprocess.Popen([EXE, "es-imagenet", *args, "--out", url, "--workers", "2",
                             "--quiet"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not fs().find(
            f"{stage}/shards"):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert fs().find(f"{stage}/index")
    data, stat = tar.read_bytes(), tar.stat()
    with tarfile.open(tar) as tf:
        end = (tf.getmembers(), tf.offset)[1]  # where the end-of-archive marker is
    damaged = data[:end] + b"x" * 1024 + data[end + 1024:]
    tar.write_bytes(damaged)  # rewritten: a new time, a new ETag
    if place == "store":
        fs().pipe_file(stored, damaged)
    assert "cannot read" in run("es-imagenet", *args, "--out", url, code=1).output
    if place == "local":  # damaged, with the time it was indexed at: the index is reused
        os.utime(tar, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:  # as it was indexed: its ETag again
        fs().pipe_file(stored, data)
    result = run("es-imagenet", *args, "--out", url)
    assert "shards resumed" in result.output
    assert sums(f"{url}/es-imagenet/2.2.0") == sums(tmp_path / "local" / "es-imagenet" / "2.2.0")
    # Run again (the tar whole): the folder is reused, and the stage this run opened (its
    # index) is not left behind.
    tar.write_bytes(data)
    assert "reused" in run("es-imagenet", *args, "--out", url).output
    assert not fs().find(stage)


# ---- a Dask cluster whose workers share no folder with the client -----------------------------

def test_a_dask_cluster_writes_its_shards_straight_into_the_store(run, tmp_path, bucket,
                                                                   monkeypatch):
    """Workers started in their own folder, with their own local_directory; the client in
    another, its output the URL alone: the store is all they share."""
    distributed = pytest.importorskip("distributed")
    args = small("es-imagenet", tmp_path)
    run("es-imagenet", *args, "--out", tmp_path / "local", "--quiet")
    workers, client = tmp_path / "workers", tmp_path / "client"
    workers.mkdir()
    client.mkdir()
    monkeypatch.chdir(workers)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None, silence_logs=50,
                                  local_directory=str(workers)) as cluster:
        monkeypatch.chdir(client)
        result = run("es-imagenet", *args, "--out", f"s3://{bucket}/ds",
                     "--scheduler", cluster.scheduler_address)
    assert "6 images" in result.output, result.output
    url = f"s3://{bucket}/ds/es-imagenet/2.2.0"
    assert sums(url) == sums(tmp_path / "local" / "es-imagenet" / "2.2.0")
    assert not os.listdir(client)  # nothing staged on the client's disk
    assert not list(workers.rglob("*.h5"))  # the workers' temporary shards are gone


def hiding(folder: Path) -> list[str]:
    """The command that runs a process to which ``folder`` is an empty folder of its own (a
    mount namespace): what another machine sees of the client's scratch. Skips where this
    host allows no mount namespace."""
    for unshare in (["unshare", "-m"], ["unshare", "-rm"]):
        try:
            if subprocess.run([*unshare, "true"], capture_output=True).returncode == 0:
                return [*unshare, "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"',
                        str(folder)]
        except OSError:
            break
    pytest.skip("needs a mount namespace (unshare -m) to hide the client's scratch from workers")


def test_dask_workers_with_their_own_tmp_read_the_official_tars_from_the_store(
        run, tmp_path, bucket, monkeypatch):
    """The tars in the store, indexed by the client into its temporary folder: workers that
    cannot see that folder (and share nothing with the client but the store) read their
    members by the rows their shards carry, with no index file."""
    import tempfile

    scratch = tmp_path / "client-tmp"  # only this is hidden: the venv may live under /tmp
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    distributed = pytest.importorskip("distributed")
    tars = ilsvrc(tmp_path / "tars", tars=True)
    fs().put_file(str(tars / "ILSVRC2012_img_train.tar"),
                  f"{bucket}/imagenet/ILSVRC2012_img_train.tar")
    args = ["--shard-size", "1", "--min-events", "10"]
    run("es-imagenet", "--imagenet-root", tars, *args, "--out", tmp_path / "local", "--quiet")
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None,
                                  silence_logs=50) as cluster:
        workers = subprocess.Popen(
            [*hiding(scratch), str(Path(EXE).with_name("dask")), "worker",
             cluster.scheduler_address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            with distributed.Client(cluster) as client:
                client.wait_for_workers(2, timeout=60)
            result = run("es-imagenet", "--imagenet-root", f"s3://{bucket}/imagenet", *args,
                         "--out", f"s3://{bucket}/ds", "--scheduler", cluster.scheduler_address,
                         code=None)
        finally:
            os.killpg(workers.pid, signal.SIGTERM)
            workers.wait(30)
    assert result.exit_code == 0, result.output
    assert "4 images" in result.output, result.output
    url = f"s3://{bucket}/ds/es-imagenet/2.2.0"
    assert sums(url) == sums(tmp_path / "local" / "es-imagenet" / "2.2.0")
    # Indexed again by the next client (its /tmp is gone), which then finds the folder made.
    assert "reused" in run("es-imagenet", "--imagenet-root", f"s3://{bucket}/imagenet", *args,
                           "--out", f"s3://{bucket}/ds").output


def test_the_python_api_takes_a_url_out(bucket):
    from neurodata_cli import materialise

    summary = materialise("yinyang", out=f"s3://{bucket}/py", size=100)
    assert summary.folder == f"s3://{bucket}/py/yinyang/1.0.0"
    assert materialise("yinyang", out=f"s3://{bucket}/py", size=100).reused


def test_a_file_url_out_gives_a_local_runs_bytes(run, tmp_path):
    run("yinyang", "--size", "300", "--out", tmp_path / "local", "--quiet")
    run("yinyang", "--size", "300", "--out", f"file://{tmp_path}/url", "--quiet")
    assert sums(tmp_path / "url" / "yinyang" / "1.0.0") == sums(
        tmp_path / "local" / "yinyang" / "1.0.0")
    assert "OK:" in run("verify", f"file://{tmp_path}/url/yinyang/1.0.0").output


def cut_commit_at(monkeypatch, remote, name: str, after: bool = False) -> None:
    """The next commits into a store are cut as they write the object ``name`` (``after``:
    once it is written)."""
    real = remote.RemoteMaterialiser._commit_remote

    def cut(self, manifest, shards):
        pipe = self.fs.pipe_file

        def power_cut(path, data, **kw):
            if not path.endswith("/" + name):
                return pipe(path, data, **kw)
            if after:
                pipe(path, data, **kw)
            raise RuntimeError("power cut")

        monkeypatch.setattr(self.fs, "pipe_file", power_cut)
        try:
            return real(self, manifest, shards)
        finally:
            monkeypatch.setattr(self.fs, "pipe_file", pipe)

    monkeypatch.setattr(remote.RemoteMaterialiser, "_commit_remote", cut)


def test_a_commit_cut_before_its_sha256sums_is_redone_by_the_next_run(run, tmp_path, bucket,
                                                                      monkeypatch):
    """The folder is unfinished (no SHA256SUMS) until the last write; the stage is kept until
    then, so the rerun takes the unfinished folder for its own and commits again."""
    from neurodata_cli import materialise, remote

    args = small("yinyang", tmp_path)
    run("yinyang", *args, "--out", tmp_path / "local", "--quiet")
    cut_commit_at(monkeypatch, remote, "SHA256SUMS")
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("yinyang", out=f"s3://{bucket}/ds", config=args[1])
    url = f"s3://{bucket}/ds/yinyang/1.0.0"
    assert fs().exists(f"{bucket}/ds/yinyang/1.0.0/manifest.json")
    run("verify", url, code=1)  # unfinished: never taken for a finished folder
    monkeypatch.undo()
    result = run("yinyang", *args, "--out", f"s3://{bucket}/ds")
    assert "3 shards resumed" in result.output
    assert sums(url) == sums(tmp_path / "local" / "yinyang" / "1.0.0")


def test_the_holder_renews_its_lease_so_a_long_run_keeps_its_lock(bucket, monkeypatch):
    from neurodata_cli import objstore

    # A lease long enough that a loaded machine (the suite on 2 cores) still renews in time.
    monkeypatch.setattr(objstore, "LEASE", 1.0)
    store, path = objstore.filesystem(f"s3://{bucket}/ds/yinyang/.1.0.0.lock")
    mine = objstore.Lease(store, path, "lock")
    assert mine.try_take() is None
    mine.start()
    try:
        time.sleep(2.5)  # two and a half leases: only renewals keep it fresh
        other = objstore.Lease(store, path, "lock")
        other.me["host"] = "elsewhere"  # not told apart by its pid
        held = other.try_take()
        assert held and held["run"] == mine.me["run"]
    finally:
        mine.release()
    assert not fs().exists(path)


def train_objects(url: str) -> dict[str, tuple[str, str]]:
    """The train split's objects, each with its ETag and its time (a copy gets a new one)."""
    return {p: (i["ETag"], str(i["LastModified"]))
            for p, i in fs().find(url[5:], detail=True).items() if "-train-" in p}


def test_a_split_into_a_folder_of_other_splits_in_a_store_merges_as_locally(run, tmp_path,
                                                                          bucket):
    tree = nmnist_tree(tmp_path / "nmnist", {"train": 4, "test": 2})
    url = f"s3://{bucket}/ds/2nmnist/2.1.0"
    local = tmp_path / "local" / "2nmnist" / "2.1.0"
    args = ["--nmnist-root", tree, "--quiet", "--shard-size", "4"]
    for split in ("train", "test"):
        run("2nmnist", *args, "--split", split, "--out", tmp_path / "local")
    run("2nmnist", *args, "--split", "train", "--out", f"s3://{bucket}/ds")
    kept = train_objects(url)
    time.sleep(1.1)  # the store's times are in seconds: a copy made now would have another
    run("2nmnist", *args, "--split", "test", "--out", f"s3://{bucket}/ds")
    assert sums(url) == sums(local)
    assert fs().cat_file(f"{url}/manifest.json") == (local / "manifest.json").read_bytes()
    # The train split's objects were kept as they were, not copied anew.
    assert train_objects(url) == kept and kept
    assert "OK:" in run("verify", url).output
    # run.json kept the train split's record: a rerun of either split reuses the folder.
    for split in ("train", "test"):
        again = run("2nmnist", "--nmnist-root", tree, "--out", f"s3://{bucket}/ds",
                    "--shard-size", "4", "--split", split)
        assert "reused" in again.output
    assert {p.split("/")[3] for p in fs().find(f"{bucket}/ds/2nmnist")} == {"2.1.0"}


def test_a_split_of_another_config_into_a_folder_in_a_store_is_refused_as_locally(
        run, tmp_path, bucket):
    tree = nmnist_tree(tmp_path / "nmnist", {"train": 4, "test": 2})
    said = []
    for out in (f"s3://{bucket}/ds", tmp_path / "local"):
        args = ["--nmnist-root", tree, "--out", out, "--quiet"]
        run("2nmnist", *args, "--split", "train")
        result = run("2nmnist", *args, "--split", "test", "--seed", "7", code=1)
        assert len(result.output.strip().splitlines()) == 1, result.output
        said.append(result.output.replace(str(out), "OUT"))
    assert said[0] == said[1]
    assert "holds the train split made with a different config (seed)" in said[0]


def test_a_merge_killed_in_its_commit_is_finished_by_its_rerun(run, tmp_path, bucket,
                                                               monkeypatch):
    """Cut after SHA256SUMS is removed and the test split's objects copied: the rerun still
    merges (the merge it was making is kept in its stage), keeping the train split."""
    from neurodata_cli import materialise, remote

    tree = nmnist_tree(tmp_path / "nmnist", {"train": 4, "test": 2})
    out = f"s3://{bucket}/ds"
    url = f"{out}/2nmnist/2.1.0"
    for split in ("train", "test"):
        materialise("2nmnist", out=tmp_path / "local", nmnist_root=tree, split=split, quiet=True)
    materialise("2nmnist", out=out, nmnist_root=tree, split="train", quiet=True)
    cut_commit_at(monkeypatch, remote, "manifest.json")
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("2nmnist", out=out, nmnist_root=tree, split="test", quiet=True)
    monkeypatch.undo()
    assert not fs().exists(f"{url[5:]}/SHA256SUMS")
    run("2nmnist", "--nmnist-root", tree, "--out", out, "--split", "test", "--quiet")
    assert sums(url) == sums(tmp_path / "local" / "2nmnist" / "2.1.0")
    assert "OK:" in run("verify", url).output


def test_a_folder_made_otherwise_is_refused_then_replaced_with_overwrite(run, tmp_path, bucket):
    (tmp_path / "two.yaml").write_text("splits:\n  train: {size: 300, seed: 1}\n"
                                       "  b: {size: 300, seed: 2}\n")
    out = f"s3://{bucket}/ds"
    run("yinyang", "--config", tmp_path / "two.yaml", "--out", out, "--quiet")
    result = run("yinyang", "--size", "200", "--out", out, code=1)
    assert "already holds a finished yinyang 1.0.0 made with a different config" in result.output
    run("yinyang", "--size", "200", "--out", out, "--overwrite", "--quiet")
    run("yinyang", "--size", "200", "--out", tmp_path / "local", "--quiet")
    url = f"{out}/yinyang/1.0.0"
    assert sums(url) == sums(tmp_path / "local" / "yinyang" / "1.0.0")
    assert "OK:" in run("verify", url).output  # the old folder's objects are gone


def test_a_stale_lock_is_broken_only_if_it_is_still_the_one_read(bucket):
    """Two runs find one stale lock; the first breaks it and takes the folder. The second's
    delete is conditional on the lock it read (its ETag), so it cannot delete the new one."""
    from neurodata_cli import objstore

    store, path = objstore.filesystem(f"s3://{bucket}/ds/yinyang/.1.0.0.lock")
    old = {"run": "old", "host": "elsewhere", "pid": 1, "time": time.time() - 1000}
    store.pipe_file(path, json.dumps(old).encode())
    read_by_second = store.info(path)["ETag"]
    first = objstore.Lease(store, path, "lock")
    assert first.try_take() == {}  # broke it
    assert first.try_take() is None  # took it
    second = objstore.Lease(store, path, "lock")
    assert second._break(read_by_second) is False
    assert second.holder()["run"] == first.me["run"]


def test_a_stage_left_by_a_commit_killed_after_its_sha256sums_is_removed_by_the_rerun(
        run, tmp_path, bucket, monkeypatch):
    from neurodata_cli import materialise, remote

    args = small("yinyang", tmp_path)
    real = remote.RemoteMaterialiser._remove

    def cut(self, path):
        if path == self.rstage and fs().exists(f"{self.rfolder}/SHA256SUMS"):
            raise RuntimeError("power cut")
        return real(self, path)

    monkeypatch.setattr(remote.RemoteMaterialiser, "_remove", cut)
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("yinyang", out=f"s3://{bucket}/ds", config=args[1])
    stage = f"{bucket}/ds/yinyang/.1.0.0.s0+s1+s2.partial"
    assert fs().find(stage)
    monkeypatch.setattr(remote.RemoteMaterialiser, "_remove", real)
    assert "reused" in run("yinyang", *args, "--out", f"s3://{bucket}/ds").output
    assert not fs().find(stage)


def test_a_run_whose_lease_was_broken_commits_nothing_over_the_next_holders_folder(
        bucket, monkeypatch):
    """A run stalled past its lease (a suspended machine, SIGSTOP): another run breaks its
    lock and commits a folder of another config. The stalled run, resumed, must not then
    replace that finished folder (it never had --overwrite): it says it lost its lock."""
    from neurodata_cli import RunError, materialise, remote

    out = f"s3://{bucket}/ds"
    real = remote.RemoteMaterialiser._build

    def stalled(self, *args, **kwargs):
        monkeypatch.setattr(remote.RemoteMaterialiser, "_build", real)
        fs().rm_file(lock_key(bucket))  # the other run found our lease stale and broke it
        materialise("yinyang", out=out, size=300, seed=2, wait=0, quiet=True)
        return real(self, *args, **kwargs)  # our worker, resumed, uploads its shard

    monkeypatch.setattr(remote.RemoteMaterialiser, "_build", stalled)
    with pytest.raises(RunError, match="lost its lock"):
        materialise("yinyang", out=out, size=300, seed=1, quiet=True)
    manifest = json.loads(fs().cat_file(f"{bucket}/ds/yinyang/1.0.0/manifest.json"))
    assert manifest["splits"]["train"]["config"]["splits"]["train"]["seed"] == 2
    assert fs().exists(f"{bucket}/ds/yinyang/1.0.0/SHA256SUMS")


def test_a_lock_whose_time_is_no_number_is_stale_not_a_traceback(run, bucket):
    held = {"run": "other", "host": "elsewhere", "pid": 1, "time": "soon"}
    fs().pipe_file(lock_key(bucket), json.dumps(held).encode())
    result = run("yinyang", "--size", "300", "--out", f"s3://{bucket}/ds", "--wait", "0")
    assert "Traceback" not in result.output
    assert fs().exists(f"{bucket}/ds/yinyang/1.0.0/SHA256SUMS")


def test_open_dataset_refuses_a_folder_in_a_store_mid_commit(bucket):
    """A commit into a store removes SHA256SUMS first and copies the new files under the old
    manifest: a reader then would get the new run's samples described by the old manifest."""
    from neurodata_cli import RunError, materialise, open_dataset

    url = materialise("yinyang", out=f"s3://{bucket}/ds", size=100, quiet=True).folder
    fs().rm_file(f"{bucket}/ds/yinyang/1.0.0/SHA256SUMS")
    with pytest.raises(RunError, match="SHA256SUMS"):
        open_dataset(url)


def test_a_store_error_while_renewing_the_lease_is_retried_not_a_dead_thread(bucket, monkeypatch):
    """One failed request (a network blip) killed the renewal thread with a traceback on
    stderr; the lease then expired under a live run."""
    from neurodata_cli import objstore

    monkeypatch.setattr(objstore, "LEASE", 0.4)
    store, path = objstore.filesystem(f"s3://{bucket}/ds/yinyang/.1.0.0.lock")
    mine = objstore.Lease(store, path, "lock")
    assert mine.try_take() is None
    real, failed = store.cat_file, []

    def blip(p, *args, **kwargs):
        if not failed:
            failed.append(p)
            raise OSError("connection reset")
        return real(p, *args, **kwargs)

    monkeypatch.setattr(store, "cat_file", blip)
    mine.start()
    try:
        time.sleep(1.2)  # the first renewal fails, the next ones must not stop
        assert failed and mine._thread.is_alive()
        assert time.time() - json.loads(real(path))["time"] < 0.4
    finally:
        mine.release()


def test_a_split_from_the_official_tars_merges_into_a_store_folder_as_locally(run, tmp_path,
                                                                           bucket):
    """The merge after a scan: val, then train, from the tars, gives the local bytes."""
    tars = ilsvrc(tmp_path / "tars", tars=True)
    args = ["--imagenet-root", tars, "--min-events", "10", "--quiet"]
    for out in (tmp_path / "local", f"s3://{bucket}/ds"):
        for split in ("val", "train"):
            run("es-imagenet", *args, "--split", split, "--out", out)
    url = f"s3://{bucket}/ds/es-imagenet/2.2.0"
    assert sums(url) == sums(tmp_path / "local" / "es-imagenet" / "2.2.0")
    assert "OK:" in run("verify", url).output


def test_a_merge_cut_short_is_not_redone_over_a_folder_another_commit_changed(
        run, tmp_path, bucket, monkeypatch):
    """A test-split merge cut as it began its commit (its merge.json written, the folder still
    finished), then a train run of other inputs (shards of the same sizes) with --overwrite
    cut in its own: the folder holds the new train objects. The test rerun must not finish
    the folder with the manifest its first commit began from (the old train's hashes over the
    new train's bytes: a finished folder that fails verify)."""
    from test_stream_checks import fixed_tree

    from neurodata_cli import materialise, remote

    one, two = fixed_tree(tmp_path / "one", 1), fixed_tree(tmp_path / "two", 2)
    out = f"s3://{bucket}/ds"
    url = f"{out}/2nmnist/2.1.0"
    materialise("2nmnist", out=out, nmnist_root=one, split="train", quiet=True)
    cut_commit_at(monkeypatch, remote, "merge.json", after=True)
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("2nmnist", out=out, nmnist_root=one, split="test", quiet=True)
    monkeypatch.undo()
    cut_commit_at(monkeypatch, remote, "manifest.json")
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("2nmnist", out=out, nmnist_root=two, split="train", quiet=True,
                    overwrite=True)
    monkeypatch.undo()
    result = run("2nmnist", "--nmnist-root", one, "--out", out, "--split", "test", code=None)
    if result.exit_code == 0:  # finished: then it must be what it says
        assert "OK:" in run("verify", url).output
    else:
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
        assert not fs().exists(f"{url[5:]}/SHA256SUMS")
    # The train run's own command finishes its commit; the test split then merges into it.
    run("2nmnist", "--nmnist-root", two, "--out", out, "--split", "train", "--overwrite",
        "--quiet")
    run("2nmnist", "--nmnist-root", one, "--out", out, "--split", "test", "--quiet")
    assert "OK:" in run("verify", url).output


@pytest.mark.parametrize("damage", ["empty table", "a name short", "a flat table"])
def test_an_index_in_the_stage_whose_parts_disagree_is_made_again(run, tmp_path, bucket,
                                                                   monkeypatch, damage):
    """The tars' index kept in the stage, damaged with its stamp intact (an empty npy, a
    names list one short of the table, a table of another shape): the rerun indexes the tar
    again and gives the local bytes, not 'Aborted!' or a traceback."""
    import io

    import numpy as np

    from neurodata_cli import materialise, remote

    tars = ilsvrc(tmp_path / "tars", tars=True)
    args = ["--imagenet-root", tars, "--min-events", "10", "--split", "val"]
    run("es-imagenet", *args, "--out", tmp_path / "local", "--quiet")
    out = f"s3://{bucket}/ds"
    cut_commit_at(monkeypatch, remote, "SHA256SUMS")
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("es-imagenet", out=out, imagenet_root=tars, split="val", min_events=10,
                    quiet=True)
    monkeypatch.undo()
    index = f"{bucket}/ds/es-imagenet/.2.2.0.val.partial/.neurodata/index"
    if damage == "empty table":
        fs().pipe_file(f"{index}/index-val.npy", b"")
    elif damage == "a name short":
        meta = json.loads(fs().cat_file(f"{index}/index-val-names.json"))
        meta["names"] = meta["names"][:-1]
        fs().pipe_file(f"{index}/index-val-names.json", json.dumps(meta).encode())
    else:
        flat = io.BytesIO()
        np.save(flat, np.zeros(3, dtype=np.int64))
        fs().pipe_file(f"{index}/index-val.npy", flat.getvalue())
    run("es-imagenet", *args, "--out", out, "--quiet")
    url = f"{out}/es-imagenet/2.2.0"
    assert sums(url) == sums(tmp_path / "local" / "es-imagenet" / "2.2.0")


def test_info_does_not_list_a_folder_in_a_store_mid_commit_as_finished(run, tmp_path, bucket,
                                                                      monkeypatch):
    """A commit cut before its SHA256SUMS leaves manifest.json there (and, in a merge, the new
    one): info of the root, or of the folder, says it is not finished, as open_dataset does,
    instead of describing it as a finished folder."""
    from neurodata_cli import materialise, remote

    out = f"s3://{bucket}/ds"
    run("yinyang", "--size", "10", "--out", out, "--quiet")
    materialise("2nmnist", out=out, nmnist_root=nmnist_tree(tmp_path / "nm", {"train": 2,
                "test": 1}), split="train", quiet=True)
    cut_commit_at(monkeypatch, remote, "SHA256SUMS")
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("2nmnist", out=out, nmnist_root=tmp_path / "nm", split="test", quiet=True)
    monkeypatch.undo()
    url = f"{out}/2nmnist/2.1.0"
    listed = run("info", out, code=1).output.splitlines()
    assert listed[0] == (f"{url}: {url} has no SHA256SUMS: not a finished neurodata folder (a "
                         "run may be committing into it; open it once that run is done)")
    assert listed[1].startswith(f"yinyang 1.0.0  {out}/yinyang/1.0.0  (train 10 samples")
    alone = run("info", url, code=1).output
    assert "has no SHA256SUMS: not a finished neurodata folder" in alone
    assert len(alone.strip().splitlines()) == 1


def test_a_merge_cut_short_keeps_the_other_split_when_a_run_of_another_config_follows(
        run, tmp_path, bucket, monkeypatch):
    """val in the store; a train merge cut before its SHA256SUMS; then train with another
    shard size (a per-split key: locally it merges beside val) and --overwrite. Locally the
    cut commit is settled first and val kept; here the unfinished folder was replaced, val's
    only copy with it. The run is refused in one line naming the stage to finish first."""
    from neurodata_cli import materialise, remote

    root = tmp_path / "im"
    imagenet_tree(root, classes=2, per_class=2, photos=False)
    imagenet_tree(root, classes=2, per_class=1, split="val", photos=False)
    out = f"s3://{bucket}/ds"
    url = f"{out}/es-imagenet/2.2.0"
    args = ["es-imagenet", "--imagenet-root", root, "--min-events", "10"]
    run(*args, "--split", "val", "--out", out, "--quiet")
    cut_commit_at(monkeypatch, remote, "SHA256SUMS")
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("es-imagenet", out=out, imagenet_root=root, min_events=10, split="train",
                    quiet=True)
    monkeypatch.undo()
    val = {p for p in fs().find(url[5:]) if "-val-" in p}
    other = [*args, "--split", "train", "--shard-size", "3", "--out", out]
    for flags in ((), ("--overwrite",)):
        said = run(*other, *flags, code=1).output
        assert len(said.strip().splitlines()) == 1, said
        assert f"{out}/es-imagenet/.2.2.0.train.partial" in said
        assert {p for p in fs().find(url[5:]) if "-val-" in p} == val
    # The cut run's command finishes its commit; the other config then merges beside val.
    run(*args, "--split", "train", "--out", out, "--quiet")
    run(*other, "--overwrite", "--quiet")
    for split, more in (("val", ()), ("train", ("--shard-size", "3"))):
        run(*args, "--split", split, *more, "--out", tmp_path / "local", "--quiet")
    assert sums(url) == sums(tmp_path / "local" / "es-imagenet" / "2.2.0")


@pytest.mark.parametrize("kept", [b"{}", b"[1]", b"{not json"])
def test_a_merge_json_of_the_wrong_shape_is_one_line(run, tmp_path, bucket, monkeypatch, kept):
    """The stage's merge.json of a commit cut short, edited: said in one line, not a
    traceback from the merge that reads it."""
    from neurodata_cli import materialise, remote

    tree = nmnist_tree(tmp_path / "nmnist", {"train": 2, "test": 1})
    out = f"s3://{bucket}/ds"
    materialise("2nmnist", out=out, nmnist_root=tree, split="train", quiet=True)
    cut_commit_at(monkeypatch, remote, "manifest.json")
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("2nmnist", out=out, nmnist_root=tree, split="test", quiet=True)
    monkeypatch.undo()
    stage = f"{bucket}/ds/2nmnist/.2.1.0.test.partial"
    fs().pipe_file(f"{stage}/.neurodata/merge.json", kept)
    said = run("2nmnist", "--nmnist-root", tree, "--out", out, "--split", "test", code=1).output
    assert said.strip() == (f"Error: s3://{stage}/.neurodata/merge.json is not the manifest of "
                            "a folder: the commit cut short there cannot be redone")


def test_preview_of_a_folder_in_a_store_mid_commit_is_refused(run, tmp_path, bucket,
                                                               monkeypatch):
    """Cut before its SHA256SUMS, the folder holds the new run's objects: preview would draw
    them, as open_dataset and info would not."""
    from neurodata_cli import materialise, remote

    out = f"s3://{bucket}/ds"
    materialise("yinyang", out=out, size=100, quiet=True)
    cut_commit_at(monkeypatch, remote, "SHA256SUMS")
    with pytest.raises(RuntimeError, match="power cut"):
        materialise("yinyang", out=out, size=120, quiet=True, overwrite=True)
    monkeypatch.undo()
    said = run("preview", f"{out}/yinyang/1.0.0", "-o", tmp_path / "p.png", code=1).output
    assert "has no SHA256SUMS: not a finished neurodata folder" in said
    assert len(said.strip().splitlines()) == 1
    assert not (tmp_path / "p.png").exists()
