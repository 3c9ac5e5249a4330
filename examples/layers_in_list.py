"""GP104: the hidden layers live in a plain Python list, so they are not registered submodules:
model.parameters() misses them and Adam never updates them (they still get gradients)."""
import torch
import torch.nn as nn


class DeepMLP(nn.Module):
    def __init__(self, width=16, depth=3):
        super().__init__()
        self.inp = nn.Linear(8, width)
        self.hidden = [nn.Linear(width, width) for _ in range(depth)]
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        x = torch.tanh(self.inp(x))
        for layer in self.hidden:
            x = torch.tanh(layer(x))
        return self.out(x)


model = DeepMLP()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for it in range(500):
    x = torch.randn(64, 8)
    y = x.sum(dim=1, keepdim=True)
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
