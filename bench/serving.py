"""Serving latency and throughput of the fast transform net: nst-serve vs the in-process SavedModel.

For each image side (256 and 512 px by default) the full-width TransformNet (random
weights: the cost does not depend on them) is exported once, then:

* in-process: ``serving_default`` of the loaded SavedModel on one encoded JPEG
  (decode, net, PNG encode), called ``--requests`` times in a row;
* nst-serve: the same bytes as a TF Serving REST ``:predict`` request (JSON, base64)
  to ``nst-serve`` started as a subprocess on 127.0.0.1, ``--requests`` times from
  one client (latency), then ``--requests`` more from ``--concurrency`` clients
  (throughput).

Printed per size: p50 / p95 latency and requests/s of each path, the served/in-process
p50 ratio (the cost of HTTP + JSON + base64 + the server), and the net's conv
FLOPs over the in-process p50 (which includes JPEG decode and PNG encode) as
GFLOP/s and as a fraction of the sgemm rate measured in the same run. Only
loopback traffic; request counts are bounded.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/serving.py [--sizes=256,512] [--requests=20]
"""

import base64
import json
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import conv_forward_flops  # noqa: E402
from bench.common import photo_jpeg  # noqa: E402
from bench.common import sgemm_gflops  # noqa: E402
from bench.common import start_nst_serve  # noqa: E402
from nst_tf import export  # noqa: E402
from nst_tf.models import TransformNet  # noqa: E402

flags.DEFINE_list("sizes", ["256", "512"], "Square image sides in pixels.")
flags.DEFINE_float("width", 1.0, "TransformNet width multiplier.")
flags.DEFINE_integer("requests", 20, "Requests per measurement (after 2 warm-up requests).", lower_bound=1)
flags.DEFINE_integer("concurrency", 2, "Concurrent clients for the throughput run.", lower_bound=1)
FLAGS = flags.FLAGS


def percentiles(seconds):
    return np.percentile(seconds, 50), np.percentile(seconds, 95)


def timed(fn, count):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def post(url, body):
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    return base64.b64decode(answer["predictions"][0]["b64"])


def throughput(fn, total, clients):
    """Requests per second with ``clients`` threads sharing ``total`` calls."""
    counts = [total // clients + (i < total % clients) for i in range(clients)]
    threads = [threading.Thread(target=lambda n=n: [fn() for _ in range(n)]) for n in counts]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return total / (time.perf_counter() - start)


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)  # SavedModel writing logs at INFO
    tf.get_logger().setLevel("ERROR")
    sgemm = sgemm_gflops()
    print(
        f"sgemm: {sgemm:.1f} GFLOP/s; TransformNet width {FLAGS.width}; {FLAGS.requests} requests per "
        f"measurement, {FLAGS.concurrency} clients for throughput; {os.cpu_count()} CPUs"
    )
    net = TransformNet(width=FLAGS.width)
    with tempfile.TemporaryDirectory() as base:
        path = export.export(export.ExportConfig("fast", os.path.join(base, "fast")), model=net)
        serving_default = tf.saved_model.load(path).signatures["serving_default"]
        proc, url = start_nst_serve(base, f"--max_concurrent_predictions={FLAGS.concurrency}")
        try:
            for side in (int(s) for s in FLAGS.sizes):
                data = photo_jpeg(side)
                batch = tf.constant([data])
                body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode("ascii")}]}).encode()
                predict_url = f"{url}/v1/models/fast:predict"

                def local(batch=batch):
                    return serving_default(image_bytes=batch)["image_bytes"].numpy()

                def served(body=body, predict_url=predict_url):
                    return post(predict_url, body)

                assert local()[0] == served(), "nst-serve and the SavedModel disagree"
                local()
                served()
                local_p50, local_p95 = percentiles(timed(local, FLAGS.requests))
                served_p50, served_p95 = percentiles(timed(served, FLAGS.requests))
                local_rps = throughput(local, FLAGS.requests, FLAGS.concurrency)
                served_rps = throughput(served, FLAGS.requests, FLAGS.concurrency)
                gflops = conv_forward_flops(net, [1, side, side, 3]) / local_p50 / 1e9
                sgemm = max(sgemm, sgemm_gflops())
                print(
                    f"{side} px  in-process: p50 {local_p50 * 1e3:7.1f} ms  p95 {local_p95 * 1e3:7.1f} ms  "
                    f"{local_rps:5.2f} req/s | nst-serve: p50 {served_p50 * 1e3:7.1f} ms  "
                    f"p95 {served_p95 * 1e3:7.1f} ms  {served_rps:5.2f} req/s | "
                    f"served/in-process p50 {served_p50 / local_p50:4.2f}  "
                    f"net conv FLOPs / in-process p50 {gflops:5.1f} GFLOP/s = "
                    f"{gflops / sgemm:4.2f} x sgemm"
                )
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)


if __name__ == "__main__":
    app.run(main)
