"""The search page in a real browser: Debian's chromium, headless, driven by playwright, against
the real app (``create_app``) served by uvicorn on 127.0.0.1 over a small index of every modality.

It types a query, checks that every result renders as its modality should (image thumbnails
loaded, a spectrogram and a playable <audio>, colour-mapped depth and thermal, IMU and time-series
plots, a video poster and player, or the poster and a link for a codec the browser cannot play,
a text snippet), filters with a chip, drops a file onto the
drop zone (a ``drop`` event carrying a DataTransfer with the file, as a user's drag does), picks
one with the file input behind the zone (``set_input_files``), clicks
a result to search with it, and saves a screenshot in the test's temporary folder. It checks the
ranking select and the scores it labels, the address that follows the search (and runs it when
opened), the preview of the query file, chips that count the current results only, the token asked
for once, and a phone-width page (390 px) that does not scroll sideways. Every step waits at most
``STEP_MS``; the page must make no request outside the server and log no error.
"""
from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest
from live_server import serving_url
from playwright import sync_api

from binder.index.store import IndexStore

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (make install puts it in)
STEP_MS = 5000
TOKEN = "s3cret-token"



@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: make install puts in Debian's chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """``open_page(base, path="/")``: a fresh page that records errors and requests leaving ``base``."""
    contexts, problems = [], []

    def open_(base: str, path: str = "/", on_dialog=None, width: int = 1280):
        context = browser.new_context(viewport={"width": width, "height": 1000 if width > 600 else 844})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        if on_dialog is not None:  # before the page loads: its first requests may already ask
            page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
        page.on("request", lambda req: req.url.startswith((base, "blob:", "data:"))
                or problems.append(f"request outside the server: {req.url}"))
        page.goto(base + path)
        return page
    yield open_, problems
    for context in contexts:
        context.close()


def wait_results(page, count: int) -> None:
    page.wait_for_function("n => document.querySelectorAll('#results .card').length === n", arg=count)
    page.wait_for_function("() => [...document.querySelectorAll('#results img')]"
                           ".every(img => img.complete && img.naturalWidth > 0)")


def card(page, modality: str) -> str:
    return f"#results .card[data-modality='{modality}']"


COLOURED = """img => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0;
  for (let i = 0; i < px.length; i += 4) {
    if (Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1], px[i + 2]) > 24) coloured++;
  }
  return coloured / (px.length / 4);
}"""


def check_every_modality_renders(page, rows) -> None:
    modalities = {r["modality"] for r in rows}
    for modality in modalities - {"text", "video", "two_stream"}:
        img = page.locator(f"{card(page, modality)} img.thumb")
        assert img.count() == 1, modality
        assert img.evaluate("i => i.naturalWidth") > 0, modality
    for modality in ("depth", "thermal"):
        assert page.locator(f"{card(page, modality)} img").evaluate(COLOURED) > 0.5, f"{modality} is colour-mapped"
    audio = page.locator(f"{card(page, 'audio')} audio")
    assert audio.get_attribute("src").startswith("/items/")
    page.wait_for_function("a => a.readyState >= 1 && a.duration > 2.5", arg=audio.element_handle())
    assert page.locator(f"{card(page, 'audio')} img.spectrogram").evaluate("i => i.naturalWidth") > 0
    for modality in ("imu", "timeseries"):
        plot = page.locator(f"{card(page, modality)} img.plot")
        assert plot.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [256, 128], modality
    video = page.locator(f"{card(page, 'video')} video")  # VP8: plays, its metadata loads
    assert video.get_attribute("poster").startswith("/thumbs/") and video.get_attribute("src").startswith("/items/")
    page.wait_for_function("v => v.readyState >= 1 && v.duration > 1", arg=video.element_handle())
    # MPEG-4 part 2, which Chromium cannot decode: the poster frame and a link to the file instead
    page.wait_for_selector(f"{card(page, 'two_stream')} img.poster")
    assert page.locator(f"{card(page, 'two_stream')} a.cannot-play").get_attribute("href").startswith("/items/")
    page.wait_for_function("el => el.textContent.includes('a handwritten seven')",
                           arg=page.locator(f"{card(page, 'text')} .snippet").element_handle())


