"""The Distill tab: the controls and Start, the queue and the run on show (status, curves, the
comparison table), the drawing, and what the run's student learned.

`DistillTab(get_lab, I18N, owner, lang)` makes the tab's components inside the caller's `gr.Tab`
(`owner` and `lang` are the page's states); `wire()` connects its events and its timer, and
`loaded(owner, settings, linked)` is its part of the page's load: the controls' words and a link's
values, and the run on show. Every handler that writes words takes the page's language and speaks
it (`with i18n.speaking(lang)`); the lab's own sentences are English, and `known` translates those
it knows.
"""
import gradio as gr

from kdapp.config import DEFAULTS, SELF
from kdapp.lab.facade import SEEDS, SHIPPED
from kdapp.ui import controls as controls_ui, drawing, i18n, plots, reports, run_report
from kdapp.ui.controls import CHOICE_CONTROLS, INFO_SLOTS, PRIVATE, choices_for, info_for, settings_from
from kdapp.ui.fidelity_panel import FidelityPanel
from kdapp.ui.i18n import _
from kdapp.ui.predict_api import PredictAPI
from kdapp.ui.sentences import known

# Where each control sits (kdapp.ui.controls: one row per control): the main panel's strip, then the
# folded "Training" and "More methods" accordions.
MAIN_ROWS = [["teacher", "student", "temperature", "alpha"]]  # one strip beside Start: the first screen
TRAIN_ROWS = [["epochs", "train_fraction"], ["lr", "batch_size"]]  # folded: the defaults are the lesson's recipe
MORE_ROWS = [["loss"], ["omit_class"], ["self_distill", "generations"], ["feature_loss"], ["feature_weight"],
             ["second_teacher", "teacher_shifts"], ["alpha_schedule", "alpha_end"],
             ["temperature_schedule", "temperature_end"], ["joint_epochs"], ["collapse_weight", "adversarial_weight"],
             ["clip_grad_norm"], ["augment"], ["consistent"], ["quantize"], ["data"], ["device"]]
MISSING_THREE_SETTINGS = {"omit_class": "3", "temperature": 20.0, "alpha": 0.9, "augment": False,
                          "train_fraction": 1.0, "epochs": 15}
TICK_S = 1.0  # how often the run on show is read again


def translated(choices):
    """The lab's (label, value) choices with the labels it makes in the language spoken now."""
    return [(known(label), value) for label, value in choices]


