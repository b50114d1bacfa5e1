import math

import pytest
import torch
import torch.nn.functional as F

from reproductions import registry
from reproductions.common.attention import MultiHeadAttention
from reproductions.common.averaging import average_checkpoints, average_state_dicts
from reproductions.common.beam import beam_search
from reproductions.common.data.vocab import BOS_ID, EOS_ID
from reproductions.common.optim import inverse_sqrt
from reproductions.translation.config import TranslationDecodeConfig
from reproductions.translation.module import TranslationModule
from reproductions.vaswani2017.model import sinusoidal_positions


def _copy_into(ours: MultiHeadAttention, ref: torch.nn.MultiheadAttention) -> None:
    w_q, w_k, w_v = ref.in_proj_weight.chunk(3)
    b_q, b_k, b_v = ref.in_proj_bias.chunk(3)
    with torch.no_grad():
        for lin, w, b in ((ours.W_q, w_q, b_q), (ours.W_k, w_k, b_k), (ours.W_v, w_v, b_v),
                          (ours.W_o, ref.out_proj.weight, ref.out_proj.bias)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)


def test_multi_head_attention_matches_torch_with_padding_and_causal_masks():
    torch.manual_seed(0)
    d_model, heads, batch, tgt_len, src_len = 16, 4, 3, 5, 7
    ours, ref = MultiHeadAttention(d_model, heads), torch.nn.MultiheadAttention(d_model, heads, batch_first=True)
    _copy_into(ours, ref)
    query, memory = torch.randn(batch, tgt_len, d_model), torch.randn(batch, src_len, d_model)
    valid = torch.arange(src_len).unsqueeze(0) < torch.tensor([[7], [4], [1]])  # (B, S) True = real token

    out, weights = ours(query, memory, memory, valid.unsqueeze(1))
    ref_out, ref_weights = ref(query, memory, memory, key_padding_mask=~valid, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)

    causal = torch.ones(tgt_len, tgt_len, dtype=torch.bool).tril()
    out, _ = ours(query, query, query, causal.unsqueeze(0))
    ref_out, _ = ref(query, query, query, attn_mask=~causal)
    torch.testing.assert_close(out, ref_out)


def test_heads_match_scaled_dot_product_attention():
    torch.manual_seed(1)
    mha = MultiHeadAttention(12, 3)
    x = torch.randn(2, 6, 12)
    mask = torch.ones(2, 1, 6, dtype=torch.bool)
    mask[1, :, 4:] = False
    out, _ = mha(x, x, x, mask)
    split = lambda t: t.view(2, 6, 3, 4).transpose(1, 2)  # noqa: E731
    heads = F.scaled_dot_product_attention(split(mha.W_q(x)), split(mha.W_k(x)), split(mha.W_v(x)),
                                           attn_mask=mask.unsqueeze(1))
    torch.testing.assert_close(out, mha.W_o(heads.transpose(1, 2).reshape(2, 6, 12)))


def test_sinusoidal_positions_follow_section_3_5():
    pe = sinusoidal_positions(50, 8)
    pos, i = 17, 2
    assert math.isclose(pe[pos, 2 * i].item(), math.sin(pos / 10000 ** (2 * i / 8)), rel_tol=1e-5)
    assert math.isclose(pe[pos, 2 * i + 1].item(), math.cos(pos / 10000 ** (2 * i / 8)), rel_tol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 100, 3999, 4000, 4001, 20000])
def test_learning_rate_of_the_nth_update_is_equation_3(n):
    cfg = registry.get("vaswani2017").load_config("paper")
    model = torch.nn.Linear(2, 2)
    module = TranslationModule(model, cfg, "vaswani2017", None, None)
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    for _ in range(n - 1):
        optimizer.step()
        scheduler.step()
    d_model, warmup = cfg.model.d_model, cfg.optim.warmup_steps
    expected = d_model**-0.5 * min(n**-0.5, n * warmup**-1.5)  # Eq. 3 with step_num = n
    assert math.isclose(optimizer.param_groups[0]["lr"], expected, rel_tol=1e-3)
    assert math.isclose(inverse_sqrt(n - 1, warmup) * d_model**-0.5, expected, rel_tol=1e-3)


