"""The loss terms, and one function per model that computes the terms it logs.

Which network trains from which terms is the model registry's business (labkit.models.MODELS);
a model's loss function only runs the forward pass and returns every term by name.

Reduction convention (the handout's gamma = 5 only means something with one): every
reconstruction term is a mean over its elements and the batch, and the KL term is the per-image
sum over latent dimensions divided by the number of elements of the reconstruction target. So
L_prior + L_llike is the paper's negative ELBO (Gaussian likelihood, sigma = 1) divided by a
constant, and gamma weighs a per-element feature error against a per-image GAN loss. The authors'
code sums instead, hence their gamma of 1e-6 (see the reproduction notes).

GAN losses work on logits (the discriminator's sigmoid is inside BCE-with-logits):
  discriminator, "sum":      -log D(x) - sum over fakes of log(1 - D(fake))    (Algorithm 1)
  discriminator, "half":     0.5 (-log D(x)) + 0.5 mean over fakes of -log(1 - D(fake))  (the authors' code)
  generator "saturating":    sum over fakes of log(1 - D(fake))     (= -L_D, the paper's form)
  generator "nonsaturating": sum over fakes of -log D(fake)         (Goodfellow's practical form)
"""
import torch
import torch.nn.functional as F

G_LOSSES = ("nonsaturating", "saturating")
D_WEIGHTS = ("sum", "half")
DEC_BATCHES = ("split", "joint")


def kl_prior(mu, logvar, per):
    """KL(q(z|x) || N(0, I)) summed over latent dims, batch mean, divided by `per` elements."""
    kl = 0.5 * (mu.float().square() + logvar.float().exp() - 1.0 - logvar.float()).sum(1)
    return kl.mean() / per


def gaussian_llike(target, recon):
    """-log N(target | recon, I) per element (up to a constant): 0.5 * mean squared error."""
    return 0.5 * F.mse_loss(recon.float(), target.float())


def feature_llike(target, recon, normalized=False):
    """L_llike on Dis_l. Normalized: divided by the target's mean square, so that the
    discriminator growing that layer's weights (a BatchNorm follows it, so its output does not
    change) cannot change the weight of the feature term against the GAN term."""
    loss = gaussian_llike(target, recon)
    return loss / target.float().square().mean().detach().clamp_min(1e-8) if normalized else loss


def bce(logit, target):
    """-log D(x) for target 1, -log(1 - D(x)) for target 0, batch mean, in fp32."""
    logit = logit.float()
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))


def discriminator_loss(real_logit, fake_logits, weights="sum"):
    fake = sum(bce(f, 0.0) for f in fake_logits)
    if weights == "sum":
        return bce(real_logit, 1.0) + fake
    if weights == "half":
        return 0.5 * bce(real_logit, 1.0) + 0.5 * fake / len(fake_logits)
    raise ValueError(f"unknown discriminator weighting {weights!r}; choose one of {', '.join(D_WEIGHTS)}")


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


def diagnostics(real_logit, fake_logits, **logits):
    """What the equilibrium rule and a researcher read ("diag/" keys, logged beside the losses):
    D's mean cost on real images and on the fakes it trains on, and its mean probability D(x)
    on each kind of image."""
    out = {"diag/cost_real": bce(real_logit, 1.0),
           "diag/cost_fake": sum(bce(f, 0.0) for f in fake_logits) / len(fake_logits)}
    out.update({f"diag/D_{k}": torch.sigmoid(v.float()).mean() for k, v in logits.items()})
    return {k: v.detach() for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# One function per model: (nets, x, y, draw, settings it reads) -> {term: scalar}. y: the batch's
# attributes for a conditional model (every network sees them beside its input; a fake is judged
# with the attributes it was drawn for), else None. `draw(n, dim, like)` draws N(0, I) noise for
# this process's rows of the batch (see labkit.models.compute_losses).

def _posterior(nets, x, y, draw):
    mu, logvar = nets.enc(x, y)
    return mu, logvar, mu + draw(x.shape[0], mu.shape[1], mu) * (0.5 * logvar).exp()


def _times(y, k):
    """The attributes of k stacked batches of the same faces."""
    return None if y is None else y.repeat(k, 1)


def vae_losses(nets, x, y, draw):
    """hw2: a pixel-wise Gaussian likelihood and the KL prior, per pixel element."""
    mu, logvar, z = _posterior(nets, x, y, draw)
    return {"rec": gaussian_llike(x, nets.dec(z, y)), "kl": kl_prior(mu, logvar, per=x[0].numel())}


def gan_losses(nets, x, y, draw, g_loss, d_weights):
    """hw3: one discriminator pass over real and fake keeps BatchNorm statistics shared."""
    n = x.shape[0]
    logits, _ = nets.dis(torch.cat([x, nets.dec(draw(n, nets.latent, x), y)]), _times(y, 2))
    real, fake = logits.split(n)
    return {"d": discriminator_loss(real, [fake], d_weights), "g": generator_loss([fake], g_loss),
            **diagnostics(real, [fake], real=real, prior=fake)}


def vaegan_losses(nets, x, y, draw, g_loss, d_weights, recon_fake, feature_norm, dec_batch):
    """Algorithm 1's forward pass: the prior, the feature-wise likelihood on Dis_l, the GAN terms."""
    n = x.shape[0]
    z_p = draw(n, nets.latent, x)  # before the posterior's noise: the order every published run drew them in
    mu, logvar, z = _posterior(nets, x, y, draw)
    if dec_batch == "joint":
        # One decoder pass: BatchNorm normalises reconstructions and prior samples together, so
        # its running statistics (used for every figure) describe the batches it trained on.
        recon, x_p = nets.dec(torch.cat([z, z_p]), _times(y, 2)).split(n)
    else:
        recon, x_p = nets.dec(z, y), nets.dec(z_p, y)
    if recon_fake:
        logits, feats = nets.dis(torch.cat([x, recon, x_p]), _times(y, 3))
        real, fake_rec, fake_p = logits.split(n)
        feat_real, feat_rec, _ = feats.split(n)
        fakes = [fake_rec, fake_p]
    else:
        # The authors' CelebA script: reconstructions reach D only through Dis_l, in a pass of
        # their own, so that not even D's BatchNorm statistics see them in the GAN pass.
        feat_real, feat_rec = nets.dis.features(torch.cat([x, recon])).split(n)
        logits, _ = nets.dis(torch.cat([x, x_p]), _times(y, 2))
        real, fake_p = logits.split(n)
        fakes = [fake_p]
    seen = dict(real=real, prior=fake_p, **({"recon": fake_rec} if recon_fake else {}))
    # Dis_l(x) is the fixed target of the reconstruction; which network learns from it is routing's job.
    return {"kl": kl_prior(mu, logvar, per=feat_rec[0].numel()),
            "llike": feature_llike(feat_real.detach(), feat_rec, feature_norm),
            "d": discriminator_loss(real, fakes, d_weights), "g": generator_loss(fakes, g_loss),
            **diagnostics(real, fakes, **seen)}
