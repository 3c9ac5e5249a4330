"""GP406: the learning-rate scheduler steps before the optimizer in each iteration; PyTorch warns and
the first learning-rate value of the schedule is skipped."""
import torch
import torch.nn as nn

model = nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)

for epoch in range(5):
    optimizer.zero_grad()
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    scheduler.step()
    optimizer.step()
