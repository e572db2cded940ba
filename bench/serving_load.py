"""nst-serve under load and abuse: well-formed and malformed requests from several clients,
with idle connections and a slow-header client alongside (issue 20).

Loopback only, and bounded: ``nst-serve`` runs as a subprocess on 127.0.0.1, serving a tiny
TransformNet (random weights), and

* ``--clients`` threads send ``--requests`` requests each, in two halves, one connection
  per request:
  predict requests of a ``--side`` px JPEG, and every ``--malformed_every``-th one
  malformed, cycling through :data:`MALFORMED` (bad JSON, 900-level nesting, NaN and 1e309
  floats, a 100000² PNG header, an oversized body and header, a body shorter than its
  Content-Length, PUT, unknown paths...), each of which must get its 4xx with a JSON body;
* alongside, for as long as the clients run, ``--idle`` connections that send nothing
  (reopened whenever the server closes one) and one client that drips a request head a
  byte every ``--drip_seconds`` (reconnecting likewise).

Printed: well-formed requests and their errors (a status other than 200 or an answer that
differs from the in-process SavedModel's; target 0), their p50 and p99 latency, and p50
over the in-process ``serving_default`` call on the same bytes measured in this run (the
cost of HTTP + JSON + base64 + queueing, as a ratio); malformed requests and the ones
answered otherwise than expected (target 0); how long the server let idle and slow-header
connections live, against its ``--header_timeout_seconds``; the server's resident memory
after loading, after the first request and after each half of the load (target: no growth
beyond the first request's working set, and none in the second half).

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/serving_load.py [--clients=8 --requests=200]
"""

import base64
import http.client
import json
import os
import pathlib
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import photo_jpeg  # noqa: E402
from bench.common import start_nst_serve  # noqa: E402
from bench.common import timed  # noqa: E402
from nst_tf import export  # noqa: E402
from nst_tf.models import TransformNet  # noqa: E402

flags.DEFINE_integer("clients", 8, "Client threads.", lower_bound=1)
flags.DEFINE_integer("requests", 200, "Requests per client.", lower_bound=1)
flags.DEFINE_integer("malformed_every", 4, "Every n-th request of a client is malformed.", lower_bound=2)
flags.DEFINE_integer("idle", 50, "Idle connections held open alongside.", lower_bound=0)
flags.DEFINE_float("drip_seconds", 2.0, "Seconds between the bytes of the slow-header client.")
flags.DEFINE_integer("side", 64, "Side of the JPEG the well-formed requests stylize, in pixels.")
flags.DEFINE_float("header_timeout", 5.0, "The server's --header_timeout_seconds.")
flags.DEFINE_float("body_timeout", 2.0, "The server's --body_timeout_seconds (a short body waits this long).")
FLAGS = flags.FLAGS

MODEL = "tiny"
PREDICT = f"/v1/models/{MODEL}:predict"
MAX_REQUEST_MB = 1  # the server's --max_request_mb: an oversized body is 1 MiB + 1 byte


def instances(*encoded):
    return json.dumps({"instances": [{"b64": base64.b64encode(e).decode("ascii")} for e in encoded]}).encode()


def png_header(width, height):
    """A PNG whose header says width x height, with no pixel data."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def stylize_tensor(number):
    rows = np.zeros((32, 32, 3)).tolist()
    return json.dumps({"signature_name": "stylize_tensor", "inputs": [rows]}).replace("0.0", number, 1).encode()


def raw(method, path, body=b"", headers=b"", length=None):
    """A request's exact bytes (``length``: the Content-Length it claims)."""
    length = len(body) if length is None else length
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {length}\r\n".encode()
    return head + headers + b"\r\n" + body


