"""The report page, read as a user would: in a real headless browser; and the dashboard."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest


def test_the_page_has_the_card_front_and_every_plot(shipped_run):
    page = (shipped_run / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 4  # self-contained
    for text in ("retained", "x smaller", "ONNX Runtime int8", "Pareto front"):
        assert text in page, text
    assert re.search(r"\d\.\dx (faster|slower)</td>", page)  # the student against the teacher
    front = pd.read_csv(shipped_run / "pareto.csv")
    assert "<th>trial</th>" in page and "<pre>" not in page  # the front is an HTML table
    for number in front["number"]:
        assert f"<tr><td>{number}</td>" in page, number
    md = (shipped_run / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (shipped_run / link).is_file(), link
    student = next((shipped_run / "students").glob("trial-*"))
    metrics = json.loads((student / "metrics.json").read_text())
    assert f"{100 * metrics['test_accuracy']:.2f}%" in page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_every_image_loads_in_headless_chromium(shipped_run):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs the Debian package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            (shipped_run / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    total = re.search(r'data-images-total="(\d+)"', dom)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert total and loaded, "the page's load script did not run"
    assert int(total.group(1)) == 4 and loaded.group(1) == total.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_dashboard_serves_the_runs_study(shipped_run):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autodistill.cli",
            "dashboard",
            str(shipped_run),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the dashboard did not answer within 60 s"
        assert "digits-default" in json.dumps(body)
        # Read-only unless asked: before, a DELETE here removed the study.
        study_id = body["study_summaries"][0]["study_id"]
        delete = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/studies/{study_id}", method="DELETE"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(delete, timeout=5)
        assert refused.value.code == 403 and b"--allow-write" in refused.value.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
            assert "digits-default" in r.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _call(app, method: str, path: str) -> str:
    status = []
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "x",
        "SERVER_PORT": "1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "CONTENT_LENGTH": "0",
        "QUERY_STRING": "",
    }
    b"".join(app(environ, lambda s, headers, *a: status.append(s)))
    return status[0]


def test_the_dashboard_writes_only_when_allowed(tmp_path):
    import optuna

    from autodistill import study as search

    storage = search.open_storage(None, tmp_path)
    made = optuna.create_study(storage=storage, study_name="s")
    path = f"/api/studies/{made._study_id}"
    assert _call(search.dashboard_app(storage), "DELETE", path).startswith("403")
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["s"]
    assert _call(search.dashboard_app(storage, allow_write=True), "DELETE", path).startswith("2")
    assert optuna.get_all_study_summaries(storage) == []


def test_a_dashboard_off_loopback_warns(shipped_run, monkeypatch, caplog):
    import logging

    from autodistill import api, study

    assert study.is_loopback("127.0.0.1") and study.is_loopback("::1")
    assert study.is_loopback("localhost") and not study.is_loopback("0.0.0.0")
    served = []
    monkeypatch.setattr(study, "serve_dashboard", lambda *a, **k: served.append(k))
    with caplog.at_level(logging.WARNING, logger="autodistill.api"):
        api.dashboard(shipped_run, host="0.0.0.0")
    assert served == [{"host": "0.0.0.0", "port": 8080, "allow_write": False}]
    assert "anyone who can reach this machine can read the study" in caplog.text


def test_a_ratio_below_one_reads_slower_not_a_fraction_faster():
    from autodistill.render.tables import times

    assert times(2.04) == "2.0x faster" and times(1.0) == "1.0x faster"
    assert times(0.7) == "1.4x slower"
