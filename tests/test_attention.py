import math

import pytest
import torch
import torch.nn.functional as F

from reproductions.common.attention import AdditiveAttention, DotAttention


def _identity_additive() -> AdditiveAttention:
    attn = AdditiveAttention(query_dim=2, key_dim=2, hidden=2)
    with torch.no_grad():
        attn.W_a.weight.copy_(torch.eye(2))
        attn.U_a.weight.copy_(torch.eye(2))
        attn.v_a.weight.copy_(torch.tensor([[1.0, 1.0]]))
    return attn


def test_additive_attention_exact_values():
    attn = _identity_additive()
    query = torch.zeros(1, 2)
    keys = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [5.0, -3.0]]])
    values = torch.tensor([[[2.0, 0.0], [0.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    context, weights = attn(query, keys, values, mask)
    # e_1 = v^T tanh(0 + [1, 1]) = 2 tanh(1); e_2 = 0; position 3 is padding.
    w1 = 1 / (1 + math.exp(-2 * math.tanh(1.0)))
    torch.testing.assert_close(weights, torch.tensor([[w1, 1 - w1, 0.0]]))
    torch.testing.assert_close(context, torch.tensor([[2 * w1, 4 * (1 - w1)]]))


def test_additive_attention_projected_keys_are_the_same_computation():
    torch.manual_seed(0)
    attn = AdditiveAttention(query_dim=3, key_dim=4, hidden=5)
    query, keys = torch.randn(2, 3), torch.randn(2, 6, 4)
    mask = torch.ones(2, 6, dtype=torch.bool)
    a = attn(query, keys, keys, mask)
    b = attn(query, keys, keys, mask, projected_keys=attn.project_keys(keys))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("attn, query_dim", [
    (AdditiveAttention(query_dim=4, key_dim=6, hidden=5), 4),
    (DotAttention(query_dim=4, key_dim=6, general=True), 4),
    (DotAttention(query_dim=6, key_dim=6, scaled=True), 6),
])
def test_weights_sum_to_one_and_padding_gets_exactly_zero(attn, query_dim):
    torch.manual_seed(1)
    batch, src_len = 3, 7
    query = torch.randn(batch, query_dim)
    keys = torch.randn(batch, src_len, 6) * 10  # large scores: padding must still get exactly 0
    lengths = torch.tensor([7, 4, 1])
    mask = torch.arange(src_len).unsqueeze(0) < lengths.unsqueeze(1)
    context, weights = attn(query, keys, keys, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch))
    assert (weights[~mask] == 0).all()
    assert context.shape == (batch, 6)


def test_scaled_dot_attention_matches_torch_sdpa():
    torch.manual_seed(2)
    attn = DotAttention(query_dim=8, key_dim=8, scaled=True)
    query, keys, values = torch.randn(2, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    context, _ = attn(query, keys, values, mask)
    expected = F.scaled_dot_product_attention(
        query.unsqueeze(1), keys, values, attn_mask=mask.unsqueeze(1)
    ).squeeze(1)
    torch.testing.assert_close(context, expected)


def _mha_inputs(seed: int = 0):
    from reproductions.common.attention import MultiHeadAttention

    torch.manual_seed(seed)
    mha = MultiHeadAttention(16, 4).eval()
    query, memory = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    valid = torch.arange(7).unsqueeze(0) < torch.tensor([[7], [4], [1]])  # (B, S)
    return mha, query, memory, valid.unsqueeze(1)  # mask (B, 1, S)


def test_fused_multi_head_attention_computes_the_explicit_equation():
    mha, query, memory, mask = _mha_inputs()
    fused, none = mha(query, memory, memory, mask, need_weights=False)
    explicit, weights = mha(query, memory, memory, mask, need_weights=True)
    assert none is None and weights.shape == (3, 4, 5, 7)
    torch.testing.assert_close(fused, explicit)
    causal_fused, _ = mha(query, query, query, need_weights=False, is_causal=True)
    causal_explicit, causal_weights = mha(query, query, query, need_weights=True, is_causal=True)
    torch.testing.assert_close(causal_fused, causal_explicit)
    assert (causal_weights.triu(1) == 0).all()  # no position attends to a later one
    by_hand, _ = mha(query, query, query, torch.ones(5, 5, dtype=torch.bool).tril().unsqueeze(0))
    torch.testing.assert_close(causal_fused, by_hand)


def test_attention_under_bf16_autocast_keeps_fp32_softmax_and_exact_zeros():
    mha, query, memory, mask = _mha_inputs(1)
    reference, _ = mha(query, memory, memory, mask, need_weights=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, _ = mha(query, memory, memory, mask, need_weights=False)
        explicit, weights = mha(query, memory, memory, mask, need_weights=True)
    for out in (fused, explicit):
        assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
        torch.testing.assert_close(out.float(), reference, atol=0.06, rtol=0.05)
    assert (weights.float()[2, :, :, 1:] == 0).all()  # the one-token sentence: every masked position exactly 0
    torch.testing.assert_close(weights.float().sum(-1), torch.ones(3, 4, 5), atol=1e-2, rtol=0)
