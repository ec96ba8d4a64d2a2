"""kdapp: a knowledge-distillation lab. UI only: every computation comes from kdapp.lab.facade.

One gr.Blocks whose tabs are built by kdapp.ui (each tab's module: its layout, its thin handlers,
which take and return {component: value}, and its wiring), the page's load, and the lab opened when
the server starts (LAUNCH's lifespan), so importing this module starts no thread and opens no
database.
"""
import contextlib
import logging
import os
import secrets
import sys
from types import SimpleNamespace

import gradio as gr
from PIL import Image
from starlette.middleware import Middleware

from kdapp.evaluation.inference import MAX_SIDE
from kdapp.lab import continual as lab_continual, facade as lab_lib
from kdapp.lab.folder_lock import RunsFolderBusy
from kdapp.ui import (continual as continual_ui, distill_tab, drawing, i18n, lessons_tab, mcp_tools, reports,
                      reproduction_tab, runs_tab)
from kdapp.ui.controls import PRIVATE

# Decompression bombs: a tiny PNG can claim 20000x20000 pixels. Refuse past ~2x our largest canvas.
Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
# One torch thread here: batch-1 predictions gain nothing from more, and training runs in its
# own worker processes with all the cores (measured under load: no loss, slightly more req/s).
lab_lib.configure_threads(int(os.environ.get("KDAPP_THREADS", lab_lib.SERVER_THREADS)))
# Cheap to build: the run store and the queue's dispatchers start in lab.open(), at server start.
lab = lab_lib.Lab(runs_dir=os.environ.get("KDAPP_RUNS_DIR", "runs"), data_dir=os.environ.get("KDAPP_DATA_DIR", "data"),
                  workers=int(os.environ.get("KDAPP_WORKERS", 1)),
                  keep_checkpoints=int(os.environ.get("KDAPP_KEEP_CHECKPOINTS", 100)),
                  drawing_dir=os.environ.get("KDAPP_DRAWING_DIR"))  # a `distill --out` folder, e.g. from torchrun

# The page's static words, translated in the browser from its language (kdapp/ui/locales; ?lang= wins).
I18N = gr.I18n(**i18n.CATALOGS)
ui = SimpleNamespace()  # the page's states and its tabs (ui.distill, ui.runs, ...), filled in by the layout below


def on_load(owner, request: gr.Request):
    """A new page: give the browser an owner token once, decide the page's language (?lang=, else
    the browser's), and apply the link's parameters."""
    params = dict(request.query_params) if request else {}
    lang = i18n.language(params.pop("lang", None), request.headers.get("accept-language") if request else None)
    with i18n.speaking(lang):
        return loaded(owner, params) | {ui.lang: lang}


def loaded(owner, params):
    owner = owner or secrets.token_urlsafe(16)
    settings, ignored = lab.settings_from_url(params)
    run_id = params.get("run")
    linked = lab.run(run_id) if run_id is not None else None
    out = {ui.owner: owner,
           ui.distill.notice: reports.url_notice(run_id if run_id is not None and linked is None else None, ignored)}
    if lab_continual.is_continual(linked):  # a continual run's link opens the Continual tab on it
        out.update({ui.continual.shown: linked["id"], ui.tabs: gr.Tabs(selected=continual_ui.TAB_ID)})
        linked = None
    out.update(ui.distill.loaded(owner, settings, linked))
    out.update({ui.continual.choice_controls[name]: gr.update(choices=words)
                for name, words in continual_ui.choices().items()})
    return out | ui.reproduction.outputs()


def open_run(selected):
    """The Runs tab's "open": the first selected run, on its own tab."""
    first = (selected or [None])[0]
    if lab_continual.is_continual(lab.run(first)):
        return {ui.continual.shown: first, ui.tabs: gr.Tabs(selected=continual_ui.TAB_ID)}
    return {ui.distill.view: first, ui.tabs: gr.Tabs(selected="distill")}


def api_runs() -> list[dict]:
    """Every run as JSON: id, state, config, metrics, created time (owners are never included)."""
    return [{k: r[k] for k in ("id", "state", "config", "metrics", "created", "started", "ended", "data", "device",
                               "resumed_from_epoch")} for r in lab.runs()]


