"""A script that downloads its data first. The live step runs offline, so the download fails: the
findings are settled by a model-only step (the model class alone, a synthetic input, the optimizer
as written) or reported not-run with the reason."""
import os
import urllib.request

import torch
import torch.nn as nn

URL = "https://example.com/datasets/sensors.pt"


class SensorNet(nn.Module):
    def __init__(self, n_features=12, hidden=24):
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def load_data(root="data"):
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "sensors.pt")
    if not os.path.exists(path):
        urllib.request.urlretrieve(URL, path)
    return torch.load(path)


x, y = load_data()
model = SensorNet(n_features=12, hidden=24)
optimizer = torch.optim.Adam([model.fc1.weight, model.fc1.bias, model.fc2.weight], lr=1e-3)
for epoch in range(10):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
