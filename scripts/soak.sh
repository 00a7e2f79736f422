#!/usr/bin/env bash
# Soak run: BOTS strict bots for SECS seconds against 1 dispatcher, 2 games (test_game) and
# 1 gate, started by `goworld start -d` on free 127.0.0.1 ports with filesystem storage, in a
# fresh directory. During the run: a hot swap of game1 alone (SWAP1_AT), of game2 alone
# (SWAP2_AT), then `goworld reload` of every game (RELOAD_AT). soak-scrape.py reads every
# process's /metrics every SCRAPE_EVERY seconds (and the bots' CPU and RSS from /proc);
# after the bots, `goworld stop`. Then soak-plot.py draws soak.svg (CPU, RSS, clients,
# messages per second) and prints the RSS slope table, and the checks run:
#   * the bots exit 0 with "failures 0" and "disconnects 0", all of them logged in;
#   * each hot swap and the reload succeeded (a game that did not come back fails it);
#   * no line at level error in any server log, nothing but ready lines in the processes'
#     stdout/stderr (a panic would be there), no error line from the bots;
#   * every server exited cleanly: `goworld stop` stopped them all, each log has one
#     "<name> stopped" line per start, and the games this script restarted exited 0;
#   * with RSS_MAX_PCT_H set: no server's RSS grows faster than that (% of its mean per
#     hour) after the warm-up, in any of its instances (PIDs) long enough to tell.
# summary.txt in the output directory has the figures (soak.png too if rsvg-convert is
# installed); it exits 1 if a check failed.
#
#   ./scripts/soak.sh                    # the full soak: 2000 bots, 30 minutes
#   BOTS=200 SECS=180 ./scripts/soak.sh  # a short one
#   ./scripts/soak.sh --recheck DIR      # the checks, table and plot again on a run's files
#
# --recheck takes WARMUP and RSS_MAX_PCT_H from the environment if given there.
# Environment (times in seconds since the bots started; "off" skips an event):
#   BOTS (2000), SECS (1800), SWAP1_AT (25 % of SECS), SWAP2_AT (45 %), RELOAD_AT (65 %),
#   SCRAPE_EVERY (5), OUT (target/soak/<date-time>), WARMUP (the later of 20 % of SECS and
#   the first scrape with all bots connected), RSS_MAX_PCT_H (unset: the slope is reported,
#   not checked), THINGS (the bots' -things: all, as test_client's default; "goworld" is
#   GoWorld's eight, without the mails, which pile up in every Avatar's "mails" attribute
#   and so make the games' RSS grow by design), BUILD (1; 0 uses target/release as it is).
# It stops only what it started, by PID: the scraper, the bots, the games it restarted, and
# the deployment through `goworld stop` (its PID files, in OUT/.goworld).
# shellcheck disable=SC2317  # functions called from traps and run_event look unreachable
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin=$repo/target/release

