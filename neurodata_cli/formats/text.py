"""Plain text files (label tables, provenance CSVs): UTF-8, LF line endings."""

from pathlib import Path


def write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
