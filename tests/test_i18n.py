"""English and 简体中文 (kdapp.ui.i18n): the catalogs agree, every key the code uses is in them,
the language is chosen as the browser and ?lang= say, and numbers read the same in both."""
import re
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from kdapp.evaluation import robustness
from kdapp.lab.lessons import LESSONS
from kdapp.tools import reproduce
from kdapp.training.continual import STRATEGIES
from kdapp.ui import continual, controls, i18n, lessons as told, plots, reports, reproduction_tab, run_report
from kdapp.ui.sentences import KNOWN, known
from kdapp.ui.i18n import CATALOGS

ROOT = Path(__file__).resolve().parents[1]
# Every place a key is written: _("key"), I18N("key"), ngettext("key", ...), drawing.js's t("key"),
# and the panel markup's data-t="key". As xgettext does, but for our markers.
SOURCES = [ROOT / "app.py", *sorted((ROOT / "kdapp" / "ui").glob("*.py")),
           *(ROOT / "kdapp" / "ui" / "static" / name for name in ("drawing.js", "continual.js")),
           *sorted((ROOT / "kdapp" / "tools" / "reproduce").glob("*.py"))]  # the results files the Reproduction tab shows
MARKERS = re.compile(r"""\b(?:_|I18N|t|ngettext)\(\s*f?["']([a-z][\w.\-]*)["']|data-t(?:-aria)?=["']([\w.\-]+)["']""")


def keys_in_code():
    found = {}
    for path in SOURCES:
        for match in MARKERS.finditer(path.read_text(encoding="utf-8")):
            key = match.group(1) or match.group(2)
            if not key.endswith((".", "_")) and "." in key:  # "schedule." + name: a family, checked below
                found.setdefault(key, path.name)
    return found


def slots(text):
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_both_catalogs_have_the_same_keys_and_the_same_slots():
    assert set(CATALOGS["en"]) == set(CATALOGS["zh"])
    for key, english in CATALOGS["en"].items():
        assert slots(CATALOGS["zh"][key]) == slots(english), key


def test_every_key_the_code_uses_is_in_both_catalogs():
    used = keys_in_code()
    assert len(used) > 150  # the scan finds the markers (a broken regex would find none and pass)
    for lang, catalog in CATALOGS.items():
        assert not {k: f for k, f in used.items() if k not in catalog}, lang


def test_every_key_a_family_builds_is_in_the_catalogs():
    """Keys made from names: controls, choices, lessons, phases, states, losses."""
    import app
    families = [f"control.{name}" for name in controls.CONTROL_TABLE] + [f"lesson.{k}.{part}" for k in LESSONS
                                                                    for part in ("title", "question", "literature")]
    families += [f"phase.{p}" for p in reports.PHASES] + [f"state.name.{s}" for s in reports.STATES]
    families += [f"runs.column.{c}" for c in reports.RUN_COLUMNS if c not in ("T", "α")]
    families += [key for _, key in KNOWN] + list(run_report.MODEL_NAMES.values())
    families += [f"continual.{kind}.{name}" for name in STRATEGIES for kind in ("strategy", "short")]
    families += [f"continual.scenario.{s}" for s in continual.SCENARIOS]
    families += [f"continual.data.{value}" for _, value in continual.choices()["data"]]
    families += [f"continual.column.{c}" for c in continual.RUN_COLUMNS if c not in STRATEGIES and c != "T"]
    families += [f"repro.seed.row.{role}" for role in (*reproduce.SEED_CLAIMS, "latency")]
    families += [f"repro.hinton.row.{role}" for role in reproduce.HINTON_ERRORS]
    families += [f"repro.method.{reproduce.method_slug(name)}.{part}" for name, _ in reproduce.METHODS
                 for part in ("name", "what")]
    families += [f"repro.robust.table.{name}" for name in robustness.TABLE_WORDS]
    families += [f"repro.robust.{label}" for label in ("shipped", "articles")]
    families += [label for name in controls.CHOICE_CONTROLS for label, _ in
                 ((c, c) if isinstance(c, str) else c for c in controls.extra_of(name, app.lab)["choices"])
                 if "." in label and not label[0].isdigit() and " " not in label]
    for lang, catalog in CATALOGS.items():
        assert [k for k in families if k not in catalog] == [], lang


