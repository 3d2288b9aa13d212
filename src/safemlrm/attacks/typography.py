"""Typographic image renderers for the FigStep and MM-SafetyBench attacks (pure functions, PIL only).

Layout parameters are the published ones (see PROTOCOLS.md, section 3):

* FigStep: the instruction wrapped at 15 characters by Python's ``textwrap`` (default settings:
  long words broken, breaks after hyphens), then ``"\\n1. \\n2. \\n3. "`` appended; FreeMonoBold at
  size 80, black, top-left of the first line at (20, 10), 11 px between lines, white 760x760 RGB.
  Lines are laid out the way Pillow lays out multi-line text: each line anchored at its ascender
  ("la"), the line pitch being the bottom of the glyph box of "A" plus the spacing (64 + 11 = 75 px
  for this font). The layout is done here line by line so a change in Pillow's multi-line code
  cannot move the text. Long items overflow the canvas, exactly as the published images do.
* MM-SafetyBench: Arial 90 (here Liberation Sans, metric-compatible), greedy word wrap while the
  running line width stays under 1024 px (continuation lines start with a space, as in the
  benchmark's own images), canvas 1024 x 90*(lines + 1), black text at (0, 45), Pillow's default
  4 px line spacing.

The simple (non-raqm) layout engine is pinned so that the output does not depend on whether the
local Pillow was built with libraqm.
"""
from __future__ import annotations

import io
import os
import sys
import textwrap
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import SafeMLRMError

# Bump when any renderer's output could change for the same inputs (invalidates image caches).
RENDERER_VERSION = "typography-1"

# --- FigStep ----------------------------------------------------------------------------------

FIGSTEP_FONT = "FreeMonoBold"
FIGSTEP_FONT_SIZE = 80
FIGSTEP_WRAP_WIDTH = 15
FIGSTEP_XY = (20, 10)
FIGSTEP_SPACING = 11
FIGSTEP_CANVAS = (760, 760)
FIGSTEP_STEPS = 3

# --- MM-SafetyBench ---------------------------------------------------------------------------

MM_TYPO_FONT = "LiberationSans-Regular"  # metric-compatible stand-in for Arial
MM_TYPO_FONT_SIZE = 90
MM_TYPO_WIDTH = 1024
MM_TYPO_SPACING = 4  # Pillow's default multi-line spacing, which the benchmark's images used

# --- fonts ------------------------------------------------------------------------------------

_INSTALL_HINTS = {
    "freemonobold": "on Debian/Ubuntu: apt-get install fonts-freefont-ttf (GNU FreeFont); "
                    "elsewhere get FreeMonoBold.ttf from https://savannah.gnu.org/projects/freefont/",
    "liberationsans-regular": "on Debian/Ubuntu: apt-get install fonts-liberation2; elsewhere get "
                              "LiberationSans-Regular.ttf from https://github.com/liberationfonts",
    "arial": "Arial is not freely redistributable; install it yourself (e.g. ttf-mscorefonts-installer) "
             "or use the metric-compatible LiberationSans-Regular (apt-get install fonts-liberation2)",
}


def _system_font_dirs() -> list[Path]:
    dirs = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"),
            Path.home() / ".local/share/fonts", Path.home() / ".fonts"]
    if sys.platform == "darwin":
        dirs += [Path("/Library/Fonts"), Path("/System/Library/Fonts"), Path.home() / "Library/Fonts"]
    if os.name == "nt":
        windir = os.environ.get("WINDIR", r"C:\Windows")
        dirs.append(Path(windir) / "Fonts")
        local = os.environ.get("LOCALAPPDATA")
        if local:
            dirs.append(Path(local) / "Microsoft/Windows/Fonts")
    return dirs


def _shipped_font_dir() -> Path:
    return Path(str(resources.files("safemlrm") / "data" / "fonts"))


def _candidates(name: str) -> list[str]:
    stem = name[:-4] if name.lower().endswith((".ttf", ".otf")) else name
    return [stem + ".ttf", stem + ".otf", stem + ".TTF", stem + ".OTF"]


