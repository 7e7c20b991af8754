"""The Lightning engine: resuming within and at the end of an epoch (with
dropout), early stopping, the schedules and optimizers, gradient
accumulation, mixed precision, class weights, balanced sampling, the
loggers, and the multi-node descriptions."""
import csv
import math

import pytest
import torch

import ddp_helpers
from pyg_sm import PygSmError, SmTransformerABMIL
from pyg_sm.train import (
    ClassificationTask,
    EpochOrder,
    FitSettings,
    Interrupted,
    distributed,
    engine,
    fit,
    model_weights,
)

QUIET = dict(log=lambda _: None)


def dropout_model():
    torch.manual_seed(3)
    return SmTransformerABMIL((5, ), transf_att_dim=8, transf_n_layers=1,
                              transf_n_heads=2, transf_dropout=0.3,
                              pool_att_dim=8)


def plain(**settings):
    return FitSettings(**{'batch_size': 2, 'monitor': 'last',
                          'validate_every': 0, 'loggers': (), **settings})


def interrupt_after(monkeypatch, steps):
    r"""Ctrl-C as the :obj:`steps`-th step of the run ends."""
    seen = [0]
    original = engine.StopOnInterrupt.on_train_batch_end

    def hook(self, trainer, module, outputs, batch, index):
        seen[0] += 1
        if seen[0] == steps:
            self.requested = True
        return original(self, trainer, module, outputs, batch, index)
    monkeypatch.setattr(engine.StopOnInterrupt, 'on_train_batch_end', hook)


# 4 steps per epoch: 2 is mid-epoch, 4 an epoch's last step (the epoch
# ends, validates and saves before the run stops), 6 in the second epoch.
@pytest.mark.parametrize('steps', [2, 4, 6])
def test_a_resumed_run_equals_an_uninterrupted_one(steps, tmp_path,
                                                   monkeypatch):
    settings = plain(epochs=3, monitor='val_loss', validate_every=1)
    bags = ddp_helpers.bags()
    whole = dropout_model()
    fit(whole, bags, settings, val_set=bags[:3], run_dir=tmp_path / 'a',
        **QUIET)
    with monkeypatch.context() as patch:
        interrupt_after(patch, steps)
        with pytest.raises(Interrupted):
            fit(dropout_model(), bags, settings, val_set=bags[:3],
                run_dir=tmp_path / 'b', **QUIET)
    state = torch.load(tmp_path / 'b' / 'last.pt', weights_only=True)
    assert state['step'] == (0 if steps == 4 else steps % 4)
    resumed = dropout_model()
    history = fit(resumed, bags, settings, val_set=bags[:3],
                  run_dir=tmp_path / 'b', resume=True, **QUIET)
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert [r.epoch for r in history] == [1, 2, 3]
    final = torch.load(tmp_path / 'a' / 'last.pt', weights_only=True)
    assert [e['train_loss'] for e in final['history']] == \
        [r.train_loss for r in history]
    assert model_weights(final).keys() == whole.state_dict().keys()


def test_resuming_with_other_settings_or_an_old_state_is_an_error(tmp_path):
    bags = ddp_helpers.bags()
    fit(ddp_helpers.fresh_model(), bags, plain(epochs=1), run_dir=tmp_path,
        fingerprint={'lr': 1}, **QUIET)
    with pytest.raises(PygSmError, match=r'other settings \(lr\)'):
        fit(ddp_helpers.fresh_model(), bags, plain(epochs=2),
            run_dir=tmp_path, fingerprint={'lr': 2}, resume=True, **QUIET)
    torch.save({'format': 'pyg-sm-train/1'}, tmp_path / 'last.pt')
    with pytest.raises(PygSmError, match='older pyg-sm'):
        fit(ddp_helpers.fresh_model(), bags, plain(epochs=2),
            run_dir=tmp_path, resume=True, **QUIET)


def test_patience_stops_after_validations_without_improvement():
    bags = ddp_helpers.bags()
    # A learning rate of 0: the validation loss never improves after the
    # first validation.
    history = fit(ddp_helpers.fresh_model(), bags,
                  plain(epochs=20, lr=0.0, monitor='val_loss',
                        validate_every=1, patience=2),
                  val_set=bags[:4], **QUIET)
    assert len(history) == 3
    assert [r.improved for r in history] == [True, False, False]