def test_the_english_catalog_tells_the_lessons_as_the_lab_does():
    for key, lesson in LESSONS.items():
        assert CATALOGS["en"][f"lesson.{key}.title"] == lesson.title
        assert CATALOGS["en"][f"lesson.{key}.question"] == lesson.question
        assert CATALOGS["en"][f"lesson.{key}.literature"] == lesson.literature


def test_the_chinese_catalog_is_chinese_and_uses_the_articles_terms():
    zh = CATALOGS["zh"]
    # ... and model names (seed_teacher) and file names (results/default-run.json, a link to reproduce-mnist.zh.md)
    allowed = re.compile(r"\{\w+\}|`[^`]*`|<[^>]*>|%\{\w+\}|https?://\S+|\b(?:seed|mlp|lenet5)_\w+|[\w/.-]+\.(?:md|json)\b")
    for key, text in zh.items():
        words = re.findall(r"[A-Za-z]{4,}", allowed.sub("", text))
        # method and model names, file names and formulas may stay Latin; a sentence may not
        names = {"Hinton", "Vinyals", "Dean", "Izmailov", "Caruana", "Romero", "Zagoruyko", "Zhao", "Huang", "Beyer", "FitNets",
                 "MNIST", "softmax", "logit", "logits", "Adam", "DIST", "TCKD", "NCKD", "CTKD", "ONNX", "onnxruntime",
                 "hint", "gram", "attention", "self", "mutual", "born", "again", "fp32", "int8", "tensorboard",
                 "logdir", "Distilling", "knowledge", "neural", "network", "TensorBoard", "docs", "deployment",
                 "score", "extra", "text", "python", "kdapp", "reproduce", "Gram", "onnx", "Hoiem", "iCaRL",
                 "dropout", "Pearson", "Furlanello", "Zhang", "torch"}
        assert set(words) <= names, (key, words)
    text = " ".join(zh.values())
    for term in ("知识蒸馏", "教师模型", "学生模型", "温度", "软目标", "特征蒸馏", "基线", "随机种子", "采样区间"):
        assert term in text, term


@pytest.mark.parametrize("query, accept, expected", [
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"), (None, "en-US,en;q=0.9", "en"), ("en", "zh-CN,zh;q=0.9", "en"),
    ("zh", "en-US", "zh"), (None, "fr-FR,zh-TW;q=0.8,en;q=0.5", "zh"), (None, "fr,en;q=0.1,zh;q=0.5", "zh"),
    (None, None, "en"), ("xx", "de", "en"), ("ZH_cn", None, "zh")])
def test_the_language_is_the_query_s_else_the_browser_s(query, accept, expected):
    assert i18n.language(query, accept) == expected


def test_gettext_speaks_the_language_of_the_block_and_falls_back_to_english():
    assert isinstance(i18n.translation("zh"), i18n.gettext.NullTranslations)
    with i18n.speaking("zh"):
        assert i18n._("button.start") == "开始蒸馏" and i18n.current() == "zh"
        assert i18n._("no.such.key") == "no.such.key"
    assert i18n._("button.start") == "Start distillation"


def test_the_lab_s_sentences_are_translated_at_the_edge():
    with i18n.speaking("zh"):
        assert known("Run 0a1b2c3d queued, position 2.") == "实验 0a1b2c3d 已排队，位置 2。"
        assert known("Sweep queued: 15 runs at temperature = 1, 2, 4, 8, 16, each on seeds 0, 1, 2.") == \
            "扫描已排队：15 次实验，temperature = 1, 2, 4, 8, 16，每个值分别用随机种子 0, 1, 2。"
        assert known("Not started: the queue is full (5 runs waiting, at most 5); try again later") == \
            "未开始：队列已满（5 个实验在等待，上限 5）；请等部分实验完成后再试"
        assert known("lenet5 · 61,706 params · pretrained") == "lenet5 · 61,706 个参数 · 已预训练"
        assert known("something the engine said") == "something the engine said"  # left as it is


