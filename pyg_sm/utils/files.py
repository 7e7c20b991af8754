r"""Files written whole or not at all."""
import contextlib
import os
from pathlib import Path
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    r"""Yields a temporary path beside :obj:`path` to write to; on success it
    replaces :obj:`path` in one rename, so that a crash never leaves a
    half-written file there, and on failure it is removed."""
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
