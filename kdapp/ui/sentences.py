"""English sentences made below the UI, in the page's language: `known(text)` maps each sentence
it recognises (KNOWN: a regular expression -> a catalog key, its named groups filling the key's
slots) to the key's text in the language spoken now (kdapp.ui.i18n), and leaves any other as it is.

The lab, the engine and the tools write English (they import no catalog); the page passes what it
shows of theirs through `known`. tests/test_i18n.py makes these sentences with the engine's own code,
so a change of wording fails there: add a pattern and a key when you add a sentence the page shows.
"""
import re

from kdapp.ui.i18n import _


# English sentences made below the UI -> their key; named groups fill the key's slots.
# The engine's rarer sentences: the QAT phase, warnings, validation problems, descriptions of the
# drawing's models, and the common ways a run fails (memory, data, checkpoints, disk). Tried before
# KNOWN's others, whose broader patterns (a run's description, "failed: ...") would match them first.
RARE = (
    # int8: quantization-aware fine-tuning (kdapp.training.qat) and its refusal
    (r"^int8 fine-tuning of the student \((?P<how>KD from [\w.+]+|labels only)\), (?P<length>\d+ epochs?)$",
     "engine.qat_student"),
    (r"^int8 fine-tuning of the baseline \((?P<how>KD from [\w.+]+|labels only)\), (?P<length>\d+ epochs?)$",
     "engine.qat_baseline"),
    (r"^KD from (?P<teachers>[\w.+]+)$", "engine.qat_kd"),
    (r"^labels only$", "engine.qat_labels"),
    (r"^(?P<n>1) epoch$", "engine.one_epoch"),
    (r"^(?P<n>\d+) epochs$", "engine.epochs"),
    (r"^quantization-aware distillation needs the run's teacher; a run without one \(deep supervision\) can use "
     r"quantize=ptq$", "engine.qat_no_teacher"),
    (r"^int8 quantization needs onnxruntime: (?P<command>.+)$", "engine.no_onnxruntime"),
    # warnings: a teacher replaced (kdapp.training.teachers)
    (r"^(?P<file>\S+) was trained on '(?P<theirs>\w+)' data, not '(?P<ours>\w+)': a teacher must never have seen "
     r"the run's test digits; training a new (?P<arch>[\w.]+) teacher instead$", "engine.teacher_other_data"),
    (r"^(?P<reason>.+); training a new (?P<arch>[\w.]+) teacher instead$", "engine.teacher_replaced"),
    # damaged or missing checkpoints and resume points (kdapp.checkpoints, kdapp.training.resume)
    (r"^checkpoint (?P<path>.+) does not exist$", "engine.checkpoint_missing"),
    (r"^checkpoint (?P<path>.+) is unreadable \((?P<error>\w+)\); it may be truncated or corrupt: delete it or "
     r"re-train$", "engine.checkpoint_damaged"),
    (r"^(?P<path>[^:]+) is not a kdapp checkpoint \(no 'arch'/'model' entries\)$", "engine.checkpoint_foreign"),
    (r"^checkpoint (?P<path>.+) does not fit architecture '(?P<arch>[\w.]+)': (?P<detail>.+)$",
     "engine.checkpoint_misfit"),
    (r"^the run's resume point could not be read \((?P<reason>[^)]+)\); press Run again to start it afresh$",
     "engine.resume_unreadable"),
    (r"^the run's resume point belongs to other settings or another kdapp version; press Run again to start it "
     r"afresh$", "engine.resume_other"),
    (r"^the run's resume point was made from an earlier version of its teacher \(the teacher has been retrained "
     r"since\); press Run again to start it afresh$", "engine.resume_teacher"),
    (r"^could not save the resume point after epoch (?P<epoch>\d+): (?P<reason>.+); free some disk space on the "
     r"server, then press Run again$", "engine.resume_unsaved"),
    (r"^could not save the resume point after task (?P<task>\d+) of (?P<strategy>finetune|lwf|replay|joint): "
     r"(?P<reason>.+); free some disk space on the server, then press Run again$", "engine.resume_unsaved_task"),
    (r"^the file is damaged$", "engine.file_damaged"),
    # a full disk, memory, the data folder
    (r"^no space left on device$", "engine.no_space"),
    (r"^\[Errno (?P<errno>28)\] No space left on device: (?P<path>.+)$", "engine.disk_full_path"),
    (r"^\[Errno (?P<errno>28)\] No space left on device$", "engine.disk_full"),
    (r"^\[enforce fail at [^\]]+\] .*DefaultCPUAllocator: can't allocate memory: you tried to allocate "
     r"(?P<bytes>\d+) bytes\..*$", "engine.out_of_memory_bytes"),
    (r"^(?:CUDA|MPS|XPU) out of memory\. Tried to allocate (?P<size>[\d.]+ [KMGTP]?i?B)\b.*$", "engine.gpu_memory"),
    (r"^Unable to allocate (?P<size>[\d.]+ [KMGTP]?i?B) for an array with shape .*$", "engine.out_of_memory_size"),
    (r"^out of memory$", "engine.out_of_memory"),
    (r"^full MNIST is not in '(?P<dir>.+)' and downloading is off; with the IDX files at hand, run: "
     r"(?P<command>.+)$", "engine.no_mnist"),
    (r"^could not download MNIST into '(?P<dir>.+)' \((?P<reason>.+)\); with the IDX files at hand, run: "
     r"(?P<command>.+)$", "engine.no_download"),
    # how a run ended, besides the usual
    (r"^finished \(command line\)$", "engine.finished_cli"),
    (r"^the run could not be started$", "engine.not_startable"),
    (r"^the run's process ended unexpectedly \(exit code (?P<code>-?\d+)\)$", "engine.process_died"),
    # ContinualConfig's problems, joined by "; " (known splits them)
    (r"^(?P<name>\w+) must be one of (?P<choices>[^;]+), got (?P<value>[^;]+)$", "engine.choice_comma"),
    (r"^strategies must be distinct names among (?P<names>[\w, ]+), got (?P<value>[^;]+)$", "engine.strategies"),
    (r"^memory must be (?P<low>\d+) to (?P<high>\d+) digits \(at least one per class\), got (?P<value>[^;]+)$",
     "engine.memory"),
    (r"^(?P<name>\w+) must be (?P<low>[\d.]+) to (?P<high>[\d.]+), got (?P<value>[^;]+)$", "engine.range_to"),
    (r"^lr must be in \((?P<lr_low>[\d.]+), (?P<lr_high>[\d.]+)\] and batch_size (?P<batch_low>\d+) to "
     r"(?P<batch_high>\d+), got (?P<lr>[^,;]+), (?P<batch_size>[^;]+)$", "engine.lr_batch"),
    (r"^(?P<name>\w+) must be above (?P<low>[\d.]+), got (?P<value>[^;]+)$", "engine.above"),
    (r"^unknown architecture (?P<arch>'[^']*'); valid names: (?P<names>[\w, ]+)$", "engine.unknown_arch"),
    (r"^unknown continual settings (?P<names>[\w, ]+); known: (?P<valid>[\w, ]+)$", "engine.unknown_continual"),
    (r"^unknown settings: (?P<names>[\w, ]+)$", "engine.unknown_settings"),
    # the drawing's models and notes (kdapp.lab.run_models)
    (r"^(?P<origin>shipped checkpoints|checkpoints from .+?): (?P<pair>[^,]+ → [^,]+), (?P<settings>T=[^,]+, "
     r"α=[^,]+), consistent teaching, trained on (?P<dataset>full MNIST|the MNIST sample)$",
     "engine.models_consistent"),
    (r"^(?P<origin>shipped checkpoints|checkpoints from .+?): (?P<pair>[^,]+ → [^,]+), (?P<settings>T=[^,]+, "
     r"α=[^,]+), trained on (?P<dataset>full MNIST|the MNIST sample)$", "engine.models_trained"),
    (r"^checkpoints from (?P<dir>.+)$", "engine.models_from"),
    (r"^the MNIST sample$", "engine.the_sample"),
    (r"^run (?P<id>\w+): (?P<pair>[^,]+ → [^,]+), (?P<settings>T=[^,]+, α=[^ ,]+) \(student (?P<acc>[\d.]+%)\)$",
     "engine.models_run"),
    (r"^(?P<origin>.+), int8 students$", "engine.models_int8"),
    (r"^run (?P<id>\w+) has no int8 students to draw with$", "engine.no_int8"),
    (r"^run (?P<id>\w+)'s models could not be loaded: (?P<detail>.+)$", "engine.models_unloadable"),
    (r"^the models of (?P<id>[\w-]+) could not be exported for the browser: (?P<detail>.+)$", "engine.not_exported"),
    (r"^(?P<reason>.+); using the shipped checkpoints$", "engine.using_shipped"),
    (r"^(?P<reason>.+); showing T=(?P<T>[\d.]+) instead$", "engine.showing_T"),
    (r"^send the canvas as a PNG data URL$", "engine.not_png"),
    (r"^the canvas is larger than (?P<mb>\d+) MB$", "engine.canvas_large"),
)

