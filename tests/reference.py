"""Independent dense float64 references for SPEC.md, written from the
formulas and nothing else of the library."""
import torch
from torch import Tensor


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
