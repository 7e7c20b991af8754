"""Conjugate gradient for the block-diagonal systems of a batch of graphs."""
import warnings
from typing import Callable, List, Optional

import torch
from torch import Tensor
from torch_geometric.utils import scatter

# Each convergence test waits for the device; a GPU tests every few
# iterations (one or two more products at most), the CPU, which never waits,
# every iteration.
_GPU_CHECK_EVERY = 8


class SmConvergenceWarning(RuntimeWarning):
    r"""Warned when the exact-mode solve of :class:`pyg_sm.Sm` stops at
    :obj:`max_iter` before reaching :obj:`tol`."""


class SmConvergenceError(RuntimeError):
    r"""Raised instead of :class:`SmConvergenceWarning` when
    :class:`pyg_sm.Sm` was built with :obj:`on_nonconvergence='raise'`."""


def conjugate_gradient(
    operator: Callable[[Tensor, Tensor], Tensor],
    rhs: Tensor,
    solution: Tensor,
    workspace: List[Tensor],
    batch: Optional[Tensor],
    num_graphs: int,
    tol: float,
    max_iter: int,
    what: str = 'input',
) -> float:
    r"""Solves :obj:`operator(x) = rhs` into :obj:`solution` (which holds the
    start), for a symmetric positive definite :obj:`operator(v, out)` that
    writes into :obj:`out` and never mixes the nodes of different graphs.
    :obj:`workspace` holds four tensors shaped like :obj:`rhs`. Returns the
    largest relative residual reached (at most :obj:`tol` unless it stopped
    at :obj:`max_iter`).

    Every (graph, column) pair is its own linear system with its own step
    sizes and its own stopping test :math:`\|r\| \le tol \|b\|`, so a bag's
    solution neither depends on nor waits for the scale of the other bags.
    Once the recurrence says the residual is small, the true residual is
    recomputed and the iteration restarted from there if it is not: this keeps
    float32 drift, or an operator that is not symmetric, from passing as
    converged. A right-hand side (:obj:`what`) with NaN or infinite
    values raises a :class:`ValueError`: it could only reach
    :obj:`max_iter`.
    """
    residual, direction, image, scratch = workspace
    x = solution

    def dot(u: Tensor, v: Tensor) -> Tensor:
        product = torch.mul(u, v, out=scratch)
        if batch is None:
            return product.sum(dim=0, keepdim=True)
        return scatter(product, batch, dim=0, dim_size=num_graphs,
                       reduce='sum')

    def per_node(value: Tensor) -> Tensor:
        if batch is None:
            return value
        return torch.index_select(value, 0, batch, out=scratch)

    check_every = 1 if rhs.device.type == 'cpu' else _GPU_CHECK_EVERY
    threshold = tol**2 * dot(rhs, rhs)
    # The squared norms are at hand: a non-finite one means NaN or infinite
    # values (or ones too large to square), which could only run max_iter.
    if not bool(torch.isfinite(threshold).all()):
        raise ValueError(f"Sm(mode='exact'): the {what} holds NaN or "
                         f"infinite values (or values too large to square "
                         f"in {rhs.dtype})")
    iterations = 0
    while True:
        torch.sub(rhs, operator(x, image), out=residual)
        residual_sq = dot(residual, residual)
        if bool((residual_sq <= threshold).all()) or iterations >= max_iter:
            break
        direction.copy_(residual)
        while iterations < max_iter:
            iterations += 1
            operator(direction, image)
            curvature = dot(direction, image)
            # Converged systems have zero residual and zero curvature: they
            # take no step instead of a 0/0.
            step = torch.where(curvature > 0, residual_sq / curvature,
                               torch.zeros_like(curvature))
            x.addcmul_(per_node(step), direction)
            residual.addcmul_(per_node(step), image, value=-1)
            new_residual_sq = dot(residual, residual)
            if iterations % check_every == 0 and bool(
                    (new_residual_sq <= threshold).all()):
                break
            ratio = torch.where(residual_sq > 0,
                                new_residual_sq / residual_sq,
                                torch.zeros_like(residual_sq))
            direction.mul_(per_node(ratio)).add_(residual)
            residual_sq = new_residual_sq

    if bool((residual_sq <= threshold).all()):
        return 0.0
    rhs_norm = threshold.sqrt().clamp_min(torch.finfo(rhs.dtype).tiny) / tol
    return float((residual_sq.sqrt() / rhs_norm).max())


def report_nonconvergence(reached: float, tol: float, max_iter: int,
                          on_nonconvergence: str) -> None:
    message = (f"Sm(mode='exact'): conjugate gradient stopped after "
               f"max_iter={max_iter} iterations at relative residual "
               f"{reached:.3e} > tol={tol:.1e}. Raise 'max_iter' or 'tol', "
               f"or check that the adjacency is symmetric with spectral "
               f"radius at most 1 (normalize=True ensures it).")
    if on_nonconvergence == 'raise':
        raise SmConvergenceError(message)
    warnings.warn(message, SmConvergenceWarning, stacklevel=5)
