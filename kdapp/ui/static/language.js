// The page's language from ?lang=, over the browser's: Gradio picks its translations (and
// drawing.js its words) from navigator.language, and reads no ?lang= itself. Loaded first in
// <head> by kdapp.ui.i18n.LanguageScript, before Gradio boots. Without ?lang= it does nothing.
(function () {
  const TAGS = { en: "en", zh: "zh-CN" };  // Gradio has its own words for zh-CN, not for a bare zh
  const asked = (new URLSearchParams(window.location.search).get("lang") || "").toLowerCase().split(/[-_]/)[0];
  const tag = TAGS[asked];
  if (!tag) return;
  Object.defineProperty(Navigator.prototype, "language", { get: () => tag, configurable: true });
  Object.defineProperty(Navigator.prototype, "languages", { get: () => [tag], configurable: true });
})();
