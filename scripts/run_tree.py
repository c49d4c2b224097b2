"""Run a script of another copy of this repository (say, a worktree of an older commit) with
that copy's code, for before/after comparisons:

    .venv/bin/python scripts/run_tree.py /tmp/old /tmp/old/scripts/bench_memo.py --memo m.sqlite \
        bench squad --split train --questions 60

`PYTHONPATH=/tmp/old` is not enough: the editable install of .venv puts a finder on
`sys.meta_path` that maps the packages to this checkout before PYTHONPATH is searched, so the
"old" run would import the new code. This drops that finder and puts the copy first.
"""

import runpy
import sys

tree, script, *args = sys.argv[1:]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, tree)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
