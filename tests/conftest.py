import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)


@pytest.fixture(scope='session')
def scored_cohort(tmp_path_factory):
    r"""Four synthetic slides with images, and two prediction folders of
    known attention ('focused' on the lesions, 'reversed')."""
    from viewer_helpers import make_cohort, make_runs

    root = tmp_path_factory.mktemp('scored')
    data = make_cohort(root)
    return data, make_runs(root, data)


@pytest.fixture(scope='session')
def viewer(scored_cohort):
    r"""The viewer over both runs and the slide images, in a thread."""
    from viewer_helpers import RunningViewer

    data, runs = scored_cohort
    with RunningViewer(runs, data / 'slides') as server:
        yield server
