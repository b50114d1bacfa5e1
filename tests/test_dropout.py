"""The CPU dropout mask (reproductions/common/dropout.py): nn.Dropout's distribution, seeding and gradient."""

import pytest
import torch
from torch import nn

from reproductions.common.dropout import Dropout, cpu_dropout, quantised_p


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drops_the_quantised_fraction_and_keeps_the_mean(p):
    torch.manual_seed(0)
    x = torch.full((1000, 1000), 2.0)
    y = cpu_dropout(x, p)
    q = quantised_p(p)
    assert abs(q - p) <= 0.5 / 65536
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - q) < 5 * (q * (1 - q) / x.numel()) ** 0.5  # five standard deviations
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 2.0 / (1 - q)))  # scaled to keep the expectation
    assert abs(y.mean().item() - 2.0) < 0.01


def test_elements_are_dropped_independently_of_their_position():
    """The 16-bit slices of one 64-bit word must not drop together: neighbours' masks are uncorrelated."""
    torch.manual_seed(1)
    dropped = cpu_dropout(torch.ones(400_000), 0.5) == 0
    a, b = dropped[:-1].float(), dropped[1:].float()
    both = (a * b).mean().item()
    assert abs(both - 0.25) < 0.005
    for period in (2, 4):  # each slice of the word drops as often as the others
        rates = dropped.view(-1, period).float().mean(0)
        assert (rates - 0.5).abs().max() < 0.005


def test_seeded_masks_repeat_and_successive_masks_differ():
    x = torch.randn(64, 33)
    torch.manual_seed(7)
    first, second = cpu_dropout(x, 0.1), cpu_dropout(x, 0.1)
    torch.manual_seed(7)
    assert torch.equal(cpu_dropout(x, 0.1), first)
    assert not torch.equal(first, second)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(3)
    x = torch.randn(50, 40, requires_grad=True)
    y = cpu_dropout(x, 0.3)
    y.sum().backward()
    expected = (y != 0).float() / (1 - quantised_p(0.3))
    torch.testing.assert_close(x.grad, expected)


def test_module_is_nn_dropout_in_evaluation_and_at_the_edges():
    x = torch.randn(8, 16)
    layer = Dropout(0.3)
    assert isinstance(layer, nn.Dropout) and not list(layer.parameters())
    assert torch.equal(layer.eval()(x), x)
    layer.train()
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    out = layer(x)
    assert out.shape == x.shape and (out == 0).any() and (out != 0).any()


def test_bf16_input_keeps_its_dtype():
    torch.manual_seed(0)
    y = Dropout(0.1).train()(torch.ones(100, 100, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert 0.05 < (y == 0).float().mean().item() < 0.15
