"""Process bodies for the distributed tests (importable by spawned
processes)."""
import torch
from torch_geometric.data import Data
from torch_geometric.utils import grid, remove_self_loops

from pyg_sm import SmABMIL

OPTIONS = dict(att_dim=8, sm_layers=1, sm_post=True)
EPOCHS, BATCH_SIZE, SEED = 2, 2, 7


def bags():
    gen = torch.Generator().manual_seed(1)
    out = []
    for i, side in enumerate([4, 5, 6, 5, 4, 6, 5, 4]):
        edge_index, _ = remove_self_loops(grid(side, side)[0])
        out.append(Data(x=torch.randn(side * side, 5, generator=gen),
                        edge_index=edge_index,
                        y=torch.tensor([float(i % 2)])))
    return out


def fresh_model():
    torch.manual_seed(SEED)
    return SmABMIL((5, ), **OPTIONS)


def train_rank(rank, world_size, init_file, result_file):
    from pyg_sm.train import train_model

    torch.distributed.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank,
        world_size=world_size)
    try:
        model = fresh_model()
        train_model(model, bags(), epochs=EPOCHS, batch_size=BATCH_SIZE,
                    seed=SEED, progress=False)
        if rank == 0:
            torch.save(model.state_dict(), result_file)
    finally:
        torch.distributed.destroy_process_group()
