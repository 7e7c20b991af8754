"""Distributed data parallel training on CPU processes (gloo)."""
import torch
import torch.multiprocessing as mp
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.data import Batch

from pyg_sm.train import make_optimizer, train_step

import ddp_helpers


def test_ddp_matches_single_process_on_the_same_global_batches(tmp_path):
    result = tmp_path / 'ddp.pt'
    mp.spawn(ddp_helpers.train_rank,
             args=(2, str(tmp_path / 'init'), str(result)), nprocs=2)
    ddp_state = torch.load(result, weights_only=True)

    # One process, each step on the union of what the two ranks saw.
    dataset = ddp_helpers.bags()
    model = ddp_helpers.fresh_model().train()
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
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-5,
                                   atol=1e-6, msg=name)
    assert not torch.equal(ddp_state['classifier.weight'],
                           ddp_helpers.fresh_model().state_dict()[
                               'classifier.weight'])
