r"""Slide label tables: any labels (integers or strings), classes, patients,
and survival times."""
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..utils.errors import PygSmError
from ..utils.tables import read_table
from ..utils.text import few, plural
from .slide_images import SLIDE_EXTENSIONS


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
        missing_outcomes (list): Survival tables: the slides left out
            because their row has no time or no event.
    """
    labels: Dict[str, str]
    case_ids: Optional[Dict[str, str]] = None
    times: Optional[Dict[str, float]] = None
    events: Optional[Dict[str, int]] = None
    missing_outcomes: List[str] = dataclasses.field(default_factory=list)

    def renamed(self, names: Dict[str, str]) -> 'LabelTable':
        r"""The table with some slide ids renamed."""
        def rename(mapping):
            return None if mapping is None else {
                names.get(k, k): v for k, v in mapping.items()}
        return LabelTable(rename(self.labels), rename(self.case_ids),
                          rename(self.times), rename(self.events),
                          [names.get(s, s) for s in self.missing_outcomes])


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


#: ``missing_outcomes`` choices of :func:`read_survival`.
MISSING_OUTCOMES = ('error', 'skip')
#: Cells that mean "not known" in survival tables (casefolded): empty,
#: R's and pandas' NA, and the GDC's ``'--``.
MISSING_VALUES = ('', 'na', 'nan', 'n/a', 'null', 'none', '--', "'--")


def says_censored(column: str) -> bool:
    r"""Whether a column's name says it holds censoring (1 = censored), as
    ``censorship`` does in Patch-GCN, MCAT, SurvPath and PORPOISE tables."""
    return 'censor' in column.casefold()


def check_event_columns(event_column: Optional[str],
                        censorship_column: Optional[str]) -> None:
    r"""One of an event column and a censorship column, and not a
    censorship column given as the event column (which would invert every
    outcome)."""
    if event_column is not None and censorship_column is not None:
        raise PygSmError(f"give the event column (--event-column "
                         f"{event_column}) or the censorship column "
                         f"(--censorship-column {censorship_column}), not "
                         f"both")
    if event_column is not None and says_censored(event_column):
        raise PygSmError(
            f"--event-column {event_column}: a column named "
            f"'{event_column}' holds 1 for a censored patient (Patch-GCN, "
            f"MCAT and SurvPath tables), the opposite of an event; pass "
            f"--censorship-column {event_column}")


@dataclasses.dataclass(frozen=True)
class OutcomeColumns:
    r"""The columns of a survival table: the time, and the event (1:
    observed) or the censorship (1: censored) column.

    Args:
        time (str): The time column. (default: :obj:`"time"`)
        event (str, optional): The event column; :obj:`None` with
            :obj:`censorship`. (default: :obj:`"event"` without
            :obj:`censorship`)
        censorship (str, optional): The censorship column, read as
            ``event = 1 - censorship``. (default: :obj:`None`)
    """
    time: str = 'time'
    event: Optional[str] = None
    censorship: Optional[str] = None

    def __post_init__(self):
        check_event_columns(self.event, self.censorship)
        if self.event is None and self.censorship is None:
            object.__setattr__(self, 'event', 'event')

    @property
    def status(self) -> Tuple[str, str]:
        r"""The status column and its flag."""
        return (self.event, '--event-column') if self.censorship is None \
            else (self.censorship, '--censorship-column')

    def event_of(self, value: float) -> int:
        return int(value) if self.censorship is None else 1 - int(value)


def read_survival(path: Union[str, Path], time_column: str = 'time',
                  event_column: Optional[str] = None,
                  censorship_column: Optional[str] = None,
                  missing_outcomes: str = 'error') -> LabelTable:
    r"""Reads a survival table: a CSV with ``slide_id``, a time column and
    an event column (1: the event was observed at that time, 0: censored
    then) or a censorship column (1: censored, 0: observed; the
    ``censorship`` of Patch-GCN, MCAT, SurvPath and PORPOISE tables), and
    optionally ``case_id``. Times are in any unit, finite and
    non-negative; the slides of one patient must share their time and
    event. Rows whose time or status is missing (empty, ``NA``, ...) are an
    error listing them all, or with :obj:`missing_outcomes` ``"skip"`` left
    out (:attr:`LabelTable.missing_outcomes`). Each error names the slide
    (or patient), the column and the line."""
    columns = OutcomeColumns(time_column, event_column, censorship_column)
    status, status_flag = columns.status
    if missing_outcomes not in MISSING_OUTCOMES:
        raise PygSmError(f"'missing_outcomes' (--missing-outcomes) must be "
                         f"one of {list(MISSING_OUTCOMES)} (got "
                         f"{missing_outcomes!r})")
    times: Dict[str, float] = {}
    events: Dict[str, int] = {}
    cases: Dict[str, str] = {}
    missing: List[str] = []
    for line, slide_id, row in _slide_rows(path, (), cases):
        for column, flag in ((columns.time, '--time-column'),
                             (status, status_flag)):
            if column not in row:
                raise PygSmError(
                    f"{path} has no column '{column}' ({flag}); its "
                    f"columns are {[c for c in row if c]}")
        if row[columns.time].casefold() in MISSING_VALUES or \
                row[status].casefold() in MISSING_VALUES:
            missing.append(f'{slide_id} (line {line})')
            continue
        time = _column_value(path, line, slide_id, columns.time,
                             row[columns.time], '--time-column')
        if not math.isfinite(time) or time < 0:
            raise PygSmError(f"slide '{slide_id}': column '{columns.time}' "
                             f"(--time-column) of {path}, line {line} must "
                             f"be a finite time of at least 0 (got "
                             f"{row[columns.time]!r})")
        value = _column_value(path, line, slide_id, status, row[status],
                              status_flag)
        if value not in (0, 1):
            meaning = '1 (event observed) or 0 (censored)' if \
                columns.censorship is None else \
                '1 (censored) or 0 (event observed)'
            raise PygSmError(f"slide '{slide_id}': column '{status}' "
                             f"({status_flag}) of {path}, line {line} must "
                             f"be {meaning} (got {row[status]!r})")
        times[slide_id], events[slide_id] = time, columns.event_of(value)
    if missing and missing_outcomes == 'error':
        raise PygSmError(
            f"{len(missing)} row(s) of {path} have no {columns.time} or "
            f"{status}: {few(missing)}; --missing-outcomes skip leaves "
            f"them out")
    first: Dict[str, str] = {}
    for slide_id, case in cases.items():
        if slide_id not in times:
            continue
        other = first.setdefault(case, slide_id)
        if (times[other], events[other]) != (times[slide_id],
                                             events[slide_id]):
            raise PygSmError(
                f"patient '{case}' has different outcomes on its slides: "
                f"'{other}' ({columns.time} {times[other]:g}, event "
                f"{events[other]}) and '{slide_id}' ({columns.time} "
                f"{times[slide_id]:g}, event {events[slide_id]}) "
                f"in {path}; a patient's time and event are one")
    if not times:
        raise PygSmError(f"no row of {path} has a {columns.time} and a "
                         f"{status}")
    skipped = [entry.split(' (line')[0] for entry in missing]
    return LabelTable({s: str(e) for s, e in events.items()},
                      {s: c for s, c in cases.items() if s in times} or None,
                      times, events, missing_outcomes=skipped)


#: ``split_by`` value that reads the tissue source site from TCGA barcodes
#: when the labels file has no such column.
TSS = 'tss'
_TCGA_BARCODE = re.compile(r'TCGA-([A-Za-z0-9]{2})-')


def read_groups(path: Union[str, Path], column: str,
                slide_ids: Sequence[str],
                case_ids: Optional[Sequence[str]] = None) -> List[str]:
    r"""Each slide's value of :obj:`column` in the labels file
    :obj:`path` (the groups of a split: a site, a batch, a centre), in the
    order of :obj:`slide_ids` (ids listed with a slide extension, ``a.svs``,
    name slide ``a``). With :obj:`column` ``"tss"`` and no such column, the
    tissue source site of each TCGA barcode (``TCGA-XX-...``: ``XX``), of
    the case id when there is one, else of the slide id. Errors name the
    slides and the line."""
    rows: Dict[str, Tuple[int, Dict[str, str]]] = {}
    columns: List[str] = []
    for line, row in read_table(path, ('slide_id', ), 'labels file'):
        columns = list(row)
        rows[row['slide_id']] = (line, row)
        stem, extension = os.path.splitext(row['slide_id'])
        if extension.lower() in SLIDE_EXTENSIONS:  # as the dataset reads it
            rows.setdefault(stem, (line, row))
    if column not in columns and column.casefold() != TSS:
        raise PygSmError(f"{path} has no column '{column}' (--split-by); "
                         f"its columns are {[c for c in columns if c]}")
    groups, bad = [], []
    for i, slide_id in enumerate(slide_ids):
        if column in columns:
            line, row = rows[slide_id]
            value = row[column]
            if not value:
                raise PygSmError(f"slide '{slide_id}': column '{column}' "
                                 f"(--split-by) of {path}, line {line} is "
                                 f"empty")
        else:
            barcode = case_ids[i] if case_ids is not None else slide_id
            match = _TCGA_BARCODE.match(barcode)
            if match is None:
                bad.append(barcode)
                continue
            value = match[1].upper()
        groups.append(value)
    if bad:
        raise PygSmError(f"--split-by {column}: {path} has no column "
                         f"'{column}' and {plural(len(bad), 'id')} are not "
                         f"TCGA barcodes (TCGA-XX-...) to read the site "
                         f"from: {few(bad)}")
    return groups


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
