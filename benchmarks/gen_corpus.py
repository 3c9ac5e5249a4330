#!/usr/bin/env python3
"""Generate realistic PyTorch training files of a given length, in the style of the fixtures:
several nn.Module models (MLP, CNN, LSTM, encoder/decoder, GAN pair), a Dataset, a Trainer class
with train/evaluate methods, plain training loops, utilities, and a few of the bugs Gradpath looks
for (partial optimizer parameters, unguarded division, missing zero_grad, detached losses) mixed
with correct near-misses (frozen backbones, gradient accumulation, AMP scaler, EMA).

    python benchmarks/gen_corpus.py --lines 2000 --seed 1 > big.py
    python benchmarks/gen_corpus.py --out DIR --sizes 200,1000,2000      # files gen_<n>.py
    python benchmarks/gen_corpus.py --out DIR --total 4000               # a tree of ~4000 lines
    python benchmarks/gen_corpus.py --workspace DIR                      # models.py + train.py

Deterministic for a given seed. Every generated file parses with `ast.parse`.
"""
from __future__ import annotations

import argparse
import ast
import random
import sys
import textwrap
from pathlib import Path

HEADER = '''\
"""Generated training module {idx}: models, a dataset, a trainer and a few experiments."""
import math
import os
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset
'''


def _mlp(r: random.Random, i: int) -> str:
    h = r.choice([32, 64, 128, 256])
    d = r.choice([0.1, 0.2, 0.3])
    return f'''

class MLP{i}(nn.Module):
    """A {h}-wide multilayer perceptron with dropout."""

    def __init__(self, in_features=20, hidden={h}, out_features=1):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, out_features)
        self.drop = nn.Dropout({d})
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = self.drop(x)
        x = self.norm(F.relu(self.fc2(x)))
        return self.head(x)
'''


def _cnn(r: random.Random, i: int) -> str:
    c = r.choice([8, 16, 32])
    return f'''

class ConvNet{i}(nn.Module):
    def __init__(self, channels=3, num_classes=10):
        super(ConvNet{i}, self).__init__()
        self.conv1 = nn.Conv2d(channels, {c}, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d({c})
        self.conv2 = nn.Conv2d({c}, {c * 2}, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d({c * 2})
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear({c * 2}, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.pool(x).flatten(1)
        return self.classifier(x)
'''


def _lstm(r: random.Random, i: int) -> str:
    h = r.choice([16, 32, 64])
    return f'''

class SequenceModel{i}(nn.Module):
    def __init__(self, vocab=1000, emb=32, hidden={h}, layers=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, tokens, state=None):
        emb = self.embedding(tokens)
        out, state = self.rnn(emb, state)
        return self.out(out), state
'''


def _encdec(r: random.Random, i: int) -> str:
    z = r.choice([4, 8, 16])
    return f'''

class Encoder{i}(nn.Module):
    def __init__(self, dim=20, latent={z}):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, latent * 2))

    def forward(self, x):
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


class Decoder{i}(nn.Module):
    def __init__(self, dim=20, latent={z}):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, 64), nn.ReLU(), nn.Linear(64, dim))

    def forward(self, z):
        return self.net(z)


def vae_step{i}(encoder, decoder, optimizer, batch):
    mu, logvar = encoder(batch)
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn_like(std)
    recon = decoder(z)
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    loss = F.mse_loss(recon, batch) + kl
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
'''


def _gan(r: random.Random, i: int) -> str:
    return f'''

class Generator{i}(nn.Module):
    def __init__(self, noise=16, dim=2):
        super().__init__()
        self.main = nn.Sequential(nn.Linear(noise, 64), nn.LeakyReLU(0.2), nn.Linear(64, dim))

    def forward(self, z):
        return self.main(z)


class Discriminator{i}(nn.Module):
    def __init__(self, dim=2):
        super().__init__()
        self.main = nn.Sequential(nn.Linear(dim, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))

    def forward(self, x):
        return self.main(x)


def train_gan{i}(steps=100, batch_size=64):
    gen, disc = Generator{i}(), Discriminator{i}()
    opt_g = optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    for step in range(steps):
        real = torch.randn(batch_size, 2) * 0.5 + 1.0
        noise = torch.randn(batch_size, 16)
        fake = gen(noise)
        d_loss = bce(disc(real), torch.ones(batch_size, 1)) + bce(disc(fake.detach()), torch.zeros(batch_size, 1))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = bce(disc(fake), torch.ones(batch_size, 1))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if step % 20 == 0:
            print(f"step {{step}}: d={{d_loss.item():.3f}} g={{g_loss.item():.3f}}")
    return gen
'''


