"""The viewer's JSON endpoints on loopback: pages, filters, detail, diff, and what it refuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fi_evals.runs.viewer import RunningViewer, start_viewer

from .conftest import Scored


@pytest.fixture
def viewer(scored: Scored) -> Iterator[tuple[RunningViewer, list]]:
    base = scored(run_name="main")
    new = scored(run_name="pr", broken={5}, bad_json=4)
    assert base.run and new.run
    with start_viewer([base.run, new.run]) as running:
        yield running, [base, new]


def get(viewer: RunningViewer, path: str, **params: object) -> requests.Response:
    return requests.get(viewer.url + path, params=params, timeout=10)


def test_page_and_overview(viewer: tuple[RunningViewer, list]) -> None:
    running, (base, new) = viewer
    assert running.url.startswith("http://127.0.0.1:")
    page = get(running, "")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>fi-evals view</title>" in page.text
    assert "src=" not in page.text and "<link" not in page.text  # nothing fetched from outside
    runs = get(running, "api/runs").json()["runs"]
    assert [r["id"] for r in runs] == [base.run.id, new.run.id]
    for run, result in zip(runs, (base, new)):
        for entry in run["evals"]:
            t = result.stats.templates[entry["label"]]
            assert (entry["scored"], entry["total"], entry["pass_rate"], entry["mean"]) == \
                (t.scored, t.total, t.pass_rate, t.mean_score)
        assert run["latency"]["p50"] == result.stats.percentiles()["p50"]


def test_rows_paged_and_filtered_on_the_server(viewer: tuple[RunningViewer, list]) -> None:
    running, (base, _) = viewer
    first = get(running, "api/runs/0/rows").json()
    assert first["total"] == 60 and [r["index"] for r in first["rows"]] == list(range(50))
    rest = get(running, "api/runs/0/rows", offset=50).json()
    assert [r["index"] for r in rest["rows"]] == list(range(50, 60))
    errored = get(running, "api/runs/0/rows", verdict="errored").json()
    assert errored["total"] == 2 and [r["index"] for r in errored["rows"]] == [7, 18]
    failing_json = get(running, "api/runs/0/rows", eval="is_json", verdict="failed").json()
    t = base.stats.templates["is_json"]
    assert failing_json["total"] == t.graded - t.passed
    assert all(r["outcomes"]["is_json"]["verdict"] == "failed" for r in failing_json["rows"])
    text = get(running, "api/runs/0/rows", q="order 42?").json()
    assert [r["index"] for r in text["rows"]] == [42] and text["total"] == 1
    uncounted = get(running, "api/runs/0/rows", q="order 4", count="false").json()
    assert uncounted["total"] is None and len(uncounted["rows"]) == 11  # 4, 40..49
    assert get(running, "api/runs/0/count", q="order 4").json() == {"total": 11,
                                                                   "total_capped": False}
    assert get(running, "api/runs/0/count", verdict="errored").json()["total"] == 2
    detail = get(running, "api/runs/0/rows/18").json()
    assert detail["status"] == "errored" and detail["outcomes"]["close"]["error"]["type"] == \
        "TaskError"


def test_bad_requests_name_the_parameter(viewer: tuple[RunningViewer, list]) -> None:
    running, _ = viewer
    bad = get(running, "api/runs/0/rows", verdict="maybe")
    assert bad.status_code == 400 and bad.json()["error"].startswith("verdict: expected one of")
    bad = get(running, "api/runs/0/rows", eval="nope", verdict="failed")
    assert bad.status_code == 400 and "eval: no eval labelled 'nope'" in bad.json()["error"]
    too_many = get(running, "api/runs/0/rows", limit=100_000)
    assert too_many.status_code == 422 and "limit" in str(too_many.json()["detail"][0]["loc"])
    assert get(running, "api/runs/7/rows").status_code == 404
    missing = get(running, "api/runs/0/rows/999")
    assert missing.status_code == 404 and "index: run 0 has no row 999" in missing.json()["error"]
    assert get(running, "api/diff", base=0, new=0).status_code == 400
    assert get(running, "api/diff/rows", kind="sideways").status_code == 400


def test_only_its_own_address(viewer: tuple[RunningViewer, list]) -> None:
    """A page elsewhere cannot read the runs by pointing a name of its own at 127.0.0.1."""
    running, _ = viewer
    answer = requests.get(running.url + "api/runs", headers={"Host": "evil.example"}, timeout=10)
    assert answer.status_code == 403
    local = requests.get(f"http://localhost:{running.port}/api/runs", timeout=10)
    assert local.status_code == 200


def test_diff_endpoints(viewer: tuple[RunningViewer, list]) -> None:
    running, (base, _new) = viewer
    summary = get(running, "api/diff", base=0, new=1).json()
    assert summary["base"]["id"] == base.run.id and summary["matched"] == 60
    assert summary["regressed_rows"] >= 1
    rows = get(running, "api/diff/rows", base=0, new=1, kind="regressed").json()
    assert rows["total"] == sum(e["regressed"] for e in summary["evals"])
    assert {r["new_index"] for r in rows["rows"]} >= {5}
    by_id = get(running, "api/diff", base=0, new=1, key="id").json()
    assert by_id["key_text"] == "field 'id'" and by_id["matched"] == 60


def test_export_is_one_file_with_its_data(scored: Scored, tmp_path: Path) -> None:
    from fi_evals.runs.export import export_html

    base = scored(run_name="main", ids=range(30))
    new = scored(run_name="pr", ids=range(30), broken={5, 9})
    assert base.run and new.run
    path = export_html([base.run, new.run], tmp_path / "report.html", rows=10)
    text = path.read_text()
    assert "src=" not in text and "<link" not in text and "http-equiv" in text
    assert "This report holds run 0" in text and "of its 30 rows" in text
    assert '"diff": {"base_n": 0' in text
    assert "</script" not in text.split('id="fi-data"')[1].split("</script>")[0]
