"""Inputs and finished folders at URLs (``s3://``, ``gs://``, ``file://``...) through fsspec.

fsspec (and s3fs for ``s3://``) is imported only when a URL is given: local paths never touch
this module's imports, and need no extra package (``pip install 'neurodata[cloud]'`` adds them).
A filesystem is made from the URL in each process that reads it, so cluster workers and
DataLoader workers open the store themselves; a URL string is what crosses processes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeGuard

from .errors import ConfigError, RunError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Keys of an object's listing entry that tell its contents apart at no cost, best first (S3's
# ETag, GCS's md5Hash): what a URL input is recorded by, never a local time.
_DIGEST_KEYS = ("ETag", "etag", "md5Hash", "crc32c", "checksum")


def is_url(path: Any) -> TypeGuard[str]:
    """Whether ``path`` is a URL string (``scheme://...``); a ``Path`` never is."""
    return isinstance(path, str) and bool(_SCHEME.match(path))


def url_fs(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of ``url``; a missing package is one line (exit 2).

    fsspec keeps one filesystem per store and process, with the listings it has seen: those
    who list or stat call ``fresh`` first, so that a changed input is seen in the same process.
    """
    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"{url}: reading a URL needs fsspec; pip install 'neurodata[cloud]'"
                          ) from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:  # fsspec names the package the protocol needs (s3fs, gcsfs)
        raise ConfigError(f"{url}: {exc}".splitlines()[0]) from None
    except ValueError as exc:  # an unknown protocol
        raise ConfigError(f"{url}: {exc}") from None


def fresh(url: str) -> tuple[Any, str]:
    """``url_fs``, with what the filesystem remembers of ``url``'s listings dropped."""
    fs, path = url_fs(url)
    fs.invalidate_cache(path)
    return fs, path


def url_join(base: str, *parts: str) -> str:
    """``base/part/...``: URLs join with ``/`` whatever the machine."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def url_name(url: str) -> str:
    """The last part of ``url`` (``Train.zip`` of ``s3://b/nmnist/Train.zip``)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def url_digest(info: dict[str, Any]) -> str:
    """What tells a rewritten object apart, from its listing entry: ``etag:...`` (S3's ETag,
    GCS's md5); empty where the store gives none (``file://``)."""
    for key in _DIGEST_KEYS:
        value = info.get(key)
        if value:
            return f"etag:{str(value).strip(chr(34))}"
    return ""


def failure(url: str, exc: BaseException) -> RunError:
    """A store's error as one line naming the URL (no bucket, no key, no access)."""
    if isinstance(exc, FileNotFoundError):
        return RunError(f"{url}: no such bucket or key")
    if isinstance(exc, PermissionError):
        return RunError(f"{url}: access denied ({exc})")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RunError(f"{url}: cannot be read ({text})")


def url_info(url: str) -> dict[str, Any]:
    """The listing entry of one object or folder (``type``, ``size``, an ETag where kept)."""
    fs, path = fresh(url)
    try:
        return dict(fs.info(path))
    except Exception as exc:  # noqa: BLE001  (each store raises its own kinds)
        raise failure(url, exc) from None


def url_kind(url: str) -> str:
    """``file``, ``directory`` or ``""`` (nothing there)."""
    fs, path = fresh(url)
    try:
        return str(fs.info(path).get("type", ""))
    except FileNotFoundError:
        return ""
    except Exception as exc:  # noqa: BLE001
        raise failure(url, exc) from None


def url_entries(url: str) -> dict[str, str]:
    """The names directly in folder ``url`` and their kinds (``file`` or ``directory``)."""
    fs, path = fresh(url)
    try:
        listed = fs.ls(path, detail=True)
    except Exception as exc:  # noqa: BLE001
        raise failure(url, exc) from None
    out = {}
    for entry in listed:
        name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
        if str(entry["name"]).rstrip("/") != path.rstrip("/"):  # some stores list the folder
            out[name] = str(entry.get("type", "file"))
    return out


def url_find(url: str) -> dict[str, dict[str, Any]]:
    """Every object below folder ``url`` by its path relative to it (``3/a.bin``), with its
    listing entry (``size``, an ETag): one recursive listing, not a request per object."""
    fs, path = fresh(url)
    base = path.rstrip("/") + "/"
    try:
        found = fs.find(path, detail=True)
    except Exception as exc:  # noqa: BLE001
        raise failure(url, exc) from None
    return {name[len(base):]: dict(info) for name, info in found.items()
            if name.startswith(base) and info.get("type", "file") == "file"}


def url_input(url: str) -> tuple[str, int, str]:
    """(name, size, ETag) of one input object, as ``InputFile`` takes them."""
    info = url_info(url)
    return url_name(url), int(info.get("size") or 0), url_digest(info)


def url_read(url: str, limit: int | None = None) -> bytes:
    """The object's bytes by one ranged read; with ``limit``, at most that many."""
    fs, path = url_fs(url)
    try:
        return bytes(fs.cat_file(path, start=0, end=limit))
    except Exception as exc:  # noqa: BLE001
        raise failure(url, exc) from None


def url_read_many(urls: list[str], limit: int) -> list[bytes | Exception]:
    """Each object's first ``limit`` bytes, read concurrently where the store allows (an object
    per request costs a round trip; a block of them costs about one): bytes, or the error."""
    if not urls:
        return []
    fs, _ = url_fs(urls[0])
    paths = [url_fs(u)[1] for u in urls]
    try:
        got = fs.cat_ranges(paths, [0] * len(paths), [limit] * len(paths), on_error="return")
    except Exception as exc:  # noqa: BLE001  (each store raises its own kinds)
        return [exc] * len(urls)
    return [g if isinstance(g, Exception) else bytes(g) for g in got]


def url_open(url: str, block_size: int = 1 << 22) -> Any:
    """A seekable binary file object over ``url``: reads are ranged GETs of ``block_size``
    bytes and more, cached ahead (zipfile and tarfile seek to members, then read on)."""
    fs, path = url_fs(url)
    try:
        return fs.open(path, "rb", block_size=block_size, cache_type="readahead")
    except Exception as exc:  # noqa: BLE001
        raise failure(url, exc) from None


def open_input(path: str | Path, block_size: int = 1 << 22) -> Any:
    """A binary file object over a local path or a URL."""
    return url_open(path, block_size) if is_url(path) else open(path, "rb")


def name_of(path: str | Path) -> str:
    """The last part of a local path or a URL."""
    return url_name(path) if is_url(path) else Path(path).name


def join(base: str | Path, *parts: str) -> str | Path:
    """``base/parts``: a URL stays a URL string, a local path a ``Path``."""
    return url_join(base, *parts) if is_url(base) else Path(base).joinpath(*parts)
