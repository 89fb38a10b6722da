"""``citywatch dashboards push`` against a stand-in for Grafana on loopback.

No Grafana server can run here, so this is the one place a stand-in is used: a small HTTP
server that accepts only requests shaped as Grafana's documented HTTP API says
(https://grafana.com/docs/grafana/latest/developers/http_api/folder/ and .../dashboard/):

- ``GET /api/folders/:uid``: 200 with the folder, or 404 ``{"message": "folder not found"}``;
- ``POST /api/folders`` ``{"uid", "title"}``: 200 with the folder; 409 when the uid exists;
- ``POST /api/dashboards/db`` ``{"dashboard": {... "uid", "title", "id": null ...}, "folderUid",
  "overwrite", "message"}``: 200 ``{"id", "uid", "url", "status": "success", "version", "slug"}``;
  412 ``{"status": "name-exists"}`` when the uid exists and ``overwrite`` is not true;
- every request needs ``Authorization: Bearer <token>`` (401 otherwise) and a JSON body where
  one is sent; anything else is answered 400 and recorded as a protocol violation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from citywatch.settings import load_settings
from dashboards import boards
from dashboards.provisioning import build
from dashboards.push import PushError, push

TOKEN = "glsa_test_token"


class FakeGrafana:
    def __init__(self, refuse_dashboards: int | None = None) -> None:
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.versions: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.refuse_dashboards = refuse_dashboards
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                    ct = self.headers.get("Content-Type")
                    fake.violations.append(f"{self.command} {self.path}: Content-Type {ct}")
                return json.loads(self.rfile.read(n) or b"null")

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"message": "Unauthorized"})
                    return False
                return True

            def do_GET(self):
                fake.requests.append(("GET", self.path))
                if not self._authorized():
                    return
                if self.path.startswith("/api/folders/"):
                    uid = self.path.rsplit("/", 1)[1]
                    if uid in fake.folders:
                        return self._send(200, fake.folders[uid])
                    return self._send(404, {"message": "folder not found", "status": "not-found"})
                fake.violations.append(f"GET {self.path}")
                self._send(400, {"message": "unexpected request"})

            def do_POST(self):
                fake.requests.append(("POST", self.path))
                if not self._authorized():
                    return
                body = self._body()
                if self.path == "/api/folders":
                    if not isinstance(body, dict) or not isinstance(body.get("title"), str) or not body.get("uid"):
                        fake.violations.append(f"POST /api/folders {body}")
                        return self._send(400, {"message": "bad folder"})
                    if body["uid"] in fake.folders:
                        return self._send(409, {"message": "a folder with the same uid already exists"})
                    fake.folders[body["uid"]] = {"id": len(fake.folders) + 1, "uid": body["uid"],
                                                 "title": body["title"], "url": f"/dashboards/f/{body['uid']}/",
                                                 "version": 1}
                    return self._send(200, fake.folders[body["uid"]])
                if self.path == "/api/dashboards/db":
                    if fake.refuse_dashboards:
                        return self._send(fake.refuse_dashboards, {"message": "Access denied to save dashboard"})
                    ok = (isinstance(body, dict) and set(body) <= {"dashboard", "folderUid", "overwrite", "message",
                                                                   "folderId"}
                          and isinstance(body.get("dashboard"), dict) and body["dashboard"].get("uid")
                          and body["dashboard"].get("title") and "id" in body["dashboard"]
                          and body["dashboard"]["id"] is None and isinstance(body["dashboard"].get("panels"), list))
                    if not ok:
                        fake.violations.append(f"POST /api/dashboards/db keys {sorted(body or {})}")
                        return self._send(400, {"message": "bad dashboard"})
                    if body.get("folderUid") not in fake.folders:
                        return self._send(400, {"message": "folder not found"})
                    uid = body["dashboard"]["uid"]
                    if uid in fake.dashboards and body.get("overwrite") is not True:
                        return self._send(412, {"message": "A dashboard with the same uid already exists",
                                                "status": "name-exists"})
                    fake.dashboards[uid] = body
                    fake.versions[uid] = fake.versions.get(uid, 0) + 1
                    return self._send(200, {"id": list(fake.dashboards).index(uid) + 1, "uid": uid,
                                            "url": f"/d/{uid}/x", "status": "success",
                                            "version": fake.versions[uid], "slug": "x"})
                fake.violations.append(f"POST {self.path}")
                self._send(400, {"message": "unexpected request"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def built(tmp_path):
    s = load_settings(env={}, store={"url": "influxdb://127.0.0.1:8086/citywatch"})
    build(tmp_path / "grafana", s)
    return tmp_path / "grafana"


def test_push_creates_the_folder_once_and_overwrites_by_uid(built):
    with FakeGrafana() as g:
        first = push(built, g.url, TOKEN)
        assert first == [b.uid for b in boards()]
        assert list(g.folders) == ["citywatch"]
        assert ("POST", "/api/folders") in g.requests
        again = push(built, g.url, TOKEN)  # idempotent: the folder is found, boards replaced
    assert again == first and g.violations == []
    assert g.requests.count(("POST", "/api/folders")) == 1
    assert g.requests.count(("GET", "/api/folders/citywatch")) == 2
    assert set(g.dashboards) == set(first) and all(v == 2 for v in g.versions.values())
    body = g.dashboards["citywatch-overview"]
    assert body["folderUid"] == "citywatch" and body["overwrite"] is True
    assert body["dashboard"]["title"] == "城市运行" and body["dashboard"]["schemaVersion"] >= 39


def test_a_refusal_is_one_line_naming_the_dashboard_and_the_answer(built):
    with FakeGrafana(refuse_dashboards=403) as g:
        with pytest.raises(PushError) as e:
            push(built, g.url, TOKEN)
    msg = str(e.value)
    assert "refused dashboard 'citywatch-overview' (403)" in msg and "Access denied" in msg and "\n" not in msg
    with FakeGrafana() as g, pytest.raises(PushError, match=r"refused GET /api/folders/citywatch \(401\)"):
        push(built, g.url, "wrong-token")


def test_unreachable_grafana_is_one_line(built):
    with FakeGrafana() as g:
        url = g.url  # then closed: nothing listens there
    with pytest.raises(PushError, match="cannot reach Grafana at http://127.0.0.1"):
        push(built, url, TOKEN, timeout=2)


def test_cli_push(tmp_path):
    cfg = tmp_path / "citywatch.toml"
    cfg.write_text('[store]\nurl = "influxdb://127.0.0.1:8086/citywatch"\n[dashboards]\nlanguage = "en"\n')
    code = "import sys; from citywatch.cli import main; sys.argv = ['citywatch', *sys.argv[1:]]; main()"
    with FakeGrafana() as g:
        args = [sys.executable, "-c", code, "dashboards", "push", "--url", g.url, "--out", str(tmp_path / "g"),
                "-c", str(cfg)]
        env = {**os.environ, "COLUMNS": "200", "GRAFANA_TOKEN": TOKEN}
        r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert f"pushed {len(boards())} dashboards" in r.stdout
        assert g.dashboards["citywatch-overview"]["dashboard"]["title"] == "City overview"
        env["GRAFANA_TOKEN"] = "nope"
        r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 1 and "401" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert Path(tmp_path / "g" / "dashboards").is_dir()
