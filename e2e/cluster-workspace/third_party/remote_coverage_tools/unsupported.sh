#!/bin/sh
# Placeholder for Bazel's coverage tools: coverage is not supported offline.
echo "coverage is not supported in this workspace" >&2
exit 1
