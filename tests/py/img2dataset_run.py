"""Runs the real img2dataset against images served from 127.0.0.1, for img2dataset_test.

img2dataset_run.py WORK  writes WORK/images (the served files), WORK/urls.parquet
                         and WORK/shards (img2dataset's webdataset output), then
                         prints one JSON object:
  urls        rows in the URL list
  missing     rows whose URL answers 404
  corrupt     rows whose URL serves bytes that are no image
  requests    GETs the server answered (every row must be asked for)
  statuses    {status: rows} over img2dataset's .parquet files
  successes   the sum of `successes` over img2dataset's *_stats.json
  shards      [{"tar", "successes" (its _stats.json), "failed" and "keys" (its
              .parquet's other rows and success rows, in order)}]
  captions    {key: caption} of the rows img2dataset wrote

The server runs in a thread of this process, so it ends when this script ends,
also on failure; img2dataset runs as its own process group and is killed with
it on timeout. Any failure (no package, no server, img2dataset's exit status,
a missing output) exits non-zero: the caller must fail, never skip.
"""
import glob
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

IMAGES = 40  # 2 decoded-as-grayscale, some PNG (RGBA and palette), the rest JPEG
MISSING = 3
CORRUPT = 1
PER_SHARD = 16  # img2dataset cuts shards by input rows: 44 rows -> 3 shards
TIMEOUT_S = 200


def draw_image(i):
    w, h = 40 + 7 * (i % 9), 30 + 5 * (i % 7)  # sizes vary, aspect ratios too
    colors = [(200, 30, 30), (30, 160, 40), (40, 60, 210), (230, 200, 20)]
    img = Image.new("RGB", (w, h), colors[i % 4])
    d = ImageDraw.Draw(img)
    d.ellipse([w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2], fill=colors[(i + 1) % 4])
    d.rectangle([0, 0, w // 5, h // 5], fill=(i * 6 % 256, 255 - i * 6 % 256, 128))
    buf = io.BytesIO()
    if i % 10 == 3:
        img.convert("RGBA").save(buf, "PNG")
        return buf.getvalue(), "png"
    if i % 10 == 7:
        img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(buf, "PNG")
        return buf.getvalue(), "png"
    if i % 20 == 5:
        img = img.convert("L")
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue(), "jpg"


def write_inputs(work):
    images = os.path.join(work, "images")
    os.makedirs(images)
    rows = []  # (file name, caption)
    for i in range(IMAGES):
        data, ext = draw_image(i)
        name = f"img{i:03d}.{ext}"
        with open(os.path.join(images, name), "wb") as f:
            f.write(data)
        # Non-ASCII captions: the .txt members must come back as the same UTF-8.
        rows.append((name, f"picture {i}: a {['red', 'green', 'blue', 'yellow'][i % 4]} disc, café ☕"))
    with open(os.path.join(images, "not_an_image.jpg"), "wb") as f:
        f.write(b"<html>this is no image</html>\n" * 4)
    # The failures sit between successes so that every shard has some.
    for j in range(MISSING):
        rows.insert(5 + 13 * j, (f"gone{j}.jpg", f"a 404 ({j})"))
    rows.insert(20, ("not_an_image.jpg", "bytes that do not decode"))
    return images, rows


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = 0
    lock = threading.Lock()

    def do_GET(self):
        with QuietHandler.lock:
            QuietHandler.requests += 1
        super().do_GET()

    def log_message(self, *args):
        pass


def run_img2dataset(url_list, shards):
    args = [
        os.path.join(os.path.dirname(sys.executable), "img2dataset"),
        f"--url_list={url_list}", "--input_format=parquet",
        "--url_col=url", "--caption_col=caption",
        f"--output_folder={shards}", "--output_format=webdataset",
        "--image_size=64", "--resize_mode=border",
        "--processes_count=2", "--thread_count=4",
        f"--number_sample_per_shard={PER_SHARD}",
        "--timeout=30", "--retries=0", "--enable_wandb=False",
        "--distributor=multiprocessing",
    ]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    # Nothing but 127.0.0.1: other HTTP goes to a proxy that refuses (the
    # discard port), so a library phoning home fails fast instead of leaving
    # the machine. Albumentations' update check and wandb are off as well.
    refuse = "http://127.0.0.1:9"
    env.update(http_proxy=refuse, https_proxy=refuse, HTTP_PROXY=refuse, HTTPS_PROXY=refuse,
               no_proxy="127.0.0.1", NO_PROXY="127.0.0.1",
               NO_ALBUMENTATIONS_UPDATE="1", WANDB_MODE="disabled")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        sys.exit(f"img2dataset ran past {TIMEOUT_S} s:\n{out.decode(errors='replace')[-4000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its pool workers, if any are left
        except ProcessLookupError:
            pass
    if proc.returncode != 0:
        sys.exit(f"img2dataset exited {proc.returncode}:\n{out.decode(errors='replace')[-4000:]}")


def read_outputs(shards):
    tars = sorted(glob.glob(os.path.join(shards, "*.tar")))
    if not tars:
        sys.exit(f"img2dataset wrote no .tar in {shards}: {os.listdir(shards)}")
    out, captions, statuses = [], {}, {}
    for tar in tars:
        stem = tar[: -len(".tar")]
        with open(stem + "_stats.json") as f:
            successes = json.load(f)["successes"]
        keys, failed = [], 0
        for row in pq.read_table(stem + ".parquet").to_pylist():
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
            if row["status"] == "success":
                keys.append(row["key"])
                captions[row["key"]] = row["caption"]
            else:
                failed += 1
        out.append({"tar": tar, "successes": successes, "failed": failed, "keys": keys})
    return out, captions, statuses


def main():
    work = sys.argv[1]
    images, rows = write_inputs(work)
    handler = lambda *a, **k: QuietHandler(*a, directory=images, **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: a free one
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        table = pa.table({
            "url": [f"http://127.0.0.1:{port}/{name}" for name, _ in rows],
            "caption": [caption for _, caption in rows],
        })
        url_list = os.path.join(work, "urls.parquet")
        pq.write_table(table, url_list)
        shards = os.path.join(work, "shards")
        run_img2dataset(url_list, shards)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    written, captions, statuses = read_outputs(shards)
    print(json.dumps({
        "urls": len(rows), "missing": MISSING, "corrupt": CORRUPT,
        "requests": QuietHandler.requests, "statuses": statuses,
        "successes": sum(s["successes"] for s in written),
        "shards": written, "captions": captions,
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
