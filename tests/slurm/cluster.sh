#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for the tests of `whet ablate --launcher slurm`.
#
#   cluster.sh install      install slurm-wlm and munge with apt-get when they are missing (root)
#   cluster.sh start DIR    start munged, slurmctld and slurmd with everything under DIR (root)
#   cluster.sh stop DIR     stop the daemons that `start DIR` started (safe to run twice)
#
# `start` prints the environment a Slurm client needs as its last lines on stdout, so a caller can
# run `eval "$(tests/slurm/cluster.sh start "$DIR")"` and then use sbatch, squeue, scontrol and
# scancel. Everything else (progress, errors, log tails) goes to stderr.
#
# Each cluster is self-contained: its own munge key and munge socket, its own state, spool and log
# folders, and its own TCP ports (picked free at start). So two clusters, or a system Slurm or
# munged, do not get in each other's way. Slurm finds the private munge socket through
# `AuthInfo=socket=...` in the generated slurm.conf, so clients need nothing but SLURM_CONF.
#
# The layout of DIR:
#   slurm.conf                   the generated configuration
#   munge/                       munge.key, munge.socket, munged.pid, munged.seed, and munged.out
#                                (munged's log: in the foreground it logs to stderr)
#   state/                       slurmctld's saved state (jobs, nodes); kept across restarts
#   spool/                       slurmd's spool folder
#   slurmctld.pid, slurmd.pid    the daemons' process ids (written by this script, then by the
#                                daemons themselves, with the same number)
#   slurmctld.log, slurmd.log    the daemons' logs
#   slurmctld.out, slurmd.out    the daemons' stdout and stderr (the same lines, plus anything
#                                printed before the log file is open)
#
# See tests/slurm/README.md for which commands the tests use and what their output looks like.
set -euo pipefail

# How long `start` waits for the node to become idle, in seconds (WHET_SLURM_START_TIMEOUT).
START_TIMEOUT="${WHET_SLURM_START_TIMEOUT:-60}"

# How long `stop` waits for the daemons to exit after SIGTERM before it sends SIGKILL, in seconds.
STOP_TIMEOUT=20

say() {
    echo "cluster.sh: $*" >&2
}

die() {
    say "$*"
    exit 1
}

usage() {
    cat >&2 <<'USAGE'
usage: cluster.sh install
       cluster.sh start DIR
       cluster.sh stop DIR
USAGE
    exit 2
}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        die "$1"
    fi
}

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------

# The programs the cluster needs. They live in /usr/sbin, which is not always on a user's PATH,
# so look there too.
PROGRAMS=(slurmctld slurmd sbatch squeue scontrol scancel sinfo munged)
export PATH="$PATH:/usr/sbin:/sbin"

# The missing programs on one line, separated by spaces (empty when none is missing).
missing_programs() {
    local p missing=()
    for p in "${PROGRAMS[@]}"; do
        command -v "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    echo "${missing[*]}"
}

cmd_install() {
    local missing
    missing="$(missing_programs)"
    if [ -z "$missing" ]; then
        say "slurm and munge are already installed"
        return 0
    fi
    say "missing: $missing; installing slurm-wlm and munge with apt-get"
    need_root "installing packages needs root (apt-get)"
    command -v apt-get >/dev/null 2>&1 \
        || die "apt-get is not available; install slurm-wlm and munge by hand"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
        || die "apt-get install slurm-wlm munge failed"
    missing="$(missing_programs)"
    [ -z "$missing" ] || die "still missing after the install: $missing"
    say "installed slurm-wlm and munge"
}

# ---------------------------------------------------------------------------------------------
# Helpers for start and stop
# ---------------------------------------------------------------------------------------------

# The process id in a pid file, or nothing when the file is missing or empty.
read_pid() {
    if [ -s "$1" ]; then
        tr -dc '0-9' <"$1" || true
    fi
}

# True when process PID is running. A zombie (exited but not yet reaped, e.g. a daemon this very
# script started and that died) does not count.
running() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || true)"
    [ "$state" != Z ]
}

# True when the pid file names a process that is still running. The daemons rewrite the pid
# file this script wrote (truncate, then write) while starting, so an empty read is tried again
# for a moment before it counts as "not running".
pid_alive() {
    local pid
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pid="$(read_pid "$1")"
        [ -n "$pid" ] && break
        sleep 0.05
    done
    [ -n "$pid" ] && running "$pid"
}

