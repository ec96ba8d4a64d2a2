"""The page's words in English and 简体中文: one JSON catalog per language (locales/<lang>.json,
key -> text), read through Python's gettext API on the server and gr.I18n in the browser.

- Static labels (buttons, info lines, tab names, headings) are `gr.I18n` keys, translated by
  Gradio's frontend from the browser's language (`navigator.language`; static/language.js makes
  `?lang=` win over it).
- Text the server builds (status, notices, tables, plot titles, lessons) goes through `_`, the
  gettext of the language the handler speaks: `with speaking(lang): ...`. The language is per
  request (a ContextVar, as Django's `translation.activate`), decided once per page by `language`.
- Numbers are formatted by the code, never by the catalog: a catalog entry has `{name}` slots
  filled with already formatted values, so 98.25% and ±1.2 read the same in both languages.
- Sentences that come from below the UI (the lab's messages, choice labels, the reproduction
  files' headings) are English; `known` maps those it recognises (KNOWN) to their key.

No gradio here: reports and plots import this module and stay strings-only.
"""
import contextlib
import contextvars
import gettext
import json
import re
from pathlib import Path

LOCALES = Path(__file__).resolve().parent / "locales"
LANGUAGES = ("en", "zh")  # the first is the fallback, and the language of every catalog's keys' source
CATALOGS = {lang: json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES}


class Catalog(gettext.NullTranslations):
    """gettext over one JSON catalog. A key missing from it falls back to English, then to the key."""

    def __init__(self, lang):
        super().__init__()
        self.lang, self.messages = lang, CATALOGS[lang]
        if lang != LANGUAGES[0]:
            self.add_fallback(Catalog(LANGUAGES[0]))

    def gettext(self, message):
        if message in self.messages:
            return self.messages[message]
        return self._fallback.gettext(message) if self._fallback else message

    def ngettext(self, singular, plural, n):
        return self.gettext(singular if n == 1 else plural)


TRANSLATIONS = {lang: Catalog(lang) for lang in LANGUAGES}
_current = contextvars.ContextVar("kdapp_language", default=TRANSLATIONS[LANGUAGES[0]])


def translation(lang):
    """The Catalog for a language code ("zh", "zh-CN", "en-GB", None -> English)."""
    return TRANSLATIONS[normalize(lang) or LANGUAGES[0]]


def normalize(lang):
    """"zh-CN", "zh_TW", "ZH" -> "zh"; a language we have no catalog for -> None."""
    base = re.split(r"[-_]", str(lang or "").strip().lower())[0]
    return base if base in LANGUAGES else None


def language(query=None, accept_language=None):
    """The page's language: `?lang=` when it names one of ours, else the browser's first language
    we have (Accept-Language, in the order of its q values), else English."""
    if normalize(query):
        return normalize(query)
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            ranked.append((-float(q or 1), i, tag))
        except ValueError:
            continue
    for _, _, tag in sorted(ranked):
        if normalize(tag):
            return normalize(tag)
    return LANGUAGES[0]


@contextlib.contextmanager
def speaking(lang):
    """Within this block `_` speaks `lang` (a handler's words for its visitor)."""
    token = _current.set(translation(lang))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def current():
    return _current.get().lang


def _(key):
    """The text of `key` in the language spoken now."""
    return _current.get().gettext(key)


def ngettext(singular, plural, n):
    return _current.get().ngettext(singular, plural, n)


def with_lang(url):
    """A permalink that keeps the page's language. English, the fallback, adds nothing: such a link
    opens in the reader's own language, and links made before the catalogs read the same."""
    if current() == LANGUAGES[0]:
        return url
    return f"{url}{'&' if '?' in url else '?'}lang={current()}"


