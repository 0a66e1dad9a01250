"""The compose stack's nginx proxy as a local process: ``deploy/nginx.conf`` itself, with the
container's addresses, ports and certificate paths made local and a self-signed certificate from
``deploy/self-signed-cert.sh``. Used by the stack test and the load benchmark."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_version() -> tuple[int, ...] | None:
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if binary is None:
        return None
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", done.stderr + done.stdout)
    return tuple(int(x) for x in found.groups()) if found else None


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


class LocalProxy:
    """nginx in front of a gunicorn at ``127.0.0.1:upstream_port``; HTTPS on ``https_port``,
    plain HTTP (which redirects) on ``http_port``."""

    def __init__(self, folder: Path, upstream_port: int) -> None:
        self.folder = folder
        self.upstream_port = upstream_port
        self.http_port = free_port()
        self.https_port = free_port()
        self.tls = folder / "tls"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def certificate(self) -> str:
        return str(self.tls / "fullchain.pem")

    def site_config(self) -> str:
        """deploy/nginx.conf with the container's names made local."""
        text = (REPO / "deploy" / "nginx.conf").read_text()
        text = text.replace("server web:8000;", f"server 127.0.0.1:{self.upstream_port};")
        text = text.replace("listen 80;", f"listen 127.0.0.1:{self.http_port};")
        text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;")
        text = text.replace("/etc/nginx/tls/", f"{self.tls}/")
        # The redirect names the published port (443 in compose, a free one here).
        text = text.replace(
            "return 301 https://$host$request_uri;",
            f"return 301 https://$host:{self.https_port}$request_uri;",
        )
        version = nginx_version()
        if version is not None and version < (1, 25, 1):
            # Debian 12's nginx 1.22 predates the `http2` directive (compose runs 1.27).
            text = text.replace("http2 on;", f"# http2 on; (not in nginx {version})")
        return text

    def start(self) -> None:
        subprocess.run(
            [str(REPO / "deploy" / "self-signed-cert.sh"), "localhost"],
            env={"TLS_DIR": str(self.tls), "PATH": "/usr/bin:/bin"},
            check=True,
            capture_output=True,
        )
        (self.folder / "site.conf").write_text(self.site_config())
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.folder / "temp" / sub).mkdir(parents=True, exist_ok=True)
        temp = self.folder / "temp"
        main = f"""
daemon off;
worker_processes 2;
pid {self.folder}/nginx.pid;
error_log {self.folder}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {self.folder}/site.conf;
}}
"""
        if os.geteuid() == 0:
            main = "user root;\n" + main  # the temp folders are this user's
        (self.folder / "nginx.conf").write_text(main)
        log = (self.folder / "nginx.log").open("ab")
        self.process = subprocess.Popen(
            [nginx_binary(), "-p", str(self.folder), "-c", str(self.folder / "nginx.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = time.monotonic()
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() - started > 30:
                raise RuntimeError("nginx did not start:\n" + self.log())
            time.sleep(0.2)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.https_port), timeout=1):
                return True
        except OSError:
            return False

    def log(self) -> str:
        error_log = self.folder / "nginx-error.log"
        return error_log.read_text(errors="replace")[-4000:] if error_log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
