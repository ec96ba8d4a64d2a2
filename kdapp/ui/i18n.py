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
- Sentences that come from below the UI (the lab's messages, choice labels) are English;
  kdapp.ui.sentences.known maps those it recognises (KNOWN) to their key. The reproduction's results files are written in
  each language by their generator (kdapp.tools.reproduce, `translated_file`); KNOWN keeps their
  headings for an English file shown on a page with no file in its language.

No gradio here: reports and plots import this module and stay strings-only.
"""
import contextlib
import contextvars
import gettext
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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


def page_language(request):
    """The language of the page a request (a gr.Request, or None) comes from: the page's `?lang=`
    (its Referer), else its browser's. For a timer that ticks before the page's load has decided the
    language, or after a restart lost the page's session state."""
    headers = getattr(request, "headers", None) or {}
    query = parse_qs(urlsplit(headers.get("referer") or "").query).get("lang", [None])[0]
    return language(query, headers.get("accept-language"))


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


def translated_file(path, lang):
    """A file written in one language: results/reproduce.md -> results/reproduce.zh.md. English, the
    fallback, keeps the plain name, so a link to the file opens the English one."""
    path = Path(path)
    lang = normalize(lang) or LANGUAGES[0]
    return path if lang == LANGUAGES[0] else path.with_name(f"{path.stem}.{lang}{path.suffix}")


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
