"""``nbtimeout install-kernel``: "Python 3 (time limits)", a kernel that loads nbtimeout by itself.

Whatever runs the kernel (nbval's ``--nbval-kernel-name``, nbmake, ``nbconvert
--ExecutePreprocessor.kernel_name``, VS Code, JupyterLab's kernel picker) gets in-kernel limits with no
change to the notebook: the kernel's command line loads the extension and sets the every-cell limit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from .._errors import MODES
from .._units import parse_duration


def argv(cell_timeout: str | None, mode: str | None) -> list[str]:
    """The kernel's command line: this Python's ipykernel, nbtimeout loaded, the settings given."""
    line = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
            "--InteractiveShellApp.extensions=nbtimeout"]
    if cell_timeout:
        parse_duration(cell_timeout, "--cell-timeout")  # a ValueError names what is wrong
        line.append(f"--TimeoutMagics.every_cell={cell_timeout}")
    if mode:
        if mode not in MODES:
            raise ValueError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
        line.append(f"--TimeoutMagics.default_mode={mode}")
    return line


def install(name: str, display_name: str, cell_timeout: str | None, mode: str | None,
            user: bool = False, sys_prefix: bool = False) -> str:
    """Install the kernelspec; the folder it went to."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = {"argv": argv(cell_timeout, mode), "display_name": display_name, "language": "python",
            "metadata": {"debugger": True, "nbtimeout": {"cell_timeout": cell_timeout, "mode": mode}}}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "kernel.json").write_text(json.dumps(spec, indent=1))
        prefix = sys.prefix if sys_prefix else None
        return KernelSpecManager().install_kernel_spec(folder, name, user=user, prefix=prefix)