# True when something accepts TCP connections on 127.0.0.1:PORT or is bound to PORT anywhere.
port_in_use() {
    local port="$1"
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Htan "sport = :$port" 2>/dev/null)" ] && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# A free TCP port from a random spot in 20000-59999, skipping the ports in "$@" (ports this start
# has already taken but that nothing listens on yet).
free_port() {
    local _ port taken skip
    for _ in $(seq 1 200); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        skip=0
        for taken in "$@"; do
            [ "$port" = "$taken" ] && skip=1
        done
        [ "$skip" = 0 ] || continue
        port_in_use "$port" || { echo "$port"; return 0; }
    done
    die "found no free TCP port"
}

# Print the last lines of each daemon's log in DIR to stderr (for a failed start). slurmctld and
# slurmd write DIR/NAME.log once they have read slurm.conf; what they print before that (bad
# configuration, for one) is only in DIR/NAME.out, their captured stdout and stderr. munged in the
# foreground logs to its stderr only, so its log is munge/munged.out.
show_logs() {
    local dir="$1" log
    for log in "$dir/munge/munged.out" "$dir/slurmctld" "$dir/slurmd"; do
        case "$log" in
            *.out) ;;
            *) if [ -s "$log.log" ]; then log="$log.log"; else log="$log.out"; fi ;;
        esac
        [ -s "$log" ] || continue
        echo "----- last lines of $log -----" >&2
        tail -n 25 "$log" >&2
    done
}

# Send SIGTERM to the process in a pid file and print its pid, or print nothing when there is no
# such process. Only signals a process whose command line names the expected program, so a stale
# pid file whose number now belongs to some other process is left alone.
term_pid_file() {
    local file="$1" program="$2" pid
    pid="$(read_pid "$file")"
    if [ -z "$pid" ] || ! running "$pid"; then
        rm -f "$file"
        return 0
    fi
    # (Read into a variable first: with pipefail, `tr | grep -q` can fail when grep exits early.)
    local cmdline
    cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true)"
    if [[ "$cmdline" != *"$program"* ]]; then
        say "$file names process $pid, which is not $program; leaving it alone"
        rm -f "$file"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    echo "$pid"
}

# Wait for the given pids to exit: up to STOP_TIMEOUT seconds, then SIGKILL what is left.
wait_pids() {
    local pid _ alive
    for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do
        alive=0
        for pid in "$@"; do
            running "$pid" && alive=1
        done
        [ "$alive" = 1 ] || return 0
        sleep 0.1
    done
    for pid in "$@"; do
        if running "$pid"; then
            say "process $pid did not exit after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while running "$pid"; do sleep 0.1; done
        fi
    done
}

# Kill what is left of this cluster's jobs after the daemons are gone (normally nothing, as stop
# cancels the jobs first): every slurmstepd started by this cluster's slurmd (its environment has
# SLURM_CONF=DIR/slurm.conf, inherited from slurmd) and all processes below it.
kill_job_processes() {
    local conf="$1/slurm.conf" pid stepds="" victims="" parent child environ
    for pid in $(pgrep -x slurmstepd || true); do
        running "$pid" || continue
        environ="$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" || true)"
        if grep -qxF "SLURM_CONF=$conf" <<<"$environ"; then
            stepds="$stepds $pid"
        fi
    done
    [ -n "$stepds" ] || return 0
    # The slurmstepds and their descendants, found by following parent pids.
    victims="$stepds"
    local table
    table="$(ps -e -o pid=,ppid=)"
    local added=1
    while [ "$added" = 1 ]; do
        added=0
        while read -r child parent; do
            case " $victims " in
                *" $child "*) continue ;;
            esac
            case " $victims " in
                *" $parent "*) victims="$victims $child"; added=1 ;;
            esac
        done <<<"$table"
    done
    say "killing leftover job processes:$victims"
    # shellcheck disable=SC2086 # one pid a word
    kill -KILL $victims 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_pids $victims
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------

