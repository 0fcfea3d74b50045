import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (small models: thread start-up costs more than it gains)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
