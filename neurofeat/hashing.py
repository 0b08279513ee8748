"""The sha256 of a file's bytes: the one helper that ingest, checkpoints and adapters share."""

from __future__ import annotations

import hashlib
import os

__all__ = ["sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str], chunk_size: int = _CHUNK) -> str:
    """Hex sha256 of a file, streamed in chunks (1 MiB by default).

    Parameters
    ----------
    path : str or path-like
    chunk_size : int
        Bytes read at a time.

    Returns
    -------
    str
        64 lowercase hex digits.

    Raises
    ------
    OSError
        The file cannot be opened or read.

    Examples
    --------
    >>> sha256_file("models/dino_dro/model.safetensors")  # doctest: +SKIP
    '3b1f...'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
