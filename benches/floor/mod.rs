//! What the floor benches (`relay_floor`, `fanout_floor`) share: the server runs as a child
//! process (this same binary, first argument `server`), and its CPU time is read from /proc.
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The child's user + system CPU time in clock ticks (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's /proc stat");
    // Fields after the command name; utime and stime are fields 14 and 15 of the whole line.
    let f: Vec<&str> = s.rsplit(')').next().expect("stat line").split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

pub fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().expect("getconf CLK_TCK");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a number")
}

/// Starts this binary as `server ARGS... PORT_FILE` and waits until it has written the port it
/// listens on (127.0.0.1) to PORT_FILE; `tag` names the file.
pub fn spawn_server(tag: &str, args: &[&str]) -> (Child, u16) {
    let port_file = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&port_file);
    let child = Command::new(std::env::current_exe().expect("own path"))
        .arg("server")
        .args(args)
        .arg(&port_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the server");
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file)
            && let Ok(p) = p.parse::<u16>()
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = std::fs::remove_file(&port_file);
    (child, port)
}