# English sentences made below the UI -> their key; named groups fill the key's slots.
KNOWN = [(re.compile(pattern), key) for pattern, key in (
    (r"^Run (?P<id>\w+) started\. The curves update every second\.$", "lab.started"),
    (r"^Run (?P<id>\w+) queued, position (?P<position>\d+)\.$", "lab.queued"),
    (r"^Run (?P<id>\w+) submitted\.$", "lab.submitted"),
    (r"^Not started: there is no run (?P<id>\w+)$", "lab.no_run"),
    (r"^Not started: run (?P<id>\w+) is (?P<state>\w+); it can run again once it has ended$", "lab.not_ended"),
    (r"^Not started: (?P<reason>.*)$", "lab.not_started"),
    (r"^Sweep queued: (?P<n>\d+) runs at (?P<name>\w+) = (?P<values>.+), each on seeds (?P<seeds>[\d, ]+)\.$",
     "lab.sweep_queued_seeds"),
    (r"^Sweep queued: (?P<n>\d+) runs at (?P<name>\w+) = (?P<values>.+)\.$", "lab.sweep_queued"),
    (r"^Sweep not started: (?P<reason>.*)$", "lab.sweep_not_started"),
    (r"^Lesson queued: (?P<n>\d+) runs \((?P<title>.+), seeds (?P<seeds>[\d, ]+)\)\. "
     r"The answer appears under the lessons\.$", "lab.lesson_queued"),
    (r"^Lesson not started: (?P<reason>.*)$", "lab.lesson_not_started"),
    (r"^run (?P<id>\w+) cancelled; it had not started$", "lab.cancelled_queued"),
    (r"^run (?P<id>\w+) stopped$", "lab.stopped"),
    (r"^run (?P<id>\w+) is stopping$", "lab.stopping"),
    (r"^run (?P<id>\w+) is not running \((?P<state>\w+)\)$", "lab.not_running"),
    (r"^only the visitor who started this run can cancel it$", "lab.not_yours"),
    (r"^there is no run (?P<id>\w+)$", "lab.there_is_no_run"),
    (r"^you already have (?P<n>\d+) runs \(or sweeps\) queued or running, .*$", "lab.per_owner"),
    (r"^the queue is full \((?P<queued>\d+) runs waiting, at most (?P<total>\d+)\); .*$", "lab.queue_full"),
    (r"^What T does$", "lesson.temperature.title"),
    (r"^Scarce labels$", "lesson.scarce.title"),
    (r"^How much to trust the teacher \(α\)$", "lesson.alpha.title"),
    (r"^Hinton's missing 3$", "lesson.missing-3.title"),
    # choice labels and the drawing's models
    (r"^(?P<name>[\w.]+) · (?P<params>[\d,]+) params · pretrained$", "choice.teacher.pretrained"),
    (r"^(?P<name>[\w.]+) · (?P<params>[\d,]+) params · trained first$", "choice.teacher.trained_first"),
    (r"^(?P<name>[\w.]+) · (?P<params>[\d,]+) params$", "choice.student"),
    (r"^self · no pretrained teacher: .*$", "choice.teacher.self"),
    (r"^mutual · no pretrained teacher: .*$", "choice.teacher.mutual"),
    (r"^bundled MNIST sample · .*$", "choice.data.sample"),
    (r"^full MNIST · .*$", "choice.data.mnist"),
    (r"^shipped checkpoints$", "choice.models.shipped"),
    (r"^shipped checkpoints: (?P<rest>.+)$", "choice.models.shipped_desc"),
    (r"^run (?P<id>\w+): (?P<pair>.+ → [^,]+), (?P<settings>T=.+), int8 students$", "choice.models.run_int8"),
    (r"^run (?P<id>\w+): (?P<pair>.+ → [^,]+), (?P<settings>T=.+)$", "choice.models.run"),
    # the reproduction files' headings
    (r"^# Our numbers beside the published ones$", "repro.title"),
    (r"^## (?P<n>\d+)\. The MNIST seed article's table$", "repro.seed_table"),
    (r"^## (?P<n>\d+)\. Small data: 10% of the training set$", "repro.small_data"),
    (r"^## (?P<n>\d+)\. Hinton, Vinyals & Dean \(2015\), MNIST$", "repro.hinton"),
    (r"^## (?P<n>\d+)\. Temperature sweep: (?P<pair>.+)$", "repro.sweep"),
    (r"^## (?P<n>\d+)\. Does KD carry robustness to other writers\?$", "repro.robustness"),
    (r"^# The methods since 2015, side by side$", "repro.methods_title"),
    (r"^## Hinton's missing 3$", "repro.missing_3"),
)]


def known(text):
    """An English sentence from below the UI in the language spoken now, when KNOWN has it;
    else the sentence as it is (a reason from the engine stays English)."""
    for pattern, key in KNOWN:
        match = pattern.match(text)
        if match:
            slots = {k: known(v) if k in ("reason", "title") else (v or "") for k, v in match.groupdict().items()}
            return _(key).format(**slots)
    return text


class LanguageScript:
    """ASGI middleware: the page's HTML gets `<script src=...>` first in its <head>, so the script
    runs before Gradio's own. Gradio picks its language once, from navigator.language, as it boots,
    and reads no ?lang=; static/language.js makes ?lang= win. (Blocks(head=...) comes too late:
    Gradio adds that head after it has chosen its language.)"""

    def __init__(self, app, src):
        self.app, self.tag = app, f'<script src="{src}"></script>'.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != "/":
            return await self.app(scope, receive, send)
        start, body = {}, []

        async def send_with_script(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            page = b"".join(body)
            headers = {k.lower(): v for k, v in start.get("headers", [])}
            if headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers:
                page = page.replace(b"<head>", b"<head>" + self.tag, 1)
            await send(dict(start, headers=[(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                            + [(b"content-length", str(len(page)).encode())]))
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, send_with_script)
