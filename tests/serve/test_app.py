"""The server's endpoints and every bad input of the list: a status and one line, never a traceback."""

import asyncio
import io
import json
import struct
import zlib

import httpx
import numpy as np
import pytest
import tifffile
from fastapi.testclient import TestClient
from PIL import Image

from seglab.serve.app import create_app
from seglab.serve.limits import Limits


@pytest.fixture(scope="module")
def client(shared_predictor, tiny_checkpoint):
    app = create_app(shared_predictor, checkpoint=tiny_checkpoint, limits=Limits(max_upload_mb=1, max_pixels=400 * 400))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def post(client, data, name="x.png", mime="image/png", **kw):
    return client.post("/predict", files={"file": (name, data, mime)}, **kw)


def image_labels(predictor, image):
    return predictor.predict(np.asarray(image))["instances"]


def one_line(response):
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in response.text
    return detail


def test_json_instances_match_the_predictor(client, shared_predictor, image, png_bytes):
    r = post(client, png_bytes)
    assert r.status_code == 200
    body = r.json()
    labels = image_labels(shared_predictor, image)
    ids = sorted(int(i) for i in np.unique(labels) if i)
    assert body["count"] == len(ids) >= 5 and body["counts"] == {"Nucleus": len(ids)}
    assert sorted(i["id"] for i in body["instances"]) == ids
    first = body["instances"][0]
    mask = labels == first["id"]
    assert first["area"] == int(mask.sum()) and set(first) >= {"id", "class", "score", "area", "centroid", "polygon"}
    ys, xs = np.nonzero(mask)
    assert first["centroid"] == pytest.approx([xs.mean() + 0.5, ys.mean() + 0.5], abs=1e-3)
    assert 0 < first["score"] <= 1 and first["polygon"][0] == first["polygon"][-1]


def test_formats_by_query_and_accept(client, shared_predictor, image, png_bytes):
    labels = image_labels(shared_predictor, image)
    tif = post(client, png_bytes, params={"format": "tiff"})
    assert tif.headers["content-type"] == "image/tiff"
    assert np.array_equal(tifffile.imread(io.BytesIO(tif.content)), labels)
    geo = post(client, png_bytes, headers={"accept": "application/geo+json"})
    assert geo.json()["type"] == "FeatureCollection"
    assert len(geo.json()["features"]) == len(np.unique(labels)) - 1
    png = post(client, png_bytes, headers={"accept": "image/png"})
    overlay = np.asarray(Image.open(io.BytesIO(png.content)))
    assert overlay.shape == image.shape and (overlay == [255, 255, 0]).all(-1).sum() > 50
    assert one_line(post(client, png_bytes, params={"format": "bmp"})).startswith("unknown format 'bmp'")


def test_health_model_docs_and_page(client):
    assert client.get("/health").json()["status"] == "ok"
    model = client.get("/model").json()
    assert model["name"] == "unet" and model["in_channels"] == 3 and model["decoder"]["name"] == "three_class_watershed"
    assert model["classes"] == ["background", "interior", "boundary"] and model["tile"] == 64
    assert client.get("/docs").status_code == 200 and "/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and client.get("/static/app.js").status_code == 200


def zip_bomb_png(width=100_000, height=100_000):
    """A valid PNG header declaring width x height gray pixels, with a few kB of zlib'd zero rows."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\x00" * (width + 1) * 20, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_bad_inputs_are_a_status_and_one_line(client, png_bytes, image):
    bomb = zip_bomb_png()
    assert len(bomb) < 10_000
    r = post(client, bomb)
    assert r.status_code == 413 and "100,000 x 100,000" in one_line(r).replace("100000 x 100000", "100,000 x 100,000")
    r = post(client, b"hello, I am text\n" * 10, name="notes.png")
    assert r.status_code == 415 and "not a PNG, JPEG or TIFF" in one_line(r)
    buf = io.BytesIO()
    tifffile.imwrite(buf, image)
    r = post(client, buf.getvalue()[: len(buf.getvalue()) // 2], name="cut.tif", mime="image/tiff")
    assert r.status_code == 400 and "TIFF" in one_line(r)
    r = post(client, png_bytes[: len(png_bytes) // 2])
    assert r.status_code == 400 and "truncated" in one_line(r)
    r = client.post("/predict", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415 and "multipart/form-data" in one_line(r)
    r = client.post("/predict", files={"other": ("a.txt", b"x", "text/plain")})
    assert r.status_code == 400 and "no image" in one_line(r)
    big = Image.fromarray(np.zeros((500, 500, 3), np.uint8))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    r = post(client, buf.getvalue())
    assert r.status_code == 413 and "250,000 pixels" in one_line(r)
    r = post(client, b"\x89PNG\r\n\x1a\n" + bytes(2 * 1024 * 1024))  # 2 MB over the 1 MB limit
    assert r.status_code == 413 and "at most 1,048,576" in one_line(r)
    r = client.post("/predict", files={"file": ("a.png", png_bytes, "image/png")}, data={"path": "/etc/passwd"})
    assert r.status_code == 200  # the upload wins; paths are off unless --allow-paths
    r = client.post("/predict", data={"path": "/etc/passwd"})
    assert r.status_code == 403 and "--allow-paths" in one_line(r)
    assert client.get("/health").json()["status"] == "ok"


def test_declared_1gb_upload_is_refused_before_reading(client):
    def endless():
        yield b"x" * 1024
        raise AssertionError("the server read the body")
    r = client.post("/predict", content=endless(), headers={"content-type": "multipart/form-data; boundary=b",
                                                            "content-length": str(1 << 30)})
    assert r.status_code == 413 and "1,073,741,824 bytes" in one_line(r)


def test_chunked_upload_stops_at_the_limit(client):
    def stream():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        for _ in range(64):  # 4 MB in 64 kB chunks, no content-length
            yield b"\0" * 65536
    r = client.post("/predict", content=stream(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "larger than 1,048,576 bytes" in one_line(r)


def test_hundred_requests_at_once_queue_or_503(shared_predictor, tiny_checkpoint, png_bytes):
    app = create_app(shared_predictor, checkpoint=tiny_checkpoint, limits=Limits(concurrency=1, queue=3, timeout=30))

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            files = {"file": ("x.png", png_bytes, "image/png")}
            responses = await asyncio.gather(*(c.post("/predict", files=files) for _ in range(100)))
            health = await c.get("/health")
        return responses, health
    responses, health = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(200) >= 4 and codes.count(503) >= 50
    assert all("server busy" in json.loads(r.text)["detail"] for r in responses if r.status_code == 503)
    assert health.json() == {"status": "ok", "running": 0, "queued": 0, "served": codes.count(200)}
