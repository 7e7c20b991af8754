"""Writes tests/data/legacy_0.1.0_*: run it against pyg-sm 0.1.0 (commit
fc867bc, the flat layout), e.g. PYTHONPATH=<old checkout> python THIS DIR."""
import sys

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import grid, remove_self_loops
import pyg_sm
assert pyg_sm.SmABMIL.__module__ == 'pyg_sm.abmil', pyg_sm.SmABMIL.__module__
from pyg_sm.training import build_model, save_checkpoint

out = sys.argv[1]
torch.manual_seed(0)
options = dict(att_dim=8, sm_layers=1, sm_post=True, sm_alpha=0.3,
               sm_spectral_norm=True)
model = build_model(5, **options)
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.01 * torch.randn_like(p))
model.eval()
gen = torch.Generator().manual_seed(1)
bags = []
for side in (5, 6):
    edge_index, _ = remove_self_loops(grid(side, side)[0])
    bags.append(Data(x=torch.randn(side * side, 5, generator=gen), edge_index=edge_index))
batch = Batch.from_data_list(bags)
with torch.no_grad():
    logits, att = model(batch, return_att=True)
save_checkpoint(f'{out}/legacy_0.1.0_checkpoint.pt', model, 5, options,
                dict(method='grid', connectivity=4, patch_size=None, radius=None))
torch.save(model, f'{out}/legacy_0.1.0_whole_model.pt')
torch.save({'x': batch.x, 'edge_index': batch.edge_index, 'batch': batch.batch,
            'logits': logits, 'attention': att}, f'{out}/legacy_0.1.0_outputs.pt')
print('written', logits)
