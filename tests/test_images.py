"""Images in notes: what an upload must be, what is kept of it, who may upload, how it is
served, and that its absolute URL reaches every place a note is shown."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import io
import random
import re
import struct
import zlib
from pathlib import Path

import feedparser
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, ImageCms, ImageDraw, ImageSequence
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from announcements import images, rendering, subscriptions
from announcements.errors import ValidationFailed
from announcements.models import AuditEvent, Product, Role, utcnow
from announcements.subscriptions import Preferences
from app.mail import compose
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_member, make_note, make_product

KINDS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
# What fetch() in the editor sends: errors come back as JSON.
FETCH = {"Sec-Fetch-Dest": "empty"}


def picture(kind: str, size: tuple[int, int] = (64, 48), **options: object) -> bytes:
    """A small drawing saved as ``kind`` by Pillow."""
    image = Image.new("RGB", size, "#e0e7ff")
    ImageDraw.Draw(image).rectangle((8, 8, size[0] - 8, size[1] - 8), fill="#4f46e5")
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` × ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def stored_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# What is kept --------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_is_kept_re_encoded_and_named_by_its_content(tmp_path: Path, kind: str) -> None:
    stored = images.store(tmp_path, 7, picture(kind), media_type=KINDS[kind], filename="x")
    path = tmp_path / "7" / stored.name
    data = path.read_bytes()
    assert stored.name == f"{hashlib.sha256(data).hexdigest()}.{stored.name.rsplit('.')[1]}"
    assert images.NAME_PATTERN.fullmatch(stored.name)
    assert stored.media_type == KINDS[kind]
    assert (stored.width, stored.height, stored.is_new) == (64, 48, True)
    with Image.open(path) as kept:
        assert (kept.format, kept.size) == (kind, (64, 48))
    again = images.store(tmp_path, 7, picture(kind), media_type=KINDS[kind], filename="x")
    assert (again.name, again.is_new) == (stored.name, False)
    assert stored_files(tmp_path) == [path]


def test_the_type_comes_from_the_file_name_when_the_media_type_says_nothing(
    tmp_path: Path,
) -> None:
    data = picture("WEBP")
    stored = images.store(
        tmp_path, 1, data, media_type="application/octet-stream", filename="a.webp"
    )
    assert stored.name.endswith(".webp")
    with pytest.raises(ValidationFailed, match="Upload a PNG, JPEG, GIF or WebP image"):
        images.store(tmp_path, 1, data, media_type="image/svg+xml", filename="a.svg")


@pytest.mark.parametrize(
    ("data", "media_type", "message"),
    [
        pytest.param(b"Just text, sent as a PNG.\n", "image/png", "is not a PNG", id="text"),
        pytest.param(picture("JPEG"), "image/png", "says it is PNG but holds a JPEG", id="jpeg"),
        pytest.param(picture("PNG")[:-40], "image/png", "damaged", id="cut-short"),
        pytest.param(
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "image/gif",
            "is not a PNG",
            id="svg",
        ),
    ],
)
def test_a_file_that_is_not_what_it_claims_is_refused(
    tmp_path: Path, data: bytes, media_type: str, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message) as refused:
        images.store(tmp_path, 1, data, media_type=media_type, filename="x")
    assert set(refused.value.errors) == {"image"}
    assert stored_files(tmp_path) == []


@pytest.mark.parametrize(
    "size",
    [
        pytest.param((100_000, 100_000), id="past-pillows-own-limit"),
        pytest.param((6_000, 5_000), id="past-tidings-limit"),
    ],
)
def test_a_decompression_bomb_is_refused_without_being_decoded(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    bomb = png_declaring(*size)
    assert len(bomb) < 200
    with pytest.raises(ValidationFailed, match="too many pixels"):
        images.store(tmp_path, 1, bomb, media_type="image/png", filename="bomb.png")
    assert stored_files(tmp_path) == []


def test_mangled_files_are_refused_or_kept_and_never_break_the_upload(tmp_path: Path) -> None:
    """Flipped, cut and inserted bytes in files of each kind: each is stored, or refused
    with the field's message; no other error reaches the view."""
    rng = random.Random(13)
    still = Image.new("RGB", (40, 30), "white")
    exif = Image.Exif()
    exif[0x0112] = 3
    seeds = [(kind, picture(kind, exif=exif)) for kind in ("PNG", "JPEG", "WEBP")]
    for kind in ("PNG", "GIF", "WEBP"):
        out = io.BytesIO()
        still.save(out, kind, save_all=True, append_images=[still.rotate(90)], duration=50)
        seeds.append((kind, out.getvalue()))
    outcomes = {"kept": 0, "refused": 0}
    for _ in range(1500):
        kind, data = rng.choice(seeds)
        mangled = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(mangled))
            change = rng.random()
            if change < 0.6:
                mangled[at] = rng.randrange(256)
            elif change < 0.8:
                del mangled[at : at + rng.randint(1, 20)]
            else:
                mangled[at:at] = rng.randbytes(rng.randint(1, 20))
        try:
            images.store(tmp_path, 1, bytes(mangled), media_type=KINDS[kind])
            outcomes["kept"] += 1
        except ValidationFailed as refused:
            assert set(refused.errors) == {"image"}
            outcomes["refused"] += 1
    assert min(outcomes.values()) > 100, outcomes


