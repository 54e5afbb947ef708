"""Stage 9: `mnistseg serve`, run as a real process on a free loopback port.

The HTTP tests speak raw HTTP over a socket, so each bad request is exactly what it says;
the browser test draws on the page in Debian's headless Chromium through Playwright.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from PIL import Image

from mnistseg.checkpoint import BUNDLED_MODEL, default_checkpoint, latest_checkpoint
from mnistseg.data import load_arrays
from mnistseg.datasets import CLASS_COLORS
from mnistseg.export import export_onnx
from mnistseg.inference import load_for_inference
from mnistseg.predict import predict
from mnistseg.serve import MAX_BODY_BYTES

CANVAS = (560, 280)  # the page's canvas, width x height
ARTIFACTS = Path(__file__).parent / "artifacts"


@dataclass
class Server:
    url: str
    host: str
    port: int
    process: subprocess.Popen[str]
    log: Path


def start_server(*args: str | Path, log: Path, cwd: Path | None = None) -> Server:
    """Start `mnistseg serve --port 0 ...` and read the address it prints."""
    stderr = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mnistseg", "serve", "--port", "0", *map(str, args)],
        stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=cwd,
    )  # fmt: skip
    stderr.close()
    ready, _, _ = select.select([process.stdout], [], [], 120)
    line = process.stdout.readline() if ready else ""
    found = re.search(r"http://[\w.]+:(\d+)/", line)
    if found is None:
        process.kill()
        raise AssertionError(f"the server did not start: {line!r} {log.read_text()}")
    return Server(found.group(0), "127.0.0.1", int(found.group(1)), process, log)


@pytest.fixture(scope="module")
def server(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server("--checkpoint", trained_checkpoint, log=tmp_path_factory.mktemp("serve") / "stderr.log")
    yield running
    running.process.terminate()
    running.process.wait(timeout=30)


def exchange(server: Server, raw: bytes, shut_write: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer: (status, headers with lower-case names, body)."""
    with socket.create_connection((server.host, server.port), timeout=30) as connection:
        connection.sendall(raw)
        if shut_write:
            connection.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {name.lower(): value for name, value in headers.items()}, body


