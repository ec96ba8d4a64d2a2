"""python -m kdapp reproduce: our own numbers beside the published ones, whatever they show.

Regenerates markdown tables: the MNIST seed article's table, its small-data claim, Hinton et al.
(2015)'s MNIST setup, a temperature sweep and, on full MNIST, whether KD carries robustness to
other writers (the shipped drawing models and the articles' pair, on redrawn UCI digits).

- `--data sample` (results/reproduce.md): the bundled 8,000 / 2,000 sample, 3 seeds; --quick: 1 seed,
  few epochs. Both use the shipped teachers (trained by the full recipe; one is trained here only
  if its checkpoint is missing).
- `--data mnist` (results/reproduce-mnist.md): full MNIST, 60,000 / 10,000, the published numbers'
  own test set, with test errors as counts. The teachers are the shipped full-MNIST checkpoints
  (their recipes are in results/README.md); training them again here would cost most of an hour.

`--methods` (results/methods.md, or methods-mnist.md with `--data mnist`) compares the methods
since 2015 on one footing: the shipped teacher for that data, the seed table's recipe, 3 seeds.

Each table is written in every language of the page's catalogs (reproduce.md, reproduce.zh.md, ...):
the numbers are computed once, then each section's words are written per language (`_`, under
`i18n.speaking`), so the files differ in their words only.

Every finished cell (one model trained for one seed) is cached in a JSON file beside the output,
so an interrupted reproduction goes on where it stopped; `--fresh` starts over.

Here: the command. `common` holds what every table shares (the published numbers, plans, cells and
sentences), `report` the reproduction's sections, `hinton` its Hinton 2015 section, `methods` the
methods table and `techniques` the techniques table (English only).
"""
import json
from pathlib import Path

from kdapp.tools.reproduce.common import (HINTON_ERRORS, RESULTS_DIR, SEED_CLAIMS, Reproduction, _say, default_out,
                                         distill_cell, machine, methods_out)
from kdapp.tools.reproduce.hinton import _hinton_comments, _hinton_temperatures
from kdapp.tools.reproduce.methods import METHODS, method_cell, method_slug, run_methods
from kdapp.tools.reproduce.report import run_reproduce
from kdapp.tools.reproduce.techniques import run_techniques, techniques_out
from kdapp.ui.i18n import LANGUAGES, translated_file

# What the CLI and the tests use; each module's own docstring says what it holds.
__all__ = ["HINTON_ERRORS", "METHODS", "RESULTS_DIR", "SEED_CLAIMS", "Reproduction", "_hinton_comments",
           "_hinton_temperatures", "add_parser", "cmd_reproduce", "distill_cell", "machine", "method_cell", "method_slug",
           "run_methods", "run_reproduce"]


def cmd_reproduce(args):
    run, out_for = (run_methods, methods_out) if args.methods else (run_reproduce, default_out)
    if args.techniques:
        run, out_for = run_techniques, techniques_out
    pages, raw = run(args.quick, args.seeds, args.data, args.data_dir, fresh=args.fresh,
                     cached_only=args.cached_only,
                     cells_path=Path(args.out).with_suffix(".cells.json") if args.out else None)
    out = Path(args.out) if args.out else out_for(args.data)
    out.parent.mkdir(parents=True, exist_ok=True)
    pages = pages if isinstance(pages, dict) else {LANGUAGES[0]: pages}  # the techniques table is English only
    for lang, markdown in pages.items():
        translated_file(out, lang).write_text(markdown, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    print(pages[LANGUAGES[0]])
    _say(f"wrote {', '.join(str(translated_file(out, lang)) for lang in pages)} and {out.with_suffix('.json')}")


def add_parser(sub):
    p = sub.add_parser("reproduce", help="regenerate the results tables (seed article, Hinton 2015, T sweep)")
    p.add_argument("--data", default="sample", choices=["sample", "mnist"],
                   help="sample: results/reproduce.md; mnist: full MNIST, results/reproduce-mnist.md")
    p.add_argument("--data-dir", default="data", help="where `data import` put full MNIST")
    p.add_argument("--quick", action="store_true", help="shipped teachers, 1 seed, few epochs: a few minutes")
    p.add_argument("--methods", action="store_true",
                   help="the methods table instead (KD, DKD, DIST, LS-KD, Gram, born-again, deep supervision, "
                        "missing 3): results/methods.md, or methods-mnist.md")
    p.add_argument("--techniques", action="store_true",
                   help="the techniques table instead (T schedules, CTKD, progressive, mutual, shift ensemble, "
                        "collapse, adversarial): results/techniques.md, or techniques-mnist.md")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, quick 1)")
    p.add_argument("--fresh", action="store_true", help="ignore the cells cached by an earlier run")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: write the tables from the finished cells, marking the rest not run yet")
    p.add_argument("--out", default=None, help="default results/reproduce.md, or reproduce-mnist.md for mnist "
                                               "(methods.md, methods-mnist.md with --methods)")
    p.set_defaults(func=cmd_reproduce)