def test_a_file_over_5_mb_is_refused(tmp_path: Path) -> None:
    data = picture("PNG") + b"\x00" * images.MAX_BYTES
    with pytest.raises(ValidationFailed, match="over 5 MB"):
        images.store(tmp_path, 1, data, media_type="image/png", filename="big.png")
    assert stored_files(tmp_path) == []


def test_exif_and_comments_are_stripped_and_the_turn_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x013B] = "Dana Demo"  # Artist
    exif[0x0112] = 6  # Orientation: turn 90° clockwise to show
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>Dana XMP</dc:creator></x:xmpmeta>'
    data = picture("JPEG", exif=exif, comment=b"taken at home", xmp=xmp)
    assert b"Dana Demo" in data and b"taken at home" in data and b"Dana XMP" in data
    stored = images.store(tmp_path, 1, data, media_type="image/jpeg", filename="photo.jpg")
    kept = (tmp_path / "1" / stored.name).read_bytes()
    for trace in (b"Dana Demo", b"Canon", b"taken at home", b"Dana XMP"):
        assert trace not in kept
    with Image.open(io.BytesIO(kept)) as image:
        assert dict(image.getexif()) == {}
        assert "comment" not in image.info and "exif" not in image.info
        assert image.size == (48, 64)  # turned as the EXIF said


def test_png_text_and_exif_are_stripped_but_the_colour_profile_stays(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    text = PngInfo()
    text.add_text("Author", "Dana Demo")
    exif = Image.Exif()
    exif[0x013B] = "Dana Demo"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = picture("PNG", pnginfo=text, exif=exif, icc_profile=profile)
    assert data.count(b"Dana Demo") == 2
    stored = images.store(tmp_path, 1, data, media_type="image/png", filename="shot.png")
    with Image.open(tmp_path / "1" / stored.name) as image:
        assert b"Dana Demo" not in (tmp_path / "1" / stored.name).read_bytes()
        assert image.info.get("icc_profile") == profile


@pytest.mark.parametrize("kind", ["GIF", "WEBP", "PNG"])
def test_an_animation_keeps_its_frames_and_timing(tmp_path: Path, kind: str) -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(
        out, kind, save_all=True, append_images=frames[1:], duration=[100, 200, 300], loop=0
    )
    stored = images.store(tmp_path, 1, out.getvalue(), media_type=KINDS[kind], filename="a")
    with Image.open(tmp_path / "1" / stored.name) as image:
        shown = []
        for frame in ImageSequence.Iterator(image):
            pixel = frame.convert("RGB").getpixel((20, 15))  # loads the frame and its timing
            shown.append(
                (frame.info["duration"], ("red", "green", "blue")[pixel.index(max(pixel))])
            )
    assert shown == [(100, "red"), (200, "green"), (300, "blue")]  # WebP is lossy: near enough


# The console's upload ----------------------------------------------------------------


@pytest.fixture
def acme(session: Session, auth: AuthActions) -> Product:
    """Acme, with its editor logged in."""
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme", name="Acme")
    editor = add_member(session, product, Role.EDITOR, "editor@example.com")
    auth.login(editor.email)
    return product


def upload(client: FlaskClient, slug: str, data: bytes, name: str = "chart.png", kind: str = "PNG"):
    """Post an image as the editor's script does. The body is encoded here, in memory: the
    test client's own encoder leaves a temporary file open for bodies over 500 KB."""
    file = FileStorage(io.BytesIO(data), name, content_type=KINDS[kind])
    boundary, body = encode_multipart({"image": file})
    return client.post(
        f"/console/p/{slug}/images",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers={"X-CSRFToken": csrf_token(client), **FETCH},
    )


def media_folder(app: Flask) -> Path:
    return Path(app.instance_path) / "media"


def test_an_editor_uploads_and_gets_the_url_and_the_markdown(
    app: Flask, client: FlaskClient, session: Session, acme: Product
) -> None:
    response = upload(client, "acme", picture("PNG"), name="release_chart-2.png")
    assert response.status_code == 201
    answer = response.get_json()
    [kept] = stored_files(media_folder(app))
    path = f"/media/{acme.id}/{kept.name}"
    assert answer == {
        "url": f"{app.config['BASE_URL']}{path}",
        "markdown": f"![release chart 2]({path})",
    }
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "image.uploaded")).one()
    assert (event.product_id, event.actor.email) == (acme.id, "editor@example.com")
    assert path in event.summary
    # Once more, the same picture: the same answer, one file, one audit line.
    assert upload(client, "acme", picture("PNG")).get_json()["url"] == answer["url"]
    assert len(stored_files(media_folder(app))) == 1
    count = (
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "image.uploaded")
    )
    assert session.scalar(count) == 1


