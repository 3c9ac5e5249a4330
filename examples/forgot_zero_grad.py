"""GP401: the loop never clears gradients, so each step applies the sum of every gradient so far."""
import torch
import torch.nn as nn

model = nn.Linear(6, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(10):
    inputs = torch.randn(32, 6)
    labels = torch.randint(0, 2, (32,))
    loss = loss_fn(model(inputs), labels)
    loss.backward()
    optimizer.step()
