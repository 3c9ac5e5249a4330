"""Fine-tunes only the head; the feature layer is shared with another run and must not move."""
import torch
import torch.nn as nn
import torch.optim as optim

from models import Backbone

model = Backbone()
optimizer = optim.Adam(model.head.parameters(), lr=1e-3)  # gradpath: ignore[GP102]

for step in range(3):
    x, y = torch.randn(8, 10), torch.randn(8, 1)
    out = model(x)  # noqa: GP201
    loss = nn.functional.mse_loss(out, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print("head trained, features kept")