def test_a_bad_upload_is_a_clear_json_error_and_keeps_nothing(
    app: Flask, client: FlaskClient, acme: Product
) -> None:
    cases = {
        "text": (b"not an image", "chart.png"),
        "bomb": (png_declaring(100_000, 100_000), "bomb.png"),
        "over 5 MB": (picture("PNG") + b"\x00" * images.MAX_BYTES, "big.png"),
    }
    for case, (data, name) in cases.items():
        response = upload(client, "acme", data, name=name)
        assert response.status_code == 422, case
        assert set(response.get_json()["errors"]) == {"image"}, case
    missing = client.post(
        "/console/p/acme/images", headers={"X-CSRFToken": csrf_token(client), **FETCH}
    )
    assert missing.status_code == 422
    assert missing.get_json()["errors"]["image"].startswith("Choose")
    assert stored_files(media_folder(app)) == []


def test_a_body_far_over_5_mb_is_refused_before_it_is_read(
    app: Flask, client: FlaskClient, acme: Product
) -> None:
    response = upload(client, "acme", b"\x00" * (6 * 1024 * 1024))
    assert response.status_code == 413
    assert "error" in response.get_json()
    assert stored_files(media_folder(app)) == []


def test_the_upload_needs_the_csrf_token(app: Flask, client: FlaskClient, acme: Product) -> None:
    response = client.post(
        "/console/p/acme/images",
        data={"image": (io.BytesIO(picture("PNG")), "a.png", "image/png")},
        headers=FETCH,
    )
    assert response.status_code == 400
    assert stored_files(media_folder(app)) == []


def test_a_viewer_may_not_upload_and_an_outsider_finds_no_product(
    app: Flask, client: FlaskClient, session: Session, auth: AuthActions, acme: Product
) -> None:
    viewer = add_member(session, acme, Role.VIEWER, "viewer@example.com")
    auth.logout()
    auth.login(viewer.email)
    assert upload(client, "acme", picture("PNG")).status_code == 403
    outsider = make_member(session, "outsider@example.com")
    make_product(session, owner=outsider, slug="elsewhere")
    auth.logout()
    auth.login(outsider.email)
    assert upload(client, "acme", picture("PNG")).status_code == 404
    assert stored_files(media_folder(app)) == []


def test_an_image_is_served_only_under_the_product_it_was_uploaded_to(
    client: FlaskClient, session: Session, auth: AuthActions, acme: Product
) -> None:
    path = upload(client, "acme", picture("PNG")).get_json()["markdown"].split("(")[1][:-1]
    other = make_product(session, slug="other")
    assert client.get(path, buffered=True).status_code == 200
    elsewhere = path.replace(f"/media/{acme.id}/", f"/media/{other.id}/")
    assert client.get(elsewhere, buffered=True).status_code == 404
    # An editor of Acme only cannot put an image in the other product's folder.
    assert upload(client, "other", picture("PNG")).status_code == 404


# Serving --------------------------------------------------------------------------


def test_an_image_is_served_as_its_type_cached_for_good_and_never_sniffed(
    client: FlaskClient, acme: Product
) -> None:
    for kind, media_type in KINDS.items():
        sent = upload(client, "acme", picture(kind), name=f"a.{kind.lower()}", kind=kind)
        path = sent.get_json()["markdown"].split("(")[1][:-1]
        served = client.get(path, buffered=True)  # read and closed, as a server does
        assert served.status_code == 200, kind
        assert served.mimetype == media_type
        assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        assert hashlib.sha256(served.data).hexdigest() == path.rsplit("/", 1)[1].split(".")[0]
        again = client.get(path, headers={"If-None-Match": served.headers["ETag"]}, buffered=True)
        assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/media/1/../../tidings.db",
        "/media/1/..%2F..%2Ftidings.db",
        "/media/1/%2e%2e%2ftidings.db",
        "/media/1/" + "a" * 64 + ".svg",
        "/media/1/" + "A" * 64 + ".png",
        "/media/1/" + "a" * 64 + ".png",  # the right shape, but no such file
        "/media/0/" + "a" * 64 + ".png",
        "/media/99999999999999999999/" + "a" * 64 + ".png",
        "/media/1/.upload-abc",
        "/media/x/" + "a" * 64 + ".png",
    ],
)
def test_no_path_reaches_anything_but_a_stored_image(
    app: Flask, client: FlaskClient, path: str
) -> None:
    (Path(app.instance_path) / "media" / "1").mkdir(parents=True, exist_ok=True)
    (Path(app.instance_path) / "media" / "1" / ".upload-abc").write_bytes(b"half")
    assert client.get(path, buffered=True).status_code == 404


