"""Models of the sample project."""
import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.blocks = [nn.Linear(10, width), nn.Linear(width, width)]  # expect: GP104
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        for block in self.blocks:
            x = torch.relu(block(x))
        return self.head(x)



class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Linear(10, 16)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(torch.relu(self.features(x)))
