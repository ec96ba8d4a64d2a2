"""Guided lessons: which runs each queues (kdapp.lab.lessons), and how their results are told
(kdapp.ui.lessons, in English here)."""
from kdapp.config import DEFAULTS, RunConfig
from kdapp.lab import lessons
from kdapp.ui import lessons as told


def summary(key, runs):
    lesson = lessons.LESSONS[key]
    return told.summary(key, lesson, lessons.cells(lesson, runs), lessons.measured_metrics(lesson, runs))


def finished(config, **metrics):
    return {"state": "finished", "config": config.to_dict(), "metrics": {"test_samples": 2000, **metrics}}


def gain_runs(lesson, gains):
    """{value: [gain per seed]} -> finished runs of the lesson's configs with those gains (points)."""
    runs = []
    for config in lessons.configs(lesson, DEFAULTS):
        g = gains[getattr(config, lesson.vary)][config.seed]
        runs.append(finished(config, student_acc=0.9 + g / 100, baseline_acc=0.9))
    return runs


def test_there_are_at_least_four_lessons_each_on_several_seeds():
    assert {"temperature", "scarce", "alpha", "missing-3"} <= set(lessons.LESSONS)
    for lesson in lessons.LESSONS.values():
        configs = lessons.configs(lesson, DEFAULTS)
        assert len(configs) == len(lesson.values) * 3 and {c.seed for c in configs} == {0, 1, 2}
        assert "Hinton" in lesson.literature


def test_each_lesson_changes_only_what_it_studies():
    base = RunConfig(student="mlp_30", epochs=10, train_fraction=0.2)
    for config in lessons.configs(lessons.LESSONS["temperature"], base):
        assert config.replace(temperature=base.temperature, seed=0) == base
    missing = lessons.configs(lessons.LESSONS["missing-3"], base)
    assert {(c.omit_class, c.temperature, c.alpha, c.augment) for c in missing} == {(3, 20.0, 0.9, False)}
    # Scarce labels: each run sees as many digits as the form's run (10 epochs of 20%).
    scarce = lessons.configs(lessons.LESSONS["scarce"], base)
    assert {(c.train_fraction, c.epochs) for c in scarce} == {(0.1, 20), (1.0, 2)}
    assert {(c.train_fraction, c.epochs) for c in lessons.configs(lessons.LESSONS["scarce"], DEFAULTS)} == \
        {(0.1, 40), (1.0, 4)}


def test_a_clear_best_temperature_is_named_with_the_numbers():
    lesson = lessons.LESSONS["temperature"]
    text = summary("temperature", gain_runs(lesson, {1.0: [0.1, 0.2, 0.0], 4.0: [3.5, 4.0, 3.6],
                                                       16.0: [1.0, 1.2, 0.9]}))
    assert "3 seeds each" in text and "+3.70 ± 0.66 at T = 4" in text
    assert "the gain is largest at T = 4, beyond the noise" in text and "Hinton" in text and "146 test errors" in text


def test_an_effect_inside_the_noise_is_called_so():
    lesson = lessons.LESSONS["alpha"]
    text = summary("alpha", gain_runs(lesson, {0.1: [0.5, -0.4, 0.2], 0.5: [0.3, 0.9, -0.5],
                                                       0.9: [1.0, -0.2, 0.4]}))
    assert "No setting's gain is beyond the noise" in text and "inside the noise" in text


def test_a_setting_beaten_beyond_the_noise_is_named_even_when_the_best_two_tie():
    # The shape a visitor met: T = 1 teaches clearly less, T = 4 and T = 16 tie. "Inside the noise"
    # for all three would hide the one real finding.
    lesson = lessons.LESSONS["temperature"]
    text = summary("temperature", gain_runs(lesson, {1.0: [0.1, 0.6, -0.3], 4.0: [3.5, 4.0, 3.6],
                                                       16.0: [4.6, 4.2, 4.9]}))
    assert "the gain is larger at T = 4 than at T = 1, at T = 16 than at T = 1, beyond the noise" in text
    assert "T = 16 than at T = 4" not in text and "cannot rank those settings" in text
    assert "the differences between the settings are inside the noise" not in text


def test_identical_runs_count_once_in_a_lesson():
    lesson = lessons.LESSONS["alpha"]
    run = gain_runs(lesson, {a: [1.0, 1.0, 1.0] for a in lesson.values})[0]
    text = summary("alpha", [run, dict(run)])
    assert "1 seed each" in text and "no interval over seeds" in text


def test_the_missing_three_lesson_reports_the_held_out_digits():
    lesson = lessons.LESSONS["missing-3"]
    runs = [finished(c, student_acc=0.95, baseline_acc=0.88, omitted_class=3, student_omitted_acc=s,
                     baseline_omitted_acc=0.0, student_omitted_acc_adjusted=0.96, baseline_omitted_acc_adjusted=0.36)
            for c, s in zip(lessons.configs(lesson, DEFAULTS), (0.83, 0.80, 0.86))]
    text = summary("missing-3", runs)
    assert "83.0% of the test 3s and the baselines 0.0%" in text and "beyond the noise" in text
    assert "996 (98.6%)" in text


def test_progress_counts_the_runs():
    runs = [{"state": s} for s in ("finished", "running", "queued", "failed")]
    assert "1 of 4 runs finished, 1 ended without a result" in told.progress("alpha", runs)
