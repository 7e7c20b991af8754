"""The fused sampled-softmax head of the probabilistic models against
autograd through the same formula (float64), clipping included."""
import torch

from pyg_sm.nn._sampled_attention import sampled_softmax_head

SIZES = (5, 3, 4)


def reference(mu, log_var, values, noise):
    f = mu[:, None] if noise is None else \
        mu[:, None] + torch.exp(0.5 * log_var)[:, None] * noise
    f = torch.clip(f, -20, 20)
    outs, start = [], 0
    for size in SIZES:
        weights = torch.softmax(f[start:start + size], dim=0)
        outs.append(weights.T @ values[start:start + size])
        start += size
    return torch.stack(outs)


def inputs():
    torch.manual_seed(0)
    mu = torch.randn(12, dtype=torch.float64) * 3
    mu[0], mu[1] = 25.0, -19.5  # one always clipped, one sometimes
    log_var = torch.randn(12, dtype=torch.float64)
    values = torch.randn(12, 2, dtype=torch.float64)
    noise = torch.randn(12, 6, dtype=torch.float64) * 4
    return [t.requires_grad_() for t in (mu, log_var, values)] + [noise]


def test_outputs_and_gradients_equal_autograd_through_the_formula():
    mu, log_var, values, noise = inputs()
    out, _ = sampled_softmax_head(mu, log_var, values, noise, SIZES)
    expected = reference(mu, log_var, values, noise)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad((out * grad).sum(), (mu, log_var, values))
    theirs = torch.autograd.grad((expected * grad).sum(),
                                 (mu, log_var, values))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(
        lambda m, v, g: sampled_softmax_head(m, v, g, noise, SIZES)[0],
        (mu, log_var, values))


def test_one_sample_without_variance():
    mu, _, values, _ = inputs()
    out, _ = sampled_softmax_head(mu, None, values, None, SIZES)
    torch.testing.assert_close(out, reference(mu, None, values, None))
    assert torch.autograd.gradcheck(
        lambda m, g: sampled_softmax_head(m, None, g, None, SIZES)[0],
        (mu, values))


def test_mean_weights_are_the_softmax_averaged_over_samples():
    mu, log_var, values, noise = inputs()
    _, mean = sampled_softmax_head(mu, log_var, values, noise, SIZES,
                                   mean_weights=True)
    f = torch.clip(mu[:, None] + torch.exp(0.5 * log_var)[:, None] * noise,
                   -20, 20)
    expected = torch.cat([torch.softmax(part, 0).mean(1) for part in
                          f.split(SIZES)])
    torch.testing.assert_close(mean, expected.detach())
    assert not mean.requires_grad
