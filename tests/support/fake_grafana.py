"""A local server speaking the part of Grafana's HTTP API that ``dashboards.publish``
calls (stdlib HTTP server on 127.0.0.1:0, its own thread), so ``grafana-client`` is
tested over real HTTP.

Endpoints, as Grafana 11 answers them: ``GET /api/search`` (``type=dash-folder`` with
``query``: folders whose title contains it; ``type=dash-db`` with ``dashboardUIDs``),
``POST /api/folders`` (409 when the uid exists), ``GET /api/folders/<uid>``,
``GET /api/datasources/uid/<uid>`` and ``/name/<name>`` (404 ``Data source not
found``; never the secrets: ``secureJsonFields`` instead), ``POST /api/datasources``
(409 on a taken name or uid),
``PUT /api/datasources/uid/<uid>``, ``GET /api/dashboards/uid/<uid>`` (``dashboard``
with ``id``/``version``, ``meta.folderUid``), ``POST /api/dashboards/db`` (412 when the
uid exists and ``overwrite`` is false; the version goes up). Every request needs
``Authorization: Bearer <token>`` (401 otherwise). ``requests`` records each one."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class GrafanaRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGrafana:
    token: str
    requests: list[GrafanaRequest] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> stored
    _next_id: int = 1
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGrafana:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = GrafanaRequest(
                    self.command,
                    unquote(parts.path),
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
                status, answer = fake.handle(request)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def writes(self) -> list[GrafanaRequest]:
        return [r for r in self.requests if r.method != "GET"]

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def handle(self, r: GrafanaRequest) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(r)
            if r.headers.get("authorization") != f"Bearer {self.token}":
                return 401, {"message": "Unauthorized"}
            return self._route(r)

    def _route(self, r: GrafanaRequest) -> tuple[int, Any]:
        path, method = r.path, r.method
        if method == "GET" and path == "/api/search":
            return 200, self._search(r.query)
        if method == "POST" and path == "/api/folders":
            return self._create_folder(r.body)
        if method == "GET" and path.startswith("/api/folders/"):
            folder = self.folders.get(path.removeprefix("/api/folders/"))
            return (404, {"message": "folder not found"}) if folder is None else (200, folder)
        if path.startswith("/api/datasources"):
            return self._datasource(method, path.removeprefix("/api/datasources"), r.body)
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            stored = self.dashboards.get(path.removeprefix("/api/dashboards/uid/"))
            if stored is None:
                return 404, {"message": "Dashboard not found"}
            return 200, stored
        if method == "POST" and path == "/api/dashboards/db":
            return self._save_dashboard(r.body)
        return 404, {"message": "Not found"}

    def _search(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        kind = query.get("type", [""])[0]
        if kind == "dash-folder":
            text = query.get("query", [""])[0].lower()
            return [
                {"uid": f["uid"], "title": f["title"], "type": "dash-folder", "id": f["id"]}
                for f in self.folders.values()
                if text in f["title"].lower()
            ]
        uids = query.get("dashboardUIDs", [])
        return [
            {"uid": uid, "title": d["dashboard"]["title"], "type": "dash-db"}
            for uid, d in self.dashboards.items()
            if not uids or uid in uids
        ]

    def _create_folder(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body["uid"] in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        folder = {"uid": body["uid"], "title": body["title"], "id": self._id()}
        self.folders[body["uid"]] = folder
        return 200, folder

    def _public(self, ds: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in ds.items() if k != "secureJsonData"}
        shown["secureJsonFields"] = {k: True for k in ds.get("secureJsonData", {})}
        return shown

    def _datasource(self, method: str, rest: str, body: Any) -> tuple[int, Any]:
        missing = (404, {"message": "Data source not found"})
        if method == "GET" and rest.startswith("/uid/"):
            ds = self.datasources.get(rest.removeprefix("/uid/"))
            return missing if ds is None else (200, self._public(ds))
        if method == "GET" and rest.startswith("/name/"):
            name = rest.removeprefix("/name/")
            found = [d for d in self.datasources.values() if d["name"] == name]
            return (200, self._public(found[0])) if found else missing
        if method == "POST" and rest == "":
            taken = any(d["name"] == body["name"] for d in self.datasources.values())
            if taken or body["uid"] in self.datasources:
                return 409, {"message": "data source with the same name already exists"}
            ds = {**body, "id": self._id()}
            self.datasources[body["uid"]] = ds
            return 200, {"datasource": self._public(ds), "id": ds["id"], "message": "added"}
        if method == "PUT" and rest.startswith("/uid/"):
            uid = rest.removeprefix("/uid/")
            if uid not in self.datasources:
                return missing
            ds = {**body, "id": self.datasources[uid]["id"], "uid": uid}
            self.datasources[uid] = ds
            return 200, {"datasource": self._public(ds), "message": "updated"}
        return 404, {"message": "Not found"}

    def _save_dashboard(self, body: dict[str, Any]) -> tuple[int, Any]:
        board = dict(body["dashboard"])
        uid = board["uid"]
        if body.get("folderUid") not in self.folders:
            return 400, {"message": "folder not found"}
        stored = self.dashboards.get(uid)
        if stored is not None and not body.get("overwrite"):
            return 412, {"status": "name-exists", "message": "dashboard exists"}
        version = 1 if stored is None else stored["dashboard"]["version"] + 1
        board_id = self._id() if stored is None else stored["dashboard"]["id"]
        board.update(id=board_id, version=version)
        self.dashboards[uid] = {"dashboard": board, "meta": {"folderUid": body["folderUid"]}}
        return 200, {"status": "success", "uid": uid, "version": version, "id": board_id}


def fake_grafana(token: str) -> Iterator[FakeGrafana]:
    """A started fake, stopped afterwards (for a fixture)."""
    server = FakeGrafana(token).start()
    try:
        yield server
    finally:
        server.stop()