def test_links_keep_the_language():
    with i18n.speaking("zh"):
        assert "(/?run=0a1b2c3d&lang=zh)" in reports.run_link("0a1b2c3d")
    assert "(/?t=4)" in reports.link("x", "/?t=4")  # English, the fallback: the reader's own language


def test_the_reproduction_files_are_shown_in_the_page_s_language(tmp_path):
    """The Reproduction tab shows reproduce.zh.md on a Chinese page and reproduce.md otherwise; without
    the Chinese file (an older run), the English one, its headings translated under a note, no error."""
    english = tmp_path / "reproduce.md"
    english.write_text("# Our numbers beside the published ones\n\nData: **full MNIST**.\n", encoding="utf-8")
    assert reproduction_tab.reproduction_markdown(english) == english.read_text(encoding="utf-8")
    with i18n.speaking("zh"):
        shown = reproduction_tab.reproduction_markdown(english)
        assert shown.startswith("# 我们的结果与已发表结果对照") and "Data: **full MNIST**." in shown
        assert CATALOGS["zh"]["repro.note"] in shown
        chinese = i18n.translated_file(english, "zh")
        assert chinese == tmp_path / "reproduce.zh.md"
        chinese.write_text("# 我们的结果与已发表结果对照\n\n数据：**完整 MNIST**。\n", encoding="utf-8")
        assert reproduction_tab.reproduction_markdown(english) == chinese.read_text(encoding="utf-8")
    assert reproduction_tab.reproduction_markdown(english) == english.read_text(encoding="utf-8")
    assert i18n.translated_file(english, "en-GB") == english


NUMBER = re.compile(r"[-+±−]?\d(?:[\d,]*\d)?(?:\.\d+)?(?:e[-+]?\d+)?%?")


def numbers(text):
    """The numbers of a text as written ("98.25%", "+1.24", "2,000"), in any order: a sentence
    may put them in another order in another language, never format them otherwise."""
    return sorted(NUMBER.findall(text))


def finished_run():
    config = dict(teacher="lenet5_wide", student="lenet5", temperature=4.0, alpha=0.7, epochs=5, train_fraction=0.1,
                  loss="kd", feature_loss="none", feature_weight=0.0, seed=0, data="sample")
    metrics = dict(teacher_acc=0.9912, student_acc=0.9825, baseline_acc=0.9701, test_samples=2000, seconds=83.4,
                   data="sample")
    return dict(id="0a1b2c3d", state="finished", config=config, metrics=metrics, warnings=[], has_checkpoints=True,
                device="cpu", data="sample")


def both(build):
    out = {}
    for lang in ("en", "zh"):
        with i18n.speaking(lang):
            out[lang] = build()
    return out


def test_numbers_and_units_read_the_same_in_both_languages():
    run = finished_run()
    fidelity = {"temperature": 4.0, "test_samples": 2000, "accuracy": {"student": 0.9825, "baseline": 0.9701},
                "agreement": {"student": 0.9871, "baseline": 0.9763},
                "kl": {r: {"T1": 0.0123, "T": 0.0456} for r in ("student", "baseline")},
                "fixed": {"count": 40}, "broken": {"count": 15},
                "per_class": {r: [0.99] * 10 for r in ("teacher", "student", "baseline")}}
    table = {"rows": [{"model": "KD student", "arch": "lenet5", "params": 61706, "size_mb": 0.25, "test_acc": 0.9825,
                       "latency_ms": 0.31}], "metrics": run["metrics"], "config": run["config"]}
    for build in (lambda: reports.status(run, True), lambda: run_report.fidelity_markdown(fidelity),
                  lambda: run_report.comparison_table(table), lambda: reports.gain_text(run["metrics"]),
                  lambda: reports.runs_rows([run])["data"][0]):
        texts = both(build)
        assert numbers(str(texts["en"])) == numbers(str(texts["zh"])), texts
        assert texts["en"] != texts["zh"]  # and the words did change
    gain = both(lambda: reports.gain_text(run["metrics"]))
    assert gain["en"].startswith("+1.24 ± ") and gain["zh"].startswith("+1.24 ± ")
    assert "98.25%" in both(lambda: reports.status(run, True))["zh"]


