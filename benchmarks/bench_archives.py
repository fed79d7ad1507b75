"""ES-ImageNet from the official tars, against the same images as folders, in one run.

Inputs: the ES-ImageNet bench's JPEGs as folders, and the same files packed the way the
official ILSVRC2012_img_train.tar is (a tar of one <wnid>.tar per class). Reported:
- conversion from the tar against conversion from the folders, 1 worker, medians of
  interleaved rounds (goal: <= 1.1x), with the tar and the folders read into the page cache
  before each run alike;
- indexing a synthetic archive of 100,000 small members (100 inner tars of 1,000), its time
  and peak memory, and the same for the plan made from that index, extrapolated linearly to
  the real train tar's 1,281,167 members.
"""

from __future__ import annotations

import io
import sys
import tarfile
import time
from pathlib import Path

from bench_es_imagenet import IMAGES, make_inputs
from common import WORK, fresh, mb, median, neurodata, timed_process, warm

ROUNDS = 3
MEMBERS, REAL_MEMBERS = 100_000, 1_281_167

INDEX = """
import sys
from pathlib import Path
from neurodata_cli.datasets.es_imagenet import archives
names, table = archives.scan(Path(sys.argv[1]), "train", Path(sys.argv[2]), quiet=True)
assert len(names) == int(sys.argv[3])
"""

BASE = """
from neurodata_cli import config
from neurodata_cli.datasets import get
from neurodata_cli.datasets.es_imagenet import archives
get("es-imagenet")
"""

PLAN = """
import sys
from pathlib import Path
from neurodata_cli import config
from neurodata_cli.datasets import get
ds = get("es-imagenet")
values = config.resolve(ds, None, {"imagenet_root": sys.argv[1]})
cfg = ds.locate(config.parse(ds, values))
cfg = ds.scan(cfg, Path(sys.argv[2]))
shards = ds.plan(cfg)
assert sum(s.units for s in shards) == int(sys.argv[3])
"""


def add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    tf.addfile(info, io.BytesIO(data))


def pack(folders: Path, archive: Path) -> None:
    """The official train tar's shape: one <wnid>.tar per class folder, inside one tar."""
    with tarfile.open(archive, "w") as outer:
        for wnid_dir in sorted((folders / "train").iterdir()):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as inner:
                for path in sorted(wnid_dir.iterdir()):
                    add(inner, path.name, path.read_bytes())
            add(outer, f"{wnid_dir.name}.tar", buffer.getvalue())


def synthetic_archive(archive: Path) -> None:
    with tarfile.open(archive, "w") as outer:
        for c in range(MEMBERS // 1000):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as inner:
                for i in range(1000):
                    add(inner, f"n{c:08d}_{i}.JPEG", b"x" * 100)
            add(outer, f"n{c:08d}.tar", buffer.getvalue())


def main() -> int:
    work = WORK / "archives"
    folders = make_inputs(WORK / "es-imagenet" / "imagenet")
    tars = fresh(work / "tars")
    pack(folders, tars / "ILSVRC2012_img_train.tar")
    print(f"archives: {IMAGES:,} ImageNet-sized JPEGs as folders and as the official train tar")

    def convert(root: Path, pattern: str) -> float:
        warm(root, pattern)
        return timed_process(neurodata() + [
            "es-imagenet", "--imagenet-root", str(root), "--workers", "1", "--shard-size", "100",
            "--out", str(fresh(work / "out")), "--quiet"])[0]

    from_folders, from_tar = [], []
    for _ in range(ROUNDS):
        from_folders.append(convert(folders, "*.JPEG"))
        from_tar.append(convert(tars, "*.tar"))
    a, b = median(from_folders), median(from_tar)
    ok = b / a <= 1.1
    print(f"  from folders {a:.2f} s, from the tar {b:.2f} s: {b / a:.2f}x "
          f"[goal <= 1.1x: {'met' if ok else 'NOT met'}] (medians of {ROUNDS} interleaved runs)")

    synthetic = work / "synthetic" / "ILSVRC2012_img_train.tar"
    synthetic.parent.mkdir(parents=True, exist_ok=True)
    if not synthetic.exists():
        synthetic_archive(synthetic)
    warm(synthetic.parent, "*.tar")
    t_index, rss_index = timed_process([sys.executable, "-c", INDEX, str(synthetic),
                                        str(fresh(work / "cache")), str(MEMBERS)])
    t_plan, rss_plan = timed_process([sys.executable, "-c", PLAN, str(synthetic.parent),
                                      str(work / "cache"), str(MEMBERS)])
    # What the same imports cost with no archive: only the rest grows with the members.
    _, base = timed_process([sys.executable, "-c", BASE])
    factor = REAL_MEMBERS / MEMBERS
    print(f"  indexing {MEMBERS:,} members ({mb(synthetic.stat().st_size)}): {t_index:.2f} s, "
          f"peak RSS {mb(rss_index)} ({mb(rss_index - base)} over the {mb(base)} of the "
          f"imports); -> {REAL_MEMBERS:,} members: about {t_index * factor:.0f} s of parsing "
          f"and {mb(base + (rss_index - base) * factor)} (reading the 138 GB file adds its "
          "disk time)")
    print(f"  the plan from that index: {t_plan:.2f} s, peak RSS {mb(rss_plan)}; -> "
          f"{REAL_MEMBERS:,} inputs: about {mb(base + (rss_plan - base) * factor)}")
    return 0 if ok else 1


if __name__ == "__main__":
    start = time.perf_counter()
    sys.exit(main())
