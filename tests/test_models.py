import pytest
import torch
from torch import nn

from labkit.models import Decoder, Discriminator, Encoder, Nets


def layer_outputs(module, x, kinds=(nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in module.modules() if isinstance(m, kinds)]
    module.eval()(x)
    for h in hooks:
        h.remove()
    return shapes


def test_encoder_matches_handout_table():
    # Conv1-3, then the mean branch (Fc1, Mean) and the log-variance branch (Fc2, Log Var).
    assert layer_outputs(Encoder(), torch.zeros(2, 3, 64, 64)) == [
        (64, 32, 32), (128, 16, 16), (256, 8, 8), (2048,), (2048,), (2048,), (2048,)]


def test_decoder_matches_handout_table():
    assert layer_outputs(Decoder(), torch.zeros(2, 2048)) == [
        (8 * 8 * 256,), (256, 16, 16), (128, 32, 32), (32, 64, 64), (3, 64, 64)]


def test_discriminator_matches_handout_table():
    assert layer_outputs(Discriminator(), torch.zeros(2, 3, 64, 64)) == [
        (32, 64, 64), (128, 32, 32), (256, 16, 16), (256, 8, 8), (1024,), (1,)]


def test_handout_kernel_stride_padding():
    convs = [m for m in Encoder().modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [((5, 5), (2, 2), (2, 2))] * 3
    deconvs = [m for m in Decoder().modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(d.stride[0], d.padding[0], d.output_padding[0]) for d in deconvs] == [(2, 2, 1)] * 3 + [(1, 2, 0)]
    dconvs = [m for m in Discriminator().modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in dconvs] == [1, 2, 2, 2] and all(c.kernel_size == (5, 5) for c in dconvs)


def test_output_ranges_and_activations():
    dec, dis = Decoder(latent=16, width=0.25), Discriminator(width=0.25)
    img = dec(torch.randn(4, 16) * 10)
    assert img.min() >= -1 and img.max() <= 1  # tanh output
    assert any(isinstance(m, nn.ELU) for m in dis.modules())
    logit, feats = dis(img)
    assert logit.shape == (4,) and feats.shape == (4, 64, 8, 8)


def test_feature_layer_is_fourth_conv_before_bn():
    dis = Discriminator(width=0.25).eval()
    x = torch.randn(3, 3, 64, 64)
    _, feats = dis(x)
    torch.testing.assert_close(feats, dis.layer_l(dis.convs(x)))
    assert isinstance(dis.head[0], nn.BatchNorm2d)  # BN and ReLU come after Dis_l


@pytest.mark.parametrize("layer, shape", [(1, (8, 64, 64)), (2, (32, 32, 32)), (3, (64, 16, 16))])
def test_a_lower_feature_layer_moves_dis_l_not_the_network(layer, shape):
    torch.manual_seed(0)
    authors = Discriminator(width=0.25).eval()
    lower = Discriminator(width=0.25, layer=layer).eval()
    lower.load_state_dict(dict(zip(lower.state_dict(), authors.state_dict().values())))
    x = torch.randn(3, 3, 64, 64)
    (logit, feats), (authors_logit, _) = lower(x), authors(x)
    assert feats.shape == (3, *shape)
    torch.testing.assert_close(logit, authors_logit)  # the same layers in the same order
    conv = [m for m in lower.modules() if isinstance(m, nn.Conv2d)][layer - 1]
    assert lower.layer_l is conv  # Dis_l is that conv's own output: its BN and ReLU come after
    with pytest.raises(ValueError, match="unknown feature layer 5"):
        Discriminator(layer=5)


def test_width_scales_channels():
    assert Encoder(latent=16, width=1 / 16).convs[0][0].out_channels == 4
    assert sum(p.numel() for p in Nets("vaegan", 16, 1 / 16).parameters()) < 500_000  # the handout size has 132M


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'vaegn'"):
        Nets("vaegn")
