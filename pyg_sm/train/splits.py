r"""Splits of a cohort that keep each patient on one side, stratified by
label where possible, and checks that say what a split is missing."""
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..utils.errors import PygSmError
from ..utils.tables import read_table
from ..utils.text import plural

#: The names a split file may use.
SPLITS = ('train', 'val', 'test')
#: What needs the events of each side of a survival split.
NEEDS_EVENTS = {'train': 'the cut points and the loss need',
                'val': 'its c-index needs', 'test': 'its c-index needs'}


def _groups(slide_ids: Sequence[str], labels: Sequence[int],
            case_ids: Optional[Sequence[str]]) -> Dict[int, List[List[str]]]:
    r"""Patients (their slides) by stratum: each patient's most common
    label. Without case ids every slide is its own patient."""
    members: Dict[str, List[str]] = {}
    for i, slide_id in enumerate(slide_ids):
        members.setdefault(case_ids[i] if case_ids else slide_id,
                           []).append(i)
    strata: Dict[int, List[List[str]]] = {}
    for indices in members.values():
        counts = Counter(labels[i] for i in indices)
        stratum = min(counts, key=lambda label: (-counts[label], label))
        strata.setdefault(stratum, []).append(
            [slide_ids[i] for i in indices])
    return dict(sorted(strata.items()))


def split_slides(slide_ids: Sequence[str], labels: Sequence[int],
                 case_ids: Optional[Sequence[str]] = None,
                 val_fraction: float = 0.25, test_fraction: float = 0.0,
                 seed: int = 0) -> Dict[str, List[str]]:
    r"""Splits the slides into ``train``, ``val`` and ``test`` by patient
    (:obj:`case_ids`; each slide alone without them), stratified by label:
    in each stratum, patients are shuffled by :obj:`seed` and taken until
    the split holds its share of the stratum's slides (at least one patient
    where the stratum has two or more, and never all of them)."""
    for name, fraction in (('val_fraction', val_fraction),
                           ('test_fraction', test_fraction)):
        if not 0 <= fraction < 1:
            raise PygSmError(f"'{name}' must be in [0, 1) (got {fraction})")
    if val_fraction + test_fraction >= 1:
        raise PygSmError("'val_fraction' + 'test_fraction' must be below 1")
    generator = torch.Generator().manual_seed(seed)
    strata = _groups(slide_ids, labels, case_ids)
    out = {name: [] for name in SPLITS}
    for stratum in strata.values():
        order = torch.randperm(len(stratum), generator=generator).tolist()
        remaining = [stratum[i] for i in order]
        total = sum(len(g) for g in stratum)
        for name, fraction in (('test', test_fraction),
                               ('val', val_fraction)):
            if fraction == 0 or len(remaining) < 2:
                continue
            wanted = max(1, round(total * fraction))
            taken = 0
            while remaining[1:] and taken < wanted:
                group = remaining.pop(0)
                out[name] += group
                taken += len(group)
        out['train'] += [s for g in remaining for s in g]
    return out


def fold_slides(slide_ids: Sequence[str], labels: Sequence[int],
                case_ids: Optional[Sequence[str]], folds: int,
                seed: int = 0) -> List[List[str]]:
    r"""Assigns the slides to :obj:`folds` folds by patient, stratified by
    label: in each stratum, shuffled patients go in turn to the fold that
    holds the fewest slides of that stratum."""
    if folds < 2:
        raise PygSmError(f"'folds' must be at least 2 (got {folds})")
    generator = torch.Generator().manual_seed(seed)
    out: List[List[str]] = [[] for _ in range(folds)]
    for stratum in _groups(slide_ids, labels, case_ids).values():
        if len(stratum) < folds:
            raise PygSmError(f"{folds}-fold cross-validation needs at least "
                             f"{folds} patients (or --split-by groups) of "
                             f"every class; one class has {len(stratum)}")
        counts = [0] * folds
        for i in torch.randperm(len(stratum), generator=generator).tolist():
            fold = min(range(folds), key=lambda k: (counts[k], k))
            out[fold] += stratum[i]
            counts[fold] += len(stratum[i])
    return out


