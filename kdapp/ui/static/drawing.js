// The drawing panel, all in the visitor's browser: pointer strokes on a canvas, the app's
// preprocessing (a step-for-step port of kdapp/evaluation/inference.py's `preprocess`), the
// teacher, KD student and baseline run by ONNX Runtime Web, and everything the panel shows.
// Without WebAssembly the same panel asks the server instead (one request per pen-up).
// kdapp/ui/drawing.py builds the markup and passes the constants; tests/test_drawing_browser.py
// holds the preprocessing equal to Python's and the probabilities equal to /predict's.
(function () {
  "use strict";
  const SCRIPT_URL = document.currentScript ? document.currentScript.src : location.href;
  const ROLES = ["teacher", "student", "baseline"];

  // ---- preprocessing: inference.preprocess, step for step ----

  // Python's round(): halves go to the even neighbour (round(2.5) == 2), unlike Math.round.
  function roundHalfEven(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // inference.ink_from_image for an RGBA canvas: float ink in [0,1], 1 = full ink. numpy works in
  // float32 here, so each step is rounded to float32 (Math.fround) to land on the same values.
  const f32 = Math.fround, LUMA = [f32(0.299), f32(0.587), f32(0.114)];
  function inkFromImage(rgba, width, height, C) {
    const n = width * height, ink = new Float32Array(n), lum = new Float32Array(n);
    let peak = 0;
    for (let i = 0; i < rgba.length && peak <= 1; i++) peak = Math.max(peak, rgba[i]);
    const scale = peak > 1 ? 255 : 1;  // Python: `if arr.max() > 1.0: arr /= 255.0`
    let minAlpha = 1;
    for (let i = 0; i < n; i++) {
      const [r, g, b] = [f32(rgba[4 * i] / scale), f32(rgba[4 * i + 1] / scale), f32(rgba[4 * i + 2] / scale)];
      lum[i] = f32(f32(f32(r * LUMA[0]) + f32(g * LUMA[1])) + f32(b * LUMA[2]));
      minAlpha = Math.min(minAlpha, f32(rgba[4 * i + 3] / scale));
    }
    if (minAlpha < 1) {  // transparency: the ink is the alpha channel times darkness
      for (let i = 0; i < n; i++) ink[i] = f32(f32(rgba[4 * i + 3] / scale) * f32(1 - lum[i]));
      return ink;
    }
    let sum = 0, lo = Infinity, hi = -Infinity;
    for (let i = 0; i < n; i++) { sum += lum[i]; lo = Math.min(lo, lum[i]); hi = Math.max(hi, lum[i]); }
    // A uniform image has no background to tell apart: dark means fully inked, light means blank.
    const invert = sum / n > 0.5 || f32(hi - lo) < f32(C.INK_THRESHOLD);
    for (let i = 0; i < n; i++) ink[i] = invert ? f32(1 - lum[i]) : lum[i];
    return ink;
  }

  // Pillow's resampling (libImaging/Resample.c) for an 8-bit image: separable, horizontal pass
  // first, fixed-point coefficients with PRECISION_BITS = 22, each pass rounded to uint8.
  const PRECISION_BITS = 32 - 8 - 2;
  const FILTERS = {
    bilinear: { support: 1, f: (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; } },
    lanczos: { support: 3, f: (x) => (-3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  };
  function sinc(x) { if (x === 0) return 1; x *= Math.PI; return Math.sin(x) / x; }

  function coefficients(inSize, outSize, filter) {
    const scale = inSize / outSize, filterscale = Math.max(scale, 1);
    const support = filter.support * filterscale, ksize = Math.ceil(support) * 2 + 1;
    const bounds = [], kk = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale, ss = 1 / filterscale;
      const xmin = Math.max(0, Math.trunc(center - support + 0.5));
      const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
      const k = new Array(ksize).fill(0);
      let ww = 0;
      for (let x = 0; x < xmax; x++) { k[x] = filter.f((x + xmin - center + 0.5) * ss); ww += k[x]; }
      for (let x = 0; x < xmax; x++) {
        const w = ww !== 0 ? k[x] / ww : k[x];
        k[x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
      }
      bounds.push([xmin, xmax]); kk.push(k);
    }
    return { bounds, kk };
  }

  function clip8(v) {
    if (v >= 2 ** (PRECISION_BITS + 8)) return 255;
    if (v <= 0) return 0;
    return Math.floor(v / 2 ** PRECISION_BITS);
  }

  function resize(src, w, h, newW, newH, filter) {
    // Pillow skips a pass whose size does not change.
    let img = src, iw = w;
    const vert = coefficients(h, newH, filter);
    const first = vert.bounds[0][0], last = vert.bounds[newH - 1][0] + vert.bounds[newH - 1][1];
    let rows = h, offset = 0;
    if (newW !== w) {
      const hor = coefficients(w, newW, filter);
      rows = last - first;
      const tmp = new Uint8Array(newW * rows);
      for (let y = 0; y < rows; y++) {
        for (let xx = 0; xx < newW; xx++) {
          const [xmin, xmax] = hor.bounds[xx], k = hor.kk[xx];
          let ss = 2 ** (PRECISION_BITS - 1);
          for (let x = 0; x < xmax; x++) ss += img[(y + first) * iw + x + xmin] * k[x];
          tmp[y * newW + xx] = clip8(ss);
        }
      }
      img = tmp; iw = newW; offset = first;
    }
    if (newH === h) return img;
    const out = new Uint8Array(newW * newH);
    for (let yy = 0; yy < newH; yy++) {
      const [ymin, ymax] = vert.bounds[yy], k = vert.kk[yy];
      for (let xx = 0; xx < newW; xx++) {
        let ss = 2 ** (PRECISION_BITS - 1);
        for (let y = 0; y < ymax; y++) ss += img[(y + ymin - offset) * iw + xx] * k[y];
        out[yy * newW + xx] = clip8(ss);
      }
    }
    return out;
  }

  // inference.preprocess: crop, fit into BOX x BOX, centre of mass to MNIST_COM in SIZE x SIZE,
  // normalise with MNIST_MEAN / MNIST_STD. null for a blank canvas (Python's BlankCanvas).
  function preprocess(rgba, width, height, C) {
    const ink = inkFromImage(rgba, width, height, C), threshold = f32(C.INK_THRESHOLD);  // numpy 2 compares in float32
    let top = height, bottom = -1, left = width, right = -1, inked = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (ink[y * width + x] > threshold) {
          inked++;
          top = Math.min(top, y); bottom = Math.max(bottom, y); left = Math.min(left, x); right = Math.max(right, x);
        }
      }
    }
    if (!inked) return null;
    bottom += 1; right += 1;
    // Notes are catalog keys (the page shows them in its language); Python's sentences are their English.
    const h = bottom - top, w = right - left, notes = [];
    if (inked / (width * height) > 0.5) notes.push("engine.inked");
    if (Math.max(h, w) < C.SMALL * Math.max(width, height)) notes.push("engine.small");

    // Longest side -> BOX px, aspect kept; Pillow's LANCZOS to shrink, BILINEAR to enlarge.
    const scale = C.BOX / Math.max(h, w);
    const newW = Math.max(1, roundHalfEven(w * scale)), newH = Math.max(1, roundHalfEven(h * scale));
    const crop = new Uint8Array(w * h);  // numpy's astype(uint8) truncates
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        crop[y * w + x] = Math.trunc(f32(Math.min(1, Math.max(0, ink[(y + top) * width + x + left])) * 255));
      }
    }
    const digit = resize(crop, w, h, newW, newH, scale < 1 ? FILTERS.lanczos : FILTERS.bilinear);

    // Place in SIZE x SIZE with the centre of mass at MNIST_COM, keeping the whole digit inside.
    let total = 0, my = 0, mx = 0;
    for (let y = 0; y < newH; y++) {
      for (let x = 0; x < newW; x++) { const v = digit[y * newW + x]; total += v; my += v * y; mx += v * x; }
    }
    const cy = total > 0 ? my / total : (newH - 1) / 2, cx = total > 0 ? mx / total : (newW - 1) / 2;
    const clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
    const y0 = clip(roundHalfEven(C.MNIST_COM - cy), 0, C.SIZE - newH);
    const x0 = clip(roundHalfEven(C.MNIST_COM - cx), 0, C.SIZE - newW);
    const image28 = new Uint8Array(C.SIZE * C.SIZE);
    for (let y = 0; y < newH; y++) {
      for (let x = 0; x < newW; x++) image28[(y + y0) * C.SIZE + x + x0] = digit[y * newW + x];
    }
    const tensor = new Float32Array(C.SIZE * C.SIZE);
    for (let i = 0; i < tensor.length; i++) {
      tensor[i] = Math.fround(Math.fround(Math.fround(image28[i] / 255) - C.MNIST_MEAN) / C.MNIST_STD);
    }
    return { image28, tensor, notes };
  }

  // ---- softmax, KL: inference.compare on the models' logits ----
  function logSoftmax(z, T) {
    const s = Array.from(z, (v) => v / T), m = Math.max(...s);
    const lse = m + Math.log(s.reduce((a, v) => a + Math.exp(v - m), 0));
    return s.map((v) => v - lse);
  }

  function compare(logits, T) {
    const out = { temperature: T };
    const logP = logits.teacher ? logSoftmax(logits.teacher, T) : null;
    for (const role of ROLES) {
      if (!logits[role]) continue;
      const logQ = logSoftmax(logits[role], T);
      out[role] = {
        p1: logSoftmax(logits[role], 1).map(Math.exp),
        pT: logQ.map(Math.exp),
        // KL(teacher || model) at T, as F.kl_div(log_q, log_p, log_target=True), batch of one
        kl_T: logP ? logP.reduce((a, lp, i) => a + Math.exp(lp) * (lp - logQ[i]), 0) : null,
      };
    }
    out.kl_T = out.student.kl_T;
    return out;
  }

  const argmax = (p) => p.reduce((best, v, i) => (v > p[best] ? i : best), 0);

  // ---- the runtime: ONNX Runtime Web, loaded once per page ----
  let ortPromise = null;
  function loadRuntime(cfg) {
    if (!ortPromise) {
      ortPromise = import(cfg.runtime_url).then((ort) => {
        ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation; one is plenty for 28x28
        ort.env.wasm.wasmPaths = { wasm: cfg.wasm_url };
        return ort;
      });
    }
    return ortPromise;
  }

  const modelCache = new Map();  // choice -> Promise<{sessions, description, roles}>
  function loadModels(cfg, choice) {
    if (!modelCache.has(choice)) {
      const loading = (async () => {
        const ort = await loadRuntime(cfg);
        // ?lang=: the manifest describes the models (and says what went wrong) in the page's language
        const response = await fetch(cfg.models_url + encodeURIComponent(choice) + ".json?lang=" + cfg.lang);
        const manifest = await response.json();
        if (!response.ok) throw new Error(manifest.error || response.statusText);
        const sessions = {};
        for (const role of ROLES) {
          if (manifest.roles[role]) {
            sessions[role] = await ort.InferenceSession.create(manifest.roles[role], { executionProviders: ["wasm"] });
          }
        }
        return { ort, sessions, description: manifest.models, roles: Object.keys(sessions) };
      })();
      loading.catch(() => modelCache.delete(choice));  // a later read tries again
      modelCache.set(choice, loading);
    }
    return modelCache.get(choice);
  }

  async function runInBrowser(cfg, choice, prepared, T) {
    const models = await loadModels(cfg, choice);
    const input = new models.ort.Tensor("float32", prepared.tensor, [1, 1, cfg.constants.SIZE, cfg.constants.SIZE]);
    const logits = {};
    for (const role of models.roles) {
      const output = await models.sessions[role].run({ [cfg.input_name]: input });
      logits[role] = Array.from(output[cfg.output_name].data);
    }
    const result = compare(logits, T);
    return Object.assign(result, { image: prepared.image28, notes: prepared.notes, models: models.description });
  }

  // ---- the pen: strokes on a canvas with pointer events ----
  // Ink is the Sketchpad's black brush, radius `radius`, round ends, on a transparent canvas.
  // onInk() after each change of ink, onPenUp(timeStamp) when the pen lifts. The Distill tab's
  // panel and the Continual tab's (continual.js) draw with it.
  function pen(canvas, radius, onInk, onPenUp) {
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#000"; ctx.fillStyle = "#000";
    ctx.lineWidth = 2 * radius;
    let down = false, last = null;
    const point = (e) => {
      const box = canvas.getBoundingClientRect();
      return [(e.clientX - box.left) * canvas.width / box.width, (e.clientY - box.top) * canvas.height / box.height];
    };
    canvas.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      canvas.setPointerCapture(e.pointerId);
      down = true; last = point(e);
      ctx.beginPath(); ctx.arc(last[0], last[1], radius, 0, 2 * Math.PI); ctx.fill();
      onInk();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!down) return;
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
      for (const ev of events.length ? events : [e]) {
        const p = point(ev);
        ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
        last = p;
      }
      onInk();
    });
    const up = (e) => {
      if (!down) return;
      down = false;
      onPenUp(e.timeStamp || performance.now());
    };
    canvas.addEventListener("pointerup", up);
    canvas.addEventListener("pointercancel", up);
    return { ctx, drawing: () => down };
  }

  // ---- the panel ----
  // The models can be picked (the page's dropdown) before the panel has mounted: kept until then.
  const pending = { models: null, temperature: null };
  function setModels(choice) {
    if (window.kdappDrawing.panel) window.kdappDrawing.panel.setModels(choice);
    else pending.models = choice;
  }
  // T set by the server (a link's ?T=8) fires no input event: the page's change event calls this.
  function setTemperature(T) {
    T = parseFloat(T);
    if (!(T > 0)) return;
    if (window.kdappDrawing.panel) window.kdappDrawing.panel.setTemperature(T);
    else pending.temperature = T;
  }

  // The page's language: the first of the browser's languages with a catalog (?lang= sets them,
  // static/language.js), else English, as Gradio chooses. Words come from cfg.catalogs (the app's
  // kdapp/ui/locales); numbers are formatted here, the same in every language.
  // ---- what both drawing panels show: a box's top digit and its three likeliest, the 28x28 view ----
  const pct = (p) => (p >= 0.001 ? (100 * p).toFixed(1) + "%" : (100 * p).toExponential(0) + "%");

  function topThree(box, p) {
    const order = p.map((v, i) => i).sort((a, b) => p[b] - p[a]).slice(0, 3);
    const top = document.createElement("div");
    top.className = "kd-top"; top.textContent = String(order[0]);
    box.append(top);
    for (const d of order) {
      const row = document.createElement("div");
      row.className = "kd-row";
      row.innerHTML = '<span class="kd-digit"></span><span class="kd-bar"><span></span></span><span class="kd-p"></span>';
      row.children[0].textContent = String(d);
      row.children[1].firstChild.style.width = (100 * p[d]).toFixed(1) + "%";
      row.children[2].textContent = pct(p[d]);
      box.append(row);
    }
  }

  function paint28(canvas, image, size) {
    const c = canvas.getContext("2d"), pixels = c.createImageData(size, size);
    for (let i = 0; i < size * size; i++) {
      const v = image ? image[i] : 0;
      pixels.data.set([v, v, v, 255], 4 * i);
    }
    c.putImageData(pixels, 0, 0);
  }

  function pickLanguage(catalogs, languages) {
    for (const tag of languages) {
      const base = String(tag || "").toLowerCase().split(/[-_]/)[0];
      if (catalogs[base]) return base;
    }
    return "en";
  }

  function mount(element, cfg) {
    const C = cfg.constants;
    const lang = pickLanguage(cfg.catalogs, [...(navigator.languages || []), navigator.language]);
    const words = cfg.catalogs[lang];
    cfg.lang = lang;
    // t("key", {slot: value}): the catalog's text with its {slots} filled.
    const t = (key, slots = {}) => (words[key] ?? cfg.catalogs.en[key] ?? key)
      .replace(/\{(\w+)\}/g, (m, name) => (name in slots ? String(slots[name]) : m));
    const names = { teacher: t("role.teacher"), student: t("role.student"), baseline: t("role.baseline") };
    element.dataset.lang = lang;
    for (const node of element.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
    for (const node of element.querySelectorAll("[data-t-aria]")) node.setAttribute("aria-label", t(node.dataset.tAria));
    const $ = (sel) => element.querySelector(sel);
    const canvas = $("#sketch canvas");
    const view28 = $("#digit-28 canvas"), note = $("#draw-note"), chart = $("#dist-plot");
    const hasWasm = typeof WebAssembly === "object" && !cfg.force_server;
    const state = {
      temperature: pending.temperature ?? readTemperature() ?? cfg.temperature,
      choice: pending.models ?? cfg.models,
      generation: 0, busy: false, again: false, frame: 0, penUpAt: null, result: null,
    };
    const api = {
      stats: { penUpToPaint: [], penUpToAnswers: [], paints: 0, serverCalls: 0 },
      mode: hasWasm ? "browser" : "server",
      preprocess: (rgba, w, h) => preprocess(rgba, w, h, C),
      compare, clear, setModels, setTemperature, read: schedule, result: () => state.result,
      ready: hasWasm ? loadModels(cfg, state.choice).then(() => true) : Promise.resolve(true),
    };
    element.kdappDrawing = api;
    window.kdappDrawing.panel = api;
    element.dataset.mode = api.mode;

    // Pen-up is read at once, not at the next frame: it is the answer the visitor waits for.
    const stroke = pen(canvas, cfg.brush_radius, schedule, (timeStamp) => {
      state.penUpAt = timeStamp;
      if (state.frame) { cancelAnimationFrame(state.frame); state.frame = 0; }
      readNow();
    });
    const ctx = stroke.ctx;
    $("#clear").addEventListener("click", clear);

    // The temperature control lives outside the panel: follow every move, not only the release.
    function readTemperature() {
      const input = document.querySelector(cfg.temperature_selector + " input[type=number]");
      const value = input ? parseFloat(input.value) : NaN;
      return Number.isFinite(value) && value > 0 ? value : null;
    }
    document.addEventListener("input", (e) => {
      if (e.target.closest && e.target.closest(cfg.temperature_selector)) {
        const value = parseFloat(e.target.value);
        if (Number.isFinite(value) && value > 0) setTemperature(value);
      }
    }, true);

    function setTemperature(T) { if (T !== state.temperature) { state.temperature = T; schedule(); } }
    function setModels(choice) {
      if (!choice || choice === state.choice) return;
      state.choice = choice;
      schedule();
    }

    // At most one reading per animation frame; a reading asked for while one runs comes after it.
    function schedule() {
      if (state.frame) return;
      state.frame = requestAnimationFrame(() => { state.frame = 0; readNow(); });
    }

    async function readNow() {
      if (state.busy) { state.again = true; return; }
      if (!hasWasm && stroke.drawing()) return;  // the server is asked once per stroke, at pen-up
      state.busy = true;
      const generation = state.generation, penUpAt = stroke.drawing() ? null : state.penUpAt;
      state.penUpAt = null;
      try {
        const t0 = performance.now();
        const prepared = preprocess(ctx.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width,
                                    canvas.height, C);
        if (!prepared) { render(null); return; }
        const t1 = performance.now();
        const result = hasWasm ? await runInBrowser(cfg, state.choice, prepared, state.temperature)
                               : await askServer();
        if (generation !== state.generation) return;  // cleared meanwhile: this digit is gone
        const t2 = performance.now();
        render(result);
        // where a reading's time goes (ms), for the bench: preprocess, models, drawing the answers
        api.stats.steps = [t1 - t0, t2 - t1, performance.now() - t2].map((t) => Math.round(t * 10) / 10);
        if (penUpAt !== null) {  // painted: the frame after the answers are in the page
          api.stats.penUpToAnswers.push(performance.now() - penUpAt);
          requestAnimationFrame(() => api.stats.penUpToPaint.push(performance.now() - penUpAt));
        }
      } catch (error) {
        if (generation === state.generation) showError(error);
      } finally {
        state.busy = false;
        if (state.again) {  // asked for while this one ran: now, or at the next frame while the pen moves
          state.again = false;
          if (stroke.drawing()) schedule(); else readNow();
        }
      }
    }

    async function askServer() {
      api.stats.serverCalls++;
      const answer = await cfg.server.predict_drawing(
        { image: canvas.toDataURL("image/png"), temperature: state.temperature, models: state.choice, lang });
      if (answer.error) throw new Error(answer.error);
      return answer.blank ? null : answer;
    }

    function clear() {
      state.generation++;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      render(null);
    }

    // ---- drawing the answers ----
    function render(result) {
      state.result = result;
      for (const role of ROLES) renderBox(role, result);
      render28(result ? result.image : null);
      renderNote(result);
      renderChart(result);
      api.stats.paints++;
      element.dataset.paints = String(api.stats.paints);
    }

    function renderBox(role, result) {
      const box = $("#" + role + "-pred"), label = $("#" + role + "-label");
      const present = !result || result[role];
      const p = result && result[role] ? result[role].p1 : null;
      if (result) label.textContent = present ? t("draw." + role) : t("draw.no_" + role);
      box.replaceChildren();
      if (!result) return;
      if (!p) { box.textContent = t("draw.none"); return; }
      topThree(box, p);
    }

    function render28(image) { paint28(view28, image, C.SIZE); }

    function line(text) {  // one line of the note: a catalog sentence, **bold** as in its Markdown
      const div = document.createElement("div");
      text.split("**").forEach((piece, i) => {
        const node = i % 2 ? document.createElement("b") : document.createTextNode(piece);
        if (i % 2) node.textContent = piece;
        if (piece) div.append(node);
      });
      return div;
    }

    // reports.prediction_note, plus the teacher's runner-ups at T: the dark knowledge KD passes on.
    function renderNote(result) {
      note.replaceChildren();
      if (!result) { note.append(line(t("draw.hint"))); note.classList.add("kd-hint"); return; }
      note.classList.remove("kd-hint");
      const T = result.temperature, Tg = fmt(T);
      const top = {};
      for (const role of ROLES) if (result[role]) top[role] = argmax(result[role].p1);
      if (result.teacher) {
        const agree = top.teacher === top.student;
        note.append(line(t("note.says", { teacher: top.teacher, student: top.student, T: Tg,
                                          agree: agree ? t("note.agree") : `**${t("note.disagree")}**`,
                                          kl: result.kl_T.toFixed(4) })));
        const pT = result.teacher.pT, order = pT.map((v, i) => i).sort((a, b) => pT[b] - pT[a]);
        note.append(line(t("draw.next", { T: Tg, second: order[1], p2: pct(pT[order[1]]), third: order[2],
                                          p3: pct(pT[order[2]]) })));
      } else {
        note.append(line(t("note.no_teacher", { student: top.student })));
      }
      note.append(line(t("note.models", { models: result.models })));
      if (result.baseline) {
        const kl = result.teacher ? t("note.baseline_kl", { T: Tg, kl: result.baseline.kl_T.toFixed(4) }) : "";
        note.append(line(t("note.baseline", { baseline: top.baseline, kl })));
      }
      for (const n of result.notes) note.append(line(t("note.note", { note: t(n) })));  // a key, or the server's words
    }
    // The lab describes the models in English; the shipped ones are named in the page's language.
    const fmt = (T) => String(Math.round(T * 1000) / 1000);  // Python's :g for the slider's values

    // Two panels of grouped bars: T = 1 (linear) and T (log scale, so the small probabilities
    // that carry the dark knowledge are as visible as the top one).
    const SVG = "http://www.w3.org/2000/svg";
    function el(name, attrs, text) {
      const node = document.createElementNS(SVG, name);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      return node;
    }
    function renderChart(result) {
      // Side by side when there is room; stacked on a phone, so the text stays readable.
      const narrow = chart.clientWidth > 0 && chart.clientWidth < 560;
      const W = narrow ? 400 : 760, left = 46, gap = 50, plotH = narrow ? 150 : 208, head = 76, foot = 36;
      const panelW = narrow ? W - left - 10 : (W - left - gap - 10) / 2;
      const H = narrow ? head + 2 * (plotH + foot) + 28 : head + plotH + foot;
      const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "kd-chart" });
      const roles = result ? ROLES.filter((r) => result[r]) : [];
      const T = result ? result.temperature : state.temperature;
      svg.append(el("text", { x: W / 2, y: 16, class: "kd-title" }, !result ? t("draw.chart_empty")
        : result.kl_T !== null ? t("plot.softmax.title", { T: fmt(T), kl: result.kl_T.toFixed(4) })
          : t("plot.softmax.no_teacher")));
      const second = narrow ? { x0: left, top: head + plotH + foot + 28 } : { x0: left + panelW + gap, top: head };
      const panels = [
        { key: "p1", title: t("plot.softmax.t1"), x0: left, top: head, y: (p) => p, ticks: [0, 0.5, 1],
          tick: (v) => String(v) },
        { key: "pT", title: t("draw.chart_t", { T: fmt(T) }), ...second,
          y: (p) => Math.max(0, (Math.log10(Math.max(p, 1e-6)) + 6) / 6), ticks: [1e-6, 1e-4, 1e-2, 1],
          tick: (v) => (v === 1 ? "1" : "1e" + Math.log10(v)) },
      ];
      for (const panel of panels) {
        const g = el("g", {}), top = panel.top;
        g.append(el("text", { x: panel.x0 + panelW / 2, y: top - 14, class: "kd-subtitle" }, panel.title));
        for (const v of panel.ticks) {
          const y = top + plotH * (1 - panel.y(v));
          g.append(el("line", { x1: panel.x0, x2: panel.x0 + panelW, y1: y, y2: y, class: "kd-grid" }));
          g.append(el("text", { x: panel.x0 - 4, y: y + 4, class: "kd-tick", "text-anchor": "end" }, panel.tick(v)));
        }
        const slot = panelW / 10, barW = (slot * 0.8) / Math.max(1, roles.length);
        for (let d = 0; d < 10; d++) {
          g.append(el("text", { x: panel.x0 + slot * (d + 0.5), y: top + plotH + 14, class: "kd-tick" }, String(d)));
          roles.forEach((role, k) => {
            const p = result[role][panel.key][d], hgt = plotH * panel.y(p);
            const bar = el("rect", { x: panel.x0 + slot * (d + 0.1) + k * barW, y: top + plotH - hgt, width: barW,
                                     height: hgt, fill: cfg.colors[role], class: "kd-bar-" + role });
            bar.append(el("title", {}, `${names[role]}: P(${d}) = ${pct(p)}`));
            g.append(bar);
          });
        }
        g.append(el("text", { x: panel.x0 + panelW / 2, y: top + plotH + 30, class: "kd-tick" }, t("axis.digit")));
        svg.append(g);
      }
      const step = narrow ? 125 : 150;
      roles.forEach((role, k) => {  // one legend row under the title, centred
        const x = W / 2 - (roles.length * step) / 2 + k * step;
        const legend = el("g", { class: "kd-legend" });
        legend.append(el("rect", { x, y: 30, width: 10, height: 10, fill: cfg.colors[role] }));
        legend.append(el("text", { x: x + 14, y: 39 }, names[role]));
        svg.append(legend);
      });
      chart.replaceChildren(svg);
    }

    function showError(error) {
      note.replaceChildren(line(t("draw.error", { reason: String(error.message || error) })));
    }

    render(null);
    return api;
  }

  window.kdappDrawing = { mount, pen, setModels, setTemperature, preprocess, compare, roundHalfEven, pickLanguage,
                          topThree, paint28, pct, scriptUrl: SCRIPT_URL };
})();
