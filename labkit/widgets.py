"""The demo: latent sliders (ipywidgets) that move a face along directions while the decoder follows.

`demo_inputs` picks what the demo explores (a trained run, else the published weights, so that
a fresh clone shows trained faces at once); `LatentExplorer` is the widget. The same notebook
runs in JupyterLab and as a standalone page (`make demo`, Voila).
"""
import io
from pathlib import Path

import ipywidgets as W
import torch

from labkit import data as D, latent

# The directions the demo offers, when it can: the strongest principal directions of encoded
# training faces, then some of the paper's attribute vectors (CelebA's attribute names).
DIRECTIONS = ("PC1", "PC2", "PC3", "Smiling", "Eyeglasses", "Male", "Young", "Blond_Hair")


def demo_inputs(runs_dir, data=None, model="vaegan", n=8):
    """(networks, start codes, directions, a line saying what they are): the trained run
    runs_dir/<model> when it exists, else the model's published weights. Start codes are prior
    samples of the figures' noise, and the first n held-out faces when CelebA is present."""
    from labkit import pretrained
    from labkit.runs import load_nets
    run = Path(runs_dir) / model
    if (run / "checkpoint.pt").is_file():
        nets, o = load_nets(run)
        noise, source = D.fixed_noise(o["latent"], n), f"the trained run {run}"
        train = D.training_set(data)[0]
        directions = latent.principal_directions(nets, train, k=3)
        found = D.attributes(data)
        if found is not None:
            names, rows = found
            directions.update(latent.attribute_vectors(nets, train, rows, names, [d for d in DIRECTIONS if d in names]))
    else:
        nets, info = pretrained.load(model)
        noise, directions = info["noise"][:n], info["directions"]
        source = f"the published weights ({pretrained.path_of(model).relative_to(pretrained.ROOT)}, trained on CPU)"
    starts = {f"sample {i + 1}": z for i, z in enumerate(noise)}
    if D.holdout_path(D.resolve_data(data)) is not None:
        faces = D.holdout_set(data, n)[0]
        starts.update({f"held-out face {i + 1}": z for i, z in enumerate(nets.encode(faces))})
    return nets, starts, {k: directions[k] for k in DIRECTIONS if k in directions}, source


FACE_PX = 256  # the face on the page: 64 px, 4x


def png_bytes(image_hwc, scale=FACE_PX // 64):
    from PIL import Image
    img = Image.fromarray(image_hwc)
    buf = io.BytesIO()
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(buf, "PNG")
    return buf.getvalue()


class LatentExplorer:
    """One slider per direction (principal components, attribute vectors) plus an A-to-B slider
    between two start codes (prior samples, encoded faces).

    `explorer.widget` is what JupyterLab and Voila show; `explorer.sliders[name].value = v` is what
    a user's drag does, so headless runs exercise exactly the same callbacks.
    """

    def __init__(self, nets, starts, directions, limit=3.0):
        self.nets = nets.eval()
        self.codes = torch.stack(list(starts.values()))
        self.directions = directions
        names = [(name, i) for i, name in enumerate(starts)]
        self.face = W.Dropdown(options=names, value=0, description="start")
        self.target = W.Dropdown(options=names, value=min(1, len(names) - 1), description="towards")
        self.blend = W.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="A → B", continuous_update=True)
        self.sliders = {name: W.FloatSlider(0.0, min=-limit, max=limit, step=0.1, description=name,
                                            continuous_update=True) for name in directions}
        # Square and at the top: an HBox otherwise stretches the face to the controls' height.
        self.image = W.Image(format="png", layout=W.Layout(width=f"{FACE_PX}px", height=f"{FACE_PX}px",
                                                           align_self="flex-start", object_fit="contain"))
        self.reset = W.Button(description="reset")
        self.reset.on_click(lambda _: [setattr(s, "value", 0.0) for s in self.sliders.values()])
        for control in (self.face, self.target, self.blend, *self.sliders.values()):
            control.observe(lambda _: self.update(), names="value")
        self.update()
        controls = W.VBox([self.face, self.target, self.blend, *self.sliders.values(), self.reset])
        self.widget = W.HBox([self.image, controls])

    def code(self):
        t = self.blend.value
        z = (1 - t) * self.codes[self.face.value] + t * self.codes[self.target.value]
        for name, slider in self.sliders.items():
            z = z + slider.value * self.directions[name]
        return z

    def render(self):
        """The decoded face for the controls' current values, uint8 HWC."""
        return self.nets.decode(self.code()[None])[0].permute(1, 2, 0).numpy()

    def update(self):
        self.image.value = png_bytes(self.render())
