"""The far side's recorder as a service: `lab.services.recorder` held in an end host.

The program itself stays apart (and imports nothing of the lab): it starts in
every end host at boot, and the lab waits for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lab.runtime.handle import NodeHandle, project_env
from lab.services.service import Service


class Recorder(Service):
    """One recorder: every IP packet that arrives at its node, a JSON line in `file`."""

    name = "recorder"

    def __init__(self, node: NodeHandle, run_folder: Path) -> None:
        super().__init__(node)
        # in the run folder itself, beside the other nodes' (FarSide reads them all)
        self.file = run_folder / f"{node.name}.packets.jsonl"
        self.log = node.folder / "recorder.log"

    def prepare(self) -> None:
        self.file.touch()

    def start(self) -> None:
        # -S: no site packages to scan at start (it needs the standard library and lab only)
        self.spawn([sys.executable, "-S", "-m", "lab.services.recorder", str(self.file)],
                   self.log, env=project_env())

    def ready(self) -> bool:
        # its first line, once its socket is open
        return '"ready"' in self.file.read_text()[:64]

    def not_ready(self) -> str:
        said = self.log.read_text().strip().splitlines()[-1:] if self.log.exists() else []
        return f"recorder did not start: {said[0] if said else self.file.name}"
