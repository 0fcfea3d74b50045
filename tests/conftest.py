import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (small models: thread start-up costs more than it gains)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def force_bf16(monkeypatch):
    """Run bfloat16 autocast even where the CPU has no native bf16 (s2ilib.core.device.use_bf16 would
    run float32 there): a test of the bf16 path must test it on every machine."""
    monkeypatch.setenv("S2I_BF16", "force")
