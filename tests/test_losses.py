import math

import pytest
import torch

from labkit.losses import discriminator_loss, generator_loss, kl_prior
from labkit.train import backward_routed

from conftest import batch, forward, make


def test_kl_is_zero_for_standard_normal_posterior_and_positive_otherwise():
    assert kl_prior(torch.zeros(4, 10), torch.zeros(4, 10), per=1).item() == 0
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dimension.
    assert kl_prior(torch.ones(4, 10), torch.zeros(4, 10), per=1).item() == pytest.approx(5.0)
    assert kl_prior(torch.ones(4, 10), torch.zeros(4, 10), per=10).item() == pytest.approx(0.5)


def test_gan_losses_at_an_undecided_discriminator():
    zero = torch.zeros(16)
    assert discriminator_loss(zero, [zero]).item() == pytest.approx(2 * math.log(2))
    assert generator_loss([zero], "nonsaturating").item() == pytest.approx(math.log(2))
    assert generator_loss([zero], "saturating").item() == pytest.approx(-math.log(2))
    with pytest.raises(ValueError, match="unknown generator loss"):
        generator_loss([zero], "wgan")


def test_generator_losses_point_the_same_way():
    # Both forms must push D(fake) up: their gradient w.r.t. the fake logit is negative.
    for kind in ("nonsaturating", "saturating"):
        logit = torch.zeros(4, requires_grad=True)
        generator_loss([logit], kind).backward()
        assert (logit.grad < 0).all()


def test_losses_at_initialisation_are_sane():
    x = batch()
    losses, _ = forward(make("gan"), x)
    assert losses["d"].item() == pytest.approx(2 * math.log(2), abs=0.1)
    losses, _ = forward(make("vaegan"), x)
    assert losses["d"].item() == pytest.approx(3 * math.log(2), abs=0.15)
    assert 0 <= losses["kl"].item() < 1e-3  # N(0, 0.02) weights: mu ~ 0, logvar ~ 0
    losses, _ = forward(make("vae"), x)
    assert 0 <= losses["kl"].item() < 1e-3
    assert losses["rec"].item() == pytest.approx(0.5 * x.square().mean().item(), rel=0.2)


def grads_of(module):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]


def reference_grad(model, objective, net_name, x):
    """The gradient of one named loss w.r.t. one network, from a fresh identical forward."""
    nets = make(model)
    losses, objectives = forward(nets, x)
    terms = {**losses, **{"obj_" + k: v for k, v in objectives.items()}}
    value = eval(objective, {}, terms)  # e.g. "kl + llike"
    params = list(getattr(nets, net_name).parameters())
    return [g if g is not None else torch.zeros_like(p)
            for g, p in zip(torch.autograd.grad(value, params, allow_unused=True), params)]


def close(a, b):
    return all(torch.allclose(u, v, rtol=1e-4, atol=1e-7) for u, v in zip(a, b))


# Each network's gradient, and the losses that must not reach it: Algorithm 1 for the VAE-GAN; for
# VAE-Dis_l the same, except that its decoder learns from L_llike alone (no GAN gradient).
ROUTES = {
    "vaegan": ({"enc": "kl + llike", "dec": "5.0 * llike + g", "dis": "d"},
               {"enc": "kl + llike + g", "dec": "5.0 * llike + g + d", "dis": "d + llike"}),
    "vaedisl": ({"enc": "kl + llike", "dec": "llike", "dis": "d"},
                {"enc": "kl + llike + g", "dec": "llike + g", "dis": "d + llike"}),
}


@pytest.mark.parametrize("model", ROUTES)
def test_each_network_follows_its_own_objective_and_nothing_leaks(model):
    intended, leaked = ROUTES[model]
    x = batch()
    nets = make(model)
    _, objectives = forward(nets, x, beta=1.0, gamma=5.0)
    backward_routed(nets, objectives)
    for name, objective in intended.items():
        got = grads_of(getattr(nets, name))
        assert close(got, reference_grad(model, objective, name, x)), (name, objective)
        # The losses that must not reach this network really would change it if they leaked:
        assert not close(got, reference_grad(model, leaked[name], name, x)), (name, leaked[name])


def test_gan_and_vae_routing():
    x = batch()
    nets = make("gan")
    backward_routed(nets, forward(nets, x)[1])
    assert close(grads_of(nets.dec), reference_grad("gan", "g", "dec", x))
    assert close(grads_of(nets.dis), reference_grad("gan", "d", "dis", x))
    nets = make("vae")
    backward_routed(nets, forward(nets, x)[1])
    assert close(grads_of(nets.enc), reference_grad("vae", "rec + kl", "enc", x))
    assert close(grads_of(nets.dec), reference_grad("vae", "rec + kl", "dec", x))
