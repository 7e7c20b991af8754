r"""Slide label tables: any labels (integers or strings), classes, patients."""
import csv
import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union


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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no labels file {path}")
    with open(path, newline='', encoding='utf-8-sig') as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if not {'slide_id', 'label'} <= set(columns):
            raise ValueError(f"{path} needs the columns 'slide_id' and "
                             f"'label' (got {reader.fieldnames})")
        reader.fieldnames = columns
        labels: Dict[str, str] = {}
        cases: Optional[Dict[str, str]] = {} if 'case_id' in columns \
            else None
        for line, row in enumerate(reader, start=2):
            slide_id = (row['slide_id'] or '').strip()
            label = (row['label'] or '').strip()
            if not slide_id:
                raise ValueError(f"{path}, line {line}: empty slide_id")
            if slide_id in labels:
                raise ValueError(f"slide '{slide_id}' appears twice in "
                                 f"{path}")
            if not label:
                raise ValueError(f"slide '{slide_id}': empty label in "
                                 f"{path}, line {line}")
            labels[slide_id] = label
            if cases is not None:
                case = (row['case_id'] or '').strip()
                if not case:
                    raise ValueError(f"slide '{slide_id}': empty case_id in "
                                     f"{path}, line {line}")
                cases[slide_id] = case
    if not labels:
        raise ValueError(f"{path} lists no slides")
    return LabelTable(labels, cases)


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def class_names(labels: Sequence[str],
                classes: Optional[Sequence[str]] = None) -> List[str]:
    r"""The classes of :obj:`labels`: :obj:`classes` in the order given
    (every label must be one of them), else the sorted distinct labels
    (by value when all are integers: ``2`` before ``10``)."""
    found = set(labels)
    if classes is not None:
        classes = [str(c).strip() for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"the classes {classes} name a class twice")
        unknown = sorted(found - set(classes))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes "
                             f"{classes}")
        return classes
    if all(_is_int(label) for label in found):
        return sorted(found, key=int)
    return sorted(found)
