#!/usr/bin/env python3
"""Static server for the l2d pages: serves www/, pkg/ and models/ of the repository (nothing
else) with correct MIME types (application/wasm) and a Content-Security-Policy that allows
wasm compilation ('wasm-unsafe-eval') but no eval. `/` redirects to the demo page.

usage: scripts/serve.py [--port 8080] [--cors ORIGIN|*] [--connect-src EXTRA] [--also DIR/ ...] [--gzip]
                        [--csp-reports FILE] [--request-log FILE] [--network slow4g|fast4g|none]
(--also serves one more repository directory, e.g. target/synth/ for the catalog benchmark;
--gzip compresses every response for clients that accept it, as a CDN does (each file once per
version, kept in memory): Content-Length is
then the compressed size; --csp-reports adds `report-uri /__csp-report` to the policy and appends
every violation report a browser posts there to FILE, one JSON body per line: how the page tests
see a violation in any engine, workers included; --request-log appends "METHOD PATH" of every
request to FILE, which the page tests read where an engine's driver has no network events;
--network shapes every response, the page's and its worker's alike, as one mobile link:
slow4g = 150 ms round trip and 1.6 Mbit/s down, fast4g = 40 ms and 9 Mbit/s (Lighthouse's
mobile presets), the bandwidth shared by all connections at once)
"""
import argparse
import gzip
import http.server
import io
import mimetypes
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOWED = ("www/", "pkg/", "models/")
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/json", ".json")
mimetypes.add_type("application/octet-stream", ".blob")
mimetypes.add_type("application/x-ndjson", ".jsonl")
mimetypes.add_type("application/octet-stream", ".safetensors")


# (round trip in seconds, bytes per second down) of the --network profiles.
NETWORKS = {"slow4g": (0.150, 1.6e6 / 8), "fast4g": (0.040, 9e6 / 8), "none": (0.0, 0.0)}


class Link:
    """One shared downlink: bytes leave no faster than `rate` in all, each response after a round trip."""

    def __init__(self, rtt, rate):
        self.rtt, self.rate = rtt, rate
        self.lock = threading.Lock()
        self.free_at = 0.0

    def wait_round_trip(self):
        if self.rtt:
            time.sleep(self.rtt)

    def send(self, n):
        if not self.rate:
            return
        with self.lock:
            start = max(time.monotonic(), self.free_at)
            self.free_at = start + n / self.rate
            until = self.free_at
        delay = until - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def make_handler(args):
    link = Link(*NETWORKS[args.network])
    csp = (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
        f"connect-src 'self' {args.connect_src}; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'none'"
    )
    if args.csp_reports:
        csp += "; report-uri /__csp-report"

    # Compressed bodies by (path, modification time, size): a file is compressed once per
    # version, as a CDN stores it, not on every request (a 200 MB blob took 6 s each time).
    gzipped = {}

    def compressed(path):
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        if key not in gzipped:
            for stale in [k for k in gzipped if k[0] == path]:
                del gzipped[stale]
            with open(path, "rb") as f:
                gzipped[key] = gzip.compress(f.read(), compresslevel=6, mtime=0)
        return gzipped[key]

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=ROOT, **kw)

        def log_request(self, code="-", size="-"):
            if args.request_log and self.command:
                with open(args.request_log, "a", encoding="utf-8") as f:
                    f.write(f"{self.command} {self.path}\n")
            super().log_request(code, size)

        def log_message(self, fmt, *a):
            if not args.quiet:
                sys.stderr.write("%s %s\n" % (self.address_string(), fmt % a))

        def end_headers(self):
            self.send_header("Content-Security-Policy", csp)
            self.send_header("Cache-Control", "no-cache")
            if args.cors:
                self.send_header("Access-Control-Allow-Origin", args.cors)
            super().end_headers()

        def allowed(self):
            """Redirects / to the demo and refuses anything outside www/, pkg/, models/."""
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self.send_response(302)
                self.send_header("Location", "/www/index.html")
                self.end_headers()
                return False
            rel = path.lstrip("/")
            if ".." in rel or not rel.startswith(ALLOWED + tuple(args.also)):
                self.send_error(404, "not served")
                return False
            return True

        def do_GET(self):
            link.wait_round_trip()
            if self.allowed():
                super().do_GET()

        def send_head(self):
            """With --gzip and a client that accepts it, a file is sent gzip-compressed."""
            accepts = "gzip" in self.headers.get("Accept-Encoding", "")
            path = self.translate_path(self.path)
            if not (args.gzip and accepts and os.path.isfile(path)):
                return super().send_head()
            modified = self.date_time_string(int(os.stat(path).st_mtime))
            if self.headers.get("If-Modified-Since") == modified:
                self.send_response(304)
                self.end_headers()
                return None
            body = compressed(path)
            self.send_response(200)
            self.send_header("Last-Modified", modified)
            self.send_header("Content-Type", self.guess_type(path))
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)

        def do_HEAD(self):
            if self.allowed():
                super().do_HEAD()

        def copyfile(self, source, outputfile):
            try:
                if not link.rate:
                    super().copyfile(source, outputfile)
                    return
                while True:
                    chunk = source.read(16384)
                    if not chunk:
                        break
                    link.send(len(chunk))
                    outputfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away mid-download (a closed tab, a test's fault injection)

        def do_POST(self):
            if args.csp_reports and self.path.split("?", 1)[0] == "/__csp-report":
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 16)
                body = self.rfile.read(length).decode("utf-8", "replace").replace("\n", " ")
                with open(args.csp_reports, "a", encoding="utf-8") as f:
                    f.write(body + "\n")
                self.send_response(204)
                self.end_headers()
                return
            self.send_error(405, "static files only")

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cors", default="", help="Access-Control-Allow-Origin value (for a CDN origin)")
    parser.add_argument("--connect-src", default="", help="extra origins the pages may fetch from")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--also", action="append", default=[], help="one more directory to serve (relative to the repository, ending in /)")
    parser.add_argument("--gzip", action="store_true", help="gzip every response for clients that accept it (as a CDN does)")
    parser.add_argument("--request-log", default="", help="append METHOD PATH of every request to this file")
    parser.add_argument("--csp-reports", default="", help="append CSP violation reports (report-uri) to this file")
    parser.add_argument("--network", default="none", choices=sorted(NETWORKS), help="shape responses as a mobile link")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer((args.host, args.port), make_handler(args))
    base = f"http://{args.host}:{args.port}"
    print(f"l2d demo:       {base}/www/index.html", flush=True)
    print(f"storefront:     {base}/www/shop.html", flush=True)
    print(f"model manifest: {base}/models/default/manifest.json", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
