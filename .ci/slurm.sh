#!/usr/bin/env bash
# A one-node Slurm on this machine for the Slurm executor's tests and benchmark (issue 11):
#   .ci/slurm.sh install   apt-get slurm-wlm and munge when missing (root or sudo)
#   .ci/slurm.sh start     write /etc/slurm/slurm.conf (this host, its CPUs and memory), start
#                          munged, slurmctld and slurmd, wait until `sinfo` shows the node idle
#   .ci/slurm.sh stop      stop the daemons this script started
#   .ci/slurm.sh status    sinfo
# No slurmdbd: `sacct` needs one, so accounting is off (accounting_storage/none) and every ended
# job is logged by jobcomp/filetxt in $PIPE_SLURM_DIR/jobcomp.log (the tests count jobs there).
# A slurm.conf not written by this script is never overwritten.
set -euo pipefail
DIR=${PIPE_SLURM_DIR:-/var/tmp/pipe-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by pipe .ci/slurm.sh"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

install() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
  local t0=$SECONDS
  echo "== apt-get install slurm-wlm munge"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge >/dev/null
  echo "installed slurm-wlm and munge in $((SECONDS - t0)) s"
}

# True when /etc/slurm/slurm.conf belongs to a real cluster (not written here).
foreign_conf() { [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; }

write_conf() {
  local host node
  host=$(hostname -s)
  # `slurmd -C` prints this machine's CPUs, sockets, cores and RealMemory; keep a little
  # memory back so the node is never marked invalid for having less than it announces.
  node=$(slurmd -C | head -1 | sed -E "s/^NodeName=[^ ]+ //; s/RealMemory=([0-9]+)/RealMemory=\1/")
  local mem cpus
  mem=$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$node")
  cpus=$(sed -nE 's/.*CPUs=([0-9]+).*/\1/p' <<<"$node")
  mem=$((mem * 9 / 10))
  node=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$mem/" <<<"$node")
  $SUDO mkdir -p /etc/slurm "$DIR/ctld" "$DIR/d"
  $SUDO tee "$CONF" >/dev/null <<EOF
$MARK
ClusterName=pipe
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem / cpus / 2))
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
MinJobAge=300
ReturnToService=2
EnforcePartLimits=ALL
SchedulerParameters=sched_interval=1
NodeName=$host NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  if foreign_conf; then
    echo "$CONF was not written by this script: using that Slurm as it is"
    sinfo -h >/dev/null && return
    echo "but its controller does not answer sinfo"; exit 1
  fi
  install
  write_conf
  if ! pgrep -x munged >/dev/null; then
    $SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
    [ -f /etc/munge/munge.key ] || $SUDO mungekey --create >/dev/null 2>&1 ||
      $SUDO create-munge-key -f >/dev/null
    $SUDO munged --force
    touch "$DIR/started-munged"
  fi
  [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null ||
    $SUDO slurmctld
  [ -f "$DIR/slurmd.pid" ] && kill -0 "$(cat "$DIR/slurmd.pid")" 2>/dev/null ||
    $SUDO slurmd
  touch "$DIR/started-slurm"
  local t0=$SECONDS
  until sinfo -h -o %T 2>/dev/null | grep -qx idle; do
    if [ $((SECONDS - t0)) -gt 60 ]; then
      echo "Slurm did not come up in 60 s:"; sinfo || true
      tail -20 "$DIR/slurmctld.log" "$DIR/slurmd.log" || true
      exit 1
    fi
    # A node left DOWN by an earlier unclean stop comes back at once.
    scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  echo "Slurm is up ($((SECONDS - t0)) s): $(sinfo -h -o '%P %D %T %c cpus %m MB')"
}

stop_pid() {
  local f=$1
  if [ -f "$f" ]; then
    local pid
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$f"
  fi
}

stop() {
  # Only what start started: never a real cluster's daemons or jobs.
  if [ -f "$DIR/started-slurm" ]; then
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
    stop_pid "$DIR/slurmd.pid"
    stop_pid "$DIR/slurmctld.pid"
    rm -f "$DIR/started-slurm"
  fi
  if [ -f "$DIR/started-munged" ]; then
    stop_pid /run/munge/munged.pid
    rm -f "$DIR/started-munged"
  fi
  echo "Slurm stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
