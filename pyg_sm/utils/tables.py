r"""CSV tables as spreadsheets write them."""
import csv
import io
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

from .errors import MissingFileError, PygSmError


def read_table(path: Union[str, Path], required: Sequence[str],
               what: str, text: Optional[str] = None
               ) -> Iterator[Tuple[int, Dict[str, str]]]:
    r"""Yields ``(line number, row)`` of a CSV with at least the columns
    :obj:`required` (others are kept), each cell stripped of surrounding
    spaces; a UTF-8 byte-order mark (Excel) is skipped. :obj:`what` names
    the file in errors ("labels file"). :obj:`text`, when given, is the
    file's content, already read (from a pipe, which reads once)."""
    path = Path(path)
    if text is None and not path.is_file():
        raise MissingFileError(f"no {what} {path}")
    with (io.StringIO(text, newline='') if text is not None else
          open(path, newline='', encoding='utf-8-sig')) as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if not set(required) <= set(columns):
            raise PygSmError(f"{path} needs the columns "
                             f"{' and '.join(repr(c) for c in required)} (got "
                             f"{reader.fieldnames})")
        reader.fieldnames = columns
        for line, row in enumerate(reader, start=2):
            yield line, {key: (value or '').strip()
                         for key, value in row.items() if key is not None}