@pytest.mark.parametrize('optimizer, kind', [
    ('adam', torch.optim.Adam), ('adamw', torch.optim.AdamW),
    ('sgd', torch.optim.SGD)])
def test_optimizers(optimizer, kind):
    from pyg_sm.train import make_optimizer

    made = make_optimizer(ddp_helpers.fresh_model(),
                          plain(optimizer=optimizer, lr=0.01))
    assert type(made) is kind and made.defaults['lr'] == 0.01
    assert made.defaults.get('momentum', 0.9) == 0.9


@pytest.mark.parametrize('schedule', ['cosine', 'onecycle', 'plateau'])
def test_schedules_change_the_learning_rate(schedule):
    bags = ddp_helpers.bags()
    model = ddp_helpers.fresh_model()
    settings = plain(epochs=4, lr_scheduler=schedule, lr=0.01,
                     monitor='val_loss', validate_every=1)
    rates, schedulers = [], []
    original = engine.MILModule.on_train_epoch_end

    def record(module):
        original(module)
        rates.append(module.trainer.optimizers[0].param_groups[0]['lr'])
        schedulers.append(module.trainer.lr_scheduler_configs[0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine.MILModule, 'on_train_epoch_end', record)
        fit(model, bags, settings, val_set=bags[:4], **QUIET)
    if schedule == 'cosine':  # (read after each epoch's step)
        assert rates == pytest.approx(
            [0.01 * (1 + math.cos(math.pi * k / 4)) / 2 for k in (1, 2, 3,
                                                                   4)])
    elif schedule == 'onecycle':
        assert max(rates) <= 0.01 and rates[-1] < 0.05 * max(rates)
        assert schedulers[0].interval == 'step'
    else:
        config = schedulers[0]
        assert isinstance(config.scheduler,
                          torch.optim.lr_scheduler.ReduceLROnPlateau)
        assert config.monitor == 'val_loss' and not config.strict


def test_plateau_and_patience_need_a_validated_monitor():
    with pytest.raises(PygSmError, match='--patience 3 watches'):
        FitSettings(monitor='last', validate_every=0, patience=3)
    with pytest.raises(PygSmError, match='--lr-scheduler plateau watches'):
        FitSettings(monitor='last', validate_every=0, lr_scheduler='plateau')
    with pytest.raises(PygSmError, match="'precision'"):
        FitSettings(precision='8')
    with pytest.raises(PygSmError, match='CUDA only'):
        fit(ddp_helpers.fresh_model(), ddp_helpers.bags(),
            plain(precision='16-mixed'), **QUIET)


def test_accumulating_two_batches_of_one_equals_one_batch_of_two():
    bags = ddp_helpers.bags()
    pairs = ddp_helpers.fresh_model()
    fit(pairs, bags, plain(epochs=2, batch_size=2), **QUIET)
    accumulated = ddp_helpers.fresh_model()
    fit(accumulated, bags, plain(epochs=2, batch_size=1,
                                 accumulate_grad_batches=2), **QUIET)
    for name, value in pairs.state_dict().items():
        torch.testing.assert_close(accumulated.state_dict()[name], value,
                                   rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_mixed_precision_trains_on_the_cpu():
    history = fit(ddp_helpers.fresh_model(), ddp_helpers.bags(),
                  plain(epochs=2, precision='bf16-mixed'), **QUIET)
    assert all(math.isfinite(r.train_loss) for r in history)


class Labelled(list):
    labels = [0, 0, 0, 0, 0, 0, 1, 1]


def test_balanced_class_weights_and_sampling():
    task = ClassificationTask(['a', 'b'], class_weights='balanced')
    task = task.fitted(Labelled())
    assert task.counts == [6, 2]
    criterion = task.criterion()
    assert float(criterion.pos_weight) == pytest.approx(3.0)
    three = ClassificationTask(['a', 'b', 'c'], 'balanced', counts=[6, 3, 1])
    weights = three.criterion().weight
    assert torch.allclose(weights, torch.tensor([10 / 18, 10 / 9, 10 / 3]))

    order = EpochOrder(8, seed=0, weights=[1 / 6] * 6 + [1 / 2] * 2)
    drawn = []
    for epoch in range(50):
        order.set_epoch(epoch)
        drawn += list(order)
    share = sum(i >= 6 for i in drawn) / len(drawn)
    assert 0.4 < share < 0.6  # the minority class drawn half the time


def test_csv_and_tensorboard_loggers_write_the_curves(tmp_path):
    bags = ddp_helpers.bags()
    fit(ddp_helpers.fresh_model(), bags,
        plain(epochs=2, monitor='val_loss', validate_every=1,
              loggers=('csv', 'tensorboard')), val_set=bags[:4],
        run_dir=tmp_path, **QUIET)
    with open(tmp_path / 'logs' / 'csv' / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['epoch']) for r in rows] == [0, 1]
    assert all(float(r['train_loss']) > 0 and r['val_loss'] for r in rows)
    events = list((tmp_path / 'logs' / 'tensorboard').glob('events.*'))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    assert {'train_loss', 'val_loss', 'val_auroc'} <= \
        set(accumulator.Tags()['scalars'])


def test_slurm_tasks_are_described_as_torchrun_would(monkeypatch):
    import os

    # What describe_slurm sets must not outlive the test (a later
    # process would wait for the peers of a 4-process group).
    monkeypatch.setattr(os, 'environ', dict(os.environ))
    for name in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE',
                 'GROUP_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        os.environ.pop(name, None)
    monkeypatch.setenv('SLURM_NTASKS', '4')
    monkeypatch.setenv('SLURM_NTASKS_PER_NODE', '2')
    monkeypatch.setenv('SLURM_PROCID', '3')
    monkeypatch.setenv('SLURM_LOCALID', '1')
    monkeypatch.setenv('SLURM_NODEID', '1')
    monkeypatch.setenv('SLURM_NODELIST', 'gpu[07-08]')
    monkeypatch.setenv('SLURM_JOB_ID', '4321')
    monkeypatch.setenv('SLURM_JOB_NAME', 'train')
    distributed.describe_slurm()
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'],
            os.environ['LOCAL_RANK'], os.environ['LOCAL_WORLD_SIZE'],
            os.environ['GROUP_RANK'], os.environ['MASTER_ADDR']) == \
        ('3', '4', '1', '2', '1', 'gpu07')


def test_num_nodes_must_agree_with_the_processes(monkeypatch):
    environment = engine.ProcessGroupEnvironment(num_nodes=2)
    monkeypatch.setattr(environment, 'world_size', lambda: 4)
    environment.validate_settings(num_devices=2, num_nodes=2)
    with pytest.raises(PygSmError, match='--num-nodes 3 .* the run has 4'):
        environment.validate_settings(num_devices=2, num_nodes=3)


@pytest.mark.parametrize('validated', [False, True])
def test_a_resumed_run_appends_to_its_csv_curves(tmp_path, monkeypatch,
                                                 validated):
    bags = ddp_helpers.bags()
    # Validated every other epoch: the rows before and after the resume
    # have other columns.
    settings = plain(epochs=3, loggers=('csv', ), **(dict(
        monitor='val_loss', validate_every=2) if validated else {}))
    with monkeypatch.context() as patch:
        interrupt_after(patch, 6)
        with pytest.raises(Interrupted):
            fit(ddp_helpers.fresh_model(), bags, settings, run_dir=tmp_path,
                val_set=bags[:3], **QUIET)
    fit(ddp_helpers.fresh_model(), bags, settings, run_dir=tmp_path,
        val_set=bags[:3], resume=True, **QUIET)
    with open(tmp_path / 'logs' / 'csv' / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['epoch']) for r in rows] == [0, 1, 2]
    assert [bool(r.get('val_loss')) for r in rows] == \
        [False, validated, False]


def test_a_second_ctrl_c_stops_at_once_and_restores_the_handler(tmp_path):
    import os
    import signal

    from lightning.pytorch.callbacks import Callback

    from pyg_sm.train.settings import StoppedAtOnce

    class Twice(Callback):
        def on_train_batch_start(self, trainer, module, batch, index):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(StoppedAtOnce, match='stopped at once'):
        fit(ddp_helpers.fresh_model(), ddp_helpers.bags(), plain(epochs=3),
            run_dir=tmp_path, callbacks=[Twice()], **QUIET)
    assert signal.getsignal(signal.SIGINT) is before
