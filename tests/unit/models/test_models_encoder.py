"""BERT-style encoder: published parameter count, masking, bidirectionality, loss."""

from __future__ import annotations

import pytest
import torch

from shoestring.errors import ConfigError, ShoestringError
from shoestring.models.encoder import Encoder, EncoderConfig

# Compares floating-point results: run again on AVX2 kernels by `make test`.
pytestmark = pytest.mark.numerics


def tiny(**kw) -> EncoderConfig:
    base = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 12, "vocab_size": 40,
            "intermediate_size": 32, "num_classes": 3, "dropout": 0.0}
    base.update(kw)
    return EncoderConfig(**base)


def test_bert_base_without_head_has_its_published_parameter_count():
    with torch.device("meta"):
        assert Encoder(EncoderConfig(num_classes=0)).num_params() == 109_482_240
        # A classifier adds 768·C weights and C biases.
        assert Encoder(EncoderConfig(num_classes=2)).num_params() == 109_482_240 + 768 * 2 + 2


def test_every_position_sees_every_other_position():
    torch.manual_seed(0)
    m = Encoder(tiny(num_classes=0)).eval()
    idx = torch.randint(2, 40, (1, 10))
    changed = idx.clone()
    changed[0, 9] = (idx[0, 9] + 1) % 40
    # The pooled output reads position 0 only; it changes with the last token.
    assert not torch.allclose(m(idx)[0], m(changed)[0])


def test_padded_positions_do_not_change_the_logits():
    torch.manual_seed(0)
    m = Encoder(tiny(pad_id=0)).eval()
    idx = torch.randint(2, 40, (2, 12))
    idx[:, 6:] = 0
    other_pad = idx.clone()
    other_pad[:, 6:] = 7  # garbage after the real tokens, masked explicitly
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, :6] = True
    a, _ = m(idx)  # mask derived from pad_id
    b, _ = m(other_pad, attention_mask=mask)
    torch.testing.assert_close(a, b)
    c, _ = m(other_pad)  # no mask: the garbage is attended to
    assert not torch.allclose(a, c)


def test_loss_is_cross_entropy_of_the_logits():
    m = Encoder(tiny()).eval()
    idx = torch.randint(0, 40, (4, 12))
    y = torch.tensor([0, 1, 2, 1])
    logits, loss = m(idx, y)
    assert logits.shape == (4, 3)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, y))


def test_token_types_change_the_output():
    m = Encoder(tiny()).eval()
    idx = torch.randint(0, 40, (1, 12))
    types = torch.zeros_like(idx)
    types[0, 6:] = 1
    assert not torch.allclose(m(idx)[0], m(idx, token_type_ids=types)[0])


def test_errors_are_clear():
    with pytest.raises(ShoestringError, match="no classifier"):
        Encoder(tiny(num_classes=0))(torch.zeros(1, 4, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ShoestringError, match="longer than block_size 12"):
        Encoder(tiny())(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ConfigError) as err:
        EncoderConfig(n_head=5, n_embd=16, num_classes=1, pad_id=99999999)
    assert len(err.value.problems) == 3
