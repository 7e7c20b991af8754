"""Compares pyg-sm's from_torchmil conversions with torchmil itself.

Run in a process of its own with one torchmil generation on sys.path (the
two share the package name): ``python torchmil_compare.py``. Prints one
JSON object per case: the largest differences of the logits / outputs and
attention values between torchmil and the converted module, in the dense
form and in the graph form of the same bags, relative to the values'
scale, and whether training went on from the converted module."""
import json
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torchmil  # noqa: E402
from torchmil.models import SmABMIL, SmTransformerABMIL  # noqa: E402
from torchmil.nn import Sm, SmAttentionPool  # noqa: E402

from pyg_sm import dense_to_batch, from_torchmil, from_torchmil_state_dict  # noqa: E402

MODERN = torchmil.__version__ if hasattr(torchmil, '__version__') else ''
GENERATION = '1.0' if 'sm_where' in SmAttentionPool.__init__.__code__ \
    .co_varnames else '0.1'
D = 6


def grid_adjacency(side_h, side_w, n):
    """The normalized 4-neighbour grid of side_h x side_w patches, padded
    to n x n."""
    count = side_h * side_w
    adj = torch.zeros(n, n, dtype=torch.float64)
    for i in range(count):
        r, c = divmod(i, side_w)
        for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < side_h and 0 <= cc < side_w:
                adj[i, rr * side_w + cc] = 1
    deg = adj.sum(1)
    inv = torch.where(deg > 0, deg.clamp_min(1).rsqrt(), torch.zeros_like(deg))
    return inv[:, None] * adj * inv[None, :]


def inputs(dtype, padded=True):
    torch.manual_seed(11)
    n = 12
    X = torch.randn(2, n, D, dtype=dtype)
    adj = torch.stack([grid_adjacency(3, 4, n), grid_adjacency(3, 3, n)
                       if padded else grid_adjacency(4, 3, n)]).to(dtype)
    mask = torch.ones(2, n, dtype=torch.bool)
    if padded:
        mask[1, 9:] = False
        X[1, 9:] = 0
    return X, adj, mask


def perturb(module, seed):
    r"""Trains a little, as a user would have: random weights and coef."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith('coef'):
                p.copy_(torch.rand((), generator=generator,
                                   dtype=p.dtype) * 2 + 0.3)
            else:
                p.add_(0.2 * torch.randn(p.shape, generator=generator,
                                         dtype=p.dtype))


def one_training_step(model, X, adj, mask):
    """A step of Adam in train mode (spectral norm updates its vectors)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model(X, adj, mask) if mask is not None else model(X, adj)
    loss = out.float().pow(2).mean()
    loss.backward()
    optimizer.step()
    model.eval()


def difference(a, b):
    a, b = a.double(), b.double()
    scale = max(float(b.abs().max()), 1e-12)
    return float((a - b).abs().max()) / scale


def compare(case, theirs, call, dtype, padded=True, train_first=True,
            options=None, **convert):
    X, adj, mask = inputs(dtype, padded)
    theirs = theirs.to(dtype)
    perturb(theirs, seed=len(case))
    if train_first and any(p.requires_grad for p in theirs.parameters()):
        one_training_step(theirs, X, adj, mask if padded else None)
    theirs.eval()
    with torch.no_grad():
        expected = call(theirs, X, adj, mask if padded else None)
    ours = from_torchmil(theirs, **convert).to(dtype).eval()
    with torch.no_grad():
        dense = call(ours, X, adj, mask)
        graph = call(ours, dense_to_batch(X, adj, mask), None, None)
    result = {'case': case, 'generation': GENERATION,
              'type': type(ours).__name__}
    if options is not None:
        # Without torchmil: its state dict and its constructor keywords.
        loaded = from_torchmil_state_dict(
            theirs.state_dict(), type(theirs).__name__, (D, ), GENERATION,
            **options).to(dtype).eval()
        with torch.no_grad():
            from_state = call(loaded, X, adj, mask)
        for k, (e, f) in enumerate(zip(expected, from_state)):
            keep = mask if e.dim() == 2 and e.shape[:2] == mask.shape \
                else slice(None)
            result[f'state_dict_{k}'] = difference(f[keep], e[keep])
    for k, (e, d, g) in enumerate(zip(expected, dense, graph)):
        keep = mask if e.dim() == 2 else slice(None)
        e_valid = e[keep] if e.dim() == 2 and e.shape[:2] == mask.shape \
            else e
        d_valid = d[keep] if d.dim() == 2 and d.shape[:2] == mask.shape \
            else d
        result[f'dense_{k}'] = difference(d_valid, e_valid)
        result[f'graph_{k}'] = difference(g, e_valid)
    # Training goes on from the converted module.
    if not list(ours.parameters()):  # a fixed-alpha Sm has nothing to train
        result['trains'] = None
        print(json.dumps(result), flush=True)
        return
    ours.train()
    before = [p.detach().clone() for p in ours.parameters()]
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.1)
    out = call(ours, X, adj, mask)[0]
    out.float().pow(2).mean().backward()
    optimizer.step()
    result['trains'] = bool(torch.isfinite(out).all()) and any(
        not torch.equal(a, b) for a, b in zip(before, ours.parameters()))
    print(json.dumps(result), flush=True)


