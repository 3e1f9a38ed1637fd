"""Headless Chromium as a real WebRTC client, for the tests and the live benchmark: Debian's `chromium` driven by
Playwright (never Playwright's own browser download), with the flags that keep it on loopback and quiet."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
         "--disable-features=WebRtcHideLocalIpsWithMdns", "--ignore-certificate-errors",
         "--autoplay-policy=no-user-gesture-required"]


@contextlib.contextmanager
def chromium_pages(urls: list[str], init_script: str | None = None) -> Iterator[list[Any]]:
    """One headless Chromium with a page open at each of `urls` (closed afterwards); `init_script` runs in every
    page before its own scripts."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            pages = []
            for url in urls:
                page = browser.new_page()
                if init_script:
                    page.add_init_script(init_script)
                page.goto(url)
                pages.append(page)
            yield pages
        finally:
            browser.close()