# DOTALL: an exception's text may run over lines (torch's account of a checkpoint that does not fit).
KNOWN = [(re.compile(pattern, re.DOTALL), key) for pattern, key in (*RARE,
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
    (r"^Lesson already run on these settings \((?P<title>.+)\): its (?P<n>\d+) runs are shown below\.$",
     "lab.lesson_again"),
    (r"^Lesson not started: (?P<reason>.*)$", "lab.lesson_not_started"),
    (r"^run (?P<id>\w+) cancelled; it had not started$", "lab.cancelled_queued"),
    (r"^run (?P<id>\w+) stopped$", "lab.stopped"),
    (r"^none of these runs has curves yet: export them once they have trained an epoch$", "lab.tensorboard_empty"),
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
    (r"^(?P<name>[\w.]+) · (?P<params>[\d,]+) params · a second network, pretrained$", "choice.teacher.copy_pretrained"),
    (r"^(?P<name>[\w.]+) · (?P<params>[\d,]+) params · a second network, trained first$",
     "choice.teacher.copy_trained_first"),
    (r"^(?P<name>[\w.]+) · (?P<params>[\d,]+) params$", "choice.student"),
    (r"^self · no pretrained teacher: .*$", "choice.teacher.self"),
    (r"^mutual · no pretrained teacher: .*$", "choice.teacher.mutual"),
    (r"^bundled MNIST sample · .*$", "choice.data.sample"),
    (r"^full MNIST · .*$", "choice.data.mnist"),
    (r"^shipped checkpoints$", "choice.models.shipped"),
    (r"^shipped checkpoints: (?P<rest>.+)$", "choice.models.shipped_desc"),
    (r"^run (?P<id>\w+): (?P<pair>.+ → [^,]+), (?P<settings>T=.+), int8 students$", "choice.models.run_int8"),
    (r"^run (?P<id>\w+): (?P<pair>.+ → [^,]+), (?P<settings>T=.+)$", "choice.models.run"),
    # a run's live message, how it ended, settings that do not validate, the Continual tab's drawing:
    # the engine's and the lab's English (tests/test_i18n.py builds each with their code)
    (r"^finetune$", "continual.short.finetune"),
    (r"^lwf$", "continual.short.lwf"),
    (r"^replay$", "continual.short.replay"),
    (r"^joint$", "continual.short.joint"),
    (r"^class-incremental$", "continual.scenario.class"),
    (r"^task-incremental$", "continual.scenario.task"),
    (r"^queued$", "state.name.queued"),
    (r"^running$", "state.name.running"),
    (r"^finished$", "state.name.finished"),
    (r"^failed$", "state.name.failed"),
    (r"^cancelled$", "state.name.cancelled"),
    (r"^interrupted$", "state.name.interrupted"),
    (r"^full MNIST$", "continual.data.mnist"),
    (r"^bundled MNIST sample$", "continual.data.sample"),
    (r"^starting$", "phase.starting"),
    (r"^loading data$", "phase.loading data"),
    (r"^(?P<dataset>full MNIST|bundled MNIST sample) \((?P<train>[\d,]+) train / (?P<test>[\d,]+) test\)$",
     "engine.data"),
    (r"^computing the teacher's soft targets over (?P<n>[\d,]+) training digits, once$", "engine.soft_targets"),
    (r"^computing the teacher's soft targets over (?P<n>[\d,]+) training digits, each read at (?P<k>\d+) shifts, "
     r"once$", "engine.soft_targets_shifts"),
    (r"^teacher (?P<arch>[\w.]+) from (?P<file>\S+)$", "engine.teacher_from"),
    (r"^training (?P<arch>[\w.]+) for (?P<epochs>\d+) epochs$", "engine.training"),
    (r"^teacher epoch (?P<epoch>\d+)/(?P<epochs>\d+): (?P<acc>[\d.]+%)$", "engine.teacher_epoch"),
    (r"^saved teacher to (?P<path>.+)$", "engine.saved_teacher"),
    (r"^its own deepest layer \(deep supervision\)$", "engine.deep_source"),
    (r"^distilling (?P<student>[\w.]+) from (?P<source>.+) on (?P<n>[\d,]+) digits, (?P<processes>\d+) processes$",
     "engine.distilling_processes"),
    (r"^distilling (?P<student>[\w.]+) from (?P<source>.+) on (?P<n>[\d,]+) digits$", "engine.distilling"),
    (r"^generation 0: (?P<student>[\w.]+) on the labels alone$", "engine.generation_0"),
    (r"^generation (?P<k>\d+) of (?P<n>\d+) distils from generation (?P<previous>\d+)$", "engine.generation"),
    (r"^comparing the students with the teacher on the test digits$", "engine.fidelity"),
    (r"^reading the test digits as the (?P<n>\d+)-reading ensemble does$", "engine.ensemble_test"),
    (r"^saving the students$", "engine.saving"),
    (r"^int8: calibrating on training digits and measuring size and speed$", "engine.quantizing"),
    (r"^(?P<n>\d+) strategies, (?P<tasks>\d+) tasks, (?P<scenario>\w+-incremental)$", "engine.continual"),
    (r"^(?P<strategy>finetune|lwf|replay|joint): task (?P<task>\d+) of (?P<tasks>\d+)$", "engine.continual_task"),
    (r"^stopping$", "engine.stopping"),
    (r"^cancelled before it started$", "engine.cancelled_early"),
    (r"^cancelled: stopped$", "engine.cancelled_stopped"),
    (r"^cancelled: the (?:continual )?run reached its time limit of (?P<seconds>\d+) s$", "engine.time_limit"),
    (r"^cancelled: (?P<reason>.+)$", "engine.cancelled"),
    (r"^failed: the server restarted (?P<n>\d+) times while this run trained, so it was not resumed again; "
     r"press Run again to start it afresh$", "engine.gave_up"),
    (r"^failed: (?P<reason>.+)$", "engine.failed"),
    (r"^queued again after a server restart; it resumes from its last finished epoch$", "engine.requeued"),
    (r"^queued again after a server restart; it resumes after its last finished task$", "engine.requeued_task"),
    (r"^its worker process died; queued again to resume after its last finished task$", "engine.worker_died_task"),
    (r"^its worker process died; queued again to resume from its last finished epoch$", "engine.worker_died"),
    (r"^(?P<name>[\w ]+) must be from (?P<low>[\d.,e+-]+) to (?P<high>[\d.,e+-]+), got (?P<value>.+)$",
     "engine.range"),
    (r"^(?P<name>[\w ]+) must be above (?P<low>[\d.,e+-]+) to (?P<high>[\d.,e+-]+), got (?P<value>.+)$",
     "engine.range_open"),
    (r"^(?P<name>[\w ]+) must be one of (?P<choices>.+); got (?P<value>.+)$", "engine.choice"),
    (r"^(?P<name>\w+) must be a finite number, got (?P<value>.+)$", "engine.finite"),
    (r"^(?P<name>\w+) must be an integer, got (?P<value>.+)$", "engine.integer"),
    (r"^(?P<name>\w+) must be a float, got (?P<value>.+)$", "engine.float"),
    (r"^strategies must be distinct names among (?P<names>[\w, ]+), got none$", "engine.no_strategy"),
    (r"^teacher '(?P<teacher>\w+)' \(no pretrained teacher\) is the only teacher of its run$", "engine.only_teacher"),
    (r"^(?P<what>.+) needs conv feature maps: pick a CNN student and teacher \((?P<cnns>.+)\), or use the hint loss$",
     "engine.needs_maps"),
    (r"^deep supervision \(self_distill=deep\) needs teacher=self: the student is its own teacher$",
     "engine.deep_needs_self"),
    (r"^deep supervision is its own feature loss \(each stage hints at the deepest\); set the feature loss to none$",
     "engine.deep_feature"),
    (r"^consistent teaching needs a teacher to ask; deep supervision has none$", "engine.deep_consistent"),
    (r"^quantization-aware distillation needs a teacher; deep supervision has none: use quantize=ptq$",
     "engine.deep_qat"),
    (r"^the (?P<loss>.+) feature loss needs a feature weight above 0$", "engine.feature_weight"),
    (r"^a (?P<schedule>\w+) temperature schedule needs temperature_end$", "engine.schedule_end"),
    (r"^joint epochs fine-tune one pretrained teacher with logits alone: pick an architecture as the only "
     r"teacher and no feature loss$", "engine.joint"),
    (r"^a shift ensemble averages a fixed, pretrained teacher's readings computed once: pick an architecture as "
     r"the teacher, and no consistent teaching, joint epochs or feature loss$", "engine.teacher_shifts"),
    (r"^mutual learning here is logits only: set the feature loss to none$", "engine.mutual_feature"),
    (r"^the collapse and adversarial terms act on the student's features: pick a feature loss$",
     "engine.needs_feature"),
    (r"^the adversarial term compares adapted features: use the hint or gram feature loss$", "engine.adversarial"),
    (r"^there is no continual run (?P<id>\w+)$", "engine.no_continual_run"),
    (r"^run (?P<id>\w+) is (?P<state>queued|running): its models read the drawing once it has finished$",
     "engine.not_finished"),
    (r"^run (?P<id>\w+) has no models to draw with \((?P<state>\w+), its checkpoints were pruned\)$",
     "engine.pruned"),
    (r"^run (?P<id>\w+) has no models to draw with \((?P<state>\w+)\)$", "engine.no_models"),
    (r"^run (?P<id>\w+) is a continual run: its models read digits in the Continual tab$", "engine.continual_models"),
    (r"^these models were trained task-incrementally: .*$", "engine.task_note"),
    (r"^most of the canvas is inked, so no digit can be read from it$", "engine.inked"),
    (r"^the drawing is very small; it was scaled up to MNIST's size$", "engine.small"),
    (r"^send the prepared digit as (?P<n>\d+) integers from 0 to 255$", "engine.prepared"),
    (r"^run (?P<id>\w+) is a continual run: it has no distilled student to download; .*$",
     "engine.no_student_continual"),
    (r"^run (?P<id>\w+) has no student to download$", "engine.no_student"),
    # the reproduction files' headings, for an English file shown where its language's file is missing
    (r"^# Our numbers beside the published ones$", "repro.title"),
    (r"^## (?P<n>\d+)\. The MNIST seed article's table$", "repro.seed_table"),
    (r"^## (?P<n>\d+)\. Small data: 10% of the training set$", "repro.small_data"),
    (r"^## (?P<n>\d+)\. Hinton, Vinyals & Dean \(2015\), MNIST$", "repro.hinton"),
    (r"^## (?P<n>\d+)\. Temperature sweep: (?P<pair>.+)$", "repro.sweep"),
    (r"^## (?P<n>\d+)\. Does KD carry robustness to other writers\?$", "repro.robustness"),
    (r"^# The methods since 2015, side by side$", "repro.methods_title"),
    (r"^## Hinton's missing 3$", "repro.missing_3"),
)]


# Slots that hold words of their own (a reason, a strategy, a state): KNOWN translates them too.
SENTENCE_SLOTS = ("reason", "title", "source", "strategy", "scenario", "state", "dataset", "how", "length", "origin")


def known(text):
    """An English sentence from below the UI in the language spoken now, when KNOWN has it;
    else the sentence as it is (a reason from the engine stays English). Sentences joined by "; "
    (several validation problems at once) are translated part by part."""
    said = _say(text)
    if said is not None:
        return said
    parts = text.split("; ")
    if len(parts) == 1:
        return text
    out, i = [], 0
    while i < len(parts):  # the longest run of parts KNOWN has (a part may hold "; " itself), else one as it is
        for j in range(len(parts), i, -1):
            said = _say("; ".join(parts[i:j]))
            if said is not None:
                out.append(said)
                i = j
                break
        else:
            out.append(parts[i])
            i += 1
    return _("engine.separator").join(out)


def _say(text):
    for pattern, key in KNOWN:
        match = pattern.match(text)
        if match:
            slots = {k: known(v) if k in SENTENCE_SLOTS and v else (v or "") for k, v in match.groupdict().items()}
            return _(key).format(**slots)
    return None
