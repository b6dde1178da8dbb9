"""The handout's three networks (Larsen et al. 2016, Table in the lab handout).

Every layer follows the handout's tables: 64x64 RGB input, kernel 5 everywhere, latent 2048.
`width` scales every channel count and hidden FC size so that tests and CPU smoke runs can use
the same code at a fraction of the cost; width=1 is the handout's exact network.
"""
import torch
from torch import nn

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


class Encoder(nn.Module):
    """x (B,3,64,64) in [-1,1] -> (mu, logvar), each (B, latent)."""

    def __init__(self, latent=2048, width=1.0):
        super().__init__()
        c1, c2, c3 = _ch(64, width), _ch(128, width), _ch(256, width)
        hidden = _ch(2048, width)
        self.convs = nn.Sequential(_conv(3, c1, 2), _conv(c1, c2, 2), _conv(c2, c3, 2), nn.Flatten())
        # The handout gives mean and log-variance separate FC -> BN -> ReLU branches from Conv3.
        self.mean = nn.Sequential(_fc_bn_relu(c3 * 8 * 8, hidden), nn.Linear(hidden, latent))
        self.logvar = nn.Sequential(_fc_bn_relu(c3 * 8 * 8, hidden), nn.Linear(hidden, latent))

    def forward(self, x):
        h = self.convs(x)
        return self.mean(h), self.logvar(h)


class Decoder(nn.Module):
    """z (B, latent) -> image (B,3,64,64) in [-1,1]. Also the GAN's generator."""

    def __init__(self, latent=2048, width=1.0):
        super().__init__()
        self.c0 = _ch(256, width)
        c1, c2, c3 = _ch(256, width), _ch(128, width), _ch(32, width)
        self.fc = _fc_bn_relu(latent, self.c0 * 8 * 8)
        self.deconvs = nn.Sequential(
            _deconv(self.c0, c1), _deconv(c1, c2), _deconv(c2, c3),
            nn.ConvTranspose2d(c3, 3, 5, 1, 2), nn.Tanh())

    def forward(self, z):
        return self.deconvs(self.fc(z).view(-1, self.c0, 8, 8))


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

    def __init__(self, width=1.0, layer=4):
        super().__init__()
        if layer not in FEATURE_LAYERS:
            raise ValueError(f"unknown feature layer {layer!r}; choose one of {', '.join(map(str, FEATURE_LAYERS))}")
        c1, c2, c3, c4 = _ch(32, width), _ch(128, width), _ch(256, width), _ch(256, width)
        blocks = [_conv(3, c1, 1, norm=False), _conv(c1, c2, 2), _conv(c2, c3, 2), _conv(c3, c4, 2)]
        conv_l, *after_l = blocks[layer - 1]
        self.convs = nn.Sequential(*blocks[:layer - 1])
        self.layer_l = conv_l
        self.head = nn.Sequential(*after_l, *blocks[layer:], nn.Flatten(),
                                  nn.Linear(c4 * 8 * 8, _ch(1024, width)), nn.ELU(),
                                  nn.Linear(_ch(1024, width), 1))

    def features(self, x):
        return self.layer_l(self.convs(x))

    def forward(self, x):
        features = self.features(x)
        return self.head(features).squeeze(1), features


class Nets(nn.Module):
    """The networks one model trains, so that one state_dict holds a whole run's weights."""

    def __init__(self, model, latent=2048, width=1.0, init="normal", feature_layer=4):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        self.model, self.latent = model, latent
        if MODELS[model]["encoder"]:
            self.enc = Encoder(latent, width)
        self.dec = Decoder(latent, width)
        if MODELS[model]["discriminator"]:
            self.dis = Discriminator(width, feature_layer)
        self.apply(lambda m: init_weights(m, init))

    @classmethod
    def of(cls, o):
        """The networks a run's settings describe; runs recorded before `init` and `feature_layer` were
        settings used the normal init and layer 4, so their weights still load."""
        return cls(o["model"], o["latent"], o["width"], o.get("init", "normal"), o.get("feature_layer", 4))

    @property
    def has_encoder(self):
        return MODELS[self.model]["encoder"]

    @torch.no_grad()
    def reconstruct(self, x):
        """Decode the posterior mean: the deterministic reconstruction shown in figures."""
        return self.dec(self.enc(x)[0])

    @torch.no_grad()
    def sample(self, z):
        return self.dec(z)

    @torch.no_grad()
    def encode(self, images_u8, batch=500):
        """Posterior means of uint8 images, in batches on the networks' device, on the CPU."""
        dev = next(self.parameters()).device
        return torch.cat([self.enc(to_float(images_u8[i:i + batch].to(dev)))[0].cpu()
                          for i in range(0, len(images_u8), batch)])

    @torch.no_grad()
    def decode(self, z, batch=500):
        """uint8 images of codes z, in batches on the networks' device, on the CPU."""
        dev = next(self.parameters()).device
        return torch.cat([to_uint8(self.dec(z[i:i + batch].to(dev))).cpu() for i in range(0, len(z), batch)])


# The factory: which networks each model owns. hw2 = VAE, hw3 = GAN.
MODELS = {
    "vae": {"encoder": True, "discriminator": False, "title": "VAE (hw2)"},
    "gan": {"encoder": False, "discriminator": True, "title": "GAN (hw3)"},
    "vaegan": {"encoder": True, "discriminator": True, "title": "VAE-GAN"},
}


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
