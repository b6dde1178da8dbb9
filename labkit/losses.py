"""Losses of the three models, and which network each one trains.

Reduction convention (the handout's gamma = 5 only means something with one): every
reconstruction term is a mean over its elements and the batch, and the KL term is the per-image
sum over latent dimensions divided by the number of elements of the reconstruction target. So
L_prior + L_llike is the paper's negative ELBO (Gaussian likelihood, sigma = 1) divided by a
constant, and gamma weighs a per-element feature error against a per-image GAN loss. The authors'
code sums instead, hence their gamma of 1e-6 (see the reproduction notes).

GAN losses work on logits (the discriminator's sigmoid is inside BCE-with-logits):
  discriminator:            -log D(x) - sum over fakes of log(1 - D(fake))
  generator "saturating":    sum over fakes of log(1 - D(fake))     (= -L_D, the paper's form)
  generator "nonsaturating": sum over fakes of -log D(fake)         (Goodfellow's practical form)
"""
import torch
import torch.nn.functional as F

G_LOSSES = ("nonsaturating", "saturating")


def kl_prior(mu, logvar, per):
    """KL(q(z|x) || N(0, I)) summed over latent dims, batch mean, divided by `per` elements."""
    kl = 0.5 * (mu.float().square() + logvar.float().exp() - 1.0 - logvar.float()).sum(1)
    return kl.mean() / per


def gaussian_llike(target, recon):
    """-log N(target | recon, I) per element (up to a constant): 0.5 * mean squared error."""
    return 0.5 * F.mse_loss(recon.float(), target.float())


def bce(logit, target):
    """-log D(x) for target 1, -log(1 - D(x)) for target 0, batch mean, in fp32."""
    logit = logit.float()
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))


def discriminator_loss(real_logit, fake_logits):
    return bce(real_logit, 1.0) + sum(bce(f, 0.0) for f in fake_logits)


def generator_loss(fake_logits, kind):
    if kind == "nonsaturating":
        return sum(bce(f, 1.0) for f in fake_logits)
    if kind == "saturating":
        return -sum(bce(f, 0.0) for f in fake_logits)
    raise ValueError(f"unknown generator loss {kind!r}; choose one of {', '.join(G_LOSSES)}")


def noise(n, dim, like, generator, shard=(0, 1)):
    """N(0, I) noise for this process's n rows of the global batch: every rank draws the whole
    batch's noise and keeps its slice, so k ranks see exactly the noise one process would."""
    rank, world = shard
    full = torch.randn(n * world, dim, device=like.device, dtype=like.dtype, generator=generator)
    return full[rank * n:(rank + 1) * n]


def compute_losses(nets, x, generator, beta=1.0, gamma=5.0, g_loss="nonsaturating", shard=(0, 1)):
    """One forward pass of `nets.model` on batch x (this process's `shard` of the global batch).

    Returns (losses, objectives): `losses` are the logged scalars; `objectives` maps each network
    name ("enc", "dec", "dis") to the loss whose gradient that network, and only it, follows.
    """
    model, n = nets.model, x.shape[0]

    def reparameterize(mu, logvar):
        return mu + noise(n, mu.shape[1], mu, generator, shard) * (0.5 * logvar).exp()

    if model == "vae":
        mu, logvar = nets.enc(x)
        recon = nets.dec(reparameterize(mu, logvar))
        rec = gaussian_llike(x, recon)
        prior = kl_prior(mu, logvar, per=x[0].numel())
        total = rec + beta * prior
        return {"rec": rec, "kl": prior}, {"enc": total, "dec": total}

    z_p = noise(n, nets.latent, x, generator, shard)
    if model == "gan":
        # One discriminator pass over real and fake keeps BatchNorm statistics shared.
        logits, _ = nets.dis(torch.cat([x, nets.dec(z_p)]))
        real, fake = logits.split(n)
        d_loss, g = discriminator_loss(real, [fake]), generator_loss([fake], g_loss)
        return {"d": d_loss, "g": g}, {"dis": d_loss, "dec": g}

    # VAE-GAN, Algorithm 1.
    mu, logvar = nets.enc(x)
    recon = nets.dec(reparameterize(mu, logvar))
    x_p = nets.dec(z_p)
    logits, feats = nets.dis(torch.cat([x, recon, x_p]))
    real, fake_rec, fake_p = logits.split(n)
    feat_real, feat_rec, _ = feats.split(n)
    # Dis_l(x) is the fixed target of the reconstruction (routing itself is backward_routed's job).
    llike = gaussian_llike(feat_real.detach(), feat_rec)
    prior = kl_prior(mu, logvar, per=feat_rec[0].numel())
    d_loss = discriminator_loss(real, [fake_rec, fake_p])
    g = generator_loss([fake_rec, fake_p], g_loss)
    return ({"kl": prior, "llike": llike, "d": d_loss, "g": g},
            {"enc": beta * prior + llike, "dec": gamma * llike + g, "dis": d_loss})
