"""Helpers for tests and benchmarks that drive the page in a real headless Chromium (Selenium + Debian's
chromium / chromium-driver) against a real uvicorn server running in a background thread."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

HOW_TO_GET_ONE = ("needs a headless Chromium: apt-get install -y chromium chromium-driver (Debian/Ubuntu) and "
                  "pip install -e '.[test]' (selenium); .ci/run installs them when apt is available")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def find_browser() -> tuple[str, str] | str:
    """``(chromium, chromedriver)`` paths, or a one-line reason why there is none."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed; " + HOW_TO_GET_ONE
    chrome = os.environ.get("EMBEDKIT_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = os.environ.get("EMBEDKIT_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chrome or not driver:
        return f"no {'chromium' if not chrome else 'chromedriver'} found; " + HOW_TO_GET_ONE
    return chrome, driver


def start_browser(chrome: str, driver: str, *, width: int = 1400, height: int = 900) -> Any:
    """A headless Chromium WebDriver that may autoplay audio (``--no-sandbox`` as root)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach for the network
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}",
              "--autoplay-policy=no-user-gesture-required", "--no-first-run", "--disable-extensions",
              "--mute-audio"):
        opts.add_argument(a)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        opts.add_argument("--no-sandbox")
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread; ``url``; `stop` ends it."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def wait_for(driver: Any, script: str, timeout: float = 30.0, poll: float = 0.05) -> Any:
    """Poll a JavaScript expression (``return ...``) until it is truthy; returns its value or raises."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(poll)
    errors = driver.execute_script("return window.__ek ? window.__ek.errors : null")
    raise AssertionError(f"timed out after {timeout} s waiting for: {script} (last value {value!r}; page errors {errors})")
