"""Executes notebooks through a real Jupyter client (nbclient) with the gopeft kernel.

usage: /usr/bin/python3 scripts/nbclient_run.py KERNEL_NAME OUT_DIR NOTEBOOK...

Each notebook must run with no error; an error output anywhere fails it. The executed copies are
written to OUT_DIR. Prints one line per notebook and a closing 'N passed, N failed' line.
"""
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main():
    kernel, out_dir, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    passed = failed = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, kernel_name=kernel, timeout=300, allow_errors=False,
                                resources={"metadata": {"path": os.path.dirname(path) or "."}})
        t0 = time.time()
        try:
            client.execute()
            errors = [c for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                raise RuntimeError("an error output was recorded")
            images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                         if "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}))
            print(f"ok   {path}  {time.time() - t0:.1f} s, {images} images")
            passed += 1
        except (CellExecutionError, RuntimeError, Exception) as e:  # report and go on
            print(f"FAIL {path}  {time.time() - t0:.1f} s: {str(e)[:2000]}")
            failed += 1
        nbformat.write(nb, os.path.join(out_dir, os.path.basename(path)))
    print(f"notebooks (nbclient): {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
