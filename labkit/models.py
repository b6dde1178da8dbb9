"""The handout's three networks, and the registry of the models built from them.

Every layer follows the handout's tables: 64x64 RGB input, kernel 5 everywhere, latent 2048.
`width` scales every channel count and hidden FC size so that tests and CPU smoke runs can use
the same code at a fraction of the cost; width=1 is the handout's exact network.
"""
import inspect
from collections import ChainMap
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from labkit import LabkitError, losses as L
from labkit.data import to_float, to_uint8


def _ch(n, width):
    return max(1, round(n * width))


def _conv(cin, cout, stride, norm=True):
    # BN + ReLU after every conv but the discriminator's first, as in the paper's architecture.
    layers = [nn.Conv2d(cin, cout, 5, stride, 2, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _deconv(cin, cout):
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 5, 2, 2, output_padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


def _fc_bn_relu(fin, fout):
    return nn.Sequential(nn.Linear(fin, fout, bias=False), nn.BatchNorm1d(fout), nn.ReLU())


def _join(h, y, attributes):
    """h with the condition y concatenated (a conditional network), or h (an unconditional one)."""
    if (y is None) != (attributes == 0):
        raise ValueError(f"a network for {attributes} attributes was given {'no' if y is None else 'an'} attribute "
                         "vector")
    return h if y is None else torch.cat([h, y.to(h.dtype)], 1)


# A conditional network (attributes > 0) takes an attribute vector y (B, attributes) beside its
# input, concatenated where the paper leaves it to the usual choice: the encoder's and the
# discriminator's first fully connected layer, the decoder's input beside z. With attributes=0 the
# layers, and the weights a seed draws for them, are the unconditional network's.

class Encoder(nn.Module):
    """x (B,3,64,64) in [-1,1] (and y, conditional) -> (mu, logvar), each (B, latent)."""

    def __init__(self, latent=2048, width=1.0, attributes=0):
        super().__init__()
        c1, c2, c3 = _ch(64, width), _ch(128, width), _ch(256, width)
        hidden, self.attributes = _ch(2048, width), attributes
        self.convs = nn.Sequential(_conv(3, c1, 2), _conv(c1, c2, 2), _conv(c2, c3, 2), nn.Flatten())
        # The handout gives mean and log-variance separate FC -> BN -> ReLU branches from Conv3.
        self.mean = nn.Sequential(_fc_bn_relu(c3 * 8 * 8 + attributes, hidden), nn.Linear(hidden, latent))
        self.logvar = nn.Sequential(_fc_bn_relu(c3 * 8 * 8 + attributes, hidden), nn.Linear(hidden, latent))

    def forward(self, x, y=None):
        h = _join(self.convs(x), y, self.attributes)
        return self.mean(h), self.logvar(h)

    def posterior_mean(self, x, y=None):
        """The mean alone: what reconstructions and latent codes read (published encoders keep no more)."""
        return self.mean(_join(self.convs(x), y, self.attributes))


class Decoder(nn.Module):
    """z (B, latent) (and y, conditional) -> image (B,3,64,64) in [-1,1]. Also the GAN's generator."""

    def __init__(self, latent=2048, width=1.0, attributes=0):
        super().__init__()
        self.c0, self.attributes = _ch(256, width), attributes
        c1, c2, c3 = _ch(256, width), _ch(128, width), _ch(32, width)
        self.fc = _fc_bn_relu(latent + attributes, self.c0 * 8 * 8)
        self.deconvs = nn.Sequential(
            _deconv(self.c0, c1), _deconv(c1, c2), _deconv(c2, c3),
            nn.ConvTranspose2d(c3, 3, 5, 1, 2), nn.Tanh())

    def forward(self, z, y=None):
        return self.deconvs(self.fc(_join(z, y, self.attributes)).view(-1, self.c0, 8, 8))


class Discriminator(nn.Module):
    """x -> (logit (B,), features (B, C, H, W)).

    `features` is Dis_l, the representation the feature-wise reconstruction loss compares: the
    output of conv layer `layer` before its BatchNorm and ReLU. The handout leaves l open; the
    authors' code takes the 4th conv (8x8), the default; lower layers keep more of the image's
    spatial detail (layer 3: 16x16, layer 2: 32x32).
    The handout's final sigmoid is folded into the losses (BCE-with-logits), which computes the
    same quantity without the overflow of log(sigmoid) and stays safe under autocast; use
    `torch.sigmoid(logit)` for the probability D(x).
    """

    def __init__(self, width=1.0, layer=4, attributes=0):
        super().__init__()
        if layer not in FEATURE_LAYERS:
            raise ValueError(f"unknown feature layer {layer!r}; choose one of {', '.join(map(str, FEATURE_LAYERS))}")
        c1, c2, c3, c4 = _ch(32, width), _ch(128, width), _ch(256, width), _ch(256, width)
        blocks = [_conv(3, c1, 1, norm=False), _conv(c1, c2, 2), _conv(c2, c3, 2), _conv(c3, c4, 2)]
        conv_l, *after_l = blocks[layer - 1]
        self.convs = nn.Sequential(*blocks[:layer - 1])
        self.layer_l, self.attributes = conv_l, attributes
        self.head = nn.Sequential(*after_l, *blocks[layer:], nn.Flatten(),
                                  nn.Linear(c4 * 8 * 8 + attributes, _ch(1024, width)), nn.ELU(),
                                  nn.Linear(_ch(1024, width), 1))
        self.fc_at = len(self.head) - 3  # y joins before the first fully connected layer

    def features(self, x):
        return self.layer_l(self.convs(x))

    def forward(self, x, y=None):
        h = features = self.features(x)
        for i, layer in enumerate(self.head):
            h = layer(_join(h, y, self.attributes) if i == self.fc_at else h)
        return h.squeeze(1), features


class Nets(nn.Module):
    """The networks one model trains (its registry entry's), so that one state_dict holds a whole
    run's weights."""

    def __init__(self, model, latent=2048, width=1.0, init="normal", feature_layer=4, attributes=0):
        super().__init__()
        self.model, self.spec, self.latent = model, spec(model), latent
        if self.spec.conditional != (attributes > 0):
            raise LabkitError(f"{model}: {'a conditional model needs' if attributes == 0 else 'takes no'} attributes")
        self.attributes = attributes
        builders = {"enc": lambda: Encoder(latent, width, attributes),
                    "dec": lambda: Decoder(latent, width, attributes),
                    "dis": lambda: Discriminator(width, feature_layer, attributes)}
        for name in self.spec.networks:
            setattr(self, name, builders[name]())
        self.apply(lambda m: init_weights(m, init))

    @classmethod
    def of(cls, o):
        """The networks a run's settings describe; runs recorded before `init` and `feature_layer` were
        settings used the normal init and layer 4, so their weights still load. A conditional run
        records the attributes it is conditioned on."""
        return cls(o["model"], o["latent"], o["width"], o.get("init", "normal"), o.get("feature_layer", 4),
                   len(o.get("attributes") or ()))

    @property
    def has_encoder(self):
        return self.spec.has_encoder

    @torch.no_grad()
    def reconstruct(self, x, y=None):
        """Decode the posterior mean: the deterministic reconstruction shown in figures."""
        return self.dec(self.enc.posterior_mean(x, y), y)

    @torch.no_grad()
    def sample(self, z, y=None):
        return self.dec(z, y)

    @torch.no_grad()
    def encode(self, images_u8, y=None, batch=500):
        """Posterior means of uint8 images (given their attributes y, conditional), in batches on the
        networks' device, on the CPU."""
        dev = next(self.parameters()).device
        return torch.cat([self.enc.posterior_mean(to_float(images_u8[i:i + batch].to(dev)), _rows(y, i, batch, dev))
                          .cpu() for i in range(0, len(images_u8), batch)])

    @torch.no_grad()
    def decode(self, z, y=None, batch=500):
        """uint8 images of codes z (and attributes y, conditional), in batches on the networks' device,
        on the CPU."""
        dev = next(self.parameters()).device
        return torch.cat([to_uint8(self.dec(z[i:i + batch].to(dev), _rows(y, i, batch, dev))).cpu()
                          for i in range(0, len(z), batch)])


def _rows(y, i, batch, device):
    return None if y is None else y[i:i + batch].to(device)


# ----------------------------------------------------------------------------------------------
# The model registry: what each model of the comparison is. Adding a model is one entry here and
# one loss function in labkit.losses; the CLI, the options, training, evaluation, the notebooks
# and the report all read this table.

@dataclass(frozen=True)
class Model:
    title: str                  # how figures and the report name it
    networks: tuple             # the networks it owns: enc, dec, dis
    trains: dict                # network -> its objective: a sum of logged terms, each optionally "setting * term"
    loss: Callable              # (nets, x, y, draw, *settings) -> {term: scalar}: the forward pass (labkit.losses)
    settings: tuple = ()        # the settings that shape it beyond the shared ones (the report's settings table)
    paper: str = ""             # what it is, in one line, for the report
    base: str = None            # a conditional model: the model of MODELS it conditions on attributes y

    @property
    def has_encoder(self):
        return "enc" in self.networks

    @property
    def conditional(self):
        return self.base is not None

    @property
    def loss_settings(self):
        """The settings its loss function reads: the parameters after (nets, x, y, draw)."""
        return tuple(inspect.signature(self.loss).parameters)[4:]

    def terms(self, network):
        """A network's objective as [(weight setting or None, term)], e.g. [("gamma", "llike"), (None, "g")]."""
        out = []
        for part in self.trains[network].split("+"):
            weight, _, term = part.rpartition("*")
            out.append((weight.strip() or None, term.strip()))
        return out

    def adversarial(self, network):
        """Whether a network's objective holds the generator loss (the equilibrium rule may freeze it)."""
        return any(term == "g" for _, term in self.terms(network))

    def objectives(self, losses, settings):
        """{network: the scalar whose gradient that network, and only it, follows}. Networks with the
        same objective share one tensor, so one backward pass serves them (the VAE's)."""
        shared = {}
        for network in self.trains:
            key = tuple(self.terms(network))
            if key not in shared:
                parts = [losses[t] if w is None else settings[w] * losses[t] for w, t in key]
                shared[key] = sum(parts[1:], parts[0])
        return {network: shared[tuple(self.terms(network))] for network in self.trains}


# The paper's four models (Larsen et al. 2016, figures 3 and 4), in its order; hw2 = VAE, hw3 = GAN.
MODELS = {
    "vae": Model("VAE (hw2)", ("enc", "dec"), {"enc": "rec + beta * kl", "dec": "rec + beta * kl"}, L.vae_losses,
                 ("beta",), "a VAE with a pixel-wise Gaussian likelihood"),
    # The decoder's objective is the encoder's: L_prior does not depend on it, so it learns from L_llike
    # alone, and one backward pass serves both (as the VAE's).
    "vaedisl": Model("VAE-Dis_l", ("enc", "dec", "dis"),
                     {"enc": "beta * kl + llike", "dec": "beta * kl + llike", "dis": "d"},
                     L.vaegan_losses, ("beta", "d_weights", "recon_fake", "feature_layer", "feature_norm",
                                       "dec_batch"),
                     "a VAE whose likelihood is measured on Dis_l; D trains as the VAE-GAN's, the decoder gets "
                     "no GAN gradient"),
    "vaegan": Model("VAE-GAN", ("enc", "dec", "dis"), {"enc": "beta * kl + llike", "dec": "gamma * llike + g",
                                                        "dis": "d"},
                    L.vaegan_losses, ("beta", "gamma", "g_loss", "d_weights", "recon_fake", "feature_layer",
                                      "feature_norm", "dec_batch", "margin"),
                    "Algorithm 1: the decoder also learns to fool D"),
    "gan": Model("GAN (hw3)", ("dec", "dis"), {"dec": "g", "dis": "d"}, L.gan_losses,
                 ("g_loss", "d_weights", "margin"), "the decoder as a generator, trained against D"),
}

# The paper's table (its section 4.2): the VAE, the GAN and the VAE-GAN, each conditioned on the
# attribute vector of every face, the same objectives otherwise. A group of its own: the comparison
# above, and every list derived from it, stays the four models.
CONDITIONAL = {f"c{m}": replace(MODELS[m], title=f"conditional {MODELS[m].title.split(' (')[0]}",
                                 paper=f"{MODELS[m].paper}, given the attributes", base=m)
               for m in ("vae", "gan", "vaegan")}
# Every model by name, the comparison's first; a live view: a model added to either group is in it.
REGISTRY = ChainMap(CONDITIONAL, MODELS)


# How the report writes each logged term and weight (a term not listed is written by its name).
SYMBOLS = {"rec": r"\mathcal{L}_{pixel}", "kl": r"\mathcal{L}_{prior}", "llike": r"\mathcal{L}_{llike}^{Dis_l}",
           "g": r"\mathcal{L}_{G}", "d": r"\mathcal{L}_{D}", "beta": r"\beta", "gamma": r"\gamma"}


def objective_math(model, network):
    """A network's objective as inline math, e.g. $\\gamma\\,\\mathcal{L}_{llike}^{Dis_l} + \\mathcal{L}_{G}$."""
    def term(weight, name):
        symbol = SYMBOLS.get(name, rf"\mathrm{{{name}}}")
        return symbol if weight is None else rf"{SYMBOLS.get(weight, weight)}\,{symbol}"
    return "$" + " + ".join(term(w, t) for w, t in REGISTRY[model].terms(network)) + "$"


def models_table(models=None):
    """The registry as a markdown table: each model, what it is, and what trains each network."""
    models = list(models or MODELS)
    names = {"enc": "encoder", "dec": "decoder", "dis": "discriminator"}
    # pandoc sizes the PDF's columns by these dashes: room for what each model is
    lines = ["| model | what it is | " + " | ".join(f"{n} learns from" for n in names.values()) + " |",
             "|" + "|".join("-" * w for w in (10, 34, 16, 14, 12)) + "|"]
    for m in models:
        cells = [objective_math(m, n) if n in MODELS[m].trains else "–" for n in names]
        lines.append(f"| {MODELS[m].title} | {MODELS[m].paper} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def spec(model):
    """A model's registry entry (of the comparison or conditional); an unknown name is refused in one line."""
    if model not in REGISTRY:
        raise LabkitError(f"unknown model {model!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[model]


def with_encoder():
    """The models that reconstruct (those with an encoder), in the registry's order."""
    return [m for m, s in MODELS.items() if s.has_encoder]


def compute_losses(nets, x, generator, settings, shard=(0, 1), y=None):
    """One forward pass of `nets.model` on batch x (this process's `shard` of the global batch), and
    its attributes y (B, attributes) for a conditional model.

    Returns (losses, objectives): `losses` are the logged scalars; `objectives` maps each network
    to the loss whose gradient that network, and only it, follows (the registry's `trains`).
    `settings` holds at least the model's loss settings and objective weights (a run's options).
    """
    model = spec(nets.model)
    losses = model.loss(nets, x, y, lambda n, dim, like: L.noise(n, dim, like, generator, shard),
                        **{k: settings[k] for k in model.loss_settings})
    return losses, model.objectives(losses, settings)


# The networks that make images: the ones a run's moving average (option ema) keeps.
AVERAGED = ("enc", "dec")
INITS = ("normal", "glorot")
FEATURE_LAYERS = (1, 2, 3, 4)


def init_weights(module, kind="normal"):
    # normal: DCGAN's N(0, 0.02) for conv/linear weights, N(1, 0.02) for BN scales.
    # glorot: variance 2 / (fan_in + fan_out), as the authors' deeppy AutoFiller.
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        if kind == "glorot":
            nn.init.xavier_normal_(module.weight)
        else:
            nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