def _dataset(r: random.Random, i: int) -> str:
    n = r.choice([256, 512, 1024])
    return f'''

class SyntheticData{i}(Dataset):
    def __init__(self, n={n}, dim=20, seed={i}):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        w = torch.randn(dim, 1, generator=g)
        self.y = self.x @ w + 0.1 * torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        return self.x[idx], self.y[idx]
'''


def _config(r: random.Random, i: int) -> str:
    return f'''

@dataclass
class Config{i}:
    lr: float = {r.choice(["1e-3", "3e-4", "1e-2"])}
    epochs: int = {r.choice([2, 5, 10])}
    batch_size: int = {r.choice([16, 32, 64])}
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    accumulate: int = {r.choice([1, 2, 4])}
    log_every: int = 10
'''


def _trainer(r: random.Random, i: int, model_cls: str) -> str:
    opt = r.choice(["Adam", "AdamW", "SGD"])
    extra = ", momentum=0.9" if opt == "SGD" else ""
    return f'''

class Trainer{i}:
    """Owns a model, its optimizer and a scheduler; runs epochs and keeps a history."""

    def __init__(self, model, config, device="cpu"):
        self.model = model.to(device)
        self.config = config
        self.device = device
        self.optimizer = optim.{opt}(self.model.parameters(), lr=config.lr{extra})
        self.scheduler = optim.lr_scheduler.StepLR(self.optimizer, step_size=10, gamma=0.5)
        self.criterion = nn.MSELoss()
        self.history = []

    def train_epoch(self, loader):
        self.model.train()
        total = 0.0
        for step, (inputs, targets) in enumerate(loader):
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            outputs = self.model(inputs)
            loss = self.criterion(outputs, targets)
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            total += loss.item()
            if step % self.config.log_every == 0:
                print(f"step {{step}} loss {{loss.item():.4f}}")
        self.scheduler.step()
        return total / max(1, len(loader))

    @torch.no_grad()
    def evaluate(self, loader):
        self.model.eval()
        errors = []
        for inputs, targets in loader:
            preds = self.model(inputs.to(self.device))
            errors.append(F.mse_loss(preds, targets.to(self.device)).item())
        return sum(errors) / max(1, len(errors))

    def fit(self, train_loader, val_loader):
        for epoch in range(self.config.epochs):
            train_loss = self.train_epoch(train_loader)
            val_loss = self.evaluate(val_loader)
            self.history.append((epoch, train_loss, val_loss))
        return self.history

    def save(self, path):
        torch.save({{"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}}, path)


def run_trainer{i}():
    config = Config{i}()
    data = SyntheticData{i}()
    train_loader = DataLoader(data, batch_size=config.batch_size, shuffle=True)
    val_loader = DataLoader(data, batch_size=config.batch_size)
    trainer = Trainer{i}({model_cls}(), config)
    return trainer.fit(train_loader, val_loader)
'''


def _accum_loop(r: random.Random, i: int, model_cls: str) -> str:
    return f'''

def train_accumulated{i}(epochs=2, accumulate=4):
    model = {model_cls}()
    optimizer = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loader = DataLoader(SyntheticData{i}(), batch_size=16, shuffle=True)
    for epoch in range(epochs):
        for step, (x, y) in enumerate(loader):
            loss = F.mse_loss(model(x), y) / accumulate
            loss.backward()
            if (step + 1) % accumulate == 0:
                optimizer.step()
                optimizer.zero_grad()
    return model
'''


