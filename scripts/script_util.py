"""Helpers shared by the data and weight scripts (prepare_mugv.py, convert_mugv.py, tokenize_hf.py, prepare_sft.py).

Every bad input ends in fail(): one line "error: ..." on stderr and exit 1, after
removing the temporary output files registered in open_tmp (and the output folders
registered in made_dirs, when the run created them and they are empty again), so a
failed run leaves no half-written output.

An output folder is checked before any work (out_dir_ready): a file there, or a path
that cannot be made a folder, is one error line; so is a folder that already holds
files named like this run's outputs (an earlier run's: a training glob would mix
them with the new ones). Outputs are written as NAME.tmp and renamed into place only
when all are written (commit_tmp).

A whole output folder can also be written at once (out_dir_tmp, commit_dir): everything goes into
a temporary folder beside it, renamed into place at the end; a folder already holding outputs is
replaced only with --force, and never one holding other files.
"""
import fnmatch
import glob
import os
import shutil
import sys
import tempfile

open_tmp = []   # temporary output files to remove when a run fails
made_dirs = []  # output folders this run created, removed (if empty) when it fails
tmp_dirs = []   # temporary output folders to remove when a run fails


def fail(msg):
    for t in open_tmp:
        try:
            os.remove(t)
        except OSError:
            pass
    for d in tmp_dirs:
        shutil.rmtree(d, ignore_errors=True)
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


def out_dir_tmp(path, flag, patterns, force):
    """Checks that the output folder `path` (flag: the option that named it) may be written: absent,
    empty, or (with force) holding only files matching the glob patterns; returns a new temporary
    folder beside it to write into, for commit_dir."""
    path = os.path.normpath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        fail("%s %s: is a file, expected a folder for the outputs" % (flag, path))
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        ours = [n for n in names if any(fnmatch.fnmatch(n, pat) for pat in patterns)]
        other = [n for n in names if n not in ours]
        if other:
            fail("%s %s: holds files that are not this script's outputs (%s%s): give a new or empty folder" %
                 (flag, path, ", ".join(other[:3]), " and %d more" % (len(other) - 3) if len(other) > 3 else ""))
        if ours and not force:
            fail("%s %s: already holds %s%s (an earlier run's outputs): give --force to replace them, or another folder" %
                 (flag, path, ", ".join(ours[:3]), " and %d more" % (len(ours) - 3) if len(ours) > 3 else ""))
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".tmp-", dir=parent)
    except OSError as e:
        fail("%s %s: cannot make a folder beside it (%s)" % (flag, path, e.strerror or e))
    tmp_dirs.append(tmp)
    return tmp


def commit_dir(tmp, path):
    """Puts the finished temporary folder tmp (from out_dir_tmp) in place of `path`: a rename, after
    fsync of every file; an earlier folder there (checked by out_dir_tmp) is moved aside first and
    removed after."""
    path = os.path.normpath(path)
    for name in os.listdir(tmp):
        fd = os.open(os.path.join(tmp, name), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    os.chmod(tmp, 0o755)   # mkdtemp's 0700 would hide the data from other users
    old = None
    if os.path.isdir(path):
        old = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".old-", dir=os.path.dirname(os.path.abspath(path)))
        os.rmdir(old)
        try:
            os.rename(path, old)
        except OSError as e:
            fail("%s: cannot move the earlier folder aside (%s)" % (path, e.strerror or e))
    try:
        os.rename(tmp, path)
    except OSError as e:
        if old:
            os.rename(old, path)
        fail("%s: cannot rename %s into place (%s)" % (path, tmp, e.strerror or e))
    tmp_dirs.remove(tmp)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass
