"""Latent sliders for JupyterLab: move a face along directions and watch the decoder follow."""
import io

import ipywidgets as W


def png_bytes(image_hwc, scale=4):
    from PIL import Image
    img = Image.fromarray(image_hwc)
    buf = io.BytesIO()
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(buf, "PNG")
    return buf.getvalue()


class LatentExplorer:
    """One slider per direction (principal components, attribute vectors) plus an A-to-B slider.

    `explorer.widget` is what JupyterLab shows; `explorer.sliders[name].value = v` is what a
    user's drag does, so headless runs exercise exactly the same callbacks.
    """

    def __init__(self, nets, faces_u8, directions, limit=3.0):
        self.nets = nets.eval()
        self.codes = nets.encode(faces_u8)
        self.directions = directions
        self.face = W.Dropdown(options=[(f"face {i}", i) for i in range(len(faces_u8))], value=0, description="face")
        self.target = W.Dropdown(options=[(f"face {i}", i) for i in range(len(faces_u8))],
                                 value=min(1, len(faces_u8) - 1), description="towards")
        self.blend = W.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="A → B", continuous_update=True)
        self.sliders = {name: W.FloatSlider(0.0, min=-limit, max=limit, step=0.1, description=name,
                                            continuous_update=True) for name in directions}
        self.image = W.Image(format="png")
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
