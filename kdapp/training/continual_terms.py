"""The parts of kdapp.training.continual that are pure: the strategies' loss terms (functions of
logits, each with its formula and source), the memory bank, and the metrics of an accuracy matrix."""
import torch
import torch.nn.functional as F

from kdapp.training.teachers import predict_logits


# ---- the loss terms: pure functions of logits ----

def select(logits, classes):
    """The columns of `classes`: a (k,) index shared by every row, or (N,k), one set per row
    (task-incremental replay mixes digits of several tasks in a batch)."""
    return logits[:, classes] if classes.dim() == 1 else logits.gather(1, classes)


def local_targets(targets, classes):
    """Each label's position within its row of `classes` (the label must be among them)."""
    return (classes == targets.unsqueeze(1)).int().argmax(1)


def soft_term(student_logits, teacher_logits, temperature):
    """T^2 KL(softmax(t/T) || softmax(s/T)), averaged over the batch (Hinton et al. 2015); the T^2
    keeps its gradients on the scale of the CE as T changes."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature ** 2


def finetune_loss(logits, targets, classes):
    """CE(select(s, classes), y): plain training on whatever data it is given. On the new task
    alone it is fine-tuning; on all the tasks so far it is joint training."""
    return F.cross_entropy(select(logits, classes), local_targets(targets, classes))


def lwf_loss(logits, old_logits, targets, classes, old_groups, temperature, task):
    """Learning without Forgetting (Li & Hoiem, ECCV 2016), on the new task's digits x only:

        L = 1/t * CE(s, y) + (1 - 1/t) * mean_g T^2 KL(softmax(o_g/T) || softmax(s_g/T))

    s = the model's logits on x, o = the frozen model from before task t (1-based) on the same x,
    g = the old outputs: one group of all old digits class-incrementally, one per old task's head
    task-incrementally. The 1/t weighting is van de Ven & Tolias's (2019): each task seen counts
    the same. Note that nothing here ever contrasts an old digit with a new one."""
    soft = sum(soft_term(logits[:, g], old_logits[:, g], temperature) for g in old_groups) / len(old_groups)
    return finetune_loss(logits, targets, classes) / task + (1 - 1 / task) * soft


def replay_loss(logits, targets, classes, memory_logits, memory_targets, memory_classes, stored_logits,
                temperature, task):
    """The memory bank: new digits x with labels y, and a batch of stored digits m with labels y_m
    and the logits z_m the model gave them when they were stored:

        L = 1/t * CE(s(x), y) + (1 - 1/t) * 1/2 [CE(s(m), y_m) + T^2 KL(softmax(z_m/T) || softmax(s(m)/T))]

    both terms of a stored digit over its own outputs (`memory_classes`). CE on stored examples
    with a distillation term on old outputs is iCaRL's recipe (Rebuffi et al., CVPR 2017); taking
    the targets from stored logits, not from a re-run old model, is Dark Experience Replay
    (Buzzega et al., NeurIPS 2020), and is what the seed article's bank does with its features."""
    old = select(memory_logits, memory_classes)
    memory = 0.5 * (F.cross_entropy(old, local_targets(memory_targets, memory_classes))
                    + soft_term(old, select(stored_logits, memory_classes), temperature))
    return finetune_loss(logits, targets, classes) / task + (1 - 1 / task) * memory


# ---- the memory bank ----

class MemoryBank:
    """The seed article's FeatureMemoryBank (000 §4.3), made to keep its budget. The article's
    `update` appends up to `capacity` items per call, so its bank grows with every task, and its
    `distill` indexes the concatenation with per-list positions. Here `budget` digits are shared
    equally by the classes seen so far (iCaRL's fixed memory): a new task shrinks every old class
    to the new share, then fills its own classes. Each digit is kept with its logits at storing
    time, the targets it is distilled against. Which digits: a seeded random choice, a strong
    baseline for small memories (Chaudhry et al. 2019, "On tiny episodic memories")."""

    def __init__(self, budget, seed=0):
        self.budget = budget
        self.generator = torch.Generator().manual_seed(seed)
        self.x = self.y = self.logits = None

    def __len__(self):
        return 0 if self.y is None else len(self.y)

    def classes(self):
        return [] if self.y is None else sorted(set(self.y.tolist()))

    def add(self, model, x, y, classes):
        """Store the digits of `classes` from (x, y) with the model's logits on them now."""
        seen = sorted(set(self.classes()) | set(classes))
        share = self.budget // len(seen)
        if share < 1:
            raise ValueError(f"a memory of {self.budget} digits cannot hold one per class for {len(seen)} classes")
        keep = [] if self.y is None else [torch.nonzero(self.y == c).flatten()[:share] for c in self.classes()]
        parts = [(self.x[i], self.y[i], self.logits[i]) for i in keep]
        for c in classes:
            rows = torch.nonzero(y.cpu() == c).flatten()
            rows = rows[torch.randperm(len(rows), generator=self.generator)[:share]].to(y.device)
            parts.append((x[rows], y[rows], predict_logits(model, x[rows])))
        self.x, self.y, self.logits = (torch.cat(p) for p in zip(*parts))

    def sample(self, n):
        """n stored digits drawn with replacement (the bank is small; a batch may repeat one)."""
        rows = torch.randint(len(self), (n,), generator=self.generator).to(self.y.device)
        return self.x[rows], self.y[rows], self.logits[rows]

    def state(self):
        """Its digits, their logits and its generator, on the CPU (for a resume point)."""
        stored = {} if self.y is None else {k: getattr(self, k).cpu() for k in ("x", "y", "logits")}
        return {**stored, "generator": self.generator.get_state()}

    def load_state(self, state, device):
        if "y" in state:
            self.x, self.y, self.logits = (state[k].to(device) for k in ("x", "y", "logits"))
        self.generator.set_state(state["generator"])


# ---- the metrics ----

def average_accuracy(matrix):
    """Mean accuracy over all tasks after the last one: the mean of the matrix's last row."""
    return sum(matrix[-1]) / len(matrix[-1])


def forgetting(matrix):
    """Average forgetting (Chaudhry et al., ECCV 2018): for every task j but the last, its best
    accuracy after any task i >= j before the last, minus its accuracy after the last, averaged."""
    last = len(matrix) - 1
    drops = [max(matrix[i][j] for i in range(j, last)) - matrix[last][j] for j in range(last)]
    return sum(drops) / len(drops) if drops else 0.0
