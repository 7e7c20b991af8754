"""
Converting a torchmil model
===========================

:func:`pyg_sm.from_torchmil` turns torchmil's ``Sm``, ``SmAttentionPool``,
``SmABMIL`` or ``SmTransformerABMIL`` (torchmil 0.1.0 or 1.0.x) into the
pyg-sm module that computes the same: in eval mode the same outputs on the
same bags, in torchmil's dense form and in the graph form of the same bags.
pyg-sm never imports torchmil; it reads the module's attributes and weights.

This example builds a torchmil 1.0.x SmABMIL (``make docs`` puts torchmil
1.0.2 on the path, as ``make test`` installs it), converts it and compares
the two on a padded batch of two bags.
"""
import torch
from torch_geometric.utils import grid, remove_self_loops, to_dense_adj
from torchmil.models import SmABMIL as TorchmilSmABMIL

from pyg_sm import dense_to_batch, from_torchmil

torch.manual_seed(0)
theirs = TorchmilSmABMIL(in_shape=(16, ), att_dim=32, sm_where='late',
                         sm_alpha=0.3).eval()
ours = from_torchmil(theirs).eval()
print(ours)

# %%
# Two bags of 12 and 20 patches on grids, padded to 20: torchmil's form
# ``X (B, N, D)``, ``adj (B, N, N)`` (the normalized adjacency, as torchmil
# takes it) and ``mask (B, N)``.
X = torch.zeros(2, 20, 16)
adj = torch.zeros(2, 20, 20)
mask = torch.zeros(2, 20, dtype=torch.bool)
for b, (h, w) in enumerate([(3, 4), (4, 5)]):
    edge_index, _ = remove_self_loops(grid(h, w)[0])
    A = to_dense_adj(edge_index, max_num_nodes=h * w)[0]
    degree = A.sum(1).clamp_min(1).rsqrt()
    adj[b, :h * w, :h * w] = degree[:, None] * A * degree[None, :]
    X[b, :h * w] = torch.randn(h * w, 16)
    mask[b, :h * w] = True

with torch.no_grad():
    expected, expected_att = theirs(X, adj, mask, return_att=True)
    logits, att = ours(X, adj, mask, return_att=True)
    graph_logits, graph_att = ours(dense_to_batch(X, adj, mask),
                                   return_att=True)
print('torchmil logits', expected.tolist())
print('pyg-sm logits  ', logits.tolist())
print('largest difference, dense form:',
      float((logits - expected).abs().max()),
      float((att[mask] - expected_att[mask]).abs().max()))
print('largest difference, graph form:',
      float((graph_logits - expected).abs().max()),
      float((graph_att - expected_att[mask]).abs().max()))
assert torch.allclose(graph_logits, expected, atol=1e-5)
