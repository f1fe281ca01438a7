"""End to end in Debian's Chromium (Playwright): drop a multiframe file, switch preset, override
a row, draw a mask with the mouse, toggle it, update the preview, download, check with pydicom.

Skips, saying why, where Chromium or Playwright is missing; CI (.ci/run) installs both. A
screenshot of the page after the update is written to artifacts/preview.png."""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import pydicom
import pytest

from fastanon.preview import ServeOptions, start

from test_preview import KEY, NAME, TEXT_BOX, multiframe_dicom

CHROMIUM = os.environ.get("FASTANON_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install '.[test]')")
if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Exception as exc:                     # e.g. missing shared libraries
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture
def page_server():
    server = start(ServeOptions(port=0, key=KEY))
    yield server
    server.shutdown()
    server.server_close()


def drop_file(page, selector: str, data: bytes, name: str) -> None:
    """Drop a file on an element the way a drag from the desktop does (a DataTransfer)."""
    transfer = page.evaluate_handle(
        """([b64, name]) => {
             const raw = atob(b64), bytes = new Uint8Array(raw.length);
             for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
             const transfer = new DataTransfer();
             transfer.items.add(new File([bytes], name, { type: "application/dicom" }));
             return transfer;
           }""", [base64.b64encode(data).decode(), name])
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def drag(page, box, x0, y0, x1, y1, columns, rows) -> None:
    """Drag the mouse over the canvas from image pixel (x0, y0) to (x1, y1)."""
    sx, sy = box["width"] / columns, box["height"] / rows
    page.mouse.move(box["x"] + x0 * sx, box["y"] + y0 * sy)
    page.mouse.down()
    page.mouse.move(box["x"] + (x0 + x1) / 2 * sx, box["y"] + (y0 + y1) / 2 * sy, steps=4)
    page.mouse.move(box["x"] + x1 * sx, box["y"] + y1 * sy, steps=4)
    page.mouse.up()


