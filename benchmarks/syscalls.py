"""Counting the system calls a running process makes over a window, with `strace -c`.

`bench_single_node.py` attaches ``strace -f -c -p PID`` to the rimio server (and to
`durable_writer.py`, the baseline) just before a fixed number of PUTs and detaches
right after them, so the summary strace prints on detach holds the calls of that
window only: no start-up, no other phase. All system calls are counted (no ``-e``
filter): the total per PUT is the figure that shows what a request costs the
kernel, and the fsync family is picked out of the same summary.

strace is optional. When it is missing, or cannot attach (for example under
``kernel.yama.ptrace_scope`` ≥ 1, where only an ancestor may trace a process), the
body of the window still runs, untraced, and `SyscallWindow.result` is a one-line
reason that the report prints in place of the figures.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ATTACH_TIMEOUT_S = 10.0
DETACH_TIMEOUT_S = 30.0
# The fsync family: what makes a write durable, and what costs a disk flush.
SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "syncfs")
# Calls on files and directories, the storage work proper; what is left of the total
# is mostly the event loop (epoll), sockets and hand-offs to worker threads (futex),
# and the futex count grows when strace slows the threads down.
FILE_CALLS = (
    "open", "openat", "openat2", "creat", "close", "read", "pread64", "readv", "preadv",
    "write", "pwrite64", "writev", "pwritev", "lseek", "fstat", "newfstatat", "stat",
    "lstat", "statx", "access", "faccessat", "faccessat2", "rename", "renameat",
    "renameat2", "link", "linkat", "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir",
    "getdents64", "ftruncate", "fallocate", "fcntl", "flock", *SYNC_CALLS,
)


class StraceUnavailable(Exception):
    """strace is not installed or cannot attach or summarise; the message says which."""


def strace_path() -> str | None:
    found = shutil.which("strace")
    if found:
        return found
    return "/usr/bin/strace" if os.access("/usr/bin/strace", os.X_OK) else None


@dataclass(frozen=True)
class SyscallCounts:
    """Calls per system call name over one window, and the operations it covered."""

    calls: dict[str, int]
    ops: int

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def of(self, *names: str) -> int:
        return sum(self.calls.get(n, 0) for n in names)

    def per_op(self, count: int) -> float:
        return count / self.ops if self.ops else float("nan")

    @property
    def syncs_per_op(self) -> float:
        return self.per_op(self.of(*SYNC_CALLS))

    @property
    def file_calls_per_op(self) -> float:
        return self.per_op(self.of(*FILE_CALLS))

    @property
    def total_per_op(self) -> float:
        return self.per_op(self.total)

    def top(self, n: int) -> list[tuple[str, float]]:
        """The `n` most frequent calls, as (name, calls per operation)."""
        ranked = sorted(self.calls.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [(name, self.per_op(c)) for name, c in ranked]


def parse_summary(text: str) -> dict[str, int]:
    """The calls column of a `strace -c` summary, by syscall name (the total line dropped)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(fields) < 5 or fields[-1] == "total" or not fields[3].isdigit():
            continue
        calls[fields[-1]] = calls.get(fields[-1], 0) + int(fields[3])
    return calls


@dataclass
class SyscallWindow:
    """``with SyscallWindow(pid, ops) as w: ...`` then ``w.result``: calls made inside.

    Attaches to every thread of `pid` (``-f``; threads started inside the window are
    followed too) and waits for strace to report the attachment before the body runs.
    The body runs whether or not strace could attach; `result` is then the reason.
    """

    pid: int
    ops: int
    result: SyscallCounts | str = "not measured"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _dir: Path | None = field(default=None, repr=False)

    def __enter__(self) -> SyscallWindow:
        try:
            self._attach()
        except StraceUnavailable as exc:
            self._stop()
            self._cleanup()
            self.result = str(exc)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is None:
            return  # never attached: `result` already says why
        try:
            self._stop()
            summary = None if self._dir is None else self._dir / "summary.txt"
            if summary is None or not summary.exists():
                self.result = "strace wrote no summary"
            else:
                self.result = SyscallCounts(parse_summary(summary.read_text()), self.ops)
        finally:
            self._cleanup()

    def _attach(self) -> None:
        strace = strace_path()
        if strace is None:
            raise StraceUnavailable("strace not available")
        self._dir = Path(tempfile.mkdtemp(prefix="strace-"))
        out, err = self._dir / "summary.txt", self._dir / "stderr.txt"
        with open(err, "wb") as err_file:
            self._proc = subprocess.Popen(
                [strace, "-f", "-c", "-o", str(out), "-p", str(self.pid)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_file)
        deadline = time.monotonic() + ATTACH_TIMEOUT_S
        while time.monotonic() < deadline:
            text = err.read_text(errors="replace")
            if "attached" in text:
                return
            if self._proc.poll() is not None:
                first = text.strip().splitlines()[:1]
                self._proc = None
                raise StraceUnavailable(
                    "strace could not attach" + (f": {first[0]}" if first else ""))
            time.sleep(0.02)
        raise StraceUnavailable(f"strace did not attach within {ATTACH_TIMEOUT_S:.0f} s")

    def _stop(self) -> None:
        # SIGINT makes strace detach from every thread and write its summary.
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=DETACH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _cleanup(self) -> None:
        if self._dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._dir)
            self._dir = None
