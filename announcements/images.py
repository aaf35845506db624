"""Images that belong to a product's notes: checked, re-encoded, and kept by their content.

An upload is decoded with Pillow and written out again from its pixels, so the file
Tidings serves carries nothing the uploaded one held beside them: no EXIF (camera, place,
time), no XMP, no comments. The colour profile stays, because it says how the pixels are
meant to look (a Mac screenshot is in Display P3), not who made them. Pillow is told to
try only the PNG, JPEG, GIF and WebP decoders, and a file must be the type it says it is.

A file is named by the SHA-256 of the bytes written, in one folder per product: the
same picture uploaded twice is kept once, and a name never comes to mean other bytes,
which is what lets it be served as immutable. The URL path of a file,
``/media/<product id>/<name>``, is the one ``rendering.MEDIA_PATH`` lets into notes.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, ImageSequence

from announcements.errors import ValidationFailed

MAX_BYTES = 5 * 1024 * 1024
# Decoding needs memory for its pixels, whatever the size of the file: a 60 KB PNG can
# declare 100,000 × 100,000 of them. 24 million is a 6K screen, or a 2,000 × 12,000
# full-page capture, and holds under 100 MB as RGBA.
MAX_PIXELS = 24_000_000
# Animations are re-encoded frame by frame but kept whole until written: their frames
# together stay under this many pixels (200 frames of 600 × 400), and under MAX_FRAMES.
MAX_ANIMATION_PIXELS = 48_000_000
MAX_FRAMES = 500
JPEG_QUALITY = 90
WEBP_QUALITY = 90


@dataclass(frozen=True)
class Format:
    """A type of image Tidings keeps: its name, Pillow's name for it, its file extension
    and its media type."""

    label: str
    pillow: str
    extension: str
    media_type: str


FORMATS = (
    Format("PNG", "PNG", "png", "image/png"),
    Format("JPEG", "JPEG", "jpg", "image/jpeg"),
    Format("GIF", "GIF", "gif", "image/gif"),
    Format("WebP", "WEBP", "webp", "image/webp"),
)
_BY_MEDIA_TYPE = {f.media_type: f for f in FORMATS} | {"image/jpg": FORMATS[1]}
_BY_EXTENSION = {f.extension: f for f in FORMATS} | {"jpeg": FORMATS[1]}
# Pillow reads a JPEG that holds more than one picture (as phones write) as MPO.
_READ_AS = {"MPO": "JPEG"}
NAME_PATTERN = re.compile(r"[0-9a-f]{64}\.(?:png|jpg|gif|webp)")
KINDS = "a PNG, JPEG, GIF or WebP image"


@dataclass(frozen=True)
class StoredImage:
    """An image kept for a product: its file name and size, and whether it was new."""

    name: str
    width: int
    height: int
    is_new: bool

    @property
    def media_type(self) -> str:
        return media_type_of(self.name)


def media_type_of(name: str) -> str:
    """The media type a stored file is served as, from its extension."""
    return _BY_EXTENSION[name.rsplit(".", 1)[1]].media_type


def _claimed_format(media_type: str, filename: str) -> Format:
    """The format an upload says it is: its media type, or its file name's extension
    when the media type says nothing (``application/octet-stream``)."""
    kind = media_type.split(";", 1)[0].strip().lower()
    if kind and kind != "application/octet-stream":
        claimed = _BY_MEDIA_TYPE.get(kind)
    else:
        claimed = _BY_EXTENSION.get(filename.rsplit(".", 1)[-1].lower() if "." in filename else "")
    if claimed is None:
        raise _refuse(f"Upload {KINDS}; this file is {kind or 'of an unknown type'}.")
    return claimed


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed({"image": message})


def _open(data: bytes, claimed: Format) -> tuple[Image.Image, int]:
    """Open ``data`` as one of the kept formats and count its frames, refusing it before
    anything is decoded if it is not the claimed format or has too many pixels."""
    try:
        # Pillow warns about, and past twice its limit refuses, a picture too large; its
        # limit is far above MAX_PIXELS, which is checked below.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[f.pillow for f in FORMATS])
        actual = _READ_AS.get(image.format or "", image.format)
        frames = 1 if actual == "JPEG" else getattr(image, "n_frames", 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse(_too_large_message()) from None
    except Exception:  # see _reencode
        raise _refuse(f"This file is not {KINDS}, or it is damaged.") from None
    if actual != claimed.pillow:
        found = next(f for f in FORMATS if f.pillow == actual)
        raise _refuse(
            f"This file says it is {claimed.label} but holds a {found.label} image."
            " Save it with the right type and upload it again."
        )
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise _refuse(_too_large_message())
    if frames > MAX_FRAMES or frames * width * height > MAX_ANIMATION_PIXELS:
        raise _refuse(
            f"This animation is too long for its size: keep it under {MAX_FRAMES} frames and "
            f"{MAX_ANIMATION_PIXELS // 1_000_000} million pixels in all frames together."
        )
    return image, frames


def _too_large_message() -> str:
    return (
        f"This image has too many pixels (at most {MAX_PIXELS // 1_000_000} million, "
        "such as 6,000 × 4,000). Scale it down and upload it again."
    )


def _bare(image: Image.Image) -> Image.Image:
    """A copy of ``image`` that keeps of its metadata only which colour is transparent."""
    copy = image.copy()
    copy.info = {k: v for k, v in image.info.items() if k == "transparency"}
    return copy


def _frames(image: Image.Image) -> tuple[list[Image.Image], list[int]]:
    """Each frame, bare, and how long each shows, in milliseconds."""
    frames: list[Image.Image] = []
    durations: list[int] = []
    for frame in ImageSequence.Iterator(image):
        frames.append(_bare(frame))  # loaded first: WebP reads a frame's duration then
        durations.append(int(frame.info.get("duration", 100)))
    return frames, durations


def _reencode(data: bytes, claimed: Format) -> tuple[bytes, Image.Image]:
    """The image in ``data`` written out again from its pixels, and the image written.

    Raise ValidationFailed when it is not the claimed format, cannot be decoded, or is
    too large once decoded.
    """
    image, frame_count = _open(data, claimed)
    icc_profile = image.info.get("icc_profile")
    out = io.BytesIO()
    options: dict[str, Any]
    try:
        if frame_count > 1:
            frames, durations = _frames(image)
            options = {"save_all": True, "append_images": frames[1:], "duration": durations}
            if "loop" in image.info:
                options["loop"] = image.info["loop"]
            if claimed.pillow == "GIF":  # each frame is whole: draw it on a clear canvas
                options["disposal"] = 2
            written = frames[0]
        else:
            # A photo's EXIF may say "turn me": turn the pixels, as the EXIF goes.
            written = _bare(ImageOps.exif_transpose(image))
            options = {}
        if icc_profile and claimed.pillow != "GIF":
            options["icc_profile"] = icc_profile
        if claimed.pillow == "JPEG":
            options["quality"] = JPEG_QUALITY
        elif claimed.pillow == "WEBP":
            options["quality"] = WEBP_QUALITY
        written.save(out, format=claimed.pillow, **options)
    except Image.DecompressionBombError:  # a frame larger than the image said it was
        raise _refuse(_too_large_message()) from None
    except Exception:
        # Pillow's decoders meet crafted bytes with whatever error their parsing runs into:
        # 6,000 mutations of small files of the four formats raised OSError, SyntaxError,
        # ValueError and IndexError (tests/test_images.py mutates them too).
        raise _refuse(f"This {claimed.label} image is damaged or cut short.") from None
    return out.getvalue(), written


def store(
    folder: Path, product_id: int, data: bytes, *, media_type: str, filename: str = ""
) -> StoredImage:
    """Check and re-encode an uploaded image, and keep it in ``folder/<product id>/``.

    ``media_type`` and ``filename`` are what the upload says it is. Raise ValidationFailed,
    naming the ``image`` field, when it is larger than MAX_BYTES, is not the format it
    claims, cannot be decoded or has too many pixels.
    """
    claimed = _claimed_format(media_type, filename)
    if len(data) > MAX_BYTES:
        megabytes = MAX_BYTES // 1024 // 1024
        raise _refuse(f"This image is over {megabytes} MB. Make it smaller and upload it again.")
    encoded, image = _reencode(data, claimed)
    name = f"{hashlib.sha256(encoded).hexdigest()}.{claimed.extension}"
    directory = folder / str(product_id)
    path = directory / name
    is_new = not path.exists()
    if is_new:
        directory.mkdir(parents=True, exist_ok=True)
        # Written beside its place and renamed into it: a reader never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(encoded)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return StoredImage(name, image.width, image.height, is_new)


def stored_file(folder: Path, product_id: int, name: str) -> Path | None:
    """The file of a product's image by its name, or None if it has no such image."""
    if NAME_PATTERN.fullmatch(name) is None:
        return None
    path = folder / str(product_id) / name
    return path if path.is_file() else None