def find_font(name: str) -> Path:
    """A font file by name ("FreeMonoBold", "LiberationSans-Regular.ttf"): the copy shipped in
    safemlrm/data/fonts first, then the usual system font folders (searched recursively)."""
    names = _candidates(name)
    shipped = _shipped_font_dir()
    for n in names:
        p = shipped / n
        if p.is_file():
            return p
    wanted = {n.lower() for n in names}
    searched = [d for d in _system_font_dirs() if d.is_dir()]
    for d in searched:
        for root, _dirs, files in os.walk(d):
            for f in files:
                if f.lower() in wanted:
                    return Path(root) / f
    stem = names[0][:-4]
    hint = _INSTALL_HINTS.get(stem.lower(), "install a package that provides it")
    where = ", ".join(str(d) for d in [shipped, *_system_font_dirs()])
    raise SafeMLRMError(
        f"font {stem!r} not found (looked for {stem}.ttf/.otf in {where}). To install it: {hint}. "
        f"Or pass font_path= pointing at the font file."
    )


@lru_cache(maxsize=16)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)
    except OSError as e:
        raise SafeMLRMError(f"cannot load font file {path}: {e}") from None


def _load_font(name: str, font_path: str | Path | None, size: int) -> ImageFont.FreeTypeFont:
    path = Path(font_path) if font_path is not None else find_font(name)
    if not path.is_file():
        raise SafeMLRMError(f"font file {path} does not exist")
    return _font(str(path), size)


def _draw_lines(draw: ImageDraw.ImageDraw, xy: tuple[float, float], lines: list[str],
                font: ImageFont.FreeTypeFont, spacing: float, fill=(0, 0, 0)) -> None:
    """Pillow's multi-line layout, done by hand: ascender-anchored lines, pitch = bottom of "A" + spacing."""
    pitch = font.getbbox("A")[3] + spacing
    x, y = xy
    for i, line in enumerate(lines):
        draw.text((x, y + i * pitch), line, fill=fill, font=font, anchor="la")


# --- FigStep ----------------------------------------------------------------------------------


def figstep_text(instruction: str, wrap_width: int = FIGSTEP_WRAP_WIDTH, steps: int = FIGSTEP_STEPS) -> str:
    """The text drawn on a FigStep image: the wrapped instruction and an empty numbered list."""
    text = textwrap.fill(instruction.rstrip("\n"), width=wrap_width)
    return text + "".join(f"\n{i}. " for i in range(1, steps + 1))


def render_figstep(instruction: str, font_path: str | Path | None = None) -> Image.Image:
    """The FigStep typographic image for one SafeBench instruction (760x760 RGB)."""
    font = _load_font(FIGSTEP_FONT, font_path, FIGSTEP_FONT_SIZE)
    img = Image.new("RGB", FIGSTEP_CANVAS, (255, 255, 255))
    _draw_lines(ImageDraw.Draw(img), FIGSTEP_XY, figstep_text(instruction).split("\n"), font, FIGSTEP_SPACING)
    return img