def sm_call(module, X, adj, mask):
    if adj is None:  # the graph form: a Batch
        return (module(X.x, X.edge_index, X.edge_weight), )
    # Both libraries' Sm in torchmil's call, Sm(X, adj).
    out = module(X, adj)
    return (out[mask] if mask is not None else out.reshape(-1, D), )


def pool_call(module, X, adj, mask):
    if adj is None:
        z, f = module(X, return_att=True)
        return z, f
    z, f = module(X, adj, mask, return_att=True)
    return z, f


model_call = pool_call


def main():
    warnings.simplefilter('ignore')
    # Sm: both modes, float and trainable alpha (the approx convention).
    for mode in ('approx', 'exact'):
        dtype = torch.float32 if mode == 'approx' else torch.float64
        for alpha in (0.3, 'trainable'):
            compare(f'Sm {mode} alpha={alpha}',
                    Sm(alpha=alpha, num_steps=10, mode=mode),
                    sm_call, dtype, padded=False)
    if GENERATION == '0.1':
        pools = [dict(sm_layers=layers, sm_pre=pre, sm_post=post,
                      sm_spectral_norm=sn, act=act, sm_mode=mode,
                      sm_alpha=alpha)
                 for layers, pre, post, sn, act, mode, alpha in [
                     (0, False, False, False, 'gelu', 'approx', 0.3),
                     (1, False, True, False, 'tanh', 'approx', 'trainable'),
                     (2, True, True, True, 'relu', 'approx', 'trainable'),
                     (1, True, False, False, 'gelu', 'exact', 0.6),
                     (0, False, True, True, 'tanh', 'exact', 'trainable'),
                     (1, True, True, False, 'tanh', 'approx', 0.8)]]
        models = [dict(sm_layers=1, sm_post=True),
                  dict(sm_pre=True, sm_spectral_norm=True, sm_alpha=0.4),
                  dict(sm_layers=2, sm_mode='exact')]
        transformer = [dict(pool_sm_post=True, transf_att_dim=8),
                       dict(pool_sm_pre=True, transf_n_layers=2,
                            transf_att_dim=D, transf_n_heads=2,
                            transf_sm_alpha=0.3),
                       dict(transf_use_mlp=False, transf_add_self=False,
                            transf_att_dim=8, transf_sm_mode='exact',
                            pool_sm_mode='exact')]
    else:
        pools = [dict(sm_where=where, spectral_norm=sn, act=act,
                      sm_mode=mode, sm_alpha=alpha)
                 for where, sn, act, mode, alpha in [
                     ('early', False, 'gelu', 'approx', 'trainable'),
                     ('early', True, 'tanh', 'exact', 0.4),
                     ('mid', True, 'gelu', 'approx', 0.3),
                     ('mid', False, 'relu', 'exact', 'trainable'),
                     ('late', True, 'tanh', 'approx', 'trainable'),
                     ('late', False, 'gelu', 'exact', 0.7),
                     ('none', True, 'gelu', 'approx', 'trainable')]]
        models = [dict(sm_where='late'), dict(sm_where='mid',
                                              spectral_norm=True),
                  dict(sm_where='early', sm_mode='exact')]
        transformer = [dict(pool_sm_where='late', transf_att_dim=8),
                       dict(pool_sm_where='mid', pool_spectral_norm=True,
                            transf_n_layers=2, transf_att_dim=D,
                            transf_n_heads=2),
                       dict(transf_use_mlp=False, transf_add_self=False,
                            transf_att_dim=8, transf_sm_mode='exact',
                            pool_sm_mode='exact', pool_sm_where='early')]
    for options in pools:
        exact = 'exact' in options.values()
        compare(f'SmAttentionPool {options}',
                SmAttentionPool(D, att_dim=5, **options), pool_call,
                torch.float64 if exact else torch.float32)
    for options in models:
        exact = 'exact' in options.values()
        compare(f'SmABMIL {options}', SmABMIL((D, ), att_dim=5, **options),
                model_call, torch.float64 if exact else torch.float32,
                options={'att_dim': 5, **options})
    for options in transformer:
        exact = 'exact' in options.values()
        # torchmil's masked attention gives NaN rows for padded
        # instances (and its Sm spreads them): compare on full bags.
        compare(f'SmTransformerABMIL {options}',
                SmTransformerABMIL((D, ), pool_att_dim=5, **options),
                model_call, torch.float64 if exact else torch.float32,
                padded=False, options={'pool_att_dim': 5, **options})


if __name__ == '__main__':
    main()
