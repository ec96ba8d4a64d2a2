// The Continual tab's drawing: the Distill tab's pen and preprocessing (drawing.js), and the
// prepared 28x28 digit sent to the server at each pen-up, where every strategy's model after the
// last task reads it (kdapp/ui/continual.py's `read_digit`, kdapp.lab.continual.read). A digit
// costs the server one request of 784 numbers and four small forward passes; running the models
// here would first download four of them per run (docs/continual.md says why we chose this).
// Words come from cfg.catalogs in the page's language, picked as drawing.js picks it; the server
// answers in that language too.
(function () {
  "use strict";

  // The run whose models read the drawing, "<id> <state>", set by the page's hidden box
  // (#continual-drawing-run) whenever the run on show changes or ends: kept until the panel mounts.
  let pending = null;
  function setRun(value) {
    if (window.kdappContinual.panel) window.kdappContinual.panel.setRun(value);
    else pending = value;
  }

  function mount(element, cfg) {
    const D = window.kdappDrawing, C = cfg.constants;
    const lang = D.pickLanguage(cfg.catalogs, [...(navigator.languages || []), navigator.language]);
    const t = (key) => cfg.catalogs[lang][key] ?? cfg.catalogs.en[key] ?? key;
    element.dataset.lang = lang;
    for (const node of element.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
    for (const node of element.querySelectorAll("[data-t-aria]")) node.setAttribute("aria-label", t(node.dataset.tAria));
    const $ = (sel) => element.querySelector(sel);
    const canvas = $("#continual-sketch canvas"), view28 = $(".kd-seen28 canvas"), note = $("#continual-draw-note");
    const state = { run: null, generation: 0, busy: false, again: false, result: null };
    const api = { setRun, clear, read, result: () => state.result, stats: { requests: 0, paints: 0 } };
    element.kdappContinual = api;
    window.kdappContinual.panel = api;

    const stroke = D.pen(canvas, cfg.brush_radius, () => {}, () => read());
    $("#continual-clear").addEventListener("click", clear);

    function setRun(value) {
      const run = String(value || "").split(" ")[0] || null;
      const changed = value !== state.runValue;
      state.runValue = value; state.run = run;
      if (changed && state.result !== null) read();  // another run, or the same one finished: ask again
    }

    function clear() {
      state.generation++;
      stroke.ctx.clearRect(0, 0, canvas.width, canvas.height);
      render(null, null);
    }

    async function read() {
      if (state.busy) { state.again = true; return; }
      const prepared = D.preprocess(stroke.ctx.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width,
                                    canvas.height, C);
      if (!prepared) { render(null, null); return; }
      state.busy = true;
      const generation = state.generation;
      try {
        api.stats.requests++;
        const answer = await cfg.server.read_digit({ run: state.run, image: Array.from(prepared.image28),
                                                    lang });
        if (generation === state.generation) render(answer, prepared);
      } catch (error) {
        if (generation === state.generation) render({ error: String(error.message || error) }, prepared);
      } finally {
        state.busy = false;
        if (state.again) { state.again = false; read(); }
      }
    }

    // ---- drawing the answers: one box per strategy, the 28x28, a note ----
    function render(answer, prepared) {
      state.result = answer;
      const probs = answer && answer.probs ? answer.probs : {};
      for (const name of cfg.strategies) renderBox(name, answer ? probs[name] : null, answer);
      render28(prepared ? prepared.image28 : null);
      note.replaceChildren();
      note.classList.toggle("kd-hint", !answer || !!answer.error);
      const lines = !answer ? [t("continual.draw.hint")]
        : answer.error ? [answer.error] : [answer.description, ...(answer.notes || [])];
      for (const text of lines) {
        const div = document.createElement("div");
        div.textContent = text;
        note.append(div);
      }
      api.stats.paints++;
      element.dataset.paints = String(api.stats.paints);
      element.dataset.run = answer && answer.run ? answer.run : "";
    }

    function renderBox(name, p, answer) {
      const box = element.querySelector(`[data-strategy="${name}"] .kd-pred`);
      box.replaceChildren();
      if (!answer || answer.error) return;
      if (!p) { box.textContent = t("continual.draw.missing"); return; }
      D.topThree(box, p);
    }

    function render28(image) { D.paint28(view28, image, C.SIZE); }

    render(null, null);
    const box = document.querySelector(cfg.run_selector + " textarea, " + cfg.run_selector + " input");
    setRun(pending ?? (box ? box.value : null));
    return api;
  }

  window.kdappContinual = { mount, setRun };
})();