def open_page(browser, server):
    """(context, page, the page's errors) of the preview page, loaded and ready."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url)
    page.wait_for_selector("body.ready")
    return context, page, errors


def test_drop_mask_update_download(browser, page_server, tmp_path):
    columns, rows = 256, 192
    data = multiframe_dicom(rows=rows, columns=columns)
    context, page, errors = open_page(browser, page_server)

    # 1. drop the file: warnings, summary and the table appear
    drop_file(page, "#drop", data, "knee.dcm")
    page.wait_for_selector("#step-review:not([hidden])")
    assert "Private tags" not in page.inner_text("#warnings")          # research removes them
    assert "6" in page.inner_text("#summary") and "Magnet 3000" in page.inner_text("#summary")
    name_row = page.locator('tr[data-path="PatientName"]')
    assert name_row.locator("select").input_value() == "empty"
    assert "cat-patient-identity" in name_row.get_attribute("class")

    # 2. switch preset: every row gets the internal preset's action
    page.click('[data-preset="internal"]')
    page.wait_for_function("""() => document.querySelector('tr[data-path="PatientName"] select')
                              .value === 'hash'""")
    assert page.locator('tr[data-path="StudyDate"] select').input_value() == "keep"
    assert "Private tags kept" in page.inner_text("#warnings")

    # 3. override one row: it is marked
    page.select_option('tr[data-path="StudyDate"] select', "remove")
    page.wait_for_selector('tr.overridden[data-path="StudyDate"]')
    assert page.locator("tr.overridden").count() == 1
    assert "1 change(s)" in page.inner_text("#override-count")

    # 4. frames, and two masks drawn with the mouse; the second one toggled off
    page.wait_for_function("() => document.getElementById('frame-label').textContent === '1 of 6'")
    page.locator("#frame").fill("2")
    assert "3 of 6" in page.inner_text("#frame-label")
    canvas = page.locator("#canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    tx, ty, tw, th = TEXT_BOX                                # the burned-in name
    drag(page, box, tx - 2.6, ty - 2.6, tx + tw + 1.6, ty + th + 1.6, columns, rows)
    drag(page, box, 150, 60, 200, 110, columns, rows)
    assert page.locator("#masks li").count() == 2
    page.locator("#masks li").nth(1).locator("input[type=checkbox]").uncheck()
    assert "off" in page.locator("#masks li").nth(1).get_attribute("class")
    page.locator("#masks li").nth(1).locator("input[type=checkbox]").check()
    page.locator("#masks li").nth(1).locator("input[type=checkbox]").uncheck()
    canvas.scroll_into_view_if_needed()                      # the clicks above scrolled the list
    box = canvas.bounding_box()
    drag(page, box, 20, 150, 60, 180, columns, rows)          # a third, deleted again
    assert page.locator("#masks li").count() == 3
    page.locator("#masks li").nth(2).locator("button.delete").click()
    assert page.locator("#masks li").count() == 2
    first_mask = page.inner_text("#masks li >> nth=0")
    assert f"{tx - 3},{ty - 3} · {tw + 5}×{th + 5}" in first_mask, first_mask

    # 5. update the preview: before → after and the masked image
    page.click("#update")
    page.wait_for_selector("#result:not([hidden])")
    page.wait_for_function("() => document.getElementById('after-image').complete && "
                           "document.getElementById('after-image').naturalWidth === 256")
    changes = page.inner_text("#changes")
    assert NAME in changes and "StudyDate" in changes and "REMOVED" in changes.upper()
    assert page.is_hidden("#stale")
    page.locator("#masks li").nth(0).locator("input[type=checkbox]").uncheck()
    assert page.is_visible("#stale")                        # the preview no longer matches
    page.locator("#masks li").nth(0).locator("input[type=checkbox]").check()
    assert page.is_hidden("#stale")
    page.locator("#step-result").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "preview.png"), full_page=True)

    # 6. download: pydicom reads it; the enabled mask is black on every frame, the other is not
    with page.expect_download() as info:
        page.click("#download")
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    assert target.name == "knee-anonymized.dcm"
    ds = pydicom.dcmread(target)
    assert "StudyDate" not in ds and str(ds.PatientName) != NAME and ds.PatientName
    assert ds.StudyDescription == "MR knee left"          # internal keeps descriptions
    pixels = ds.pixel_array
    assert (pixels[:, ty - 3:ty + th + 2, tx - 3:tx + tw + 2] == 0).all()   # on every frame
    assert (pixels != 4000).all()                         # no stroke of the name is left
    assert (pixels[:, 60:110, 150:200] > 0).all()         # the disabled mask left nothing
    assert (pixels[:, 20:, :] > 0).all()

    # 7. save the policy and the mask rule
    with page.expect_download() as info:
        page.click("#save-policy")
    assert 'extends = "internal"' in Path(info.value.path()).read_text()
    with page.expect_download() as info:
        page.click("#save-rule")
    assert f'"{tx - 3},{ty - 3},{tw + 5},{th + 5}"' in Path(info.value.path()).read_text()

    # closing the tab forgets the file
    page.close()
    context.close()
    assert not errors, errors
    deadline = __import__("time").monotonic() + 5
    while len(page_server.documents) and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.05)
    assert len(page_server.documents) == 0


def test_file_chooser_show_all_filter_and_refusals(browser, page_server, tmp_path):
    """The file chooser, the 200-row limit with "show all", the filter, and a clear refusal."""
    from conftest import read_bytes

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(page_server.url)
    page.wait_for_selector("body.ready")
    (tmp_path / "notes.txt").write_text("not a DICOM file")
    page.set_input_files("#file-input", str(tmp_path / "notes.txt"))
    page.wait_for_selector("#file-status.error")
    assert "not a DICOM file" in page.inner_text("#file-status")
    assert page.is_hidden("#step-review")

    (tmp_path / "ct.dcm").write_bytes(read_bytes("CT_small.dcm"))
    page.set_input_files("#file-input", str(tmp_path / "ct.dcm"))
    page.wait_for_selector("#step-review:not([hidden])")
    total = page.locator("#tags tbody tr").count()
    assert total == 200 and page.is_visible("#show-all")
    assert "200 of 223" in page.inner_text("#row-count")
    page.click("#show-all")
    assert page.locator("#tags tbody tr").count() == 223 and page.is_hidden("#show-all")
    page.fill("#filter", "patientname")
    assert page.locator("#tags tbody tr").count() == 1
    page.fill("#filter", "")
    page.click(".chip.cat-staff")                             # a category chip filters by it
    assert page.locator("#tags tbody tr").count() == 1
    assert "cat-staff" in page.locator("#tags tbody tr").get_attribute("class")
    page.close()

    page = browser.new_page()
    response = page.goto(page_server.url.split("?")[0])       # no token: the page says what to do
    assert response.status == 403 and "needs its token" in page.inner_text("body")
    page.close()


def test_keeping_the_name_is_not_called_identity_removed(browser, page_server, tmp_path):
    """research with PatientName set to keep: the page warns, and the download says NO."""
    data = multiframe_dicom(rows=64, columns=64)
    context, page, _ = open_page(browser, page_server)
    drop_file(page, "#drop", data, "knee.dcm")
    page.wait_for_selector("#step-review:not([hidden])")
    assert "Patient Identity Removed NO" not in page.inner_text("#warnings")
    page.select_option('tr[data-path="PatientName"] select', "keep")
    page.wait_for_function("() => document.getElementById('warnings').textContent"
                           ".includes('Patient Identity Removed NO')")
    assert "keeps PatientName" in page.inner_text("#warnings")
    page.click("#update")
    page.wait_for_selector("#result:not([hidden])")
    with page.expect_download() as info:
        page.click("#download")
    target = tmp_path / "out.dcm"
    info.value.save_as(target)
    ds = pydicom.dcmread(target)
    assert str(ds.PatientName) == NAME and ds.PatientIdentityRemoved == "NO"
    assert "113100" not in [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]
    context.close()


def test_a_jpeg_image_is_shown_masked_and_downloaded_still_jpeg(browser, page_server, tmp_path):
    """A JPEG Baseline multi-frame file (pydicom has no JPEG plugin here: the codecs extra shows
    it): a mask drawn, the download keeps JPEG Baseline with the mask black on every frame."""
    imagecodecs = pytest.importorskip("imagecodecs", reason="the codecs extra is not installed")
    from pydicom.encaps import generate_frames

    from conftest import TEST_FILES_DIR

    data = Path(TEST_FILES_DIR, "examples_ybr_color.dcm").read_bytes()       # 30 x 320 x 240
    context, page, errors = open_page(browser, page_server)
    drop_file(page, "#drop", data, "echo.dcm")
    page.wait_for_selector("#step-review:not([hidden])")
    page.wait_for_function("() => document.getElementById('frame-label').textContent === '1 of 30'")
    assert page.is_hidden("#image-error") and page.is_visible("#canvas")
    canvas = page.locator("#canvas")
    canvas.scroll_into_view_if_needed()
    drag(page, canvas.bounding_box(), 16, 16, 80, 48, 320, 240)
    assert page.locator("#masks li").count() == 1
    with page.expect_download() as info:
        page.click("#download")
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    ds = pydicom.dcmread(target)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    for frame in list(generate_frames(ds.PixelData, number_of_frames=30))[::7]:
        assert imagecodecs.jpeg8_decode(frame)[16:48, 16:80].max() <= 2
    page.close()
    context.close()
    assert not errors, errors


def test_suggest_masks_on_the_phantom_and_download(browser, page_server, tmp_path):
    """"Suggest masks" finds the name burned into every frame of the phantom and adds masks over
    it; one is unticked and ticked again; the download has no stroke of the name left."""
    pytest.importorskip("rapidocr_onnxruntime", reason="fastanon[ocr] is not installed")
    columns, rows = 256, 192
    data = multiframe_dicom(rows=rows, columns=columns)
    context, page, errors = open_page(browser, page_server)
    drop_file(page, "#drop", data, "knee.dcm")
    page.wait_for_selector("#step-review:not([hidden])")
    assert page.is_enabled("#suggest-masks")
    page.click("#suggest-masks")
    page.wait_for_selector("#suggest-status.ok", timeout=60000)
    status = page.inner_text("#suggest-status")
    assert "Text found in frame 1, 4, 6" in status and "Untick" in status, status
    count = page.locator("#masks li").count()
    assert count >= 1 and f"{count} mask(s) added" in status
    assert "suggested:" in page.inner_text("#masks") and "every frame" in page.inner_text("#masks")
    page.click("#suggest-masks")                              # again: nothing twice
    page.wait_for_function("() => document.getElementById('suggest-status').textContent"
                           ".includes('already there')", timeout=60000)
    assert page.locator("#masks li").count() == count
    first = page.locator("#masks li").nth(0).locator("input[type=checkbox]")
    first.uncheck()
    first.check()
    page.click("#update")
    page.wait_for_selector("#result:not([hidden])")
    with page.expect_download() as info:
        page.click("#download")
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    pixels = pydicom.dcmread(target).pixel_array
    assert pixels.shape == (6, rows, columns)
    assert (pixels != 4000).all()                             # no stroke of the name left
    assert (pixels[:, 40:, :] > 0).all()                      # the image itself is not masked
    page.close()
    context.close()
    assert not errors, errors


def _focus_by_tab(page, selector: str, limit: int = 400, back: bool = False) -> None:
    """Press Tab (Shift+Tab with back) until the element matching selector has the focus."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"{selector} never got the focus in {limit} presses of Tab")


def _focused(page, script: str):
    return page.evaluate(f"() => {{ const e = document.activeElement; return {script}; }}")


def test_keyboard_only_from_drop_to_download_and_record(browser, page_server, tmp_path):
    """Everything with the keyboard: the skip link to the file, the file chooser, the preset by
    arrow keys, a row's menu (focus stays on it), the skip link past the table, the frame from
    the canvas, a mask typed as pixels, the preview, the download, the record."""
    import hashlib
    import json

    columns, rows = 256, 192
    data = multiframe_dicom(rows=rows, columns=columns)
    (tmp_path / "knee.dcm").write_bytes(data)
    context, page, errors = open_page(browser, page_server)
    choosers = []           # listened for from the start: the chooser opens at the key press
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    page.keyboard.press("Tab")
    assert _focused(page, "e.textContent") == "Skip to the file"
    page.keyboard.press("Enter")
    assert _focused(page, "e.id") == "drop"
    page.keyboard.press("Enter")
    for _ in range(100):
        if choosers:
            break
        page.wait_for_timeout(50)
    assert choosers, "Enter on the drop zone opened no file chooser"
    choosers[0].set_files(str(tmp_path / "knee.dcm"))
    page.wait_for_selector("#step-review:not([hidden])")

    _focus_by_tab(page, ".segment.active")
    assert _focused(page, "e.dataset.preset") == "research"
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('tr[data-path=\"PatientName\"] select')"
                           ".value === 'hash'")
    assert _focused(page, "e.dataset.preset") == "internal"       # still on the switch
    assert _focused(page, "e.getAttribute('aria-checked')") == "true"

    _focus_by_tab(page, 'tr[data-path="StudyDate"] select')
    page.keyboard.press("ArrowDown")                               # keep -> the next action
    page.wait_for_selector('tr.overridden[data-path="StudyDate"]')
    assert _focused(page, "e.closest('tr')?.dataset.path") == "StudyDate"
    chosen = page.locator('tr[data-path="StudyDate"] select').input_value()
    assert chosen != "keep"

    _focus_by_tab(page, "a.inline-skip", back=True)
    page.keyboard.press("Enter")
    assert _focused(page, "e.id") == "canvas"
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('frame-label').textContent === '2 of 6'")
    tx, ty, tw, th = TEXT_BOX
    _focus_by_tab(page, "#mask-x")
    for value in (tx - 3, ty - 3, tw + 5, th + 5):
        page.keyboard.type(str(value))
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")                                   # on "Add mask"
    page.wait_for_selector("#masks li")
    assert f"{tx - 3},{ty - 3} · {tw + 5}×{th + 5}" in page.inner_text("#masks li")
    assert "every frame" in page.inner_text("#masks li")

    _focus_by_tab(page, "#update")
    page.keyboard.press("Enter")
    page.wait_for_selector("#result:not([hidden])")
    _focus_by_tab(page, "#download")
    with page.expect_download() as info:
        page.keyboard.press("Enter")
    target = tmp_path / "out.dcm"
    info.value.save_as(target)
    ds = pydicom.dcmread(target)
    assert ds.PatientName != NAME and (ds.pixel_array != 4000).all()
    assert ds.get("StudyDate", "") != "20240611"                  # the row's new action

    _focus_by_tab(page, "#record-json")
    with page.expect_download() as info:
        page.keyboard.press("Enter")
    assert info.value.suggested_filename == "knee-record.json"
    record = json.loads(Path(info.value.path()).read_text())
    assert record["output"]["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert record["input"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["masks"][0]["x"] == tx - 3 and record["audit"]["preset"].startswith("internal")
    with page.expect_download() as info:
        page.click("#record-html")
    html = Path(info.value.path()).read_text()
    assert record["output"]["sha256"] in html and NAME not in html
    page.close()
    context.close()
    assert not errors, errors


def test_at_800_pixels_nothing_overflows_and_the_action_column_shows(browser, page_server):
    from conftest import read_bytes

    context = browser.new_context(viewport={"width": 800, "height": 900})
    page = context.new_page()
    page.goto(page_server.url)
    page.wait_for_selector("body.ready")
    drop_file(page, "#drop", read_bytes("CT_small.dcm"), "ct.dcm")
    page.wait_for_selector("#step-review:not([hidden])")
    page.click("#update")
    page.wait_for_selector("#result:not([hidden])")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the window"
    action = page.locator("#tags thead th").nth(5).bounding_box()
    assert action and action["x"] + action["width"] <= 800, action
    select = page.locator("#tags tbody select").first.bounding_box()
    assert select["x"] + select["width"] <= 800, select
    table = page.evaluate("() => { const w = document.querySelector('#tags').closest("
                          "'.table-wrap'); return w.scrollWidth - w.clientWidth; }")
    assert table <= 0, f"the table scrolls sideways by {table} px"
    assert page.is_visible('tr[data-path="PatientName"] .inline-tag')
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "preview-800.png"), full_page=True)
    context.close()


def _many_rows(count: int) -> bytes:
    """A data set with count sensitive rows: a sequence of count / 2 items, each with a
    person's name and an instance UID."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(io.BytesIO(multiframe_dicom(frames=1, rows=32, columns=32)))
    items = []
    for n in range(count // 2):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.2.1125.{n + 1}"
        item.PersonName = f"READER^NUMBER{n}"
        items.append(item)
    ds.ReferencedImageSequence = Sequence(items)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_change_among_10000_rows_and_a_new_file_starts_afresh(browser, page_server):
    """10,000 rows shown: one row's change is timed in the browser (Performance API) and printed;
    then the filter and the mask numbers start again with the next file."""
    context, page, errors = open_page(browser, page_server)
    drop_file(page, "#drop", _many_rows(10000), "many.dcm")
    page.wait_for_selector("#step-review:not([hidden])", timeout=60000)
    page.click("#show-all")
    count = page.locator("#tags tbody tr").count()
    assert count >= 10000, count
    path = "StudyDate"                  # one row (a change to PersonName is 5,000 rows' change)
    row = page.locator(f'tr[data-path="{path}"]')
    row.scroll_into_view_if_needed()
    row.locator("select").focus()
    row.locator("select").select_option("remove")
    page.wait_for_selector(f'tr.overridden[data-path="{path}"]')
    page.wait_for_function("() => document.body.dataset.confirmMs !== undefined", timeout=60000)
    script, shown, confirmed = page.evaluate(
        "() => [document.body.dataset.changeScriptMs, document.body.dataset.changeMs, "
        "document.body.dataset.confirmMs]")
    print(f"\n{count} rows: a change made in {script} ms of script, drawn in {shown} ms, the "
          f"server's answer merged in {confirmed} ms")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "preview-10000-rows.txt").write_text(
        f"{count} rows: change made {script} ms, drawn {shown} ms, answer merged {confirmed} ms\n")
    assert page.locator("tr.overridden").count() == 1
    assert _focused(page, "e.closest('tr')?.dataset.path") == path
    assert page.locator("#tags tbody tr").count() == count           # no row lost or added

    page.fill("#filter", "patient identity")
    canvas = page.locator("#canvas")
    canvas.scroll_into_view_if_needed()
    drag(page, canvas.bounding_box(), 2, 2, 20, 20, 32, 32)
    drag(page, canvas.bounding_box(), 22, 22, 30, 30, 32, 32)
    assert "#2" in page.inner_text("#masks")
    drop_file(page, "#drop", multiframe_dicom(rows=64, columns=64), "next.dcm")
    page.wait_for_function("() => document.getElementById('file-status').textContent"
                           ".includes('next.dcm (')")              # open, not being read
    assert page.input_value("#filter") == ""
    assert "matching" not in page.inner_text("#row-count")
    canvas.scroll_into_view_if_needed()
    drag(page, canvas.bounding_box(), 2, 2, 20, 20, 64, 64)
    assert page.inner_text("#masks li .mask-id") == "#1"
    page.close()
    context.close()
    assert not errors, errors


def test_at_1280_pixels_no_action_label_or_value_after_is_cut(browser, page_server):
    """Every row's chosen action fits its menu, and the after column wraps long UIDs."""
    from conftest import read_bytes

    context, page, errors = open_page(browser, page_server)
    drop_file(page, "#drop", read_bytes("CT_small.dcm"), "ct.dcm")
    page.wait_for_selector("#step-review:not([hidden])")
    page.select_option('tr[data-path="StudyDate"] select', "replace")
    page.wait_for_selector('tr.overridden[data-path="StudyDate"]')
    cut = page.evaluate("""() => {
      const probe = document.createElement('span');
      document.body.append(probe);
      const out = [];
      for (const select of document.querySelectorAll('#tags select')) {
        const style = getComputedStyle(select);
        probe.style.font = style.font;
        probe.style.whiteSpace = 'pre';
        probe.textContent = select.options[select.selectedIndex].text;
        if (probe.getBoundingClientRect().width + 24 > select.clientWidth) out.push(probe.textContent);
      }
      probe.remove();
      return out;
    }""")
    assert not cut, cut
    assert page.eval_on_selector('tr[data-path="StudyDate"] select',
                                 "e => e.options[e.selectedIndex].text") == "replace with 19000101"
    page.click("#update")
    page.wait_for_selector("#result:not([hidden])")
    page.uncheck("#changed-only")
    clipped = page.evaluate("""() => [...document.querySelectorAll('#changes td.value')]
      .filter((td) => td.scrollWidth > td.clientWidth + 1).map((td) => td.textContent)""")
    assert not clipped, clipped
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#step-review").screenshot(path=str(ARTIFACTS / "preview-table.png"))
    context.close()
    assert not errors, errors


