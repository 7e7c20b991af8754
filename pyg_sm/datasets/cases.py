r"""Patients as bags: the slides of each patient merged into one graph."""
from typing import Dict, List, Optional, Sequence

import torch
from torch_geometric.data import Data

from ..utils.errors import PygSmError

#: ``bag_by`` choices: a slide per bag, or a patient (``case_id``) per bag.
BAG_BY = ('slide', 'case')


def merge_slides(slides: Sequence[Data], case_id: str) -> Data:
    r"""The disjoint union of a patient's slide graphs: their nodes one
    after the other, their edges shifted accordingly and no edge between
    two slides, so that the attention softmax of a pool runs over all of the
    patient's patches. The result has :obj:`slide_id` = :obj:`case_id`,
    :obj:`slide_part` :math:`(N,)` (the index of each node's slide in
    :obj:`slide_ids`), :obj:`slide_ids` and :obj:`patch_sizes` (each
    slide's ``patch_size_level0``, NaN when unknown), the first slide's
    :obj:`y` and the patch labels when every slide has them."""
    offsets = torch.tensor([0] + [s.num_nodes for s in slides]).cumsum(0)
    merged = Data(
        x=torch.cat([s.x for s in slides]),
        pos=torch.cat([s.pos for s in slides]),
        edge_index=torch.cat([s.edge_index + offsets[i]
                              for i, s in enumerate(slides)], dim=1),
        slide_part=torch.cat([torch.full((s.num_nodes, ), i,
                                         dtype=torch.long)
                              for i, s in enumerate(slides)]),
        slide_id=case_id, slide_ids=[s.slide_id for s in slides],
        patch_sizes=[float(s.get('patch_size_level0', float('nan')))
                     for s in slides])
    if 'y' in slides[0]:
        merged.y = slides[0].y
    if all('patch_labels' in s for s in slides):
        merged.patch_labels = torch.cat([s.patch_labels for s in slides])
    return merged


class CaseDataset(torch.utils.data.Dataset):
    r"""The slides of a :class:`~pyg_sm.SlideDataset` grouped by patient
    (its ``case_id`` column): item :math:`i` is patient :math:`i`'s slides
    as one bag (:func:`merge_slides`), in the order of first appearance.

    Its :attr:`bag_ids` are the case ids; :attr:`labels`, :attr:`times`
    and :attr:`events` are the patients' (a patient's slides share them:
    :func:`~pyg_sm.datasets.labels.read_survival` checks it, and
    classification labels that differ within a patient are an error here).

    Args:
        slides (SlideDataset): The slides, with case ids.
    """
    def __init__(self, slides):
        if slides.case_ids is None:
            raise PygSmError(f"bags by case (--bag-by case) need a case_id "
                             f"column in the labels file of {slides.root}")
        self.slides = slides
        members: Dict[str, List[int]] = {}
        for index, case in enumerate(slides.case_ids):
            members.setdefault(case, []).append(index)
        self.bag_ids: List[str] = list(members)
        self.members: List[List[int]] = list(members.values())
        self.labels: Optional[List[int]] = None
        if slides.labels is not None:
            self.labels = []
            for case, indices in members.items():
                found = {slides.labels[i] for i in indices}
                if len(found) > 1:
                    names = [slides.slide_ids[i] for i in indices]
                    raise PygSmError(f"patient '{case}' has slides of "
                                     f"different labels ({names}): one bag "
                                     f"per patient needs one label")
                self.labels.append(found.pop())
        self.times = None if slides.times is None else \
            [slides.times[m[0]] for m in self.members]
        self.events = None if slides.events is None else \
            [slides.events[m[0]] for m in self.members]

    def slide_ids_of(self, index: int) -> List[str]:
        return [self.slides.slide_ids[i] for i in self.members[index]]

    def __len__(self) -> int:
        return len(self.bag_ids)

    def __getitem__(self, index: int) -> Data:
        return merge_slides([self.slides[i] for i in self.members[index]],
                            self.bag_ids[index])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({len(self)} patients, '
                f'{len(self.slides)} slides)')
