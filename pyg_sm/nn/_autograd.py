"""The two Sm modes as autograd functions whose backward is one more sparse
pass of the same kind, so that memory does not grow with the iterations.

Sm acts on each feature column independently, so both run over blocks of
columns: the work buffers then hold one block, not the whole (N, F) tensor,
and narrow blocks also make the sparse products more cache-friendly."""
import functools
from typing import Any, List, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._solver import conjugate_gradient, report_nonconvergence

# Per device type: inputs of up to WHOLE elements run as one block, larger
# ones in blocks of COLUMNS columns. On the CPU (measured on 262k-node grids)
# 32 to 128 columns per product are as fast per column as 256, or faster,
# and small blocks stay in cache; on a GPU every block is one more launch of
# each kernel, so blocks only bound the work buffers' memory.
_BLOCKING = {'cpu': (2**22, 32)}
_GPU_BLOCKING = (2**28, 256)


class ColumnBlocks:
    r"""The column blocks of an (N, F) tensor, and contiguous work buffers of
    one block, allocated once per call: on the CPU, allocating and first
    touching a fresh buffer costs more than filling a reused one."""
    def __init__(self, like: Tensor):
        rows, columns = like.shape
        whole, blocked = _BLOCKING.get(like.device.type, _GPU_BLOCKING)
        width = columns if rows * columns <= whole else blocked
        self.slices = [slice(start, min(start + width, columns))
                       for start in range(0, columns, width)]
        self.whole = len(self.slices) == 1
        self._like = like
        self._storage: List[Tensor] = []

    def reserve(self, whole: int, blocked: int) -> 'ColumnBlocks':
        """Allocates ``whole`` buffers for a single block, else ``blocked``
        (blocks also need copies of their columns of the inputs)."""
        size = self._like.size(0) * self.slices[0].stop
        self._storage = [self._like.new_empty(size) for _ in range(
            whole if self.whole else blocked)]
        return self

    def buffers(self, columns: slice) -> List[Tensor]:
        rows = self._like.size(0)
        size = rows * (columns.stop - columns.start)
        return [storage[:size].view(rows, -1) for storage in self._storage]


def _full_precision(method):
    """Runs a forward or backward with autocast off: the sparse kernels and
    the solver need the float32/float64 inputs Sm.forward prepared."""
    @functools.wraps(method)
    def wrapper(ctx: Any, values: Tensor, *args):
        with torch.autocast(values.device.type, enabled=False):
            return method(ctx, values, *args)
    return wrapper


def _edge_dot(target_side: Tensor, source_side: Tensor,
              edge_index: Tensor) -> Tensor:
    r"""Per-edge :math:`\langle t_i, s_j \rangle` for every edge
    :math:`j \to i`: the gradient pattern of :math:`\partial (t^\top A s) /
    \partial A_{ij}` restricted to the edges."""
    return (target_side[edge_index[1]] * source_side[edge_index[0]]).sum(-1)


class _TwiceDifferentiable(torch.autograd.Function):
    r"""A backward in two versions: :meth:`backward_once`, the fast one
    (no graph), and :meth:`backward_with_graph`, which autograd can
    differentiate again, run under ``create_graph=True``."""
    @classmethod
    def backward(cls, ctx: Any, grad_out: Tensor):
        with torch.autocast(grad_out.device.type, enabled=False):
            if torch.is_grad_enabled():  # create_graph=True
                return cls.backward_with_graph(ctx, grad_out)
            return cls.backward_once(ctx, grad_out)


