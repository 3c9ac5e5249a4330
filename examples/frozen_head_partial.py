"""GP102: the optimizer is given only the classifier head's parameters, but the encoder is trainable
and its output reaches the loss: the encoder gets gradients every step and never changes."""
import torch
import torch.nn as nn


class Classifier(nn.Module):
    def __init__(self, vocab=100, dim=32, n_classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.encoder = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, tokens):
        h = torch.relu(self.encoder(self.embed(tokens).mean(dim=1)))
        return self.head(h)


model = Classifier()
optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)
criterion = nn.CrossEntropyLoss()

for step in range(100):
    tokens = torch.randint(0, 100, (16, 12))
    labels = torch.randint(0, 3, (16,))
    optimizer.zero_grad()
    loss = criterion(model(tokens), labels)
    loss.backward()
    optimizer.step()
    if step % 20 == 0:
        print(step, loss.item())
