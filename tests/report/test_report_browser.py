"""report.html opened in a real headless Chromium (Debian's, driven by Playwright): every figure
loads, the script runs without errors, tables sort, and the study's questions are on the page."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from orchestrator.report import write as report, markdown as reportmd

from ..conftest import require

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"
CHROMIUM = "/usr/bin/chromium"
QUESTIONS = [
    "From which message size does zero_copy beat one_copy?",
    "How does throughput scale with threads?",
    "Was the zero-copy real, or copied?",
    "From which size does one_copy beat two_copy, and zero_copy beat two_copy?",
    "Which cache level's misses fall most, per byte?",
    "How does thread count interact with cache misses and context switches?",
]

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def _mailed_page(tmp_path: Path, fixture: str):
    """A recorded run's report.html, made here and then moved away from its run folder (so that
    nothing on the page can lean on files beside it), opened in Chromium through Playwright's sync
    API. Yields the page, the console and page errors, and every URL the page requested."""
    require(Path(CHROMIUM).exists(), "Debian's chromium is not installed (./bootstrap.sh test installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is not installed (pip install -e '.[test]')")
    run_dir = Path(shutil.copytree(RUNS / fixture, tmp_path / "run"))
    report.write_report(run_dir)
    alone = tmp_path / "mailed" / "report.html"
    alone.parent.mkdir()
    shutil.move(run_dir / "report.html", alone)
    shutil.rmtree(run_dir)
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(alone.as_uri(), wait_until="load")
            yield page, errors, requests
        finally:
            browser.close()


LAB_RUN = "20261206T023809Z-labfull-87e3"  # a real lab run with every section (fixtures/runs/README.md)
EVIDENCE_FIGURES = ("Throughput over time", "Where the CPU went")
SECTIONS = ("What this run shows", "Failed, degraded and unstable cells", "Throughput over time",
            "TCP: retransmits and limits", "Where the CPU went", "Against iperf3", "The study's questions")

# Each h2 of the page with the images up to the next h1 or h2: a section's own figures.
SECTION_IMAGES = """() => Array.from(document.querySelectorAll("h2")).map(h => {
    const images = [];
    for (let e = h.nextElementSibling; e && !/^H[12]$/.test(e.tagName); e = e.nextElementSibling) {
        images.push(...(e.tagName === "IMG" ? [e] : e.querySelectorAll("img")));
    }
    return {title: h.textContent.trim(),
            images: images.map(i => ({src: i.getAttribute("src").slice(0, 30), w: i.naturalWidth, done: i.complete}))};
})"""


def test_report_in_a_real_browser(tmp_path):
    """A real lab run's page, away from its folder: every image, the time series and CPU figures
    included, is a data URI that loads; nothing but the page itself is fetched from disk."""
    with _mailed_page(tmp_path, LAB_RUN) as (page, errors, requests):
        page_url = page.url
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({src: e.getAttribute('src').slice(0, 30), w: e.naturalWidth, done: e.complete}))")
        # the headline figure, every plot, then the evidence sections' figures
        assert len(images) == 1 + len(reportmd.PLOT_TITLES) + len(EVIDENCE_FIGURES), images
        assert all(i["done"] and i["w"] > 0 for i in images), images
        assert all(i["src"].startswith("data:image/svg+xml;base64,") for i in images), images
        sections = {s["title"]: s["images"] for s in page.evaluate(SECTION_IMAGES)}
        for title in EVIDENCE_FIGURES:
            assert title in sections, (title, list(sections))
            assert len(sections[title]) == 1, (title, sections[title])
            figure = sections[title][0]
            assert figure["src"].startswith("data:image/svg+xml;base64,") and figure["done"] and figure["w"] > 0, figure
        text = page.inner_text("body")
        for section in SECTIONS:
            assert section in text, section
        for question in QUESTIONS:
            assert question in text, question
        assert text.index("What this run shows") < text.index("Failed, degraded and unstable cells")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)

        # Sorting: open the tables, click the Gbit/s header twice, and the column is in descending order.
        page.click("summary:has-text('Tables')")
        table = page.locator("table", has=page.locator("th", has_text="Gbit/s")).first
        header = table.locator("th", has_text="Gbit/s").first
        column = page.evaluate("h => h.cellIndex", header.element_handle())
        header.click()
        header.click()
        assert header.get_attribute("aria-sort") == "descending"
        values = [float(t.split()[0].replace(",", "")) for t in
                  table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts() if t.strip() != "—"]
        assert len(values) > 3 and values == sorted(values, reverse=True)

        page.evaluate("window.scrollTo(0, 0)")
        page.emulate_media(media="print")
        # On paper: a light background, and each figure as wide as the page.
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
        body_width = page.evaluate("document.body.clientWidth")
        widths = page.eval_on_selector_all("figure img", "els => els.map(e => e.getBoundingClientRect().width)")
        assert widths and all(w >= 0.95 * body_width for w in widths), (widths, body_width)
        page.screenshot(path=str(tmp_path / "report-print.png"), full_page=False)
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    # The one file the page reads is itself: a figure left as a relative path would be a second.
    assert [url for url in requests if url.startswith("file:")] == [page_url], requests
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_of_several_pairs_in_a_real_browser(tmp_path):
    """The pairs3 fixture's page: it loads without errors, carries every figure, and shows
    the pairs compared (the ratio table with Welch's p, the host facts with their differing MTU) first."""
    with _mailed_page(tmp_path, "pairs3") as (page, errors, requests):
        page_url = page.url
        images = page.eval_on_selector_all("img", "els => els.map(e => ({w: e.naturalWidth, done: e.complete}))")
        assert len(images) == len(reportmd.PLOT_TITLES)
        assert all(i["done"] and i["w"] > 0 for i in images), images
        ratios = page.locator("#pairs table", has=page.locator("th", has_text="Welch p")).first
        glance = page.locator("#pairs table", has=page.locator("th", has_text="geomean")).first
        # The answer is open; the cell-by-cell detail is folded away until asked for.
        assert glance.is_visible() and not ratios.is_visible()
        page.click("#pairs summary:has-text('cell by cell')")
        assert ratios.is_visible()
        pair_column = ratios.locator("tbody tr td:nth-child(1)").all_inner_texts()
        assert len(pair_column) > 10 and set(pair_column) == {"gen2", "gen3"}
        facts = page.locator("#pairs table", has=page.locator("th", has_text="fact")).first
        mtu = facts.locator("tr", has=page.locator("td", has_text="server.nic.mtu")).first.inner_text()
        assert mtu.split() == ["server.nic.mtu", "1500", "9000", "65536", "differs"]
        text = page.inner_text("body")
        assert text.index("Pairs compared") < text.index("At a glance") < text.index("Host facts per pair") < text.index("Plots")
        for pair in ("gen1", "gen2", "gen3"):
            assert f"Pair {pair}: answers, setup, problems and tables" in text
        page.screenshot(path=str(tmp_path / "pairs.png"), full_page=False)
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert [url for url in requests if url.startswith("file:")] == [page_url], requests
    assert (tmp_path / "pairs.png").stat().st_size > 10_000
