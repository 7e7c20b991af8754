r"""Slide label tables: any labels (integers or strings), classes, patients."""
import dataclasses
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from ..utils.errors import PygSmError
from ..utils.tables import read_table


@dataclasses.dataclass
class LabelTable:
    r"""What a labels CSV says of each slide.

    Attributes:
        labels (dict): Slide id to its label, as written (text).
        case_ids (dict, optional): Slide id to its patient, when the CSV
            has a ``case_id`` column.
    """
    labels: Dict[str, str]
    case_ids: Optional[Dict[str, str]] = None


def read_labels(path: Union[str, Path]) -> LabelTable:
    r"""Reads a CSV with the columns ``slide_id`` and ``label`` (any
    others are ignored; ``case_id``, when present, names each slide's
    patient). A UTF-8 byte-order mark, as Excel writes it, is skipped; cells
    are stripped of surrounding spaces."""
    labels: Dict[str, str] = {}
    cases: Dict[str, str] = {}
    for line, row in read_table(path, ('slide_id', 'label'), 'labels file'):
        slide_id, label = row['slide_id'], row['label']
        if not slide_id:
            raise PygSmError(f"{path}, line {line}: empty slide_id")
        if slide_id in labels:
            raise PygSmError(f"slide '{slide_id}' appears twice in {path}")
        if not label:
            raise PygSmError(f"slide '{slide_id}': empty label in {path}, "
                             f"line {line}")
        labels[slide_id] = label
        if 'case_id' in row:
            if not row['case_id']:
                raise PygSmError(f"slide '{slide_id}': empty case_id in "
                                 f"{path}, line {line}")
            cases[slide_id] = row['case_id']
    if not labels:
        raise PygSmError(f"{path} lists no slides")
    return LabelTable(labels, cases or None)


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
