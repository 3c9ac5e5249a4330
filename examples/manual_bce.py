"""GP302/GP303: a hand-written binary cross-entropy takes log(sigmoid(z)), which is -inf as soon as a
logit saturates (F.logsigmoid / BCEWithLogitsLoss are the stable forms)."""
import torch
import torch.nn as nn

net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)

for epoch in range(30):
    x = torch.randn(64, 5)
    y = (x[:, :1] > 0).float()
    z = net(x)
    p = torch.sigmoid(z)
    loss = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
