"""The Dask executor on a real LocalCluster (processes, 2 workers, 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import data_digest
from imagenet_synth import make_tree

distributed = pytest.importorskip("distributed")

VERSION = "2.2.0"



@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=50) as c:
        yield c


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    make_tree(root, classes=4, per_class=5, photos=False)
    return root


def local_run(run, tree: Path, out: Path, fmt: str = "hdf5") -> dict[str, str]:
    run("es-imagenet", "--imagenet-root", tree, "--out", out, "--shard-size", "2",
        "--min-events", "10", "--format", fmt, "--workers", "1")
    return data_digest(out / "es-imagenet" / VERSION)


@pytest.mark.parametrize("fmt", ["hdf5", "npz", "webdataset"])
def test_cluster_output_equals_a_local_run(run, tmp_path, tree, cluster, fmt):
    want = local_run(run, tree, tmp_path / "local", fmt)
    result = run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path / "dask",
                 "--shard-size", "2", "--min-events", "10", "--format", fmt,
                 "--scheduler", cluster.scheduler_address)
    assert "20 images" in result.output
    assert data_digest(tmp_path / "dask" / "es-imagenet" / VERSION) == want
    run("verify", tmp_path / "dask" / "es-imagenet" / VERSION)


def test_cluster_workers_read_the_official_tar_by_offset(run, tmp_path, tree, cluster):
    import tarfile

    from helpers import data_sums

    archive = tmp_path / "tars" / "ILSVRC2012_img_train.tar"
    archive.parent.mkdir()
    with tarfile.open(archive, "w") as outer:
        for wnid_dir in sorted((tree / "train").iterdir()):
            inner = tmp_path / f"{wnid_dir.name}.tar"
            with tarfile.open(inner, "w") as tf:
                for path in sorted(wnid_dir.iterdir()):
                    tf.add(path, arcname=path.name)
            outer.add(inner, arcname=inner.name)
    local_run(run, tree, tmp_path / "local")
    run("es-imagenet", "--imagenet-root", archive.parent, "--out", tmp_path / "dask",
        "--shard-size", "2", "--min-events", "10", "--scheduler", cluster.scheduler_address)
    assert data_sums(tmp_path / "dask" / "es-imagenet" / VERSION) == data_sums(
        tmp_path / "local" / "es-imagenet" / VERSION)


def test_the_config_file_can_name_the_cluster(run, tmp_path, tree, cluster):
    want = local_run(run, tree, tmp_path / "local")
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(f"executor:\n  kind: dask\n  address: {cluster.scheduler_address}\n")
    run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path / "dask", "--shard-size", "2",
        "--min-events", "10", "--config", cfg)
    assert data_digest(tmp_path / "dask" / "es-imagenet" / VERSION) == want


def test_a_worker_killed_mid_run_still_gives_identical_bytes(run, tmp_path, tree, cluster):
    want = local_run(run, tree, tmp_path / "local")
    client = distributed.Client(cluster.scheduler_address)
    pids = client.run(os.getpid)
    records = tmp_path / "dask" / "es-imagenet" / f".{VERSION}.train.partial" / ".neurodata" / \
        "shards"
    killed = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if records.is_dir() and len(list(records.glob("*.json"))) >= 2:
                pid = sorted(pids.values())[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.001)

    thread = threading.Thread(target=killer)
    thread.start()
    run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path / "dask", "--shard-size", "1",
        "--min-events", "10", "--scheduler", cluster.scheduler_address)
    thread.join()
    client.close()
    assert killed, "the run finished before a worker could be killed"
    local = tmp_path / "local1"
    run("es-imagenet", "--imagenet-root", tree, "--out", local, "--shard-size", "1",
        "--min-events", "10", "--workers", "1")
    assert data_digest(tmp_path / "dask" / "es-imagenet" / VERSION) == data_digest(
        local / "es-imagenet" / VERSION)
    assert want  # the shard-size-2 run is another layout; it only warmed the cache
    cluster.wait_for_workers(2, timeout=60)


def test_the_2nmnist_command_runs_on_the_cluster_too(run, tmp_path, cluster):
    from nmnist_synth import make_tree as nmnist_tree

    cluster.wait_for_workers(2, timeout=60)  # after the killed worker's replacement
    root = nmnist_tree(tmp_path / "nmnist", {"train": 3, "test": 2})
    run("2nmnist", "--nmnist-root", root, "--out", tmp_path / "local", "--workers", "1")
    run("2nmnist", "--nmnist-root", root, "--out", tmp_path / "dask", "--scheduler",
        cluster.scheduler_address)
    assert data_digest(tmp_path / "dask" / "2nmnist" / VERSION) == data_digest(
        tmp_path / "local" / "2nmnist" / VERSION)


def test_an_unreachable_scheduler_fails_within_seconds(run, tmp_path, tree):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the run: nobody listens there
    start = time.monotonic()
    result = run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path, "--scheduler",
                 f"tcp://127.0.0.1:{port}", code=1)
    assert time.monotonic() - start < 30
    assert f"tcp://127.0.0.1:{port}" in result.output and "cannot reach" in result.output
    assert not (tmp_path / "es-imagenet" / VERSION).exists()


def test_workers_that_cannot_see_the_inputs_are_named_before_any_work(run, tmp_path, tree,
                                                                     cluster, monkeypatch):
    from neurodata_cli.datasets.es_imagenet import ESImageNet

    monkeypatch.setattr(ESImageNet, "inputs", lambda self, cfg: ["/nonexistent/imagenet/train"])
    result = run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path, "--scheduler",
                 cluster.scheduler_address, code=1)
    assert "/nonexistent/imagenet/train does not exist on this worker" in result.output
    assert result.output.count("worker tcp://127.0.0.1") == 2
    stage = tmp_path / "es-imagenet" / f".{VERSION}.train.partial"
    assert not list(stage.glob("*.h5"))


def test_without_dask_the_flag_says_how_to_install_it(run, tmp_path, tree, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path, "--scheduler",
                 "tcp://127.0.0.1:1", code=2)
    assert "pip install 'neurodata[dask]'" in result.output


def test_workers_and_scheduler_do_not_mix(run, tmp_path, tree):
    result = run("es-imagenet", "--imagenet-root", tree, "--out", tmp_path, "--scheduler",
                 "tcp://127.0.0.1:1", "--workers", "2", code=2)
    assert "--workers" in result.output


def test_a_killed_client_resumes_with_identical_bytes(run, tmp_path, tree, cluster, monkeypatch):
    from neurodata_cli import executors as dask_executor

    want = local_run(run, tree, tmp_path / "local")
    real_run = dask_executor.DaskExecutor.run

    def dying_client(self, *args):
        for n, record in enumerate(real_run(self, *args)):
            if n == 3:
                raise KeyboardInterrupt  # the client dies; its workers' files stay in the stage
            yield record

    monkeypatch.setattr(dask_executor.DaskExecutor, "run", dying_client)
    args = ["es-imagenet", "--imagenet-root", tree, "--out", tmp_path / "dask", "--shard-size",
            "2", "--min-events", "10", "--scheduler", cluster.scheduler_address]
    run(*args, code=130)
    assert not (tmp_path / "dask" / "es-imagenet" / VERSION).exists()
    monkeypatch.setattr(dask_executor.DaskExecutor, "run", real_run)
    result = run(*args)
    assert "shards resumed" in result.output
    assert data_digest(tmp_path / "dask" / "es-imagenet" / VERSION) == want


def test_a_relative_out_is_the_client_s_folder_and_no_probe_is_left_with_the_workers(
        run, tmp_path, monkeypatch):
    from nmnist_synth import make_tree as nmnist_tree

    from neurodata_cli.executors import probe_storage

    root = nmnist_tree(tmp_path / "nmnist", {"train": 1, "test": 1})
    workers_home, here = tmp_path / "workers", tmp_path / "client"
    workers_home.mkdir()
    here.mkdir()
    monkeypatch.chdir(workers_home)  # the workers start here, so resolve "out" here
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0",
                                  silence_logs=50) as cluster:
        monkeypatch.chdir(here)
        run("2nmnist", "--nmnist-root", root, "--out", "out", "--quiet", "--scheduler",
            cluster.scheduler_address)
    run("2nmnist", "--nmnist-root", root, "--out", tmp_path / "local", "--workers", "1")
    assert data_digest(here / "out" / "2nmnist" / VERSION) == data_digest(
        tmp_path / "local" / "2nmnist" / VERSION)
    assert list(workers_home.iterdir()) == []
    # A worker that does not see the stage (storage not shared) says so and writes nothing.
    stage = tmp_path / "elsewhere" / "2nmnist" / f".{VERSION}.train.partial"
    problems = probe_storage([], str(stage), "0123")
    assert "shared with the workers" in problems[str(stage)]
    assert not (tmp_path / "elsewhere").exists()
