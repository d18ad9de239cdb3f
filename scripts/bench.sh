#!/usr/bin/env bash
# The benchmark (coresnap vs gdb / eu-stack on the corpus) is not written yet.
echo "bench: not written yet" >&2
exit 1
