"""Child process for the crash test: puts messages as fast as it can until it is SIGKILLed.

Usage: python -m tests.edge_agent.outbox_writer OUTBOX_FILE

Prints ``ready`` once the outbox is open, then for every message ``put SEQ`` right
after ``put`` returned (the message is committed), and ``deliver SEQ`` just
before acknowledging a message (as the link does once the broker has it).
Every line is flushed at once, so the parent knows exactly what was promised.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge_agent.outbox import Outbox


def main(path: str) -> None:
    """Put forever; every 10th put, deliver (ack) the oldest 5 queued messages."""
    box = Outbox(Path(path))
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    count = 0
    while True:
        seq = box.put("telemetry", "t/dev/telemetry",
                      lambda s: json.dumps({"seq": s, "pad": "x" * (s % 200)}).encode())
        out.write(f"put {seq}\n")
        out.flush()
        count += 1
        if count % 10 == 0:
            for row in box.pending(5):
                out.write(f"deliver {json.loads(row.payload)['seq']}\n")
                out.flush()
                box.ack(row.id)


if __name__ == "__main__":
    main(sys.argv[1])
