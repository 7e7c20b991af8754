"""Bad input anywhere in the public API: a ValueError or TypeError naming
the argument and what was expected, never a crash, a hang, a silent
broadcast or a NaN."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from pyg_sm import (
    ProbSmoothABMIL,
    PygSmError,
    Sm,
    SmABMIL,
    SmAttentionPool,
    SmoothABMIL,
    SmTransformerABMIL,
    batch_to_dense,
    dense_to_batch,
    from_torchmil_state_dict,
    patch_grid_graph,
    patch_radius_graph,
)
from pyg_sm.data import prepare_adjacency
from pyg_sm.datasets.labels import class_names
from pyg_sm.train import resolve_device

X = torch.randn(2, 4, 3)
ADJ = torch.zeros(2, 4, 4)
EDGES = torch.tensor([[0, 1, 2], [1, 2, 0]])
x = torch.randn(4, 3)
model = SmABMIL((3, ), att_dim=4)
pool = SmAttentionPool(3, att_dim=4)
layer = Sm(0.5)
bag = Data(x=x, edge_index=EDGES, y=torch.tensor([1.0]))

def transformer(**kwargs):
    return SmTransformerABMIL((3, ), **{'transf_att_dim': 4,
                                        'transf_n_heads': 2, **kwargs})


CASES = [
    # (what, call, error, words the message must contain)
    ('transformer: heads do not divide att_dim',
     lambda: transformer(transf_n_heads=3), ValueError, 'n_heads'),
    ('transformer: dropout 1', lambda: transformer(transf_dropout=1.0),
     ValueError, 'dropout'),
    ('transformer: dropout string', lambda: transformer(transf_dropout='x'),
     TypeError, 'dropout'),
    ('transformer: 0 layers', lambda: transformer(transf_n_layers=0),
     ValueError, 'n_layers'),
    ('transformer: add_self, 2 layers, A != D',
     lambda: transformer(transf_n_layers=2), ValueError, 'add_self'),
    ('transformer: unknown sm mode', lambda: transformer(
        transf_sm_mode='fast'), ValueError, 'sm_mode'),
    ('transformer: alpha 2', lambda: transformer(transf_sm_alpha=2.0),
     ValueError, 'alpha'),
    ('transformer: wrong feature size', lambda: transformer()(
        torch.randn(4, 5), EDGES), ValueError, 'in_dim=3'),
    ('sm_where unknown', lambda: SmABMIL((3, ), sm_where='middle'),
     ValueError, 'sm_where'),
    ('spectral_norm not a bool', lambda: SmABMIL((3, ), spectral_norm='yes'),
     TypeError, 'spectral_norm'),
    ('generations mixed', lambda: SmABMIL((3, ), sm_where='late',
                                          sm_layers=1),
     ValueError, 'cannot be mixed'),
    ('spectral_norm_layers unknown', lambda: SmAttentionPool(
        3, spectral_norm_layers=['proj3']), ValueError,
     'spectral_norm_layers'),
    ('in_shape gives a scalar', lambda: SmABMIL(
        (3, ), feat_ext=torch.nn.Flatten(0)), ValueError, 'feat_ext'),
    ('float edge_index', lambda: layer(x, EDGES.float()), TypeError,
     'edge_index'),
    ('edge_index (3, E)', lambda: layer(x, EDGES.repeat(2, 1)[:3]),
     ValueError, 'edge_index'),
    ('edge_index 1-D', lambda: layer(x, EDGES[0]), ValueError, 'edge_index'),
    ('index out of range', lambda: layer(x, EDGES + 2), ValueError,
     'edge_index'),
    ('negative index', lambda: layer(x, EDGES - 1), ValueError,
     'edge_index'),
    ('edge_weight too short', lambda: layer(x, EDGES, torch.ones(2)),
     ValueError, 'edge_weight'),
    ('edge_weight 2-D', lambda: layer(x, EDGES, torch.ones(3, 1)),
     ValueError, 'edge_weight'),
    ('integer edge_weight', lambda: layer(x, EDGES, torch.ones(3).long()),
     TypeError, 'edge_weight'),
    ('negative edge_weight, normalize', lambda: layer(
        x, EDGES, torch.tensor([1.0, -1.0, 1.0])), ValueError,
     'non-negative'),
    ('NaN edge_weight', lambda: layer(
        x, EDGES, torch.tensor([1.0, float('nan'), 1.0])), ValueError,
     'finite'),
    ('integer features', lambda: layer(x.long(), EDGES), TypeError, "'x'"),
    ('batch too short', lambda: layer(x, EDGES, batch=torch.zeros(3).long()),
     ValueError, 'batch'),
    ('float batch', lambda: layer(x, EDGES, batch=torch.zeros(4)),
     TypeError, 'batch'),
    ('negative batch', lambda: layer(x, EDGES, batch=-torch.ones(4).long()),
     ValueError, 'batch'),
    ('unknown mode', lambda: Sm(mode='dense'), ValueError, 'mode'),
    ('alpha 1', lambda: Sm(alpha=1.0), ValueError, 'alpha'),
    ('alpha -0.1', lambda: Sm(alpha=-0.1), ValueError, 'alpha'),
    ('alpha string', lambda: Sm(alpha='learn'), ValueError, 'alpha'),
    ('negative num_steps', lambda: Sm(num_steps=-2), ValueError,
     'num_steps'),
    ('unknown act', lambda: SmAttentionPool(3, act='softplus'), ValueError,
     'act'),
    ('unknown sm_mode', lambda: SmABMIL((3, ), sm_mode='x'), ValueError,
     'sm_mode'),
    ('negative sm_layers', lambda: SmABMIL((3, ), sm_layers=-1), ValueError,
     'sm_layers'),
    ('in_dim 0', lambda: SmAttentionPool(0), ValueError, 'in_dim'),
    ('att_dim 0', lambda: SmAttentionPool(3, att_dim=0), ValueError,
     'att_dim'),
    ('model att_dim 0', lambda: SmABMIL((3, ), att_dim=0), ValueError,
     'att_dim'),
    ('tol 0', lambda: Sm(mode='exact', tol=0.0), ValueError, 'tol'),
    ('prepared graph and edge_weight', lambda: layer(x, prepare_adjacency(
        EDGES, None, 4, True, torch.float32), torch.ones(3)), ValueError,
     'prepared'),
    ('prepared graph of other size', lambda: layer(x[:3], prepare_adjacency(
        EDGES, None, 4, True, torch.float32)), ValueError, 'adjacency has 4'),
    ('feature size', lambda: pool(torch.randn(4, 5), EDGES), ValueError,
     'in_dim'),
    ('adj of other bag size', lambda: model(X, torch.zeros(2, 5, 5)),
     ValueError, 'adj'),
    ('adj of other batch size', lambda: model(X, torch.zeros(3, 4, 4)),
     ValueError, 'adj'),
    ('integer adj', lambda: model(X, ADJ.long()), TypeError, 'adj'),
    ('integer X', lambda: model(X.long(), ADJ), TypeError, "'X'"),
    ('mask shape', lambda: model(X, ADJ, torch.ones(2, 3)), ValueError,
     'mask'),
    ('all-masked bag', lambda: model(X, ADJ, torch.tensor(
        [[1, 1, 0, 0], [0, 0, 0, 0]])), ValueError, 'unmasked'),
    ('empty graph bag', lambda: model(torch.randn(0, 3), EDGES[:, :0]),
     ValueError, 'instance'),
    ('empty bag in a batch', lambda: model(x, EDGES, batch=torch.tensor(
        [0, 0, 2, 2])), ValueError, 'graph'),
    ('labels of other size', lambda: model.compute_loss(
        torch.zeros(3), X, ADJ), ValueError, "'Y'"),
    ('labels 2-D', lambda: model.compute_loss(torch.zeros(1, 1), bag),
     ValueError, "'Y'"),
    ('mask with graph input', lambda: model(x, EDGES, torch.ones(4)),
     ValueError, 'mask'),
    ('Data and tensors', lambda: model(bag, EDGES), ValueError, 'either'),
    ('Y of other size', lambda: dense_to_batch(X, ADJ, Y=torch.zeros(1)),
     ValueError, "'Y'"),
    ('CSR batched adj', lambda: dense_to_batch(X, ADJ.to_sparse_csr()),
     TypeError, 'adj'),
    ('coords (N, 3)', lambda: patch_grid_graph(torch.zeros(3, 3)),
     ValueError, 'coords'),
    ('NaN coords', lambda: patch_radius_graph(
        torch.tensor([[0.0, float('nan')]]), 1.0), ValueError, 'finite'),
    ('grid units read as pixels', lambda: patch_grid_graph(
        torch.stack(torch.meshgrid(torch.arange(10.0), torch.arange(10.0),
                                   indexing='ij'), -1).reshape(-1, 2),
        patch_size=64), ValueError, 'inconsistent'),
    ('connectivity 6', lambda: patch_grid_graph(torch.zeros(1, 2), 6),
     ValueError, 'connectivity'),
    # Labels (issue 18, items 2 and 3).
    ('labels differing in case', lambda: class_names(
        {'s1': 'LUAD', 's2': 'luad', 's3': 'LUSC'}), PygSmError,
     r"'LUAD' \(1 slide\(s\): s1\); 'luad' \(1 slide\(s\): s2\)"),
    ('binary label 2', lambda: model.compute_loss(
        torch.tensor([0.0, 2.0]), x, EDGES, batch=torch.tensor(
            [0, 0, 1, 1])), ValueError, r'0 or 1 .*\[2\.0\]'),
    ('binary label NaN', lambda: model.compute_loss(
        torch.tensor([float('nan')]), bag), ValueError, '0 or 1'),
    ('class index out of range', lambda: SmABMIL(
        (3, ), att_dim=4, num_classes=3).compute_loss(torch.tensor([3]), bag),
     ValueError, r'\[0, 3\)'),
    # Empty graphs at the end of a batch (item 4).
    ('trailing empty graph, size given', lambda: pool(
        x, EDGES, batch=torch.tensor([0, 0, 1, 1]), size=3), ValueError,
     r'graph\(s\) \[2\]'),
    ('trailing empty graph, labels say so', lambda: model.compute_loss(
        torch.zeros(3), x, EDGES, batch=torch.tensor([0, 0, 1, 1])),
     ValueError, 'pass size='),
    ('size below the batch', lambda: model(
        x, EDGES, batch=torch.tensor([0, 0, 1, 1]), size=1), ValueError,
     'refers to graph 1'),
    ('size 0', lambda: model(x, EDGES, size=0), ValueError, "'size'"),
    # PyG's names and positions (item 6).
    ('edge weights in the mask position', lambda: pool(
        x, EDGES, torch.ones(3)), ValueError, 'edge_weight='),
    ('batch in the mask position', lambda: model(
        x, EDGES, torch.tensor([0, 0, 1, 1])), ValueError, 'batch='),
    ('x twice', lambda: model(x, EDGES, x=x), ValueError, "'X' and 'x'"),
    ('Sm mask in the graph form', lambda: layer(
        x, EDGES, mask=torch.ones(4)), ValueError, 'dense form'),
    ('Sm dense form with a batch', lambda: layer(
        X, ADJ, batch=torch.zeros(4).long()), ValueError, 'graph form'),
    # Settings checked before a run starts (item 10).
    ('device beyond the GPUs', lambda: resolve_device('cuda:99'),
     PygSmError, r'CUDA is not available|GPU\(s\) are visible'),
    ('device name', lambda: resolve_device('gpu'), PygSmError,
     "--device 'gpu'"),
    ('torchmil state dict: unknown model', lambda: from_torchmil_state_dict(
        {}, 'ABMIL', (3, ), '0.1'), ValueError, "'model'"),
    ('torchmil state dict: unknown generation',
     lambda: from_torchmil_state_dict({}, 'SmABMIL', (3, ), '2.0'),
     ValueError, "'generation'"),
    ('torchmil state dict: foreign keys', lambda: from_torchmil_state_dict(
        {'encoder.weight': torch.ones(1)}, 'SmABMIL', (3, ), '0.1'),
     RuntimeError, 'encoder.weight'),
    # The probabilistic models.
    ('prob: covar_mode full', lambda: ProbSmoothABMIL((3, ),
                                                      covar_mode='full'),
     ValueError, 'covar_mode'),
    ('prob: no training samples', lambda: ProbSmoothABMIL(
        (3, ), n_samples_train=0), ValueError, 'n_samples_train'),
    ('prob: float test samples', lambda: ProbSmoothABMIL(
        (3, ), n_samples_test=2.5), TypeError, 'n_samples_test'),
    ('prob: negative eval seed', lambda: ProbSmoothABMIL((3, ), eval_seed=-1),
     ValueError, 'eval_seed'),
    ('prob: KL term without a graph', lambda: ProbSmoothABMIL(
        (3, ), att_dim=4)(X, return_kl_div=True), ValueError, "'adj'"),
    ('prob: compute_loss without a graph', lambda: SmoothABMIL(
        (3, ), att_dim=4).compute_loss(torch.ones(2), X), ValueError,
     "'adj'"),
    ('prob: torchmil predict with a positional flag', lambda: SmoothABMIL(
        (3, ), att_dim=4).predict(X, torch.ones(2, 4, dtype=torch.bool),
                                  False), TypeError, 'by keyword'),
    ('prob: wrong feature size', lambda: SmoothABMIL((3, ), att_dim=4)(
        torch.randn(4, 5), EDGES), ValueError, 'in_dim=3'),
    ('prob: labels of another batch', lambda: SmoothABMIL(
        (3, ), att_dim=4).compute_loss(torch.ones(3), X, ADJ), ValueError,
     "'Y' must have shape"),
    ('prob: from torchmil 0.1', lambda: from_torchmil_state_dict(
        {}, 'ProbSmoothABMIL', (3, ), '0.1'), ValueError, "'1.0'"),
]


@pytest.mark.parametrize('what, call, error, words', CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(what, call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_finite_inputs_give_finite_outputs_at_extreme_alpha():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    for mode in ['approx', 'exact']:
        for alpha in [1e-6, 0.999]:
            out = Sm(alpha, mode=mode, max_iter=5000)(x[:3], edge_index)
            assert torch.isfinite(out).all()
    batch_to_dense(Batch.from_data_list([bag]))  # a plain batch converts