def read_split_file(path: Union[str, Path],
                    known: Sequence[str]) -> Dict[str, List[str]]:
    r"""A CSV of ``slide_id,split`` with ``split`` in train / val / test.
    Slides of the cohort that it does not list are left out."""
    out = {name: [] for name in SPLITS}
    known = set(known)
    seen = set()
    for line, row in read_table(path, ('slide_id', 'split'), 'split file'):
        slide_id, split = row['slide_id'], row['split'].lower()
        if split not in SPLITS:
            raise PygSmError(f"{path}, line {line}: split must be one of "
                             f"{list(SPLITS)} (got {row['split']!r})")
        if slide_id not in known:
            raise PygSmError(f"{path}, line {line}: slide '{slide_id}' is "
                             f"not in the cohort")
        if slide_id in seen:
            raise PygSmError(f"slide '{slide_id}' appears twice in {path}")
        seen.add(slide_id)
        out[split].append(slide_id)
    return out


def check_split(split: Dict[str, List[str]], slide_ids: Sequence[str],
                labels: Sequence[int], classes: Sequence[str],
                case_ids: Optional[Sequence[str]] = None,
                both_classes_held_out: bool = True) -> None:
    r"""Stops with a message saying what is missing: a single class, an
    empty training or validation split, a class without training slides,
    a validation or test side of one class (with
    :obj:`both_classes_held_out`; a split file is the user's to make), or
    a patient (a group) on both sides."""
    label_of = dict(zip(slide_ids, labels))
    present = sorted(set(labels))
    if len(present) < 2:
        raise PygSmError(f"the cohort holds one class only "
                         f"({classes[present[0]]!r}, "
                         f"{plural(len(labels), 'slide')}): "
                         f"training needs slides of at least two classes")
    for name in ('train', 'val'):
        if not split[name]:
            raise PygSmError(
                f"the {name} split is empty: "
                f"{plural(len(slide_ids), 'slide')} "
                f"({_counts(labels, classes)}) are too few for it; every "
                f"class needs at least two slides (two patients with "
                f"case_id), or give --split-file")
    in_train = {label_of[s] for s in split['train']}
    missing = [classes[c] for c in present if c not in in_train]
    if missing:
        raise PygSmError(f"class(es) {missing} have no training slide")
    for name in ('val', 'test') if both_classes_held_out else ():
        held = {label_of[s] for s in split[name]}
        if len(held) == 1:
            raise PygSmError(
                f"the {name} split holds one class only "
                f"({classes[held.pop()]!r}, "
                f"{plural(len(split[name]), 'slide')}, e.g. "
                f"{', '.join(split[name][:3])}): its AUROC needs both; use "
                f"another --seed, a larger --val-fraction / "
                f"--test-fraction, coarser --split-by groups or a "
                f"--split-file")
    _check_patients(split, slide_ids, case_ids)


def _counts(labels: Sequence[int], classes: Sequence[str]) -> str:
    counts = Counter(labels)
    return ', '.join(f'{classes[c]}: {counts[c]}' for c in sorted(counts))


def check_survival_split(split: Dict[str, List[str]],
                         slide_ids: Sequence[str], events: Sequence[int],
                         case_ids: Optional[Sequence[str]] = None) -> None:
    r"""Stops with a message saying what a survival split is missing: an
    empty training or validation side, a training, validation or test side
    without an observed event (the cut points, the c-index and the
    Kaplan-Meier curves need events), or a patient on both sides."""
    event_of = dict(zip(slide_ids, events))
    if not any(events):
        raise PygSmError(f"no slide of the cohort has an observed event "
                         f"({plural(len(slide_ids), 'slide')}, all censored): "
                         f"survival "
                         f"training needs events (event = 1)")
    for name in ('train', 'val', 'test'):
        ids = split[name]
        if not ids:
            if name == 'test':
                continue
            raise PygSmError(f"the {name} split is empty: {len(slide_ids)} "
                             f"slides are too few for it, or give "
                             f"--split-file")
        if not any(event_of[s] for s in ids):
            raise PygSmError(
                f"the {name} split has no observed event ({len(ids)} "
                f"slides, all censored, e.g. {', '.join(ids[:3])}): "
                f"{NEEDS_EVENTS[name]} events; use another --seed, a "
                f"larger --val-fraction / --test-fraction or a "
                f"--split-file")
    _check_patients(split, slide_ids, case_ids)


def _check_patients(split: Dict[str, List[str]], slide_ids: Sequence[str],
                    case_ids: Optional[Sequence[str]]) -> None:
    if case_ids is None:
        return
    case_of = dict(zip(slide_ids, case_ids))
    sides: Dict[str, set] = {}
    for name, ids in split.items():
        for s in ids:
            sides.setdefault(case_of[s], set()).add(name)
    shared = sorted(c for c, s in sides.items() if len(s) > 1)
    if shared:
        raise PygSmError(f"patients (or --split-by groups) {shared[:5]} "
                         f"have slides in more than one split")
