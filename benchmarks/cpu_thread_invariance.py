"""Why a CPU run's metrics depend on its thread count, and what removing that would cost.

Prints, for 1 and 2 torch threads: whether a forward pass and the gradients of one backward pass
are bit-identical (oneDNN convolutions on, torch's default, and off), the training-step time both
ways, and the metrics of one short MEMO run (`incsweep run`'s code path, incremental.run) at each
thread count, beside the same run at three other seeds. Usage: .venv/bin/python benchmarks/cpu_thread_invariance.py
Output: benchmarks/results/cpu_thread_invariance.txt (docs/engine.md, "Determinism").
"""

from __future__ import annotations

import platform
import time

import torch
import torch.nn.functional as F

from incsweep.incremental.backbones import build_backbone
from incsweep.incremental.run import RunConfig, run

NETS = [("resnet14", 1, 28, 32, {"width": 8}), ("resnet32", 3, 32, 128, {})]  # the demo's MEMO net; the papers'


def _pass(name, c, hw, bs, kw, threads, onednn):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_backbone(name, c, **kw)
    x = torch.randn(bs, c, hw, hw)
    with torch.backends.mkldnn.flags(enabled=onednn):
        y = net(x)
        y.square().sum().backward()
    return y.detach(), {n: p.grad for n, p in net.named_parameters()}


def _step_ms(name, c, hw, bs, kw, threads, onednn, steps=5):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_backbone(name, c, **kw)
    head = torch.nn.Linear(net.out_dim, 10)
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.01, momentum=0.9)
    x, y = torch.randn(bs, c, hw, hw), torch.randint(0, 10, (bs,))
    with torch.backends.mkldnn.flags(enabled=onednn):
        for i in range(steps + 2):  # 2 warm-up steps
            if i == 2:
                tic = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(head(net(x)), y).backward()
            opt.step()
    return (time.perf_counter() - tic) / steps * 1000


def main() -> None:
    saved = torch.get_num_threads()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for name, c, hw, bs, kw in NETS:
        label = f"{name} {kw or ''} {c}x{hw}x{hw}, batch {bs}".replace(" {}", "")
        for onednn in (True, False):
            (y1, g1), (y2, g2) = (_pass(name, c, hw, bs, kw, t, onednn) for t in (1, 2))
            differ = [n for n in g1 if not torch.equal(g1[n], g2[n])]
            rel = max(((g1[n] - g2[n]).abs().max() / g1[n].abs().max()).item() for n in g1)
            t1, t2 = (_step_ms(name, c, hw, bs, kw, t, onednn) for t in (1, 2))
            print(f"{label}, oneDNN {'on ' if onednn else 'off'}: 1 vs 2 threads: forward "
                  f"{'bit-equal' if torch.equal(y1, y2) else 'differs'}; gradients: {len(differ)} of {len(g1)} "
                  f"differ (largest relative {rel:.1e}); step {t1:.0f} ms (1 thread), {t2:.0f} ms (2 threads)")
    torch.set_num_threads(saved)
    # One short MEMO run on synthetic Fashion-MNIST-shaped data at each thread count.
    base = {"method": "memo", "benchmark": {"name": "synthetic", "n_classes": 10, "image_size": 28, "channels": 1,
                                            "train_per_class": 100, "test_per_class": 40, "init_classes": 2,
                                            "increment": 2},
            "method_config": {"backbone": "resnet14", "width": 8, "epochs": 1, "init_epochs": 2, "batch_size": 32,
                              "memory_size": 200}}
    # Seeds 1-3 at one thread: how far any perturbation moves this short schedule's result.
    for threads, seed in ((1, 0), (2, 0), (1, 1), (1, 2), (1, 3)):
        r = run(RunConfig.from_dict({**base, "threads": threads, "seed": seed}))
        print(f"MEMO, 5 tasks, threads {threads}, seed {seed}: avg_acc {r.final.test.avg_acc:.4f}, "
              f"last {r.final.test.last_acc:.4f}, memory {r.final.memory.total_bytes} bytes")


if __name__ == "__main__":
    main()