def test_a_run_taught_by_an_ensemble_reports_the_ensemble_in_both_languages():
    run = finished_run()
    run["metrics"].update(targets_readings=25, targets_temperature=20.0, targets_acc=0.994, student_targets_agreement=0.9911,
                          baseline_targets_agreement=0.9863)
    texts = both(lambda: reports.status(run, True))
    assert numbers(texts["en"]) == numbers(texts["zh"])
    for text in texts.values():
        assert all(n in text for n in ("25", "T=20", "99.40%", "99.11%", "98.63%"))
    assert "ensemble of 25 readings" in texts["en"] and "25 个读数组成的集成" in texts["zh"]
    del run["metrics"]["baseline_targets_agreement"]  # a run without a baseline
    assert "98.63%" not in reports.status(run, True) and "99.11%" in reports.status(run, True)
    assert "ensemble" not in reports.status(finished_run(), True)  # one teacher, one reading


def test_figures_have_their_titles_and_axes_in_the_language():
    snapshot = {"id": "x", "config": {"loss": "kd"}, "accuracy": {"epoch": [1, 2], "teacher": [0.99, 0.99],
                                                                 "student": [0.97, 0.98], "baseline": [0.96, 0.97]}}
    figures = both(lambda: plots.accuracy_figure(snapshot))
    assert figures["en"].layout.title.text == "Test accuracy per epoch"
    assert figures["zh"].layout.title.text == "每轮的测试准确率"
    assert [d.name for d in figures["zh"].data] == ["教师模型", "蒸馏学生模型", "基线模型（无蒸馏）"]
    assert [d.y for d in figures["zh"].data] == [d.y for d in figures["en"].data]
    empty = both(lambda: plots.loss_figure(None))
    assert empty["zh"].layout.title.text == "训练损失"


def test_lessons_speak_the_language():
    runs = [{"state": s} for s in ("finished", "running")]
    text = both(lambda: told.progress("alpha", runs))
    assert text["zh"].startswith("**该多信任教师模型（α）**：") and numbers(text["en"]) == numbers(text["zh"])


def test_bold_in_the_catalogs_renders_in_markdown():
    """CommonMark closes ** only when it is right-flanking: "**状态：**空闲" stays literal, because the
    closing ** follows punctuation and precedes a letter. Keep CJK punctuation outside the bold."""
    import unicodedata

    def kind(ch):
        if ch is None or ch.isspace():
            return "space"
        return "punct" if unicodedata.category(ch)[0] in "PS" and ch not in "{}" else "letter"

    for lang, catalog in CATALOGS.items():
        for key, text in catalog.items():
            runs = [m.start() for m in re.finditer(r"\*\*", text)]
            for i, at in enumerate(runs):
                before = kind(text[at - 1] if at else None)
                after = kind(text[at + 2] if at + 2 < len(text) else None)
                left = after != "space" and (after != "punct" or before != "letter")
                right = before != "space" and (before != "punct" or after != "letter")
                assert (left if i % 2 == 0 else right), (lang, key, text[max(0, at - 8):at + 10])


# ---- the engine's and the lab's sentences, made by their own code, in Chinese at the UI's edge ----
CJK = re.compile(r"[\u4e00-\u9fff]")


class Enough(Exception):
    """Raised by a test's emit once it has the sentences it came for: no training beyond them."""


def run_until(job, last):
    """The phase, data and step events of `job(emit)` up to the first whose type or phase is `last`."""
    events = []

    def emit(event):
        events.append(event)
        if last in (event["type"], event.get("phase")):
            raise Enough

    with pytest.raises(Enough):
        job(emit)
    return events