say() { echo "soak.sh: $*"; }
die() { echo "soak.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# The checks: they read only the files of a run directory, so --recheck can repeat them.

ready_re='^<!--XSUPERVISOR:BEGIN--> [A-Z]* STARTED <!--XSUPERVISOR:END-->'

check_run() { # $1 = run dir; prints the checks, writes summary.txt; returns 1 on a failure
  local dir=$1 bad=0 f n name st
  # The run's settings; WARMUP and RSS_MAX_PCT_H given now win (to recheck with others).
  local warmup_now=${WARMUP:-} rss_now=${RSS_MAX_PCT_H:-}
  # shellcheck disable=SC1091
  . "$dir/params.env"
  WARMUP=${warmup_now:-$WARMUP}
  RSS_MAX_PCT_H=${rss_now:-$RSS_MAX_PCT_H}
  THINGS=${THINGS:-all}
  local checks=() table plot_rc=0
  pass() { checks+=("PASS  $*"); }
  failc() { checks+=("FAIL  $*"); bad=1; }

  # 1. The bots.
  local tc_rc summary
  tc_rc=$(cat "$dir/test_client.rc" 2>/dev/null || echo "none")
  summary=$(grep '^test_client: bots ' "$dir/test_client.out" 2>/dev/null | tail -n 1 || true)
  if [ "$tc_rc" = 0 ]; then pass "bots exited 0"; else failc "bots exited ${tc_rc}"; fi
  case $summary in
    *", failures 0,"*) pass "bots: failures 0" ;;
    "") failc "bots printed no summary line (see test_client.out)" ;;
    *) failc "bots: $(echo "$summary" | grep -o 'failures [0-9]*')" ;;
  esac
  case $summary in
    *", disconnects 0"*) pass "bots: disconnects 0" ;;
    "") ;;
    *) failc "bots: $(echo "$summary" | grep -o 'disconnects [0-9]*')" ;;
  esac
  if [ -n "$summary" ]; then
    case $summary in
      *"connected $BOTS, boot entity $BOTS, logged in $BOTS,"*) pass "bots: all $BOTS connected and logged in" ;;
      *) failc "bots: not all $BOTS connected and logged in: $summary" ;;
    esac
  fi
  local strict_line
  strict_line=$(grep -m1 '^test_client: FAILED' "$dir/test_client.out" 2>/dev/null || true)
  [ -z "$strict_line" ] || failc "bots: $strict_line"

  # 2. The events.
  local t el ev dur status
  while IFS=, read -r t el ev dur status; do
    [ "$t" = time ] && continue
    case $ev in "bots start" | "bots done") continue ;; esac
    if [ "$status" = ok ]; then pass "$ev at ${el} s: done in ${dur} s"
    else failc "$ev at ${el} s: $status"; fi
  done <"$dir/events.csv"
  for ev in swap1 swap2 reload; do
    n=${ev^^}_AT; n=${!n}
    [ "$n" = off ] && continue
    case $ev in swap1) name="swap game1" ;; swap2) name="swap game2" ;; *) name="goworld reload" ;; esac
    grep -q ",$name," "$dir/events.csv" || failc "$name (planned at $n s) was not done (the bots ended first?)"
  done

  # 3. Error lines: level error in the logs (the second word of a line), anything but ready
  # lines in the processes' stdout/stderr, level error in the bots' output.
  local errs=0 warns=0 lines
  for f in "$dir"/*.log; do
    [ -f "$f" ] || continue
    lines=$(awk '$2 == "error"' "$f")
    if [ -n "$lines" ]; then
      n=$(printf '%s\n' "$lines" | wc -l); errs=$((errs + n))
      failc "$(basename "$f"): $n error lines, the first: $(printf '%s\n' "$lines" | head -n 1)"
    fi
    warns=$((warns + $(awk '$2 == "warn"' "$f" | wc -l)))
  done
  for f in "$dir"/.goworld/*.out; do
    [ -f "$f" ] || continue
    lines=$(grep -v -- "$ready_re" "$f" || true)
    if [ -n "$lines" ]; then
      n=$(printf '%s\n' "$lines" | wc -l); errs=$((errs + n))
      failc ".goworld/$(basename "$f"): $n lines other than ready lines, the first: $(printf '%s\n' "$lines" | head -n 1)"
    fi
  done
  lines=$(awk '$2 == "error"' "$dir/test_client.out" 2>/dev/null || true)
  if [ -n "$lines" ]; then
    n=$(printf '%s\n' "$lines" | wc -l); errs=$((errs + n))
    failc "test_client.out: $n error lines, the first: $(printf '%s\n' "$lines" | head -n 1)"
  fi
  [ "$errs" != 0 ] || pass "no error line in the logs, process outputs and bots' output ($warns warn lines in the logs)"

  # 4. Clean exits.
  local stop_rc
  stop_rc=$(cat "$dir/goworld-stop.rc" 2>/dev/null || echo "none")
  if [ "$stop_rc" = 0 ]; then pass "goworld stop exited 0"; else failc "goworld stop exited $stop_rc (see goworld-stop.out)"; fi
  local procs=(dispatcher1 game1 game2 gate1) starts stops
  for name in "${procs[@]}"; do
    f=$dir/$name.log
    if [ ! -f "$f" ]; then failc "$name: no log $name.log"; continue; fi
    starts=$(grep -c -- " <!--XSUPERVISOR:BEGIN--> [A-Z]* STARTED " "$f" || true)
    stops=$(grep -c -- " $name stopped\$" "$f" || true)
    if [ "$starts" -ge 1 ] && [ "$starts" = "$stops" ] && [ "$(tail -n 1 "$f" | grep -c -- " $name stopped\$")" = 1 ]; then
      pass "$name: $starts starts, $stops clean stops"
    else
      failc "$name: $starts starts but $stops clean stops (\"$name stopped\"), or not the last line"
    fi
    if [ "$stop_rc" != none ] && ! grep -q "^goworld: $name (pid [0-9]*) stopped" "$dir/goworld-stop.out"; then
      failc "$name: goworld stop did not stop it"
    fi
  done
  if [ -s "$dir/exits.txt" ]; then
    while read -r name _ pid _ st; do
      if [ "$st" = 0 ]; then pass "$name (pid $pid, restarted by this script) exited 0"
      else failc "$name (pid $pid, restarted by this script) exited $st"; fi
    done <"$dir/exits.txt"
  fi
  local left
  left=$(find "$dir/.goworld" -maxdepth 1 -name '*.pid' -printf '%f ' 2>/dev/null || true)
  [ -z "$left" ] || failc "PID files left in .goworld: $left"

  # 5. The plot and the table (and the RSS slope check if RSS_MAX_PCT_H is set).
  local plot_args=("$dir/samples.csv" -events "$dir/events.csv" -out "$dir/soak.svg"
    -bots "$BOTS" -secs "$SECS"
    -title "goworld-rs soak: $BOTS strict bots ($THINGS), ${SECS} s, 1 dispatcher, 2 games, 1 gate"
    -subtitle "$(date -u -d "@${T0%.*}" '+%Y-%m-%d %H:%M UTC') · commit $COMMIT · $HOST · scraped every ${SCRAPE_EVERY} s")
  [ -z "${WARMUP:-}" ] || plot_args+=(-warmup "$WARMUP")
  [ -z "${RSS_MAX_PCT_H:-}" ] || plot_args+=(-max-slope-pct-h "$RSS_MAX_PCT_H")
  table=$(python3 "$repo/scripts/soak-plot.py" "${plot_args[@]}" 2>&1) || plot_rc=$?
  case $plot_rc in
    0) [ -z "${RSS_MAX_PCT_H:-}" ] || pass "RSS slope of every instance <= $RSS_MAX_PCT_H %/h after the warm-up" ;;
    2) failc "RSS slope above $RSS_MAX_PCT_H %/h (see the table)" ;;
    *) failc "soak-plot.py failed ($plot_rc): $(echo "$table" | tail -n 1)" ;;
  esac
  if [ -f "$dir/soak.svg" ] && command -v rsvg-convert >/dev/null 2>&1; then
    rsvg-convert "$dir/soak.svg" -o "$dir/soak.png" || true
  fi

  {
    echo "goworld-rs soak run: $dir"
    echo "reproduce: $REPRO"
    echo "commit $COMMIT; host: $HOST"
    echo "bots: $BOTS strict, things $THINGS, $SECS s; hot swap game1 at $SWAP1_AT s, game2 at $SWAP2_AT s, goworld reload at $RELOAD_AT s; scraped every $SCRAPE_EVERY s"
    echo "bots' summary: ${summary:-(none)}"
    echo
    echo "events (seconds since the bots started):"
    sed 1d "$dir/events.csv" | awk -F, '{ printf "  %8.1f  %-16s %s%s\n", $2, $3, ($4 == "" ? "" : "took " $4 " s  "), $5 }'
    echo
    echo "hot swaps, from the games' logs (pause: from SIGUSR1 to the restored game accepted by the dispatcher):"
    hot_swaps "$dir"
    echo
    echo "checks:"
    printf '  %s\n' "${checks[@]}"
    echo
    echo "per process instance after the warm-up (RSS slope: least squares over the window; CPU: % of one core):"
    printf '%s\n' "$table" | while IFS= read -r line; do echo "  $line"; done
    echo
    if [ "$bad" = 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
  } >"$dir/summary.txt"
  return "$bad"
}

hot_swaps() { # $1 = run dir: one line per freeze in the games' logs
  python3 - "$1" "$T0" <<'PY'
import datetime, glob, os, re, sys
d, t0 = sys.argv[1], float(sys.argv[2])
def ts(line):
    s = line.split(" ", 1)[0].rstrip("Z")
    return datetime.datetime.fromisoformat(s).replace(tzinfo=datetime.timezone.utc).timestamp()
out = []
for f in sorted(glob.glob(os.path.join(d, "game*.log"))):
    name = os.path.basename(f)[:-4]
    cur = None
    for line in open(f, encoding="utf-8", errors="replace"):
        if ": freezing; asking" in line:
            cur = {"t": ts(line)}
        elif cur is None:
            continue
        elif m := re.search(r"state written to \S+ \((\d+) bytes\)", line):
            cur["bytes"], cur["written"] = int(m[1]), ts(line)
        elif m := re.search(r"restored from \S+ in ([\d.]+) ms: (\d+) entities", line):
            cur["restore_ms"], cur["entities"] = m[1], m[2]
        elif "every dispatcher accepted the restored game" in line:
            out.append((cur["t"], f"  {name} at {cur['t'] - t0:7.1f} s: froze {cur.get('bytes', 0) / 1e6:.1f} MB "
                  f"in {(cur.get('written', cur['t']) - cur['t']) * 1000:.0f} ms, restored "
                  f"{cur.get('entities', '?')} entities in {cur.get('restore_ms', '?')} ms, "
                  f"pause {(ts(line) - cur['t']) * 1000:.0f} ms"))
            cur = None
    if cur is not None:
        out.append((cur["t"], f"  {name} at {cur['t'] - t0:7.1f} s: froze, but no restored game was accepted after it"))
for _, line in sorted(out):
    print(line)
PY
}

if [ "${1:-}" = --recheck ]; then
  dir=$(realpath "${2:?usage: soak.sh --recheck RUN_DIR}")
  [ -f "$dir/params.env" ] || die "$dir is not a soak run directory (no params.env)"
  rc=0; check_run "$dir" || rc=$?
  cat "$dir/summary.txt"
  exit "$rc"
fi
[ $# = 0 ] || die "unexpected argument '$1' (settings are environment variables; see the header of $0)"

# ---------------------------------------------------------------------------------------
# Settings.

BOTS=${BOTS:-2000}
SECS=${SECS:-1800}
SWAP1_AT=${SWAP1_AT:-$((SECS * 25 / 100))}
SWAP2_AT=${SWAP2_AT:-$((SECS * 45 / 100))}
RELOAD_AT=${RELOAD_AT:-$((SECS * 65 / 100))}
SCRAPE_EVERY=${SCRAPE_EVERY:-5}
WARMUP=${WARMUP:-}
RSS_MAX_PCT_H=${RSS_MAX_PCT_H:-}
BUILD=${BUILD:-1}
THINGS=${THINGS:-all}
is_int() { [[ $1 =~ ^[0-9]+$ ]]; }
{ is_int "$BOTS" && [ "$BOTS" -gt 0 ]; } || die "BOTS=$BOTS: expected a positive integer"
{ is_int "$SECS" && [ "$SECS" -gt 0 ]; } || die "SECS=$SECS: expected a positive integer"
[[ $SCRAPE_EVERY =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SCRAPE_EVERY=$SCRAPE_EVERY: expected seconds"
[ -z "$WARMUP" ] || is_int "$WARMUP" || die "WARMUP=$WARMUP: expected seconds"
[ -z "$RSS_MAX_PCT_H" ] || [[ $RSS_MAX_PCT_H =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "RSS_MAX_PCT_H=$RSS_MAX_PCT_H: expected a number"
prev=0
for v in SWAP1_AT SWAP2_AT RELOAD_AT; do
  [ "${!v}" = off ] && continue
  is_int "${!v}" || die "$v=${!v}: expected seconds or off"
  { [ "${!v}" -ge "$prev" ] && [ "${!v}" -lt "$SECS" ]; } ||
    die "$v=${!v}: the events must come in order (SWAP1_AT <= SWAP2_AT <= RELOAD_AT) and before SECS=$SECS"
  prev=${!v}
done
REPRO="BOTS=$BOTS SECS=$SECS THINGS=$THINGS SWAP1_AT=$SWAP1_AT SWAP2_AT=$SWAP2_AT RELOAD_AT=$RELOAD_AT SCRAPE_EVERY=$SCRAPE_EVERY"
[ -z "$WARMUP" ] || REPRO+=" WARMUP=$WARMUP"
[ -z "$RSS_MAX_PCT_H" ] || REPRO+=" RSS_MAX_PCT_H=$RSS_MAX_PCT_H"
REPRO+=" ./scripts/soak.sh"
say "reproduce with: $REPRO"
[ "$THINGS" != all ] || say "note: with THINGS=all the bots' mails pile up in their Avatars' \"mails\" attribute (as in GoWorld's test_game), so the games' RSS and freeze files grow with time by design; THINGS=goworld is a workload with a bounded state"

OUT=${OUT:-$repo/target/soak/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
[ -z "$(ls -A "$OUT")" ] || die "OUT=$OUT is not empty"
say "output in $OUT"

# 2000 bots: one descriptor each in the bots and in the gate.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 1048576 2>/dev/null || true
need=$((BOTS + 256))
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
  die "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); $BOTS bots need at least $need"

if [ "$BUILD" != 0 ]; then
  say "building: cargo build --release --workspace --bins"
  cargo build --release --workspace --bins
fi
for b in goworld dispatcher gate test_game test_client; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing (build with cargo build --release --workspace --bins)"
done
python3 -c 'import prometheus_client' 2>/dev/null ||
  die "python3 lacks prometheus_client (pip install prometheus_client==0.26.0)"

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || COMMIT+="+changes"
HOST="$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1 | tr -s ' ')), Linux $(uname -r)"

# ---------------------------------------------------------------------------------------
# The deployment's config, on free loopback ports.

used_ports() { # every local TCP port in use (any state), from /proc/net/tcp and tcp6
  local _ addr
  { tail -n +2 /proc/net/tcp; tail -n +2 /proc/net/tcp6 2>/dev/null || true; } |
    while read -r _ addr _; do echo $((16#${addr##*:})); done
}
picked=()
free_port() { # a port in 20000-59999 that no socket uses and that was not picked before
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! used_ports | grep -qx "$p" && ! printf '%s\n' "${picked[@]:-}" | grep -qx "$p"; then
      picked+=("$p"); return 0
    fi
  done
  die "found no free port"
}
ports=()
for _ in 1 2 3 4 5 6; do free_port; ports+=("${picked[-1]}"); done
cat >"$OUT/goworld.ini" <<EOF
; Written by scripts/soak.sh: 1 dispatcher, 2 games, 1 gate on 127.0.0.1, filesystem storage.
; Logs go to <process>.log only (log_stderr = 0), so .goworld/<process>.out holds nothing
; but the ready lines and whatever a process writes itself (a panic).
[deployment]
desired_dispatchers = 1
desired_games = 2
desired_gates = 1

[storage]
type = filesystem
directory = entity_storage

[kvdb]
type = filesystem
directory = kvdb

[dispatcher_common]
log_stderr = 0
log_level = info

[dispatcher1]
listen_addr = 127.0.0.1:${ports[0]}
advertise_addr = 127.0.0.1:${ports[0]}
http_addr = 127.0.0.1:${ports[1]}

[game_common]
boot_entity = Account
log_stderr = 0
log_level = info

[game1]
http_addr = 127.0.0.1:${ports[2]}

[game2]
http_addr = 127.0.0.1:${ports[3]}

[gate_common]
log_stderr = 0
log_level = info

[gate1]
listen_addr = 127.0.0.1:${ports[4]}
http_addr = 127.0.0.1:${ports[5]}
EOF
cd "$OUT"
echo "time,elapsed_s,event,duration_s,status" >events.csv
: >exits.txt

# ---------------------------------------------------------------------------------------
# Clean-up: only what this script started, by PID.

scrape_pid='' scrape_bots_pid='' tc_pid='' reload_pid='' deployed=0 finished=0
restarted=()
cleanup() {
  local rc=$? p
  set +e
  trap - EXIT INT TERM
  if [ -n "$reload_pid" ]; then kill -TERM "$reload_pid" 2>/dev/null; wait "$reload_pid" 2>/dev/null; fi
  if [ -n "$tc_pid" ]; then kill -TERM "$tc_pid" 2>/dev/null; wait "$tc_pid" 2>/dev/null; fi
  if [ "$deployed" = 1 ]; then
    say "stopping the deployment (goworld stop)"
    "$bin/goworld" stop -configfile goworld.ini >>goworld-stop.out 2>&1 ||
      "$bin/goworld" kill -configfile goworld.ini >>goworld-stop.out 2>&1
    tail -n 20 goworld-stop.out
  fi
  for p in "${restarted[@]}"; do
    kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  for p in "$scrape_pid" "$scrape_bots_pid"; do
    if [ -n "$p" ]; then kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; fi
  done
  [ "$rc" = 0 ] || [ "$finished" = 1 ] || echo "soak.sh: stopped early (status $rc); what there is: $OUT" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Time, events.

now_ns() { date +%s%N; }
secs_of() { # nanoseconds -> seconds with 3 decimals
  local ms=$(($1 / 1000000)) sign=
  [ "$ms" -ge 0 ] || { sign=-; ms=$((-ms)); }
  printf '%s%d.%03d' "$sign" $((ms / 1000)) $((ms % 1000))
}
event() { # $1 = start (ns), $2 = name, $3 = duration (s, or empty), $4 = status
  echo "$(secs_of "$1"),$(secs_of $(($1 - t0_ns))),$2,$3,$4" >>events.csv
}
bots_alive() { [ -n "$tc_pid" ] && kill -0 "$tc_pid" 2>/dev/null; }
sleep_until() { # $1 = seconds since the bots started; returns 1 if the bots ended first
  # (once they are started)
  local end=$((t0_ns + $1 * 1000000000)) left
  while :; do
    left=$(((end - $(now_ns)) / 1000000))
    [ "$left" -gt 0 ] || return 0
    [ -z "$tc_pid" ] || bots_alive || return 1
    if [ "$left" -gt 1000 ]; then sleep 1; else sleep "$(secs_of $((left * 1000000)))"; fi
  done
}

# ---------------------------------------------------------------------------------------
# A hot swap of one game, as `goworld reload` does it for each game (common/src/bin/
# goworld.rs, reload): SIGUSR1 to the game its PID file names (after the same check as
# goworld's: program, -gid, working directory), wait for it to exit having written
# game<N>_freezed.dat, start the same program with -restore in this directory (its own
# session, output appended to .goworld/game<N>.out), write its PID file the way goworld
# does (so that `goworld stop` and `reload` find it) and wait for its ready line.

wait_gone() { # $1 = pid, $2 = timeout (s): gone or a zombie
  local i st
  for ((i = 0; i < $2 * 10; i++)); do
    [ -e "/proc/$1" ] || return 0
    st=$(sed -n 's/^.*) \(.\) .*$/\1/p' "/proc/$1/stat" 2>/dev/null || true)
    if [ -z "$st" ] || [ "$st" = Z ]; then return 0; fi
    sleep 0.1
  done
  return 1
}

write_pid_file() { # $1 = game id, $2 = pid, $3 = program, $4 = http addr, $5 = started
  printf 'pid=%s\nprocess=game%s\nprogram=%s\nhttp=%s\nstarted=%s\nrestored=1\n' \
    "$2" "$1" "$3" "$4" "$5" >".goworld/game$1.pid.tmp"
  mv ".goworld/game$1.pid.tmp" ".goworld/game$1.pid"
}

swap_game() { # $1 = game id; prints why on failure
  local n=$1 name=game$1 pidf=.goworld/game$1.pid pid prog args cwd freeze=game$1_freezed.dat
  [ -f "$pidf" ] || { echo "no PID file $pidf"; return 1; }
  pid=$(sed -n 's/^pid=//p' "$pidf")
  prog=$(sed -n 's/^program=//p' "$pidf")
  if [ -z "$pid" ] || [ -z "$prog" ]; then echo "unusable $pidf"; return 1; fi
  args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
  case " $args" in
    *"/$(basename "$prog") "*"-gid $n "* | " $(basename "$prog") "*"-gid $n "*) ;;
    *) echo "pid $pid is not $name (its command line: '$args')"; return 1 ;;
  esac
  [ "$cwd" = "$OUT" ] || { echo "pid $pid runs in '$cwd', not $OUT"; return 1; }
  [ ! -e "$freeze" ] || mv "$freeze" "$freeze.old"
  kill -USR1 "$pid" || { echo "cannot signal pid $pid"; return 1; }
  wait_gone "$pid" 60 || { echo "pid $pid did not exit within 60 s of SIGUSR1"; return 1; }
  rm -f "$pidf"
  [ -f "$freeze" ] || { echo "pid $pid exited without writing $freeze"; return 1; }
  local out=.goworld/$name.out offset newpid ready='' i
  offset=$(stat -c %s "$out")
  setsid "$prog" -gid "$n" -configfile goworld.ini -restore >>"$out" 2>&1 </dev/null &
  newpid=$!
  restarted+=("$newpid")
  echo "$name pid $newpid" >>restarted.txt
  write_pid_file "$n" "$newpid" "$prog" "" "$(date +%s)"
  for ((i = 0; i < 600; i++)); do
    ready=$(tail -c +$((offset + 1)) "$out" | grep -m 1 '^<!--XSUPERVISOR:BEGIN--> GAME STARTED' || true)
    [ -z "$ready" ] || break
    kill -0 "$newpid" 2>/dev/null || { echo "the restored $name (pid $newpid) exited at start-up; see $out and $name.log"; return 1; }
    sleep 0.1
  done
  [ -n "$ready" ] || { echo "the restored $name (pid $newpid) printed no ready line in 60 s"; return 1; }
  write_pid_file "$n" "$newpid" "$prog" "$(echo "$ready" | grep -o 'http=[^ ]*' | cut -d= -f2)" \
    "$(sed -n 's/^started=//p' "$pidf")"
  echo "pid $pid -> $newpid"
}

run_event() { # $1 = name, $2.. = command (prints its outcome); run in this shell, not a
  # subshell, so that the games it starts are this script's children
  local name=$1 start msg rc=0
  shift
  start=$(now_ns)
  say "$(secs_of $((start - t0_ns))) s: $name"
  "$@" >event.msg 2>&1 || rc=$?
  msg=$(cat event.msg)
  rm -f event.msg
  local dur
  dur=$(secs_of $(($(now_ns) - start)))
  if [ "$rc" = 0 ]; then
    say "$name done in $dur s: $(echo "$msg" | tail -n 1)"
    event "$start" "$name" "$dur" ok
  else
    say "$name FAILED after $dur s: $msg"
    event "$start" "$name" "$dur" "failed: $(echo "$msg" | tail -n 1 | tr -d ',')"
  fi
}

do_reload() {
  "$bin/goworld" reload -configfile goworld.ini >>goworld-reload.out 2>&1 &
  reload_pid=$!
  local rc=0
  wait "$reload_pid" || rc=$?
  reload_pid=
  tail -n 1 goworld-reload.out
  return "$rc"
}

# ---------------------------------------------------------------------------------------
# The run.

lead=$(awk -v e="$SCRAPE_EVERY" 'BEGIN { l = 2 * e; if (l < 5) l = 5; printf "%d", l + 0.999 }')
cat >params.env <<EOF
BOTS=$BOTS
SECS=$SECS
SWAP1_AT=$SWAP1_AT
SWAP2_AT=$SWAP2_AT
RELOAD_AT=$RELOAD_AT
SCRAPE_EVERY=$SCRAPE_EVERY
THINGS=$THINGS
WARMUP=$WARMUP
RSS_MAX_PCT_H=$RSS_MAX_PCT_H
REPRO='$REPRO'
COMMIT='$COMMIT'
HOST='$HOST'
EOF

say "starting 1 dispatcher, 2 games, 1 gate (goworld start -d) in $OUT"
deployed=1
"$bin/goworld" start -d -configfile goworld.ini 2>&1 | tee goworld-start.out
[ "${PIPESTATUS[0]}" = 0 ] || die "goworld start failed (see above)"

# The bots start $lead s from now; the scraper starts now, with that as its time 0.
t0_ns=$(($(now_ns) + lead * 1000000000))
T0=$(secs_of "$t0_ns")
echo "T0=$T0" >>params.env
python3 "$repo/scripts/soak-scrape.py" -config goworld.ini -out samples.csv \
  -every "$SCRAPE_EVERY" -t0 "$T0" -max-secs $((SECS + lead + 900)) >scrape.out 2>&1 &
scrape_pid=$!
sleep_until 0
say "starting $BOTS strict bots for $SECS s (things: $THINGS)"
"$bin/test_client" -N "$BOTS" -strict -quiet -things "$THINGS" -duration "$SECS" -configfile goworld.ini \
  >test_client.out 2>&1 &
tc_pid=$!
event "$t0_ns" "bots start" "" ok
# Also scrape the bots' CPU and RSS (from /proc): a second scraper for that one PID.
python3 "$repo/scripts/soak-scrape.py" -out samples-bots.csv \
  -every "$SCRAPE_EVERY" -t0 "$T0" -max-secs $((SECS + 900)) -pid "test_client=$tc_pid" \
  >scrape-bots.out 2>&1 &
scrape_bots_pid=$!

for ev in "SWAP1_AT|swap game1|swap_game 1" "SWAP2_AT|swap game2|swap_game 2" "RELOAD_AT|goworld reload|do_reload"; do
  IFS='|' read -r var name cmd <<<"$ev"
  at=${!var}
  [ "$at" = off ] && continue
  if ! sleep_until "$at"; then
    say "the bots ended before $name (planned at $at s)"
    break
  fi
  # shellcheck disable=SC2086
  run_event "$name" $cmd
done

# The bots: they end by themselves after SECS; 300 s more is a hang.
deadline=$((t0_ns + (SECS + 300) * 1000000000))
while bots_alive && [ "$(now_ns)" -lt "$deadline" ]; do sleep 1; done
if bots_alive; then
  say "the bots still run $((SECS + 300)) s after they started: stopping them"
  kill -TERM "$tc_pid"
fi
tc_rc=0
wait "$tc_pid" || tc_rc=$?
tc_pid=
echo "$tc_rc" >test_client.rc
event "$(now_ns)" "bots done" "" ok
say "bots exited $tc_rc: $(grep '^test_client: bots ' test_client.out || echo 'no summary line')"
kill -TERM "$scrape_bots_pid" 2>/dev/null || true
wait "$scrape_bots_pid" 2>/dev/null || true
scrape_bots_pid=

# A few more scrapes with no client, then stop the scraper and the deployment.
sleep "$lead"
kill -TERM "$scrape_pid" 2>/dev/null || true
wait "$scrape_pid" || say "the scraper exited $? (see scrape.out)"
scrape_pid=
# The bots' samples join the servers' (same columns).
tail -n +2 samples-bots.csv >>samples.csv 2>/dev/null || true

say "stopping the deployment (goworld stop)"
stop_rc=0
"$bin/goworld" stop -configfile goworld.ini >goworld-stop.out 2>&1 || stop_rc=$?
deployed=0
cat goworld-stop.out
echo "$stop_rc" >goworld-stop.rc
for p in "${restarted[@]}"; do
  name=$(awk -v p="$p" '$3 == p { print $1 }' restarted.txt)
  st=0
  wait "$p" || st=$?
  echo "$name pid $p exit $st" >>exits.txt
done
restarted=()

finished=1
rc=0
check_run "$OUT" || rc=$?
cat summary.txt
say "plot: $OUT/soak.svg; summary: $OUT/summary.txt"
exit "$rc"