# The sanitiser ---------------------------------------------------------------------


MEDIA = "/media/3/" + "ab" * 32 + ".png"


def image_sources(html: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]*)"', html)


def test_the_sanitiser_shows_this_instances_uploads_at_base_url(app: Flask) -> None:
    base = app.config["BASE_URL"]
    assert base.startswith("http://")  # development: the media are not on https
    html = rendering.render(
        f"![by path]({MEDIA})\n\n![by url]({base}{MEDIA})\n\n<img src='{MEDIA}' alt='raw'>\n\n"
        "![elsewhere](https://img.example.com/a.png)"
    )
    assert image_sources(html) == [
        f"{base}{MEDIA}",
        f"{base}{MEDIA}",
        f"{base}{MEDIA}",
        "https://img.example.com/a.png",
    ]


@pytest.mark.parametrize(
    "src",
    [
        "http://evil.example" + MEDIA,
        "http://127.0.0.1:5001" + MEDIA,
        "http://127.0.0.1:5000.evil.example" + MEDIA,
        "//evil.example" + MEDIA,
        MEDIA + "?x=1",
        "/media/3/../../console/",
        "/media/3/" + "ab" * 32 + ".svg",
        "/static/console/favicon.svg",
        "http://127.0.0.1:5000/static/console/favicon.svg",
        "data:image/png;base64,iVBORw0KGgo=",
    ],
)
def test_the_sanitiser_drops_other_http_images(app: Flask, src: str) -> None:
    assert app.config["BASE_URL"] == "http://127.0.0.1:5000"
    assert "<img" not in rendering.render(f"![x]({src})\n\n<img src='{src}'>")


# Everywhere a note is shown -------------------------------------------------------------


def test_an_uploaded_image_has_its_absolute_url_in_the_widget_page_feeds_and_mail(
    app: Flask, client: FlaskClient, session: Session, acme: Product
) -> None:
    answer = upload(client, "acme", picture("PNG")).get_json()
    note = make_note(session, acme, version="2.0.0", body_md=f"Look:\n\n{answer['markdown']}")
    url = answer["url"]
    assert url.startswith(app.config["BASE_URL"] + "/media/")
    assert image_sources(note.body_html) == [url]

    assert url in client.get("/changelog/acme").get_data(as_text=True)
    feed = feedparser.parse(client.get("/changelog/acme/feed.rss").data)
    assert url in feed.entries[0].summary
    digest = hmac.new(acme.identity_secret.encode(), b"u-1", hashlib.sha256).hexdigest()
    widget = client.get(
        f"/api/v1/widget/{acme.widget_key}/notes",
        query_string={"user_id": "u-1", "user_hash": digest},
    )
    assert image_sources(widget.get_json()["notes"][0]["html"]) == [url]

    reader = subscriptions.request_subscription(
        session, acme, "reader@example.com", Preferences(), now=utcnow()
    )
    subscriptions.confirm(session, reader, Preferences(), now=utcnow())
    mail = email.message_from_bytes(
        compose.release_note(reader, note, "<t@example.com>").data, policy=email.policy.default
    )
    assert image_sources(mail.get_body(("html",)).get_content()) == [url]


def test_after_base_url_changes_notes_rerender_moves_the_images(
    app_factory, client: FlaskClient, session: Session, acme: Product
) -> None:
    answer = upload(client, "acme", picture("PNG")).get_json()
    note = make_note(session, acme, body_md=answer["markdown"])
    assert image_sources(note.body_html) == [answer["url"]]
    moved = app_factory(BASE_URL="https://news.example.com")
    done = moved.test_cli_runner().invoke(args=["notes", "rerender"])
    assert done.exit_code == 0, done.output
    session.refresh(note)
    path = answer["markdown"].split("(")[1][:-1]
    assert image_sources(note.body_html) == [f"https://news.example.com{path}"]
