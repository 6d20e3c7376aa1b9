"""`verify --html` end to end: a real run's page read in a real browser (headless Chromium,
in a network namespace of its own with no network at all), and the run's JSON and JUnit.

Chromium is driven by its own command line (`--dump-dom`: the DOM after the page's
script ran; `--screenshot`), which is all these checks need: the cell a link points
to opens by the page's script, and its evidence is in the DOM under that cell.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.html_dom import parse
from tests.lab.test_audit import Gateway, gateway  # noqa: F401 (its lab gateway, a fixture)
from tests.support import CLI, PROJECT, leftovers, prefixes

pytestmark = pytest.mark.lab

# as python.md has them for a root machine with no network: no sandbox (root), nothing
# fetched in the background
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def _rules() -> tuple[str, int]:
    """The fixed SMTP block and, after it, the published Teredo line (it does not load)."""
    fixed = (PROJECT / "scenarios/fixed-screened-block/rules.sh").read_text().splitlines()
    seed = (PROJECT / "scenarios/seed-screened-block/rules.sh").read_text().splitlines()
    teredo = next(n for n, line in enumerate(seed) if "-dport 3544" in line)
    lines = [*fixed[:9], "", *seed[teredo - 2:teredo + 3]]
    return "\n".join(lines) + "\n", lines.index(seed[teredo]) + 1


SCENARIO = """\
summary: the fixed SMTP block, the published Teredo line
topology: screened-host
policy:
  gw: [rules.sh]
expect:
  - {from: client1, to: remote-mx, probes: [smtp], families: [4, 6], verdict: blocked}
  - {from: mx, to: remote-mx, probes: [smtp], families: [4], verdict: allowed}
  - {from: client1, to: remote-mx, probes: [teredo], variants: [plain], families: [4],
     verdict: blocked}
  - {from: client1, to: remote-mx, probes: [tunnel6in4], variants: [plain], families: [4],
     verdict: blocked}
