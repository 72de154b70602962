#!/usr/bin/env bash
# A one-node SLURM cluster in a scratch folder, for trying the sweep's job arrays on one machine
# (tests/slurm_test.ts). Needs root and Debian's slurm-wlm and munge
# (apt-get install slurm-wlm munge). Nothing outside the scratch folder is changed: munged, slurmctld
# and slurmd run with their key, socket, state, spool, pid and log files in it.
#
#   tools/slurm_cluster.sh up DIR     start the cluster; prints `export SLURM_CONF=DIR/slurm.conf`
#   tools/slurm_cluster.sh down DIR   stop the daemons (by their pid files) and cancel all jobs
#
# Ports: SLURM_CTLD_PORT (default 6817) and SLURM_D_PORT (default 6818).
set -euo pipefail

usage() {
  echo "usage: $0 up|down DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
action=$1
dir=$(realpath -m "$2")
conf="$dir/slurm.conf"
ctld_port=${SLURM_CTLD_PORT:-6817}
d_port=${SLURM_D_PORT:-6818}

up() {
  [ "$(id -u)" = 0 ] || { echo "slurm_cluster: needs root" >&2; exit 1; }
  for tool in munged slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null || { echo "slurm_cluster: $tool missing (apt-get install slurm-wlm munge)" >&2; exit 1; }
  done
  mkdir -p "$dir"/{state,spool,log,run,munge}
  # munged refuses keys and sockets in folders others may write: the scratch folder is private.
  chmod 755 "$dir"
  runuser -u munge -- test -x "$dir" || {
    echo "slurm_cluster: user munge cannot enter $dir; make its parent folders world-executable" >&2
    exit 1
  }
  chown munge:munge "$dir/munge"
  chmod 755 "$dir/munge"
  # A fresh key for this cluster only.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chown munge:munge "$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  runuser -u munge -- munged \
    --socket="$dir/munge/munge.socket" \
    --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed"
  local host cpus mem
  host=$(hostname)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  cat >"$conf" <<EOF
# One-node cluster written by tools/slurm_cluster.sh
ClusterName=digitsum
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=600
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$conf
  slurmctld -f "$conf"
  slurmd -f "$conf"
  # Ready when the node is idle.
  for _ in $(seq 1 60); do
    if sinfo -h -N -o '%t' 2>/dev/null | grep -qx 'idle'; then
      echo "export SLURM_CONF=$conf"
      return 0
    fi
    sleep 1
  done
  echo "slurm_cluster: the node did not become idle; logs in $dir/log" >&2
  sinfo -N -l >&2 || true
  exit 1
}

stop_pid() {
  local file=$1
  [ -f "$file" ] || return 0
  local pid
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  if [ -f "$conf" ]; then
    SLURM_CONF=$conf scancel --full --quiet --user=root 2>/dev/null || true
  fi
  stop_pid "$dir/run/slurmd.pid"
  stop_pid "$dir/run/slurmctld.pid"
  stop_pid "$dir/munge/munged.pid"
}

case "$action" in
up) up ;;
down) down ;;
*) usage ;;
esac
