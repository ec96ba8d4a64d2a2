"""The drawing panel: a canvas whose digit the visitor's browser reads as it is drawn.

The page runs the preprocessing (static/drawing.js, a port of inference.preprocess) and the
three models (ONNX Runtime Web, vendored under static/vendor/) itself, so a stroke costs the
server nothing. This module builds the panel (one gr.HTML), the server function the page falls
back to without WebAssembly, and the small ASGI middleware that serves the panel's files under
PREFIX, compressed (gradio compresses only text files, and the runtime and the teacher are what
a first visit downloads). Markup and constants live here; behaviour lives in drawing.js.
"""
import base64
import binascii
import collections
import json
import threading
from pathlib import Path
from urllib.parse import parse_qs

import brotli  # gradio's own dependency (its middleware compresses text with it)
import gradio as gr
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from kdapp.data import MNIST_MEAN, MNIST_STD
from kdapp.evaluation import export, inference
from kdapp.ui import i18n, plots, sentences

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "/kdapp-drawing"        # every file the panel fetches, answered by DrawingFiles
CANVAS = 280                     # px; 10x MNIST, so a stroke of ~20 px matches MNIST's pen width after scaling
BRUSH_RADIUS = 9                 # the Sketchpad's brush: a disc of radius 9 px, black, fully opaque
MAX_UPLOAD = 5_000_000           # bytes of a fallback canvas (a 280x280 PNG is ~10 kB)
LANGUAGE_SCRIPT = f"{PREFIX}/static/language.js"  # ?lang= over the browser's language (kdapp.ui.i18n)
# The catalogs' entries drawing.js speaks, in every language: it picks one from navigator.language.
CATALOG_PREFIXES = ("draw.", "note.", "plot.softmax.", "role.", "axis.digit", "engine.inked", "engine.small")
RUNTIME = "vendor/onnxruntime-web/ort.wasm.bundle.min.mjs"
WASM = "vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm"
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".wasm": "application/wasm",
         ".onnx": "application/octet-stream", ".json": "application/json"}

TEMPLATE = """
<div class="kd-draw">
  <div class="kd-pad">
    <div id="sketch"><canvas width="{canvas}" height="{canvas}" aria-label="{canvas_label}"
      data-t-aria="draw.canvas"></canvas></div>
    <button id="clear" class="lg secondary" type="button" data-t="draw.clear">{clear}</button>
  </div>
  <div class="kd-answers">
    <div class="kd-boxes">
      <div class="kd-box"><div class="kd-label" id="teacher-label" data-t="{teacher_key}">{teacher}</div><div id="teacher-pred"></div></div>
      <div class="kd-box"><div class="kd-label" id="student-label" data-t="draw.student">{student}</div><div id="student-pred"></div></div>
      <div class="kd-box"><div class="kd-label" id="baseline-label" data-t="{baseline_key}">{baseline}</div><div id="baseline-pred"></div></div>
    </div>
    <div class="kd-seen">
      <figure id="digit-28"><canvas width="28" height="28"></canvas><figcaption data-t="draw.seen">{seen}</figcaption></figure>
      <div id="draw-note" aria-live="polite"></div>
    </div>
    <div id="dist-plot"></div>
  </div>
</div>
"""


def constants():
    """The preprocessing's constants for drawing.js, from the one home of each."""
    return {"MNIST_MEAN": MNIST_MEAN, "MNIST_STD": MNIST_STD, "INK_THRESHOLD": inference.INK_THRESHOLD,
            "BOX": inference.BOX, "SIZE": inference.SIZE, "MNIST_COM": inference.MNIST_COM, "SMALL": inference.SMALL}


def config(temperature, models, force_server=False):
    """What drawing.js needs, from the one home of each constant."""
    return {
        "constants": constants(),
        "brush_radius": BRUSH_RADIUS, "temperature": temperature, "models": models, "force_server": force_server,
        "temperature_selector": "#control-temperature",
        "runtime_url": f"{PREFIX}/static/{RUNTIME}", "wasm_url": f"{PREFIX}/static/{WASM}",
        "models_url": f"{PREFIX}/models/", "input_name": export.INPUT_NAME, "output_name": export.OUTPUT_NAME,
        "colors": {r: plots.COLORS[r] for r in ("teacher", "student", "baseline")},
        "catalogs": {lang: {k: v for k, v in catalog.items() if k.startswith(CATALOG_PREFIXES)}
                     for lang, catalog in i18n.CATALOGS.items()},
    }


def label(role, roles):
    """The markup's slots for a role's label: its catalog key, and its English words."""
    key = f"draw.{role}" if role in roles else f"draw.no_{role}"
    return {f"{role}_key": key, role: i18n._(key)}


def panel(get_lab, temperature, models, roles=("teacher", "student", "baseline"), elem_id="drawing"):
    """The panel as one gr.HTML. `get_lab()` gives the Lab (for the fallback's predictions);
    `roles` are those the first models fill, for the labels shown before the first digit."""
    def predict_drawing(request):  # gradio hands a server function the page's one argument
        request = request if isinstance(request, dict) else {}
        return server_answer(get_lab(), request.get("image"), request.get("temperature"), request.get("models"),
                             request.get("lang"))

    _ = i18n._  # the markup in English; drawing.js puts it in the page's language as it mounts
    markup = TEMPLATE.format(canvas=CANVAS, canvas_label=_("draw.canvas"), clear=_("draw.clear"), seen=_("draw.seen"),
                             student=_("draw.student"), **label("teacher", roles), **label("baseline", roles))
    # `server` exists only inside js_on_load, so it travels to drawing.js in the config.
    mount = (f"const cfg = {json.dumps(config(temperature, models))};\n"
             "cfg.server = server;\nwindow.kdappDrawing.mount(element, cfg);")
    head = (f'<link rel="stylesheet" href="{PREFIX}/static/drawing.css">'
            f'<script src="{PREFIX}/static/drawing.js"></script>')
    return gr.HTML(markup, html_template="${value}", js_on_load=mount, head=head, elem_id=elem_id,
                   server_functions=[predict_drawing], apply_default_css=False)


