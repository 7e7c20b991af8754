"""Independent dense float64 references for SPEC.md, written from the
formulas and nothing else of the library."""
import math

import torch
import torch.nn.functional as F
from torch import Tensor

ACTS = {'tanh': torch.tanh, 'relu': torch.relu, 'gelu': F.gelu}


def dense_adjacency(edge_index: Tensor, num_nodes: int, edge_weight=None,
                    normalize: bool = True) -> Tensor:
    """A[i, j] = weight of edge j -> i, optionally D^-1/2 W D^-1/2."""
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=torch.float64)
    adj = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    adj.index_put_((edge_index[1], edge_index[0]),
                   edge_weight.detach().double(), accumulate=True)
    if normalize:
        deg = adj.sum(dim=1)
        inv_sqrt = torch.where(deg > 0, deg.clamp_min(1e-300).rsqrt(),
                               torch.zeros_like(deg))
        adj = inv_sqrt[:, None] * adj * inv_sqrt[None, :]
    return adj


def dense_approx(u: Tensor, adj: Tensor, alpha: float, steps: int) -> Tensor:
    g = u.double()
    for _ in range(steps):
        g = alpha * adj @ g + (1 - alpha) * u.double()
    return g


def dense_exact(u: Tensor, adj: Tensor, alpha: float) -> Tensor:
    gamma = alpha / (1 - alpha)
    eye = torch.eye(adj.size(0), dtype=torch.float64)
    return torch.linalg.solve(eye + gamma * (eye - adj), u.double())


def random_undirected_graph(num_nodes: int, num_edges: int,
                            generator=None) -> Tensor:
    """Random symmetric edge_index without self-loops or duplicates."""
    src = torch.randint(num_nodes, (num_edges,), generator=generator)
    dst = torch.randint(num_nodes, (num_edges,), generator=generator)
    keep = src != dst
    pairs = torch.stack([torch.minimum(src, dst), torch.maximum(src, dst)])
    pairs = torch.unique(pairs[:, keep], dim=1)
    return torch.cat([pairs, pairs.flip(0)], dim=1)


def relative_error(actual: Tensor, expected: Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-30))


def sm_of(sm, adj: Tensor):
    """The dense float64 Sm of a layer's alpha, steps and mode."""
    alpha = float(sm.alpha.detach())

    def smooth(u):
        if sm.mode == 'approx':
            return dense_approx(u, adj, alpha, sm.num_steps)
        return dense_exact(u, adj, alpha)
    return smooth


def reference_pool(pool, x, adj):
    """SPEC.md steps 1-6 for one bag, dense float64, from the weights."""
    smooth = None if pool.sm is None else sm_of(pool.sm, adj)

    act = ACTS[pool.act]
    if pool.sm_pre:
        x = smooth(x)
    h = x @ pool.proj1.weight.double().T + pool.proj1.bias.double()
    if pool.sm_mid:  # torchmil 1.0.x's 'mid': Sm before the activation
        h = smooth(h)
    h = act(h)
    for layer in pool.mlp:
        h = act(smooth(h) @ layer.weight.double().T + layer.bias.double())
    f = (h @ pool.proj2.weight.double().T)
    if pool.sm_post:
        f = smooth(f)
    f = f.squeeze(-1)
    return torch.softmax(f, 0) @ x, f




def linear(module, u: Tensor) -> Tensor:
    """A Linear layer (or the identity) in float64 from its weights."""
    if not hasattr(module, 'weight'):
        return u
    out = u @ module.weight.double().T
    return out if module.bias is None else out + module.bias.double()


def layer_norm(module, u: Tensor) -> Tensor:
    mean = u.mean(-1, keepdim=True)
    var = u.var(-1, unbiased=False, keepdim=True)
    return (u - mean) / torch.sqrt(var + module.eps) * \
        module.weight.double() + module.bias.double()


def reference_transformer(encoder, x: Tensor, adj: Tensor) -> Tensor:
    """SPEC.md's SmTransformerABMIL encoder for one bag (eval mode): the
    attention as explicit N x N softmax matrices, in float64."""
    x0 = x.double()
    y = x0
    for layer in encoder.layers:
        u = layer_norm(layer.norm1, y)
        a = layer.attention
        qkv = u @ a.qkv.weight.double().T
        q, k, v = qkv.chunk(3, dim=-1)
        width, heads = q.size(-1), a.n_heads
        d = width // heads
        outs = []
        for h in range(heads):
            part = slice(h * d, (h + 1) * d)
            scores = q[:, part] @ k[:, part].T / math.sqrt(d)
            outs.append(torch.softmax(scores, dim=-1) @ v[:, part])
        o = sm_of(a.sm, adj)(torch.cat(outs, dim=-1))
        z = linear(layer.att_proj, y) + o
        if layer.mlp is not None:
            first, _, _, second, _ = layer.mlp
            hidden = F.gelu(linear(first, layer_norm(layer.norm2, z)))
            z = z + linear(second, hidden)
        y = linear(layer.out_proj, z)
        if encoder.add_self:
            y = y + x0
    return layer_norm(encoder.norm, y)


def prob_smooth_bag(X: Tensor, A: Tensor, weights: dict, noise=None):
    """One bag of probabilistic smooth attention (SPEC.md), dense, float64:
    X (N, D), A (N, N), the layers' weights by torchmil's names (``w1``,
    ``b1``, ``w2``, ``b2``, ``w_mu``, ``b_mu``, and ``w_s``, ``b_s`` in
    'diag' mode), noise (N, M) or None ('zero' mode). Returns mu, log_var
    (None without it), the samples (N, M), their softmax (N, M), z (M, D)
    and the KL term of the bag."""
    X, A = X.double(), A.double()
    w = {k: v.double() for k, v in weights.items()}
    H = F.gelu(F.gelu(X @ w['w1'].T + w['b1']) @ w['w2'].T + w['b2'])
    mu = (H @ w['w_mu'].T + w['b_mu']).squeeze(-1)
    N = X.size(0)
    kl = mu @ mu - mu @ A @ mu
    if 'w_s' in w:
        log_var = (H @ w['w_s'].T + w['b_s']).squeeze(-1)
        var = log_var.exp()
        f = (mu[:, None] + var.sqrt()[:, None] * noise.double()).clamp(-20,
                                                                       20)
        kl = kl + ((1 - torch.diagonal(A)) * var).sum() - 0.5 * log_var.sum()
    else:
        log_var, f = None, mu[:, None]
    s = torch.softmax(f, dim=0)
    return mu, log_var, f, s, s.T @ X, kl / N


def prob_pool_weights(pool) -> dict:
    """The weights of a ProbSmoothAttentionPool, by prob_smooth_bag's
    names."""
    weights = {'w1': pool.in_mlp[0].weight, 'b1': pool.in_mlp[0].bias,
               'w2': pool.in_mlp[2].weight, 'b2': pool.in_mlp[2].bias,
               'w_mu': pool.mu_f_nn.weight, 'b_mu': pool.mu_f_nn.bias}
    if pool.log_diag_Sigma_nn is not None:
        weights.update(w_s=pool.log_diag_Sigma_nn.weight,
                       b_s=pool.log_diag_Sigma_nn.bias)
    return {k: v.detach() for k, v in weights.items()}
