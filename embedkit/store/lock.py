"""The one-writer lock: an exclusive ``flock`` on ``STORE/lock`` holding the writer's pid."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

from ..sidecar import os_error_text
from .errors import StoreError, StoreLockedError

LOCK = "lock"


def acquire_lock(store: Path, wait: float) -> int:
    """Exclusive ``flock`` on STORE/lock; waits up to ``wait`` seconds, else raises `StoreLockedError`."""
    lock = store / LOCK
    if lock.is_dir() and not lock.is_symlink():
        raise StoreError(f"{lock}: is a folder, not the store's lock file; remove it (rmdir {lock}) and rerun")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(os_error_text(lock, exc, action="cannot open the store for writing")) from None
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise StoreError(f"{lock}: cannot lock store ({exc.strerror or exc})") from None
            if time.monotonic() >= deadline:
                holder = ""
                with contextlib.suppress(OSError, ValueError):
                    holder = os.pread(fd, 64, 0).decode().strip()
                os.close(fd)
                who = f" (pid {holder})" if holder else ""
                hint = "use --wait SECONDS to wait for it" if wait <= 0 else f"waited {wait:g} s"
                raise StoreLockedError(f"{store}: store is being written by another process{who}; {hint}") from None
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)
