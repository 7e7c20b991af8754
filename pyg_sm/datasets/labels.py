r"""Slide label tables: any labels (integers or strings), classes, patients,
and survival times."""
import dataclasses
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from ..utils.errors import PygSmError
from ..utils.tables import read_table


@dataclasses.dataclass
class LabelTable:
    r"""What a labels CSV says of each slide.

    Attributes:
        labels (dict): Slide id to its label, as written (text); for a
            survival table its event indicator (``'0'`` or ``'1'``), the
            stratum of its splits.
        case_ids (dict, optional): Slide id to its patient, when the CSV
            has a ``case_id`` column.
        times (dict, optional): Survival tables: slide id to its time.
        events (dict, optional): Survival tables: slide id to its event
            indicator (1: observed, 0: censored).
    """
    labels: Dict[str, str]
    case_ids: Optional[Dict[str, str]] = None
    times: Optional[Dict[str, float]] = None
    events: Optional[Dict[str, int]] = None

    def renamed(self, names: Dict[str, str]) -> 'LabelTable':
        r"""The table with some slide ids renamed."""
        def rename(mapping):
            return None if mapping is None else {
                names.get(k, k): v for k, v in mapping.items()}
        return LabelTable(rename(self.labels), rename(self.case_ids),
                          rename(self.times), rename(self.events))


def _slide_rows(path: Union[str, Path], required: Sequence[str],
                cases: Dict[str, str]):
    r"""``(line, slide_id, row)`` of a labels file with the columns
    :obj:`required` (besides ``slide_id``): no empty or repeated slide id,
    no empty ``case_id`` (collected into :obj:`cases`), at least one
    slide."""
    seen = set()
    for line, row in read_table(path, ('slide_id', *required),
                                'labels file'):
        slide_id = row['slide_id']
        if not slide_id:
            raise PygSmError(f"{path}, line {line}: empty slide_id")
        if slide_id in seen:
            raise PygSmError(f"slide '{slide_id}' appears twice in {path}")
        seen.add(slide_id)
        if 'case_id' in row:
            if not row['case_id']:
                raise PygSmError(f"slide '{slide_id}': empty case_id in "
                                 f"{path}, line {line}")
            cases[slide_id] = row['case_id']
        yield line, slide_id, row
    if not seen:
        raise PygSmError(f"{path} lists no slides")


def read_labels(path: Union[str, Path]) -> LabelTable:
    r"""Reads a CSV with the columns ``slide_id`` and ``label`` (any
    others are ignored; ``case_id``, when present, names each slide's
    patient). A UTF-8 byte-order mark, as Excel writes it, is skipped; cells
    are stripped of surrounding spaces."""
    labels: Dict[str, str] = {}
    cases: Dict[str, str] = {}
    for line, slide_id, row in _slide_rows(path, ('label', ), cases):
        if not row['label']:
            raise PygSmError(f"slide '{slide_id}': empty label in {path}, "
                             f"line {line}")
        labels[slide_id] = row['label']
    return LabelTable(labels, cases or None)


def _column_value(path, line: int, slide_id: str, column: str,
                  text: str, flag: str) -> float:
    where = f"slide '{slide_id}': column '{column}' ({flag}) of {path}, " \
            f"line {line}"
    if not text:
        raise PygSmError(f"{where} is empty")
    try:
        value = float(text)
    except ValueError:
        raise PygSmError(f"{where} is not a number ({text!r})") from None
    return value


def read_survival(path: Union[str, Path], time_column: str = 'time',
                  event_column: str = 'event') -> LabelTable:
    r"""Reads a survival table: a CSV with ``slide_id``, a time column and
    an event column (1: the event was observed at that time, 0: censored
    then), and optionally ``case_id``. Times are in any unit, finite and
    non-negative; the slides of one patient must share their time and
    event. Each error names the slide (or patient), the column and the
    line."""
    times: Dict[str, float] = {}
    events: Dict[str, int] = {}
    cases: Dict[str, str] = {}
    for line, slide_id, row in _slide_rows(path, (), cases):
        for column, flag in ((time_column, '--time-column'),
                             (event_column, '--event-column')):
            if column not in row:
                raise PygSmError(
                    f"{path} has no column '{column}' ({flag}); its "
                    f"columns are {[c for c in row]}")
        time = _column_value(path, line, slide_id, time_column,
                             row[time_column], '--time-column')
        if not math.isfinite(time) or time < 0:
            raise PygSmError(f"slide '{slide_id}': column '{time_column}' "
                             f"(--time-column) of {path}, line {line} must "
                             f"be a finite time of at least 0 (got "
                             f"{row[time_column]!r})")
        event = _column_value(path, line, slide_id, event_column,
                              row[event_column], '--event-column')
        if event not in (0, 1):
            raise PygSmError(f"slide '{slide_id}': column '{event_column}' "
                             f"(--event-column) of {path}, line {line} must "
                             f"be 1 (event observed) or 0 (censored) (got "
                             f"{row[event_column]!r})")
        times[slide_id], events[slide_id] = time, int(event)
    first: Dict[str, str] = {}
    for slide_id, case in cases.items():
        other = first.setdefault(case, slide_id)
        if (times[other], events[other]) != (times[slide_id],
                                             events[slide_id]):
            raise PygSmError(
                f"patient '{case}' has different outcomes on its slides: "
                f"'{other}' ({time_column} {times[other]:g}, {event_column} "
                f"{events[other]}) and '{slide_id}' ({time_column} "
                f"{times[slide_id]:g}, {event_column} {events[slide_id]}) "
                f"in {path}; a patient's time and event are one")
    return LabelTable({s: str(e) for s, e in events.items()}, cases or None,
                      times, events)


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def class_names(labels: Union[Sequence[str], Mapping[str, str]],
                classes: Optional[Sequence[str]] = None) -> List[str]:
    r"""The classes of :obj:`labels` (a slide-to-label mapping, or the
    labels): :obj:`classes` in the order given (every label must be one of
    them), else the sorted distinct labels (by value when all are integers:
    ``2`` before ``10``). Labels that differ only in case (``LUAD`` and
    ``luad``) are an error naming the spellings and their slides, unless
    :obj:`classes` lists them all: they are a typo far more often than two
    classes."""
    by_slide = labels if isinstance(labels, Mapping) else None
    found = set(labels.values() if by_slide is not None else labels)
    if classes is not None:
        classes = [str(c).strip() for c in classes]
        if len(set(classes)) != len(classes):
            raise PygSmError(f"the classes {classes} name a class twice")
        unknown = sorted(found - set(classes))
        if unknown:
            raise PygSmError(f"labels {unknown} are not among the classes "
                             f"{classes}")
        return classes
    spellings: Dict[str, List[str]] = {}
    for label in sorted(found):
        spellings.setdefault(label.casefold(), []).append(label)
    clashes = [names for names in spellings.values() if len(names) > 1]
    if clashes:
        described = []
        for names in clashes:
            for name in names:
                slides = [] if by_slide is None else sorted(
                    k for k, v in by_slide.items() if v == name)
                described.append(f"'{name}'" + (
                    f" ({len(slides)} slide(s): {', '.join(slides[:3])}"
                    f"{', ...' if len(slides) > 3 else ''})" if slides
                    else ''))
        raise PygSmError(
            f"labels that differ only in case: {'; '.join(described)}. "
            f"Correct the labels file, or pass --classes listing every "
            f"spelling if they are distinct classes")
    if all(_is_int(label) for label in found):
        return sorted(found, key=int)
    return sorted(found)