class SmApprox(_TwiceDifferentiable):
    r"""``G(0) = x, G(t) = alpha A G(t-1) + (1 - alpha) x``, returns ``G(T)``.

    ``G(T) = P(A) x`` for the polynomial
    ``P(z) = (1 - alpha) sum_{k<T} alpha^k z^k + alpha^T z^T``, so the
    gradient for x is ``P(A^T) grad`` and the one for alpha is
    ``sum_k P'_k <(A^T)^k grad, x>``: both come from one sweep over the powers
    ``(A^T)^k grad``, holding a few buffers of one column block whatever T
    is. The gradient for the edge weights pairs those powers with the
    forward iterates, which are kept only when that gradient is asked for.
    """
    @staticmethod
    @_full_precision
    def forward(ctx: Any, x: Tensor, alpha: Tensor, edge_weight: Tensor,
                adjacency: Any, num_steps: int) -> Tensor:
        keep_iterates = ctx.needs_input_grad[2]
        # Two buffers take G(t-1) and G(t) in turn.
        blocks = ColumnBlocks(x).reserve(whole=2, blocked=3)
        out = None if blocks.whole else x.new_empty(x.shape)
        iterates = []
        for columns in blocks.slices:
            pair = blocks.buffers(columns)
            if blocks.whole:
                start = x
            elif keep_iterates:  # kept: not in a buffer the next block reuses
                start = x[:, columns].contiguous()
            else:
                start = pair[2].copy_(x[:, columns])
            current = start
            for step in range(num_steps):
                if keep_iterates:  # each iterate needs its own tensor
                    iterates.append(current)
                    target = torch.empty_like(start)
                else:
                    target = pair[step % 2]
                adjacency.matmul(current, out=target)
                current = torch.lerp(start, target, alpha, out=target)
            if blocks.whole:
                out = current
            else:
                out[:, columns] = current
        ctx.adjacency = adjacency
        ctx.num_steps = num_steps
        ctx.save_for_backward(x, alpha, edge_weight, *iterates)
        return out

    @staticmethod
    def backward_with_graph(ctx: Any, grad_out: Tensor):
        return _approx_backward_with_graph(ctx, grad_out)

    @staticmethod
    @once_differentiable
    def backward_once(ctx: Any, grad_out: Tensor):
        x, alpha, _, *iterates = ctx.saved_tensors
        adjacency, num_steps = ctx.adjacency, ctx.num_steps
        need_x, need_alpha, need_weight = ctx.needs_input_grad[:3]
        # alpha stays a tensor on the device: float(alpha) would wait for
        # the device on every call. coefficients[k] = (1 - a) a^k below T,
        # a^T at T.
        steps = torch.arange(num_steps + 1, dtype=x.dtype, device=x.device)
        powers = alpha**steps
        coefficients = torch.cat([(1 - alpha) * powers[:-1], powers[-1:]])

        # Two buffers take the powers in turn.
        blocks = ColumnBlocks(grad_out).reserve(whole=2, blocked=5)
        grad_x = grad_out.new_empty(grad_out.shape)
        dots = []
        grad_weight = None
        for index, columns in enumerate(blocks.slices):
            pair = blocks.buffers(columns)
            if blocks.whole:
                features, power, grad_block = x, grad_out, grad_x
            else:
                features = pair[2].copy_(x[:, columns])
                power = pair[3].copy_(grad_out[:, columns])
                grad_block = pair[4]
            torch.mul(power, coefficients[0], out=grad_block)
            block_iterates = iterates[index * num_steps:(index + 1) *
                                      num_steps]
            for k in range(num_steps + 1):
                if k > 0:
                    power = adjacency.matmul(power, transpose=True,
                                             out=pair[k % 2])
                    grad_block.addcmul_(power, coefficients[k])
                if need_alpha:
                    dots.append(torch.vdot(power.flatten(),
                                           features.flatten()))
                if need_weight and k < num_steps:
                    # <lambda_t, A G(t-1)>-terms: lambda_{T-k} = a^k power.
                    term = _edge_dot(power, block_iterates[num_steps - 1 - k],
                                     adjacency.edge_index) * powers[k + 1]
                    grad_weight = term if grad_weight is None else \
                        grad_weight.add_(term)
            if not blocks.whole:
                grad_x[:, columns] = grad_block

        grad_alpha = None
        if need_alpha:
            # Coefficients of dP/dalpha: k a^(k-1) (1-a) - a^k below T, and
            # T a^(T-1) at T; the same for every block.
            below = steps * alpha**(steps - 1)
            derivative = torch.cat([below[:-1] * (1 - alpha) - powers[:-1],
                                    below[-1:]])
            grad_alpha = (torch.stack(dots).view(len(blocks.slices), -1) *
                          derivative).sum()
            grad_alpha = grad_alpha.to(alpha.dtype).reshape(alpha.shape)
        grad_x = grad_x if need_x else None
        return grad_x, grad_alpha, grad_weight, None, None


class SmExact(_TwiceDifferentiable):
    r"""Solves ``((1 + g) I - g A) y = x`` with ``g = alpha / (1 - alpha)``.

    Implicit differentiation: with ``lam = M^-T grad`` (one more conjugate
    gradient solve, with ``A^T``), the gradients are ``lam`` for x,
    ``(<A^T lam, y> - <lam, y>) dg/dalpha`` for alpha and
    ``g <lam_i, y_j>`` for the weight of edge ``j -> i``.
    """
    @staticmethod
    @_full_precision
    def forward(ctx: Any, x: Tensor, alpha: Tensor, edge_weight: Tensor,
                adjacency: Any, solver: dict) -> Tensor:
        y = _solve(adjacency, x, alpha, transpose=False, what='input',
                   **solver)
        ctx.adjacency = adjacency
        ctx.solver = solver
        ctx.save_for_backward(y, alpha, edge_weight)
        return y

    @staticmethod
    def backward_with_graph(ctx: Any, grad_out: Tensor):
        return _exact_backward_with_graph(ctx, grad_out)

    @staticmethod
    @once_differentiable
    def backward_once(ctx: Any, grad_out: Tensor):
        y, alpha, _ = ctx.saved_tensors
        adjacency = ctx.adjacency
        need_x, need_alpha, need_weight = ctx.needs_input_grad[:3]
        gamma = alpha / (1 - alpha)
        lam = _solve(adjacency, grad_out.contiguous(), alpha, transpose=True,
                     what='gradient', **ctx.solver)

        grad_alpha = grad_weight = None
        if need_alpha:
            # <A^T lam, y> - <lam, y>, one column block at a time.
            grad_gamma = -torch.vdot(lam.flatten(), y.flatten())
            blocks = ColumnBlocks(lam).reserve(whole=1, blocked=3)
            for columns in blocks.slices:
                smoothed, *copies = blocks.buffers(columns)
                lam_block, y_block = (lam, y) if blocks.whole else (
                    copies[0].copy_(lam[:, columns]),
                    copies[1].copy_(y[:, columns]))
                adjacency.matmul(lam_block, transpose=True, out=smoothed)
                grad_gamma += torch.vdot(smoothed.flatten(),
                                         y_block.flatten())
            grad_alpha = (grad_gamma / (1 - alpha)**2).to(alpha.dtype)
            grad_alpha = grad_alpha.reshape(alpha.shape)
        if need_weight:
            grad_weight = gamma * _edge_dot(lam, y, adjacency.edge_index)
        return (lam if need_x else None), grad_alpha, grad_weight, None, None


