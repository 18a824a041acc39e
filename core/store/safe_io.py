"""File primitives for the run store: crash-safe writes and reads that trust nothing on disk.

A run folder is written by trainers in several processes (and copied between machines), and read
by every viewer. So every write goes to a fresh temporary name, is fsynced, renamed over the target
and the folder fsynced too (a rename is durable only once its directory is: a power cut must not
lose a status or a checkpoint that a crash would not). Every open refuses to follow a symbolic link
(a link planted in a run folder must not redirect a write outside it) and every read refuses
anything but a regular file (a FIFO named status.json would hang each listing) and caps the size
it reads.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

# The caps: JSON files are a few kB; metrics.csv gains ~100 bytes an epoch.
MAX_JSON_BYTES = 1 << 20
MAX_CSV_BYTES = 64 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnsafeFileError(OSError):
    """A run file that is a link, not a regular file, or larger than it can be."""


def disk_words(exc: OSError) -> str:
    """An OSError in words a user can act on ("disk full", "read-only"), not an errno."""
    reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.ENOENT: "the folder is gone", errno.ELOOP: "a symbolic link was refused"}
    return reasons.get(exc.errno, exc.strerror or str(exc))


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass   # some file systems cannot fsync a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def temporary_name(target: Path, suffix: str = "") -> Path:
    """A fresh hidden name beside `target`: writers in other threads or processes never share one."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replaces `path` with `data`: all of it or none of it, durable once this returns."""
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def replace_durably(tmp: Path, target: Path) -> None:
    """Renames a finished temporary file over `target`, fsyncing the file and then the folder."""
    fd = os.open(tmp, os.O_RDONLY | _NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def _open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    # O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer comes.
    fd = os.open(path, flags | _NOFOLLOW | os.O_NONBLOCK, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeFileError(errno.EINVAL, f"{path.name} is not a regular file")
    return fd


def read_bytes(path: Path, limit: int = MAX_JSON_BYTES) -> bytes:
    """The file's bytes; refuses links, non-regular files and files over `limit` bytes."""
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(errno.ELOOP, f"{path.name} is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFileError(errno.EFBIG, f"{path.name} is larger than {limit:,} bytes")
    return data


def read_text(path: Path, limit: int = MAX_JSON_BYTES) -> str:
    return read_bytes(path, limit).decode("utf-8", errors="replace")


def append_line_durably(path: Path, data: bytes) -> None:
    """Appends to a regular file (created when missing), never through a link, and fsyncs it."""
    created = not path.exists()
    fd = _open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    if created:
        fsync_dir(path.parent)


def cut_partial_last_line(path: Path) -> None:
    """Drops a last line without its newline (a process killed mid-append), so the next append
    is not glued onto the fragment."""
    try:
        fd = _open_regular(path, os.O_RDWR)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "rb+") as fh:
        data = fh.read(MAX_CSV_BYTES + 1)
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())


def is_regular_file(path: Path) -> bool:
    """Exists as a regular file, not through a link."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def modified_time(path: Path) -> float:
    """mtime in seconds (nanosecond precision) of a regular file; 0.0 when absent or not regular."""
    try:
        info = os.lstat(path)
    except OSError:
        return 0.0
    return info.st_mtime_ns / 1e9 if stat.S_ISREG(info.st_mode) else 0.0


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
