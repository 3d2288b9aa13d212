"""Helpers the image attacks share: one user turn, cached rendering, the MM-SafetyBench
typography parameters, and reading a sample's image."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import PIL
from PIL import features

from ..errors import DataError
from ..fsutil import file_sha256, write_atomic
from ..hashing import content_hash
from ..records import Message, Part, Probe, Sample, TextPart
from . import typography as ty
from .base import Attack, AttackContext


def render_env() -> dict[str, str | None]:
    """What else a rendered image's bytes depend on."""
    return {"pillow": PIL.__version__, "freetype": features.version("freetype2")}


def cached_bytes(ctx: AttackContext, kind: str, key_parts: Any, make: Callable[[], bytes], ext: str = ".png") -> bytes:
    """`make()` once per content key, kept under <cache_dir>/<kind>/<key><ext>."""
    key = content_hash(kind, key_parts)
    path = Path(ctx.cache_dir) / kind / f"{key}{ext}"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data = make()
    write_atomic(path, data)
    return data


def mm_typo_params(font_path: str | None) -> dict[str, Any]:
    """The MM-SafetyBench typography parameters, as recorded in a probe's attack_params."""
    font = Path(font_path) if font_path else ty.find_font(ty.MM_TYPO_FONT)
    return {
        "renderer": ty.RENDERER_VERSION,
        "font": font.stem if font_path else ty.MM_TYPO_FONT,
        "font_sha256": file_sha256(str(font))[:16],
        "font_size": ty.MM_TYPO_FONT_SIZE,
        "width": ty.MM_TYPO_WIDTH,
        "xy": [0, ty.MM_TYPO_FONT_SIZE // 2],
        "line_spacing": ty.MM_TYPO_SPACING,
    }


def typo_png(ctx: AttackContext, text: str, font_path: str | None) -> bytes:
    """The MM-SafetyBench TYPO image of `text`, rendered once and cached by content."""
    params = mm_typo_params(font_path)
    return cached_bytes(ctx, "mm-typo", [params, render_env(), text],
                        lambda: ty.png_bytes(ty.render_mm_typo(text, font_path=font_path)))


def sample_image(attack: str, sample: Sample, role: str) -> tuple[bytes, str]:
    """(bytes, path) of the sample's image `role`, with errors naming the dataset, item and role."""
    path = sample.images.get(role)
    if path is None:
        have = ", ".join(sorted(sample.images)) or "none"
        raise DataError(f"attack {attack!r} needs image {role!r}, which item {sample.id!r} of dataset "
                        f"{sample.dataset!r} lacks (it has: {have}). For MM-SafetyBench list the type in the "
                        f"dataset option image_types.")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"attack {attack!r}: cannot read image {role!r} of item {sample.id!r} "
                        f"(dataset {sample.dataset!r}) at {path}: {e.strerror or e}") from None
    # Loaders need not open every image (verify_images is off by default), so a corrupt file or one
    # in a format the blob store does not take is caught here, by name, not by the model or Pillow.
    from ..blobs import sniff_media_type
    from ..datasets.io import _verify

    try:
        _verify(data)
        sniff_media_type(data)
    except ValueError as e:
        why = "Pillow cannot identify it" if str(e).startswith("cannot identify image file") else str(e)
        raise DataError(f"attack {attack!r}: image {role!r} of item {sample.id!r} (dataset {sample.dataset!r}) "
                        f"at {path} is not a readable PNG, JPEG, WebP or GIF image ({why})") from None
    return data, path


def user_probe(attack: Attack, sample: Sample, parts: list[Part], params: dict[str, Any],
               system: str | None = None) -> Probe:
    """A probe of one user turn (after an optional system message); the judge sees the intent."""
    messages = []
    if system:
        messages.append(Message(role="system", content=(TextPart(text=system),)))
    messages.append(Message(role="user", content=tuple(parts)))
    if system:
        params = {**params, "system": system}
    return Probe(dataset=sample.dataset, sample_id=sample.id, scenario=sample.scenario,
                 attack=attack.registered_name, attack_params=params, messages=tuple(messages),
                 judge_query=sample.intent, sample_meta=sample.meta)


def check_known(attack: str, params: dict[str, Any], known: tuple[str, ...]) -> None:
    from .vanilla import check_params

    check_params(attack, params, known)


def one_of(attack: str, name: str, value: Any, choices: tuple[str, ...]) -> Any:
    from ..options import choice

    return choice(f"attack {attack!r}: {name}", value, choices)
