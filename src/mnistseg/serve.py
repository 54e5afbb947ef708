"""Stage 10: draw digits in a browser and watch them segment, live.

``mnistseg serve`` starts a small web app on this computer, built on Python's own
``http.server`` (no web framework, nothing fetched from the internet). The page is three
plain files in ``mnistseg/web`` (``index.html``, ``app.js``, ``style.css``), read once at
start-up. As you draw, the page sends the canvas as a PNG; the server segments it with
the same :func:`mnistseg.predict.segment` that ``mnistseg predict`` uses and answers with
the mask, which the page paints over your strokes in the class colours.

Routes:
    ``GET /``, ``GET /app.js``, ``GET /style.css``: the page.
    ``GET /api/info``: class names, their colours, the model in use, the request limits.
    ``POST /api/segment``: body = an image (``Content-Type: image/png``); answer = JSON
    ``{"width", "height", "mask" (base64 of uint8 class ids, row-major), "digits",
    "regions", "areas", "inverted", "milliseconds"}``.

Safety: the server listens on 127.0.0.1 unless told otherwise; only the three page files
can be fetched (a request path is a dictionary key, never a file name); bodies and images
are bounded and refused with a 4xx answer and a one-line reason; requests naming another
host are refused (so a web site cannot reach the server through DNS rebinding); a
malformed or failing request is answered and logged, and the server goes on.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from mnistseg.checkpoint import default_checkpoint
from mnistseg.datasets import CLASS_COLORS
from mnistseg.inference import InferenceModel, load_for_inference
from mnistseg.picture import ImageInputError, ImageTooLargeError, decode_image
from mnistseg.predict import read_segmentation, segment

MAX_BODY_BYTES = 2_000_000  # a 560x280 drawing is a few kB as PNG
MAX_IMAGE_PIXELS = 2_000_000  # about 1400x1400
MAX_SCALED_PIXELS = 1_000_000  # what the network sees; bounds the time and memory of one request
REQUEST_TIMEOUT_S = 10.0  # a client that stops sending mid-request is dropped after this
PAGE_FILES = {  # request path -> (file in mnistseg/web, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

Route = Callable[[str], tuple[HTTPStatus, str, bytes]]  # request path -> (status, content type, body)


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and a one-line reason."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Segmenter:
    """The model behind the page. One inference runs at a time; the lock makes that so.

    Attributes:
        model: the checkpoint opened for inference (either engine; test-time shifts as its recipe says).
        names: the 11 class names, background first.
        description: what the page shows as "model" (checkpoint folder and engine).
    """

    model: InferenceModel
    names: tuple[str, ...]
    description: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self) -> dict[str, Any]:
        """What the page needs before the first drawing: classes, colours, limits."""
        colors = ["#{:02x}{:02x}{:02x}".format(*(round(255 * part) for part in rgb)) for rgb in CLASS_COLORS]
        return {
            "classes": list(self.names),
            "colors": colors,
            "model": self.description,
            "tta": self.model.tta,
            "max_body_bytes": MAX_BODY_BYTES,
            "max_image_pixels": MAX_IMAGE_PIXELS,
        }

    def segment_image(self, body: bytes) -> dict[str, Any]:
        """Segment an encoded image; the answer of ``POST /api/segment``.

        Raises:
            RequestError: 400 for bytes that are not an image, 413 for too many pixels.
        """
        try:
            image = decode_image(io.BytesIO(body), max_pixels=MAX_IMAGE_PIXELS)
        except ImageTooLargeError as error:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the image {error}") from None
        except ImageInputError as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the body {error}") from None
        started = time.perf_counter()
        with self.lock:
            found = segment(image, self.model, max_scaled_pixels=MAX_SCALED_PIXELS)
            reading = read_segmentation(found, self.model, self.names)  # may read a wide patch's halves
            mask, prepared = found.mask, found.prepared  # int64 (H, W)
        milliseconds = (time.perf_counter() - started) * 1000
        height, width = mask.shape
        class_ids = mask.numpy().astype(np.uint8)  # (H, W); 11 classes fit a byte
        return {
            "width": width,
            "height": height,
            "mask": base64.b64encode(class_ids.tobytes()).decode("ascii"),
            "inverted": prepared.inverted,
            "tta": self.model.tta,
            "milliseconds": round(milliseconds, 1),
            **reading,
        }


class SegmentationHandler(BaseHTTPRequestHandler):
    """Answers one HTTP request; the server gives it the :class:`Segmenter` and the page files."""

    server: SegmentationServer
    server_version = "mnistseg"
    timeout = REQUEST_TIMEOUT_S  # socket timeout: a stalled client cannot hold a thread for ever

    def do_GET(self) -> None:
        self.answer(self.route_get)

    def do_POST(self) -> None:
        self.answer(self.route_post)

    def do_PUT(self) -> None:
        self.answer(self.method_not_allowed)

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT

    def answer(self, route: Route) -> None:
        """Run a route; turn a refusal or a failure into a JSON error answer, never a crash."""
        try:
            self.check_host()
            status, content_type, body = route(urlsplit(self.path).path)
        except RequestError as error:
            status, content_type, body = error.status, "application/json", self.error_body(str(error))
        except Exception as error:  # noqa: BLE001 - one bad request must not stop the server
            self.log_error("failed on %s: %s: %s", self.path, type(error).__name__, error)
            status, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, "application/json"
            body = self.error_body(f"the server failed on this request ({type(error).__name__})")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:")
        self.end_headers()
        self.wfile.write(body)

    @staticmethod
    def error_body(message: str) -> bytes:
        return json.dumps({"error": message}).encode()

    def check_host(self) -> None:
        """On a loopback address, answer only requests addressed to this computer."""
        if not self.server.loopback_only:
            return
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in LOOPBACK_HOSTS:
            raise RequestError(HTTPStatus.MISDIRECTED_REQUEST, f"this server answers only 127.0.0.1, not {host!r}")

    def route_get(self, path: str) -> tuple[HTTPStatus, str, bytes]:
        if path == "/api/info":
            return HTTPStatus.OK, "application/json", json.dumps(self.server.segmenter.info()).encode()
        if path in self.server.page_files:
            content_type, content = self.server.page_files[path]
            return HTTPStatus.OK, content_type, content
        if path == "/api/segment":
            self.method_not_allowed(path)
        raise RequestError(HTTPStatus.NOT_FOUND, f"nothing at {path[:100]!r}; the page is at /")

    def route_post(self, path: str) -> tuple[HTTPStatus, str, bytes]:
        if path != "/api/segment":
            if path in self.server.page_files or path == "/api/info":
                self.method_not_allowed(path)
            raise RequestError(HTTPStatus.NOT_FOUND, f"nothing at {path[:100]!r}; images go to POST /api/segment")
        body = self.read_body()
        answer = self.server.segmenter.segment_image(body)
        return HTTPStatus.OK, "application/json", json.dumps(answer).encode()

    def method_not_allowed(self, path: str) -> tuple[HTTPStatus, str, bytes]:
        allowed = "POST" if path == "/api/segment" else "GET"
        raise RequestError(
            HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed on {path[:100]!r}; use {allowed}"
        )

    def read_body(self) -> bytes:
        """The request body, after checking its declared type and length against the limits."""
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length, not chunked")
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"send an image (Content-Type image/png), not {content_type or 'nothing'!r}",
            )
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
        declared = declared.strip()
        if not (declared.isascii() and declared.isdigit()):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length must be a whole number, got {declared[:20]!r}")
        # Compare digit counts first: int() of a 5,000-digit header would itself be refused.
        if len(declared.lstrip("0")) > len(str(MAX_BODY_BYTES)) or int(declared) > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be parsed as a next request
            shown = declared if len(declared) <= 20 else f"{declared[:20]}... ({len(declared)} digits)"
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body declares {shown} bytes; at most {MAX_BODY_BYTES:,} are accepted",
            )
        length = int(declared)
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, "the body did not arrive in time") from None
        if len(body) < length:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
        return body

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        print(f"mnistseg serve: {self.address_string()} {format % args}", file=sys.stderr, flush=True)


class SegmentationServer(ThreadingHTTPServer):
    """An HTTP server that owns the segmenter and the page (no module-level state).

    Args:
        address: ``(host, port)``; port 0 picks a free port (see ``server_address``).
        segmenter: the model behind the page.
    """

    daemon_threads = True  # Ctrl+C does not wait for open connections

    def __init__(self, address: tuple[str, int], segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self.loopback_only = address[0] in LOOPBACK_HOSTS
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        web = files("mnistseg") / "web"
        self.page_files = {
            path: (content_type, (web / name).read_bytes()) for path, (name, content_type) in PAGE_FILES.items()
        }
        super().__init__(address, SegmentationHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside a route (the client hung up, ...): one line, go on."""
        error = sys.exc_info()[1]
        print(f"mnistseg serve: {client_address[0]} connection failed: {error!r}", file=sys.stderr, flush=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def load_segmenter(
    checkpoint: Path | None, engine: str = "torch", device: str = "cpu", tta: bool | None = None,
    precision: str = "auto",
) -> Segmenter:  # fmt: skip
    """Load the model the page will use.

    Args:
        checkpoint: a folder written by ``mnistseg train``; None for the latest under ``runs/``,
            or the bundled model if there is none (:func:`~mnistseg.checkpoint.default_checkpoint`).
        engine: "torch", or "onnx" for ONNX Runtime on ``<checkpoint>/model.onnx``.
        device: where PyTorch runs ("auto", "cpu", "cuda", ...); ONNX Runtime runs on the CPU.
        tta: test-time shift averaging; None takes the checkpoint's recipe's choice.
        precision: autocast precision; "auto" is the fastest on this device.
    """
    model = load_for_inference(
        checkpoint if checkpoint is not None else default_checkpoint(), engine, device, tta, precision
    )
    return Segmenter(model, model.record.class_names, model.describe())
