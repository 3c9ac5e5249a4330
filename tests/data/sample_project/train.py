"""Trains the MLP on random data (a stand-in for the real loader)."""
import torch
import torch.nn as nn
import torch.optim as optim

from models import MLP

torch.manual_seed(0)
model = MLP()
optimizer = optim.SGD(model.parameters, lr=0.01)  # expect: GP109
criterion = nn.MSELoss()

for step in range(3):  # expect: GP401
    x, y = torch.randn(8, 10), torch.randn(8, 1)
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()

print("final loss", float(loss))
