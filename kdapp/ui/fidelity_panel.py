"""The Distill tab's "what the student learned" panel, for the run on show: how often it agrees with
its teacher, one confusion matrix per model, the digits distillation fixed and broke, and a clicked
digit's three softmaxes (kdapp.evaluation.fidelity computes them; the lab keeps them per run).

`FidelityPanel(get_lab, I18N)` makes its components inside the caller's layout; `outputs(run)` is
its whole state for a run, sent by the Distill tab's timer when the run on show changes or ends;
`wire(lang)` connects the galleries' clicks to the example chart.
"""
import gradio as gr

from kdapp.ui import i18n, plots, run_report
from kdapp.ui.controls import PRIVATE
from kdapp.ui.i18n import _


class FidelityPanel:
    def __init__(self, get_lab, I18N):
        self.get_lab = get_lab
        gr.Markdown(I18N("heading.learned"))
        # I18N, not _(): the page is built once, in no visitor's language, and this shows until the first tick
        self.markdown = gr.Markdown(I18N("fidelity.wait"), elem_id="fidelity")
        gr.Markdown(I18N("plot.confusion.title"), elem_id="confusion-caption")
        self.confusion = {}  # role -> its confusion matrix's plot
        with gr.Row(elem_id="confusion-plot"):  # one per model; min_width stacks them on a phone
            for role in plots.CONFUSION_ROLES:
                self.confusion[role] = gr.Plot(plots.confusion_figure(None, role), show_label=False,
                                               elem_id=f"confusion-{role}", min_width=300,
                                               visible=role == plots.CONFUSION_ROLES[0])
        with gr.Row():
            self.fixed_gallery = gr.Gallery(label=I18N("gallery.fixed"), elem_id="fixed-gallery",
                                            columns=6, height=260, allow_preview=False, object_fit="contain")
            self.broken_gallery = gr.Gallery(label=I18N("gallery.broken"), elem_id="broken-gallery",
                                             columns=6, height=260, allow_preview=False, object_fit="contain")
        self.example_plot = gr.Plot(plots.example_figure(None, None, None), elem_id="example-plot", show_label=False)
        self.shown = gr.State(None)  # the run whose galleries are on show

    @property
    def components(self):
        """Everything `outputs` sends, in a fixed order (a timer's outputs)."""
        return [self.markdown, *self.confusion.values(), self.fixed_gallery, self.broken_gallery, self.example_plot,
                self.shown]

    def wire(self, lang):
        for which, gallery in (("fixed", self.fixed_gallery), ("broken", self.broken_gallery)):
            gallery.select(self.show_example(which), [self.shown, lang], self.example_plot,
                           api_name=f"fidelity_{which}_example", **PRIVATE)

    def outputs(self, run):
        """The panel for the run on show (a finished one has its analysis; an older run may lack it)."""
        lab = self.get_lab()
        finished = bool(run) and run["state"] == "finished"
        fidelity = lab.fidelity(run["id"]) if finished else None
        text = run_report.fidelity_markdown(fidelity) if fidelity else \
            _("fidelity.old" if finished else "fidelity.wait")  # italic in the locale, as hints are
        return {self.markdown: text, **self.confusion_outputs(fidelity),
                self.fixed_gallery: lab.gallery(fidelity, "fixed"), self.broken_gallery: lab.gallery(fidelity, "broken"),
                self.example_plot: plots.example_figure(None, None, None), self.shown: run["id"] if fidelity else None}

    def confusion_outputs(self, fidelity):
        """One confusion matrix per model the run has (none yet: the first plot says what will come)."""
        roles = [r for r in plots.CONFUSION_ROLES if fidelity and r in fidelity["confusion"]] or plots.CONFUSION_ROLES[:1]
        return {plot: gr.update(value=plots.confusion_figure(fidelity, role), visible=role in roles)
                for role, plot in self.confusion.items()}

    def show_example(self, kind):
        """The handler of a click on the `kind` ("fixed", "broken") gallery: that digit's softmaxes."""
        def handler(shown, evt: gr.SelectData, lang=None):
            with i18n.speaking(lang):
                return plots.example_figure(self.get_lab().fidelity(shown), kind, evt.index)
        return handler