start_munged() {
    local dir="$1" m="$1/munge" _
    mkdir -p "$m"
    # munged refuses group- or world-writable folders for its key, socket, pid and log files.
    chmod 0755 "$m"

    # A private key for this cluster. mungekey (munge 0.5.14 and later) makes one; else 1 KiB
    # from /dev/urandom does the same job. munged insists on its owner (here root) and mode 0600.
    if [ ! -s "$m/munge.key" ]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$m/munge.key" >&2
        else
            dd if=/dev/urandom of="$m/munge.key" bs=1024 count=1 status=none
        fi
    fi
    chown root:root "$m/munge.key"
    chmod 0600 "$m/munge.key"

    # A munged of our own on a socket of our own, in the foreground (-F) so that $! is its pid.
    # In the foreground it logs to stderr (munged.out), not to --log-file.
    # --force removes a socket left behind by a munged that was killed. A system munged on
    # /run/munge/munge.socket.2 is not touched and does not matter.
    munged -F --force \
        --socket="$m/munge.socket" \
        --key-file="$m/munge.key" \
        --pid-file="$m/munged.pid" \
        --log-file="$m/munged.log" \
        --seed-file="$m/munged.seed" \
        </dev/null >>"$m/munged.out" 2>&1 &
    echo $! >"$m/munged.pid"

    # Wait until it answers on its socket.
    for _ in $(seq 1 100); do
        if munge --socket="$m/munge.socket" -n 2>/dev/null \
            | unmunge --socket="$m/munge.socket" >/dev/null 2>&1; then
            return 0
        fi
        pid_alive "$m/munged.pid" || break
        sleep 0.1
    done
    die "munged did not start"
}

write_conf() {
    local dir="$1" node cpus mem defmem ctld_port slurmd_port
    # slurmd -C reports this machine as Slurm sees it, for example:
    #   NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
    local hw
    hw="$(slurmd -C)"
    hw="${hw%%$'\n'*}"
    node="$(sed -n 's/.*NodeName=\([^ ]*\).*/\1/p' <<<"$hw")"
    cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")"
    mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
    [ -n "$node" ] || node="$(hostname -s)"
    [ -n "$cpus" ] || cpus="$(nproc)"
    [ -n "$mem" ] || mem=2048
    # Declare a bit less memory than slurmd finds, or slurmd registers with "Low RealMemory" and
    # the node is drained. At least 1 MB.
    mem=$((mem * 9 / 10))
    [ "$mem" -ge 1 ] || mem=1
    # The default memory of a job, per CPU: 1 GB, or less on a small machine.
    defmem=$((mem / cpus))
    [ "$defmem" -le 1024 ] || defmem=1024
    [ "$defmem" -ge 1 ] || defmem=1

    ctld_port="$(free_port)"
    slurmd_port="$(free_port "$ctld_port")"

    cat >"$dir/slurm.conf" <<CONF
# Written by tests/slurm/cluster.sh for a single-node test cluster; rewritten at each start.
ClusterName=whettest
# The controller and the node talk over the loopback address, whatever the host name resolves to.
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# This cluster's own munged (used by the daemons and by every client that reads this file).
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Refuse at submission (sbatch exits 1) a job that can never run here, e.g. more CPUs than the node
# has; without this it is accepted and stays PENDING forever with Reason=PartitionConfig.
EnforcePartLimits=ALL
# Memory is a scheduled resource (so --mem is checked against the node), but a job that asks for
# none gets DefMemPerCPU per CPU instead of the whole node, so jobs can run side by side.
DefMemPerCPU=$defmem
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# No mail; the default /usr/bin/mail is usually missing and slurmctld logs an error for it.
MailProg=/bin/true
# There is no accounting (sacct has nothing), so keep finished jobs in slurmctld for 10 minutes:
# \`scontrol show job\` then still reports each array task's JobState and ExitCode.
MinJobAge=600
# Schedule soon after a submission and after a job ends, so tests are not slowed down.
SchedulerParameters=defer_batch=0,sched_min_interval=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
    echo "$node"
}

