"""Images in headless Chromium: an editor uploads and pastes screenshots into a note, and
readers see them load in the widget on the demo host page and on the public changelog.

Screenshots go to instance/screenshots/images-*.png.
"""

from __future__ import annotations

import io
import re
import uuid

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Locator, expect

from tests.browser import SCREENSHOTS
from tests.test_browser_console import log_in

pytestmark = pytest.mark.browser

TITLE = "Charts you can annotate"


def chart(width: int, height: int, colour: str) -> bytes:
    """A PNG of a small bar chart."""
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    for bar, share in enumerate((0.9, 0.6, 0.75, 0.4)):
        left = 20 + bar * (width - 40) // 4
        top = int(height - 20 - (height - 40) * share)
        draw.rectangle((left, top, left + (width - 40) // 5, height - 20), fill=colour)
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


def loaded_width(image: Locator) -> int:
    """The width the browser decoded ``image`` at: 0 would be a broken image."""
    image.scroll_into_view_if_needed()
    handle = image.element_handle()
    image.page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=handle)
    return int(handle.evaluate("i => i.naturalWidth"))


PASTE = """([bytes, name]) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
  const body = document.querySelector("textarea[name=body_md]");
  body.focus();
  body.setSelectionRange(body.value.length, body.value.length);
  const paste = {clipboardData: data, bubbles: true, cancelable: true};
  body.dispatchEvent(new ClipboardEvent("paste", paste));
}"""


def test_an_uploaded_image_shows_in_the_editor_the_widget_and_the_public_page(
    page, live_server
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, live_server, "demo@example.com")
    page.goto(f"{live_server}/console/p/lumen/notes/new")
    page.fill("input[name=version]", "2.10.0")
    page.fill("input[name=title]", TITLE)
    body = page.locator("textarea[name=body_md]")
    body.fill("Draw on any chart, then share it.\n")
    picker = page.locator(".image-upload input[type=file]")
    error = page.locator("#image-error")

    # A text file dressed as a PNG: refused, and said so beside the field.
    picker.set_input_files(
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"just some text"}]
    )
    expect(error).to_be_visible()
    expect(error).to_contain_text("is not a PNG, JPEG, GIF or WebP image")
    assert "/media/" not in body.input_value()

    # A real one, chosen with the button: its Markdown goes in at the cursor, alt selected.
    body.press("End")
    picker.set_input_files(
        files=[
            {
                "name": "annotated-chart.png",
                "mimeType": "image/png",
                "buffer": chart(480, 270, "#4f46e5"),
            }
        ]
    )
    expect(body).to_have_value(re.compile(r"!\[annotated chart\]\(/media/\d+/[0-9a-f]{64}\.png\)"))
    expect(error).to_be_hidden()
    assert (
        page.evaluate(
            "() => { const b = document.querySelector('textarea[name=body_md]');"
            " return b.value.slice(b.selectionStart, b.selectionEnd); }"
        )
        == "annotated chart"
    )

    # A screenshot pasted into the text: uploaded too.
    page.evaluate(PASTE, [list(chart(300, 200, "#0f766e")), "image.png"])
    expect(body).to_have_value(re.compile(r"\)\n\n!\[image\]\(/media/\d+/[0-9a-f]{64}\.png\)\n$"))
    preview = page.locator("#preview img")
    expect(preview).to_have_count(2)
    assert [loaded_width(preview.nth(i)) for i in range(2)] == [480, 300]
    page.screenshot(path=SCREENSHOTS / "images-editor.png", full_page=True)

    page.click("button[value=publish]")
    page.get_by_text(f"“{TITLE}” is live in 2.10.0.").wait_for()

    # In the widget of the demo host, for a new user, beside the demo's own screenshot.
    page.goto(f"{live_server}/demo/host?user=images-{uuid.uuid4().hex[:6]}")
    modal = page.locator("tidings-widget .modal")
    expect(modal).to_contain_text("Replace API tokens created before 2.10")  # confirmed first
    modal.get_by_role("button", name="I understand").click()
    expect(modal).to_contain_text("Funnels: see where people drop off")
    assert loaded_width(modal.locator(".body img")) == 960  # the demo ships its pictures
    page.screenshot(path=SCREENSHOTS / "images-demo-modal.png")
    page.keyboard.press("Escape")
    page.click("#whats-new")
    note = page.locator("tidings-widget .panel .note", has_text=TITLE)
    expect(note.locator("img")).to_have_count(2)
    assert loaded_width(note.locator("img").first) == 480
    src = note.locator("img").first.get_attribute("src")
    assert src.startswith(f"{live_server}/media/")  # absolute: the widget runs on other sites
    page.screenshot(path=SCREENSHOTS / "images-widget.png")

    # On the public changelog.
    page.goto(f"{live_server}/changelog/lumen")
    article = page.locator("article.note", has_text=TITLE)
    assert [loaded_width(article.locator("img").nth(i)) for i in range(2)] == [480, 300]
    article.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOTS / "images-public.png")
