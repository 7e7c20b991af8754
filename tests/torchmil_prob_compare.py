"""Compares pyg-sm's probabilistic smooth attention with torchmil 1.0.2's
(``ProbSmoothAttentionPool``, ``ProbSmoothABMIL``, ``SmoothABMIL``,
``TransformerProbSmoothABMIL``).

Run in a process of its own with torchmil 1.0.2 on sys.path: ``python
torchmil_prob_compare.py``. Prints one JSON object per case: the largest
differences between torchmil and the converted module, relative to the
values' scale, on one bag: the attention distribution, the KL term, the
criterion and the logits in training mode from the same seed (both draw
the same samples), and the logits and attention in evaluation in 'zero'
mode (no sampling); then what torchmil's two documented errors change."""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from torchmil.models import (  # noqa: E402
    ProbSmoothABMIL,
    SmoothABMIL,
    TransformerProbSmoothABMIL,
)
from torchmil.nn import ProbSmoothAttentionPool  # noqa: E402

from pyg_sm import dense_to_batch, from_torchmil, from_torchmil_state_dict  # noqa: E402
from torchmil_compare import difference as relative  # noqa: E402
from torchmil_compare import grid_adjacency  # noqa: E402

D = 6
SEED = 5


def difference(a, b):
    return relative(a.detach(), b.detach())


def one_bag():
    torch.manual_seed(11)
    X = torch.randn(1, 12, D)
    adj = grid_adjacency(3, 4, 12).float()[None]
    return X, adj


def perturb(module):
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))


def seeded(call):
    torch.manual_seed(SEED)
    return call()


def pool_case(covar_mode):
    X, adj = one_bag()
    theirs = ProbSmoothAttentionPool(D, 8, covar_mode=covar_mode)
    perturb(theirs)
    ours = from_torchmil(theirs)
    result = {'type': 'ProbSmoothAttentionPool', 'case': covar_mode}
    for module in (theirs, ours):
        module.train()
    args = (X, adj, None, True, True, True)
    out_t = seeded(lambda: theirs(*args, n_samples=50))
    out_o = seeded(lambda: ours(*args, n_samples=50))
    for name, a, b in zip(('z', 'samples', 'mu', 'log_var', 'kl'),
                          out_t, out_o):
        if a is not None or b is not None:
            result[f'dense_{name}'] = difference(a, b)
    batch = dense_to_batch(X, adj)
    graph = seeded(lambda: ours(batch.x, batch.edge_index, None, True, True,
                                True, 50, edge_weight=batch.edge_weight))
    for name, a, b in zip(('z', 'samples', 'mu', 'log_var', 'kl'),
                          out_t, graph):
        if a is not None:
            result[f'graph_{name}'] = difference(
                a, b if name == 'z' else b.reshape(a.shape))
    return result


def model_case(cls, name, **kwargs):
    X, adj = one_bag()
    torch.manual_seed(0)
    theirs = cls((D, ), **kwargs)
    perturb(theirs)
    ours = from_torchmil(theirs)
    result = {'type': cls.__name__, 'case': name}
    Y = torch.tensor([1.0])
    for module in (theirs, ours):
        module.train()
    logits_t, losses_t = seeded(lambda: theirs.compute_loss(Y, X, adj))
    logits_o, losses_o = seeded(lambda: ours.compute_loss(Y, X, adj))
    result['dense_train_logits'] = difference(logits_t, logits_o)
    assert set(losses_t) == set(losses_o), (losses_t, losses_o)
    for key in losses_t:
        result[f'dense_train_{key}'] = difference(losses_t[key],
                                                  losses_o[key])
    batch = dense_to_batch(X, adj, Y=Y)
    logits_g, losses_g = seeded(lambda: ours.compute_loss(batch.y, batch))
    result['graph_train_logits'] = difference(logits_t, logits_g)
    for key in losses_t:
        result[f'graph_train_{key}'] = difference(losses_t[key],
                                                  losses_g[key])
    # The distribution of the pool, in evaluation.
    for module in (theirs, ours):
        module.eval()
    with torch.no_grad():
        features = theirs.feat_ext(X)
        if cls is TransformerProbSmoothABMIL:
            features = theirs.transformer_encoder(features)
        _, mu_t, log_var_t = theirs.pool(features, adj, None,
                                         return_att_dist=True)
        std_o = ours(X, adj, return_att=True, return_att_std=True)
        result['dense_eval_mu'] = difference(mu_t.squeeze(-1), std_o[1])
        if log_var_t is not None:
            result['dense_eval_std'] = difference(
                torch.exp(0.5 * log_var_t).squeeze(-1), std_o[2])
        if getattr(theirs.pool, 'covar_mode', None) == 'zero':
            logits_t, att_t = theirs(X, adj, return_att=True)
            logits_o, att_o = ours(X, adj, return_att=True)
            result['dense_eval_logits'] = difference(logits_t, logits_o)
            result['dense_eval_attention'] = difference(att_t, att_o)
    state = from_torchmil_state_dict(theirs.state_dict(), cls.__name__,
                                     (D, ), '1.0', **kwargs)
    for module in (theirs, state):
        module.train()
    logits_s, losses_s = seeded(lambda: state.compute_loss(Y, X, adj))
    losses_t = seeded(lambda: theirs.compute_loss(Y, X, adj))[1]
    result['state_dict_logits'] = difference(
        seeded(lambda: theirs.compute_loss(Y, X, adj))[0], logits_s)
    for key in losses_t:
        result[f'state_dict_{key}'] = difference(losses_t[key],
                                                 losses_s[key])
    return result


def torchmil_errors():
    r"""What torchmil's predict(X, mask) and its padded KL change: the
    gaps pyg-sm does not have (it masks, and divides by the bag's own
    size)."""
    torch.manual_seed(0)
    X, adj = one_bag()
    theirs = SmoothABMIL((D, ))
    perturb(theirs)
    ours = from_torchmil(theirs).eval()
    theirs.eval()
    padded = torch.cat([X, 5 + torch.randn(1, 4, D)], dim=1)
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[0, 12:] = False
    adj_padded = torch.zeros(1, 16, 16)
    adj_padded[:, :12, :12] = adj
    with torch.no_grad():
        alone = ours(X, adj)
        ours_masked = ours.predict(padded, mask, return_inst_pred=False)
        theirs_masked = theirs.predict(padded, mask, return_inst_pred=False)
        kl_alone = ours(X, adj, return_kl_div=True)[1]
        kl_ours = ours(padded, adj_padded, mask, return_kl_div=True)[1]
        kl_theirs = theirs(padded, adj_padded, mask, return_kl_div=True)[1]
    return {'type': 'torchmil_errors', 'case': 'padding',
            'predict_masked_ours': difference(alone, ours_masked),
            'predict_masked_torchmil': difference(alone, theirs_masked),
            'kl_padded_ours': difference(kl_alone, kl_ours),
            'kl_padded_torchmil': difference(kl_alone, kl_theirs)}


def main():
    cases = [pool_case('diag'), pool_case('zero'),
             model_case(ProbSmoothABMIL, 'diag'),
             model_case(ProbSmoothABMIL, 'zero', covar_mode='zero'),
             model_case(SmoothABMIL, 'default'),
             model_case(TransformerProbSmoothABMIL, 'diag',
                        transf_att_dim=16, transf_n_heads=2),
             model_case(TransformerProbSmoothABMIL, 'zero',
                        covar_mode='zero', transf_att_dim=16,
                        transf_n_heads=2, transf_n_layers=2,
                        transf_add_self=False),
             torchmil_errors()]
    for case in cases:
        print(json.dumps(case), flush=True)


if __name__ == '__main__':
    main()
