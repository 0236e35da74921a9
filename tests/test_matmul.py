"""The oneDNN matrix products (``_matmul.py``) give torch.matmul's results, and every formulation built on them
gives the plain features (forced on, for products of every size, whatever this CPU measures faster)."""

from __future__ import annotations

import pytest
import torch

from fewshot.frontends import FRONTENDS, _fftconv, _matmul, _winograd, create_frontend
from fewshot.frontends._fast import formulations
from fewshot.frontends.tuning import set_tuning

CNNS = [n for n in FRONTENDS.names() if FRONTENDS.get(n).meta["widths"] is not None]
needs_onednn = pytest.mark.skipif(_matmul._LINEAR is None, reason="this PyTorch build has no oneDNN linear op")


@pytest.fixture
def onednn(monkeypatch):
    """oneDNN for every float32 product, however small; the process's choice restored afterwards."""
    before = _matmul._STATE["backend"]
    monkeypatch.setattr(_matmul, "MIN_MACS", 0)
    _matmul.set_backend("onednn")
    yield
    _matmul._STATE["backend"] = before


def _close(got, ref):
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()) + 1e-6)


@needs_onednn
def test_mm_and_bmm_equal_torch(onednn):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(37, 11, generator=g)
    wide = torch.randn(11, 20, generator=g)
    bias = torch.randn(7, generator=g)
    signal = torch.randn(60, generator=g)
    windows = signal.as_strided((50, 11), (1, 1))  # overlapping rows, as the temporal GEMM reads them
    for x in (a, windows, a[::2], torch.randn(11, 37, generator=g).t()):
        for w in (wide[:, :7], wide[:, 3:10].contiguous()):  # a column slice of a wider matrix, and contiguous
            _close(_matmul.mm(x, w), x @ w)
            _close(_matmul.mm(x, w, bias), x @ w + bias)
    out = torch.empty(37, 7)
    assert _matmul.mm(a, wide[:, :7], out=out).shape == (37, 7)  # out is only a hint for the oneDNN path
    b3 = torch.randn(4, 11, 9, generator=g)
    a3 = torch.randn(4, 13, 11, generator=g)
    _close(_matmul.bmm(a3, b3), torch.bmm(a3, b3))
    _close(_matmul.bmm(a3, b3[:, :, 2:7]), torch.bmm(a3, b3[:, :, 2:7]))


@needs_onednn
@pytest.mark.parametrize("name", CNNS)
def test_every_formulation_equals_plain_through_onednn(name, onednn, monkeypatch):
    monkeypatch.setattr(_winograd, "MIN_CHANNELS", {1: 8, 2: 8})  # the Winograd and FFT layers at this width
    monkeypatch.setattr(_fftconv, "MIN_CHANNELS", 8)
    fe = create_frontend(name, filters=8, seed=3)
    g = torch.Generator().manual_seed(1)
    if fe.input == "logmel":
        x = -40.0 + 10.0 * torch.randn(2, 1, 1290 if name == "vgg" else 41, 96, generator=g)
    else:
        x = 0.1 * torch.randn(2, 9000, generator=g)
    x = fe._check_input(x)
    with torch.inference_mode():
        plain = fe.forward(x, plain=True)
        cands = formulations(fe, x)
        assert len(cands) > 1
        for label, run in cands.items():
            for got, ref in zip(run(), plain, strict=True):
                ref = ref.flatten(2).mean(-1) if got.dim() == 2 else ref  # temporal GEMM: channel means
                assert got.shape == ref.shape, label
                _close(got, ref)


def test_backend_is_measured_once_and_can_be_forced():
    before = _matmul._STATE["backend"]
    try:
        _matmul.set_backend(None)
        first = _matmul.backend()
        assert first in ("torch", "onednn")
        assert _matmul.backend() == first  # remembered for the process
        _matmul.set_backend("torch")
        assert _matmul.backend() == "torch"
        with pytest.raises(ValueError, match="matmul backend must be"):
            _matmul.set_backend("mkl")
    finally:
        _matmul._STATE["backend"] = before


def test_tuning_off_keeps_torch_matmul():
    before = _matmul._STATE["backend"]
    try:
        _matmul.set_backend("onednn" if _matmul._LINEAR is not None else "torch")
        set_tuning(False)  # forgets the measured backend with every other choice
        assert _matmul.backend() == "torch"
    finally:
        set_tuning(True)
        _matmul._STATE["backend"] = before