cmd_start() {
    local dir="$1" node _ state
    need_root "starting the cluster needs root (the daemons run as root, SlurmUser=root)"
    [ -z "$(missing_programs)" ] \
        || die "missing: $(missing_programs); run \`cluster.sh install\` first"

    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd -P)"
    # Slurm's config file parser splits on spaces and '#'.
    case "$dir" in
        *[[:space:]#]*) die "DIR must not contain spaces or '#': $dir" ;;
    esac

    local f
    for f in "$dir/munge/munged.pid" "$dir/slurmctld.pid" "$dir/slurmd.pid"; do
        if pid_alive "$f"; then
            die "a cluster is already running in $dir (pid file $f); run \`cluster.sh stop $dir\` first"
        fi
    done

    mkdir -p "$dir/state" "$dir/spool"
    chmod 0755 "$dir" "$dir/state" "$dir/spool"
    # Fresh logs for each start, so a failure shows this start's messages.
    rm -f "$dir/slurmctld.log" "$dir/slurmd.log" "$dir/munge/munged.log" "$dir/munge/munged.out" \
        "$dir/slurmctld.out" "$dir/slurmd.out"

    # If start fails anywhere below (including a `die`), stop whatever it has started and show
    # the logs. A successful start sets STARTED=1 and leaves the daemons running.
    STARTED=0
    START_DIR="$dir"
    trap 'start_failed' EXIT

    start_munged "$dir"
    node="$(write_conf "$dir")"
    export SLURM_CONF="$dir/slurm.conf"

    # Both daemons in the foreground (-D) as background jobs, detached from our stdin and stdout
    # (or `eval "$(cluster.sh start ...)"` would wait for them forever). They also write their own
    # pid files, with the same numbers. slurmctld recovers the jobs and nodes saved in DIR/state
    # by an earlier run.
    slurmctld -D </dev/null >>"$dir/slurmctld.out" 2>&1 &
    echo $! >"$dir/slurmctld.pid"
    slurmd -D </dev/null >>"$dir/slurmd.out" 2>&1 &
    echo $! >"$dir/slurmd.pid"

    say "waiting up to ${START_TIMEOUT}s for node $node to be idle"
    state=""
    for _ in $(seq 1 $((START_TIMEOUT * 2))); do
        state="$(sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -n 1 || true)"
        # idle, or mixed/allocated when jobs recovered from DIR/state still run: the node is up
        # and answers. (A trailing * would mean it does not answer yet; drained or down is bad.)
        if [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ]; then
            say "node $node is $state (logs in $dir)"
            STARTED=1
            trap - EXIT
            # The environment a client needs; last on stdout so `eval` can take it.
            echo "export SLURM_CONF=$dir/slurm.conf"
            return 0
        fi
        if ! pid_alive "$dir/slurmctld.pid" || ! pid_alive "$dir/slurmd.pid"; then
            say "a daemon exited during start"
            break
        fi
        sleep 0.5
    done
    die "node $node did not become idle (last state: ${state:-none})"
}

# The EXIT trap of a failed start: show what the daemons said, then stop them.
start_failed() {
    local status=$?
    [ "${STARTED:-0}" = 1 ] && return 0
    show_logs "$START_DIR"
    cmd_stop "$START_DIR" >/dev/null 2>&1 || true
    say "start failed"
    exit $(( status == 0 ? 1 : status ))
}

# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------

cmd_stop() {
    local dir="$1"
    if [ ! -d "$dir" ]; then
        say "nothing to stop: $dir does not exist"
        return 0
    fi
    # Cancel the cluster's jobs first, while slurmctld still runs: stopping slurmd does not end
    # them (each job has a slurmstepd of its own), and jobs left running would come back as
    # RUNNING at the next start. Give them a few seconds to end.
    local conf="$dir/slurm.conf" _
    if pid_alive "$dir/slurmctld.pid" && [ -f "$conf" ]; then
        SLURM_CONF="$conf" scancel --partition=debug >/dev/null 2>&1 || true
        for _ in $(seq 1 50); do
            [ -z "$(SLURM_CONF="$conf" squeue -h -t R,CG,S -o %A 2>/dev/null || true)" ] && break
            sleep 0.2
        done
    fi

    # The two Slurm daemons together (slurmctld saves its state as it exits), then munged, which
    # they may still use while they shut down.
    local pids
    pids="$(term_pid_file "$dir/slurmd.pid" slurmd; term_pid_file "$dir/slurmctld.pid" slurmctld)"
    # shellcheck disable=SC2086 # one pid a word
    wait_pids $pids
    rm -f "$dir/slurmd.pid" "$dir/slurmctld.pid"
    pids="$(term_pid_file "$dir/munge/munged.pid" munged)"
    # shellcheck disable=SC2086
    wait_pids $pids
    rm -f "$dir/munge/munged.pid"
    kill_job_processes "$dir"
    say "stopped the cluster in $dir"
}

# ---------------------------------------------------------------------------------------------

[ $# -ge 1 ] || usage
case "$1" in
    install)
        [ $# = 1 ] || usage
        cmd_install
        ;;
    start)
        [ $# = 2 ] || usage
        cmd_start "$2"
        ;;
    stop)
        [ $# = 2 ] || usage
        cmd_stop "$2"
        ;;
    *)
        usage
        ;;
esac