# name -> (request bytes, the status it must get)
MALFORMED = {
    "bad JSON": (raw("POST", PREDICT, b'{"instances": ['), 400),
    "JSON not an object": (raw("POST", PREDICT, b"[1, 2]"), 400),
    "900-level nesting": (raw("POST", PREDICT, b'{"instances": ' + b"[" * 900 + b"]" * 900 + b"}"), 400),
    "NaN in stylize_tensor": (raw("POST", PREDICT, stylize_tensor("NaN")), 400),
    "1e309 in stylize_tensor": (raw("POST", PREDICT, stylize_tensor("1e309")), 400),
    "bad base64": (raw("POST", PREDICT, b'{"instances": [{"b64": "not*base64!"}]}'), 400),
    "100000x100000 PNG header": (raw("POST", PREDICT, instances(png_header(100_000, 100_000))), 413),
    "oversized body": (raw("POST", PREDICT, b" " * (MAX_REQUEST_MB * 1024 * 1024 + 1)), 413),
    "oversized header": (raw("GET", f"/v1/models/{MODEL}", headers=b"X-Big: " + b"a" * 20_000 + b"\r\n"), 431),
    "short body": (raw("POST", PREDICT, b'{"instances": [', length=1000), 408),
    "PUT": (raw("PUT", f"/v1/models/{MODEL}", b"{}"), 405),
    "unknown model": (raw("POST", "/v1/models/nope:predict", b"{}"), 404),
    "unknown path": (raw("GET", "/v2/nope"), 404),
    "malformed request line": (b"NOT HTTP AT ALL\r\n\r\n", 400),
}


def exchange(address, data):
    """Send ``data`` on a new connection; returns (status, Content-Type, body)."""
    with socket.create_connection(address, timeout=120) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.getheader("Content-Type"), response.read()


def is_json_error(content_type, body):
    try:
        return content_type == "application/json" and isinstance(json.loads(body)["error"], str)
    except (ValueError, KeyError, TypeError):
        return False


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = []
        self.errors = []
        self.malformed = 0
        self.misanswered = []

    def add(self, **kwargs):
        with self.lock:
            for name, value in kwargs.items():
                target = getattr(self, name)
                if isinstance(target, list):
                    target.append(value)
                else:
                    setattr(self, name, target + value)


