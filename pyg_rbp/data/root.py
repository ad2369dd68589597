"""Where datasets live: one data root, read-only roots copied to a cache.

A data root holds the layout PyG's datasets use below a common folder::

    <root>/Planetoid/Cora/raw/ind.cora.x ...
    <root>/ogb/ogbn_arxiv/raw/edge.csv.gz ...

It is chosen, first match wins, from the ``data_root`` argument, the
environment variable ``PYG_RBP_DATA_ROOT``, then a user cache folder
(``$XDG_CACHE_HOME/pyg_rbp`` or ``~/.cache/pyg_rbp``). PyG writes
``processed/`` beside ``raw/``, so a dataset found under a read-only root is
copied to the cache first.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, TypeVar, Union

ENV_VAR = "PYG_RBP_DATA_ROOT"

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing and could not be downloaded."""


def cache_root() -> Path:
    """The user cache folder for data: ``$XDG_CACHE_HOME/pyg_rbp``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return Path(base) / "pyg_rbp"


def resolve_data_root(data_root: Optional[PathLike] = None) -> Path:
    """The data root: the argument, else ``$PYG_RBP_DATA_ROOT``, else cache."""
    if data_root is not None:
        return Path(data_root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return cache_root()


def _writable(path: Path) -> bool:
    """Whether we may write below ``path``.

    A folder without write bits counts as read-only even for root (who could
    write anyway): that is how a shared, read-only data folder is marked.
    """
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    if not probe.stat().st_mode & 0o222 or not os.access(probe, os.W_OK):
        return False
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".pyg_rbp_probe_")
    except OSError:  # e.g. a read-only mount
        return False
    os.close(fd)
    os.unlink(name)
    return True


def writable_dataset_dir(root: Path, relative: str) -> Path:
    """Return ``root / relative``, or a cache copy of it if ``root`` is
    read-only (the copy keeps the same relative layout)."""
    source = root / relative
    # Judge the dataset folder by its raw files' folder when present: that
    # is where PyG writes (processed/ beside raw/).
    if _writable(source if source.exists() else root):
        return source
    target = cache_root() / relative
    if source.exists() and not (target / "raw").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target, dirs_exist_ok=True)
        for path in [target, *target.rglob("*")]:  # copies keep the modes
            path.chmod(path.stat().st_mode | 0o200)
    return target


def _first_missing(path: Path) -> Optional[Path]:
    """The topmost folder on the way to ``path`` that does not exist yet
    (``None`` if ``path`` exists)."""
    if path.exists():
        return None
    top = path
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


def missing_files(folder: Path, names: Sequence[str]) -> list:
    """The names in ``names`` that are not files in ``folder``."""
    return [n for n in names if not (folder / n).is_file()]


def not_found_message(dataset: str, folder: Path, missing: Sequence[str],
                      reason: str) -> str:
    """One message that says what is missing and how to point at it."""
    listed = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
    return (f"{dataset}: {len(missing)} raw file(s) missing in {folder}: "
            f"{listed}. {reason} Put the files there, or point the data root "
            f"at a folder that has them with --data-root DIR (examples), "
            f"data_root=DIR (Python) or the environment variable {ENV_VAR}.")


def open_dataset(name: str, raw_dir: Path, missing: Sequence[str],
                 download: bool, build: Callable[[], T]) -> T:
    """Run ``build()`` (which may download), turning a failure to get the
    ``missing`` raw files into one :class:`DatasetNotFoundError`."""
    if missing and not download:
        raise DatasetNotFoundError(not_found_message(
            name, raw_dir, missing, "Downloading is switched off."))
    created = _first_missing(raw_dir)
    try:
        with download_timeout():
            return build()
    except Exception as exc:  # network errors come in many types
        if not missing:
            raise
        # a mistyped root leaves nothing behind: the folders the failed
        # download made (and no file in them) go again
        if created is not None and created.is_dir() and \
                not any(p.is_file() for p in created.rglob("*")):
            shutil.rmtree(created, ignore_errors=True)
        raise DatasetNotFoundError(not_found_message(
            name, raw_dir, missing, f"Downloading them failed "
            f"({type(exc).__name__}: {exc}).")) from None


@contextmanager
def download_timeout(seconds: float = 30.0) -> Iterator[None]:
    """Bound how long a download may hang without an answer."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)
