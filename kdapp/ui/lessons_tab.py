"""The Lessons tab: one-click experiments (kdapp.lab.lessons), each a question answered with the
visitor's own runs, told by kdapp.ui.lessons as the runs progress and once they have all ended.

`LessonsTab(get_lab, I18N)` makes the tab's components inside the caller's `gr.Tab`; `wire(owner,
lang, controls, settings_of)` connects each lesson's button to the page's controls (a lesson runs
on the visitor's settings, `settings_of(data)` reads them) and a timer to the lesson on show.
"""
import gradio as gr

from kdapp.lab import lessons as lessons_lib
from kdapp.ui import i18n, lessons as lesson_text, reports
from kdapp.ui.controls import PRIVATE
from kdapp.ui.i18n import _
from kdapp.ui.sentences import known

TICK_S = 2.0  # how often the lesson on show is read again
LOOKED = "looked"  # `last` once a page with no lesson on show has looked for the visitor's newest


class LessonsTab:
    def __init__(self, get_lab, I18N):
        self.get_lab = get_lab
        gr.Markdown(I18N("lessons.intro"))
        self.buttons = {}  # lesson key -> its button
        for key in lessons_lib.LESSONS:
            with gr.Row(equal_height=True):
                self.buttons[key] = gr.Button(I18N(f"lesson.{key}.title"), size="sm", scale=1, min_width=160,
                                              elem_id=f"lesson-{key}")
                gr.Markdown(I18N(f"lesson.{key}.question"), elem_classes="lesson-question")
        self.note = gr.Markdown(elem_id="lesson-note")
        self.result = gr.Markdown(elem_id="lesson-result")
        self.lesson = gr.State(None)  # {"key", "group"}: the lesson on show
        self.last = gr.State(None)    # its runs' states when last shown
        self.owner = self.lang = self.settings_of = None  # the page's, given by wire()

    def wire(self, owner, lang, controls, settings_of):
        self.owner, self.lang, self.settings_of = owner, lang, settings_of
        for key, button in self.buttons.items():  # named: an unnamed handler's number moves with the wiring order
            button.click(self.start(key), {owner, lang, *controls}, [self.note, self.lesson, self.result],
                         concurrency_limit=None, api_name=f"lesson_{key}", **PRIVATE)
        gr.Timer(TICK_S).tick(self.tick, [self.lesson, self.last, owner, lang], [self.result, self.last, self.lesson],
                              concurrency_limit=None, queue=False, **PRIVATE)

    def start(self, key):
        """The handler of lesson `key`'s button: its runs queued as the visitor's, on their settings."""
        def handler(data):
            with i18n.speaking(data.get(self.lang)):
                if not data[self.owner]:
                    return {self.note: reports.notice(_("notice.loading"), ok=False)}
                lab = self.get_lab()
                group, message = lab.lesson(self.settings_of(data), data[self.owner], key)
                if group is None:
                    return {self.note: reports.notice(known(message), ok=False)}
                return {self.note: reports.notice(known(message)), self.lesson: {"key": key, "group": group},
                        self.result: lesson_text.progress(key, lab.group_runs(group))}
        return handler

    def tick(self, lesson, last, owner, lang, request: gr.Request = None):
        """Timer tick: the lesson's progress, then its answer once every run has ended. A page opened
        again (a reload, a new tab) shows the visitor's newest lesson, looked up once."""
        found, lab = {}, self.get_lab()
        if not lesson:
            if last == LOOKED or not owner:  # looked already, or the page's owner token is not read yet
                return gr.skip()
            mine = lab.lessons_of(owner)
            if not mine:
                return {self.last: LOOKED}
            key, group, _runs = mine[0]
            lesson = found[self.lesson] = {"key": key, "group": group}
        lang = lang or i18n.page_language(request)  # started before the load answered
        runs = lab.group_runs(lesson["group"])
        key = [[r["id"], r["state"]] for r in runs] + [lang]
        if key == last and not found:
            return gr.skip()
        chosen = lessons_lib.LESSONS[lesson["key"]]
        ended = all(r["state"] not in ("queued", "running") for r in runs)
        with i18n.speaking(lang):
            text = lesson_text.summary(lesson["key"], chosen, lessons_lib.cells(chosen, runs),
                                       lessons_lib.measured_metrics(chosen, runs)) if ended \
                else lesson_text.progress(lesson["key"], runs)
        return {self.result: text, self.last: key, **found}
