#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for `reprolib launch --on slurm` and its tests:
# munged, MariaDB + slurmdbd (accounting: what lets submitit see a job FAILED / CANCELLED /
# TIMEOUT), slurmctld and slurmd, from Debian's packages, as root, without systemd, talking
# over loopback only, every file under one temporary root.
#
#   tools/slurm/cluster.sh start     install the packages if missing, write the configs, start
#                                    what is not running, wait for the node to be idle
#   tools/slurm/cluster.sh stop      cancel every job, stop the daemons it started (by pid)
#   tools/slurm/cluster.sh status    the daemons, the node and the queue; exit 1 when not up
#   tools/slurm/cluster.sh env       the line to eval in a shell: export SLURM_CONF=...
#   eval "$(tools/slurm/cluster.sh env)"; sbatch --wrap hostname
#
# Idempotent: `start` on a running cluster checks it and returns; a changed config restarts
# the SLURM daemons.  Settings: REPROLIB_SLURM_ROOT (default /tmp/reprolib-slurm),
# REPROLIB_SLURM_PORT (slurmctld's port, default 6817; slurmd and slurmdbd use the next two),
# REPROLIB_SLURM_NO_INSTALL=1 (fail instead of running apt-get).  Where each setting comes
# from: ../shared/notes/slurm-single-node.md and the comments below.
set -euo pipefail

ROOT=${REPROLIB_SLURM_ROOT:-/tmp/reprolib-slurm}
PORT=${REPROLIB_SLURM_PORT:-6817}
CLUSTER=reprolib
PKGS=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge slurmdbd
      slurm-wlm-mysql-plugin mariadb-server)
CONF=$ROOT/etc/slurm.conf
MUNGE_SOCK=$ROOT/munge/munge.socket.2
DB_SOCK=$ROOT/mysql/mysqld.sock
export SLURM_CONF=$CONF

say() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

alive() {  # alive PIDFILE: the pid in it runs
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT CMD...: retry CMD every 0.2 s
    local n=$(( $1 * 5 )) what=$2; shift 2
    for ((i = 0; i < n; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "$what did not come up in time; logs in $ROOT/log/"
}

# --------------------------------------------------------------------------- packages

install() {
    local missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ ${REPROLIB_SLURM_NO_INSTALL:-0} == 1 ]] && die "packages missing: ${missing[*]}"
    [[ $(id -u) -eq 0 ]] || die "packages missing (${missing[*]}) and not root: cannot apt-get install"
    say "installing ${missing[*]}"
    # no service may start during the install (there is no systemd; we start our own)
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" > "$ROOT/log/apt.log" 2>&1 || {
        apt-get update -q > "$ROOT/log/apt-update.log" 2>&1 &&
            apt-get install -y -q --no-install-recommends "${missing[@]}" >> "$ROOT/log/apt.log" 2>&1
    } || rc=$?
    [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    [[ $rc -eq 0 ]] || die "apt-get install failed (exit $rc): see $ROOT/log/apt.log"
}

# --------------------------------------------------------------------------- configs

write_configs() {
    local cpus mem
    # the cores this process may use; not nproc's OMP_NUM_THREADS reading (a caller with
    # OMP_NUM_THREADS=1, e.g. a pytest worker, would otherwise get a 1-CPU node that never
    # runs a 2-task job: it pends with Reason=PartitionConfig)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    # RealMemory from slurmd's own view, less 5 % (the node drains if it reports less)
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$(( ${mem:-1024} * 95 / 100 ))
    mkdir -p "$ROOT/etc"
    cat > "$CONF.new" <<EOF
# written by tools/slurm/cluster.sh: one node (this machine as "localhost"), loopback only
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# no draining over topology or memory mismatches; a node back up serves again
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
# jobs start at once instead of in 3-second waves
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
# a dependant of a failed job is cancelled instead of pending forever
DependencyParameters=kill_invalid_depend
# submitit jobs ignore SIGTERM: a cancelled job is killed 5 s later, not 30
KillWait=5
JobRequeue=1
InactiveLimit=0
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT + 2))
AccountingStoragePass=$MUNGE_SOCK
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    cat > "$ROOT/etc/slurmdbd.conf.new" <<EOF
# written by tools/slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$ROOT/run/slurmdbd.pid
LogFile=$ROOT/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ROOT/etc/slurmdbd.conf.new"
    CHANGED=0
    for f in "$CONF" "$ROOT/etc/slurmdbd.conf"; do
        if [[ -f $f ]] && cmp -s "$f" "$f.new"; then
            rm -f "$f.new"
        else
            mv -f "$f.new" "$f"
            CHANGED=1
        fi
    done
    echo "export SLURM_CONF=$CONF" > "$ROOT/env"
}

# --------------------------------------------------------------------------- daemons

start_munge() {
    alive "$ROOT/munge/munged.pid" && return 0
    mkdir -p "$ROOT/munge"
    chmod 755 "$ROOT/munge"         # clients must reach the socket ("Socket is inaccessible")
    if [[ ! -s $ROOT/munge/munge.key ]]; then
        mungekey -c -k "$ROOT/munge/munge.key" 2>/dev/null ||
            dd if=/dev/urandom of="$ROOT/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 600 "$ROOT/munge/munge.key"
    munged --force --socket="$MUNGE_SOCK" --key-file="$ROOT/munge/munge.key" \
        --pid-file="$ROOT/munge/munged.pid" --log-file="$ROOT/log/munged.log" \
        --seed-file="$ROOT/munge/munged.seed"
    wait_for 10 munged munge -n -S "$MUNGE_SOCK"
}