class _Transposed:
    r"""The adjacency :math:`\mathbf{A}^\top` of a propagation: the
    backward of Sm's exact mode is Sm's exact mode with it, which makes
    that backward differentiable in turn."""
    def __init__(self, adjacency: Any):
        self.adjacency = adjacency
        self.edge_index = adjacency.edge_index.flip(0)

    def matmul(self, x: Tensor, transpose: bool = False,
               out: Optional[Tensor] = None) -> Tensor:
        return self.adjacency.matmul(x, transpose=not transpose, out=out)

    def matmul_with_graph(self, x: Tensor, weight: Tensor,
                          transpose: bool = False) -> Tensor:
        return self.adjacency.matmul_with_graph(x, weight, not transpose)


def _approx_backward_with_graph(ctx: Any, grad_out: Tensor):
    r"""The approx backward as a graph autograd can differentiate again
    (Hessian-vector products, gradient penalties): the recursion recomputed
    with differentiable products, then differentiated with
    :obj:`create_graph`. It keeps the T iterates."""
    x, alpha, weight = ctx.saved_tensors[:3]
    inputs = [t for t, need in zip((x, alpha, weight),
                                   ctx.needs_input_grad[:3]) if need]
    current = x
    for _ in range(ctx.num_steps):
        current = torch.lerp(
            x, ctx.adjacency.matmul_with_graph(current, weight), alpha)
    grads = iter(torch.autograd.grad(current, inputs, grad_out,
                                     create_graph=True, allow_unused=True))
    return tuple(next(grads) if need else None
                 for need in ctx.needs_input_grad[:3]) + (None, None)


def _exact_backward_with_graph(ctx: Any, grad_out: Tensor):
    r"""The exact backward as a graph: ``lam = M^-T grad`` is Sm's exact
    mode on :math:`\mathbf{A}^\top` (differentiable like the forward), and
    the alpha and edge-weight terms are differentiable products of
    ``lam`` and the output."""
    y, alpha, weight = ctx.saved_tensors
    need_x, need_alpha, need_weight = ctx.needs_input_grad[:3]
    lam = SmExact.apply(grad_out.contiguous(), alpha, weight,
                        _Transposed(ctx.adjacency), ctx.solver)
    grad_alpha = grad_weight = None
    if need_alpha:
        smoothed = ctx.adjacency.matmul_with_graph(lam, weight,
                                                   transpose=True)
        grad_gamma = (smoothed * y).sum() - (lam * y).sum()
        grad_alpha = (grad_gamma / (1 - alpha)**2).reshape(alpha.shape)
    if need_weight:
        grad_weight = alpha / (1 - alpha) * _edge_dot(
            lam, y, ctx.adjacency.edge_index.long())
    return (lam if need_x else None), grad_alpha, grad_weight, None, None


def _solve(adjacency: Any, rhs: Tensor, alpha: Tensor, transpose: bool,
           what: str, batch: Optional[Tensor], num_graphs: int, tol: float,
           max_iter: int, on_nonconvergence: str) -> Tensor:
    r"""``((1 + g) I - g A) y = rhs`` is ``(I - a A) y = (1 - a) rhs``, whose
    operator costs one sparse product and one fused update per iteration.
    Each column block is solved on its own, starting from ``(1 - a) rhs``,
    the exact answer on isolated nodes."""
    negative_alpha = -alpha

    def operator(v: Tensor, out: Tensor) -> Tensor:
        adjacency.matmul(v, transpose=transpose, out=out)
        return torch.addcmul(v, out, negative_alpha, out=out)

    blocks = ColumnBlocks(rhs).reserve(whole=4, blocked=6)
    out = rhs.new_empty(rhs.shape)
    reached = 0.0
    for columns in blocks.slices:
        buffers = blocks.buffers(columns)
        workspace = buffers[:4]
        if blocks.whole:
            scaled_rhs, solution = rhs * (1 - alpha), out
        else:
            scaled_rhs, solution = buffers[4:]
            scaled_rhs.copy_(rhs[:, columns]).mul_(1 - alpha)
        solution.copy_(scaled_rhs)
        reached = max(reached, conjugate_gradient(
            operator, scaled_rhs, solution, workspace, batch, num_graphs,
            tol, max_iter, what))
        if not blocks.whole:
            out[:, columns] = solution
    if reached > tol:
        report_nonconvergence(reached, tol, max_iter, on_nonconvergence)
    return out