def engine_sentences(tmp_path):
    """A run's live messages, validation errors and the drawing's errors, as the engine and the lab
    write them: a distillation run and a continual run on the sample, each stopped at its training."""
    from types import SimpleNamespace

    from kdapp import data as data_lib
    from kdapp.config import RunConfig
    from kdapp.evaluation import inference
    from kdapp.lab import continual as lab_continual, jobs, live_run, store
    from kdapp.training import continual as engine_continual, targets, teachers, train

    sentences = []
    distill = run_until(lambda emit: train.run(RunConfig(data="sample", epochs=1, train_fraction=0.1), emit=emit,
                                               runs_dir=tmp_path, data_dir="data"), "distilling")
    continual = run_until(lambda emit: engine_continual.run_job(
        engine_continual.ContinualConfig(tasks=2, epochs=1, data="sample"), emit, lambda: False, "data"),
        "continual_step")
    dataset = data_lib.load("sample", "data")
    trained = run_until(lambda emit: train.train_teacher("lenet5", dataset, 2, emit=emit), "phase")
    live = live_run.LiveRun({"id": "0a1b2c3d", "config": {"epochs": 1}, "warnings": []})
    sentences.append(live.record["message"])  # "starting"
    for event in distill + continual + trained + [events_teacher_epoch()]:
        if event["type"] in ("phase", "data", "continual_step", "teacher_epoch"):
            live.apply(event)
            sentences.append(live.record["message"])
    shifted = []  # the phase of a shift-ensemble teacher (kdapp.training.targets); any model will do
    targets.cached_teacher_logits(RunConfig(teacher_shifts=1), [torch.nn.Flatten()], None, dataset,
                                  torch.arange(10), shifted.append, lambda: False, None)
    sentences += [e["message"] for e in shifted]
    try:
        teachers.with_deadline(lambda: False, 0)()
    except teachers.Cancelled as e:
        sentences.append(f"cancelled: {e}")  # the worker's end message (kdapp.lab.worker)
    sentences += ["cancelled: stopped", store.REQUEUED, store.GAVE_UP.format(n=2), jobs.WORKER_DIED_REQUEUED]
    for bad in ({"temperature": 100}, {"alpha": "x"}, {"epochs": 1.5}, {"loss": "nope"},
                {"feature_loss": "attention", "feature_weight": 0.0}, {"teacher_shifts": 1, "consistent": True}):
        with pytest.raises(ValueError) as e:
            RunConfig.from_dict(bad).validate()
        sentences.append(f"Not started: {e.value}")
    sentences.append(lab_continual.start(None, {"strategies": ()}, "owner")[1])
    runs = {"a": None, "b": {"config": {"kind": "continual"}, "state": "running"},
            "c": {"config": {"kind": "continual"}, "state": "finished", "has_checkpoints": False}}
    for run_id in runs:
        with pytest.raises(LookupError) as e:
            lab_continual.models(SimpleNamespace(run=runs.get), run_id)
        sentences.append(str(e.value).strip("'\""))
    with pytest.raises(inference.CanvasError) as e:
        inference.prepared_digit([0, 1])
    sentences.append(str(e.value))
    small = np.zeros((280, 280), dtype=np.uint8)
    small[100:104, 100:104] = 255
    sentences += inference.preprocess(small).notes
    return sentences


def events_teacher_epoch():
    from kdapp import events
    return events.teacher_epoch(3, 10, 0.9871)


def test_the_engine_s_sentences_are_chinese_on_a_chinese_page(tmp_path):
    sentences = engine_sentences(tmp_path)
    assert len(sentences) > 20
    with i18n.speaking("zh"):
        for sentence in sentences:
            text = known(sentence)
            assert CJK.search(text), sentence  # a KNOWN pattern matched it: a change of wording fails here
            assert numbers(text) == numbers(sentence), (sentence, text)
            assert not re.search(r"\b(?:the|is|of|to|from|and|must|run|task)\b", text), (sentence, text)
    with i18n.speaking("en"):
        assert not any(CJK.search(known(s)) for s in sentences)


