"""The cache key of a folder, known before it is built: a digest of everything that shapes its
bytes, for a CI cache (``neurodata key NAME [flags]``, ``neurodata_cli.key``).

It digests the dataset, its version, the tool's version, the config as the manifest records it,
the library versions the manifest records, and the inputs by name, size and a digest taken from
their contents where one is free (a zip member's CRC-32, a download's published md5). Nothing of
the machine goes in: no paths (the manifest holds none), and no modification times, which
differ between two checkouts of the same files. A file rewritten at the same size with other
bytes, in a folder rather than a zip, is therefore not seen: put such inputs' own hashes in the
cache key too (``hashFiles`` in GitHub Actions).

Nothing is written, built or downloaded. An archive that a run would index first (ES-ImageNet's
official tars) is keyed by its name and size.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .datasets.base import Config, Dataset, InputFile, file_listing
from .engine import check_split_names, libraries
from .storage import is_url, url_input
from .version import __version__

# Digests ``file_listing`` takes from a stat: they tell a rewrite apart on one machine, and
# differ between machines for the same bytes.
LOCAL_DIGESTS = ("mtime_ns:",)


def portable(entry: InputFile) -> list[Any]:
    """``[name, size, digest]``, the digest dropped where it comes from the machine."""
    digest = "" if entry.digest.startswith(LOCAL_DIGESTS) else entry.digest
    return [entry.name, entry.size, digest]


def inputs(ds: Dataset[Any], cfg: Config) -> list[list[Any]]:
    """The inputs of a located config, sorted, as the key takes them."""
    if ds.needs_scan(cfg):  # indexing the archive is the run's first step: name and size
        listing = [e for path in ds.inputs(cfg)
                   for e in ([InputFile(*url_input(path))] if is_url(path)
                             else file_listing(Path(path).parent, [Path(path).name]))]
    else:
        listing = ds.input_listing(cfg, ds.plan(cfg))
    return sorted(portable(InputFile(*entry)) for entry in listing)


def describe(ds: Dataset[Any], cfg: Config) -> dict[str, Any]:
    """What the key digests, as JSON-ready values."""
    pinned = ds.pinned_inputs(cfg)
    if pinned is None:
        cfg = ds.locate(cfg)
        check_split_names(ds.splits(cfg))
        listed = inputs(ds, cfg)
    else:  # known by published digests: nothing is fetched
        listed = sorted(portable(InputFile(*entry)) for entry in pinned)
    return {"dataset": ds.output_name(cfg), "builder": ds.name, "version": ds.version,
            "release_notes": ds.release_notes.get(ds.version, ""),  # the manifest holds them
            "tool": {"name": "neurodata", "version": __version__},
            "libraries": libraries(ds, cfg), "config": cfg.recorded(), "inputs": listed}


def digest(what: dict[str, Any]) -> str:
    """``<dataset>-<version>-<sha256>``: readable in a cache listing, and safe in a key."""
    text = json.dumps(what, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"{what['dataset']}-{what['version']}-{hashlib.sha256(text.encode()).hexdigest()}"
