"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``.

Chromium reads JSON commands from file descriptor 3 and writes replies and events to
descriptor 4, each message ending in a NUL byte. No websocket, no port, no package: the
browser is driven through two pipes of this process.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
import time
from pathlib import Path

__all__ = ["Browser", "BrowserError"]


class BrowserError(RuntimeError):
    """Chromium did not start, answered an error, or timed out."""


class Browser:
    """One headless Chromium process driven over the DevTools pipe.

    Parameters
    ----------
    executable : str
    args : list of str
        Extra command-line switches.
    timeout : float
        Seconds to wait for any one reply or event.
    log : Path, optional
        File that receives Chromium's stderr.
    env : dict, optional
        Environment of the Chromium process.
    """

    def __init__(self, executable: str, args: list[str] | None = None, timeout: float = 60.0,
                 log: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.timeout = timeout
        to_browser_r, self._write_fd = os.pipe()
        self._read_fd, from_browser_w = os.pipe()
        # The browser must see the pipes as fds 3 (commands) and 4 (replies). bash moves
        # them there (no preexec_fn, which is unsafe in a process with threads; dash
        # cannot name fds above 9); copies at 10 and up first, so that no move
        # overwrites the other pipe.
        commands = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        replies = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        script = f'exec "$@" 3<&{commands} 4>&{replies} {commands}<&- {replies}>&-'
        self._log = open(log, "wb") if log else None
        self.process = subprocess.Popen(
            ["bash", "-c", script, "bash", executable, "--remote-debugging-pipe",
             *(args or []), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._log or subprocess.DEVNULL, pass_fds=(commands, replies), env=env)
        os.close(commands)
        os.close(replies)
        self._next_id = 0
        self._messages: list[dict] = []
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buffer += chunk
            *complete, buffer = buffer.split(b"\0")
            with self._cond:
                self._messages.extend(json.loads(m) for m in complete if m)
                self._cond.notify_all()

    def _wait_for(self, predicate, what: str) -> dict:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                for index, message in enumerate(self._messages):
                    if predicate(message):
                        return self._messages.pop(index)
                if self._closed:
                    raise BrowserError(f"chromium closed the DevTools pipe while waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"no {what} from chromium within {self.timeout:.0f} s")
                self._cond.wait(left)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and return its result (raise on a protocol error)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        wanted = self._next_id
        reply = self._wait_for(lambda m: m.get("id") == wanted, f"reply to {method}")
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str | None = None) -> dict:
        """The next event named ``method`` (of ``session``)."""
        return self._wait_for(lambda m: m.get("method") == method
                              and (session is None or m.get("sessionId") == session),
                              f"event {method}")

    def events(self, method: str) -> list[dict]:
        """Every event named ``method`` received so far (removed from the queue)."""
        with self._cond:
            found = [m for m in self._messages if m.get("method") == method]
            self._messages = [m for m in self._messages if m.get("method") != method]
        return found

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        try:
            os.close(self._write_fd)
        except OSError:
            pass
        self._reader.join(timeout=10)
        try:
            os.close(self._read_fd)
        except OSError:
            pass
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
