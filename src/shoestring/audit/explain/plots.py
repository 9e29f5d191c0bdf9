"""Heatmap pictures for image explanations (PNG files, drawn with matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def heatmap_png(path: Path, image: np.ndarray, maps: dict[str, np.ndarray], title: str) -> None:
    """The input beside each attribution map (``[C, H, W]`` arrays, summed over channels).

    Attribution colours are symmetric around zero (red supports the explained
    class, blue opposes it), scaled per map to its largest magnitude.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + len(maps)
    fig, axes = plt.subplots(1, panels, figsize=(3 * panels, 3.2), dpi=80)
    try:
        shown = image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0]
        axes[0].imshow(shown, cmap=None if image.shape[0] == 3 else "gray")
        axes[0].set_title("input")
        for ax, (name, m) in zip(axes[1:], maps.items()):
            flat = m.sum(axis=0)
            bound = float(np.abs(flat).max()) or 1.0
            ax.imshow(flat, cmap="bwr", vmin=-bound, vmax=bound)
            ax.set_title(name.replace("_", " "))
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(title, fontsize=9)
        save_figure(fig, path)
    finally:
        plt.close(fig)


def save_figure(fig, path: Path) -> None:
    """Save ``fig`` as PNG through :func:`shoestring.io.atomic_write_bytes`, so a figure in an
    encrypted run folder is encrypted like every other file there."""
    import io

    from shoestring.io import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue(), durable=False)
