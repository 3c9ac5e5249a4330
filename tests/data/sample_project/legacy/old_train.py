"""Kept for reference; excluded from checks in pyproject.toml."""
import torch.nn as nn
import torch.optim as optim

model = nn.Linear(10, 1)
optimizer = optim.Adam([], lr=1e-3)
