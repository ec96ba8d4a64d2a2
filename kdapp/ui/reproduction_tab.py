"""The Reproduction tab: the results files `python -m kdapp reproduce` and `methods` wrote (results/),
each in the page's language (reproduction_markdown below: reproduce.zh.md on a Chinese page,
English where a language's file is missing).

`ReproductionTab(I18N)` makes the tab's components inside the caller's `gr.Tab`, in English;
`outputs()` is every file again in the language spoken now, which the page's load sends.
"""
from pathlib import Path

import gradio as gr

from kdapp.ui.i18n import _, current, translated_file
from kdapp.ui.sentences import known

RESULTS_PATH = Path(__file__).resolve().parents[2] / "results" / "reproduce.md"
RESULTS_MNIST_PATH = RESULTS_PATH.with_name("reproduce-mnist.md")
METHODS_PATHS = {"sample": RESULTS_PATH.with_name("methods.md"), "mnist": RESULTS_PATH.with_name("methods-mnist.md")}
FILES = {"reproduce-mnist": RESULTS_MNIST_PATH, "reproduce-sample": RESULTS_PATH,
         "methods-mnist": METHODS_PATHS["mnist"], "methods-sample": METHODS_PATHS["sample"]}


def reproduction_markdown(path=RESULTS_PATH):
    """A results file of `python -m kdapp reproduce` in the page's language: the tool writes each
    one in every language (reproduce.md, reproduce.zh.md). Where the language's file is missing (an
    older run), the English one is shown, its headings translated, under a note that says so."""
    spoken = translated_file(path, current())
    if spoken != Path(path) and spoken.is_file():
        return spoken.read_text(encoding="utf-8")
    if not Path(path).is_file():
        methods = " --methods" if Path(path) in METHODS_PATHS.values() else ""
        mnist = " --data mnist" if Path(path) in (RESULTS_MNIST_PATH, METHODS_PATHS["mnist"]) else ""
        return _("repro.missing").format(name=Path(path).name, command=f"python -m kdapp reproduce{methods}{mnist}")
    lines = [known(line) if line.startswith("#") else line for line in Path(path).read_text(encoding="utf-8").split("\n")]
    if _("repro.note"):
        lines.insert(1, "\n" + _("repro.note") + "\n")
    return "\n".join(lines)


class ReproductionTab:
    def __init__(self, I18N):
        self.views = {}  # elem_id -> the Markdown that shows its file
        self.view("reproduce-mnist")
        with gr.Accordion(I18N("repro.accordion.sample"), open=False):
            self.view("reproduce-sample")
        with gr.Accordion(I18N("repro.accordion.methods"), open=False):
            self.view("methods-mnist")
            self.view("methods-sample")

    def view(self, elem_id):
        self.views[elem_id] = gr.Markdown(reproduction_markdown(FILES[elem_id]), elem_id=elem_id)

    def outputs(self):
        return {markdown: reproduction_markdown(FILES[elem_id]) for elem_id, markdown in self.views.items()}