start_db() {
    mkdir -p "$ROOT/mysql"
    if ! alive "$ROOT/mysql/mysqld.pid"; then
        if [[ ! -d $ROOT/mysql/data/mysql ]]; then
            mariadb-install-db --user=root --datadir="$ROOT/mysql/data" --skip-test-db \
                --auth-root-authentication-method=socket > "$ROOT/log/mariadb-install.log" 2>&1 ||
                die "mariadb-install-db failed: see $ROOT/log/mariadb-install.log"
        fi
        # no TCP at all: a socket in the private folder
        setsid mariadbd --no-defaults --user=root --datadir="$ROOT/mysql/data" \
            --socket="$DB_SOCK" --skip-networking --pid-file="$ROOT/mysql/mysqld.pid" \
            --log-error="$ROOT/log/mariadb.log" --innodb-buffer-pool-size=64M \
            < /dev/null > /dev/null 2>&1 &
        wait_for 30 MariaDB mariadb --no-defaults -S "$DB_SOCK" -u root -e "SELECT 1"
    fi
    mariadb --no-defaults -S "$DB_SOCK" -u root -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db"
}

start_dbd() {
    alive "$ROOT/run/slurmdbd.pid" && return 0
    # slurmdbd has no socket option (libmariadb reads MYSQL_UNIX_PORT) and no config option
    # (it reads slurmdbd.conf beside $SLURM_CONF)
    MYSQL_UNIX_PORT=$DB_SOCK SLURM_CONF=$CONF slurmdbd > "$ROOT/log/slurmdbd.out" 2>&1 || true
    wait_for 30 slurmdbd sacctmgr -n list cluster
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" > /dev/null
    fi
}

start_slurm() {
    if ! alive "$ROOT/run/slurmctld.pid"; then
        slurmctld -f "$CONF" > "$ROOT/log/slurmctld.out" 2>&1 || true
        wait_for 30 slurmctld scontrol ping
    fi
    if ! alive "$ROOT/run/slurmd.pid"; then
        slurmd -f "$CONF" -N localhost > "$ROOT/log/slurmd.out" 2>&1 || true
    fi
    # idle (or mixed/allocated when jobs already run); a node down from an earlier run resumes
    for ((i = 0; i < 150; i++)); do
        state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -1 | tr -d '*~#')
        case $state in
            idle|mixed|allocated|completing) return 0 ;;
            down|drained|draining|drain) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
        esac
        sleep 0.2
    done
    die "the node did not become idle (state ${state:-unknown}); logs in $ROOT/log/"
}

stop_pid() {  # stop_pid NAME PIDFILE: SIGTERM, wait up to 15 s, then SIGKILL
    local name=$1 file=$2 pid
    alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 75; i++)); do
        kill -0 "$pid" 2>/dev/null || { say "stopped $name ($pid)"; rm -f "$file"; return 0; }
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    say "killed $name ($pid)"
    rm -f "$file"
}

stop_slurm_daemons() {
    stop_pid slurmd "$ROOT/run/slurmd.pid"
    stop_pid slurmctld "$ROOT/run/slurmctld.pid"
}

cmd_start() {
    local t0=$SECONDS
    mkdir -p "$ROOT"/{etc,log,run,state,spool}
    install
    write_configs
    if [[ $CHANGED == 1 ]] && { alive "$ROOT/run/slurmctld.pid" || alive "$ROOT/run/slurmd.pid" \
            || alive "$ROOT/run/slurmdbd.pid"; }; then
        say "configuration changed: restarting the SLURM daemons"
        stop_slurm_daemons
        stop_pid slurmdbd "$ROOT/run/slurmdbd.pid"
    fi
    start_munge
    start_db
    start_dbd
    start_slurm
    export SLURM_CONF=$CONF
    say "up in $((SECONDS - t0)) s: $(sinfo -h -o '%n %T, %c CPUs, %m MB' | head -1); eval \"\$($0 env)\""
}

cmd_stop() {
    if [[ -f $CONF ]] && alive "$ROOT/run/slurmctld.pid"; then
        export SLURM_CONF=$CONF
        if [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
            scancel --full --quiet $(squeue -h -o %i) 2>/dev/null || true
            # no slurmstepd may outlive slurmd
            for ((i = 0; i < 100; i++)); do
                [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
                sleep 0.2
            done
        fi
    fi
    stop_slurm_daemons
    stop_pid slurmdbd "$ROOT/run/slurmdbd.pid"
    stop_pid mariadbd "$ROOT/mysql/mysqld.pid"
    stop_pid munged "$ROOT/munge/munged.pid"
}

cmd_status() {
    local up=1
    for d in munged:"$ROOT/munge/munged.pid" mariadbd:"$ROOT/mysql/mysqld.pid" \
             slurmdbd:"$ROOT/run/slurmdbd.pid" slurmctld:"$ROOT/run/slurmctld.pid" \
             slurmd:"$ROOT/run/slurmd.pid"; do
        if alive "${d#*:}"; then echo "${d%%:*}: running (pid $(cat "${d#*:}"))"
        else echo "${d%%:*}: not running"; up=0; fi
    done
    if [[ $up == 1 ]]; then
        export SLURM_CONF=$CONF
        sinfo -o '%P %a %D %T %c %m' || up=0
        squeue -o '%i %j %T %M %r' || true
    fi
    [[ $up == 1 ]]
}

case ${1:-start} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    install) mkdir -p "$ROOT/log"; install ;;
    *) die "usage: $0 start|stop|status|env|install" ;;
esac