class DistillTab:
    def __init__(self, get_lab, I18N, owner, lang):
        self.get_lab, self.owner, self.lang = get_lab, owner, lang
        self.view = gr.State(None)            # run id chosen by Start, a link or the Runs tab; None = follow the lab
        self.notice_for = gr.State(None)      # the run the notice speaks of
        self.follow = gr.State(None)          # the drawing follows the visitor's newest run until they pick models;
                                              # None until the page's load, so a first tick cannot undo a link
        self.last = gr.State(None)            # what the timer sent last
        self.drawing_models = gr.State(SHIPPED)  # session state, not an API input: /predict keeps (sketch, T)
        self.controls = controls_ui.Controls(get_lab, I18N)  # name -> component, filled by the layout
        # The first screen (1400x1000): the pair, T and α with Start in one strip, the rest folded,
        # then the drawing, which works before any training. The run's curves come after it.
        with gr.Row(elem_id="quick-controls", equal_height=False):
            self.controls.rows(MAIN_ROWS, row=False)
            with gr.Column(min_width=170, scale=1):
                self.start_button = gr.Button(I18N("button.start"), variant="primary", elem_id="start")
                self.stop_button = gr.Button(I18N("button.stop"), variant="stop", elem_id="stop", interactive=False)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                with gr.Accordion(I18N("accordion.training"), open=False, elem_id="training-settings"):
                    self.controls.rows(TRAIN_ROWS)
            with gr.Column(scale=1, min_width=300):
                with gr.Accordion(I18N("accordion.more"), open=False):
                    self.controls.rows(MORE_ROWS)
        with gr.Row(elem_id="sweeps"):
            self.sweep_t = gr.Button(I18N("button.sweep_t"), size="sm", elem_id="sweep-t", min_width=150)
            self.sweep_alpha = gr.Button(I18N("button.sweep_alpha"), size="sm", elem_id="sweep-alpha", min_width=150)
            self.sweep_seeds = gr.Checkbox(False, label=I18N("control.sweep_seeds"), elem_id="sweep-seeds",
                                           min_width=220)
            self.missing_three_button = gr.Button(I18N("button.missing_three"), size="sm", elem_id="preset-missing-3",
                                                  min_width=150)
            self.settings_link_button = gr.Button(I18N("button.settings_link"), size="sm", elem_id="settings-link",
                                                  min_width=150)
        self.notice = gr.Markdown(elem_id="notice")
        self.queue = gr.Markdown(elem_id="queue")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                self.status = gr.Markdown(I18N("status.idle"), elem_id="status")
                self.link = gr.Markdown(elem_id="status-link")
            self.run_again_button = gr.Button(I18N("button.run_again"), size="sm", elem_id="run-again", scale=0,
                                              min_width=260)
        with gr.Row(equal_height=True):  # side by side at 1400 px, so the canvas is on the first screen
            with gr.Column(min_width=300):
                gr.Markdown(I18N("heading.draw"))
            with gr.Column(min_width=300):
                # Only the shipped models at build time; the page's load offers each visitor the finished runs.
                self.models = gr.Dropdown([(I18N("choice.models.shipped"), SHIPPED)], value=SHIPPED,
                                          label=I18N("control.drawing_models"), elem_id="drawing-models")
        # The canvas, the three models' answers, the 28x28 input and the softmax chart: all
        # computed in the visitor's browser (kdapp/ui/drawing.py, static/drawing.js).
        drawing.panel(get_lab, DEFAULTS.temperature, SHIPPED, roles=get_lab().shipped_roles())
        self.api = PredictAPI(get_lab, self.controls["temperature"], self.drawing_models, SHIPPED)
        gr.Markdown(I18N("heading.run"))
        with gr.Row():
            self.loss_plot = gr.Plot(plots.loss_figure(None), elem_id="loss-plot", show_label=False)
            self.acc_plot = gr.Plot(plots.accuracy_figure(None), elem_id="acc-plot", show_label=False)
        self.table = gr.Markdown(run_report.comparison_table(None), elem_id="comparison")
        self.fidelity = FidelityPanel(get_lab, I18N)

    @property
    def lab(self):
        return self.get_lab()

    def wire(self):
        owner, lang, controls = self.owner, self.lang, set(self.controls.values())
        self.start_button.click(self.start, {owner, lang, *controls}, [self.notice, self.view, self.notice_for],
                                concurrency_limit=None, **PRIVATE)
        for button, name in ((self.sweep_t, "temperature"), (self.sweep_alpha, "alpha")):
            button.click(self.sweep(name), {owner, lang, self.sweep_seeds, *controls}, self.notice,
                         concurrency_limit=None, **PRIVATE)
        self.stop_button.click(self.stop, [owner, self.view, lang], [self.notice, self.view], concurrency_limit=None,
                               **PRIVATE)
        self.run_again_button.click(self.run_again, [owner, self.view, lang], [self.notice, self.view, self.notice_for],
                                    concurrency_limit=None, **PRIVATE)
        self.settings_link_button.click(self.settings_link, {lang, *controls}, self.notice, **PRIVATE)
        self.missing_three_button.click(self.missing_three, lang,
                                        [self.notice, *(self.controls[n] for n in MISSING_THREE_SETTINGS)], **PRIVATE)
        # The born-again / deep-supervision choice means something only with teacher = self: greyed out
        # otherwise, so an ordinary run does not look like a born-again one.
        teacher = self.controls["teacher"]
        teacher.change(self.self_controls, teacher, [self.controls["self_distill"], self.controls["generations"]],
                       **PRIVATE)
        # The first teacher's architecture as the second is another network of it: its label says whether
        # that one is saved, so the labels follow the first teacher.
        teacher.change(self.second_teacher_choices, [teacher, lang], self.controls["second_teacher"], **PRIVATE)
        gr.Timer(TICK_S).tick(self.refresh, [self.last, self.view, owner, self.drawing_models, self.follow,
                                             self.notice_for, lang],
                              [self.status, self.queue, self.loss_plot, self.acc_plot, self.table, self.stop_button,
                               self.models, self.drawing_models, self.link, self.notice, self.notice_for,
                               *self.fidelity.components, self.last],
                              concurrency_limit=None, queue=False, **PRIVATE)
        # The drawing's models live in session state, set in the same answer that shows them in the
        # dropdown (a link, a finished run) or by the visitor's own pick. The panel follows the
        # dropdown in the browser and reads the digit again there (no server call).
        self.models.input(lambda choice: {self.drawing_models: choice, self.follow: False}, self.models,
                          [self.drawing_models, self.follow], **PRIVATE)
        self.models.change(None, self.models, None, js="(choice) => { window.kdappDrawing?.setModels(choice); }",
                           **PRIVATE)
        # T set from a link fires no input event in the page; the panel follows every move by itself.
        self.controls["temperature"].change(None, self.controls["temperature"], None,
                                            js="(t) => { window.kdappDrawing?.setTemperature(t); }", **PRIVATE)
        self.fidelity.wire(lang)

    def settings_of(self, data):
        """The lab's loose settings from the controls' values in a handler's `data`."""
        return settings_from(self.controls.values_of(data))

    # ---- handlers: thin, by name ----
    def start(self, data):
        """Queue a run; the tab then follows it, and the notice lasts until it ends."""
        with i18n.speaking(data.get(self.lang)):
            owner = data[self.owner]
            if not owner:  # every run has an owner who can stop it, and counts against their allowance
                return {self.notice: reports.notice(_("notice.loading"), ok=False)}
            record, message = self.lab.start(self.settings_of(data), owner)
            if record is None:
                return {self.notice: reports.notice(known(message), ok=False)}
            return {self.notice: reports.notice(known(message)), self.view: record["id"], self.notice_for: record["id"]}

    def run_again(self, owner, view, lang=None):
        """Queue the settings of the run on show (a permalink's too) again, as a new run of this visitor's."""
        with i18n.speaking(lang):
            if not owner:
                return {self.notice: reports.notice(_("notice.loading"), ok=False)}
            run = self.shown_run(view, self.lab.active(owner), self.lab.latest_finished(), owner)
            if run is None:
                return {self.notice: reports.notice(_("notice.nothing_to_run_again"), ok=False)}
            record, message = self.lab.run_again(run["id"], owner)
            if record is None:
                return {self.notice: reports.notice(known(message), ok=False)}
            return {self.notice: reports.notice(known(message)), self.view: record["id"], self.notice_for: record["id"]}

    def settings_link(self, data):
        with i18n.speaking(data.get(self.lang)):
            try:
                url = self.lab.settings_url(self.settings_of(data))
            except ValueError as e:
                return {self.notice: reports.notice(_("notice.no_link").format(reason=e), ok=False)}
            return {self.notice: reports.link(_("notice.settings_link"), url)}

    def sweep(self, name):
        """The handler of the sweep over `name`'s values (with 3 seeds each when the box is ticked)."""
        def handler(data):
            with i18n.speaking(data.get(self.lang)):
                if not data[self.owner]:
                    return {self.notice: reports.notice(_("notice.loading"), ok=False)}
                seeds = SEEDS if data.get(self.sweep_seeds) else None
                records, message = self.lab.sweep(self.settings_of(data), data[self.owner], name, seeds)
                return {self.notice: reports.notice(known(message), ok=bool(records))}
        return handler

    def missing_three(self, lang=None):
        """The missing-3 preset: its settings and its explanation."""
        with i18n.speaking(lang):
            text = _("notice.missing_three")
        return {self.notice: reports.notice(text),
                **{self.controls[name]: value for name, value in MISSING_THREE_SETTINGS.items()}}

    def self_controls(self, teacher):
        """Teacher = self's own settings are live only when the teacher is self."""
        mine = teacher == SELF
        return {self.controls["self_distill"]: gr.update(interactive=mine),
                self.controls["generations"]: gr.update(interactive=mine)}

    def stop(self, owner, view, lang=None):
        """Stop the visitor's run on show if it is theirs, else their oldest queued or running run."""
        with i18n.speaking(lang):
            mine = [r for r in self.lab.active(owner) if r["mine"]]
            target = next((r["id"] for r in mine if r["id"] == view), mine[0]["id"] if mine else None)
            if target is None:
                return {self.notice: reports.notice(_("notice.no_active_run"))}
            return {self.notice: reports.notice(known(self.lab.cancel(target, owner))), self.view: target}

    def shown_run(self, view, active, newest, owner=None):
        """The run the tab shows: the one a link or the Runs tab chose, else the visitor's own
        active run, else their newest finished one (their result stays on show after a reload when
        another visitor's run starts), else the one training now, else the newest finished run."""
        if view:  # queued and running runs come with their place in the queue and ETA
            return next((r for r in active if r["id"] == view), None) or self.lab.run(view)
        mine = [r for r in active if r["mine"]]
        if mine:
            return mine[0]
        own = self.lab.latest_finished(owner) if owner else None
        running = [r for r in active if r["position"] == 0]
        return own or (running or [newest])[0]

    def refresh(self, last, view, owner, models_value, follow, notice_for, lang, request: gr.Request = None):
        """Timer tick: send only what changed (gr.Plot rebuilds its figure on every new value)."""
        lang = lang or i18n.page_language(request)  # before the page's load set it
        key = (self.lab.version(), view, owner, models_value, follow, notice_for, lang)
        if last and last["key"] == key:
            return gr.skip()  # nothing changed; an empty dict is not read as "no outputs" by gradio 6.31
        with i18n.speaking(lang):
            return self.refreshed(last, view, owner, models_value, follow, notice_for, key)

    def refreshed(self, last, view, owner, models_value, follow, notice_for, key):
        lab = self.lab
        active, newest = lab.active(owner), lab.latest_finished()
        run = self.shown_run(view, active, newest, owner)
        mine = bool(run) and lab.owns(run["id"], owner)
        table = lab.comparison(run["id"]) if run and run["state"] == "finished" else None
        out = {self.status: reports.status(run, mine, newest if run and newest and run["id"] != newest["id"] else None),
               self.queue: reports.queue(active), self.loss_plot: plots.loss_figure(run),
               self.acc_plot: plots.accuracy_figure(run), self.table: run_report.comparison_table(table),
               self.stop_button: gr.update(interactive=any(r["mine"] for r in active)),
               self.link: reports.run_link(run["id"]) if run else ""}
        # The drawing follows the visitor's own newest finished run until they pick models themselves.
        choices = last["choices"] if last else None
        if follow is not None:  # the page has loaded: its load set the drawing's models first
            wanted = lab.default_models(owner) if follow else models_value
            choices = translated(lab.drawing_choices(include=wanted))
            if wanted not in [value for _, value in choices]:  # pruned meanwhile: a value outside the
                wanted = SHIPPED                                # choices would make every tick fail
            if wanted != models_value or not last or last["choices"] != choices:
                out.update({self.models: gr.update(choices=choices, value=wanted), self.drawing_models: wanted})
        # A "started"/"queued" notice is about one run: clear it once that run has ended.
        if notice_for and not any(r["id"] == notice_for for r in active):
            out.update({self.notice: "", self.notice_for: None})
        # The fidelity panel changes only when another run is shown or the shown one finishes.
        fidelity_key = (run["id"], run["state"], key[-1]) if run else key[-1]
        if not (last and last.get("fidelity") == fidelity_key):
            out.update(self.fidelity.outputs(run))
        out[self.last] = {"key": key, "choices": choices, "fidelity": fidelity_key}
        return out

    def second_teacher_choices(self, teacher, lang):
        with i18n.speaking(lang):
            return gr.update(choices=choices_for("second_teacher", self.lab, first=teacher))

    # ---- the page's load ----
    @property
    def load_outputs(self):
        return [self.view, self.notice, self.models, self.drawing_models, self.follow, *self.controls.values()]

    def loaded(self, owner, settings, linked):
        """The tab on a new page, in its language: the choices and the info lines with slots, a link's
        settings on the controls, and the linked run (or the visitor's newest) on show and drawn with."""
        out = {self.view: linked["id"] if linked else None}
        for name in CHOICE_CONTROLS:
            given = {"first": settings.get("teacher", DEFAULTS.teacher)} if name == "second_teacher" else {}
            out[self.controls[name]] = gr.update(choices=choices_for(name, self.lab, **given),
                                                 **({"info": info_for(name)} if name in INFO_SLOTS else {}))
        for name, value in settings.items():
            if name in self.controls:
                out[self.controls[name]] = dict(out.get(self.controls[name], gr.update()), value=value)
        if "alpha_end" in settings:  # a linked schedule is switched on, not just its end value
            out[self.controls["alpha_schedule"]] = True
        linked = bool(linked) and linked["has_checkpoints"]  # a linked run's models stay put
        models = out[self.view] if linked else self.lab.default_models(owner)
        out.update({self.models: gr.update(choices=translated(self.lab.drawing_choices(include=models)), value=models),
                    self.drawing_models: models, self.follow: not linked})
        return out
