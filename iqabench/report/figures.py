"""The seed papers' figures that show a method at work, drawn with Pillow (no plotting state).

- `draw_method_figure`: a method's own figure on a few images of a dataset part (e.g. a trained
  visual prompt applied to them, or an image with its segments and their scores). The method is
  planned, checked and set up exactly as `iqabench run` would (the same checkpoint, options and
  split), then its `figure(samples)` hook returns named images; this module writes them as PNG.
- Drawing helpers a method's hook uses: `caption`, `grid`, `to_image`, `text_panel`.
Nothing here names a method; what a figure shows is the method's.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iqabench.errors import IqaError

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
LABEL_BOX = (255, 255, 255)


def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable default font
    except TypeError:
        return ImageFont.load_default()


def to_image(value: Any):
    """A PIL image from a PIL image, a [3, H, W] / [H, W, 3] array or tensor in [0, 1] or uint8."""
    import numpy as np
    from PIL import Image

    if isinstance(value, Image.Image):
        return value.convert("RGB")
    array = value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def label(image, text: str, corner: str = "top-left", size: int = 12):
    """A copy of `image` with `text` on a white box in a corner (top-left, bottom-right)."""
    from PIL import ImageDraw

    image = image.copy()
    draw = ImageDraw.Draw(image)
    font = _font(size)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    w, h = x1 - x0 + 4, y1 - y0 + 4
    x = 0 if corner.endswith("left") else max(image.width - w, 0)
    y = 0 if corner.startswith("top") else max(image.height - h, 0)
    draw.rectangle((x, y, x + w, y + h), fill=LABEL_BOX)
    draw.text((x + 2 - x0, y + 2 - y0), text, fill=INK, font=font)
    return image


def caption(image, text: str, size: int = 12, width: int | None = None):
    """`image` (scaled to `width` when given) above a line of text."""
    from PIL import Image, ImageDraw

    image = image.convert("RGB")
    if width is not None and image.width != width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.NEAREST)
    font = _font(size)
    lines = text.split("\n")
    line_height = size + 4
    out = Image.new("RGB", (image.width, image.height + line_height * len(lines) + 2), BACKGROUND)
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((2, image.height + 2 + i * line_height), line, fill=INK, font=font)
    return out


def grid(rows: Sequence[Sequence[Any]], gap: int = 6, title: str | None = None):
    """Images laid out in rows (each row's images side by side, top-aligned), with an optional title."""
    from PIL import Image, ImageDraw

    rows = [[to_image(im) for im in row] for row in rows if row]
    if not rows:
        raise IqaError("a figure needs at least one image")
    title_height = 20 if title else 0
    width = max(sum(im.width for im in row) + gap * (len(row) + 1) for row in rows)
    if title:  # the title is never cut
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        width = max(width, probe.textbbox((0, 0), title, font=_font(13))[2] + 2 * gap)
    heights = [max(im.height for im in row) for row in rows]
    out = Image.new("RGB", (width, title_height + sum(heights) + gap * (len(rows) + 1)), BACKGROUND)
    if title:
        ImageDraw.Draw(out).text((gap, 4), title, fill=INK, font=_font(13))
    y = title_height + gap
    for row, height in zip(rows, heights):
        x = gap
        for im in row:
            out.paste(im, (x, y))
            x += im.width + gap
        y += height + gap
    return out


def text_panel(lines: Sequence[str], size: int = 13, pad: int = 8):
    """Lines of monospaced-looking text (a table) as an image."""
    from PIL import Image, ImageDraw

    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [probe.textbbox((0, 0), line or " ", font=font)[2] for line in lines] or [0]
    line_height = size + 5
    out = Image.new("RGB", (max(widths) + 2 * pad, line_height * max(len(lines), 1) + 2 * pad), BACKGROUND)
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_height), line, fill=INK, font=font)
    return out


def write_png(image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)
    return path


# -- a method's own figure, on the images a run would score ------------------------------------------
@dataclasses.dataclass(frozen=True)
class FigureResult:
    files: list[Path]
    image_ids: list[str]


def draw_method_figure(cfg, n_images: int, out: Path, on_log: Callable[[str], None] = print) -> FigureResult:
    """Plan the run `cfg` describes (same split, checkpoint and options), set the method up, and write
    the figure its `figure(samples)` hook draws on the part's first `n_images` images. A method with a
    `prepare` step is prepared over the whole part first, as a run is (so the scores shown are the run's)."""
    from iqabench.api import Method, SampleSource
    from iqabench.devices import resolve_device
    from iqabench.plan import build_run_plan
    from iqabench.run import ready_method

    if n_images < 1:
        raise IqaError("--n must be at least 1")
    plan = build_run_plan(cfg)
    if not plan.labelled:
        raise IqaError("figures are drawn on a dataset part (give --dataset, not --images)")
    if plan.split_note:
        on_log(plan.split_note)
    if plan.method.cls.figure is Method.figure:
        raise IqaError(f"method {plan.method.name} draws no figure of its own")
    load = plan.view.loader(with_reference=plan.method.cls.info.needs_reference)
    life = ready_method(plan, resolve_device(cfg.device))
    try:
        method = life.method
        if type(method).prepare is not Method.prepare:
            method.prepare(SampleSource(plan.ids, load))
        ids = plan.ids[:n_images]
        samples = [load(i) for i in ids]
        images = method.figure(samples)
    finally:
        life.teardown()
    if not images:
        raise IqaError(f"method {plan.method.name} drew nothing on {len(ids)} image(s)")
    stem = f"{plan.method.name.replace(':', '-')}_{plan.dataset_name}_{plan.split_name}"
    files = [write_png(image, out / f"{stem}_{name}.png") for name, image in images.items()]
    for path in files:
        on_log(f"wrote {path}")
    return FigureResult(files, ids)
