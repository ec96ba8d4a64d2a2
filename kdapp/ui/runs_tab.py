"""The Runs tab: every run in a table (distillation runs, then continual ones), up to four compared
on one chart with their settings' differences and the gain map, and a run's student or the runs'
TensorBoard files to download.

`RunsTab(get_lab, I18N)` makes the tab's components inside the caller's `gr.Tab`; its handlers
take the page's language and return {component: value}, as the page's own do; `wire(lang, loaded)`
connects them. Opening a run on its tab is the page's (app.open_run): it moves the page's view.
"""
import gradio as gr

from kdapp.lab import continual as lab_continual, tensorboard
from kdapp.ui import continual as continual_ui, i18n, reports, runs_plots
from kdapp.ui.controls import PRIVATE
from kdapp.ui.i18n import _
from kdapp.ui.sentences import known

MAX_COMPARED = 4  # runs on one comparison chart


class RunsTab:
    def __init__(self, get_lab, I18N):
        self.get_lab = get_lab
        with gr.Row():
            self.pair = gr.Dropdown([(I18N("runs.all"), "all")], value="all", label=I18N("runs.filter"),
                                    elem_id="runs-filter")
            self.refresh = gr.Button(I18N("button.refresh"), size="sm")
        self.runs_df = gr.Dataframe(reports.runs_rows([]), elem_id="runs", interactive=False, wrap=False)
        gr.Markdown(I18N("runs.continual_heading"))
        self.continual_runs_df = gr.Dataframe(continual_ui.runs_rows([]), elem_id="continual-runs-table",
                                              interactive=False, wrap=False)
        self.selected = gr.Dropdown([], multiselect=True, max_choices=MAX_COMPARED, label=I18N("runs.select"),
                                    elem_id="runs-select")
        with gr.Row():
            self.open_run = gr.Button(I18N("button.open_run"), size="sm")
            self.download = gr.Button(I18N("button.download"), size="sm")
            self.tensorboard = gr.Button(I18N("button.tensorboard"), size="sm", elem_id="tensorboard-zip")
        self.run_link = gr.Markdown(elem_id="run-link")
        self.files = gr.File(label=I18N("files.label"), file_count="multiple", elem_id="downloads", height=110)
        self.note = gr.Markdown()
        self.compare_plot = gr.Plot(runs_plots.compare_figure([]), elem_id="runs-compare", show_label=False)
        self.diff = gr.Markdown(elem_id="runs-diff")
        self.gain_plot = gr.Plot(runs_plots.gain_map([]), elem_id="gain-map", show_label=False)
        gr.Markdown(I18N("runs.gain_caption"), elem_id="gain-map-caption")  # which runs it holds, and which not

    def wire(self, lang, loaded):
        """The tab's events; `loaded` is the page's load event, after which the tab's headers and
        empty charts are sent again in the page's language."""
        table_outputs = [self.runs_df, self.continual_runs_df, self.pair, self.selected]
        compare_outputs = [self.compare_plot, self.diff, self.gain_plot, self.run_link]
        for event in (self.refresh.click, self.pair.input):
            event(self.table, [self.pair, self.selected, lang], table_outputs, **PRIVATE)
        loaded.then(self.table, [self.pair, self.selected, lang], table_outputs, **PRIVATE).then(
            self.compare, [self.selected, self.pair, lang], compare_outputs, **PRIVATE)
        self.selected.change(self.compare, [self.selected, self.pair, lang], compare_outputs, **PRIVATE)
        self.download.click(self.downloads, [self.selected, lang], [self.files, self.note], **PRIVATE)
        self.tensorboard.click(self.tensorboard_download, [self.selected, lang], [self.files, self.note], **PRIVATE)

    def table(self, pair, chosen, lang=None):
        """Both tables, the pair filter's choices, and the runs one may select (a choice that is
        still a run stays selected)."""
        lab = self.get_lab()
        teacher, student = (pair.split(" → ") + [None])[:2] if pair and pair != "all" else (None, None)
        records = lab.runs(teacher, student)
        continual = lab_continual.runs(lab, limit=200)
        with i18n.speaking(lang):
            pairs = [(_("runs.all"), "all")] + sorted({f"{r['config']['teacher']} → {r['config']['student']}"
                                                        for r in lab.runs()})
            rows = reports.runs_rows(records)
            continual_rows = continual_ui.runs_rows(continual)
            choices = [r["id"] for r in records] + [(_("runs.continual_choice").format(id=r["id"]), r["id"])
                                                    for r in continual]
        ids = [r["id"] for r in records] + [r["id"] for r in continual]
        return {self.runs_df: rows, self.continual_runs_df: continual_rows, self.pair: gr.update(choices=pairs),
                self.selected: gr.update(choices=choices, value=[i for i in chosen or [] if i in ids])}

    def compare(self, selected, pair, lang=None):
        lab = self.get_lab()
        records = [r for r in (lab.run(i) for i in (selected or [])[:MAX_COMPARED]) if r]
        # Distillation and continual runs are compared each with their own kind; distillation runs first.
        distill = [r for r in records if not lab_continual.is_continual(r)]
        continual = [r for r in records if lab_continual.is_continual(r)]
        with i18n.speaking(lang):
            return {self.compare_plot: runs_plots.compare_figure(distill) if distill or not continual
                    else runs_plots.continual_compare_figure(continual),
                    self.diff: reports.config_diff(distill or continual),
                    self.gain_plot: runs_plots.gain_map([] if continual and not distill
                                                        else lab.gain_group(distill[0] if distill else None)),
                    self.run_link: reports.run_link(records[0]["id"]) if records else ""}

    def downloads(self, selected, lang=None):
        """The first selected run's student as .pt and ONNX (and int8 ONNX when it has one)."""
        files, notes = [], []
        for run_id in (selected or [])[:1]:
            for kind in ("pt", "onnx", "int8"):
                try:
                    files.append(str(self.get_lab().export(run_id, kind)))
                except (LookupError, OSError, RuntimeError) as e:
                    if kind != "int8":  # only runs with int8 students have one; the others need no note
                        notes.append(str(e))
        with i18n.speaking(lang):  # one note per reason (.pt and .onnx fail alike), in the page's language
            note = " ".join(dict.fromkeys(known(n) for n in notes)) or (
                _("notice.select_finished") if not files else "")
        return {self.files: files or None, self.note: reports.notice(note)}

    def tensorboard_download(self, selected, lang=None):
        """The selected runs (none selected: the newest 200) as TensorBoard event files, zipped."""
        with i18n.speaking(lang):
            try:
                zipped = str(tensorboard.zip_runs(self.get_lab(), selected))
            except ValueError as e:
                return {self.files: None, self.note: reports.notice(known(str(e)), ok=False)}
            return {self.files: [zipped], self.note: reports.notice(_("notice.tensorboard"))}
