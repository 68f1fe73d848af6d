"""Run the PML peer of `../shared/peer/pml_peer.py` unchanged on the emoji sprites of another sheet size.

    ~/pml-venv/bin/python benchmarks/pml_peer_sheets.py SHEET_PX emoji DATA [pml_peer.py arguments]

The peer's loader reads the 32 px sheets only; `emoji_pretrained.yaml` can read the vendors' own
64 px drawings (`data.reader_args.size: 64`). This swaps in the peer's own `load_emoji(path, size)`
for that size, so both sides train on the same pixels; everything else is the peer's code. DATA is
the `package/` folder holding `img/<vendor>/sheets/<SHEET_PX>.png` (tfdml's reader fetches them).
"""

import sys
from pathlib import Path

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer"

if __name__ == "__main__":
    sheet = int(sys.argv.pop(1))
    sys.path.insert(0, str(PEER))
    import common  # noqa: E402  (the peer's modules, found on the path above)
    import pml_peer  # noqa: E402

    def load(name: str, path: str):
        if name != "emoji":
            raise SystemExit(f"unknown data set {name!r}: this peer reads the emoji package")
        return common.load_emoji(path, sheet)

    pml_peer.load = load
    pml_peer.main()