def _frozen(r: random.Random, i: int, model_cls: str) -> str:
    return f'''

def finetune_head{i}(steps=50):
    model = {model_cls}()
    for p in model.fc1.parameters():
        p.requires_grad = False
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optim.SGD(params, lr=0.01, momentum=0.9)
    for step in range(steps):
        x, y = torch.randn(8, 20), torch.randn(8, 1)
        optimizer.zero_grad()
        loss = F.smooth_l1_loss(model(x), y)
        loss.backward()
        optimizer.step()
    return model
'''


def _ema(r: random.Random, i: int, model_cls: str) -> str:
    return f'''

class EMA{i}:
    def __init__(self, model, decay=0.999):
        self.decay = decay
        self.shadow = {{k: v.detach().clone() for k, v in model.state_dict().items()}}

    @torch.no_grad()
    def update(self, model):
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)


def train_with_ema{i}(steps=20):
    model = {model_cls}()
    ema = EMA{i}(model)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        x, y = torch.randn(4, 20), torch.randn(4, 1)
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        ema.update(model)
    return ema
'''


def _bug_partial(r: random.Random, i: int, model_cls: str) -> str:
    return f'''

def train_head_only{i}(epochs=3):
    model = {model_cls}()
    criterion = nn.MSELoss()
    # only the last layer's weight reaches the optimizer
    optimizer = optim.Adam([model.head.weight], lr=1e-3)
    for epoch in range(epochs):
        x, y = torch.randn(32, 20), torch.randn(32, 1)
        outputs = model(x)
        loss = criterion(outputs, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model
'''


def _bug_division(r: random.Random, i: int) -> str:
    return f'''

def relative_error_loss{i}(output, target):
    return ((output - target) / target).abs().mean()


def train_relative{i}(steps=10):
    model = nn.Linear(10, 1)
    optimizer = optim.Adam(model.parameters(), lr=0.001)
    for _ in range(steps):
        x, target = torch.randn(8, 10), torch.randn(8, 1)
        output = model(x)
        loss = (1 / (output - target)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
'''


def _bug_zero_grad(r: random.Random, i: int) -> str:
    return f'''

def train_without_zero_grad{i}(steps=10):
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(steps):
        x, y = torch.randn(16, 10), torch.randn(16, 1)
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
'''


def _bug_detached(r: random.Random, i: int) -> str:
    return f'''

def train_detached{i}():
    model = nn.Linear(10, 1)
    optimizer = optim.Adam(model.parameters(), lr=0.001)
    x, y = torch.randn(4, 10), torch.randn(4, 1)
    loss = nn.MSELoss()(model(x), y)
    value = loss.detach()
    optimizer.zero_grad()
    value.backward()
    optimizer.step()
'''


def _utils(r: random.Random, i: int) -> str:
    return f'''

def set_seed{i}(seed={i}):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def count_parameters{i}(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def accuracy{i}(logits, labels):
    preds = logits.argmax(dim=-1)
    return (preds == labels).float().mean().item()


def cosine_schedule{i}(step, total, base_lr=1e-3, warmup=100):
    if step < warmup:
        return base_lr * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))
'''


def _amp(r: random.Random, i: int, model_cls: str) -> str:
    return f'''

def train_amp{i}(steps=5):
    model = {model_cls}()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    for _ in range(steps):
        x, y = torch.randn(8, 20), torch.randn(8, 1)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.mse_loss(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
'''


def _classifier_loop(r: random.Random, i: int) -> str:
    return f'''

def train_classifier{i}(epochs=2):
    model = ConvNet{i}(channels=1, num_classes=10)
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    for epoch in range(epochs):
        model.train()
        running = 0.0
        for batch in range(10):
            images = torch.randn(16, 1, 28, 28)
            labels = torch.randint(0, 10, (16,))
            logits = model(images)
            loss = criterion(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
        print(f"epoch {{epoch}}: {{running / 10:.3f}}")
    return model
'''


def _lm_loop(r: random.Random, i: int) -> str:
    return f'''

def train_language_model{i}(steps=10, seq=16):
    model = SequenceModel{i}()
    optimizer = optim.Adam(model.parameters(), lr=3e-4)
    for step in range(steps):
        tokens = torch.randint(0, 1000, (4, seq + 1))
        logits, _ = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 1000), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model
'''