def request(
    server: Server, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    fields = {"Host": f"127.0.0.1:{server.port}"} | ({"Content-Length": str(len(body))} if body else {})
    fields.update(headers or {})
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items() if value is not None)
    return exchange(server, f"{method} {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode() + body)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def test_digits(data_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return load_arrays(data_root, train=False)


def drawing_of(images: torch.Tensor, indices: list[int]) -> Image.Image:
    """MNIST test digits scaled x8 onto a black canvas the size of the page's, as the page sends it."""
    canvas = Image.new("RGBA", CANVAS, (0, 0, 0, 255))
    for position, index in enumerate(indices):
        digit = Image.fromarray(images[index].numpy()).resize((224, 224), Image.BILINEAR)
        canvas.paste(
            Image.merge("RGBA", (digit, digit, digit, Image.new("L", digit.size, 255))), (30 + 270 * position, 28)
        )
    return canvas


def test_the_page_is_served_with_no_outside_address(server: Server) -> None:
    status, headers, html = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<canvas id="drawing"' in html and b'src="/app.js"' in html and b'href="/style.css"' in html
    assert headers["content-security-policy"].startswith("default-src 'self'")
    for path in ("/", "/app.js", "/style.css"):
        _, _, content = request(server, "GET", path)
        assert not re.search(rb"https?://|//[a-z0-9-]+\.[a-z]", content), f"{path} names an outside address"


def test_info_gives_the_classes_and_their_colours(server: Server) -> None:
    status, _, body = request(server, "GET", "/api/info")
    info = json.loads(body)
    assert status == 200 and info["classes"] == ["background", *map(str, range(10))]
    assert info["colors"][0] == "#000000" and info["colors"][1] == "#1f77b4"  # tab10's first colour is digit 0's
    assert len(info["colors"]) == len(CLASS_COLORS) == 11 and info["max_body_bytes"] == MAX_BODY_BYTES


def test_a_drawing_comes_back_as_its_digits_and_a_full_size_mask(
    server: Server, trained_checkpoint: Path, test_digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = test_digits
    drawing = drawing_of(images, [0, 1])
    status, headers, body = request(server, "POST", "/api/segment", png_bytes(drawing), {"Content-Type": "image/png"})
    assert status == 200 and headers["content-type"] == "application/json", body
    answer = json.loads(body)
    assert answer["digits"] == [labels[0].item(), labels[1].item()]
    assert (answer["width"], answer["height"]) == CANVAS and answer["inverted"] is False
    mask = np.frombuffer(base64.b64decode(answer["mask"]), dtype=np.uint8).reshape(CANVAS[1], CANVAS[0])
    assert sum(answer["areas"].values()) == int((mask > 0).sum()) > 0
    # The server's mask is the package's own predict() on the same picture, the checkpoint run its way.
    expected = predict(drawing, load_for_inference(trained_checkpoint)).numpy()
    assert (mask == expected).mean() > 0.999


# What a careless or hostile client can send; each gets a 4xx with a one-line JSON reason.
BAD_REQUESTS = [
    ("body over the limit", "POST", "/api/segment", b"", {"Content-Type": "image/png", "Content-Length": "1000000000"},
     413, "at most 2,000,000"),
    ("Content-Length of 5,000 digits", "POST", "/api/segment", b"", {"Content-Type": "image/png",
     "Content-Length": "9" * 5000}, 413, "(5000 digits) bytes; at most 2,000,000"),
    ("no Content-Length", "POST", "/api/segment", b"", {"Content-Type": "image/png"}, 411, "Content-Length"),
    ("chunked body", "POST", "/api/segment", b"", {"Content-Type": "image/png", "Transfer-Encoding": "chunked"},
     411, "not chunked"),
    ("Content-Length not a number", "POST", "/api/segment", b"", {"Content-Type": "image/png", "Content-Length": "ten"},
     400, "whole number"),
    ("negative Content-Length", "POST", "/api/segment", b"", {"Content-Type": "image/png", "Content-Length": "-5"},
     400, "whole number"),
    ("not an image type", "POST", "/api/segment", b"7", {"Content-Type": "text/plain"}, 415, "image/png"),
    ("bytes that are not an image", "POST", "/api/segment", b"hello" * 20, {"Content-Type": "image/png"},
     400, "not an image"),
    ("a truncated PNG", "POST", "/api/segment", "truncated", {"Content-Type": "image/png"}, 400, "truncated"),
    ("too many pixels", "POST", "/api/segment", "huge", {"Content-Type": "image/png"}, 413, "2000x1200 pixels"),
    ("GET the segment route", "GET", "/api/segment", b"", {}, 405, "use POST"),
    ("POST to the page", "POST", "/", b"x", {"Content-Type": "image/png"}, 405, "use GET"),
    ("DELETE", "DELETE", "/api/info", b"", {}, 405, "not allowed"),
    ("path out of the folder", "GET", "/../../etc/passwd", b"", {}, 404, "nothing at"),
    ("encoded path out of the folder", "GET", "/%2e%2e/%2e%2e/etc/passwd", b"", {}, 404, "nothing at"),
    ("a package file by name", "GET", "/serve.py", b"", {}, 404, "nothing at"),
    ("another host name (DNS rebinding)", "GET", "/api/info", b"", {"Host": "attacker.example:8000"}, 421,
     "answers only 127.0.0.1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "reason"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_a_clear_4xx(
    server: Server,
    test_digits: tuple[torch.Tensor, torch.Tensor],
    method: str,
    path: str,
    body: bytes | str,
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    if body == "truncated":
        body = png_bytes(drawing_of(test_digits[0], [0]))[:300]
    elif body == "huge":
        body = png_bytes(Image.new("L", (2000, 1200)))  # 2.4 million pixels in a few kB
        assert len(body) < MAX_BODY_BYTES
    answered, answer_headers, answer = request(server, method, path, body, headers)
    assert answered == status, answer
    assert answer_headers["content-type"] == "application/json"
    message = json.loads(answer)["error"]
    assert reason in message and "\n" not in message, message


def test_a_body_that_stops_short_and_garbage_do_not_stop_the_server(server: Server) -> None:
    head = f"POST /api/segment HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: image/png\r\n"
    status, _, body = exchange(
        server, f"{head}Content-Length: 5000\r\n\r\n".encode() + b"\x89PNG" * 10, shut_write=True
    )
    assert status == 400 and b"ended after 40 of 5000 bytes" in body
    with socket.create_connection((server.host, server.port), timeout=30) as connection:
        connection.sendall(b"THIS IS NOT HTTP\r\n\r\n")  # http.server answers this itself, as HTTP/0.9
        assert b"Error code: 400" in connection.recv(65536)
    with socket.create_connection((server.host, server.port)) as connection:
        connection.sendall(b"GET / HT")  # and hang up mid-request
    status, _, body = request(server, "GET", "/api/info")
    assert status == 200 and json.loads(body)["classes"]
    assert server.process.poll() is None
    assert "Traceback" not in server.log.read_text()


def test_the_onnx_engine_reads_the_same_digits(
    trained_checkpoint: Path, tmp_path: Path, test_digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = test_digits
    folder = tmp_path / "checkpoint"
    shutil.copytree(trained_checkpoint, folder)
    export_onnx(folder)
    started = start_server("--checkpoint", folder, "--engine", "onnx", log=tmp_path / "stderr.log")
    try:
        _, _, body = request(started, "GET", "/api/info")
        assert json.loads(body)["model"] == f"{folder} (ONNX Runtime, cpu, fp32, region vote)"
        drawing = png_bytes(drawing_of(images, [2, 3]))
        status, _, body = request(started, "POST", "/api/segment", drawing, {"Content-Type": "image/png"})
        assert status == 200 and json.loads(body)["digits"] == [labels[2].item(), labels[3].item()]
    finally:
        started.process.terminate()
        started.process.wait(timeout=30)


def test_without_a_checkpoint_it_takes_the_latest_or_the_bundled_model(
    trained_checkpoint: Path, tmp_path: Path, native_precision: str
) -> None:
    # Nothing trained here: the model shipped inside the package, and the page says so.
    started = start_server(log=tmp_path / "bundled.log", cwd=tmp_path)
    try:
        _, _, body = request(started, "GET", "/api/info")
        assert json.loads(body)["model"].startswith("the bundled model (nothing trained under runs/")
    finally:
        started.process.terminate()
        started.process.wait(timeout=30)

    older, newer = tmp_path / "runs" / "fast", tmp_path / "runs" / "scenes" / "seed1"
    for folder, mtime in ((newer, 1_700_000_000), (older, 1_600_000_000)):
        shutil.copytree(trained_checkpoint, folder)
        os.utime(folder / "model.safetensors", (mtime, mtime))
    assert latest_checkpoint(tmp_path / "runs") == newer
    (newer / "config.json").unlink()  # not a checkpoint any more
    assert latest_checkpoint(tmp_path / "runs") == older
    assert latest_checkpoint(tmp_path / "nothing") is None
    assert default_checkpoint(tmp_path / "nothing") == BUNDLED_MODEL
    started = start_server(log=tmp_path / "stderr.log", cwd=tmp_path)
    try:
        _, _, body = request(started, "GET", "/api/info")
        described = json.loads(body)["model"]
        assert described.startswith(f"{Path('runs') / 'fast'} (PyTorch, cpu, {native_precision}, region vote)")
    finally:
        started.process.terminate()
        started.process.wait(timeout=30)


def test_a_port_in_use_is_one_line(trained_checkpoint: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mnistseg", "serve", "--checkpoint", str(trained_checkpoint), "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


# ---- the page in a real browser ----------------------------------------------------------

BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=BROWSER_FLAGS)
        yield launched
        launched.close()


def trace(page: object, digit: np.ndarray, left: float, top: float, scale: float) -> int:
    """Draw an MNIST digit with the mouse, one stroke per run of inked pixels in each row; returns the strokes."""
    box = page.locator("#drawing").bounding_box()
    to_page = box["width"] / CANVAS[0]  # the canvas is scaled by CSS

    def point(column: float, row: int) -> tuple[float, float]:
        return box["x"] + (left + (column + 0.5) * scale) * to_page, box["y"] + (top + (row + 0.5) * scale) * to_page

    strokes = 0
    for row in range(digit.shape[0]):
        inked = np.flatnonzero(np.diff(np.concatenate([[0], digit[row] > 127, [0]]).astype(np.int8)))
        for start, stop in zip(inked[::2], inked[1::2], strict=True):
            page.mouse.move(*point(start, row))
            page.mouse.down()
            page.mouse.move(*point(stop - 1, row), steps=2)
            page.mouse.up()
            strokes += 1
    return strokes


def wait_for_segmentation(page: object) -> None:
    page.wait_for_function(
        "() => document.body.dataset.segmentedVersion === document.body.dataset.drawnVersion", timeout=60_000
    )


def overlay_counts(page: object, left: int, right: int) -> dict[str, int]:
    """Painted overlay pixels between two canvas columns: how many, and how many per colour."""
    return page.evaluate(
        """([left, right]) => {
            const overlay = document.getElementById("overlay");
            const data = overlay.getContext("2d").getImageData(left, 0, right - left, overlay.height).data;
            const counts = {};
            for (let i = 0; i < data.length; i += 4) {
                if (data[i + 3] === 0) continue;
                const key = `${data[i]},${data[i + 1]},${data[i + 2]}`;
                counts[key] = (counts[key] || 0) + 1;
            }
            return counts;
        }""",
        [left, right],
    )


def rgb_key(class_id: int) -> str:
    return ",".join(str(round(255 * part)) for part in CLASS_COLORS[class_id])


def test_drawing_on_the_page_in_chromium(
    server: Server, browser: object, test_digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = test_digits
    first, second = labels[0].item(), labels[1].item()  # the test set starts 7, 2
    context = browser.new_context(viewport={"width": 1200, "height": 640})
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda sent: urlsplit(sent.url).hostname != "127.0.0.1" and outside.append(sent.url))
    page.goto(server.url)
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#legend li").count() == 10

    scale = 9  # 28 MNIST pixels -> 252 canvas pixels; the pen as wide as one scaled pixel
    page.locator("#pen").fill(str(scale))
    trace(page, images[0].numpy(), left=14, top=14, scale=scale)  # in the left half of the canvas
    second_strokes = trace(page, images[1].numpy(), left=294, top=14, scale=scale)  # in the right half
    wait_for_segmentation(page)

    assert page.locator("#reading").inner_text() == f"{first} {second}"
    items = page.locator("#digits li")
    found = [items.nth(index).get_attribute("data-class-id") for index in range(items.count())]
    assert found == [str(first + 1), str(second + 1)]
    assert re.fullmatch(rf"{first}: [\d,]+ px", items.nth(0).inner_text().strip())
    for (left, right), label in (((0, 280), first), ((280, 560), second)):
        counts = overlay_counts(page, left, right)
        painted = sum(counts.values())
        assert painted > 2000, counts  # the digit lights up: thousands of canvas pixels
        assert counts.get(rgb_key(label + 1), 0) > 0.9 * painted, counts  # ... nearly all in its class colour
        assert set(counts) <= {rgb_key(class_id) for class_id in range(1, 11)}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_page.png"))

    for _ in range(second_strokes):  # undo is one stroke at a time: take the second digit back
        page.locator("#undo").click()
    wait_for_segmentation(page)
    assert page.locator("#reading").inner_text() == str(first)
    assert overlay_counts(page, 280, 560) == {} and sum(overlay_counts(page, 0, 280).values()) > 2000

    page.keyboard.press("Escape")  # clear
    wait_for_segmentation(page)
    assert page.locator("#reading").inner_text() == "–" and page.locator("#digits li").count() == 0
    assert overlay_counts(page, 0, 560) == {}
    page.keyboard.press("Control+z")  # a Clear can be undone
    wait_for_segmentation(page)
    assert page.locator("#reading").inner_text() == str(first)
    page.locator("#clear").click()
    wait_for_segmentation(page)
    assert page.locator("#reading").inner_text() == "–" and overlay_counts(page, 0, 560) == {}
    assert outside == [], f"the page asked for outside addresses: {outside}"
    context.close()


def test_a_finger_draws_too(server: Server, browser: object) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 640}, has_touch=True)
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("body[data-ready=true]")
    box = page.locator("#drawing").bounding_box()
    page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    wait_for_segmentation(page)
    assert page.evaluate("document.body.dataset.drawnVersion") == "1"
    inked = page.evaluate(
        """() => {
            const canvas = document.getElementById("drawing");
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let white = 0;
            for (let i = 0; i < data.length; i += 4) white += data[i] > 128;
            return white;
        }"""
    )
    assert inked > 100  # a dot as wide as the pen (18 px) where the finger touched
    context.close()
