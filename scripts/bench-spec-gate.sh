#!/usr/bin/env bash
# The spec gate's figures, printed as bench.sh figure lines (one JSON object a line):
# the tasks gate on 100,000 tasks in one dependency cycle and in one chain (wall time and peak
# memory of `omoi-worker evaluate tasks`, from /usr/bin/time), and the precision and recall of the
# EARS reading for "valid EARS" on the labelled corpus, through `omoi-worker evaluate
# requirements`. Usage: scripts/bench-spec-gate.sh WORKER [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
worker=$1
runs=${2:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One tasks file of N tasks: "cycle" (each depends on the next, the last on the first) or
# "chain" (each on the one before). Task i (1-based) is TSK-<i> zero-padded to three digits, so
# every id is well formed (TSK-001 … TSK-100000) and the gate's verdict is about the graph alone.
tasks_file() { # kind n file
  awk -v kind="$1" -v n="$2" 'function id(i) { return sprintf("\"TSK-%03d\"", i) }
  BEGIN {
    printf "{\"tasks\":[";
    for (i = 1; i <= n; i++) {
      if (kind == "cycle") dep = id(i % n + 1);
      else dep = (i == 1) ? "" : id(i - 1);
      printf "%s{\"id\":%s,\"title\":\"Task %d\",\"description\":\"Does step %d.\",", (i > 1 ? "," : ""), id(i), i, i;
      printf "\"type\":\"implementation\",\"priority\":\"medium\",\"estimate_hours\":2,";
      printf "\"acceptance_criteria\":[\"step %d is done\"],\"depends_on\":[%s],\"requirements\":[]}", i, dep;
    }
    printf "]}\n";
  }' > "$3"
}

for kind in cycle chain; do
  file="$tmp/$kind.json"
  tasks_file "$kind" 100000 "$file"
  seconds=()
  kib=()
  for _ in $(seq "$runs"); do
    # Exit 1 is the verdict on the cycle; only 2 and above are failures of the run.
    out=$( { /usr/bin/time -f '%e %M' "$worker" evaluate tasks "$file" --no-traceability \
      --workspace "$tmp" > "$tmp/out.json"; } 2>&1 ) || [ $? -eq 1 ]
    read -r s k <<< "$(echo "$out" | tail -n 1)"
    seconds+=("$s")
    kib+=("$k")
  done
  # The input is sound but for its graph: no id may be reported as malformed.
  if grep -q 'malformed id' "$tmp/out.json"; then
    echo "bench-spec-gate: the $kind input has malformed task ids" >&2
    exit 1
  fi
  s=$(printf '%s\n' "${seconds[@]}" | sort -n)
  k=$(printf '%s\n' "${kib[@]}" | sort -n)
  mid=$(( (runs + 1) / 2 ))
  printf '{"figure":"tasks gate, 100,000 tasks in one %s: time","value":%s,"unit":"s","target":1,"spread":"min %s … max %s (%s runs)"}\n' \
    "$kind" "$(echo "$s" | sed -n "${mid}p")" "$(echo "$s" | head -n1)" "$(echo "$s" | tail -n1)" "$runs"
  printf '{"figure":"tasks gate, 100,000 tasks in one %s: peak memory","value":%s,"unit":"MiB","target":200,"spread":"min %s KiB … max %s KiB (%s runs)"}\n' \
    "$kind" "$(awk "BEGIN{print $(echo "$k" | sed -n "${mid}p")/1024}")" "$(echo "$k" | head -n1)" "$(echo "$k" | tail -n1)" "$runs"
done

# The corpus as one requirements output: sentence n is REQ-CORPUS-<n>; the evaluation's `ears`
# lists the requirements read as valid EARS.
corpus=tests/fixtures/ears-corpus.tsv
grep -v '^#' "$corpus" | grep -v '^$' > "$tmp/corpus.tsv"
awk -F '\t' 'BEGIN { printf "{\"requirements\":[" }
  {
    text = $2; gsub(/\\/, "\\\\", text); gsub(/"/, "\\\"", text);
    printf "%s{\"id\":\"REQ-CORPUS-%03d\",\"title\":\"sentence %d\",\"text\":\"%s\",", (NR > 1 ? "," : ""), NR, NR, text;
    printf "\"type\":\"functional\",\"priority\":\"medium\",\"acceptance_criteria\":[\"a\",\"b\"]}";
  }
  END { printf "]}\n" }' "$tmp/corpus.tsv" > "$tmp/corpus.json"
"$worker" evaluate requirements "$tmp/corpus.json" > "$tmp/corpus-eval.json" || [ $? -eq 1 ]
grep -o '"requirement": "REQ-CORPUS-[0-9]*"' "$tmp/corpus-eval.json" \
  | grep -o '[0-9]*"$' | tr -d '"' | sed 's/^0*//' > "$tmp/valid-read"
awk -F '\t' -v read="$tmp/valid-read" '
  BEGIN { while ((getline n < read) > 0) valid[n] = 1 }
  {
    labelled = ($1 !~ /^invalid:/);
    if (labelled && (NR in valid)) tp++;
    else if (!labelled && (NR in valid)) fp++;
    else if (labelled) fn++;
  }
  END {
    printf "{\"figure\":\"EARS corpus: precision of valid EARS\",\"value\":%.4f,\"unit\":\"\",\"target\":0.95,\"spread\":\"%d sentences, %d read valid, %d of them labelled invalid\"}\n", tp / (tp + fp), NR, tp + fp, fp;
    printf "{\"figure\":\"EARS corpus: recall of valid EARS\",\"value\":%.4f,\"unit\":\"\",\"target\":0.95,\"spread\":\"%d labelled valid, %d of them rejected\"}\n", tp / (tp + fn), tp + fn, fn;
  }' "$tmp/corpus.tsv"