"""


@dataclass(frozen=True)
class Ran:
    folder: Path
    rules: Path
    teredo_line: int
    args: list[str]
    done: subprocess.CompletedProcess[str]
    before: datetime
    after: datetime

    def out(self, name: str) -> Path:
        return self.folder.parent / name

    @property
    def json(self) -> Any:
        return json.loads(self.out("report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """One real run of a five-row scenario with all three reports."""
    top = tmp_path_factory.mktemp("html")
    folder = top / "teredo-line"
    folder.mkdir()
    text, line = _rules()
    (folder / "rules.sh").write_text(text)
    (folder / "scenario.yaml").write_text(SCENARIO)
    args = ["verify", str(folder), "-q", "--html", str(top / "report.html"),
            "--json", str(top / "report.json"), "--junit", str(top / "report.xml")]
    before = datetime.now(UTC)
    done = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600,
                          cwd=PROJECT, check=False)
    return Ran(folder, folder / "rules.sh", line, args, done, before, datetime.now(UTC))


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Chromium in a network namespace of its own: a page that needed the network fails."""
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium is not installed: run `make setup`"
    profile = cwd / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(["unshare", "--net", chromium, *CHROMIUM_FLAGS,
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=True)


def _page_url(ran: Ran, anchor: str) -> str:
    return ran.out("report.html").as_uri() + (f"#{anchor}" if anchor else "")


def test_the_run_fails_where_the_teredo_line_did_not_load(ran: Ran) -> None:
    assert ran.done.returncode == 1, ran.done.stderr
    assert f"load error: {ran.rules}:{ran.teredo_line}: Bad argument `3544'" in ran.done.stdout
    for p in prefixes(ran.done.stderr + ran.done.stdout):
        assert leftovers(p) == []


def test_json_and_junit_say_what_ran_when_with_what_and_how_long(ran: Ran) -> None:
    data = ran.json
    assert data["version"] == importlib.metadata.version("port25lab")
    assert data["command"] == ["port25lab", *ran.args]
    started = datetime.fromisoformat(data["started"])
    assert data["started"].endswith("Z") and ran.before <= started <= ran.after
    (s,) = data["scenarios"]
    assert (s["site"], s["rules"]) == ({"name": "screened-host", "file": None},
                                       {"gw": [str(ran.rules)]})
    probes = sum(r["wall_ms"] for r in s["results"]) / 1000
    assert s["boot_ms"] > 0 and probes > 0
    assert s["duration_s"] >= probes + s["boot_ms"] / 1000
    assert data["duration_s"] >= s["duration_s"]
    assert (ran.after - ran.before).total_seconds() >= data["duration_s"]
    blocked = [r for r in s["results"] if r["probe"] == "smtp" and r["source"] == "client1"]
    assert [r["rule_source"] for r in blocked] == [f"{ran.rules}:7", f"{ran.rules}:9"]

    (suite,) = ET.parse(ran.out("report.xml")).getroot()
    assert float(suite.get("time", "")) == pytest.approx(s["duration_s"], abs=0.001)
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert props == {"site": "screened-host", "rules of gw": str(ran.rules)}
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert all(float(c.get("time", "")) >= 0 for c in cases.values())
    teredo = cases["client1 -> remote-mx teredo:plain IPv4"]
    assert float(teredo.get("time", "")) > 0
    failure = teredo.find("failure")
    assert failure is not None
    assert "\nfar side: relay saw it at 198.51.100.35 port 3544" in (failure.text or "")


def test_a_person_sees_the_matrix_the_diagram_and_a_failing_rows_evidence(ran: Ran) -> None:
    results = ran.json["scenarios"][0]["results"]
    teredo = next(k for k, r in enumerate(results) if r["probe"] == "teredo")
    six_in_four = next(k for k, r in enumerate(results) if r["probe"] == "tunnel6in4")
    # opened at the failing Teredo cell, as the load error's link opens it
    shown = _chromium("--dump-dom", _page_url(ran, f"s0-r{teredo}"), cwd=ran.folder.parent)
    page = parse(shown.stdout)
    # every cell says the verdict the run observed, and marks what was not expected
    for k, r in enumerate(results):
        cell = page.by_id(f"s0-r{k}")
        assert cell.all("span", "verdict")[0].text() == r["observed"], k
        assert ("✗ want " + r["expected"] in cell.text()) is (not r["passed"]), k
    assert [r["passed"] for r in results].count(False) == 2
    # the failing Teredo row's evidence is open under its cell, and names its cause
    cell = page.by_id(f"s0-r{teredo}")
    assert "open" in cell.attrs and "open" not in page.by_id(f"s0-r{six_in_four}").attrs
    evidence = " ".join(cell.all("div", "evidence")[0].text().split())  # as it reads
    assert "relay saw it at 198.51.100.35 port 3544" in evidence
    cause = f"{ran.rules}:{ran.teredo_line}: Bad argument `3544'"
    assert f"may be explained by a line that did not load: {cause}" in evidence
    # the load error links to that row (and not to the 6in4 row, which no line explains)
    error = page.by_id("s0-e0")
    assert cause in error.text()
    assert [a.attrs["href"] for a in error.all("a")] == [
        f"#s0-p0-L{ran.teredo_line}", f"#s0-r{teredo}"]
    # the diagram: the site's nodes, the policy router and its interfaces
    (svg,) = page.all("svg")
    drawn = [t.text() for t in svg.all("text")]
    for name in ("client1", "client2", "mx", "gw", "remote-mx", "sink", "relay", "lan",
                 "wan (outside)", "router · policy", "eth0: 203.0.113.1/24",
                 "eth1: 198.51.100.1/24"):
        assert name in drawn, name
    # the policy file, its broken line marked and its deciding lines highlighted
    lines = {e.attrs["id"]: e for e in page.by_id("s0-p0").all("span", "line")}
    assert "failed" in lines[f"s0-p0-L{ran.teredo_line}"].classes()
    assert "decided" in lines["s0-p0-L7"].classes() and "decided" in lines["s0-p0-L9"].classes()
    # nothing on the page points outside it
    assert all(a.attrs["href"].startswith("#") for a in page.all("a") if "href" in a.attrs)
    assert all(not e.attrs.get("src") for e in page.walk())


def test_a_screenshot_shows_the_diagram_and_the_verdicts_in_their_colours(ran: Ran) -> None:
    from PIL import Image

    shot = ran.out("report.png")
    _chromium(f"--screenshot={shot}", "--window-size=1280,2400", _page_url(ran, ""),
              cwd=ran.folder.parent)
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        colours = Counter(image.convert("RGB").get_flattened_data())

    def shown(css: str) -> int:
        return colours[tuple(int(css[k:k + 2], 16) for k in (1, 3, 5))]

    # the policy router's box (report.css and the diagram share these colours)
    assert shown("#fde2e2") > 2000 and shown("#b91c1c") > 200
    # the matrix: allowed and blocked cells (three of each, the summaries alone)
    assert shown("#d1fae5") > 5000 and shown("#e0e7ff") > 5000


def _one_line(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    assert message in done.stderr


def test_an_html_report_that_cannot_be_is_one_line_before_any_lab(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "rules.sh").write_text(_rules()[0])
    (folder / "scenario.yaml").write_text(SCENARIO)
    same = str(tmp_path / "out")
    done = subprocess.run([CLI, "verify", str(folder), "--json", same, "--html", same],
                          capture_output=True, text=True, timeout=60, check=False)
    _one_line(done, f"--json {same} and --html {same} are the same file")
    done = subprocess.run([CLI, "verify", str(folder), "--html", "/proc/p25-report.html"],
                          capture_output=True, text=True, timeout=60, check=False)
    _one_line(done, "--html /proc/p25-report.html: cannot write there")
    done = subprocess.run([CLI, "audit", "ssh://root@gw", "--html", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    _one_line(done, f"--html {tmp_path}: is a folder, not a file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small"]


def test_without_dot_an_html_report_is_one_line_before_any_lab(tmp_path: Path) -> None:
    # a PATH without Graphviz (the lab's own tools are found by absolute path)
    bare = tmp_path / "bin"
    bare.mkdir()
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "rules.sh").write_text(_rules()[0])
    (folder / "scenario.yaml").write_text(SCENARIO)
    done = subprocess.run([CLI, "verify", str(folder), "--html", str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": str(bare)})
    _one_line(done, "--html: Graphviz's `dot` is not installed")
    assert not (tmp_path / "r.html").exists()


# --- audit --html: the findings, and a twin's matrix on the gateway's own network --------


def test_audit_writes_its_findings_and_its_twin_into_the_page(
        gateway: Gateway) -> None:  # noqa: F811 (the fixture imported above)
    folder = gateway.folder / "small-twin"
    folder.mkdir()
    (folder / "rules.sh").write_text(_rules()[0])
    (folder / "scenario.yaml").write_text(SCENARIO)
    page_file, out_json = gateway.folder / "audit.html", gateway.folder / "audit-html.json"
    status, out, err = gateway.audit("ssh://root@203.0.113.1", *gateway.key_login(), "-q",
                                     "--twin", str(folder), "--html", str(page_file),
                                     "--json", str(out_json))
    assert status == 1, out + err
    data = json.loads(out_json.read_text())
    assert data["command"][:2] == ["port25lab", "audit"] and data["version"]
    (twin,) = data["scenarios"]
    page = parse(_chromium("--dump-dom", page_file.as_uri(), cwd=gateway.folder).stdout)
    findings = {tuple(td.text() for td in tr.all("td")[:3])
                for tr in page.by_id("audit").all("tbody")[0].all("tr")}
    assert ("teredo-rule", "", "FAIL") in findings
    assert ("smtp-blocked", "IPv4", "PASS") in findings
    # the twin's matrix, on the network derived from the gateway, drawn
    section = page.by_id("s0")
    assert section.all("h2")[0].text().startswith(twin["name"])
    for k, r in enumerate(twin["results"]):
        assert page.by_id(f"s0-r{k}").all("span", "verdict")[0].text() == r["observed"]
    (svg,) = page.all("svg")
    assert "router · policy" in [t.text() for t in svg.all("text")]


# --- the page from a non-editable install: its templates are package data -------------------
RENDER = """
import sys
sys.path.insert(0, sys.argv[1])
import lab
from lab.html_report import render
from lab.model import scenario
from lab.model.results import ScenarioResult
assert lab.__file__.startswith(sys.argv[1])
s = scenario.load("fixed-dmz-block")
page = render([(s, ScenarioResult(s.name, s.topology))], None)
print("<svg" in page and "fixed-dmz-block" in page and "--allowed:" in page)
"""


def test_a_non_editable_install_renders_the_page(tmp_path: Path) -> None:
    import sys

    from tests.cli.test_install import IGNORED

    source, target = tmp_path / "source", tmp_path / "target"
    shutil.copytree(PROJECT, source, ignore=IGNORED)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "--target",
                    str(target), str(source)], capture_output=True, timeout=300, check=True)
    done = subprocess.run([sys.executable, "-I", "-c", RENDER, str(target)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr
