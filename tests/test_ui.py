"""The Prefect UI in headless Chromium: run the archive-prediction deployment from its Custom run
form, watch the flow run complete on a worker, and see what it archived in the run's Artifacts:
the gallery's thumbnails load and the summary shows where every file is (`make test-ui`).

Uses Debian's chromium (`make test-ui` / `make test` install it with apt-get when missing) driven
by Playwright; browsers are never downloaded.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.prefect_stack import manifests, prefect_stack

pytestmark = [pytest.mark.ui, pytest.mark.server, pytest.mark.timeout(300)]

CHROMIUM = os.environ.get("ARCHIVER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MODEL = "black-forest-labs/flux-schnell"
SCREENSHOTS = Path(
    os.environ.get("ARCHIVER_TEST_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / "archiver-ui-screenshots"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prefect_template):
    with prefect_stack(
        tmp_path_factory.mktemp("prefect-stack"), template=prefect_template, workers=1
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(  # a browser the test needs is missing: say so loudly, never skip
            f"no Chromium at {CHROMIUM}: `make chromium` installs Debian's chromium package "
            "with apt-get (or set ARCHIVER_TEST_CHROMIUM to a Chromium executable)"
        )
    from playwright.sync_api import sync_playwright  # in the dev extra

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(30_000)
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    yield page
    context.close()


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_custom_run_form(page, stack) -> None:
    """Deployments -> on-demand -> Run -> Custom run, as a user clicks through."""
    page.goto(f"{stack.server.url}/deployments")
    page.get_by_role("link", name="on-demand").click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.wait_for_url(re.compile(r"/deployments/deployment/[0-9a-f-]+/run"))
    page.get_by_role("heading", name="Parameters").wait_for()


def parameter(page, name: str):
    """The form block of one parameter (label `name` or `name (Optional)`)."""
    label = page.locator(
        ".schema-form-property__label", has_text=re.compile(rf"^{re.escape(name)}( \(Optional\))?$")
    )
    return page.locator(".schema-form-property").filter(has=label)


def test_custom_run_from_the_ui_completes_on_a_worker(stack, page):
    """A Custom run submitted in the UI completes on a worker; its artifacts show every file."""
    from playwright.sync_api import expect

    stack.wait_idle()
    value = {"prompt": f"from the ui {uuid.uuid4().hex[:8]}", "seed": 5, "num_outputs": 2}
    open_custom_run_form(page, stack)

    # A proper form: one field per parameter, with its description and widget.
    for name in ("model", "input", "dest", "deployment", "refresh", "on_data_removed", "deadline"):
        expect(parameter(page, name)).to_have_count(1)
    expect(parameter(page, "model")).to_contain_text("owner/name:version")
    expect(parameter(page, "on_data_removed")).to_contain_text("fail")

    parameter(page, "model").locator("textarea").fill(MODEL)
    # `input` is a JSON editor at once (no type to pick first), with its example shown.
    expect(parameter(page, "input").get_by_role("button", name="dict")).to_have_count(0)
    expect(parameter(page, "input")).to_contain_text('{"prompt": "a lighthouse", "seed": 7}')
    parameter(page, "input").locator("textarea").fill(json.dumps(value))
    form = shot(page, "custom-run-form")
    assert form.stat().st_size > 10_000

    toast = page.locator(".toast-flow-run-create")
    if submit_until_created(page, stack, value):
        expect(toast.first).to_contain_text("scheduled to start")
        # The toast is rendered twice (stacked); the top one takes the click. A toast that
        # fades out under the click navigates nowhere: then the run is opened by its id.
        toast.last.get_by_role("button", name="View run").click()
    try:
        page.wait_for_url(re.compile(r"/runs/flow-run/[0-9a-f-]+"), timeout=15_000)
    except Exception:  # playwright's TimeoutError
        page.goto(f"{stack.server.url}/runs/flow-run/{created_from_the_form(stack, value)}")
    run_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    try:
        expect(page.locator(".state-badge").first).to_have_text(
            re.compile("Completed"), timeout=120_000
        )
    except AssertionError:
        shot(page, "flow-run-not-completed")
        raise AssertionError(f"the flow run did not complete in the UI\n{stack.logs()}") from None
    shot(page, "flow-run-completed")

    with stack.client() as client:
        run = client.read_flow_run(run_id)
    assert (run.parameters["model"], run.parameters["input"]) == (MODEL, value)
    assert run.labels.get("prefect.worker.name") in {w.name for w in stack.workers}
    [manifest] = [m for m in manifests(stack.archive) if m["input"] == value]
    assert len(manifest["files"]) == 2

    # The run's Artifacts: the gallery shows the pictures, the summary where the files are.
    open_artifact(page, stack, run_id, "archive-prediction-on-demand-gallery")
    thumbnails = page.locator('img[src^="data:image/"]')
    expect(thumbnails).to_have_count(2)
    for name in ("out-0.png", "out-1.png"):
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('img[src^=\"data:image/\"]')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    widths = thumbnails.evaluate_all("imgs => imgs.map(img => img.naturalWidth)")
    assert all(0 < width <= 256 for width in widths), widths
    assert shot(page, "artifact-gallery").stat().st_size > 10_000

    open_artifact(page, stack, run_id, "archive-prediction-on-demand-summary")
    expect(page.get_by_text(manifest["prediction_id"]).first).to_be_visible()
    for entry in manifest["files"]:
        expect(page.get_by_text(str(stack.archive / entry["path"]), exact=True)).to_be_visible()
        expect(page.get_by_text(entry["sha256"], exact=True)).to_be_visible()
    shot(page, "artifact-summary")


def submit_until_created(page, stack, value: dict, attempts: int = 3) -> bool:
    """Submit the form until its flow run exists, as a person would. On a busy machine the UI
    has answered a submit with "Oops. Something went wrong." and no run: only when neither
    the UI's confirmation nor a run with this input shows up within a minute is the form
    submitted again (never while the first submit may still create one). True when the UI
    confirmed with its toast, False when the run exists without it."""
    failed: list[str] = []  # the UI's failed API requests, for the message if all attempts fail
    page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url}: {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    toast = page.locator(".toast-flow-run-create")
    for _ in range(attempts):
        page.get_by_role("button", name="Submit").click()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if toast.count():
                return True
            if _runs_from_the_form(stack, value):
                return False
            page.wait_for_timeout(500)
        shot(page, "custom-run-submit-failed")
    raise AssertionError(f"the form never created its flow run; failed requests: {failed}")


def _runs_from_the_form(stack, value: dict) -> list:
    with stack.client() as client:
        runs = client.read_flow_runs()
    return [r for r in runs if not r.auto_scheduled and r.parameters.get("input") == value]


def created_from_the_form(stack, value: dict) -> str:
    """The id of the one flow run whose input is `value` (only the form's submit made it)."""
    [run] = _runs_from_the_form(stack, value)
    return str(run.id)


def open_artifact(page, stack, run_id: str, key: str) -> None:
    """Flow run page -> Artifacts tab -> the artifact called `key`, as a user clicks through."""
    from playwright.sync_api import expect

    page.goto(f"{stack.server.url}/runs/flow-run/{run_id}")
    page.get_by_text("Artifacts", exact=True).first.click()
    card = page.locator("a[href*='/artifacts/artifact/']", has_text=key)
    expect(card).to_have_count(1)
    card.click()
    page.wait_for_url(re.compile(r"/artifacts/artifact/[0-9a-f-]+"))
    expect(page.get_by_text(key).first).to_be_visible()


def test_the_form_refuses_a_bad_model_before_a_run_exists(stack, page):
    """The Custom run form rejects an invalid model reference and no flow run is created."""
    from playwright.sync_api import expect

    open_custom_run_form(page, stack)

    def manual_runs() -> int:  # the scheduler may add cron runs meanwhile: not ours to count
        with stack.client() as client:
            return sum(1 for run in client.read_flow_runs() if not run.auto_scheduled)

    before = manual_runs()
    parameter(page, "model").locator("textarea").fill("not a model")
    page.get_by_role("button", name="Submit").click()
    expect(
        page.get_by_text(re.compile("(does not match|must match|pattern)", re.IGNORECASE)).first
    ).to_be_visible(timeout=30_000)
    shot(page, "custom-run-bad-model")
    assert "/run" in page.url  # still on the form
    assert manual_runs() == before
