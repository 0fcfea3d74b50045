"""SpeechEncoder (CNNRNN), TextEncoder, ClassifierEncoder and Tokenizer."""
import pytest
import torch

from s2ilib.models.encoders import ClassifierEncoder, SpeechEncoder, TextEncoder, Tokenizer

SMALL = dict(cnn_channels=[4, 4, 8, 8, 8, 16, 16, 16], rnn_type="gru", rnn_hidden=8, out_dim=12)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _trained_bn(model, x, n):
    """A few training-mode forwards so the BN running statistics are not the defaults."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x, n)
    return model.eval()


def test_shapes_projection_and_64x_reduction():
    enc = SpeechEncoder(**SMALL)
    x = torch.randn(3, 40, 300)
    out = enc(x, torch.tensor([300, 130, 64]))
    assert out.shape == (3, 12)
    assert isinstance(enc.proj, torch.nn.Linear)
    assert isinstance(SpeechEncoder(**{**SMALL, "out_dim": 16}).proj, torch.nn.Identity)
    # time after the conv stack: 2048 frames -> 32 steps, as the authors' comments
    h, lengths = torch.randn(1, 40, 2048), torch.tensor([2048])
    h = enc.input_norm(h, torch.ones(1, 2048, dtype=torch.bool))
    for block in enc.blocks:
        h = block(h) if isinstance(block, torch.nn.MaxPool1d) else block(h, lengths)[0]
    assert h.shape[-1] == 32


def test_embedding_ignores_appended_padding():
    """The authors averaged RNN outputs over padding; ours must not change with more padding."""
    enc = SpeechEncoder(**SMALL)
    x, n = torch.randn(3, 40, 300), torch.tensor([300, 200, 70])
    _trained_bn(enc, x, n)
    longer = torch.cat([x, torch.randn(3, 40, 400) * 5], dim=-1)  # junk beyond n_frames
    with torch.no_grad():
        a, b = enc(x, n), enc(longer, n)
    assert torch.allclose(a, b, atol=1e-4)
    # and each row equals the utterance encoded alone without any padding
    with torch.no_grad():
        alone = enc(x[2:3, :, :70], n[2:3])
    assert torch.allclose(a[2:3], alone, atol=1e-4)


def test_training_batch_statistics_ignore_padding():
    enc = SpeechEncoder(**SMALL).train()
    x, n = torch.randn(2, 40, 256), torch.tensor([256, 128])
    a = enc(x, n)
    b = enc(torch.cat([x, torch.full((2, 40, 200), 9.0)], -1), n)
    assert torch.allclose(a, b, atol=1e-4)


def test_short_utterance_gets_one_step_and_gradients_flow():
    enc = SpeechEncoder(**SMALL).train()
    x = torch.randn(2, 40, 80, requires_grad=True)
    out = enc(x, torch.tensor([80, 40]))  # 40 frames < 64: RNN length clamped to 1
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_bf16_autocast_close_to_float32():
    enc = SpeechEncoder(**SMALL)
    x, n = torch.randn(2, 40, 256), torch.tensor([256, 180])
    _trained_bn(enc, x, n)
    with torch.no_grad():
        ref = enc(x, n)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = enc(x, n).float()
    assert torch.nn.functional.cosine_similarity(ref, low).min() > 0.99


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="40"):
        SpeechEncoder(**SMALL)(torch.randn(2, 30, 100), torch.tensor([100, 100]))
    with pytest.raises(ValueError, match="8 widths"):
        SpeechEncoder(cnn_channels=[4, 4], out_dim=8)
    with pytest.raises(ValueError, match="rnn_type"):
        SpeechEncoder(**{**SMALL, "rnn_type": "transformer"})


def test_lstm_variant():
    enc = SpeechEncoder(**{**SMALL, "rnn_type": "lstm"})
    assert enc(torch.randn(2, 40, 128), torch.tensor([128, 100])).shape == (2, 12)


def test_classifier_encoder_logits_and_embedding():
    model = ClassifierEncoder(5, **SMALL)
    x, n = torch.randn(3, 40, 128), torch.tensor([128, 128, 90])
    assert model(x, n).shape == (3, 5)
    assert model.embed(x, n).shape == (3, 12)


def test_tokenizer_unknown_words_and_round_trip():
    tok = Tokenizer.build(["A small red bird.", "the bird has a red crown"])
    ids = tok.encode("a RED bird with zebra stripes")
    assert ids[:3] == [tok.ids["a"], tok.ids["red"], tok.ids["bird"]]
    assert ids[3:] == [Tokenizer.UNK] * 3
    assert tok.encode("") == [Tokenizer.UNK]
    again = Tokenizer.from_state_dict(tok.state_dict())
    assert again.words == tok.words and len(again) == len(tok)
    tokens, lengths = tok.batch(["a bird", "the small red bird"])
    assert tokens.shape == (2, 4) and lengths.tolist() == [2, 4] and tokens[0, 2:].eq(0).all()


def test_text_encoder_mean_over_valid_tokens():
    tok = Tokenizer.build(["a small red bird", "the bird has a red crown"])
    enc = TextEncoder(len(tok), out_dim=12, rnn_type="gru", rnn_hidden=8, emb_dim=6).eval()
    tokens, lengths = tok.batch(["a bird", "the small red bird"])
    padded = torch.cat([tokens, torch.zeros(2, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        a, b = enc(tokens, lengths), enc(padded, lengths)
    assert a.shape == (2, 12) and torch.allclose(a, b, atol=1e-6)


def test_spec_augment_masks_within_length_with_band_means_and_is_seeded():
    import numpy as np

    from s2ilib.models.embedding import spec_augment

    torch.manual_seed(0)
    x = torch.randn(3, 40, 120)
    x[2, :, 60:] = 0.0  # padding of a shorter utterance
    lengths = torch.tensor([120, 120, 60])
    kw = dict(freq_masks=2, freq_width=8, time_masks=2, time_width=30)
    a = spec_augment(x, lengths, np.random.default_rng(5), **kw)
    b = spec_augment(x, lengths, np.random.default_rng(5), **kw)
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(x[2, :, 60:], torch.zeros(40, 60)) and torch.equal(a[2, :, 60:], x[2, :, 60:])
    for i, n in enumerate(lengths.tolist()):
        changed = a[i, :, :n] != x[i, :, :n]
        means = x[i, :, :n].mean(dim=1, keepdim=True).expand(-1, n)
        assert torch.allclose(a[i, :, :n][changed], means[changed])
    # nothing to mask: the input itself, and no draws taken from the generator
    rng = np.random.default_rng(1)
    assert spec_augment(x, lengths, rng) is x and rng.integers(0, 10**9) == np.random.default_rng(1).integers(0, 10**9)
    with pytest.raises(ValueError, match="must be >= 0"):
        spec_augment(x, lengths, rng, freq_masks=-1)