def client(index, requests, address, good, want, results):
    kinds = sorted(MALFORMED)
    for i in requests:
        if i % FLAGS.malformed_every == FLAGS.malformed_every - 1:
            kind = kinds[(index + i // FLAGS.malformed_every) % len(kinds)]
            data, status = MALFORMED[kind]
            try:
                got, content_type, body = exchange(address, data)
                if got != status or not is_json_error(content_type, body):
                    results.add(misanswered=f"{kind}: {got} {body[:80]!r}")
            except OSError as exc:
                results.add(misanswered=f"{kind}: {exc!r}")
            results.add(malformed=1)
            continue
        start = time.perf_counter()
        try:
            status, _, body = exchange(address, good)
            if status != 200:
                results.add(errors=f"{status} {body[:80]!r}")
            elif base64.b64decode(json.loads(body)["predictions"][0]["b64"]) != want:
                results.add(errors="an answer differing from the in-process SavedModel's")
        except OSError as exc:
            results.add(errors=repr(exc))
        results.add(latencies=time.perf_counter() - start)


def hold_idle(address, count, stop, lifetimes):
    """Keep ``count`` connections open and silent until ``stop``; the lifetime of each the server closed."""
    selector = selectors.DefaultSelector()

    def connect():
        sock = socket.create_connection(address)
        selector.register(sock, selectors.EVENT_READ, time.monotonic())

    for _ in range(count):
        connect()
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.2):
            try:
                closed = key.fileobj.recv(1) == b""
            except ConnectionError:
                closed = True
            if closed:
                lifetimes.append(time.monotonic() - key.data)
                selector.unregister(key.fileobj)
                key.fileobj.close()
                connect()
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    selector.close()


def drip(address, stop, sessions):
    """Drip a request head a byte at a time until ``stop``; (seconds, bytes sent, answer) per connection."""
    head = f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: bench\r\nX-Slow: ".encode() + b"a" * 10_000
    while not stop.is_set():
        start, sent, answer = time.monotonic(), 0, b""
        with socket.create_connection(address) as sock:
            sock.settimeout(FLAGS.drip_seconds)
            while not stop.is_set() and sent < len(head):
                try:
                    sock.sendall(head[sent : sent + 1])
                    sent += 1
                    answer = sock.recv(4096)  # waits drip_seconds for the server to speak
                    break  # an answer, or b"": closed
                except TimeoutError:
                    continue
                except ConnectionError:
                    break
            else:
                continue  # stopped while still dripping: not a server-ended session
            sessions.append((time.monotonic() - start, sent, answer.split(b"\r\n", 1)[0].decode(errors="replace")))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(0)
    jpeg = photo_jpeg(FLAGS.side)
    good = raw("POST", PREDICT, instances(jpeg))
    with tempfile.TemporaryDirectory() as base:
        path = export.export(
            export.ExportConfig("fast", os.path.join(base, MODEL)),
            model=TransformNet(width=0.125, num_residual_blocks=1),
        )
        serving_default = tf.saved_model.load(path).signatures["serving_default"]

        def local():
            return serving_default(image_bytes=tf.constant([jpeg]))["image_bytes"][0].numpy()

        want = local()
        for _ in range(10):  # warm-up
            local()
        local_p50 = np.median([timed(local) for _ in range(100)])
        proc, url = start_nst_serve(
            base,
            f"--max_request_mb={MAX_REQUEST_MB}",
            f"--header_timeout_seconds={FLAGS.header_timeout}",
            f"--body_timeout_seconds={FLAGS.body_timeout}",
        )
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        try:
            rss_loaded, _ = rss_mib(proc.pid)
            status, _, _ = exchange(address, good)
            assert status == 200, status
            rss_first, _ = rss_mib(proc.pid)

            results, stop, idle_lifetimes, drip_sessions = Results(), threading.Event(), [], []
            helpers = [
                threading.Thread(target=hold_idle, args=(address, FLAGS.idle, stop, idle_lifetimes)),
                threading.Thread(target=drip, args=(address, stop, drip_sessions)),
            ]
            for thread in helpers:
                thread.start()
            time.sleep(0.5)  # the idle connections are open before the load starts
            start = time.perf_counter()
            # In two halves, with the server's memory read between: growth in the second half
            # would be a leak, not a working set filling up.
            rss_halves = []
            for half in np.array_split(np.arange(FLAGS.requests), 2):
                clients = [
                    threading.Thread(target=client, args=(i, half, address, good, want, results))
                    for i in range(FLAGS.clients)
                ]
                for thread in clients:
                    thread.start()
                for thread in clients:
                    thread.join()
                rss_halves.append(rss_mib(proc.pid)[0])
            wall = time.perf_counter() - start
            stop.set()
            for thread in helpers:
                thread.join()
            rss_peak = rss_mib(proc.pid)[1]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)

    p50, p99 = np.percentile(results.latencies, [50, 99])
    well_formed = len(results.latencies)
    print(
        f"{FLAGS.clients} clients x {FLAGS.requests} requests in {wall:.1f} s, {os.cpu_count()} CPUs; "
        f"{FLAGS.idle} idle connections and a slow-header client alongside; server --header_timeout_seconds="
        f"{FLAGS.header_timeout:g} --body_timeout_seconds={FLAGS.body_timeout:g}"
    )
    print(
        f"well-formed: {well_formed} requests, {len(results.errors)} errors; p50 {p50 * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms; p50 / in-process serving_default p50 ({local_p50 * 1e3:.1f} ms) = "
        f"{p50 / local_p50:.1f}"
    )
    for error in sorted(set(results.errors))[:10]:
        print(f"  error: {error}")
    print(
        f"malformed: {results.malformed} requests of {len(MALFORMED)} kinds, "
        f"{len(results.misanswered)} answered otherwise than expected"
    )
    for wrong in sorted(set(results.misanswered))[:10]:
        print(f"  misanswered: {wrong}")
    if idle_lifetimes:
        print(
            f"idle connections closed by the server: {len(idle_lifetimes)}, after {np.median(idle_lifetimes):.1f} s "
            f"(median) / {max(idle_lifetimes):.1f} s (max) = {max(idle_lifetimes) / FLAGS.header_timeout:.2f} x "
            "the header timeout"
        )
    if drip_sessions:
        longest = max(s[0] for s in drip_sessions)
        answers = sorted({s[2] or "closed" for s in drip_sessions})
        print(
            f"slow-header connections ended by the server: {len(drip_sessions)}, after at most {longest:.1f} s = "
            f"{longest / FLAGS.header_timeout:.2f} x the header timeout, {max(s[1] for s in drip_sessions)} bytes "
            f"sent at most; answers: {', '.join(answers)}"
        )
    print(
        f"server RSS: {rss_loaded:.0f} MiB loaded, {rss_first:.0f} MiB after the first request, "
        f"{rss_halves[0]:.0f} MiB after half the load, {rss_halves[1]:.0f} MiB after all of it (peak "
        f"{rss_peak:.0f} MiB); growth after the first request {rss_halves[1] - rss_first:+.0f} MiB, in the "
        f"second half {rss_halves[1] - rss_halves[0]:+.0f} MiB"
    )


if __name__ == "__main__":
    app.run(main)
