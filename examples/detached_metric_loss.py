"""GP201: the loss is rebuilt from `.item()` values (a Python float) to "log it nicely", which cuts it
off from the graph: backward() raises RuntimeError."""
import torch
import torch.nn as nn

model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

for epoch in range(50):
    x = torch.randn(32, 4)
    y = torch.randn(32, 1)
    pred = model(x)
    mse = ((pred - y) ** 2).mean().item()
    loss = torch.tensor(mse)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