def test_phase_sentences_written_after_training_are_in_known():
    """Sentences the engine writes only after training (or in a mode a short test does not reach):
    each must stand in its code as KNOWN knows it."""
    import inspect

    from kdapp.lab import continual as lab_continual, jobs, notebook, run_models, worker
    from kdapp.training import qat, train
    sources = {"comparing the students with the teacher on the test digits": train.run,
               "saving the students": train.run, "generation 0: {config.student} on the labels alone": train.born_again,
               "generation {k} of {config.generations} distils from generation {k - 1}": train.born_again,
               "int8: calibrating on training digits and measuring size and speed": qat,
               "these models were trained task-incrementally": lab_continual._read,
               "finished (command line)": notebook, "failed: the run could not be started": jobs,
               "failed: the run's process ended unexpectedly (exit code ": jobs, '"out of memory"': worker.main,
               "its worker process died; queued again to resume after its last finished task": jobs,
               "its worker process died; queued again to resume from its last finished epoch": jobs,
               "is a continual run: its models read digits in the Continual tab": run_models}
    examples = {"generation 0: {config.student} on the labels alone": "generation 0: lenet5 on the labels alone",
                "generation {k} of {config.generations} distils from generation {k - 1}":
                "generation 2 of 3 distils from generation 1",
                "these models were trained task-incrementally": "these models were trained task-incrementally: "
                "they expect to be told the task",
                "failed: the run's process ended unexpectedly (exit code ": "failed: the run's process ended "
                "unexpectedly (exit code -9)", '"out of memory"': "failed: out of memory",
                "is a continual run: its models read digits in the Continual tab":
                "run 0a1b2c3d is a continual run: its models read digits in the Continual tab"}
    with i18n.speaking("zh"):
        for sentence, code in sources.items():
            assert sentence in inspect.getsource(code), sentence
            assert CJK.search(known(examples.get(sentence, sentence))), sentence


