"""Character-level language model with rnncore.torch's LSTM under DistributedDataParallel.

    torchrun --nproc_per_node=2 examples/ddp_train.py [--steps 30] [--hidden 256]

Each process trains on its share of every batch (gloo backend, CPU); DDP averages the gradients.
Prints loss and throughput (characters per second) per process. Replace `rt.LSTM` by
`torch.nn.LSTM` (--torch) to compare.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

import rnncore.torch as rt

TEXT = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the "
    "season of Light, it was the season of Darkness, it was the spring of hope, it was the winter "
    "of despair, we had everything before us, we had nothing before us. "
) * 20


class CharModel(torch.nn.Module):
    def __init__(self, vocab: int, hidden: int, use_torch: bool):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 64)
        lstm = torch.nn.LSTM if use_torch else rt.LSTM
        self.lstm = lstm(64, hidden, num_layers=2, dropout=0.1)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, tokens):
        return self.head(self.lstm(self.embed(tokens))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32, help="sequences per step, over all processes")
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--torch", action="store_true", help="torch.nn.LSTM instead of rt.LSTM")
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    chars = sorted(set(TEXT))
    data = torch.tensor([chars.index(c) for c in TEXT])
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(CharModel(len(chars), args.hidden, args.torch))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    share = args.batch // world
    g = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        starts = torch.randint(0, len(data) - args.seq_len - 1, (args.batch,), generator=g)
        mine = starts[rank * share:(rank + 1) * share]
        window = torch.stack([data[s:s + args.seq_len + 1] for s in mine.tolist()], dim=1)  # (T+1, N)
        logits = model(window[:-1])
        loss = F.cross_entropy(logits.reshape(-1, len(chars)), window[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == args.steps:
            elapsed = time.perf_counter() - start
            rate = step * share * args.seq_len / elapsed
            print(f"rank {rank}: step {step:3d}  loss {loss.item():.3f}  {rate:,.0f} chars/s", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
