"""Helpers shared by the data and weight scripts (prepare_mugv.py, convert_mugv.py).

Every bad input ends in fail(): one line "error: ..." on stderr and exit 1, after
removing the temporary output files registered in open_tmp, so a failed run leaves
no half-written output.
"""
import os
import sys

open_tmp = []  # temporary output files to remove when a run fails


def fail(msg):
    for t in open_tmp:
        try:
            os.remove(t)
        except OSError:
            pass
    sys.stdout.flush()
    sys.stderr.write("error: " + str(msg).replace("\n", " ") + "\n")
    sys.exit(1)
