"""Screenshots of the console, to look at before calling a page done.

    .venv/bin/python scripts/screenshots.py http://127.0.0.1:5000 EMAIL PASSWORD [OUT_DIR]

Logs in, then captures the login page, the products, the notes list, the editor and
the settings of the demo's Lumen product at desktop and phone widths into OUT_DIR
(default: instance/screenshots).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = {"desktop": (1366, 900), "phone": (390, 844)}


def main(base: str, email: str, password: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        for label, (width, height) in WIDTHS.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{base}/console/login")
            page.screenshot(path=out / f"login-{label}.png")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url("**/console/")
            page.screenshot(path=out / f"products-{label}.png", full_page=True)
            page.goto(f"{base}/console/p/lumen/notes")
            page.screenshot(path=out / f"notes-{label}.png", full_page=True)
            page.click(".note-title >> nth=0")
            page.wait_for_selector("#preview")
            page.screenshot(path=out / f"editor-{label}.png", full_page=True)
            page.goto(f"{base}/console/p/lumen/settings")
            page.screenshot(path=out / f"settings-{label}.png", full_page=True)
            page.close()
        browser.close()
    print(f"Screenshots in {out}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(
        sys.argv[1],
        sys.argv[2],
        sys.argv[3],
        Path(sys.argv[4] if len(sys.argv) > 4 else "instance/screenshots"),
    )
