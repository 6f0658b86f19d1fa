"""optuna-dashboard on a study's storage: read-only unless asked, and loud off loopback."""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from optuna.storages import BaseStorage

log = logging.getLogger(__name__)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def dashboard_app(storage: BaseStorage, *, allow_write: bool = False) -> WSGIApp:
    """optuna-dashboard's WSGI app. Read-only by default: its API can rename and delete
    studies, tell trials and write notes, and a browser tab left open should not."""
    import optuna_dashboard

    app = optuna_dashboard.wsgi(storage)
    return app if allow_write else _read_only(app)


def _read_only(app: WSGIApp) -> WSGIApp:
    body = json.dumps(
        {"reason": "this dashboard is read-only; start it with --allow-write to change studies"}
    ).encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return app(environ, start_response)
        start_response(
            "403 Forbidden",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return guarded


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug(format, *args)


def serve_dashboard(
    storage: BaseStorage, *, host: str, port: int, allow_write: bool = False
) -> None:
    """Serve the dashboard until interrupted (blocks)."""
    with make_server(
        host, port, dashboard_app(storage, allow_write=allow_write), handler_class=_Quiet
    ) as server:
        server.serve_forever()