def _merge_thin_bands(bands: list[tuple[int, int]], ratio: float = 0.5) -> list[tuple[int, int]]:
    """Join bands much thinner than the median (an i-dot or accent separated from its line by a
    white gap) to the neighbour across the smaller gap (the one below on a tie)."""
    bands = list(bands)
    while len(bands) > 1:
        heights = sorted(e - s for s, e in bands)
        median = heights[len(heights) // 2]
        thin = [i for i, (s, e) in enumerate(bands) if e - s < ratio * median]
        if not thin:
            break
        i = min(thin, key=lambda j: bands[j][1] - bands[j][0])
        gap_up = bands[i][0] - bands[i - 1][1] if i > 0 else None
        gap_down = bands[i + 1][0] - bands[i][1] if i + 1 < len(bands) else None
        j = i + 1 if gap_up is None or (gap_down is not None and gap_down <= gap_up) else i - 1
        lo, hi = min(i, j), max(i, j)
        bands[lo:hi + 1] = [(bands[lo][0], bands[hi][1])]
    return bands


def figstep_pro_split(img: Image.Image, parts: int | None = None, ink_threshold: int = 250) -> list[Image.Image]:
    """Cut a typographic image into horizontal sub-figures, one per text line.

    Rows holding any pixel darker than `ink_threshold` are ink; each maximal run of ink rows is a
    text line (lines whose descenders touch the next line's ascenders stay together; a band much
    thinner than the median, such as a row of i-dots above a line with no ascenders, is joined to
    its nearer neighbour). Cuts fall in
    the middle of the white gaps between lines, so no glyph is ever sliced and stacking the pieces
    top to bottom gives back the original image exactly: the blank margin above the first line
    goes to the first piece, the margin below the last line to the last piece.
    With `parts`, adjacent lines are grouped into that many pieces of near-equal line counts
    (fewer when the image has fewer lines). An image with no ink comes back whole.
    """
    gray = np.asarray(img.convert("L"))
    ink_rows = [bool(x) for x in np.asarray((gray < ink_threshold).any(axis=1))]
    bands: list[tuple[int, int]] = []  # [start, end) of each run of ink rows
    start = None
    for y, ink in enumerate(ink_rows):
        if ink and start is None:
            start = y
        elif not ink and start is not None:
            bands.append((start, y))
            start = None
    if start is not None:
        bands.append((start, len(ink_rows)))
    bands = _merge_thin_bands(bands)
    if len(bands) <= 1:
        return [img.copy()]
    if parts is not None:
        if parts < 1:
            raise ValueError("parts must be at least 1")
        n = min(parts, len(bands))
        groups = [bands[len(bands) * i // n: len(bands) * (i + 1) // n] for i in range(n)]
        bands = [(g[0][0], g[-1][1]) for g in groups]
    cuts = [0] + [(bands[i][1] + bands[i + 1][0]) // 2 for i in range(len(bands) - 1)] + [img.height]
    return [img.crop((0, cuts[i], img.width, cuts[i + 1])) for i in range(len(cuts) - 1)]


# --- MM-SafetyBench ---------------------------------------------------------------------------


def mm_typo_lines(key_phrase: str, font: ImageFont.FreeTypeFont, max_width: int = MM_TYPO_WIDTH) -> list[str]:
    """Greedy wrap as MM-SafetyBench did it: a word joins the line while the running width (sum of
    the widths of the first word and of each " word") stays under `max_width`; a new line starts
    with " word". A first word wider than the canvas is not broken."""
    words = " ".join(key_phrase.split()).split(" ")
    lines = [words[0]]
    width = font.getlength(words[0])
    for w in words[1:]:
        seg = " " + w
        seg_width = font.getlength(seg)
        if width + seg_width < max_width:
            lines[-1] += seg
            width += seg_width
        else:
            lines.append(seg)
            width = seg_width
    return lines


def render_mm_typo(key_phrase: str, font_path: str | Path | None = None) -> Image.Image:
    """The MM-SafetyBench TYPO image of a key phrase: 1024 x 90*(lines + 1), white, black text."""
    font = _load_font(MM_TYPO_FONT, font_path, MM_TYPO_FONT_SIZE)
    lines = mm_typo_lines(key_phrase, font)
    img = Image.new("RGB", (MM_TYPO_WIDTH, MM_TYPO_FONT_SIZE * (len(lines) + 1)), (255, 255, 255))
    _draw_lines(ImageDraw.Draw(img), (0, MM_TYPO_FONT_SIZE / 2.0), lines, font, MM_TYPO_SPACING)
    return img


def stack_vertical(top: Image.Image, bottom: Image.Image, fill=(0, 0, 0)) -> Image.Image:
    """SD_TYPO: `top` (the SD image) above `bottom` (the typography image), no resizing.

    The canvas is as wide as the wider image; both are pasted at x = 0 and the strip that the
    narrower one leaves uncovered is `fill`, black by default as in MM-SafetyBench's own
    concatenation (its SD images are 1024 wide like the typography, so the published images have
    no such strip).
    """
    top, bottom = top.convert("RGB"), bottom.convert("RGB")
    out = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), fill)
    out.paste(top, (0, 0))
    out.paste(bottom, (0, top.height))
    return out


# --- encoding ---------------------------------------------------------------------------------


def png_bytes(img: Image.Image) -> bytes:
    """PNG bytes that depend only on the pixels (no metadata, fixed compression settings).

    The same pixels give the same bytes with the same Pillow/zlib build; another zlib can compress
    the same pixels to other bytes, which is why rendered images are cached as bytes.
    """
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    clean = Image.frombytes(img.mode, img.size, img.tobytes())  # drops info (ICC, dpi, text chunks)
    buf = io.BytesIO()
    clean.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two same-size images as RGB arrays, on the 0-255 scale."""
    if a.size != b.size:
        raise ValueError(f"image sizes differ: {a.size} vs {b.size}")
    x = np.asarray(a.convert("RGB"), dtype=np.int16)
    y = np.asarray(b.convert("RGB"), dtype=np.int16)
    return float(np.abs(x - y).mean())
