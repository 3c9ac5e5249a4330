"""A quick experiment: a linear model for a few steps."""
import torch
import torch.nn as nn
import torch.optim as optim

model = nn.Linear(10, 1)
optimizer = optim.Adam([], lr=1e-2)  # expect: GP101

for step in range(3):
    x, y = torch.randn(8, 10), torch.randn(8, 1)
    loss = nn.functional.mse_loss(model.forward(x), y)
    loss.backward()
    optimizer.step()
