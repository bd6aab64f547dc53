"""A headless Chromium driven over the DevTools protocol, for the viewer tests.

Only what the tests need: open a page, evaluate JavaScript, take a screenshot. Chromium runs
with its own empty profile, WebGL through SwiftShader, and no background networking (this
machine's network is closed; nothing but loopback is ever asked for).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

FLAGS = ["--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-default-apps",
         "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--hide-scrollbars"]


def find_chromium() -> str | None:
    """The Chromium (or Chrome) binary on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page; a context manager."""

    def __init__(self, binary: str, size: tuple[int, int] = (1200, 900), timeout: float = 60.0):
        import websocket  # websocket-client, a test dependency

        self._profile = tempfile.mkdtemp(prefix="cvl-chromium-")
        self._proc = subprocess.Popen([binary, *FLAGS, f"--window-size={size[0]},{size[1]}",
                                       f"--user-data-dir={self._profile}", "about:blank"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.time() + timeout
        while not port_file.is_file() or len(port_file.read_text().split()) < 2:
            if self._proc.poll() is not None or time.time() > deadline:
                err = self._proc.stderr.read().decode(errors="replace")[-2000:] if self._proc.stderr else ""
                self.close()
                raise RuntimeError(f"chromium did not start: {err}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        self._ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=timeout,
                                               suppress_origin=True)
        self._ids = itertools.count(1)
        self.console: list[str] = []
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict:
        """Send one DevTools command and wait for its result (events seen on the way: console
        messages are kept in ``console``)."""
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if msg.get("method") == "Runtime.consoleAPICalled":
                args = msg["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.console.append(str(msg["params"]["exceptionDetails"].get("exception", {}).get("description")))

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page (promises awaited)."""
        got = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in got:
            raise RuntimeError(f"{expression!r}: {got['exceptionDetails'].get('text')}")
        return got.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float, settle: int = 3, interval: float = 0.25) -> None:
        """Wait until ``expression`` is true ``settle`` times in a row; RuntimeError after
        ``timeout`` s, naming the expression and the console's last lines."""
        deadline, streak = time.time() + timeout, 0
        while streak < settle:
            try:
                ok = bool(self.evaluate(expression))
            except RuntimeError:
                ok = False
            streak = streak + 1 if ok else 0
            if time.time() > deadline:
                raise RuntimeError(f"timed out waiting for {expression}; console: {self.console[-10:]}")
            time.sleep(interval)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
