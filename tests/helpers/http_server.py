#!/usr/bin/python3
"""A small HTTP(S) server for lib/http's tests, with routes that misbehave on purpose.

Binds 127.0.0.1 on a free port and prints "PORT <n>" on stdout once it listens.
With --tls DIR it makes a self-signed certificate for 127.0.0.1/localhost, writes it to
DIR/ca.pem (for the client's CA file) and serves HTTPS.

Routes (any method; a request body is always read in full, chunked or not):
  /hello                      200 "hello\n", with an X-Test header
  /echo                       200 JSON: method, path, headers (lower-case names), body size
                              and SHA-256, whether it came chunked
  /slow?chunks=N&delay=S      N lines, flushed one by one, S seconds apart
  /drop                       promises 100000 bytes, sends 1000, closes the connection
  /flaky?key=K&fail=N&code=C  answers C (default 500) to the first N requests for key K,
                              then 200 with the /echo JSON
  /hits?key=K                 JSON: how many requests /flaky saw for K and when (seconds)
  /sleep?s=S                  answers after S seconds
  /status?code=C              answers C with body "status C"
  /retry-after?key=K          429 with "Retry-After: 1" the first time, then 200
  /redirect                   302 to /hello
  /close                      200 "bye\n" with "Connection: close", then closes
  /store?key=K                keeps the request body under K (204)
  /stored?key=K&fail=N&code=C answers C (default 500) to the first N requests (default 0),
                              then 200 with what /store kept under K (404 when nothing);
                              /hits?key=stored:K counts them
"""
import argparse
import hashlib
import http.server
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse

HITS = {}
HITS_LOCK = threading.Lock()
STORED = {}


def make_certificate(folder):
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harrier test server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(folder, "ca.pem")
    key_path = os.path.join(folder, "key.pem")
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path + ".tmp", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    os.rename(cert_path + ".tmp", cert_path)
    return cert_path, key_path


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data), True
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b"", False

    def send(self, code, body, content_type="text/plain", extra=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def echo(self, body, chunked):
        return json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "chunked": chunked,
        })

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        body, chunked = self.read_body()
        route = url.path
        if route == "/hello":
            self.send(200, "hello\n", extra=[("X-Test", "yes")])
        elif route == "/echo":
            self.send(200, self.echo(body, chunked), "application/json")
        elif route == "/slow":
            chunks, delay = int(query.get("chunks", 5)), float(query.get("delay", 0.3))
            lines = [f"chunk {i}\n".encode() for i in range(chunks)]
            self.send_response(200)
            self.send_header("Content-Length", str(sum(map(len, lines))))
            self.end_headers()
            for i, line in enumerate(lines):
                if i:
                    time.sleep(delay)
                self.wfile.write(line)
                self.wfile.flush()
        elif route == "/drop":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif route in ("/flaky", "/retry-after"):
            key = query.get("key", "")
            with HITS_LOCK:
                times = HITS.setdefault(key, [])
                times.append(time.monotonic())
                count = len(times)
            if route == "/retry-after":
                if count == 1:
                    self.send(429, "slow down", extra=[("Retry-After", "1")])
                else:
                    self.send(200, "ok")
            elif count <= int(query.get("fail", 1)):
                self.send(int(query.get("code", 500)), f"failure {count}")
            else:
                self.send(200, self.echo(body, chunked), "application/json")
        elif route == "/store":
            with HITS_LOCK:
                STORED[query.get("key", "")] = body
            self.send(204, b"")
        elif route == "/stored":
            key = query.get("key", "")
            with HITS_LOCK:
                times = HITS.setdefault("stored:" + key, [])
                times.append(time.monotonic())
                count = len(times)
                data = STORED.get(key)
            if count <= int(query.get("fail", 0)):
                self.send(int(query.get("code", 500)), f"failure {count}")
            elif data is None:
                self.send(404, "nothing stored\n")
            else:
                self.send(200, data, "application/x-gzip")
        elif route == "/hits":
            with HITS_LOCK:
                times = list(HITS.get(query.get("key", ""), []))
            self.send(200, json.dumps({"count": len(times), "times": times}), "application/json")
        elif route == "/sleep":
            time.sleep(float(query.get("s", 10)))
            self.send(200, "late\n")
        elif route == "/status":
            code = int(query.get("code", 200))
            self.send(code, f"status {code}\n")
        elif route == "/close":
            self.close_connection = True
            self.send(200, "bye\n", extra=[("Connection", "close")])
        elif route == "/redirect":
            self.send(302, "", extra=[("Location", "/hello")])
        else:
            self.send(404, "no such route\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", metavar="DIR")
    args = ap.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    if args.tls:
        cert, key = make_certificate(args.tls)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
