"""QR codes as inline SVG (segno: pure Python, well kept, no image library needed)."""

from __future__ import annotations

import segno


def svg(text: str, *, scale: int = 4) -> str:
    """An <svg> element encoding `text` with error correction level M (15 % of the
    symbol can be damaged, a fold or a stain on a sheet kept for years)."""
    return segno.make(text, error="m", micro=False).svg_inline(scale=scale, border=4)
