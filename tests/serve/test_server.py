"""The real thing: ``seglab serve`` under uvicorn in a subprocess, and the web page in headless Chromium.

The browser test drives Debian's ``/usr/bin/chromium`` with Playwright: it uploads an image on
the page at ``/``, waits for the overlay and the counts table, checks the counts against the
API's answer for the same image, and saves a screenshot into the test's folder.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seglab", "serve", "--checkpoint", str(tiny_checkpoint), "--port", str(port),
             "--tile", "64", "--threads", "1", "--queue", "4"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
            assert proc.poll() is None, log.read_text()
        yield base, log
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_uvicorn_serves_and_survives_a_cancelled_upload(server, png_bytes):
    base, log = server
    r = httpx.post(f"{base}/predict", files={"file": ("x.png", png_bytes, "image/png")}, timeout=60)
    assert r.status_code == 200 and r.json()["count"] >= 5
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:  # a request cancelled midway through its body
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n\x89PNG")
    assert httpx.get(f"{base}/health", timeout=5).json()["status"] == "ok"
    r = httpx.post(f"{base}/predict", files={"file": ("x.png", png_bytes, "image/png")}, timeout=60)
    assert r.status_code == 200
    lines = [ln for ln in log.read_text().splitlines() if "seglab.serve" in ln and "POST /predict" in ln]
    assert len(lines) >= 2 and all("Traceback" not in ln for ln in lines)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (CI installs Debian's chromium; apt-get install chromium)")
def test_web_page_in_headless_chromium(server, image, png_bytes, tmp_path):
    from playwright.sync_api import sync_playwright

    base, _ = server
    api = httpx.post(f"{base}/predict", files={"file": ("x.png", png_bytes, "image/png")}, timeout=60).json()
    upload = tmp_path / "nuclei.png"
    Image.fromarray(image).save(upload)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 640})
            page.goto(base + "/")
            page.wait_for_selector("text=backend torch")
            page.set_input_files("#file", str(upload))
            page.wait_for_selector('#overlay[data-ready="1"]', timeout=60_000)
            page.wait_for_selector("#counts:not([hidden])")
            rows = page.eval_on_selector_all("#counts tbody tr", "rows => rows.map(r => [r.dataset.class, +r.cells[1].textContent])")
            total = int(page.text_content("#total"))
            page.mouse.move(600, 300)
            page.mouse.wheel(0, -400)  # zoom in at the pointer, then the page must still draw
            page.wait_for_timeout(200)
            painted = page.evaluate("""([r, g, b]) => { const c = document.querySelector('#overlay');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - r) + Math.abs(d[i+1] - g) + Math.abs(d[i+2] - b) < 30) n++;
                return n; }""", api["instances"][0]["color"])
            page.screenshot(path=str(tmp_path / "serve.png"))
            if os.environ.get("SEGLAB_SCREENSHOT"):
                page.screenshot(path=os.environ["SEGLAB_SCREENSHOT"])
        finally:
            browser.close()
    assert dict(rows) == api["counts"] and total == api["count"] >= 5
    assert painted > 100  # outlines in the class colour on the canvas
    assert (tmp_path / "serve.png").stat().st_size > 10_000
