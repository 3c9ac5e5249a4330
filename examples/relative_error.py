"""GP301: a "relative error" loss divides by the difference between prediction and target, which is
zero exactly when the model is right: the loss becomes inf and the gradients NaN."""
import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Linear(3, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)

for step in range(100):
    x = torch.randn(8, 3)
    target = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    pred = model(x)
    loss = (1.0 / (pred - target)).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
