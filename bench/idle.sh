#!/bin/sh
# The speed figures to quote, for an idle machine (~12 min on 2 cores; run from the repo root).
#   sh bench/idle.sh            # essential: end to end (~7.5 min), generation as processes (~2 min)
#                               # and in-process char-LM cases (~2 min)
#   sh bench/idle.sh --scaling  # also the hidden/batch/length sweep and its plots (~4 min more)
set -e
PY=.venv/bin/python
uptime
# 1. What a user waits for: rnnkit train/eval vs a plain PyTorch script, processes, A B A B.
$PY bench/e2e.py --name e2e
uptime
# 2. Generation at batch 1, each side in its own process (~2 min).
$PY bench/gen_proc.py --repeats 3 --tokens 1000 --name gen-proc-idle
uptime
# 3. In-process detail: char-LM training step, scoring, generation (medians of alternated repeats).
$PY bench/run.py --quick --only train,score,generate --modes lstm,gru --repeats 3 --name results-idle
if [ "$1" = "--scaling" ]; then
  uptime
  $PY bench/run.py --only train,scale --modes lstm,gru --repeats 2 --name results-idle-scaling
  $PY bench/plots.py bench/results-idle-scaling.json --label "(idle)"
fi
uptime
