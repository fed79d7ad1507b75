"""Yin-Yang: 1e6 samples as a whole process, against the reference-style loop (1e5, scaled)."""

from __future__ import annotations

import sys
import time

import numpy as np
from common import WORK, fresh, mb, median, neurodata, timed_process
from reference_yinyang import ReferenceYinYang

from neurodata_cli.datasets.yinyang.walk import generate

SIZE, BASE_SIZE, SEED, ROUNDS = 1_000_000, 100_000, 42, 5
FORMATS = ("npy", "hdf5")


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> int:
    work = WORK / "yinyang"
    # Rounds interleave the loop and both formats: this machine's speed drifts by half over
    # minutes, and a ratio should compare runs made under the same conditions.
    base_times: list[float] = []
    runs: dict[str, list[tuple[float, int]]] = {fmt: [] for fmt in FORMATS}
    for _ in range(ROUNDS):
        start = time.perf_counter()
        ref = ReferenceYinYang(size=BASE_SIZE, seed=SEED)
        base_times.append((time.perf_counter() - start) * SIZE / BASE_SIZE)
        for fmt in FORMATS:
            out = fresh(work / fmt)
            runs[fmt].append(timed_process(neurodata() + [
                "yinyang", "--size", str(SIZE), "--seed", str(SEED), "--format", fmt, "--out",
                str(out), "--quiet"]))
    ref_samples, ref_labels = ref.arrays()
    ours = {fmt: (median([r[0] for r in rs]), max(r[1] for r in rs)) for fmt, rs in runs.items()}

    # The floor every run pays: interpreter, numpy, click and yaml start-up, a one-sample run.
    floor = median([timed_process(neurodata() + ["yinyang", "--size", "1", "--format", "npy",
                                                 "--out", str(fresh(work / "floor")), "--quiet"])[0]
                    for _ in range(ROUNDS)])
    start = time.perf_counter()
    generate(SIZE, SEED)
    in_process = time.perf_counter() - start

    folder = work / "npy" / "yinyang" / "1.0.0"
    samples = np.load(folder / "train_samples.npy", mmap_mode="r")
    labels = np.load(folder / "train_labels.npy", mmap_mode="r")
    identical = (np.asarray(samples[:BASE_SIZE]).tobytes() == ref_samples.tobytes()
                 and np.array_equal(labels[:BASE_SIZE], ref_labels))
    output_bytes = samples.nbytes + labels.nbytes

    baseline = median(base_times)
    print(f"yinyang: {SIZE:,} samples; reference-style loop {baseline / SIZE * 1e6:.1f} us/sample "
          f"-> {baseline:.1f} s scaled from {BASE_SIZE:,} (median of {ROUNDS} rounds)")
    ok = identical
    for fmt, (seconds, rss) in ours.items():
        ratio = baseline / seconds
        mem = rss / output_bytes
        print(f"  neurodata --format {fmt}: {seconds:.3f} s whole process (median of {ROUNDS}), "
              f"{ratio:.0f}x faster [goal >= 60x: {verdict(ratio >= 60)}]; peak RSS {mb(rss)} "
              f"= {mem:.2f}x the {mb(output_bytes)} output arrays [goal <= 4x: "
              f"{verdict(mem <= 4)}]")
        ok &= mem <= 4 and ratio >= 60
    print(f"  start-up floor (a 1-sample run): {floor:.3f} s; generation alone in-process: "
          f"{in_process:.3f} s = {baseline / in_process:.0f}x the loop")
    print(f"  first {BASE_SIZE:,} samples bit-identical to the loop: {identical}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