def test_a_lookup_table_loaded_shows_the_sponsors_values(browser, page_server, tmp_path):
    from test_preview import LOOKUP

    (tmp_path / "subjects.csv").write_text(LOOKUP, encoding="utf-8", newline="")
    context, page, errors = open_page(browser, page_server)
    drop_file(page, "#drop", multiframe_dicom(rows=64, columns=64), "knee.dcm")
    page.wait_for_selector("#step-review:not([hidden])")
    page.set_input_files("#lookup-input", str(tmp_path / "subjects.csv"))
    page.wait_for_selector("#lookup-status.ok")
    assert "1 patient(s), by PatientID" in page.inner_text("#lookup-status")
    page.wait_for_function("() => document.querySelector('tr[data-path=\"PatientID\"] select')"
                           ".value === 'replace'")
    page.click("#update")
    page.wait_for_selector("#result:not([hidden])")
    assert "SITE07-0042" in page.inner_text("#changes")
    with page.expect_download() as info:
        page.click("#download")
    target = tmp_path / "out.dcm"
    info.value.save_as(target)
    assert pydicom.dcmread(target).PatientID == "SITE07-0042"
    page.click("#drop-lookup")
    page.wait_for_function("() => document.querySelector('tr[data-path=\"PatientID\"] select')"
                           ".value !== 'replace'")
    context.close()
    assert not errors, errors
