"""Atomic writes: a file or folder appears complete under its name, or not at all.

Every writer of locseg (checkpoints, ``segment``'s ``.npz``, datasets, unpacked archives) goes
through :func:`atomic_file`, so an error or a Ctrl-C never leaves a half-written output behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | Path, replace_directory: bool = False) -> Iterator[Path]:
    """Write ``path`` atomically: the body writes a temporary path, renamed to ``path`` at the end.

    The yielded path has the same name as ``path``, inside a fresh hidden folder beside it
    (``.NAME.tmp-XXXX/NAME``), so the rename never crosses a file system. The body creates a file or
    a folder there; that hidden folder is private to this write, so the body may also keep scratch
    files in it (``tmp.parent``). If the body raises (or is interrupted with Ctrl-C), or creates
    nothing, ``path`` is left as it was; the hidden folder is removed in every case.

    Args:
        path: the file or folder to write; its parent folder must exist.
        replace_directory: replace an existing folder at ``path`` (moved aside, then deleted, once
            the new one is in place). Without it an existing file is replaced, a folder is not.

    Yields:
        the temporary path to write to.

    Raises:
        OSError: the parent folder is not writable, or ``path`` is a folder (without
            ``replace_directory``).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with atomic_file(folder / "out.txt") as tmp:
        ...     _ = tmp.write_text("done")
        >>> sorted(p.name for p in folder.iterdir()), (folder / "out.txt").read_text()
        (['out.txt'], 'done')
        >>> shutil.rmtree(folder)
    """
    path = Path(path)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    tmp = scratch / path.name
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(f"nothing was written for {path}")
        if replace_directory and path.is_dir():
            old = scratch / f"{path.name}.old"
            os.replace(path, old)  # both renames stay inside path.parent's file system
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the old folder back before the scratch folder goes
                raise
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
