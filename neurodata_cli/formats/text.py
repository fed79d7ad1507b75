"""Plain text files (label tables, provenance CSVs): UTF-8, LF line endings."""

from pathlib import Path

from . import HashingFile


def write(path: Path, text: str) -> str:
    """Write ``text`` as UTF-8 exactly as given (no newline translation); returns its sha256."""
    with HashingFile(path) as f:
        f.write(text.encode("utf-8"))
        return f.hexdigest()
