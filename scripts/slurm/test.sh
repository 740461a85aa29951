#!/usr/bin/env bash
# `make slurm-test`: run `midtrain prepare --emit-slurm 3` of the committed fixtures on a real
# one-node Slurm and compare its datasets with a one-process run.
#
# Installs slurm-wlm and munge with apt-get when missing, starts munged, slurmctld and slurmd on
# 127.0.0.1 from a temporary folder (their own slurm.conf, munge key, ports 16817/16818), submits
# the generated script as it is, waits for the queue to drain, and stops the daemons it started
# (by their pid files). The node claims 4 CPUs so that the 3 tasks of an array run at once.
#   scripts/slurm/test.sh [MIDTRAIN]     (default: target/debug/midtrain)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MIDTRAIN="$(realpath "${1:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/midtrain}")"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi
W="$(mktemp -d /tmp/midtrain-slurm.XXXXXX)"
HOST="$(hostname -s)"
mkdir -p "$W"/{state,spool,log,munge,run}
status=1
stop() {
  for pid in "$W/slurmd.pid" "$W/slurmctld.pid" "$W/munge/pid"; do
    [ -s "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  sleep 1
  if [ $status -eq 0 ]; then rm -rf "$W"; else echo "slurm-test: kept $W for a look" >&2; fi
}
trap stop EXIT
dd if=/dev/urandom of="$W/munge/key" bs=1024 count=1 status=none
chmod 400 "$W/munge/key"
munged --force --key-file="$W/munge/key" --socket="$W/munge/socket" --pid-file="$W/munge/pid" \
  --log-file="$W/munge/log" --seed-file="$W/munge/seed"
cat > "$W/slurm.conf" <<CONF
ClusterName=midtrain-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$W/munge/socket
CredType=cred/munge
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
MpiDefault=none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=4 RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$W/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  state="$(sinfo -h -o %T 2>/dev/null || true)"
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || { echo "slurm-test: the node did not come up ($state); see $W/log" >&2; exit 1; }

# The fixture config, writing into the temporary folder, for the cluster and for one process.
config() {
  sed -e "s|output = \"../out/prepared\"|output = \"$W/$1\"|" -e "s|\"dumps/|\"$ROOT/fixtures/dumps/|g" \
      -e "s|\"models/|\"$ROOT/fixtures/models/|g" -e "s|\"tokenizer.json\"|\"$ROOT/fixtures/tokenizer.json\"|" \
      "$ROOT/fixtures/prepare.toml" > "$W/$1 config.toml"   # a space in the path, on purpose
}
config cluster
config local
"$MIDTRAIN" prepare "$W/local config.toml" -q >/dev/null
"$MIDTRAIN" prepare "$W/cluster config.toml" --emit-slurm 3 --slurm-cpus 1 --slurm-mem 500M \
  --slurm-time 00:20:00 > "$W/prepare.sh"
start=$(date +%s)
(cd "$W/run" && bash "$W/prepare.sh")
while [ -n "$(squeue -h -o %i)" ]; do
  if squeue -h -o %r | grep -q DependencyNeverSatisfied; then
    echo "slurm-test: a job failed, its dependants can never run:" >&2
    scontrol -o show job | grep -v 'JobState=COMPLETED' | grep -o 'JobId=[0-9]* JobName=[^ ]*\|JobState=[A-Z_]*\|StdOut=[^ ]*' >&2
    exit 1
  fi
  [ $(( $(date +%s) - start )) -lt 900 ] || { echo "slurm-test: jobs still queued after 15 min" >&2; squeue; exit 1; }
  sleep 2
done
echo "slurm-test: every job left the queue after $(( $(date +%s) - start )) s"
failed="$(scontrol -o show job | grep -v 'JobState=COMPLETED' || true)"
if [ -n "$failed" ]; then
  echo "slurm-test: jobs that did not complete:" >&2
  echo "$failed" | grep -o 'JobId=[0-9]* JobName=[^ ]*\|JobState=[A-Z_]*' >&2
  exit 1
fi
echo "slurm-test: $(scontrol -o show job | wc -l) jobs and array tasks COMPLETED"
# Every dataset file but the json ones that name the output folder must be byte-identical.
status=0
for dataset in "$W/local"/*/; do
  name="$(basename "$dataset")"
  [ "$name" = _dedup ] && continue
  for f in "$dataset"*; do
    [ -f "$f" ] || continue
    case "$f" in *.json) continue ;; esac
    cmp -s "$f" "$W/cluster/$name/$(basename "$f")" || { echo "differs: $name/$(basename "$f")" >&2; status=1; }
  done
  [ -f "$W/cluster/$name/manifest.json" ] || { echo "no manifest: $name" >&2; status=1; }
done
[ $status -eq 0 ] && echo "slurm-test: every dataset is byte-identical to the one-process run"
grep -l "concurrently\|error" "$W/run/logs"/*.log 2>/dev/null && status=1
exit $status
