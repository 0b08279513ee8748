"""Advisory file locks (fcntl) that die with their process.

A lock held by a process that was killed (even with SIGKILL) is released by the
kernel, so a stale lock file never blocks a later run.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

__all__ = ["PROBE_WAIT_S", "StoreLock", "StoreLockedError"]

#: How long a process about to own a lock waits out another's brief hold of it: recovery
#: (run by every ``Store.open``) takes a free lock for a moment to learn whether its owner
#: died, and a writer starting in that moment must not fail with "already running".
PROBE_WAIT_S = 1.0


class StoreLockedError(RuntimeError):
    """Another live process holds the lock."""


class StoreLock:
    """An exclusive, non-blocking lock on ``path``.

    Parameters
    ----------
    path : Path
        The lock file (created if needed).
    what : str
        What the lock protects, for the error message ("extraction of backbone 'dino'").

    Raises
    ------
    StoreLockedError
        On :meth:`acquire` when another live process holds it; the message names
        that process.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0) -> StoreLock:
        """Take the lock, waiting up to ``timeout`` seconds for its holder to finish."""
        deadline = time.monotonic() + timeout
        while True:
            fd = self._try_once()
            if isinstance(fd, int):
                break
            if time.monotonic() >= deadline:
                since = fd.get("since", "?")
                raise StoreLockedError(
                    f"{self.what} is already running (pid {fd.get('pid', '?')}, since {since}; "
                    f"lock {self.path}). Wait for it to finish, or stop it first."
                )
            time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        self._fd = fd
        return self

    def _try_once(self) -> int | dict:
        """The locked descriptor, or the holder's details when another process has it."""
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
                except (OSError, ValueError):
                    holder = {}
                os.close(fd)
                return holder
            except BaseException:
                os.close(fd)
                raise
            # A holder that finished may have unlinked the file between our open and
            # our flock: then we locked a file nobody else will ever open. Retry.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def try_acquire(self) -> bool:
        """Acquire without raising; return whether the lock was obtained."""
        try:
            self.acquire()
        except StoreLockedError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