def server_answer(lab, image, temperature, models, lang=None):
    """The fallback's reading of a canvas sent as a PNG data URL: the same dict the browser
    computes (lists, not tensors), or {"error": sentence}; its sentences in `lang`."""
    with i18n.speaking(lang):
        answer = _server_answer(lab, image, temperature, models)
        for key in ("error", "models"):
            if key in answer:
                answer[key] = sentences.known(answer[key])
        if "notes" in answer:
            answer["notes"] = [sentences.known(n) for n in answer["notes"]]
        return answer


def _server_answer(lab, image, temperature, models):
    try:
        if not isinstance(image, str) or not image.startswith("data:image/png;base64,"):
            raise inference.CanvasError("send the canvas as a PNG data URL")
        encoded = image.split(",", 1)[1]
        if len(encoded) * 3 // 4 > MAX_UPLOAD:
            raise inference.CanvasError(f"the canvas is larger than {MAX_UPLOAD // 1_000_000} MB")
        try:
            png = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise inference.CanvasError("the canvas is not valid base64") from None
        result = lab.predict(png, temperature, models)
    except inference.BlankCanvas:
        return {"blank": True}
    except inference.CanvasError as e:
        return {"error": str(e)}
    answer = {k: v for k, v in result.items() if k in ("temperature", "kl_T", "teacher", "student", "baseline")}
    answer.update(image=result["image"].ravel().tolist(), notes=result["notes"], models=result["models"])
    return answer


class DrawingFiles:
    """ASGI middleware that answers GET under PREFIX and passes everything else on:
    /static/<file> (drawing.js, drawing.css, the vendored runtime), /models/<choice>.json (which
    ONNX files a choice has: "shipped" or a run id) and /models/<choice>/<role>.onnx.

    Bodies go out brotli-compressed to browsers that accept it: the runtime's .wasm is stored
    compressed (quality 11, 14.2 -> 2.4 MB) and sent as is; the rest is compressed once and kept.
    `get_lab` is a callable, so the middleware can exist before the server makes its Lab."""

    def __init__(self, app, get_lab):
        self.app, self.get_lab = app, get_lab
        self._bodies = collections.OrderedDict()  # (path, mtime, encoding) -> bytes; a few MB
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX + "/") or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        accept = dict(scope["headers"]).get(b"accept-encoding", b"").decode("latin-1")
        lang = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("lang", [None])[0]
        response = await run_in_threadpool(self.respond, path[len(PREFIX) + 1:], "br" in accept, lang)
        await response(scope, receive, send)

    def respond(self, path, brotli_ok, lang=None):
        with i18n.speaking(lang):  # a manifest's description and an error in the page's language
            return self._respond(path, brotli_ok)

    def _respond(self, path, brotli_ok):
        kind, _, rest = path.partition("/")
        if kind == "static":
            target = (STATIC_DIR / rest).resolve()
            if STATIC_DIR not in target.parents:
                return Response(status_code=404)
            return self.file(target, brotli_ok, "public, max-age=3600")
        if kind == "models":
            choice, _, role = rest.partition("/")
            try:
                if not role and choice.endswith(".json"):
                    return self.manifest(choice[:-len(".json")])
                files, _ = self.get_lab().drawing_onnx(choice)
                if not role.endswith(".onnx") or role[:-len(".onnx")] not in files:
                    return Response(status_code=404)
                return self.file(files[role[:-len(".onnx")]], brotli_ok, "public, max-age=31536000, immutable")
            except LookupError as e:
                return JSONResponse({"error": sentences.known(str(e).strip("'\""))}, status_code=404)
        return Response(status_code=404)

    def manifest(self, choice):
        files, description = self.get_lab().drawing_onnx(choice)
        roles = {role: f"{PREFIX}/models/{choice}/{role}.onnx?v={path.stat().st_mtime_ns}"
                 for role, path in files.items()}
        return JSONResponse({"choice": choice, "roles": roles, "models": sentences.known(description)},
                            headers={"Cache-Control": "no-cache"})

    def file(self, path, brotli_ok, cache):
        stored = path.with_name(path.name + ".br")  # kept compressed in the repository
        source = stored if not path.is_file() and stored.is_file() else path
        if not source.is_file():
            return Response(status_code=404)
        key = (str(source), source.stat().st_mtime_ns, brotli_ok)
        with self._lock:
            body = self._bodies.get(key)
        if body is None:
            raw = source.read_bytes()
            if source is stored:
                body = raw if brotli_ok else brotli.decompress(raw)
            else:
                body = brotli.compress(raw, quality=5) if brotli_ok else raw
            with self._lock:
                self._bodies[key] = body
                while sum(len(b) for b in self._bodies.values()) > 64_000_000:
                    self._bodies.popitem(last=False)
        headers = {"Cache-Control": cache, "Vary": "Accept-Encoding"}
        if brotli_ok:
            headers["Content-Encoding"] = "br"
        return Response(body, media_type=TYPES.get(path.suffix, "application/octet-stream"), headers=headers)