def _filler_function(i: int, n_lines: int) -> str:
    """A plain helper of exactly n_lines lines (n_lines >= 3)."""
    body = [f"def _helper_{i}(values):", "    acc = 0.0"]
    for k in range(n_lines - 3):
        body.append(f"    acc = acc * 0.5 + float(values[{k} % len(values)])")
    body.append("    return acc")
    return "\n".join(body[:max(n_lines, 1)])


def generate(lines: int, seed: int = 0, idx: int = 0) -> str:
    """A module of exactly `lines` lines (>= 30)."""
    r = random.Random(seed * 7919 + idx)
    out = HEADER.format(idx=idx).splitlines()
    i = 0
    while True:
        i += 1
        blocks = [_mlp(r, i), _dataset(r, i), _config(r, i)]
        kind = r.choice(["cnn", "lstm", "encdec", "gan"])
        if kind == "cnn":
            blocks += [_cnn(r, i), _classifier_loop(r, i)]
        elif kind == "lstm":
            blocks += [_lstm(r, i), _lm_loop(r, i)]
        elif kind == "encdec":
            blocks.append(_encdec(r, i))
        else:
            blocks.append(_gan(r, i))
        model = f"MLP{i}"
        blocks += [_trainer(r, i, model), _utils(r, i)]
        blocks += r.sample([_accum_loop(r, i, model), _frozen(r, i, model), _ema(r, i, model),
                            _amp(r, i, model), _bug_partial(r, i, model), _bug_division(r, i),
                            _bug_zero_grad(r, i), _bug_detached(r, i)], k=4)
        added = False
        for b in blocks:
            bl = b.splitlines()
            if len(out) + len(bl) <= lines - 1:
                out += bl
                added = True
        if not added:
            break
    rest = lines - len(out)
    if rest >= 5:
        out += ["", ""] + _filler_function(i, rest - 2).splitlines()
    while len(out) < lines:
        out.append(f"# end of generated module {idx}")
    text = "\n".join(out[:lines]) + "\n"
    ast.parse(text)
    return text


def write_workspace(root: Path, seed: int = 0) -> Path:
    """A small project: models.py defines the model, train.py imports torch and it. Returns train.py."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.py").write_text(textwrap.dedent('''\
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(10, 1)
                self.extra = nn.Linear(10, 10)

            def forward(self, x):
                return self.linear(self.extra(x))
        '''), encoding="utf-8")
    train = root / "train.py"
    train.write_text(textwrap.dedent('''\
        import torch
        import torch.nn as nn
        import torch.optim as optim

        from models import Net

        model = Net()
        criterion = nn.MSELoss()
        optimizer = optim.Adam([model.linear.weight], lr=0.001)

        for epoch in range(10):
            inputs = torch.randn(32, 10)
            targets = torch.randn(32, 1)
            loss = criterion(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        '''), encoding="utf-8")
    return train


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, help="one file of this many lines to stdout")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="folder to write into")
    ap.add_argument("--sizes", default="200,1000,2000", help="with --out: one gen_<n>.py per size")
    ap.add_argument("--total", type=int, help="with --out: files of 300-700 lines adding up to this")
    ap.add_argument("--workspace", help="write a two-module workspace here")
    a = ap.parse_args(argv)
    if a.workspace:
        print(write_workspace(Path(a.workspace), a.seed))
        return 0
    if a.lines:
        sys.stdout.write(generate(a.lines, a.seed))
        return 0
    if not a.out:
        ap.error("give --lines, --out or --workspace")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.total:
        r, done, k = random.Random(a.seed), 0, 0
        while done < a.total:
            n = min(max(60, a.total - done), r.randint(300, 700))
            (out / f"train_{k:03d}.py").write_text(generate(n, a.seed, k), encoding="utf-8")
            done += n
            k += 1
        print(f"{k} files, {done} lines in {out}")
    else:
        for n in [int(s) for s in a.sizes.split(",")]:
            (out / f"gen_{n}.py").write_text(generate(n, a.seed, n), encoding="utf-8")
        print(f"wrote {a.sizes} into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
