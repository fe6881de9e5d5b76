"""Chapter 11's from-scratch pieces against their PyTorch twins: RNN and GRU (outputs and
gradients with copied weights), the attention layer against scaled_dot_product_attention, and
the digit-strip reader's data and shapes."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dlcv import attention as A
from dlcv import rnn, seq2seq


@pytest.mark.parametrize("ours_cls, theirs_cls", [(rnn.RNN, nn.RNN), (rnn.GRU, nn.GRU)])
def test_recurrent_matches_torch_outputs_and_gradients(ours_cls, theirs_cls):
    torch.manual_seed(0)
    theirs = theirs_cls(5, 7, batch_first=True).double()
    ours = ours_cls(5, 7).double()
    ours.load_state_dict(theirs.state_dict())                # PyTorch's names and shapes
    x = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 3, 7, dtype=torch.float64)
    out, h = ours(x, h0)
    out_t, h_t = theirs(x, h0)
    assert out.shape == (3, 6, 7) and h.shape == (1, 3, 7)
    assert torch.allclose(out, out_t) and torch.allclose(h, h_t)
    weights = torch.randn_like(out)                          # an arbitrary loss of all outputs
    g_ours = torch.autograd.grad((out * weights).sum(), [x, *ours.parameters()])
    g_theirs = torch.autograd.grad((out_t * weights).sum(), [x, *theirs.parameters()])
    for a, b in zip(g_ours, g_theirs):
        assert torch.allclose(a, b)


def test_gru_gate_order_matters():
    """Swapping the reset and update rows must change the output: the check above is not vacuous."""
    torch.manual_seed(0)
    theirs = nn.GRU(4, 3, batch_first=True)
    ours = rnn.GRU(4, 3)
    state = theirs.state_dict()
    state["weight_ih_l0"] = state["weight_ih_l0"][[3, 4, 5, 0, 1, 2, 6, 7, 8]]
    ours.load_state_dict(state)
    x = torch.randn(2, 5, 4)
    assert not torch.allclose(ours(x)[0], theirs(x)[0], atol=1e-3)


def test_recurrent_rejects_bad_shapes():
    with pytest.raises(ValueError, match="batch first"):
        rnn.RNN(5, 7)(torch.randn(3, 5))
    with pytest.raises(ValueError, match="h0"):
        rnn.GRU(5, 7)(torch.randn(3, 6, 5), torch.randn(3, 7))
    with pytest.raises(ValueError, match="positive"):
        rnn.RNN(0, 7)


def test_attention_matches_scaled_dot_product_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 5)
    y, a = A.attention(q, k, v)
    assert y.shape == (2, 4, 5) and a.shape == (2, 4, 6)
    assert torch.allclose(a.sum(-1), torch.ones(2, 4))
    assert torch.allclose(y, F.scaled_dot_product_attention(q, k, v), atol=1e-6)
    x = torch.randn(2, 6, 8)
    y_c, _ = A.attention(x, x, x, mask=A.causal_mask(6))
    assert torch.allclose(y_c, F.scaled_dot_product_attention(x, x, x, is_causal=True), atol=1e-6)
    y_unscaled, _ = A.attention(q, k, v, scale=False)
    assert not torch.allclose(y_unscaled, y, atol=1e-3)
    assert torch.allclose(y_unscaled, F.scaled_dot_product_attention(q, k, v, scale=1.0), atol=1e-6)


def test_attention_layers_shapes_and_permutation_equivariance():
    torch.manual_seed(0)
    layer = A.SelfAttention(d_x=6, d_q=4, d_v=3)
    x = torch.randn(5, 6)
    y, a = layer(x)
    assert y.shape == (5, 3) and a.shape == (5, 5)
    perm = torch.randperm(5)
    assert torch.allclose(layer(x[perm])[0], y[perm], atol=1e-6)   # permute inputs -> outputs permuted
    causal = A.SelfAttention(6, 4, 3, causal=True)
    _, a_c = causal(x)
    assert torch.all(a_c.triu(1) == 0)                               # nothing attends to the future
    q = torch.randn(2, 4)
    y2, a2 = A.AttentionLayer(6, 4, 3)(q, x)
    assert y2.shape == (2, 3) and a2.shape == (2, 5)


def test_attention_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="D_Q"):
        A.attention(torch.randn(4, 8), torch.randn(6, 7), torch.randn(6, 5))
    with pytest.raises(ValueError, match="N_X"):
        A.attention(torch.randn(4, 8), torch.randn(6, 8), torch.randn(5, 5))
    with pytest.raises(ValueError, match="mask"):
        A.attention(torch.randn(4, 8), torch.randn(6, 8), torch.randn(6, 5), mask=torch.ones(6, 4, dtype=torch.bool))


def test_additive_attention_weights_are_a_distribution_and_pick_the_context():
    torch.manual_seed(0)
    attn = A.AdditiveAttention(state_size=4, enc_size=3, attn_size=5)
    s, h = torch.randn(2, 4), torch.randn(2, 7, 3)
    c, a = attn(s, h)
    assert c.shape == (2, 3) and a.shape == (2, 7)
    assert torch.allclose(a.sum(1), torch.ones(2))
    assert torch.allclose(c, torch.einsum("bt,bth->bh", a, h), atol=1e-6)


def test_sinusoidal_positions_match_the_formula():
    pe = A.sinusoidal_positions(10, 8)
    assert pe.shape == (10, 8)
    p, i = 7, 2
    assert torch.isclose(pe[p, 2 * i], torch.sin(torch.tensor(p / 10000 ** (2 * i / 8))))
    assert torch.isclose(pe[p, 2 * i + 1], torch.cos(torch.tensor(p / 10000 ** (2 * i / 8))))
    with pytest.raises(ValueError, match="even"):
        A.sinusoidal_positions(4, 5)


def test_digit_strips_place_the_digits_left_to_right():
    images = torch.zeros(10, 28, 28, dtype=torch.uint8)
    for d in range(10):
        images[d, :, 4 + d] = 255                            # digit d: one bright column at 4 + d
    labels = torch.arange(10)
    x, y = seq2seq.digit_strips(images, labels, n=3, length=4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 28, 4 * seq2seq.DIGIT_WIDTH) and y.shape == (3, 5)
    assert torch.all(y[:, -1] == seq2seq.END) and x.max() == 1.0
    for s in range(3):
        for j in range(4):
            cell = x[s, 0, 0, j * seq2seq.DIGIT_WIDTH:(j + 1) * seq2seq.DIGIT_WIDTH]
            assert int(cell.argmax()) == 4 + int(y[s, j]) - (28 - seq2seq.DIGIT_WIDTH) // 2
    with pytest.raises(ValueError, match="28, 28"):
        seq2seq.digit_strips(torch.zeros(5, 28, 20), labels[:5], 2, 3)


@pytest.mark.parametrize("attention", [False, True])
def test_seq2seq_shapes_and_a_step_of_training(attention):
    torch.manual_seed(0)
    model = seq2seq.Seq2Seq(hidden=16, attention=attention)
    x = torch.rand(4, 1, 28, 3 * seq2seq.DIGIT_WIDTH)
    y = torch.tensor([[1, 2, 3, seq2seq.END]] * 4)
    logits, weights = model(x, y)
    assert logits.shape == (4, 4, 11)
    if attention:
        assert weights.shape == (4, 4, 3 * seq2seq.DIGIT_WIDTH // 4)
        assert torch.allclose(weights.sum(-1), torch.ones(4, 4))
    else:
        assert weights is None
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.loss(x, y).item()
    for _ in range(20):
        opt.zero_grad()
        model.loss(x, y).backward()
        opt.step()
    assert model.loss(x, y).item() < before / 2                   # it can learn a fixed target
    assert seq2seq.sequence_accuracy(model, x, y) == 1.0
    with pytest.raises(ValueError, match="steps"):
        model(x)


def test_seq2seq_features_match_the_usual_conv_relu_pool_order():
    """Pooling before the ReLU, in channels-last memory, gives what conv, ReLU, pool gives."""
    torch.manual_seed(0)
    model = seq2seq.Seq2Seq(hidden=16)
    conv1, conv2 = model.features[0], model.features[3]
    usual = torch.nn.Sequential(
        conv1, torch.nn.ReLU(), torch.nn.MaxPool2d(2), conv2, torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    x = torch.rand(3, 1, 28, 2 * seq2seq.DIGIT_WIDTH)
    ours = model.features(x.contiguous(memory_format=torch.channels_last))
    assert ours.shape == (3, 32, 7, 2 * seq2seq.DIGIT_WIDTH // 4)
    torch.testing.assert_close(ours, usual(x.contiguous()), rtol=1e-5, atol=1e-6)
