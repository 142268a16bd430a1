"""Helpers shared by the data and weight scripts (prepare_mugv.py, convert_mugv.py, tokenize_hf.py).

Every bad input ends in fail(): one line "error: ..." on stderr and exit 1, after
removing the temporary output files registered in open_tmp (and the output folders
registered in made_dirs, when the run created them and they are empty again), so a
failed run leaves no half-written output.

An output folder is checked before any work (out_dir_ready): a file there, or a path
that cannot be made a folder, is one error line; so is a folder that already holds
files named like this run's outputs (an earlier run's: a training glob would mix
them with the new ones). Outputs are written as NAME.tmp and renamed into place only
when all are written (commit_tmp).
"""
import glob
import os
import sys

open_tmp = []   # temporary output files to remove when a run fails
made_dirs = []  # output folders this run created, removed (if empty) when it fails


def fail(msg):
    for t in open_tmp:
        try:
            os.remove(t)
        except OSError:
            pass
    for d in reversed(made_dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass
    sys.stdout.flush()
    sys.stderr.write("error: " + str(msg).replace("\n", " ") + "\n")
    sys.exit(1)


def out_dir_ready(path, flag, patterns):
    """Makes the output folder `path` (flag: the option that named it) or checks the one there; fails
    when it holds files matching any of the glob patterns (relative to it)."""
    if os.path.exists(path) and not os.path.isdir(path):
        fail("%s %s: is a file, expected a folder for the outputs" % (flag, path))
    if not os.path.isdir(path):
        missing, p = [], os.path.abspath(path)
        while not os.path.exists(p):
            missing.append(p)
            p = os.path.dirname(p)
        try:
            os.makedirs(path)
        except OSError as e:
            fail("%s %s: cannot make the folder (%s)" % (flag, path, e.strerror or e))
        made_dirs.extend(reversed(missing))
    if not os.access(path, os.W_OK | os.X_OK):
        fail("%s %s: the folder is not writable" % (flag, path))
    old = sorted({os.path.basename(f) for pat in patterns for f in glob.glob(os.path.join(glob.escape(path), pat))})
    if old:
        fail("%s %s: already holds %s%s (an earlier run's outputs, which a training glob would mix with the new ones): "
             "remove them or give another folder" % (flag, path, ", ".join(old[:3]), " and %d more" % (len(old) - 3) if len(old) > 3 else ""))


def commit_tmp(pairs):
    """Renames each written (tmp, path) into place, once every output is whole."""
    for tmp, path in pairs:
        try:
            os.replace(tmp, path)
        except OSError as e:
            fail("%s: cannot rename %s into place (%s)" % (path, tmp, e.strerror or e))
        open_tmp.remove(tmp)
    if pairs:
        try:
            fd = os.open(os.path.dirname(os.path.abspath(pairs[0][1])), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass  # some filesystems cannot fsync a folder; the files themselves were fsync'ed
