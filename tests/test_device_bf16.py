"""bf16=True means bfloat16 autocast where the device computes it natively, float32 elsewhere, said once."""
from __future__ import annotations

import warnings

import pytest
import torch

from s2ilib.core import device as D


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(D, "_warned", set())
    monkeypatch.delenv(D.BF16_ENV, raising=False)


def test_native_cpu_runs_bf16_without_a_word(fresh, monkeypatch):
    monkeypatch.setattr(D, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert D.use_bf16(True, "cpu") is True
    assert D.use_bf16(False, "cpu") is False
    with D.bf16_autocast(True, "cpu"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")


def test_cpu_without_native_bf16_runs_float32_and_says_so_once(fresh, monkeypatch):
    monkeypatch.setattr(D, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.warns(UserWarning, match="no native bfloat16.*S2I_BF16=force"):
        assert D.use_bf16(True, "cpu") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per device type, not at every batch
        assert D.use_bf16(True, torch.device("cpu")) is False
        with D.bf16_autocast(True, "cpu"):
            assert not torch.is_autocast_enabled("cpu")
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_environment_switch(fresh, monkeypatch):
    monkeypatch.setattr(D, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setenv(D.BF16_ENV, "force")
    assert D.use_bf16(True, "cpu") is True and D.use_bf16(False, "cpu") is False
    monkeypatch.setattr(D, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setenv(D.BF16_ENV, "off")
    assert D.use_bf16(True, "cpu") is False
    monkeypatch.setenv(D.BF16_ENV, "sometimes")
    with pytest.raises(D.DeviceError, match="S2I_BF16='sometimes'"):
        D.use_bf16(True, "cpu")
