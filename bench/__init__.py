"""labctl's benchmark harness (issue 7): ``python -m bench``.

It brings up a lab of its own (time scale 0.05, router on a free port), measures every figure of
``bench/README.md`` next to a plain-Docker baseline taken in the same run, prints a table, writes
``bench/results/latest.json`` and takes the lab down again, also on failure or Ctrl-C.

Traffic only goes to 127.0.0.1 (the lab's router, baseline containers' published ports) or to the
lab's own containers on the Docker bridge; every loop is bounded in count and time.
"""
