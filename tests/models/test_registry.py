"""The model options declared once (models.registry): defaults and help from
the constructors, build_model and checkpoints read that declaration."""
import inspect
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import grid, remove_self_loops

import pyg_sm.data.bags
import pyg_sm.nn.sm
from pyg_sm import Sm, SmABMIL
from pyg_sm.models import MODELS, ModelSpec, build_model
from pyg_sm.models.registry import SM_ABMIL
from pyg_sm.train import legacy_pickle, load_checkpoint, save_checkpoint

LEGACY = Path(__file__).resolve().parent.parent / 'data'


def test_defaults_are_the_constructors():
    model = inspect.signature(SmABMIL).parameters
    layer = inspect.signature(Sm).parameters
    for name, value in SM_ABMIL.defaults().items():
        expected = (model[name] if name in model else layer[name]).default
        assert value == expected, name
    # Every keyword of the constructor but the modules and in_shape.
    assert set(model) - set(SM_ABMIL.defaults()) == {
        'in_shape', 'feat_ext', 'criterion', 'sm_kwargs'}


def test_model_passes_every_option_to_the_pool_by_keyword():
    values = dict(att_dim=6, att_act='gelu', sm_mode='exact', sm_alpha=0.2,
                  sm_layers=2, sm_steps=7, sm_pre=True, sm_post=True,
                  sm_spectral_norm=True, normalize=False, tol=1e-4,
                  max_iter=33, on_nonconvergence='raise', fused=False)
    pool = SmABMIL((3, ), **values).pool
    assert (pool.att_dim, pool.act, pool.sm_layers, pool.sm_pre,
            pool.sm_post, pool.sm_spectral_norm, pool.normalize) == (
        6, 'gelu', 2, True, True, True, False)
    assert (pool.sm.mode, pool.sm.fixed_alpha, pool.sm.num_steps,
            pool.sm.tol, pool.sm.max_iter, pool.sm.on_nonconvergence,
            pool.sm.fused) == ('exact', 0.2, 7, 1e-4, 33, 'raise', False)


def bag_batch():
    bags = []
    for side in (5, 6):
        edge_index, _ = remove_self_loops(grid(side, side)[0])
        bags.append(Data(x=torch.randn(side * side, 4),
                         edge_index=edge_index))
    return Batch.from_data_list(bags)


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_the_graph_is_prepared_once_per_forward(mode, monkeypatch):
    calls = []
    prepare = pyg_sm.data.bags.prepare_adjacency

    def counting(*args, **kwargs):
        calls.append(1)
        return prepare(*args, **kwargs)

    monkeypatch.setattr(pyg_sm.data.bags, 'prepare_adjacency', counting)
    monkeypatch.setattr(pyg_sm.nn.sm, 'prepare_adjacency', counting)
    model = SmABMIL((4, ), att_dim=8, sm_mode=mode, sm_pre=True,
                    sm_layers=2, sm_post=True)
    batch = bag_batch()
    model(batch)  # Sm runs four times: pre, two layers, post
    assert len(calls) == 1
    model.compute_loss(torch.zeros(2), batch)
    assert len(calls) == 2


def test_checkpoint_records_the_model_and_loads_its_class(tmp_path,
                                                          monkeypatch):
    class OtherModel(SmABMIL):
        pass

    spec = ModelSpec('other', OtherModel, SM_ABMIL.options, SM_ABMIL.presets)
    monkeypatch.setitem(MODELS, 'other', spec)
    options = dict(att_dim=8, sm_layers=1)
    model = build_model(4, 'other', **options)
    save_checkpoint(tmp_path / 'c.pt', model, 4, options, dict(method='grid'))
    raw = torch.load(tmp_path / 'c.pt', weights_only=True)
    assert raw['format'] == 'pyg-sm/2' and raw['model'] == 'other'
    loaded, loaded_options, _ = load_checkpoint(tmp_path / 'c.pt')
    assert type(loaded) is OtherModel and loaded_options == options
    assert [p.name for p in tmp_path.iterdir()] == ['c.pt']  # no temp file
    raw['model'] = 'missing'
    torch.save(raw, tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match="unknown model 'missing'"):
        load_checkpoint(tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match='unknown sm_abmil options'):
        build_model(4, bogus=1)


def legacy_outputs():
    return torch.load(LEGACY / 'legacy_0.1.0_outputs.pt', weights_only=True)


def check_against_legacy_outputs(model):
    saved = legacy_outputs()
    with torch.no_grad():
        logits, att = model.eval()(saved['x'], saved['edge_index'],
                                   batch=saved['batch'], return_att=True)
    # The same computation as 0.1.0 (to float32 rounding: the reference
    # values were computed on another CPU, whose kernels round differently).
    for got, expected in ((logits, saved['logits']),
                          (att, saved['attention'])):
        scale = float(expected.abs().max())
        torch.testing.assert_close(got, expected, rtol=1e-5,
                                   atol=1e-6 * scale)


def test_checkpoint_written_by_0_1_0_still_loads():
    model, options, graph = load_checkpoint(
        LEGACY / 'legacy_0.1.0_checkpoint.pt')
    assert type(model) is SmABMIL and options['sm_alpha'] == 0.3
    assert graph['connectivity'] == 4
    check_against_legacy_outputs(model)


def test_whole_model_pickled_by_0_1_0_loads_through_legacy_pickle():
    path = LEGACY / 'legacy_0.1.0_whole_model.pt'
    with pytest.raises(ModuleNotFoundError, match='pyg_sm.abmil'):
        torch.load(path, weights_only=False)
    model = torch.load(path, weights_only=False, pickle_module=legacy_pickle)
    assert type(model) is SmABMIL
    check_against_legacy_outputs(model)
