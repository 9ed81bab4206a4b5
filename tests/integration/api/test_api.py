"""The HTTP API of a running station: status, history, control, labels, upload, feed, OpenAPI."""

from __future__ import annotations

import json
import socket
import sqlite3
import uuid

import cv2

from tests.helpers import wait_until


def multipart(fields: dict[str, tuple[str, bytes]]) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    out = b""
    for name, (filename, data) in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def decided(live, n=1):
    return wait_until(lambda: live.station.counters.decisions >= n, 60)


def test_status_is_what_the_command_table_says(live):
    assert decided(live)
    status, body = live.json("GET", "/api/v1/status")
    assert status == 200
    assert body["live"] is True and body["station"] == "test"
    assert body["counters"]["decisions"] >= 1
    assert body["api"]["url"] == live.url


def test_inspections_are_paged_and_filtered_and_one_has_its_evidence(live):
    assert wait_until(lambda: live.station.counters.outcomes["REJECT"] >= 1
                      and live.station.counters.outcomes["PASS"] >= 1, 60)
    status, page = live.json("GET", "/api/v1/inspections?limit=1")
    assert status == 200 and page["total"] >= 2 and len(page["items"]) == 1
    status, rejects = live.json("GET", "/api/v1/inspections?outcome=REJECT&limit=500")
    assert rejects["items"] and all(r["outcome"] == "REJECT" for r in rejects["items"])
    status, none = live.json("GET", "/api/v1/inspections?camera=no-such-camera")
    assert none["total"] == 0
    status, later = live.json("GET", "/api/v1/inspections?since=4102444800")  # 2100
    assert later["total"] == 0
    part = rejects["items"][0]["part_id"]
    status, one = live.json("GET", f"/api/v1/inspections/{part}")
    assert status == 200 and one["part_id"] == part and isinstance(one["boxes"], list) and one["boxes"]
    assert "p_defective" in one and isinstance(one["timings"], dict)
    status, img, headers = live.request("GET", one["image_url"])
    assert status == 200 and img[:2] == b"\xff\xd8"  # the JPEG with its overlay
    status, _ = live.json("GET", "/api/v1/inspections/no-such-part")
    assert status == 404
    status, bad = live.json("GET", "/api/v1/inspections?outcome=MAYBE")
    assert status == 422


def test_pause_and_resume_go_through_the_command_table(live):
    assert decided(live)
    served = live.station.dispatcher.served
    status, body = live.json("POST", "/api/v1/control/pause", {"value": "lunch"})
    assert status == 200 and body["paused"] is True
    assert live.station.paused.is_set() and live.station.paused_reason == "lunch"
    assert live.station.dispatcher.served == served + 1
    status, body = live.json("POST", "/api/v1/control/resume")
    assert status == 200 and not live.station.paused.is_set()
    status, _ = live.json("POST", "/api/v1/control/recipe")
    assert status == 422  # not one of pause, resume, reload


def test_a_label_lands_in_sqlite(live):
    assert decided(live)
    part = live.station.last[-1]["part_id"]
    status, row = live.json("POST", f"/api/v1/inspections/{part}/labels",
                            {"verdict": "defect", "defect_type": "short"})
    assert status == 201 and row["part_id"] == part
    conn = sqlite3.connect(live.station.cfg.db_path)
    got = conn.execute("SELECT verdict, defect_type FROM labels WHERE part_id = ?", [part]).fetchall()
    conn.close()
    assert got == [("defect", "short")]
    status, _ = live.json("POST", "/api/v1/inspections/nope/labels", {"verdict": "false_alarm"})
    assert status == 404
    status, _ = live.json("POST", f"/api/v1/inspections/{part}/labels", {"verdict": "perhaps"})
    assert status == 422


def test_a_label_from_the_cli_reads_back_through_the_api_and_the_api_takes_good_or_defective(live):
    import getpass
    import subprocess
    import sys

    assert decided(live)
    part = live.station.last[-1]["part_id"]
    r = subprocess.run([sys.executable, "-m", "edge_inspector", "review", "label", part, "--db",
                        str(live.station.cfg.db_path), "--label", "defective", "--type", "spur",
                        "--note", "x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    status, row = live.json("GET", f"/api/v1/inspections/{part}")
    assert status == 200
    last = row["labels"][-1]
    assert (last["label"], last["defect_type"], last["via"], last["reviewer"], last["note"]) == (
        "defective", "spur", "cli", getpass.getuser(), "x")
    status, posted = live.json("POST", f"/api/v1/inspections/{part}/labels",
                               {"label": "good", "reviewer": "ann"})
    assert status == 201
    assert (posted["label"], posted["verdict"], posted["via"]) == ("good", "false_alarm", "http")
    status, row = live.json("GET", f"/api/v1/inspections/{part}")
    assert [x["label"] for x in row["labels"]] == ["defective", "good"]
    status, _ = live.json("POST", f"/api/v1/inspections/{part}/labels", {"reviewer": "ann"})
    assert status == 422  # neither label nor verdict


def test_an_upload_is_inspected_like_inspect_json_and_a_bad_one_is_a_4xx(live, product_dir):
    png = (product_dir / "good" / "good-0.png").read_bytes()
    body, headers = multipart({"image": ("good.png", png)})
    status, data, _ = live.request("POST", "/api/v1/inspect", body, headers)
    result = json.loads(data)
    assert status == 200, result
    assert result["decision"] == "PASS" and {"id", "regions", "votes", "timings_ms"} <= set(result)
    body, headers = multipart({"image": ("junk.png", b"\x89PNG not really")})
    status, data, _ = live.request("POST", "/api/v1/inspect", body, headers)
    assert status == 422 and "junk.png" in json.loads(data)["detail"]
    body, headers = multipart({"reference": ("ref.png", png)})  # no image at all
    status, _, _ = live.request("POST", "/api/v1/inspect", body, headers)
    assert status == 422
    ref = cv2.imencode(".png", cv2.imread(str(product_dir / "reference.png")))[1].tobytes()
    body, headers = multipart({"image": ("good.png", png), "reference": ("ref.png", ref)})
    status, data, _ = live.request("POST", "/api/v1/inspect", body, headers)
    assert status == 200 and json.loads(data)["decision"] in ("PASS", "REJECT", "NO-READ")


def read_event(sock_file) -> dict:
    lines = []
    while True:
        line = sock_file.readline().decode().rstrip("\r\n")
        if line == "" and lines:
            if any(x.startswith("event: decision") for x in lines):
                return json.loads(next(x for x in lines if x.startswith("data: "))[6:])
            lines = []
        elif line:
            lines.append(line)


def test_the_feed_streams_decisions_and_a_stuck_client_never_delays_one(live):
    host, port = live.url.removeprefix("http://").split(":")
    stuck = socket.create_connection((host, int(port)))  # subscribes, never reads
    stuck.sendall(b"GET /api/v1/feed HTTP/1.1\r\nHost: x\r\n\r\n")
    reader = socket.create_connection((host, int(port)))
    reader.sendall(b"GET /api/v1/feed HTTP/1.1\r\nHost: x\r\n\r\n")
    f = reader.makefile("rb")
    try:
        assert wait_until(lambda: live.station.outputs.outputs[-1].clients == 2, 30)
        event = read_event(f)
        assert event["outcome"] in ("PASS", "REJECT", "NO-READ") and event["part_id"]
        before = live.station.counters.decisions
        assert wait_until(lambda: live.station.counters.decisions >= before + 20, 120)  # not held up
        later = read_event(f)
        while later["part_id"] <= event["part_id"] or live.station.counters.decisions < before + 20:
            later = read_event(f)  # the reading client still gets the new decisions
        assert later["part_id"] > event["part_id"]
    finally:
        f.close()
        reader.close()
        stuck.close()


def test_openapi_lists_the_routes(live):
    status, schema = live.json("GET", "/api/v1/openapi.json")
    assert status == 200
    assert {"/api/v1/inspect", "/api/v1/status", "/api/v1/inspections", "/api/v1/inspections/{part_id}",
            "/api/v1/control/{name}", "/api/v1/feed"} <= set(schema["paths"])


def test_with_a_token_every_route_wants_it(station_config, monkeypatch):
    from tests.integration.api.conftest import start

    monkeypatch.setenv("EI_TEST_API_TOKEN", "s3cret")
    path = station_config(api={"enabled": True, "port": 0, "token": "env:EI_TEST_API_TOKEN"})
    running, thread = start(path, env_token="s3cret")
    try:
        assert running.json("GET", "/api/v1/status")[0] == 200
        assert running.json("GET", "/api/v1/status", token="wrong")[0] == 401
        status, _, _ = running.request("GET", "/metrics", token="")
        running.token = None
        assert running.request("GET", "/metrics")[0] == 401
        assert running.request("GET", "/api/v1/status?token=s3cret")[0] == 200  # EventSource's way
    finally:
        running.station.request_stop("test")
        thread.join(60)


def test_stopping_ends_an_open_feed_cleanly(station_config):
    from tests.integration.api.conftest import start

    running, thread = start(station_config(api={"enabled": True, "port": 0}))
    host, port = running.url.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)), timeout=30)
    client.sendall(b"GET /api/v1/feed HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert wait_until(lambda: running.station.outputs.outputs[-1].clients == 1, 30)
        running.station.request_stop("test")
        data = b""
        while chunk := client.recv(65536):
            data += chunk
        assert data.endswith(b"0\r\n\r\n")  # the stream's last chunk: it ended, it was not cancelled
    finally:
        client.close()
        thread.join(60)
    assert not thread.is_alive()


def test_the_api_is_read_only_unless_the_config_enables_its_commands(station_config):
    """Issue 13: any local user reaches a loopback port, so changing the station over HTTP needs
    api.commands, as MQTT needs mqtt.commands; status still answers."""
    from tests.integration.api.conftest import start

    live, thread = start(station_config(api={"enabled": True, "port": 0}))
    try:
        status, body = live.json("POST", "/api/v1/control/pause", {"value": "lunch"})
        assert status == 409 and "not enabled for http" in json.dumps(body)
        assert not live.station.paused.is_set()
        status, body = live.json("GET", "/api/v1/status")
        assert status == 200 and "paused" not in json.dumps(body.get("state", ""))
    finally:
        live.station.request_stop("test")
        thread.join(60)
