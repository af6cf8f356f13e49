"""The page of ``embedkit serve`` in a real headless Chromium, on a store of the real fixture music embedded by the
real model: the map paints, clicking a point plays the track (its time advances) and shows tags and neighbours,
a neighbour plays, search selects, a dropped re-encoded copy of a track finds its original first, a pasted
history gets recommendations. A screenshot is kept in tests/artifacts/ (git-ignored; CI keeps it as an artefact).

Skips, saying how to get one, when no browser is installed (``apt-get install chromium chromium-driver``).
"""
from __future__ import annotations

import time

import pytest

pytest.importorskip("starlette", reason="embedkit serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="embedkit serve needs the serve extra: pip install -e '.[serve]'")

from _browser import ARTIFACTS, ServerThread, find_browser, start_browser, wait_for  # noqa: E402

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(isinstance(BROWSER, str), reason=BROWSER if isinstance(BROWSER, str) else "")


@pytest.fixture(scope="module")
def page(real_fixture_store, embedder):
    from embedkit.serve.app import create_app
    from embedkit.serve.collection import Collection

    col = Collection(real_fixture_store, embedder=embedder)
    server = ServerThread(create_app(col, close_collection=True))
    driver = start_browser(*BROWSER)
    try:
        driver.set_script_timeout(30)
        driver.get(server.url + "/")
        wait_for(driver, "return window.__ek && window.__ek.ready", timeout=60)
        yield driver, col
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            driver.save_screenshot(str(ARTIFACTS / "serve-page.png"))
        finally:
            driver.quit()
            server.stop()


def _click_item(driver, item_id: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "map")
    x, y = driver.execute_script(f"return window.__ek.screenPos({item_id})")
    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(driver).move_to_element_with_offset(canvas, int(x - w / 2), int(y - h / 2)).click().perform()


def _playing(driver, timeout: float = 20.0) -> float:
    """Wait until the audio element has played ≥ 0.3 s; returns its currentTime."""
    start = driver.execute_script("return document.getElementById('player').currentTime")
    return wait_for(driver, f"const a = document.getElementById('player'); "
                            f"return (!a.paused && a.currentTime > {start} + 0.3) ? a.currentTime : 0", timeout=timeout)


def test_map_paints_every_track(page):
    driver, col = page
    ek = driver.execute_script("return {n: window.__ek.n, paint: window.__ek.firstPaintMs, errors: window.__ek.errors}")
    assert ek["n"] == len(col.ids) == 25 and ek["paint"] is not None and ek["errors"] == []
    # the canvas really has coloured points (not just a white rectangle)
    coloured = driver.execute_script("""
        const c = document.getElementById('map'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i+1] !== 255 || d[i+2] !== 255) n++;
        return n;""")
    assert coloured >= 25 * 9
    legend = driver.execute_script("return document.getElementById('legend').innerText")
    assert legend.strip()


def test_click_plays_and_shows_tags_and_neighbors(page):
    from selenium.webdriver.common.by import By

    driver, col = page
    item_id = int(col.ids[7])
    _click_item(driver, item_id)
    wait_for(driver, f"return window.__ek.selected === {item_id} && window.__ek.itemLoaded")
    assert driver.find_element(By.ID, "sel-name").text == col.paths[7].rsplit("/", 1)[-1]
    played = _playing(driver)
    assert played > 0.3
    tags = wait_for(driver, "const l = document.querySelectorAll('#tags li'); return l.length ? Array.from(l, x => x.innerText) : null")
    assert len(tags) == 5 and all(any(ch.isalpha() for ch in t) for t in tags)
    nb = wait_for(driver, "const l = document.querySelectorAll('#neighbors li'); return l.length === 10 ? Array.from(l, x => +x.dataset.id) : null")
    want = [n["id"] for n in col.neighbors(item_id, 10)]
    assert nb == want and item_id not in nb
    # a neighbour plays from its own button
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "serve-click.png"))
    driver.execute_script("document.querySelector('#neighbors li button').click()")
    wait_for(driver, f"return document.getElementById('player').getAttribute('src') === '/api/audio/{nb[0]}'")
    assert _playing(driver) > 0.3


def test_search_selects_a_track(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, col = page
    name = col.paths[3].rsplit("/", 1)[-1]
    box = driver.find_element(By.ID, "search")
    box.clear()
    box.send_keys(name[:-4])
    wait_for(driver, "return document.querySelector('#search-results li[data-id]')")
    box.send_keys(Keys.ENTER)
    wait_for(driver, f"return window.__ek.selected === {int(col.ids[3])} && window.__ek.itemLoaded")


def test_dropped_file_finds_its_original_first(page, tmp_path):
    import soundfile as sf

    driver, col = page
    k = 11
    orig = col.paths[k]
    y, sr = sf.read(orig, dtype="float32")
    copy = tmp_path / "dropped copy.wav"
    sf.write(copy, y, sr, subtype="PCM_16")  # other bytes (re-encoded), same music
    driver.execute_script("window.__ek.lastQuery = null")
    # a file input outside the page's own UI holds the file; the page gets it through a real 'drop' event
    driver.execute_script("""const i = document.createElement('input'); i.type = 'file'; i.id = 'test-drop';
                             document.body.appendChild(i);""")
    driver.find_element("id", "test-drop").send_keys(str(copy))
    driver.execute_script("""const dt = new DataTransfer(); dt.items.add(document.getElementById('test-drop').files[0]);
        document.getElementById('map-wrap').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));""")
    res = wait_for(driver, "return window.__ek.lastQuery", timeout=60)
    assert "error" not in res, res
    assert res["same_as"] is None and res["results"][0]["id"] == int(col.ids[k])
    assert res["results"][0]["score"] > 0.95
    shown = wait_for(driver, "const l = document.querySelectorAll('#neighbors li'); return l.length ? +l[0].dataset.id : null")
    assert shown == int(col.ids[k])


def test_pasted_history_gets_recommendations(page):
    from selenium.webdriver.common.by import By

    driver, col = page
    history = "item,plays\n" + "".join(f"{p},{n}\n" for p, n in zip(col.paths[:3], (5, 3, 1)))
    box = driver.find_element(By.ID, "history")
    box.clear()
    driver.execute_script("document.getElementById('history').value = arguments[0]", history)
    driver.execute_script("window.__ek.lastRecommend = null")
    driver.find_element(By.ID, "recommend").click()
    res = wait_for(driver, "return window.__ek.lastRecommend")
    assert "error" not in res, res
    ids = [r["id"] for r in res["recommendations"]]
    assert len(ids) == 20 and not set(ids) & {int(i) for i in col.ids[:3]}
    time.sleep(0.1)
    assert driver.execute_script("return document.querySelectorAll('#neighbors li').length") == 20
