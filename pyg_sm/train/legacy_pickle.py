r"""A pickle module for :func:`torch.load` that reads whole models pickled
before the library was grouped into subpackages (pyg-sm 0.1.0's flat
modules, e.g. ``pyg_sm.abmil.SmABMIL``): ``torch.load(path,
weights_only=False, pickle_module=pyg_sm.train.legacy_pickle)``.

Only whole-object pickles need it: state dicts and ``pyg-sm`` checkpoints
hold no module paths."""
import pickle
from pickle import *  # noqa: F401,F403 (the rest of the pickle module)

#: Where each module of pyg-sm 0.1.0 went.
RENAMED_MODULES = {
    'pyg_sm.sm': 'pyg_sm.nn.sm',
    'pyg_sm._autograd': 'pyg_sm.nn._autograd',
    'pyg_sm._solver': 'pyg_sm.nn._solver',
    'pyg_sm.attention_pool': 'pyg_sm.nn.attention_pool',
    'pyg_sm.abmil': 'pyg_sm.models.sm_abmil',
    'pyg_sm._bags': 'pyg_sm.data.bags',
    'pyg_sm._graph': 'pyg_sm.data.adjacency',
    'pyg_sm.dense': 'pyg_sm.data.dense',
    'pyg_sm.synthetic': 'pyg_sm.datasets.synthetic',
    'pyg_sm.heatmaps': 'pyg_sm.visualize.heatmap',
    'pyg_sm.training': 'pyg_sm.train',
}


class Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        return super().find_class(RENAMED_MODULES.get(module, module), name)


def load(file, **kwargs):
    return Unpickler(file, **kwargs).load()
