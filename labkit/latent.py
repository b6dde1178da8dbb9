"""Walking the latent space: principal directions, interpolation, the paper's attribute vectors."""
import torch

from labkit import LabkitError, data as D


@torch.no_grad()
def attribute_vectors(nets, images_u8, attributes, names, wanted):
    """Mean latent code of faces with an attribute minus the mean of faces without (Larsen et al. 5.2).

    `attributes` rows must be in the order of `images_u8` (CelebA id order, as `prepare` writes)."""
    mu = nets.encode(images_u8)
    attrs = torch.from_numpy(attributes[: len(mu)])
    out = {}
    for name in wanted:
        if name not in names:
            raise LabkitError(f"unknown attribute {name!r}; CelebA has {', '.join(names)}")
        has = attrs[:, names.index(name)] > 0
        if has.all() or not has.any():
            raise LabkitError(f"attribute {name!r} is on every face or on none: no direction to take")
        out[name] = mu[has].mean(0) - mu[~has].mean(0)
    return out


@torch.no_grad()
def principal_directions(nets, images_u8, k=4):
    """The k strongest principal directions of encoded faces, each scaled to one standard deviation."""
    mu = nets.encode(images_u8)
    centred = mu - mu.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    std = s[:k] / max(1, len(mu) - 1) ** 0.5
    return {f"PC{i + 1}": v[i] * std[i] for i in range(min(k, len(std)))}


def interpolate(z_a, z_b, steps=8):
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    return (1 - t) * z_a + t * z_b


@torch.no_grad()
def interpolation_rows(nets, pairs_u8, steps=8):
    """For each (face A, face B): A, the decoded path from A's code to B's, B."""
    rows = []
    for a, b in pairs_u8:
        za, zb = nets.enc.posterior_mean(D.to_float(torch.stack([a, b])))
        path = D.to_uint8(nets.dec(interpolate(za, zb, steps)))
        rows.append(torch.cat([a[None], path, b[None]]))
    return torch.cat(rows)


@torch.no_grad()
def walks(nets, z, vectors, strengths=(-2, -1, 0, 1, 2)):
    """For one code z and each direction: z plus each strength times the direction, decoded."""
    return torch.cat([D.to_uint8(nets.dec(torch.stack([z + s * vec for s in strengths]))) for vec in vectors.values()])


@torch.no_grad()
def direction_rows(nets, faces_u8, vectors, strengths=(-1.5, -0.75, 0, 0.75, 1.5)):
    """For each face and direction (an attribute vector, a principal direction): the face, then
    its code plus each strength times the direction, decoded."""
    z = nets.enc.posterior_mean(D.to_float(faces_u8))
    rows = []
    for i, face in enumerate(faces_u8):
        rows += [torch.cat([face[None], walk]) for walk in walks(nets, z[i], vectors, strengths).split(len(strengths))]
    return torch.cat(rows)