def drop_file(page, path: Path, name: str) -> None:
    """Drop ``path``'s bytes onto the drop zone as a file named ``name`` (a DataTransfer, as a drag)."""
    transfer = page.evaluate_handle("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name));
        return transfer;
    }""", [base64.b64encode(path.read_bytes()).decode(), name])
    page.dispatch_event("#drop", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def first_result(page) -> tuple[str, float]:
    """(name, cosine) of the first result."""
    first = page.locator("#results .card").first
    return first.locator(".name").inner_text(), float(first.locator(".score").get_attribute("data-cosine"))


def wait_searched(page) -> None:
    page.wait_for_function("() => { const s = document.querySelector('#status').textContent;"
                           " return /result/.test(s) && !/Searching/.test(s); }")


def wait_query(page, text: str) -> None:
    page.wait_for_function("t => document.querySelector('#query-view').textContent.includes(t)", arg=text)


def wait_status(page, text: str) -> None:
    page.wait_for_function("t => document.querySelector('#status').textContent.includes(t)", arg=text)


def wait_query_preview(page) -> None:
    page.wait_for_function("() => { const i = document.querySelector('#query-view img.query-thumb');"
                           " return i && i.complete && i.naturalWidth > 0; }")


def chip_texts(page) -> dict[str, str]:
    return {c.get_attribute("data-modality"): c.inner_text() for c in page.locator("#chips .chip").all()}


def test_search_page_in_a_real_browser(open_page, page_index, make_app, tmp_path):
    rows = IndexStore.open(page_index).snapshot().rows
    by_modality = {r["modality"]: Path(r["path"]) for r in rows}
    open_, problems = open_page
    started = time.monotonic()
    with serving_url(make_app(page_index)) as base:
        page = open_(base)
        page.wait_for_function("n => document.querySelectorAll('#chips .chip').length === n",
                               arg=len(by_modality) + 1)
        page.fill("#query", "a handwritten seven")
        page.press("#query", "Enter")
        wait_results(page, len(rows))  # k = 24 brings every item back
        check_every_modality_renders(page, rows)

        page.click("#chips .chip[data-modality='depth']")
        page.wait_for_function("() => [...document.querySelectorAll('#results .card')]"
                               ".every(c => c.dataset.modality === 'depth')")
        wait_results(page, 1)
        assert page.get_attribute("#chips .chip[data-modality='depth']", "aria-pressed") == "true"
        page.click("#chips .chip[data-modality='']")
        wait_results(page, len(rows))
        # one file of each modality: no modality's spread can be measured, so rank by plain cosine
        page.select_option("#mix", "raw")
        wait_status(page, "ranked by cosine")
        wait_results(page, len(rows))

        drop_file(page, by_modality["image"], "dropped-copy.png")
        wait_query(page, "dropped-copy.png")  # set with the search's start, in the same task
        wait_searched(page)
        wait_results(page, len(rows))
        name, score = first_result(page)
        assert name == by_modality["image"].name and score > 0.999  # the same bytes: the indexed image first
        wait_query_preview(page)  # the query file itself is shown

        page.set_input_files("#file", str(by_modality["thermal"]))  # the file picker behind the zone
        wait_query(page, by_modality["thermal"].name)
        wait_searched(page)
        assert first_result(page)[0] == by_modality["thermal"].name
        wait_query_preview(page)
        assert page.locator("#query-view img.query-thumb").evaluate(COLOURED) > 0.5, "the thermal query, colour-mapped"

        page.click(f"{card(page, 'audio')} .meta")
        wait_query(page, f"{by_modality['audio'].name} (audio, a result)")
        page.wait_for_function("n => document.querySelector('#results .card .name').textContent === n",
                               arg=by_modality["audio"].name)
        wait_results(page, len(rows))
        name, score = first_result(page)
        assert name == by_modality["audio"].name and score > 0.999
        check_every_modality_renders(page, rows)

        shot = tmp_path / "search-page.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not problems, problems
    assert time.monotonic() - started < 60
    print(f"screenshot: {shot}")


def test_a_token_from_the_address_or_a_prompt_opens_the_page(open_page, page_index, make_app):
    rows = IndexStore.open(page_index).snapshot().rows
    open_, problems = open_page
    with serving_url(make_app(page_index, token=TOKEN)) as base:
        page = open_(base, f"/?token={TOKEN}&q=the+digit+three")
        assert "token" not in page.url  # taken out of the address bar
        wait_results(page, len(rows))  # previews and players load with the token's cookie
        audio = page.locator(f"{card(page, 'audio')} audio").element_handle()
        page.wait_for_function("a => a.readyState >= 1", arg=audio)

        asked = []
        # no token yet: the first refused request (of /info and /search, sent at once) asks for it,
        # once, and the others use the answer
        fresh = open_(base, "/?q=the+digit+three#later",
                      on_dialog=lambda dialog: (asked.append(dialog.message), dialog.accept(TOKEN)))
        fresh.wait_for_function("() => document.querySelectorAll('#chips .chip').length > 1")
        wait_results(fresh, len(rows))
        assert len(asked) == 1 and "token" in asked[0], asked

        refused = []  # the asker declines: it is not asked again, and the page says why it has nothing
        other = open_(base, "/?q=the+digit+three", on_dialog=lambda dialog: (refused.append(1), dialog.dismiss()))
        other.wait_for_function("() => document.querySelector('#status').classList.contains('error')")
        assert len(refused) == 1 and "unauthorized" in other.inner_text("#status")
    assert not [p for p in problems if "401" not in p], problems


def test_a_token_of_any_characters_opens_the_page_and_leaves_the_address(open_page, page_index, make_app):
    """A non-ASCII token: the page moves it into the cookie (percent-encoded) and out of the address,
    and every request, API and media alike, is let in by the cookie alone."""
    from urllib.parse import quote

    token = "pässwörd-ключ 🔑"
    rows = IndexStore.open(page_index).snapshot().rows
    open_, problems = open_page
    with serving_url(make_app(page_index, token=token)) as base:
        page = open_(base, f"/?q=the+digit+three&token={quote(token)}#top")
        assert "token" not in page.url and page.url.endswith("/?q=the+digit+three#top")
        wait_results(page, len(rows))  # previews load with the cookie
        audio = page.locator(f"{card(page, 'audio')} audio").element_handle()
        page.wait_for_function("a => a.readyState >= 1", arg=audio)
        cookie = {c["name"]: c["value"] for c in page.context.cookies()}["anybind_token"]
        assert cookie == quote(token, safe="")
    assert not problems, problems


SCORE_Z = re.compile(r"^z [+-]\d+\.\d\d · cos -?\d\.\d{3}$")
SCORE_COS = re.compile(r"^cos -?\d\.\d{3}$")


def test_the_ranking_is_chosen_labelled_and_the_address_shares_the_search(open_page, page_index, make_app):
    rows = IndexStore.open(page_index).snapshot().rows
    open_, problems = open_page
    with serving_url(make_app(page_index)) as base:
        page = open_(base)
        page.wait_for_function("() => document.querySelectorAll('#chips .chip').length > 1")
        assert page.locator("#mix option").evaluate_all("os => os.map(o => o.value)") == [
            "calibrated", "centered", "interleave", "raw"]
        assert page.input_value("#mix") == "calibrated"
        page.fill("#query", "the digit three")
        page.press("#query", "Enter")
        wait_results(page, len(rows))
        wait_status(page, "ranked by calibrated mix")
        scores = page.locator("#results .score").all_inner_texts()
        assert scores and all(SCORE_Z.match(s) for s in scores), scores  # what ranked them, then the cosine
        assert "standard deviations" in page.get_attribute("#results .score", "title")
        assert page.url == f"{base}/?q=the+digit+three"

        page.select_option("#mix", "raw")
        wait_status(page, "ranked by cosine")
        wait_results(page, len(rows))
        scores = page.locator("#results .score").all_inner_texts()
        assert all(SCORE_COS.match(s) for s in scores), scores
        assert page.url == f"{base}/?q=the+digit+three&mix=raw"
        cosines = [float(c) for c in
                   page.locator("#results .score").evaluate_all("ss => ss.map(s => s.dataset.cosine)")]
        assert cosines == sorted(cosines, reverse=True)

        page.click("#chips .chip[data-modality='depth']")
        wait_results(page, 1)
        page.wait_for_function("() => location.search.includes('modality=depth')")
        shared = page.url
        page.select_option("#mix", "centered")
        page.wait_for_function("() => location.search.includes('mix=centered')")
        wait_searched(page)

        # the address opened elsewhere runs the same search, with its filter and ranking
        other = open_(base, shared[len(base):])
        wait_results(other, 1)
        assert other.input_value("#query") == "the digit three" and other.input_value("#mix") == "raw"
        assert other.get_attribute("#chips .chip[data-modality='depth']", "aria-pressed") == "true"
        assert other.get_attribute("#results .card", "data-modality") == "depth"
        third = open_(base, "/?q=the+digit+three&mix=centered&k=3")
        wait_results(third, 3)
        wait_status(third, "ranked by centered mix")
        assert all(re.match(r"^Δ [+-]\d+\.\d\d · cos", s) for s in third.locator("#results .score").all_inner_texts())
    assert not problems, problems


def test_chips_count_the_current_results_only(open_page, page_index, make_app):
    rows = IndexStore.open(page_index).snapshot().rows
    modalities = sorted({r["modality"] for r in rows})
    open_, problems = open_page
    with serving_url(make_app(page_index)) as base:
        page = open_(base, "/?q=the+digit+three")
        wait_results(page, len(rows))
        page.wait_for_function("n => document.querySelectorAll('#chips .chip').length === n", arg=len(rows) + 1)
        assert {m: chip_texts(page)[m] for m in modalities} == {m: f"{m} 1" for m in modalities}

        page.click("#chips .chip[data-modality='depth']")  # filtered: only what is shown is counted
        wait_results(page, 1)
        texts = chip_texts(page)
        assert texts["depth"] == "depth 1" and texts["audio"] == "audio"

        page.fill("#query", "'unclosed")  # a malformed expression: an error, and no counts left from before
        page.press("#query", "Enter")
        page.wait_for_function("() => document.querySelector('#status').classList.contains('error')")
        assert "unclosed quote" in page.inner_text("#status")
        wait_results(page, 0)
        texts = chip_texts(page)
        assert {m: texts[m] for m in modalities} == {m: m for m in modalities}, texts
    assert not [p for p in problems if "400" not in p], problems


def test_the_query_file_is_shown_with_a_player_for_sound(open_page, page_index, make_app):
    rows = IndexStore.open(page_index).snapshot().rows
    by_modality = {r["modality"]: Path(r["path"]) for r in rows}
    open_, problems = open_page
    with serving_url(make_app(page_index)) as base:
        page = open_(base)
        page.wait_for_function("() => document.querySelectorAll('#chips .chip').length > 1")
        drop_file(page, by_modality["depth"], "mine.depth.png")
        wait_query(page, "mine.depth.png")
        wait_query_preview(page)
        assert page.locator("#query-view img.query-thumb").evaluate(COLOURED) > 0.5
        assert page.get_attribute("#query-view img.query-thumb", "src").startswith("blob:")
        drop_file(page, by_modality["audio"], "mine.wav")
        wait_query(page, "mine.wav")
        wait_query_preview(page)
        player = page.locator("#query-view audio")
        assert player.get_attribute("src").startswith("blob:")
        page.wait_for_function("a => a.readyState >= 1 && a.duration > 2.5", arg=player.element_handle())
        page.click("#query-view .clear")
        assert page.is_hidden("#query-view")
    assert not problems, problems


def test_a_phone_width_page_does_not_scroll_sideways(open_page, page_index, make_app, tmp_path):
    rows = IndexStore.open(page_index).snapshot().rows
    by_modality = {r["modality"]: Path(r["path"]) for r in rows}
    open_, problems = open_page
    with serving_url(make_app(page_index)) as base:
        page = open_(base, "/?q=the+digit+three", width=390)
        wait_results(page, len(rows))
        check_every_modality_renders(page, rows)
        drop_file(page, by_modality["thermal"], "a-rather-long-file-name-of-a-thermal-camera-frame-0001.thermal.png")
        wait_query(page, "a-rather-long-file-name")
        wait_searched(page)
        wait_query_preview(page)
        widths = page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]")
        assert widths == [390, 390, 390], widths
        button = page.locator("#search-button")
        assert button.is_visible()
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        for selector in ("#query", "#k", "#mix", "#drop", "#results .card"):
            right = page.locator(selector).first.evaluate("e => e.getBoundingClientRect().right")
            assert right <= 390, (selector, right)
        shot = tmp_path / "search-page-390.png"
        page.screenshot(path=str(shot), full_page=True)
    from PIL import Image

    with Image.open(shot) as img:
        assert img.width == 390 and img.height > 844
    assert not problems, problems
    print(f"screenshot: {shot}")
