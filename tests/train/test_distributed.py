"""Distributed data parallel training on CPU processes (gloo): every preset
of both models, and validation shared by the processes."""
import torch
import torch.multiprocessing as mp
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.data import Batch

import ddp_helpers
from pyg_sm.train import make_optimizer, train_step, validate


def single_process(case):
    """One process, each step on the union of what the two ranks saw."""
    dataset = ddp_helpers.bags()
    model = ddp_helpers.fresh_model(case).train()
    optimizer = make_optimizer(model)
    samplers = [DistributedSampler(dataset, num_replicas=2, rank=r,
                                   shuffle=True, seed=ddp_helpers.SEED)
                for r in range(2)]
    size = ddp_helpers.BATCH_SIZE
    for epoch in range(ddp_helpers.EPOCHS):
        shares = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            shares.append(list(sampler))
        for start in range(0, len(shares[0]), size):
            ids = shares[0][start:start + size] + \
                shares[1][start:start + size]
            batch = Batch.from_data_list([dataset[i] for i in ids])
            train_step(model, model.criterion, optimizer, batch)
    return model.state_dict()


def test_ddp_matches_single_process_on_every_preset(tmp_path):
    result = tmp_path / 'ddp.pt'
    mp.spawn(ddp_helpers.train_rank,
             args=(2, str(tmp_path / 'init'), str(result)), nprocs=2)
    ddp_states = torch.load(result, weights_only=False)
    for case in [None, *ddp_helpers.CASES]:
        expected = single_process(case)
        assert ddp_states[case].keys() == expected.keys()
        assert ddp_states[('ranks agree', case)], case
        assert not torch.equal(ddp_states[case]['classifier.weight'],
                               ddp_helpers.fresh_model(case).state_dict()[
                                   'classifier.weight'])
        if case in ddp_helpers.SAMPLED:  # each process its own samples
            continue
        for name, value in expected.items():
            torch.testing.assert_close(ddp_states[case][name], value,
                                       rtol=1e-5, atol=1e-6,
                                       msg=f'{case}: {name}')

    # Validation: each process scored its half, process 0 got everything.
    validation = ddp_states['validation']
    assert validation['read'] == [[0, 2, 4, 6], [1, 3, 5, 7]]
    alone = validate(ddp_helpers.fresh_model(), ddp_helpers.bags())
    shared = validation['result']
    assert [r.slide_id for r in shared.records] == \
        [r.slide_id for r in alone.records]
    assert abs(shared.values['val_loss'] - alone.values['val_loss']) < 1e-6
    assert shared.metrics['bag_auroc'] == alone.metrics['bag_auroc']