class OwnerToken(gr.BrowserState):
    """The visitor's owner token, encrypted in the browser's localStorage so it survives reloads,
    new tabs and server restarts; never shown to anyone. Its key is the lab's, kept beside the
    runs: read when launch() builds the page's config, not when the Blocks are built on import
    (`built` turns True after the layout), so importing this module writes no file."""
    built = False

    def get_block_name(self):
        return "browserstate"  # a subclass must name gradio's frontend, or the page waits for a custom one

    @property
    def secret(self):
        return lab.browser_secret() if OwnerToken.built else "not-served"

    @secret.setter
    def secret(self, value):
        pass  # BrowserState sets a random key; ours is the lab's


with gr.Blocks(title="kdapp: knowledge distillation lab") as demo:
    gr.Markdown(I18N("intro"))
    # The page's language ("en", "zh"): None until on_load decides it. A timer that ticks before
    # (or after a restart lost the page's state) reads it from its request (i18n.page_language), so a
    # Chinese page never gets an English tick, which the fidelity panel could keep (CI caught one).
    ui.lang = gr.State(None)
    ui.owner = OwnerToken(None, storage_key="kdapp-owner")
    with gr.Tabs() as ui.tabs:
        with gr.Tab(I18N("tab.distill"), id="distill"):
            ui.distill = distill_tab.DistillTab(lambda: lab, I18N, ui.owner, ui.lang)
        with gr.Tab(I18N("tab.lessons"), id="lessons-tab", elem_id="lessons"):
            ui.lessons = lessons_tab.LessonsTab(lambda: lab, I18N)
        with gr.Tab(I18N("tab.runs"), id="runs-tab"):
            ui.runs = runs_tab.RunsTab(lambda: lab, I18N)
        with gr.Tab(I18N("tab.continual"), id="continual-tab", elem_id="continual-tab"):
            ui.continual = continual_ui.build(lambda: lab, ui.owner, ui.lang, I18N)
        with gr.Tab(I18N("tab.reproduction"), id="reproduction-tab", elem_id="reproduction-tab"):
            ui.reproduction = reproduction_tab.ReproductionTab(I18N)

    ui.distill.wire()
    ui.lessons.wire(ui.owner, ui.lang, set(ui.distill.controls.values()), ui.distill.settings_of)
    loaded_page = demo.load(on_load, [ui.owner], [ui.owner, ui.lang, ui.tabs, ui.continual.shown,
                                                  *ui.distill.load_outputs, *ui.reproduction.views.values(),
                                                  *ui.continual.choice_controls.values()],
                            **PRIVATE)
    ui.runs.wire(ui.lang, loaded_page)
    ui.runs.open_run.click(open_run, ui.runs.selected, [ui.distill.view, ui.tabs, ui.continual.shown],
                           **PRIVATE)
    # /predict and /runs stay callable by scripts, but only the read-only tools are the documented API and MCP's.
    gr.api(api_runs, api_name="runs", api_visibility="undocumented")
    mcp_tools.register(lambda: lab, shipped=lab_lib.SHIPPED)

demo.queue(max_size=64, default_concurrency_limit=2)
OwnerToken.built = True  # from here on the page's config (built by launch) carries the lab's key


@contextlib.asynccontextmanager
async def lab_lifespan(_app):
    """The lab's life is the server's: open the run store and start the queue when the server
    starts (runs an earlier server left are picked up then), close it when the server stops."""
    lab.open()
    try:
        yield
    finally:
        lab.close()


# Tests launch with these too. show_error=False: visitors get our messages, never tracebacks.
# No "runs" footer link: it is Gradio's own /predict history, easy to mistake for the lab's runs.
LAUNCH = dict(css_paths=[drawing.STATIC_DIR / "page.css"], max_file_size="5mb", show_error=False, footer_links=["api", "gradio", "settings"],
              run_history=False, mcp_server=True, allowed_paths=[str(lab.runs_path)],
              # the middleware serves the drawing panel's files: its JS, the in-browser runtime, the models' ONNX
              i18n=I18N,
              app_kwargs={"lifespan": lab_lifespan,
                          "middleware": [Middleware(drawing.DrawingFiles, get_lab=lambda: lab),
                                         Middleware(i18n.LanguageScript, src=drawing.LANGUAGE_SCRIPT)]})

if __name__ == "__main__":
    try:
        lab.open()  # here, not only in the lifespan: a refusal is one sentence and an exit, not a stack
    except RunsFolderBusy as e:  # a second server on one runs folder would start the same queued runs twice
        sys.exit(f"kdapp did not start: {e}")
    demo.launch(**LAUNCH)  # honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
