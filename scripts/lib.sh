# Shell helpers shared by the benchmark scripts (sourced, not run).

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_on_port PORT: the pid listening on PORT (empty if none)
pid_on_port() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }

# json_get FILE KEY.PATH -> value from the last JSON line of FILE (warren-perf --json), "n/a" if absent
json_get() {
  python3 - "$1" "$2" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
if not lines: print("n/a"); sys.exit()
v = json.loads(lines[-1])
for k in sys.argv[2].split("."): v = v.get(k, "n/a") if isinstance(v, dict) else "n/a"
print(int(v) if isinstance(v, float) and v.is_integer() else v)
PY
}
