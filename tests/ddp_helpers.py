"""Process bodies for the distributed tests (importable by spawned
processes)."""
import torch
from torch_geometric.data import Data
from torch_geometric.utils import grid, remove_self_loops

from pyg_sm import SmABMIL
from pyg_sm.models import MODELS, build_model

OPTIONS = dict(att_dim=8, sm_layers=1, sm_post=True)
EPOCHS, BATCH_SIZE, SEED = 2, 2, 7
_SMALL = {'sm_abmil': dict(att_dim=8),
          'sm_transformer_abmil': dict(pool_att_dim=8, transf_att_dim=8,
                                       transf_n_layers=1, transf_n_heads=2),
          'prob_smooth_abmil': dict(att_dim=8, n_samples_train=7,
                                    n_samples_test=9),
          'smooth_abmil': dict(att_dim=8),
          'transformer_prob_smooth_abmil': dict(
              pool_att_dim=8, transf_att_dim=8, transf_n_heads=2,
              n_samples_train=7, n_samples_test=9)}
#: The cases that draw attention samples from each process's generator:
#: they cannot equal one process; DDP must still keep the processes' models
#: equal.
SAMPLED = ('prob_smooth_abmil:prob', 'transformer_prob_smooth_abmil:prob')
#: Every preset of both models, and the transformer without its MLP: DDP
#: stops at its second step if any parameter gets no gradient.
CASES = {f'{name}:{preset}': (name, dict(preset=preset))
         for name, spec in MODELS.items() for preset in spec.presets}
CASES.update({
    'sm_transformer_abmil:sm,no-mlp': (
        'sm_transformer_abmil', dict(preset='sm', transf_use_mlp=False)),
    'sm_transformer_abmil:reference,no-mlp': (
        'sm_transformer_abmil', dict(preset='reference',
                                     transf_use_mlp=False)),
})


def bags():
    gen = torch.Generator().manual_seed(1)
    out = []
    for i, side in enumerate([4, 5, 6, 5, 4, 6, 5, 4]):
        edge_index, _ = remove_self_loops(grid(side, side)[0])
        out.append(Data(x=torch.randn(side * side, 5, generator=gen),
                        edge_index=edge_index, slide_id=f'slide{i}',
                        y=torch.tensor([float(i % 2)])))
    return out


def fresh_model(case=None):
    torch.manual_seed(SEED)
    if case is None:
        return SmABMIL((5, ), **OPTIONS)
    name, options = CASES[case]
    options = dict(options)
    preset = options.pop('preset')
    return build_model(5, name, **MODELS[name].resolve(
        preset, **_SMALL[name], **options))


class ReadLog(torch.utils.data.Dataset):
    r"""The slides, noting which this process reads."""
    def __init__(self, slides):
        self.slides, self.read = slides, []

    def __len__(self):
        return len(self.slides)

    def __getitem__(self, index):
        self.read.append(index)
        return self.slides[index]


def train_rank(rank, world_size, init_file, result_file):
    from pyg_sm.train import train_model, validate

    torch.distributed.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank,
        world_size=world_size)
    try:
        results = {}
        for case in [None, *CASES]:
            model = fresh_model(case)
            train_model(model, bags(), epochs=EPOCHS, batch_size=BATCH_SIZE,
                        seed=SEED, progress=False)
            states = [None] * world_size
            torch.distributed.all_gather_object(states, model.state_dict())
            results[case] = states[0]
            results[('ranks agree', case)] = all(
                torch.equal(states[0][k], other[k])
                for other in states[1:] for k in states[0])
        val_set = ReadLog(bags())
        result = validate(fresh_model(), val_set)
        gathered = [None] * world_size
        torch.distributed.all_gather_object(gathered, sorted(val_set.read))
        if rank == 0:
            results['validation'] = {'result': result, 'read': gathered}
            torch.save(results, result_file)
        else:
            assert result is None
    finally:
        torch.distributed.destroy_process_group()
