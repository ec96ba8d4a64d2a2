"""The teacher/student zoo. Every model maps normalised (N,1,28,28) to raw logits (N,10).

Softmax lives in the losses and in inference, never here: KD needs logits at temperature T.
For feature distillation each model offers `forward_stages(x) -> (logits, stages)`: its hidden
activations from shallow to deep, the last one being what the final linear layer reads (a vector;
before dropout, for the MLPs that have it).
`forward_features(x) -> (logits, features)` picks the one stage the model exposes for hints and
attention maps (`hint_stage`: a conv map (N,C,H,W) for CNNs, a hidden vector (N,D) for MLPs).
The trainer calls these methods and never names a layer.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    """A model of the zoo: `forward_stages(x) -> (logits, [hidden stages, shallow to deep])`;
    `forward_features` is its logits and its hint stage; `forward` is its logits."""
    hint_stage = 0

    def forward(self, x):
        return self.forward_stages(x)[0]

    def forward_features(self, x):
        logits, stages = self.forward_stages(x)
        return logits, stages[self.hint_stage]


class SeedTeacher(Net):
    """The MNIST seed article's teacher CNN, with its pooling fixed.

    The article pools twice, which cannot feed its fc1 of 9216 = 64*12*12 inputs; one 2x2
    pool is what its 9216 and its "1.2M parameters" imply: 1,199,882 parameters.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    hint_stage = 1  # conv2's map

    def forward_stages(self, x):
        c1 = F.relu(self.conv1(x))         # (N,32,26,26)
        c2 = F.relu(self.conv2(c1))        # (N,64,24,24)
        x = self.dropout(torch.flatten(F.max_pool2d(c2, 2), 1))
        h = F.relu(self.fc1(x))            # (N,128)
        return self.fc2(h), [c1, c2, h]

class SeedStudent(Net):
    """The seed article's student, with fc1's input corrected from 2304 to 2704 = 16*13*13."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1)
        self.fc1 = nn.Linear(2704, 64)
        self.fc2 = nn.Linear(64, 10)

    hint_stage = 0  # conv1's map

    def forward_stages(self, x):
        c1 = F.relu(self.conv1(x))         # (N,16,26,26)
        h = F.relu(self.fc1(torch.flatten(F.max_pool2d(c1, 2), 1)))  # (N,64)
        return self.fc2(h), [c1, h]

class LeNet5(Net):
    """LeCun et al. (1998), with ReLU and max-pooling as it is usually written today. Wider
    channels give `lenet5_wide`: the same two conv-pool stages, which is what lets both read
    other writers' digits (see the robustness table in results/README.md)."""

    def __init__(self, c1=6, c2=16, f1=120, f2=84):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc1 = nn.Linear(c2 * 5 * 5, f1)
        self.fc2 = nn.Linear(f1, f2)
        self.fc3 = nn.Linear(f2, 10)

    hint_stage = 1  # conv2's map

    def forward_stages(self, x):
        c1 = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (N,c1,14,14)
        c2 = F.relu(self.conv2(c1))                  # (N,c2,10,10)
        h1 = F.relu(self.fc1(torch.flatten(F.max_pool2d(c2, 2), 1)))  # (N,f1)
        h2 = F.relu(self.fc2(h1))                    # (N,f2)
        return self.fc3(h2), [c1, c2, h1, h2]

class MLP(Net):
    """784-h-h-10 with ReLU: Hinton, Vinyals & Dean (2015) used 1200 units (with dropout) as
    the MNIST teacher and 800 as the student. `input_dropout` drops pixels, `dropout` hidden
    units, as Hinton et al. 2012 did (20% and 50%)."""

    def __init__(self, hidden, dropout=0.0, input_dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 10)
        self.input_dropout = nn.Dropout(input_dropout)
        self.dropout = nn.Dropout(dropout)

    hint_stage = 1  # the second hidden layer

    def forward_stages(self, x):
        h1 = F.relu(self.fc1(self.input_dropout(torch.flatten(x, 1))))  # (N,hidden)
        h2 = F.relu(self.fc2(self.dropout(h1)))      # (N,hidden)
        return self.fc3(self.dropout(h2)), [h1, h2]

# name -> builder. A plain dict, as nanoGPT's config_args.
ARCHITECTURES = {
    "seed_teacher": SeedTeacher,                  # conv32-conv64-pool-fc128, 1.2M params
    "seed_student": SeedStudent,                  # conv16-pool-fc64, 174k params
    "mlp_1200": lambda: MLP(1200, dropout=0.5, input_dropout=0.2),  # Hinton 2015's MNIST teacher
    "mlp_800": lambda: MLP(800),                  # Hinton 2015's MNIST student
    "lenet5": LeNet5,                             # 61k params
    "lenet5_wide": lambda: LeNet5(32, 64, 256, 128),  # 496k: the shipped drawing teacher
    "mlp_30": lambda: MLP(30),                    # tiny: KD's gap is widest here
    "mlp_400": lambda: MLP(400),                  # van de Ven & Tolias 2019's split-MNIST net (continual)
}


def build(name):
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; valid names: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]()


_FACTS = {}  # name -> (parameter count, has conv feature maps), from one built model


def _facts(name):
    if name not in _FACTS:
        model = build(name)
        maps = model.forward_features(torch.zeros(2, 1, 28, 28))[1].dim() == 4
        _FACTS[name] = (sum(p.numel() for p in model.parameters()), maps)
    return _FACTS[name]


def count_parameters(model):
    """Parameters of a model, or of an architecture given by name (built once, then remembered)."""
    if isinstance(model, str):
        return _facts(model)[0]
    return sum(p.numel() for p in model.parameters())


def has_feature_maps(name):
    """True for CNNs, whose features are (C,H,W) maps; attention transfer needs them."""
    return _facts(name)[1]


def cnn_names():
    """The zoo's CNNs, comma-separated: the architectures attention transfer and Gram matching take."""
    return ", ".join(name for name in ARCHITECTURES if has_feature_maps(name))
