"""GP203: after hitting "element 0 of tensors does not require grad", someone set
`loss.requires_grad = True`. The error is gone, but no gradient reaches the model any more."""
import torch
import torch.nn as nn

model = nn.Linear(10, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

for step in range(20):
    x = torch.randn(16, 10)
    y = torch.randn(16, 1)
    out = model(x).detach()
    loss = nn.functional.mse_loss(out, y)
    loss.requires_grad = True
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