# ---- the engine's rarer sentences (README's "What is left"), each made by the engine's own code ----
def rare_sentences(tmp_path, monkeypatch):
    """The QAT phase, a replaced teacher's warnings, several continual problems at once, the drawing's
    models and notes, and the common ways a run fails: memory, the data folder, a damaged
    checkpoint or resume point, a full disk."""
    import errno
    import os
    from types import SimpleNamespace

    import torch

    from kdapp import checkpoints, data as data_lib, models
    from kdapp.config import RunConfig
    from kdapp.lab import continual as lab_continual, facade
    from kdapp.training import qat, resume, teachers

    sentences = []
    dataset = data_lib.load("sample", "data")
    config = RunConfig(data="sample", teacher="lenet5_wide", student="lenet5")
    for kind, teachers_, epochs in (("student", (models.build("lenet5_wide"),), qat.QAT_EPOCHS),
                                    ("baseline", (), 1)):
        sentences += [e["message"] for e in run_until(lambda emit: qat.fine_tune(
            models.build("lenet5"), "lenet5", dataset, config, teachers_, epochs=epochs, emit=emit, label=kind),
            "quantization-aware training")]
    fp32 = SimpleNamespace(config=config, teacher=None, student=models.build("lenet5"), baseline=None)
    with pytest.raises(ValueError) as e:
        qat.deploy(fp32, dataset, "qat", tmp_path)
    sentences.append(f"failed: {e.value}")

    # a teacher replaced: damaged, then trained on other data
    warnings = []
    emit = lambda event: warnings.append(event["message"]) if event["type"] == "warning" else None  # noqa: E731
    path = checkpoints.teacher_path(tmp_path / "teachers", "mlp_400", "sample")
    path.parent.mkdir()
    path.write_bytes(b"not a checkpoint")
    assert teachers.get_teacher("mlp_400", dataset, tmp_path, emit) is None
    checkpoints.save(path, models.build("mlp_400"), "mlp_400", data="mnist")
    assert teachers.get_teacher("mlp_400", dataset, tmp_path, emit) is None
    sentences += warnings

    # checkpoints that cannot be read, a resume point that cannot be read or written
    foreign, misfit = tmp_path / "foreign.pt", tmp_path / "misfit.pt"
    torch.save({"weights": 1}, foreign)
    torch.save({"arch": "lenet5", "model": models.build("mlp_30").state_dict()}, misfit)
    for bad in (tmp_path / "missing.pt", path.with_name("damaged.pt"), foreign, misfit):
        if bad.name == "damaged.pt":
            bad.write_bytes(b"\x00" * 10)
        with pytest.raises(checkpoints.CheckpointError) as e:
            checkpoints.load(bad)
        sentences.append(f"failed: {e.value}")
    point = resume.ResumePoint(path.with_name("damaged.pt"))
    with pytest.raises(resume.ResumeError) as e:
        point.load(config)
    sentences.append(f"failed: {e.value}")
    stale = path.with_name("stale.pt")  # a point made before its teacher was retrained
    torch.save({"format": resume.FORMAT, "config": {**config.to_dict(), "teacher_weights": ["before"]}}, stale)
    with pytest.raises(resume.ResumeError) as e:
        resume.ResumePoint(stale).load({**config.to_dict(), "teacher_weights": ["after"]})
    sentences.append(f"failed: {e.value}")

    def full(path, write):  # as tests/full_disk_worker.py: the disk fills up as the file is written
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(checkpoints, "atomic_write", full)
    with pytest.raises(resume.ResumeError) as e:
        resume.ResumePoint(tmp_path / "resume.pt").save({"epoch": 1})
    sentences.append(f"failed: {e.value}")
    with pytest.raises(resume.ResumeError) as e:  # a continual run's point, saved after a task
        resume.ResumePoint(tmp_path / "resume.pt").save({"epoch": 3, "after": "task 1 of replay"})
    sentences.append(f"failed: {e.value}")
    with pytest.raises(OSError) as e:
        checkpoints.atomic_save({}, tmp_path / "student.pt")
    sentences.append(f"failed: {e.value}")
    with pytest.raises(OSError) as e:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "student.pt"))  # as open() says it
    sentences.append(f"failed: {e.value}")

    # memory: torch's allocator, numpy's, and Python's own MemoryError (the worker words it)
    with pytest.raises(RuntimeError) as e:
        torch.empty(2 ** 50, dtype=torch.uint8)
    sentences.append(f"failed: {e.value}")
    with pytest.raises(MemoryError) as e:
        np.empty(2 ** 50)
    sentences.append(f"failed: {e.value}")
    sentences.append("failed: out of memory")

    # no full MNIST in the data folder, and no way to download it
    with pytest.raises(RuntimeError) as e:
        data_lib.load_mnist(str(tmp_path / "nowhere"), download=False)  # a str, as the worker gets it
    sentences.append(f"failed: {e.value}")

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
    import torchvision.datasets
    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(RuntimeError) as e:
        data_lib.load_mnist(str(tmp_path / "nowhere"))
    sentences.append(f"failed: {e.value}")

    # several continual problems at once, and settings nobody knows
    sentences.append(lab_continual.start(None, {"tasks": 3, "scenario": "x", "strategies": ("lwf", "nope"),
                                                "memory": 5, "epochs": 0, "temperature": 100, "lr": 2.0,
                                                "time_limit_s": 0, "arch": "nope"}, "owner")[1])
    sentences.append(lab_continual.start(None, {"nope": 1}, "owner")[1])
    with pytest.raises(ValueError) as e:
        RunConfig.from_dict({"nope": 1, "neither": 2})
    sentences.append(f"Not started: {e.value}")

    # the drawing's models: the shipped ones, a run's (its label and its description), and the notes
    shipped = checkpoints.shipped_drawing_paths()
    record = {"id": "0a1b2c3d", "state": "finished", "has_checkpoints": True,
              "config": {"teacher": "lenet5_wide", "student": "lenet5", "temperature": 4.0, "alpha": 0.7,
                         "quantize": "ptq"},
              "metrics": {"student_acc": 0.9825}, "extra": {"paths": {k: str(v) for k, v in shipped.items()}}}
    lab = SimpleNamespace(drawing_dir=None, run=lambda run_id: record if run_id == record["id"] else None,
                          store=SimpleNamespace(list=lambda **kw: [record]))
    sentences += [label for label, _ in facade.Lab.drawing_choices(lab)]
    described = [facade.Lab._load_models(lab, choice)[3] for choice in ("shipped", record["id"])]
    sentences += described + [f"{described[1]}, int8 students"]  # Lab._load_models's int8 description
    trio = facade.Lab._load_models(lab, "shipped")

    def models_(choice):
        if choice != "shipped":
            raise LookupError(f"there is no run {choice}")
        return trio
    lab.models = models_
    lab.models_or_shipped = lambda choice, notes: facade.Lab.models_or_shipped(lab, choice, notes)
    small = np.zeros((280, 280), dtype=np.uint8)
    small[100:104, 100:104] = 255
    sentences += facade.Lab.predict(lab, small, 100, "ffffffff")["notes"]
    return sentences