def test_shared_embeddings_need_a_joint_vocabulary():
    from reproductions.common.config import ConfigError

    repro = registry.get("vaswani2017")
    with pytest.raises(ConfigError, match="joint_vocab"):
        repro.build(repro.load_config("tiny"), 30, 40)
    model = repro.build(repro.load_config("tiny"), 30, 30)
    assert model.src_embed.weight is model.tgt_embed.weight


def test_checkpoint_averaging_gives_the_parameter_mean(tmp_path):
    states = [{"w": torch.full((2, 2), float(i)), "steps": torch.tensor(i)} for i in (1, 2, 6)]
    averaged = average_state_dicts(states)
    torch.testing.assert_close(averaged["w"], torch.full((2, 2), 3.0))
    assert averaged["steps"].item() == 6  # integer buffers are taken from the last checkpoint
    paths = []
    for i, state in enumerate(states):
        path = tmp_path / f"{i}.ckpt"
        torch.save({"state_dict": state, "attnrepro": {"format": 1}, "optimizer_states": [1]}, path)
        paths.append(path)
    out = average_checkpoints(paths, tmp_path / "avg.ckpt")
    merged = torch.load(out, weights_only=False)
    torch.testing.assert_close(merged["state_dict"]["w"], torch.full((2, 2), 3.0))
    assert "optimizer_states" not in merged and merged["attnrepro"]["averaged_from"] == ["0.ckpt", "1.ckpt", "2.ckpt"]


@pytest.mark.slow
def test_transformer_learns_to_copy():
    torch.manual_seed(0)
    vocab = 16
    repro = registry.get("vaswani2017")
    cfg = repro.load_config("tiny", ["model.layers=2", "model.d_model=32", "model.d_ff=64", "model.heads=4",
                                     "model.dropout=0.0"])
    model = repro.build(cfg, vocab, vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    gen = torch.Generator().manual_seed(0)

    def copy_batch(batch):
        body = torch.randint(4, vocab, (batch, 7), generator=gen)
        src = torch.cat([body, torch.full((batch, 1), EOS_ID)], 1)
        return src, torch.cat([torch.full((batch, 1), BOS_ID), body], 1), src

    for _ in range(250):
        src, tgt_in, tgt_out = copy_batch(64)
        logits, _ = model(src, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    src, _, _ = copy_batch(100)
    hyps = beam_search(model, src, TranslationDecodeConfig(beam=1))
    exact = sum(h.tokens == s[:-1].tolist() for h, s in zip(hyps, src))
    assert exact >= 90, f"only {exact}/100 copied exactly (final loss {loss.item():.3f})"


def test_cached_step_attention_is_the_teacher_forced_attention():
    """The key/value cache gives the same log-probabilities and the same viewed encoder-decoder attention
    (the maps of the figures) as the teacher-forced pass, for a chosen layer and head and for the mean."""
    torch.manual_seed(0)
    repro = registry.get("vaswani2017")
    model = repro.build(repro.load_config("tiny", ["model.dropout=0.0"]), 30, 30).eval()
    src = torch.randint(4, 30, (2, 6))
    src[1, 4:] = 0
    tgt_in = torch.cat([torch.full((2, 1), BOS_ID), torch.randint(4, 30, (2, 4))], 1)
    for view in [(-1, None), (0, 1)]:
        model.attention_view = view
        with torch.no_grad():
            logits, attention = model(src, tgt_in, need_weights=True)
            assert model(src, tgt_in)[1] is None  # training never forms the weights
            state = model.start(src)
            for t in range(tgt_in.size(1)):
                log_probs, state, step_attention = model.step(state, tgt_in[:, t])
                torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1), atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(step_attention, attention[:, t], atol=1e-6, rtol=1e-5)
        assert state["self_k0"].shape[2] == tgt_in.size(1)  # one cached key per decoded position
        assert (attention[1, :, 4:] == 0).all()
