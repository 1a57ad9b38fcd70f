#!/bin/bash
# Checks the outputs of the e2e workspace's targets (arguments: the tool, the
# greeting, the big file, the empty file, the tree and the tree listing).
set -euo pipefail

hello=$1 greeting=$2 big=$3 empty=$4 tree=$5 listing=$6

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The tool runs and greets.
out=$("$hello" tester)
grep -qx 'Hello, tester!' <<<"$out" || fail "tool printed: $out"
grep -qx 'checksum [0-9a-f]\{16\}' <<<"$out" || fail "tool printed: $out"

# The genrule ran the tool on the name genrule's output.
grep -qx 'Hello, remote cache!' "$greeting" || fail "greeting is: $(cat "$greeting")"
[[ $(wc -l < "$greeting") -eq 2 ]] || fail "greeting has not 2 lines"

# The big file is complete, down to its last line.
[[ $(wc -c < "$big") -eq 5200000 ]] || fail "big file has $(wc -c < "$big") bytes"
[[ $(head -n 1 "$big") == 'line 0000000' ]] || fail "big file starts wrong"
[[ $(tail -n 1 "$big") == 'line 0399999' ]] || fail "big file ends wrong"

# The empty file exists and is empty.
[[ -f $empty && ! -s $empty ]] || fail "empty file is missing or not empty"

# The tree has its files, and the listing made from it as an input matches.
[[ $(cat "$tree/greeting.txt") == 'hello from a tree' ]] || fail "tree greeting wrong"
[[ $(cat "$tree/sub/numbers.txt") == $'one\ntwo\nthree' ]] || fail "tree numbers wrong"
[[ -f $tree/sub/deeper/empty.txt && ! -s $tree/sub/deeper/empty.txt ]] || fail "tree empty file wrong"
expected='./
./greeting.txt 18
./sub/
./sub/deeper/
./sub/deeper/empty.txt 0
./sub/numbers.txt 14'
[[ $(cat "$listing") == "$expected" ]] || fail "tree listing is: $(cat "$listing")"

echo "all outputs are as expected"
