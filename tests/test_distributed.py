"""Distributed data parallel training on CPU processes (gloo)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.data import Batch

import ddp_helpers
from pyg_sm import make_synthetic_slides
from pyg_sm.train import make_optimizer, train_step


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


def test_cli_train_under_torchrun(tmp_path):
    data = make_synthetic_slides(tmp_path / 'data', num_slides=8,
                                 feature_dim=6)
    out = tmp_path / 'run'
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    done = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         '--nproc-per-node', '2', '-m', 'pyg_sm', 'train', str(data),
         '--out', str(out), '--epochs', '2', '--att-dim', '8',
         '--heatmaps', '1'], capture_output=True, text=True, env=env,
        timeout=300, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / 'results.json').read_text())
    assert results['world_size'] == 2
    assert (out / 'checkpoint.pt').is_file()
    assert done.stdout.count('checkpoint:') == 1  # written by rank 0 only
