"""Why proxy anchor collapsed in the pretrained regime: learning-rate probes on the validation classes.

    .venv/bin/python benchmarks/proxy_lr_probe.py

Proxy anchor on `emoji_pretrained.yaml` at 64 px, seed 0, 4 epochs, no time budget, with the head
warm-up on or off and the head and proxy learning-rate multipliers varied; G and H ask whether
multi-similarity (no proxies) can share proxy anchor's setting, so one config serves both; I and J
whether proxy anchor closes its gap to multi-similarity with faster proxies or a faster network. Prints each
probe's validation MAP@R per epoch (no test figures). Runs are kept under runs/probe_pa/ and read back.
"""

from __future__ import annotations

from _runs import train
from pretrained import loss_overrides

BASE = ["data.image_size=64", "train.epochs=4", "train.time_budget_s=null", "seed=0"]
PROBES = {  # name -> (loss config, warm-up epochs, head x, proxies x)
    "A_w1_1_10_100": ("emoji_proxy_anchor", 1, 10.0, 100.0),
    "B_w0_1_10_100": ("emoji_proxy_anchor", 0, 10.0, 100.0),
    "C_w1_1_1_10": ("emoji_proxy_anchor", 1, 1.0, 10.0),
    "D_w0_1_1_10": ("emoji_proxy_anchor", 0, 1.0, 10.0),
    "E_w1_1_10_10": ("emoji_proxy_anchor", 1, 10.0, 10.0),
    "F_w1_1_1_100": ("emoji_proxy_anchor", 1, 1.0, 100.0),
    "G_ms_w0_1_10": ("emoji", 0, 10.0, 100.0),  # multi-similarity as emoji_pretrained.yaml had it
    "H_ms_w1_1_1": ("emoji", 1, 1.0, 100.0),  # ... with proxy anchor's setting F
    # Proxy anchor still climbing when MS has levelled off: faster proxies, or a faster network.
    "I_w1_1_1_300": ("emoji_proxy_anchor", 1, 1.0, 300.0),
    "J_w1_1_1_100_lr3e-4": ("emoji_proxy_anchor", 1, 1.0, 100.0),
}
EXTRA = {"J_w1_1_1_100_lr3e-4": ["optimizer.learning_rate=3e-4"]}


def main() -> None:
    print("| probe | loss | head warm-up | lr x (backbone, head, proxies) | validation MAP@R per epoch |\n"
          "|---|---|---|---|---|")
    for name, (loss, warmup, head, proxies) in PROBES.items():
        metrics = train("emoji_pretrained", name, "probe_pa", [
            *loss_overrides(loss), *BASE, f"train.head_warmup_epochs={warmup}",
            f"optimizer.lr_multipliers.head={head}", f"optimizer.lr_multipliers.loss={proxies}", *EXTRA.get(name, [])])
        curve = ", ".join(f"{v['map@r']:.3f}" for v in metrics["validation"])
        extra = " ".join(EXTRA.get(name, []))
        print(f"| {name[0]} | {loss} | {warmup} | 1, {head:g}, {proxies:g} {extra} | {curve} |", flush=True)


if __name__ == "__main__":
    main()
