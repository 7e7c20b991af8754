"""
SmABMIL in a plain PyG pipeline
===============================

Bags are slide-like patch grids of different sizes, each a `Data` with a
4-neighbour graph; positive bags hold one contiguous lesion whose patches are
only slightly shifted, so single patches are ambiguous and neighbours matter.
A GCN layer runs in front of the Sm attention pool, the bags are batched by
PyG's `DataLoader`, and after training the attention values are read back per
bag and compared with the lesion masks.

.. code-block:: bash

    python examples/pyg_pipeline.py [--epochs 15] [--bags 120]
"""
import argparse

import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GCNConv
from torch_geometric.utils import grid, remove_self_loops, unbatch

from pyg_sm import SmABMIL


def make_bag(generator: torch.Generator, positive: bool, dim: int) -> Data:
    height, width = (int(s) for s in torch.randint(12, 24, (2, ),
                                                   generator=generator))
    edge_index, pos = grid(height, width)
    edge_index, _ = remove_self_loops(edge_index)
    # grid() links the 8 neighbours; keep the 4 axis-aligned ones.
    step = (pos[edge_index[0]] - pos[edge_index[1]]).abs().sum(dim=1)
    edge_index = edge_index[:, step == 1]
    lesion = torch.zeros(height * width, dtype=torch.bool)
    if positive:
        center = torch.rand(2, generator=generator) * torch.tensor(
            [width - 1.0, height - 1.0])
        radius = 2.0 + 2.0 * float(torch.rand(1, generator=generator))
        lesion = (pos - center).norm(dim=1) <= radius
    x = torch.randn(height * width, dim, generator=generator)
    x[lesion, :4] += 0.8  # weak per patch, strong over a neighbourhood
    return Data(x=x, edge_index=edge_index, y=torch.tensor([float(positive)]),
                lesion=lesion, grid_shape=torch.tensor([[height, width]]))


class GraphSmMIL(torch.nn.Module):
    """A GNN layer in front of SmABMIL; both read the same edge_index."""
    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.gnn = GCNConv(in_dim, hidden)
        self.mil = SmABMIL((hidden, ), att_dim=32, sm_post=True, sm_layers=1)

    def forward(self, batch):
        h = self.gnn(batch.x, batch.edge_index).relu()
        return self.mil(h, batch.edge_index, batch=batch.batch,
                        return_att=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='SmABMIL in a plain PyG pipeline')
    parser.add_argument('--epochs', type=int, default=15)
    parser.add_argument('--bags', type=int, default=120)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    dim = 16
    bags = [make_bag(generator, i % 2 == 1, dim) for i in range(args.bags)]
    split = int(0.75 * len(bags))
    train_loader = DataLoader(bags[:split], batch_size=8, shuffle=True)
    test_loader = DataLoader(bags[split:], batch_size=8)

    model = GraphSmMIL(dim, hidden=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for batch in train_loader:
            optimizer.zero_grad()
            logits, _ = model(batch)
            loss = model.mil.criterion(logits, batch.y)
            loss.backward()
            optimizer.step()
            total += loss.item() * batch.num_graphs
        print(f'epoch {epoch:2d}  train loss {total / split:.3f}')

    model.eval()
    correct, inside, outside, shown = 0, [], [], None
    with torch.no_grad():
        for batch in test_loader:
            logits, att = model(batch)
            correct += int(((logits > 0).float() == batch.y).sum())
            # Attention per bag, aligned with each bag's own nodes.
            for bag_att, lesion, shape in zip(
                    unbatch(att, batch.batch),
                    unbatch(batch.lesion, batch.batch), batch.grid_shape):
                if lesion.any():
                    shown = shown or (bag_att, lesion, shape.tolist())
                    inside.append(float(bag_att[lesion].mean()))
                    outside.append(float(bag_att[~lesion].mean()))
    accuracy = correct / (len(bags) - split)
    hits = sum(i > o for i, o in zip(inside, outside))
    print(f'test bag accuracy {accuracy:.2f}; in {hits} of {len(inside)} '
          f'positive test bags the mean attention inside the lesion is '
          f'higher than outside it')
    show(*shown)
    return accuracy, hits / max(len(inside), 1)


def show(attention, lesion, shape):
    """The attention of a positive test bag next to its lesion, on the
    bag's grid (grid() numbers the nodes row by row)."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    for ax, values, title in ((axes[0], lesion.float(), 'lesion'),
                              (axes[1], attention, 'attention logits')):
        ax.imshow(values.reshape(shape), cmap='turbo')
        ax.set_title(title)
        ax.axis('off')
    figure.tight_layout()


if __name__ == '__main__':
    main()