def test_the_engine_s_rarer_sentences_are_chinese_on_a_chinese_page(tmp_path, monkeypatch):
    sentences = rare_sentences(tmp_path, monkeypatch)
    assert len(sentences) > 25
    english = re.compile(r"\b(?:the|is|of|to|from|and|must|run|trained|"
                         r"checkpoint|only|got|unknown|failed|started|consistent|allocate|space|could|not)\b")
    with i18n.speaking("zh"):
        for sentence in sentences:
            text = known(sentence)
            assert CJK.search(text), sentence
            # words that stay Latin are names and paths (lenet5, mnist, python -m kdapp ...), not sentences
            # and torch's own account of a misfit, after the frame
            frame = re.sub(r"'[^']*'|/\S+|python -m kdapp .*|\(\w+Error\)|Error\(s\) in loading[\s\S]*", "", text)
            assert not english.search(frame), (sentence, text)
    with i18n.speaking("en"):
        assert not any(CJK.search(known(s)) for s in sentences)


def test_the_status_line_speaks_of_warnings_and_data_in_the_language(tmp_path):
    """A finished run's warnings (here a damaged teacher replaced, as kdapp.training.teachers warns)
    and its data ("sample") read in Chinese on a Chinese page."""
    from kdapp import checkpoints, data as data_lib
    from kdapp.training import teachers
    warnings = []
    path = checkpoints.teacher_path(tmp_path / "teachers", "mlp_400", "sample")
    path.parent.mkdir()
    path.write_bytes(b"not a checkpoint")
    teachers.get_teacher("mlp_400", data_lib.load("sample", "data"), tmp_path,
                         lambda event: warnings.append(event["message"]))
    run = dict(finished_run(), warnings=warnings, data="sample")
    text = both(lambda: reports.status(run, True))
    assert "training a new mlp_400 teacher instead" in text["en"] and " on cpu, sample data" in text["en"]
    assert "改为训练一个新的 mlp_400 教师模型" in text["zh"] and "数据：MNIST 样本" in text["zh"]
    assert not re.search(r"\b(?:training|sample|unreadable)\b", re.sub(r"/\S+", "", text["zh"])), text["zh"]


def test_a_stopped_run_says_so_once_and_another_ending_keeps_its_reason():
    stopped = dict(finished_run(), state="cancelled", message="cancelled: stopped", metrics={})
    texts = both(lambda: reports.status(stopped, True))
    assert "Stopped: run 0a1b2c3d** (your run) before it finished" in texts["en"], texts["en"]
    assert "cancelled" not in texts["en"] and "已停止：实验 0a1b2c3d" in texts["zh"]
    failed = dict(stopped, state="failed", message="boom")
    assert "boom" in reports.status(failed, True)


def test_a_finished_run_says_whose_it_is():
    for mine, who in ((True, "(your run)"), (False, "(a run started by another visitor)")):
        assert f"**Finished: run 0a1b2c3d** {who} in" in reports.status(finished_run(), mine)
    assert "（其他访客开始的实验）" in both(lambda: reports.status(finished_run(), False))["zh"]
