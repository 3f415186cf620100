"""Run a command and report its peak RSS as the last line of stderr.

A small launcher, because a child forked straight from the benchmark would inherit the
benchmark's own (large) resident size in its ru_maxrss.
"""

import resource
import subprocess
import sys

code = subprocess.call(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"peak_rss_kib={peak}", file=sys.stderr)
sys.exit(code)
