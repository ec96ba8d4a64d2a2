"""The app as an MCP server: exactly the three read-only tools, called through the `mcp` package's own client."""
import asyncio
import base64
import json
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

import app
from kdapp.tools.serving import redrawn_canvases

mcp = pytest.importorskip("mcp")
from mcp.client.streamable_http import streamable_http_client  # noqa: E402  (after the skip)

TOOLS = {"read_digit", "list_runs", "get_run"}


def call_tools(url, calls):
    """[(name, arguments)] -> (the tools the server lists, [each call's result]) through one MCP session."""
    async def session():
        async with streamable_http_client(url + "gradio_api/mcp/") as (read, write, _):
            async with mcp.ClientSession(read, write) as s:
                await s.initialize()
                listed = (await s.list_tools()).tools
                return listed, [await s.call_tool(name, arguments) for name, arguments in calls]
    return asyncio.run(session())


def answer(result):
    """A tool's JSON answer, or the error it raised."""
    assert len(result.content) == 1 and result.content[0].type == "text"
    if result.isError:
        return {"error": result.content[0].text}
    return json.loads(result.content[0].text)


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    canvases, labels = redrawn_canvases(1, seed=3)
    path = tmp_path_factory.mktemp("mcp") / "digit.png"
    Image.fromarray(canvases[0], "RGBA").save(path)  # black ink on a transparent canvas, as the page sends
    return path, int(labels[0])


def data_url(path):
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def test_the_schema_lists_exactly_the_read_only_tools(app_url):
    with urllib.request.urlopen(app_url + "gradio_api/mcp/schema") as r:
        schema = {tool["name"]: tool for tool in json.load(r)}
    assert set(schema) == TOOLS  # not /predict, /runs, nor any page event: no tool starts or stops a run
    for tool in schema.values():
        assert tool["description"] and tool["meta"]["mcp_type"] == "tool"
        assert all(p.get("description") for p in tool["inputSchema"]["properties"].values()), tool["name"]
    read = schema["read_digit"]["inputSchema"]
    assert read["required"] == ["image"] and read["properties"]["temperature"]["type"] == "number"


def test_an_mcp_client_reads_a_digit_as_predict_does(app_url, digit_png):
    """The same PNG through /predict (gradio_client) and through read_digit (an MCP client): the
    same softmaxes at T=1, and pT equal to the lab's own."""
    from gradio_client import Client, handle_file
    path, label = digit_png
    sketch = {"background": None, "layers": [], "composite": handle_file(str(path))}
    predicted = Client(app_url, verbose=False).predict(sketch, 6.0, api_name="/predict")[:3]
    listed, results = call_tools(app_url, [("read_digit", {"image": data_url(path), "temperature": 6.0})])
    assert {tool.name for tool in listed} == TOOLS
    read = answer(results[0])
    assert read["temperature"] == 6.0 and "shipped" in read["models"]
    for role, label_output in zip(("teacher", "student", "baseline"), predicted):
        assert read[role]["digit"] == int(label_output["label"]) == label
        for shown in label_output["confidences"]:  # the top classes /predict shows
            assert read[role]["p1"][int(shown["label"])] == pytest.approx(shown["confidence"], abs=1e-6)
        assert sum(read[role]["pT"]) == pytest.approx(1, abs=1e-5)
    expected = app.lab.predict(Image.open(path), 6.0)
    for role in ("teacher", "student", "baseline"):
        assert read[role]["pT"] == pytest.approx(expected[role]["pT"], abs=1e-6)
        assert read[role]["p1"] == pytest.approx(expected[role]["p1"], abs=1e-6)


def test_runs_through_mcp_match_the_store_and_errors_say_what_to_do(app_url, digit_png):
    out = app.ui.distill.start({app.ui.owner: "mcp-owner", **app.ui.distill.controls.inputs_for(epochs=1, train_fraction=0.05)})
    view = out.get(app.ui.distill.view)
    assert view, out[app.ui.distill.notice]
    assert app.lab.queue.wait(view, timeout=240)
    record = app.lab.run(view)
    assert record["state"] == "finished", record["message"]
    path, _ = digit_png
    _, results = call_tools(app_url, [
        ("list_runs", {"limit": 5}),
        ("get_run", {"run_id": view}),
        ("read_digit", {"image": data_url(path), "models": view, "temperature": 1.0}),
        ("get_run", {"run_id": "deadbeef"}),
        ("read_digit", {"image": data_url(path), "models": "deadbeef"}),
    ])
    listed, run, read, missing_run, missing_models = map(answer, results)
    mine = next(r for r in listed if r["id"] == view)
    m = record["metrics"]
    assert mine["state"] == "finished" and mine["student_acc"] == m["student_acc"]
    assert mine["kd_gain"] == pytest.approx(m["student_acc"] - m["baseline_acc"])
    assert "mcp-owner" not in json.dumps(listed) + json.dumps(run)  # owners never leave the store
    assert run["settings"] == record["config"] and run["metrics"] == m
    assert run["accuracy_per_epoch"] == record["accuracy"] and run["has_models"]
    assert set(run["fidelity"]["agreement"]) == {"student", "baseline"}
    assert read["models"].startswith(f"run {view}")
    assert read["student"]["p1"] == pytest.approx(read["student"]["pT"], abs=1e-6)  # T=1: the same softmax
    assert "there is no run 'deadbeef'" in missing_run["error"]
    assert "there is no run deadbeef" in missing_models["error"]


def test_read_digit_cannot_be_pointed_at_the_servers_own_files(app_url):
    """A script may call /read_digit with a FileData path: only uploads are read, never the server's
    files (the repo's own PNG would read as an image if they were)."""
    import httpx
    for path in ("docs/draw.png", str(Path(app.__file__).parent / "docs" / "draw.png"), "/etc/passwd"):
        r = httpx.post(app_url + "gradio_api/run/read_digit",
                       json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, 4.0, "shipped"]})
        assert r.status_code != 200 and "teacher" not in r.text, (path, r.text)
